//! Position-independent data: growable containers and owning relative
//! pointers that live in a store and allocate from its arena.
//!
//! - [`ShmVec<T>`]: a growable array; [`ShmString`]: a growable UTF-8
//!   string; [`ShmMap<K, V>`]: a hash map (keys: integers, fixed byte arrays,
//!   [`ShmString`]); [`RelPtr<T>`]: an owning, nullable pointer to one `T`
//!   (like a `Box`).
//! - [`FixedVec<T, N>`] and [`FixedString<N>`]: the same without allocation,
//!   inline.
//!
//! They are ordinary [`ShmSafe`](crate::ShmSafe) types: a derived struct may
//! hold them, and so may a [`ShmMutex`](crate::ShmMutex):
//!
//! ```
//! use shmstore::{ShmMutex, ShmSafe, ShmString, ShmVec, Store};
//!
//! #[derive(ShmSafe)]
//! #[repr(C)]
//! struct Job {
//!     id: u64,
//!     name: ShmString,
//!     tags: ShmVec<u32>,
//! }
//!
//! # fn main() -> shmstore::Result<()> {
//! # let name = format!("doc-containers-{}", std::process::id());
//! let store = Store::open_or_create(&name, 1 << 20)?;
//! // A list that grows in place, behind a lock shared by every process:
//! let jobs = store.get_or_insert_with("jobs", || ShmMutex::new(ShmVec::<Job>::new()))?;
//! {
//!     let mut jobs = jobs.lock()?;
//!     jobs.push(Job {
//!         id: 1,
//!         name: ShmString::from_str_in(&store, "compile")?,
//!         tags: ShmVec::from_slice_in(&store, &[7, 9])?,
//!     })?;
//!     // Or fill in place, through the guard:
//!     jobs.push(Job { id: 2, name: ShmString::new(), tags: ShmVec::new() })?;
//!     let mut last = jobs.last_mut()?.expect("just pushed");
//!     last.name.push_str("link")?;
//!     last.tags.push(3)?;
//! }
//! let jobs = jobs.lock()?;
//! assert_eq!(jobs.len()?, 2);
//! let second = jobs.get(1)?.expect("two jobs");
//! assert_eq!(second.name.as_str()?, "link");
//! assert_eq!(second.tags.as_slice()?, &[3][..]);
//! # drop(second);
//! # drop(jobs);
//! # Store::unlink(&name)?;
//! # Ok(())
//! # }
//! ```
//!
//! # Where a container's memory comes from
//!
//! A container holds *offsets* into its store (position-independent: every
//! process maps the store at its own address), the id of the store it
//! allocates from, and a random token that its buffers carry too. It finds
//! its store from its own address when it lives in a store's segment, and
//! from the store id otherwise (a value built on the stack before `insert`;
//! the store must be open in this process). So no operation needs a
//! `&Store` argument, except creating a container outside a store
//! (`new_in`, `from_str_in`, ...): `ShmVec::new()` is not bound to any store
//! until it first allocates inside one.
//!
//! Every operation checks, before it touches memory, that the buffer is an
//! allocated block of its store holding this container's token and element
//! type, with room for its length; a container moved into another store's
//! segment (by `mem::swap` through two guards) refuses with
//! [`Error::ForeignContainer`](crate::Error::ForeignContainer) (and so does
//! `insert` of a value holding one), a buffer that records another element
//! type is an [`Error::TypeMismatch`](crate::Error::TypeMismatch) naming
//! both, and a container whose buffer was reclaimed gets
//! [`Error::Corrupted`](crate::Error) — never another container's memory,
//! never a reinterpretation.
//!
//! # Ownership, drops and leaks
//!
//! A container owns its buffer like a `Vec` does: dropping it (replacing it
//! through a guard, `*guard = ...`, or letting a value built on the stack go
//! out of scope) frees its buffer and drops its elements. The store never
//! drops values in a segment: when an object is removed (and its last
//! handle is dropped), the store frees its containers' buffers by walking
//! the object's recorded layout, in any process, even one without the Rust
//! type.
//!
//! What a crash can cost is an unreachable block — an operation killed at
//! any instruction leaves its container valid: a push writes the element
//! before it publishes the new length, growth copies into a new buffer and
//! switches to it with one word before freeing the old one. So can a value
//! lost without its `Drop` (`mem::forget`, a process killed while building
//! one). [`Store::check`](crate::Store::check) reports unreachable buffers
//! and [`Store::collect`](crate::Store::collect) frees them, except those a
//! live process may still be using (buffers of a value it is building, or
//! of a container it moved out through a guard, which it marks as its own
//! until the value is published), and nothing at all while a mutex hides
//! part of a value. The `jobs` example kills a process in the middle of an
//! update and reclaims what it left:
//! `cargo run --release --example jobs`.
//!
//! # Reads and writes
//!
//! Reads give `&[T]` / `&str` / `&V` into the segment without copying. A
//! container reached through a [`Handle`](crate::Handle) is read-only; one
//! behind a [`ShmMutex`](crate::ShmMutex) is mutated in place through the
//! guard. Elements whose type has invalid bit patterns are checked each time
//! a slice of them is handed out.

