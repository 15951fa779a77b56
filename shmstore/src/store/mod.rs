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
mod remove;
#[cfg(test)]
mod tests;
mod wait;

pub(crate) use mappings::{
    describe_address, located, one_pid_namespace_at, store_place, store_with_id,
};

pub(crate) use check::check_arena;
pub use check::CheckReport;
pub use collect::CollectReport;
pub use handle::{Handle, SliceHandle};
#[cfg(feature = "fuzzing")]
pub(crate) use heap::HeaderLockMode;
pub use objects::Entry;
pub use options::StoreOptions;
pub(crate) use remove::{remove_locked, unlink_unlocked, Locked};

/// The longest object name, in bytes.
pub const MAX_OBJECT_NAME: usize = 255;
/// The smallest capacity a store can be created with.
pub const MIN_CAPACITY: u64 = 64 << 10;
/// Values of at most this many bytes are copied in while the header lock is
/// held; larger ones are copied between reserving and publishing, so that a
/// big slice never holds other processes up.
const COPY_UNDER_LOCK: u64 = 64 << 10;

const _: () = assert!(core::mem::size_of::<RawMutex>() as u64 <= MUTEX_SPACE);
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
    /// How long a take of the header lock waits for another holder
    /// ([`StoreOptions::lock_timeout`]); `None`: as long as it takes.
    lock_timeout: Option<Duration>,
}

const NO_SLOT: u32 = u32::MAX;

/// How to take the header lock.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wait {
    /// As long as it takes (a holder that died is recovered from; a lock
    /// word naming no thread is [`Error::Corrupted`]).
    Block,
    /// Until this instant, then give up.
    Until(Instant),
    /// Only if it is free now.
    Try,
}

/// Nested blocks freed per committed step (each logs about a dozen words;
/// the journal holds 1024).
pub(crate) const NESTED_FREES_PER_STEP: usize = 32;

impl Inner {
    fn header_lock(&self) -> Result<&RawMutex> {
        let p = self.mem.ptr(OFF_LOCK, MUTEX_SPACE, 8)?;
        // SAFETY: the lock lies inside the mapped header page, aligned, and
        // was initialised by the creator before the state became ready
        // (checked when the store was opened); the mapping outlives `self`.
        Ok(unsafe { &*p.cast::<RawMutex>() })
    }

