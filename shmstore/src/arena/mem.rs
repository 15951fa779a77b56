//! [`Mem`]: a byte region addressed by checked offsets.
//!
//! Everything the arena reads from a segment goes through here: every access
//! is checked before a pointer is formed, and a failed check is
//! [`Error::Corrupted`] naming the offset. The checks are on the *address*
//! (`base + offset`), with overflow-checked arithmetic:
//!
//! - the range lies inside the region **and** below its *backed* limit: the
//!   bytes from the start that are known to be committed (pages allocated in
//!   `/dev/shm`), so that no corrupted offset can make this process touch a
//!   page that was never committed, which on a full tmpfs would be a
//!   `SIGBUS`, not an error;
//! - the address is aligned for what is read there (the mapping's base is
//!   only page-aligned, so an offset that is a multiple of the alignment is
//!   not enough for alignments above a page).
//!
//! Scalars (the metadata words) are read and written with relaxed atomic
//! operations: other processes write them too (under the header lock), and
//! a process that reads one outside the lock (opening a store another
//! process is still creating, a corrupted segment) must see *some* value,
//! never a data race. On x86-64 and aarch64 these are plain loads and
//! stores. No reference to region bytes is created by this module except
//! the short-lived views of [`Mem::with_bytes`] and the atomics of
//! [`Mem::atomic_u32`].

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering};

use crate::{Error, Result};

/// The largest alignment a value in a store may have: a page. Mappings are
/// page-aligned at whatever address each process gets, so an offset aligned
/// to at most a page is aligned in every process; a larger alignment could
/// not be.
pub(crate) const MAX_ALIGN: u64 = 4096;

/// The unsigned integers metadata is made of, with their atomic twins.
///
/// # Safety
///
/// `Atomic` has the size and alignment of `Self` and holds the same bits
/// (the std atomics guarantee this for their integer types); every bit
/// pattern is a valid value.
unsafe trait Scalar: Copy {
    type Atomic;
    fn load(a: &Self::Atomic) -> Self;
    fn store(a: &Self::Atomic, v: Self);
}

macro_rules! scalar {
    ($t:ty, $a:ty) => {
        // SAFETY: the std atomic integer of the same width has the same size
        // and alignment and the same in-memory representation; unsigned
        // integers accept every bit pattern.
        unsafe impl Scalar for $t {
            type Atomic = $a;
            #[inline(always)]
            fn load(a: &$a) -> $t {
                a.load(Ordering::Relaxed)
            }
            #[inline(always)]
            fn store(a: &$a, v: $t) {
                a.store(v, Ordering::Relaxed)
            }
        }
    };
}
scalar!(u16, AtomicU16);
scalar!(u32, AtomicU32);
scalar!(u64, AtomicU64);

/// The owner of a region's backed limit: a heap-allocated atomic that
/// [`Mem`]s point at. It is reached only through its raw pointer (never
/// through a `Box`, whose uniqueness would invalidate the `Mem`s'
/// pointers), and freed when dropped.
pub(crate) struct Backed(NonNull<AtomicU64>);

// SAFETY: it owns a heap-allocated atomic; sharing and sending it shares
// and sends an `&AtomicU64`, which is Send + Sync.
unsafe impl Send for Backed {}
// SAFETY: as above.
unsafe impl Sync for Backed {}

impl Backed {
    /// A limit of `bytes`.
    pub(crate) fn new(bytes: u64) -> Backed {
        Backed(NonNull::from(Box::leak(Box::new(AtomicU64::new(bytes)))))
    }

    /// The atomic, for [`Mem::new`]: valid as long as `self`.
    pub(crate) fn ptr(&self) -> NonNull<AtomicU64> {
        self.0
    }

    /// The atomic.
    pub(crate) fn get(&self) -> &AtomicU64 {
        // SAFETY: allocated in `new`, freed only in `drop`, never
        // accessed mutably.
        unsafe { self.0.as_ref() }
    }
}

