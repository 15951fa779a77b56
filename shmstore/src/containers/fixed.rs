//! [`FixedVec<T, N>`] and [`FixedString<N>`]: bounded containers stored
//! inline, without allocation.

use core::fmt;
use core::mem::offset_of;

use crate::layout::{FieldLayout, InvalidBitPattern, LayoutKind, ShmMovable, ShmSafe, TypeLayout};
use crate::{Error, Result};

/// Up to `N` elements of `T`, inline: no allocation, no store needed.
///
/// All `N` slots always hold valid values (unused ones hold `T::default()`),
/// so the whole value is an ordinary `ShmSafe` value: copied in and out,
/// checked byte by byte, with nothing to free.
///
/// ```
/// use shmstore::FixedVec;
/// let mut v = FixedVec::<u32, 4>::new();
/// v.push(1).unwrap();
/// v.push(2).unwrap();
/// assert_eq!(v.as_slice(), &[1, 2]);
/// assert!(v.push(3).and_then(|()| v.push(4)).and_then(|()| v.push(5)).is_err());
/// ```
///
/// # Layout
///
/// `#[repr(C)]`: `len: u64` (at most `N`), then `items: [T; N]`; recorded
/// as a struct named `FixedVec` with those two fields.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FixedVec<T, const N: usize> {
    len: u64,
    items: [T; N],
}

impl<T: ShmMovable + Default, const N: usize> Default for FixedVec<T, N> {
    fn default() -> Self {
        FixedVec::new()
    }
}

impl<T: ShmMovable + Default, const N: usize> FixedVec<T, N> {
    /// An empty vector.
    pub fn new() -> Self {
        FixedVec {
            len: 0,
            items: core::array::from_fn(|_| T::default()),
        }
    }

    /// Elements in use (at most `N`; a larger recorded length is refused by
    /// the byte check before a value is ever read).
    pub fn len(&self) -> usize {
        (self.len as usize).min(N)
    }

    /// `true` if empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements in use.
    pub fn as_slice(&self) -> &[T] {
        &self.items[..self.len()]
    }

    /// The elements in use, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        let n = self.len();
        &mut self.items[..n]
    }

    /// Appends `value`; [`Error::InvalidArgument`] if all `N` slots are in
    /// use.
    pub fn push(&mut self, value: T) -> Result<()> {
        let n = self.len();
        if n == N {
            return Err(Error::InvalidArgument {
                reason: format!("FixedVec is full: it holds at most {N} elements"),
            });
        }
        self.items[n] = value;
        self.len = n as u64 + 1;
        Ok(())
    }

    /// Removes the last element.
    pub fn pop(&mut self) -> Option<T> {
        let n = self.len();
        if n == 0 {
            return None;
        }
        self.len = n as u64 - 1;
        Some(core::mem::take(&mut self.items[n - 1]))
    }

    /// Removes every element.
    pub fn clear(&mut self) {
        while self.pop().is_some() {}
    }
}

impl<T: fmt::Debug, const N: usize> fmt::Debug for FixedVec<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(&self.items[..(self.len as usize).min(N)])
            .finish()
    }
}

// SAFETY: a `u64` and an array of `T: ShmSafe`, `repr(C)`; LAYOUT records
// both fields with their real offsets; `check_bytes` refuses a length above
// `N` and checks every slot; no drop glue beyond `T`'s; nothing in place
// unless `T` has it (then the array's init runs).
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for FixedVec<T, N> {
    const LAYOUT: &'static TypeLayout = &TypeLayout {
        name: "FixedVec",
        size: core::mem::size_of::<Self>(),
        align: core::mem::align_of::<Self>(),
        kind: LayoutKind::Struct {
            transparent: false,
            fields: &[
                FieldLayout {
                    name: "len",
                    offset: offset_of!(Self, len),
                    ty: u64::LAYOUT,
                },
                FieldLayout {
                    name: "items",
                    offset: offset_of!(Self, items),
                    ty: <[T; N]>::LAYOUT,
                },
            ],
        },
    };
    const HAS_INVALID_BIT_PATTERNS: bool = true;
    const IMMOVABLE: bool = T::IMMOVABLE;

    unsafe fn check_bytes(ptr: *const Self) -> core::result::Result<(), InvalidBitPattern> {
        // SAFETY: the caller vouches for `size_of::<Self>()` aligned,
        // initialised bytes at `ptr`; the fields' addresses are inside them.
        let (len, items) = unsafe {
            (
                core::ptr::addr_of!((*ptr).len).read(),
                core::ptr::addr_of!((*ptr).items),
            )
        };
        if len > N as u64 {
            return Err(InvalidBitPattern::new("FixedVec length", len as u128));
        }
        // SAFETY: as above, for the array field.
        unsafe { <[T; N]>::check_bytes(items) }.map_err(|e| e.within(offset_of!(Self, items)))
    }

    unsafe fn init_in_place(ptr: *mut Self) -> Result<()> {
        // SAFETY: the caller's contract, for the array field.
        unsafe { <[T; N]>::init_in_place(core::ptr::addr_of_mut!((*ptr).items)) }
    }
}