    /// Takes the header lock (waiting at most the lock timeout, if the
    /// store has one: [`Error::TimedOut`] then), recovering from a holder
    /// that died.
    fn lock(&self) -> Result<HeaderGuard<'_>> {
        self.lock_how(Wait::Block)?
            .ok_or_else(|| Error::corrupted("an untimed header lock ended without the lock"))
    }

    /// Takes the header lock as `how` says: `Ok(None)` if it was not free
    /// in time ([`Wait::Try`], [`Wait::Until`]); [`Error::TimedOut`] if the
    /// store's lock timeout ran out first (it bounds [`Wait::Block`], and
    /// [`Wait::Until`] when it ends sooner).
    ///
    /// A blocking wait sleeps in slices; between two, a lock word naming a
    /// thread that does not exist (seen twice) is [`Error::Corrupted`]
    /// rather than a wait without end — judged only while the store's
    /// processes share one pid namespace (see
    /// [`RawMutex::lock_until`]).
    fn lock_how(&self, how: Wait) -> Result<Option<HeaderGuard<'_>>> {
        let lock = self.header_lock()?;
        let generation = self.mem.atomic_u64(OFF_LOCK_GEN)?;
        // A store opened with a lock timeout never blocks without end: a
        // blocking wait becomes one until the timeout, then TimedOut.
        // A timed wait ends at the earlier of its own deadline (then
        // `Ok(None)`) and the lock timeout (then TimedOut).
        let (how, timed_out) = match (how, self.lock_timeout) {
            // (A timeout too far to represent is no timeout.)
            (Wait::Block, Some(timeout)) => match Instant::now().checked_add(timeout) {
                Some(bound) => (Wait::Until(bound), Some(timeout)),
                None => (Wait::Block, None),
            },
            (Wait::Until(at), Some(timeout)) => match Instant::now().checked_add(timeout) {
                Some(bound) if bound < at => (Wait::Until(bound), Some(timeout)),
                _ => (Wait::Until(at), None),
            },
            (how, _) => (how, None),
        };
        let judge = || self.one_pid_namespace();
        let state = match how {
            Wait::Try => lock.try_lock()?,
            Wait::Block => lock.lock_until(None, judge)?,
            Wait::Until(at) => lock.lock_until(Some(at), judge)?,
        };
        let Some(state) = state else {
            if let Some(timeout) = timed_out {
                return Err(Error::TimedOut {
                    what: format!(
                        "the header lock of store \"{}\" was held by another process for more \
                         than {timeout:?}",
                        self.name()
                    ),
                });
            }
            return Ok(None);
        };
        // Odd from now on: a holder is (or may be) writing metadata. The
        // release fence orders this store before every metadata write that
        // follows, for a reader that copies the metadata without the lock
        // and reads the generation after an acquire fence (the read-only
        // `inspect` view; see the header's layout, note 3). A previous
        // owner that died left it odd, or even if it died before this
        // step: either way it changes.
        let g = generation.load(Ordering::Relaxed);
        generation.store(g.wrapping_add(1 + (g & 1)), Ordering::Relaxed);
        core::sync::atomic::fence(Ordering::Release);
        let guard = HeaderGuard {
            lock,
            generation,
            held: Some(held::note_locked(lock as *const RawMutex as usize)),
        };
        // This thread's id is in the lock word now, and recovery below may
        // take a while: a process of another pid namespace marks the store
        // mixed first (header note 6). The header page is always mapped,
        // so this cannot fail; were it to, the lock is still handled below.
        let _ = open::note_namespace(&self.mem, proc::own_pid_namespace());
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
        Ok(Some(guard))
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

    /// [`Inner::with_arena`] for an operation that frees nothing (a
    /// look-up), taking the header lock as `how` says: `Ok(None)`, having
    /// run nothing, if it was not free in time.
    pub(crate) fn with_arena_how<R>(
        &self,
        how: Wait,
        f: impl FnMut(&Arena<'_>) -> Result<R>,
    ) -> Result<Option<R>> {
        let Some(guard) = self.lock_how(how)? else {
            return Ok(None);
        };
        let (r, frees) = self.with_arena_locked(guard, f, |_| Ok(()))?;
        debug_assert!(
            frees.is_empty(),
            "an operation that frees under a timed lock"
        );
        Ok(Some(r))
    }

    /// [`Inner::with_arena_how`] with [`Wait::Try`]: never waits.
    pub(crate) fn try_with_arena<R>(
        &self,
        f: impl FnMut(&Arena<'_>) -> Result<R>,
    ) -> Result<Option<R>> {
        self.with_arena_how(Wait::Try, f)
    }

    /// One operation under the header lock (see [`Inner::with_arena`]);
    /// returns also the nested blocks it left to free.
    fn with_arena_once<R>(
        &self,
        f: impl FnMut(&Arena<'_>) -> Result<R>,
    ) -> Result<(R, Vec<crate::arena::walk::NestedRef>)> {
        self.with_arena_then(f, |_| Ok(()))
    }

    /// [`Inner::with_arena_once`], then `after` with `f`'s result once it
    /// is committed, still under the header lock (what must happen before
    /// another process may look: the unlink of a store just marked
    /// removed). An error of `after` is returned; `f`'s writes stay
    /// committed.
    fn with_arena_then<R>(
        &self,
        f: impl FnMut(&Arena<'_>) -> Result<R>,
        after: impl FnOnce(&R) -> Result<()>,
    ) -> Result<(R, Vec<crate::arena::walk::NestedRef>)> {
        let guard = self.lock()?;
        self.with_arena_locked(guard, f, after)
    }

    /// [`Inner::with_arena_then`] with the lock already taken.
    fn with_arena_locked<R>(
        &self,
        guard: HeaderGuard<'_>,
        mut f: impl FnMut(&Arena<'_>) -> Result<R>,
        after: impl FnOnce(&R) -> Result<()>,
    ) -> Result<(R, Vec<crate::arena::walk::NestedRef>)> {
        let _guard = guard;
        let commit = |from: u64, to: u64| self.region.commit(from, to - from);
        let arena = Arena::journaled(self.mem, &commit);
        arena.validate_header()?;
        let mut consolidated = false;
        loop {
            match f(&arena) {
                Ok(r) => {
                    arena.commit_journal()?;
                    let nested = arena.take_nested_frees();
                    after(&r)?;
                    return Ok((r, nested));
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
            lock_timeout: None,
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
        slot << 32 | crate::sys::proc::me().pid as u64
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
            // The last user of a store made to be removed when unused takes
            // its name with it. A failure leaves it for the next opener or
            // `shmstore gc`, which find its users all gone.
            let _ = self.remove_if_unused();
        }
    }
}

/// `timeout` from now; a timeout too far to represent (`Duration::MAX`)
/// is about a century from now instead of a panic.
pub(super) fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(now)
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
    /// The lock generation (header word), odd while the lock is held.
    generation: &'a AtomicU64,
    /// This thread's note that it holds the lock (see [`held`]).
    held: Option<held::Held>,
}

impl Drop for HeaderGuard<'_> {
    fn drop(&mut self) {
        // Even again: every metadata write of this holder happens before
        // this release store, and so before any read that sees it.
        let g = self.generation.load(Ordering::Relaxed);
        self.generation
            .store((g | 1).wrapping_add(1), Ordering::Release);
        // SAFETY: a HeaderGuard exists only while this thread holds the lock
        // (made in `Store::lock` after a successful lock()).
        unsafe { self.lock.unlock() };
        if let Some(held) = self.held.take() {
            held.released();
        }
    }
}

pub(crate) fn validate_object_name(name: &str) -> Result<&[u8]> {
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

    /// Every shared-memory segment in `/dev/shm`, sorted by name, each
    /// described and judged as `shmstore ls` shows it: stores of this
    /// format with their size, registered processes and header-lock state;
    /// stores being created or of another format; other programs'
    /// segments ([`SegmentKind::Foreign`](crate::inspect::SegmentKind),
    /// which [`SegmentInfo::is_store`](crate::inspect::SegmentInfo::is_store)
    /// filters out). Read-only: see [`inspect`](crate::inspect).
    ///
    /// ```
    /// # fn main() -> shmstore::Result<()> {
    /// # let name = format!("doc-list-{}", std::process::id());
    /// let store = shmstore::Store::create(&name, 1 << 20)?;
    /// let all = shmstore::Store::list()?;
    /// let mine = all.iter().find(|s| s.name == format!("/{name}")).expect("listed");
    /// assert_eq!(mine.store().expect("a store").capacity, 1 << 20);
    /// assert_eq!(mine.users(), [std::process::id()]);
    /// # shmstore::Store::unlink(&name)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn list() -> Result<Vec<crate::inspect::SegmentInfo>> {
        crate::inspect::list()
    }

    /// A read-only look at the store `name`: its objects, their layouts,
    /// holders and values, and the consistency check, from a private copy
    /// of its committed bytes (see [`inspect`](crate::inspect)). Needs only
    /// read permission; writes nothing to the segment, takes no lock,
    /// attaches to nothing.
    pub fn inspect(name: &str) -> Result<crate::inspect::Inspection> {
        crate::inspect::Inspection::open(name)
    }

    /// Removes the store `name` if `rule` allows it, judged again under
    /// the store's header lock: what `shmstore gc` and `shmstore rm` do.
    ///
    /// The segment is looked at as [`inspect::segment`](crate::inspect::segment)
    /// does; unless `rule` accepts its [`Status`](crate::inspect::Status),
    /// it is kept. A store of this format is then opened read-write
    /// (without joining it), its header lock taken (waiting at most `wait`
    /// for a live holder: [`Error::TimedOut`] then), and judged again from
    /// its process table as it is under the lock. If `rule` still accepts
    /// it, it is marked removed and its name unlinked before the lock is
    /// released: a process opening the store meanwhile either registered
    /// first (and the store is kept, in use) or finds the mark and opens
    /// the name anew ([`Error::NotFound`], or a new store made since). A
    /// new store made under the name after the look is never removed.
    ///
    /// A store left half-created, or of another format, has no usable
    /// lock: its name is unlinked if it still names the file that was
    /// looked at (a window of two system calls remains, which needs
    /// another remover and a creator at once). [`RemoveIf::Any`] removes a
    /// damaged store, a foreign segment or one in use too (through the
    /// lock when the store has a usable one, else by name).
    ///
    /// [`RemoveIf::Any`]: crate::inspect::RemoveIf::Any
    pub fn remove_unused(
        name: &str,
        rule: crate::inspect::RemoveIf,
        wait: Duration,
    ) -> Result<crate::inspect::Removal> {
        crate::inspect::remove(name, rule, wait)
    }

    /// Removes the store's name; processes that have it open keep their
    /// mapping until they drop it. Nothing is checked: a process that is
    /// opening the store at that moment may join a store whose name is
    /// gone. [`Store::remove_unused`] removes only a store nobody uses,
    /// safely.
    pub fn unlink(name: &str) -> Result<()> {
        region::unlink(&SegmentName::parse(name)?)
    }

    /// The store's name, with its leading slash.
    pub fn name(&self) -> &str {
        self.inner.region.name().as_str()
    }

    pub(crate) fn with_arena<R>(&self, f: impl FnMut(&Arena<'_>) -> Result<R>) -> Result<R> {
        self.inner.with_arena(f)
    }

    /// Tests: holds the header lock until the guard drops.
    #[cfg(test)]
    pub(crate) fn test_hold_header_lock(&self) -> Result<impl Drop + '_> {
        self.inner.lock()
    }

    /// Tests: takes the header lock, journals a change of the object count
    /// to `objects`, and leaves both behind as a holder that dies would
    /// (call it on a thread that then exits).
    #[cfg(test)]
    pub(crate) fn test_die_mid_operation(&self, objects: u64) -> Result<()> {
        let guard = self.inner.lock()?;
        let commit = |from: u64, to: u64| self.inner.region.commit(from, to - from);
        let a = Arena::journaled(self.inner.mem, &commit);
        Header(&a).set_objects(objects)?;
        core::mem::forget(guard);
        Ok(())
    }

    /// Tests: forgets this process's slot (as if another process had it).
    #[cfg(test)]
    pub(crate) fn test_forget_slot(&self) {
        self.inner.slot.store(NO_SLOT, Ordering::Relaxed);
    }

    /// The store's state (for containers).
    pub(crate) fn inner_ref(&self) -> &Inner {
        &self.inner
    }

    /// A store over `inner`, known to this process's table of mappings.
    /// Refused if another segment with the same store id is open in this
    /// process (see [`mappings::register`]).
    fn from_inner(inner: Inner) -> Result<Store> {
        let file = inner.region.file_id()?;
        let store = Store {
            inner: Arc::new(inner),
        };
        mappings::register(&store.inner, file)?;
        Ok(store)
    }
}