impl Drop for Backed {
    fn drop(&mut self) {
        // SAFETY: made by `Box::leak` in `new` and freed once, here; the
        // owner guarantees no `Mem` using it outlives it.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

/// A region of bytes, shared or not, addressed by offsets from its start.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mem {
    base: NonNull<u8>,
    len: u64,
    /// Bytes from the start known to be backed by committed pages; only
    /// grows. Owned by whoever owns the region (see [`Mem::new`]).
    backed: NonNull<AtomicU64>,
}

// SAFETY: `Mem` is a pointer and a length; all access goes through atomic or
// checked raw reads/writes whose synchronisation is the caller's (the header
// lock), and the constructor's contract requires the region and the backed
// limit to outlive every use.
unsafe impl Send for Mem {}
// SAFETY: as for `Send`.
unsafe impl Sync for Mem {}

impl Mem {
    /// Wraps `len` bytes at `base`, of which the first `backed` (an atomic
    /// the owner raises as it commits pages) may be accessed.
    ///
    /// # Safety
    ///
    /// - `base` is 8-byte aligned and valid for reads and writes of every
    ///   byte below the largest value `backed` holds while this `Mem` or any
    ///   copy of it is used (a mapping of `len` bytes is; so is a private
    ///   copy of a segment's first bytes, whose limit never grows): no
    ///   access reaches past the backed limit (see [`Mem::ptr`]);
    /// - `backed` is valid for as long as this `Mem` or a copy is used, and
    ///   never holds more than `len`;
    /// - no Rust reference to those bytes is held while the arena writes
    ///   them (the arena's callers only form references to published values,
    ///   which the arena no longer writes).
    pub(crate) unsafe fn new(base: NonNull<u8>, len: usize, backed: NonNull<AtomicU64>) -> Mem {
        debug_assert_eq!(base.as_ptr() as usize % 8, 0);
        Mem {
            base,
            len: len as u64,
            backed,
        }
    }

    /// The region's first byte, as an address (for fuzz targets' images).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn base_addr(&self) -> usize {
        self.base.as_ptr() as usize
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The offset of the address `addr`, if it lies inside the region.
    pub(crate) fn offset_of(&self, addr: usize) -> Option<u64> {
        let off = (addr as u64).checked_sub(self.base.as_ptr() as u64)?;
        (off < self.len).then_some(off)
    }

    /// Bytes from the start known to be committed.
    pub(crate) fn backed(&self) -> u64 {
        // SAFETY: `new`'s contract: the atomic outlives every copy of `self`.
        unsafe { self.backed.as_ref() }.load(Ordering::Acquire)
    }

    /// Records that the first `upto` bytes are committed (the caller
    /// committed them, or verified that they are). Never lowers the limit,
    /// never raises it past the region.
    pub(crate) fn raise_backed(&self, upto: u64) {
        // SAFETY: as in `backed`.
        let backed = unsafe { self.backed.as_ref() };
        backed.fetch_max(upto.min(self.len), Ordering::AcqRel);
    }

    /// A pointer to `size` bytes at `off`, checked to lie inside the
    /// region's backed bytes and to be aligned to `align` (a power of two)
    /// *as an address*.
    pub(crate) fn ptr(&self, off: u64, size: u64, align: u64) -> Result<*mut u8> {
        let addr = (self.base.as_ptr() as u64).checked_add(off);
        match (off.checked_add(size), addr) {
            (Some(end), Some(addr))
                if end <= self.backed() && align.is_power_of_two() && addr % align == 0 =>
            {
                // SAFETY: `off + size <= backed <= len`, so `off` is inside
                // (or one past) the bytes `new` vouched for (every byte
                // below the backed limit), and fits in usize.
                Ok(unsafe { self.base.as_ptr().add(off as usize) })
            }
            _ => Err(Error::corrupted(format!(
                "offset {off:#x} (+{size} bytes, align {align}) lies outside the {} committed bytes of the {}-byte region or is misaligned",
                self.backed(),
                self.len
            ))),
        }
    }

