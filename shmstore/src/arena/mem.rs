//! [`Mem`]: a byte region addressed by checked offsets.
//!
//! Everything the arena reads from a segment goes through here: every access
//! is bounds- and alignment-checked against the region before a pointer is
//! formed, and a failed check is [`Error::Corrupted`] naming the offset. No
//! reference into the region is ever created by this module; values are
//! copied in and out with raw reads and writes.

use core::ptr::NonNull;
use core::sync::atomic::AtomicU32;

use crate::{Error, Result};

/// The unsigned integers metadata is made of.
///
/// # Safety
///
/// Every bit pattern of `size_of::<Self>()` bytes is a valid value, and the
/// alignment is at most the size.
unsafe trait Scalar: Copy {}
// SAFETY: unsigned integers accept every bit pattern; align == size.
unsafe impl Scalar for u16 {}
// SAFETY: as above.
unsafe impl Scalar for u32 {}
// SAFETY: as above.
unsafe impl Scalar for u64 {}

/// A region of bytes, shared or not, addressed by offsets from its start.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mem {
    base: NonNull<u8>,
    len: u64,
}

// SAFETY: `Mem` is a pointer and a length; all access goes through raw
// reads/writes whose synchronisation is the caller's (the header lock), and
// the constructor's contract requires the region to outlive every use.
unsafe impl Send for Mem {}
// SAFETY: as for `Send`.
unsafe impl Sync for Mem {}

