//! shmstore: a typed, zero-copy object store in POSIX shared memory.
//!
//! Derive [`ShmSafe`] on a `#[repr(C)]` type, open the same named [`Store`]
//! from several processes, and they all read and update the same bytes: no
//! serialization, no copy, no server.
//!
//! - [`ShmSafe`] and `#[derive(ShmSafe)]`: what may live in shared memory,
//!   with its compile-time [`TypeLayout`] and fingerprint; [`ShmMovable`]
//!   for the types that may be moved or overwritten once stored.
//! - [`Store`]: create, open and unlink stores; insert, get, remove named
//!   objects and slices. [`StoreOptions`] sets capacity, mode, patience,
//!   and whether the store goes away with its last user
//!   ([`StoreOptions::remove_when_unused`]).
//! - [`inspect`]: looking without touching — [`Store::list`] (every store
//!   in `/dev/shm`, its processes, its header lock, whether it is in use,
//!   idle or abandoned) and [`Store::inspect`] (objects, holders, values
//!   read through their recorded layouts, the consistency check), from
//!   read-only copies; what the `shmstore` command shows.
//! - [`Handle`] / [`SliceHandle`]: zero-copy views that deref to `&T` /
//!   `&[T]` and pin what they point at.
//! - [`ShmMutex`]: a robust process-shared mutex; a holder's death is
//!   [`Error::OwnerDied`] for every later locker until the data is marked
//!   consistent. [`ShmRwLock`], [`ShmCondvar`], [`ShmEvent`],
//!   [`ShmSemaphore`] and [`ShmQueue`]: the rest of [`sync`], none of which
//!   a dead process can wedge; [`Store::wait_for`] waits for an object to
//!   appear.
//! - [`Error`]: one enum, a variant per cause.
//! - `shmstore::fuzzing` (feature `fuzzing`, off by default): a one-line
//!   cargo-fuzz target for your own `ShmSafe` types, `check_type::<T>`, and
//!   the entry points of the repository's fuzz targets (`fuzz/README.md`).
//!
//! ```
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use shmstore::{ShmMutex, ShmSafe, Store};
//!
//! #[derive(ShmSafe)]
//! #[repr(C)]
//! struct Reading {
//!     sensor: u32,
//!     value: f64,
//! }
//!
//! fn main() -> shmstore::Result<()> {
//!     # let name = format!("doc-crate-{}", std::process::id());
//!     let store = Store::open_or_create(&name, 1 << 20)?;
//!     store.insert("last", Reading { sensor: 7, value: 21.5 })?;
//!     let last = store.get::<Reading>("last")?; // no copy: a view into the segment
//!     assert_eq!(last.sensor, 7);
//!
//!     let count = store.get_or_insert_with("count", || AtomicU64::new(0))?;
//!     count.fetch_add(1, Ordering::Relaxed);
//!     let total = store.get_or_insert_with("total", || ShmMutex::new(0.0f64))?;
//!     *total.lock()? += last.value;
//!
//!     Store::unlink(&name)?;
//!     Ok(())
//! }
//! ```
//!
//! # Capacity costs nothing until used
//!
//! A store's capacity is a sparse reservation: the segment is sized to it
//! when the store is created, but pages are committed (with `fallocate`)
//! only as the heap grows into them. A store created with 64 GiB that
//! holds a few objects uses a few pages of memory; ask for as much as the
//! store may ever need, since it cannot grow later. [`Stats::committed`]
//! tells what it uses.
//!
//! # What safe code can rely on
//!
//! Nothing another process writes into a store can make safe code here
//! reach undefined behaviour: every offset is checked (bounds, committed
//! pages, address alignment) before a pointer is formed, sizes from the
//! segment are compared with the compiler's, and values with invalid bit
//! patterns are checked before a reference exists; a bad segment is an
//! [`Error`]. Locks in a segment are robust: a holder's death is reported
//! ([`Error::OwnerDied`]) until someone marks the data consistent, and a
//! store is never unmapped while this process may still hold a lock in it
//! (a guard passed to `mem::forget`). The processes sharing a store are
//! trusted not to write over a lock's bytes while it is held, and not to
//! shrink the segment.
#![warn(missing_docs)]

mod arena;
pub mod containers;
mod crash;
mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod inspect;
pub mod layout;
pub(crate) mod region;
mod store;
pub mod sync;
pub(crate) mod sys;

pub use arena::Stats;
pub use containers::{
    FixedString, FixedVec, Pod, Ref, RefMut, RelPtr, ShmKey, ShmMap, ShmString, ShmVec,
};
#[cfg(feature = "crash-points")]
#[doc(hidden)]
pub use crash::{crash_after_steps, steps_left};
pub use error::{Error, Result};
pub use layout::{
    FieldLayout, InvalidBitPattern, LayoutKind, LazyLayout, ShmMovable, ShmSafe, TypeLayout,
    VariantLayout,
};
pub use shmstore_derive::ShmSafe;
pub use store::{
    CheckReport, CollectReport, Entry, Handle, SliceHandle, Store, StoreOptions, MAX_OBJECT_NAME,
    MIN_CAPACITY,
};
pub use sync::{
    ShmCondvar, ShmEvent, ShmMutex, ShmMutexGuard, ShmQueue, ShmRwLock, ShmRwLockReadGuard,
    ShmRwLockWriteGuard, ShmSemaphore, WaitTimeoutResult,
};

/// The README's Rust examples, compiled as doctests so that they stay
/// true (`no_run`: the store name `demo` is the reader's, not a test's).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