    /// Reads the scalar at `off`.
    #[inline]
    fn read<T: Scalar>(&self, off: u64) -> Result<T> {
        let size = core::mem::size_of::<T>() as u64;
        let p = self.ptr(off, size, size)?;
        // SAFETY: `ptr` checked `size_of::<T>()` backed bytes at an address
        // aligned to it, which `T::Atomic` (same size and alignment, see
        // `Scalar`) may view; every process accesses metadata words only
        // through these atomics, and the region outlives `self`.
        Ok(T::load(unsafe { &*p.cast::<T::Atomic>() }))
    }

    /// Writes the scalar at `off`.
    #[inline]
    fn write<T: Scalar>(&self, off: u64, v: T) -> Result<()> {
        let size = core::mem::size_of::<T>() as u64;
        let p = self.ptr(off, size, size)?;
        // SAFETY: as in `read`.
        T::store(unsafe { &*p.cast::<T::Atomic>() }, v);
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

    /// The `u32` at `off` as an atomic, for words read with an ordering
    /// stronger than relaxed (the init state).
    pub(crate) fn atomic_u32(&self, off: u64) -> Result<&AtomicU32> {
        let p = self.ptr(off, 4, 4)?;
        // SAFETY: checked 4 backed bytes aligned for AtomicU32; the word is
        // only ever accessed atomically by every process, and the region
        // outlives `self` (constructor contract).
        Ok(unsafe { &*p.cast::<AtomicU32>() })
    }

    /// The `u64` at `off` as an atomic, for words read with an ordering
    /// stronger than relaxed (the magic).
    pub(crate) fn atomic_u64(&self, off: u64) -> Result<&AtomicU64> {
        let p = self.ptr(off, 8, 8)?;
        // SAFETY: checked 8 backed bytes aligned for AtomicU64; the word is
        // only ever accessed atomically by every process, and the region
        // outlives `self` (constructor contract).
        Ok(unsafe { &*p.cast::<AtomicU64>() })
    }

    /// Reads `N` consecutive `u64` words at `off` after one check (bounds,
    /// backed limit, alignment), each atomically.
    /// Returns them with a pointer to the first, checked for all `N`.
    pub(crate) fn words<const N: usize>(&self, off: u64) -> Result<([u64; N], *mut AtomicU64)> {
        let p = self.ptr(off, 8 * N as u64, 8)?.cast::<AtomicU64>();
        let mut out = [0u64; N];
        for (i, w) in out.iter_mut().enumerate() {
            // SAFETY: `ptr` checked `8 * N` backed bytes at `p`, 8-aligned:
            // word `i < N` lies inside; metadata words are only accessed
            // atomically, and the region outlives `self`.
            *w = unsafe { &*p.add(i) }.load(Ordering::Relaxed);
        }
        Ok((out, p))
    }

    /// Copies `bytes` to `off`.
    pub(crate) fn write_bytes(&self, off: u64, bytes: &[u8]) -> Result<()> {
        let p = self.ptr(off, bytes.len() as u64, 1)?;
        // SAFETY: checked `bytes.len()` backed bytes at `p`; `bytes` is a
        // Rust slice, so it cannot overlap the unreferenced region bytes.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len()) };
        Ok(())
    }

    /// Fills `len` bytes at `off` with zero.
    pub(crate) fn zero(&self, off: u64, len: u64) -> Result<()> {
        let p = self.ptr(off, len, 1)?;
        // SAFETY: checked `len` backed bytes at `p`.
        unsafe { core::ptr::write_bytes(p, 0, len as usize) };
        Ok(())
    }

    /// Copies `len` bytes at `off` out into a `Vec`.
    pub(crate) fn read_bytes(&self, off: u64, len: u64) -> Result<Vec<u8>> {
        let p = self.ptr(off, len, 1)?;
        let mut out = vec![0u8; len as usize];
        // SAFETY: checked `len` backed bytes at `p`; `out` is a fresh
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
        // SAFETY: `ptr` checked `len` backed bytes; they are metadata
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

/// A heap buffer laid out like a mapping, for tests of the arena alone:
/// page-aligned (or at a chosen distance from a page boundary, to show
/// what happens where a mapping's base is only page-aligned), zeroed, all
/// of it backed.
#[cfg(test)]
pub(crate) struct HeapRegion {
    alloc: NonNull<u8>,
    layout: std::alloc::Layout,
    skew: usize,
    len: usize,
    backed: Backed,
}

#[cfg(test)]
impl HeapRegion {
    /// `len` zeroed bytes starting at a page boundary.
    pub(crate) fn new(len: usize) -> HeapRegion {
        HeapRegion::skewed(len, 0)
    }

    /// `len` zeroed bytes starting `skew` bytes (a multiple of 8) after a
    /// page boundary.
    pub(crate) fn skewed(len: usize, skew: usize) -> HeapRegion {
        assert_eq!(skew % 8, 0);
        let layout =
            std::alloc::Layout::from_size_align(len + skew, MAX_ALIGN as usize).expect("layout");
        // SAFETY: the layout has a non-zero size (len + skew > 0 in every
        // test) and a valid power-of-two alignment.
        let alloc = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).expect("memory");
        HeapRegion {
            alloc,
            layout,
            skew,
            len,
            backed: Backed::new(len as u64),
        }
    }

    /// A `Mem` over the buffer.
    pub(crate) fn mem(&self) -> Mem {
        // SAFETY: `skew <= layout.size()`, so the add stays inside the
        // allocation.
        let base = unsafe { NonNull::new_unchecked(self.alloc.as_ptr().add(self.skew)) };
        // SAFETY: the allocation holds `len` bytes after `base`, 8-aligned
        // (skew is a multiple of 8 from a page boundary); it and `backed`
        // live as long as `self`, and every test drops its `Mem`s before the
        // `HeapRegion`.
        unsafe { Mem::new(base, self.len, self.backed.ptr()) }
    }
}

#[cfg(test)]
impl Drop for HeapRegion {
    fn drop(&mut self) {
        // SAFETY: allocated in `skewed` with this very layout, freed once.
        unsafe { std::alloc::dealloc(self.alloc.as_ptr(), self.layout) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heap(words: usize) -> (HeapRegion, Mem) {
        let region = HeapRegion::new(words * 8);
        let mem = region.mem();
        (region, mem)
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
        assert!(mem.ptr(u64::MAX, 1, 1).is_err());
        assert!(mem.ptr(0, 8, 3).is_err(), "not a power of two");
    }

    #[test]
    fn alignment_is_checked_on_the_address_not_the_offset() {
        // A base 8 bytes past a page boundary, as a mapping whose base is
        // only 8-aligned for the purpose of this check: offset 8192 is a
        // multiple of 4096, but base + 8192 is not.
        let region = HeapRegion::skewed(3 * 4096, 8);
        let mem = region.mem();
        assert!(matches!(
            mem.ptr(8192, 64, 4096),
            Err(Error::Corrupted { .. })
        ));
        assert!(
            mem.ptr(8192 - 8, 64, 4096).is_ok(),
            "base + offset is aligned"
        );
        assert!(mem.ptr(8192, 8, 8).is_ok());
        // Page-aligned base: offset alignment is address alignment.
        let (_r, mem) = heap(1024);
        assert!(mem.ptr(4096, 64, 4096).is_ok());
        assert!(mem.ptr(4096 + 64, 64, 128).is_err());
    }

    #[test]
    fn bytes_past_the_backed_limit_are_never_touched() {
        let region = HeapRegion::new(4 * 4096);
        let mem = region.mem();
        region.backed.get().store(4096, Ordering::Relaxed);
        assert!(mem.u64(4096 - 8).is_ok());
        assert!(matches!(mem.u64(4096), Err(Error::Corrupted { .. })));
        assert!(mem.read_bytes(4000, 200).is_err());
        mem.raise_backed(8192);
        assert!(mem.u64(4096).is_ok());
        mem.raise_backed(100);
        assert_eq!(mem.backed(), 8192, "never lowered");
        mem.raise_backed(u64::MAX);
        assert_eq!(mem.backed(), 4 * 4096, "never past the region");
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
