//! [`Store`]: the typed public API over a mapped segment.
//!
//! A store is one POSIX shared-memory segment holding a header, an
//! allocator, a directory of named objects and a type registry. Every
//! process that opens the same name maps the same bytes; a [`Handle`] is a
//! zero-copy view of one object, checked against the type it was asked for.
//!
//! ```
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use shmstore::{ShmMutex, ShmSafe, Store};
//!
//! #[derive(ShmSafe)]
//! #[repr(C)]
//! struct Point {
//!     x: f64,
//!     y: f64,
//! }
//!
//! # fn main() -> shmstore::Result<()> {
//! # let name = format!("doc-store-{}", std::process::id());
//! let store = Store::open_or_create(&name, 1 << 20)?;
//! store.insert("origin", Point { x: 0.0, y: 0.0 })?;
//! assert_eq!(store.get::<Point>("origin")?.y, 0.0);
//!
//! let hits = store.get_or_insert_with("hits", || AtomicU64::new(0))?;
//! hits.fetch_add(1, Ordering::Relaxed);
//!
//! let state = store.get_or_insert_with("state", || ShmMutex::new(0u64))?;
//! *state.lock()? += 1;
//!
//! store.insert_slice("samples", &[1.5f32; 64])?;
//! assert_eq!(store.get_slice::<f32>("samples")?.len(), 64);
//!
//! // The wrong type is an error that shows both layouts.
//! assert!(matches!(store.get::<u32>("origin"), Err(shmstore::Error::TypeMismatch { .. })));
//! Store::unlink(&name)?;
//! # Ok(())
//! # }
//! ```

use core::fmt;
use core::ops::Deref;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::arena::dir::{hash_name, Found};
use crate::arena::header::*;
use crate::arena::mem::{Mem, MAX_ALIGN};
use crate::arena::procs::Owner;
use crate::arena::{Arena, Record, Stats};
use crate::region::{self, Region, SegmentName};
use crate::sync::held;
use crate::sys::proc::{self, Liveness, StartTime};
use crate::sys::pthread::{Acquired, RawMutex, PTHREAD_MUTEX_SIZE};
use crate::{Error, Result, ShmSafe, TypeLayout};

mod check;
mod collect;
mod handle;
#[cfg(feature = "fuzzing")]
mod heap;
mod mappings;
mod objects;
mod open;
mod options;
mod pins;
mod raw;
#[cfg(test)]
mod tests;

pub(crate) use mappings::{describe_address, located, store_with_id};

pub use check::CheckReport;
pub use collect::CollectReport;
pub use handle::{Handle, SliceHandle};
#[cfg(feature = "fuzzing")]
pub(crate) use heap::HeaderLockMode;
pub use objects::Entry;
pub use options::StoreOptions;

/// The longest object name, in bytes.
pub const MAX_OBJECT_NAME: usize = 255;
/// The smallest capacity a store can be created with.
pub const MIN_CAPACITY: u64 = 64 << 10;
/// Values of at most this many bytes are copied in while the header lock is
/// held; larger ones are copied between reserving and publishing, so that a
/// big slice never holds other processes up.
const COPY_UNDER_LOCK: u64 = 64 << 10;

const _: () = assert!(core::mem::size_of::<RawMutex>() as u64 <= LOCK_SPACE);
const _: () = assert!(core::mem::align_of::<RawMutex>() as u64 <= 64);

/// A typed object store in a POSIX shared-memory segment.
///
/// Cheap to clone (an `Arc`); `Send + Sync`. Handles keep the mapping alive,
/// so a `Store` can be dropped while handles are still used.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    region: Region,
    mem: Mem,
    /// This process's slot in the store's process table ([`NO_SLOT`] if
    /// the table was full: pins are then not released if we die).
    slot: AtomicU32,
    /// The store's id (header word), read once it is known to be valid.
    store_id: AtomicU64,
}

const NO_SLOT: u32 = u32::MAX;

/// Nested blocks freed per committed step (each logs about a dozen words;
/// the journal holds 1024).
const NESTED_FREES_PER_STEP: usize = 32;

impl Inner {
    fn header_lock(&self) -> Result<&RawMutex> {
        let p = self.mem.ptr(OFF_LOCK, LOCK_SPACE, 8)?;
        // SAFETY: the lock lies inside the mapped header page, aligned, and
        // was initialised by the creator before the state became ready
        // (checked when the store was opened); the mapping outlives `self`.
        Ok(unsafe { &*p.cast::<RawMutex>() })
    }