impl Mem {
    /// Wraps `len` bytes at `base`.
    ///
    /// # Safety
    ///
    /// - `base` is valid for reads and writes of `len` bytes for as long as
    ///   this `Mem` or any copy of it is used, and is 8-byte aligned;
    /// - no Rust reference to those bytes is held while the arena writes
    ///   them (the arena's callers only form references to published values,
    ///   which the arena no longer writes).
    pub(crate) unsafe fn new(base: NonNull<u8>, len: usize) -> Mem {
        debug_assert_eq!(base.as_ptr() as usize % 8, 0);
        Mem {
            base,
            len: len as u64,
        }
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// A pointer to `size` bytes at `off`, checked to lie inside the region
    /// and to be aligned to `align` (a power of two).
    pub(crate) fn ptr(&self, off: u64, size: u64, align: u64) -> Result<*mut u8> {
        let end = off.checked_add(size);
        match end {
            Some(end) if end <= self.len && off % align == 0 => {
                // SAFETY: `off + size <= len`, so `off` is inside (or one past)
                // the allocation `new` vouched for, and fits in usize.
                Ok(unsafe { self.base.as_ptr().add(off as usize) })
            }
            _ => Err(Error::corrupted(format!(
                "offset {off:#x} (+{size} bytes, align {align}) lies outside the {}-byte region or is misaligned",
                self.len
            ))),
        }
    }

    /// Reads the scalar at `off`.
    fn read<T: Scalar>(&self, off: u64) -> Result<T> {
        let size = core::mem::size_of::<T>() as u64;
        let p = self.ptr(off, size, size)?;
        // SAFETY: `ptr` checked `size_of::<T>()` in-bounds bytes aligned to
        // it (a scalar's alignment is its size); every bit pattern is a valid
        // unsigned integer (the `Scalar` types).
        Ok(unsafe { p.cast::<T>().read() })
    }

    /// Writes the scalar at `off`.
    fn write<T: Scalar>(&self, off: u64, v: T) -> Result<()> {
        let size = core::mem::size_of::<T>() as u64;
        let p = self.ptr(off, size, size)?;
        // SAFETY: `ptr` checked in-bounds, aligned bytes; no reference to
        // metadata bytes exists (constructor contract).
        unsafe { p.cast::<T>().write(v) };
        Ok(())
    }

    /// Reads the `u64` at `off`.
    pub(crate) fn u64(&self, off: u64) -> Result<u64> {
        self.read(off)
    }

    /// Writes the `u64` at `off`.
    pub(crate) fn set_u64(&self, off: u64, v: u64) -> Result<()> {
        self.write(off, v)
    }

    /// Reads the `u32` at `off`.
    pub(crate) fn u32(&self, off: u64) -> Result<u32> {
        self.read(off)
    }

    /// Writes the `u32` at `off`.
    pub(crate) fn set_u32(&self, off: u64, v: u32) -> Result<()> {
        self.write(off, v)
    }

    /// Reads the `u16` at `off`.
    pub(crate) fn u16(&self, off: u64) -> Result<u16> {
        self.read(off)
    }

    /// Writes the `u16` at `off`.
    pub(crate) fn set_u16(&self, off: u64, v: u16) -> Result<()> {
        self.write(off, v)
    }

    /// The `u32` at `off` as an atomic, for words read outside the header
    /// lock (the init state).
    pub(crate) fn atomic_u32(&self, off: u64) -> Result<&AtomicU32> {
        let p = self.ptr(off, 4, 4)?;
        // SAFETY: checked 4 in-bounds bytes aligned for AtomicU32; the word is
        // only ever accessed atomically by every process, and the region
        // outlives `self` (constructor contract).
        Ok(unsafe { &*p.cast::<AtomicU32>() })
    }

    /// Copies `bytes` to `off`.
    pub(crate) fn write_bytes(&self, off: u64, bytes: &[u8]) -> Result<()> {
        let p = self.ptr(off, bytes.len() as u64, 1)?;
        // SAFETY: checked `bytes.len()` in-bounds bytes at `p`; `bytes` is a
        // Rust slice, so it cannot overlap the unreferenced region bytes.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len()) };
        Ok(())
    }

    /// Fills `len` bytes at `off` with zero.
    pub(crate) fn zero(&self, off: u64, len: u64) -> Result<()> {
        let p = self.ptr(off, len, 1)?;
        // SAFETY: checked `len` in-bounds bytes at `p`.
        unsafe { core::ptr::write_bytes(p, 0, len as usize) };
        Ok(())
    }

    /// Copies `len` bytes at `off` out into a `Vec`.
    pub(crate) fn read_bytes(&self, off: u64, len: u64) -> Result<Vec<u8>> {
        let p = self.ptr(off, len, 1)?;
        let mut out = vec![0u8; len as usize];
        // SAFETY: checked `len` in-bounds bytes at `p`; `out` is a fresh
        // allocation of the same length.
        unsafe { core::ptr::copy_nonoverlapping(p, out.as_mut_ptr(), len as usize) };
        Ok(out)
    }

    /// Calls `f` with a view of the `len` bytes at `off`.
    ///
    /// Only for metadata that no one writes while the caller holds the
    /// header lock (object names, layout descriptions): the view must not
    /// alias a concurrent write.
    pub(crate) fn with_bytes<R>(
        &self,
        off: u64,
        len: u64,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        let p = self.ptr(off, len, 1)?;
        // SAFETY: `ptr` checked `len` in-bounds bytes; they are metadata
        // written once before publication and only read under the header
        // lock, so the temporary slice aliases no write; it does not escape
        // `f`.
        let view = unsafe { core::slice::from_raw_parts(p, len as usize) };
        Ok(f(view))
    }

    /// `true` if the `bytes.len()` bytes at `off` equal `bytes`.
    pub(crate) fn bytes_eq(&self, off: u64, bytes: &[u8]) -> Result<bool> {
        self.with_bytes(off, bytes.len() as u64, |found| found == bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heap(words: usize) -> (Vec<u64>, Mem) {
        let mut buf = vec![0u64; words];
        let base = NonNull::new(buf.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: the Vec's buffer is valid for `words * 8` bytes, 8-aligned,
        // and outlives the Mem in each test (returned together).
        let mem = unsafe { Mem::new(base, words * 8) };
        (buf, mem)
    }

    #[test]
    fn out_of_bounds_and_misaligned_offsets_are_errors() {
        let (_buf, mem) = heap(4);
        assert!(mem.u64(24).is_ok());
        assert!(matches!(mem.u64(32), Err(Error::Corrupted { .. })));
        assert!(matches!(mem.u64(4), Err(Error::Corrupted { .. })));
        assert!(matches!(
            mem.u64(u64::MAX - 3),
            Err(Error::Corrupted { .. })
        ));
        assert!(mem.read_bytes(30, 3).is_err());
    }

    #[test]
    fn values_round_trip() {
        let (_buf, mem) = heap(4);
        mem.set_u64(8, 0xdead_beef).unwrap();
        mem.set_u32(16, 7).unwrap();
        mem.set_u16(20, 9).unwrap();
        mem.write_bytes(22, b"hi").unwrap();
        assert_eq!(mem.u64(8).unwrap(), 0xdead_beef);
        assert_eq!(mem.u32(16).unwrap(), 7);
        assert_eq!(mem.u16(20).unwrap(), 9);
        assert!(mem.bytes_eq(22, b"hi").unwrap());
        assert_eq!(mem.read_bytes(22, 2).unwrap(), b"hi");
    }
}