mod ctx;
mod fixed;
pub(crate) mod layout;
pub(crate) mod map;
pub(crate) mod own;
mod pod;
mod raw;
mod rel;
mod string;
mod vec;

pub use fixed::{FixedString, FixedVec};
pub use map::{ShmKey, ShmMap};
pub use pod::Pod;
pub use rel::RelPtr;
pub use string::ShmString;
pub use vec::ShmVec;

use crate::Store;

/// A borrowed view into a store — a slice of a [`ShmVec`], a [`ShmString`]'s
/// `str`, a value of a [`ShmMap`] — that dereferences to the data in place.
///
/// For a container outside its store (a value being built on the stack),
/// the view also keeps the store mapped for as long as it lives.
pub struct Ref<'a, T: ?Sized> {
    value: &'a T,
    _store: Option<Store>,
}

impl<'a, T: ?Sized> Ref<'a, T> {
    pub(crate) fn new(value: &'a T, store: Option<Store>) -> Self {
        Ref {
            value,
            _store: store,
        }
    }

    /// A view of a part of this one.
    pub fn map<U: ?Sized>(this: Self, f: impl FnOnce(&'a T) -> &'a U) -> Ref<'a, U> {
        Ref {
            value: f(this.value),
            _store: this._store,
        }
    }

    pub(crate) fn map_opt<U: ?Sized>(
        self,
        f: impl FnOnce(&'a T) -> Option<&'a U>,
    ) -> Option<Ref<'a, U>> {
        let value = f(self.value)?;
        Some(Ref {
            value,
            _store: self._store,
        })
    }
}

impl<T: ?Sized> core::ops::Deref for Ref<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.value
    }
}

impl<T: ?Sized + core::fmt::Debug> core::fmt::Debug for Ref<'_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self.value, f)
    }
}

impl<T: ?Sized + core::fmt::Display> core::fmt::Display for Ref<'_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Display::fmt(self.value, f)
    }
}

impl<T: ?Sized + PartialEq<U>, U: ?Sized> PartialEq<&U> for Ref<'_, T> {
    fn eq(&self, other: &&U) -> bool {
        *self.value == **other
    }
}

/// A mutable view into a store (see [`Ref`]).
pub struct RefMut<'a, T: ?Sized> {
    value: &'a mut T,
    _store: Option<Store>,
}

impl<'a, T: ?Sized> RefMut<'a, T> {
    pub(crate) fn new(value: &'a mut T, store: Option<Store>) -> Self {
        RefMut {
            value,
            _store: store,
        }
    }

    pub(crate) fn map_opt<U: ?Sized>(
        self,
        f: impl FnOnce(&'a mut T) -> Option<&'a mut U>,
    ) -> Option<RefMut<'a, U>> {
        let value = f(self.value)?;
        Some(RefMut {
            value,
            _store: self._store,
        })
    }
}

impl<T: ?Sized> core::ops::Deref for RefMut<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.value
    }
}

impl<T: ?Sized> core::ops::DerefMut for RefMut<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.value
    }
}

impl<T: ?Sized + core::fmt::Debug> core::fmt::Debug for RefMut<'_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(&*self.value, f)
    }
}