    fn lock(&self) -> Result<HeaderGuard<'_>> {
        let lock = self.header_lock()?;
        let state = lock.lock()?;
        let guard = HeaderGuard {
            lock,
            held: Some(held::note_locked(lock as *const RawMutex as usize)),
        };
        let commit = |from: u64, to: u64| self.region.commit(from, to - from);
        let arena = Arena::new(self.mem, &commit);
        // Pages another process committed since this one last looked are
        // committed here too before anything (the journal's entries
        // included) is read from them.
        arena.sync_backed()?;
        if let Acquired::OwnerDied = state {
            // The dead owner may have been half-way through an operation:
            // undo it from the journal, check what the allocator reaches,
            // and only then mark the lock consistent. If this process dies
            // during recovery, the next locker is told the owner died and
            // starts over. If recovery fails (metadata we cannot repair),
            // the lock is released still inconsistent, which makes it
            // unrecoverable: every later operation then reports the store
            // as corrupted instead of running over broken metadata.
            arena.rollback()?;
            arena.validate_header()?;
            arena.check_heap()?;
            let hdr = Header(&arena);
            hdr.set_recoveries(hdr.recoveries()?.saturating_add(1))?;
            lock.make_consistent()?;
        } else if arena.journal_len()? != 0 {
            // A dead holder's entries come with EOWNERDEAD; entries without
            // it were left by an operation that unwound (a panic inside
            // the arena, which would be a bug) or by corruption. Undo them
            // all the same.
            arena.rollback()?;
        }
        Ok(guard)
    }

    /// Runs `f` over the arena with the header lock held, as one
    /// operation: if `f` succeeds its writes are committed, if it fails (or
    /// the process dies before the commit) they are all undone.
    ///
    /// When the allocator finds room only by merging the blocks parked on
    /// its fast lists, the operation is undone, the parked blocks are
    /// merged (in short committed steps: merging changes no contents) and
    /// the operation runs once more; so `f` may run twice.
    pub(crate) fn with_arena<R>(&self, f: impl FnMut(&Arena<'_>) -> Result<R>) -> Result<R> {
        let (r, frees) = self.with_arena_once(f)?;
        // Records freed by the operation leave their containers' buffers to
        // free, in committed steps of a bounded size each (each step checks
        // every block's header and token again).
        for chunk in frees.chunks(NESTED_FREES_PER_STEP) {
            let _ = self.with_arena_once(|a| {
                for n in chunk {
                    a.free_nested(n.blk, n.fp, n.token)?;
                }
                Ok(())
            });
        }
        Ok(r)
    }

    /// One operation under the header lock (see [`Inner::with_arena`]);
    /// returns also the nested blocks it left to free.
    fn with_arena_once<R>(
        &self,
        mut f: impl FnMut(&Arena<'_>) -> Result<R>,
    ) -> Result<(R, Vec<crate::arena::walk::NestedRef>)> {
        let _guard = self.lock()?;
        let commit = |from: u64, to: u64| self.region.commit(from, to - from);
        let arena = Arena::journaled(self.mem, &commit);
        arena.validate_header()?;
        let mut consolidated = false;
        loop {
            match f(&arena) {
                Ok(r) => {
                    arena.commit_journal()?;
                    return Ok((r, arena.take_nested_frees()));
                }
                Err(e) => {
                    // The records it freed are restored: their containers
                    // stay.
                    drop(arena.take_nested_frees());
                    arena.rollback()?;
                    if consolidated || !arena.take_consolidation_request() {
                        return Err(e);
                    }
                    arena.consolidate_in_steps()?;
                    consolidated = true;
                }
            }
        }
    }

    /// The store's state over a mapped region.
    fn new(region: Region) -> Inner {
        // SAFETY: the region maps `len` bytes at its page-aligned base, and
        // its backed limit (never above `len`) lives in a box the region
        // owns; `Inner` owns the region, so both outlive every `Mem` copy
        // (handles hold the `Inner`). The arena forms no references into the
        // region; values are referenced only once published.
        let mem = unsafe { Mem::new(region.base(), region.len(), region.backed()) };
        Inner {
            region,
            mem,
            slot: AtomicU32::new(NO_SLOT),
            store_id: AtomicU64::new(0),
        }
    }

    /// The store's id (0 until the store was validated or created).
    pub(crate) fn store_id(&self) -> u64 {
        self.store_id.load(Ordering::Relaxed)
    }

    /// The word a nested block's pending mark holds for this process: its
    /// process slot plus one (all ones without a slot) and its pid (see
    /// `arena::nested`).
    pub(crate) fn pending_word(&self) -> u64 {
        let slot = self.slot().map_or(u32::MAX as u64, |s| s as u64 + 1);
        slot << 32 | std::process::id() as u64
    }

    /// The bytes of this store's mapping, checked.
    pub(crate) fn mem(&self) -> Mem {
        self.mem
    }

    /// The store's name, with its leading slash.
    pub(crate) fn name(&self) -> &str {
        self.region.name().as_str()
    }

    /// Commits here whatever the header says another process committed, so
    /// that this process may read it (see `Arena::sync_backed`). Needs no
    /// lock: it reads one word atomically, and committing is idempotent.
    pub(crate) fn sync_backed(&self) -> Result<()> {
        if self.mem.u64(OFF_COMMITTED)? <= self.mem.backed() {
            return Ok(());
        }
        let commit = |from: u64, to: u64| self.region.commit(from, to - from);
        Arena::new(self.mem, &commit).sync_backed()
    }

    fn slot(&self) -> Option<u32> {
        Some(self.slot.load(Ordering::Relaxed)).filter(|&s| s != NO_SLOT)
    }
}

impl Drop for Inner {
    /// Gives this process's slot back (no handle exists any more: each
    /// holds the `Inner`). Errors cannot be reported from drop; a slot left
    /// behind is released by the next process that finds us gone. The
    /// region is unmapped afterwards, unless a thread may still hold a lock
    /// inside it (see [`Region`]'s docs).
    fn drop(&mut self) {
        mappings::unregister(self);
        if let Some(slot) = self.slot() {
            let owner = own_identity();
            while let Ok(true) = self.with_arena(|a| a.release_step(slot, owner)) {}
        }
    }
}

/// This process as the process table knows it. Its start time is
/// [`StartTime::Unknown`] if `/proc/self/stat` could not be read the first
/// time it was asked for (recorded as the "unknown" sentinel word, never as
/// 0): the process then counts as alive for as long as its pid exists.
pub(super) fn own_identity() -> Owner {
    Owner {
        pid: std::process::id(),
        pidns: proc::own_pid_namespace(),
        start: proc::own_start_time(),
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("name", &self.name())
            .field("capacity", &self.inner.mem.len())
            .finish()
    }
}

/// Holds the header lock; unlocks on drop.
struct HeaderGuard<'a> {
    lock: &'a RawMutex,
    /// This thread's note that it holds the lock (see [`held`]).
    held: Option<held::Held>,
}

