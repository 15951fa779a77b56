//! [`ShmString`]: a growable UTF-8 string in a store.

use core::fmt;

use super::raw::RawBuf;
use super::{Ref, ShmVec};
use crate::layout::{LayoutKind, ShmMovable, ShmSafe, TypeLayout};
use crate::{Error, Result, Store};

/// A growable UTF-8 string in a store: a [`ShmVec<u8>`](ShmVec) whose bytes
/// are checked to be UTF-8 each time they are read as a `str` (another
/// process may have written them).
///
/// ```
/// # fn main() -> shmstore::Result<()> {
/// # let name = format!("doc-string-{}", std::process::id());
/// # let store = shmstore::Store::create(&name, 1 << 20)?;
/// use shmstore::{ShmMutex, ShmString};
/// let title = store.get_or_insert_with("title", || ShmMutex::new(ShmString::new()))?;
/// let mut t = title.lock()?;
/// t.push_str("hello")?;
/// t.push_str(", world")?;
/// assert_eq!(&*t.as_str()?, "hello, world");
/// t.set("bye")?;
/// assert_eq!(t.as_str()?, "bye");
/// # drop(t);
/// # shmstore::Store::unlink(&name)?;
/// # Ok(())
/// # }
/// ```
///
/// # Layout
///
/// As a `ShmVec<u8>` (24 bytes, align 8), named `ShmString`, with no
/// parameters.
#[repr(C)]
#[derive(Default)]
pub struct ShmString {
    bytes: ShmVec<u8>,
}

impl ShmString {
    /// An empty string bound to no store (see [`ShmVec::new`]).
    pub const fn new() -> Self {
        ShmString {
            bytes: ShmVec::new(),
        }
    }

    /// An empty string that allocates from `store`.
    pub fn new_in(store: &Store) -> Self {
        ShmString {
            bytes: ShmVec::new_in(store),
        }
    }

    /// An empty string bound to the store with id `store_id`.
    pub(crate) fn bound(store_id: u64) -> ShmString {
        ShmString {
            bytes: ShmVec::bound(store_id),
        }
    }

    /// A copy of `s` in `store`.
    pub fn from_str_in(store: &Store, s: &str) -> Result<Self> {
        let mut out = ShmString::new_in(store);
        out.push_str(s)?;
        Ok(out)
    }

    /// Length in bytes.
    pub fn len(&self) -> Result<usize> {
        self.bytes.len()
    }

    /// `true` if empty.
    pub fn is_empty(&self) -> Result<bool> {
        self.bytes.is_empty()
    }

    /// The text, without copying; [`Error::Corrupted`] if the bytes are not
    /// UTF-8.
    pub fn as_str(&self) -> Result<Ref<'_, str>> {
        let bytes = self.bytes.as_slice()?;
        if let Err(e) = core::str::from_utf8(&bytes) {
            return Err(Error::corrupted(format!(
                "ShmString holds invalid UTF-8: {e}"
            )));
        }
        // The check above passed for these very bytes, which no one writes
        // while `&self` lives.
        Ok(Ref::map(bytes, |b| {
            core::str::from_utf8(b).unwrap_or_default()
        }))
    }

    /// The bytes.
    pub fn as_bytes(&self) -> Result<Ref<'_, [u8]>> {
        self.bytes.as_slice()
    }

    /// Appends `s`.
    pub fn push_str(&mut self, s: &str) -> Result<()> {
        self.bytes.extend_from_slice(s.as_bytes())
    }

    /// Appends `c`.
    pub fn push(&mut self, c: char) -> Result<()> {
        self.push_str(c.encode_utf8(&mut [0; 4]))
    }

    /// Replaces the text with `s` (reusing the buffer when it is large
    /// enough).
    pub fn set(&mut self, s: &str) -> Result<()> {
        self.bytes.clear()?;
        self.push_str(s)
    }

    /// Empties the string (the buffer is kept).
    pub fn clear(&mut self) -> Result<()> {
        self.bytes.clear()
    }

    /// A copy of the text in this process.
    pub fn to_string_lossy(&self) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.bytes.as_slice()?).into_owned())
    }
}

impl fmt::Debug for ShmString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_str() {
            Ok(s) => fmt::Debug::fmt(&*s, f),
            Err(e) => write!(f, "ShmString(<{e}>)"),
        }
    }
}

// The raw state's layout must be the vector's.
const _: () = assert!(core::mem::size_of::<ShmString>() as u64 == super::raw::RAW_SIZE);
const _: () = assert!(core::mem::size_of::<RawBuf>() as u64 == super::raw::RAW_SIZE);

// SAFETY: a `ShmVec<u8>` (see its impl: offsets only, a `Drop` that frees
// only its own buffer, every bit pattern valid, atomics for mutation
// through `&Self`); `as_str` checks UTF-8 before a `&str` exists. Its own
// layout name, so a string and a vector of bytes are different types.
unsafe impl ShmSafe for ShmString {
    const LAYOUT: &'static TypeLayout = &TypeLayout {
        name: "ShmString",
        size: core::mem::size_of::<Self>(),
        align: core::mem::align_of::<Self>(),
        kind: LayoutKind::Container { params: &[] },
    };
}

// SAFETY: as for `ShmVec`.
unsafe impl ShmMovable for ShmString {}