// SAFETY: in place only what `T` has.
unsafe impl<T: ShmMovable, const N: usize> ShmMovable for FixedVec<T, N> {}

/// Up to `N` bytes of UTF-8 text, inline.
///
/// ```
/// use shmstore::FixedString;
/// let mut s = FixedString::<16>::new();
/// s.push_str("hello").unwrap();
/// assert_eq!(s.as_str(), "hello");
/// assert!(FixedString::<4>::from_str("too long").is_err());
/// ```
///
/// # Layout
///
/// `#[repr(C)]`: `len: u32` (at most `N`), then `bytes: [u8; N]`; recorded
/// as a struct named `FixedString`. Its byte check refuses a length above
/// `N` and bytes that are not UTF-8.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FixedString<const N: usize> {
    len: u32,
    bytes: [u8; N],
}

impl<const N: usize> Default for FixedString<N> {
    fn default() -> Self {
        FixedString::new()
    }
}

impl<const N: usize> FixedString<N> {
    /// The empty string.
    pub const fn new() -> Self {
        FixedString {
            len: 0,
            bytes: [0; N],
        }
    }

    /// A copy of `s`; [`Error::InvalidArgument`] if it is longer than `N`
    /// bytes.
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(s: &str) -> Result<Self> {
        let mut out = FixedString::new();
        out.push_str(s)?;
        Ok(out)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        let len = (self.len as usize).min(N);
        // A value read out of a store passed its byte check (UTF-8 up to
        // `len`); one built here only ever holds whole `str`s.
        core::str::from_utf8(&self.bytes[..len]).unwrap_or_default()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        (self.len as usize).min(N)
    }

    /// `true` if empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `s`; [`Error::InvalidArgument`] (and nothing appended) if it
    /// does not fit.
    pub fn push_str(&mut self, s: &str) -> Result<()> {
        let len = self.len();
        let end = len
            .checked_add(s.len())
            .filter(|&e| e <= N)
            .ok_or_else(|| Error::InvalidArgument {
                reason: format!("FixedString holds at most {N} bytes"),
            })?;
        self.bytes[len..end].copy_from_slice(s.as_bytes());
        self.len = end as u32;
        Ok(())
    }

    /// Empties the string.
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

impl<const N: usize> fmt::Debug for FixedString<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> fmt::Display for FixedString<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// SAFETY: a `u32` and a byte array, `repr(C)`; LAYOUT records both fields;
// `check_bytes` accepts exactly a length of at most `N` with UTF-8 bytes up
// to it (any bytes after it); no drop glue, nothing in place.
unsafe impl<const N: usize> ShmSafe for FixedString<N> {
    const LAYOUT: &'static TypeLayout = &TypeLayout {
        name: "FixedString",
        size: core::mem::size_of::<Self>(),
        align: core::mem::align_of::<Self>(),
        kind: LayoutKind::Struct {
            transparent: false,
            fields: &[
                FieldLayout {
                    name: "len",
                    offset: offset_of!(Self, len),
                    ty: u32::LAYOUT,
                },
                FieldLayout {
                    name: "bytes",
                    offset: offset_of!(Self, bytes),
                    ty: <[u8; N]>::LAYOUT,
                },
            ],
        },
    };
    const HAS_INVALID_BIT_PATTERNS: bool = true;

    unsafe fn check_bytes(ptr: *const Self) -> core::result::Result<(), InvalidBitPattern> {
        // SAFETY: the caller vouches for `size_of::<Self>()` aligned,
        // initialised bytes at `ptr`; the fields lie inside them.
        let (len, bytes) = unsafe {
            (
                core::ptr::addr_of!((*ptr).len).read(),
                &*core::ptr::addr_of!((*ptr).bytes),
            )
        };
        if len as usize > N {
            return Err(InvalidBitPattern::new("FixedString length", len as u128));
        }
        match core::str::from_utf8(&bytes[..len as usize]) {
            Ok(_) => Ok(()),
            Err(e) => Err(InvalidBitPattern::new(
                "FixedString UTF-8",
                bytes[e.valid_up_to()] as u128,
            )
            .within(offset_of!(Self, bytes) + e.valid_up_to())),
        }
    }
}

// SAFETY: nothing in place.
unsafe impl<const N: usize> ShmMovable for FixedString<N> {}