impl Drop for HeaderGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: a HeaderGuard exists only while this thread holds the lock
        // (made in `Store::lock` after a successful lock()).
        unsafe { self.lock.unlock() };
        if let Some(held) = self.held.take() {
            held.released();
        }
    }
}

pub(super) fn validate_object_name(name: &str) -> Result<&[u8]> {
    let reason = if name.is_empty() {
        "an object name must not be empty"
    } else if name.len() > MAX_OBJECT_NAME {
        "an object name must be at most 255 bytes"
    } else if name.contains('\0') {
        "an object name must not contain NUL"
    } else {
        return Ok(name.as_bytes());
    };
    Err(Error::InvalidName {
        name: name.to_string(),
        reason,
    })
}

impl Store {
    /// Options for creating or opening a store.
    pub fn options() -> StoreOptions {
        StoreOptions::default()
    }

    /// Creates a new store of `capacity` bytes with mode `0o600`.
    /// `name` is `"demo"` or `"/demo"`.
    pub fn create(name: &str, capacity: u64) -> Result<Store> {
        Store::options().capacity(capacity).create(name)
    }

    /// Opens an existing store.
    pub fn open(name: &str) -> Result<Store> {
        Store::options().open(name)
    }

    /// Opens the store, creating it with `capacity` bytes if needed.
    pub fn open_or_create(name: &str, capacity: u64) -> Result<Store> {
        Store::options().capacity(capacity).open_or_create(name)
    }

    /// Removes the store's name; processes that have it open keep their
    /// mapping until they drop it.
    pub fn unlink(name: &str) -> Result<()> {
        region::unlink(&SegmentName::parse(name)?)
    }

    /// The store's name, with its leading slash.
    pub fn name(&self) -> &str {
        self.inner.region.name().as_str()
    }

    pub(super) fn with_arena<R>(&self, f: impl FnMut(&Arena<'_>) -> Result<R>) -> Result<R> {
        self.inner.with_arena(f)
    }

    /// The store's state (for containers).
    pub(crate) fn inner_ref(&self) -> &Inner {
        &self.inner
    }

    /// A store over `inner`, known to this process's table of mappings.
    fn from_inner(inner: Inner) -> Store {
        let store = Store {
            inner: Arc::new(inner),
        };
        mappings::register(&store.inner);
        store
    }
}
