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
use core::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::arena::dir::{hash_name, Found};
use crate::arena::header::*;
use crate::arena::mem::Mem;
use crate::arena::procs::Owner;
use crate::arena::{Arena, Record, Stats};
use crate::region::{self, Region, SegmentName};
use crate::sys::proc;
use crate::sys::pthread::{Acquired, RawMutex, PTHREAD_MUTEX_SIZE};
use crate::{Error, Result, ShmSafe, TypeLayout};

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

/// How to create or open a store: capacity, permissions, patience.
///
/// ```
/// # fn main() -> shmstore::Result<()> {
/// # let name = format!("doc-options-{}", std::process::id());
/// let store = shmstore::Store::options()
///     .capacity(16 << 20)
///     .mode(0o660)
///     .create(&name)?;
/// assert_eq!(store.stats()?.capacity, 16 << 20);
/// # shmstore::Store::unlink(&name)?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct StoreOptions {
    capacity: u64,
    mode: u32,
    open_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            capacity: 64 << 20,
            mode: 0o600,
            open_timeout: Duration::from_secs(5),
        }
    }
}

impl StoreOptions {
    /// Bytes to reserve for a new store (default 64 MiB). The segment is
    /// sparse: only pages the allocator hands out are committed. Rounded up
    /// to a multiple of 4096; at least [`MIN_CAPACITY`].
    pub fn capacity(mut self, bytes: u64) -> Self {
        self.capacity = bytes;
        self
    }

    /// Permission bits of a new store (default `0o600`: this user only).
    /// The process umask does not apply.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// How long `open` waits for a store that another process is still
    /// creating (default 5 s) before reporting it as broken.
    pub fn open_timeout(mut self, timeout: Duration) -> Self {
        self.open_timeout = timeout;
        self
    }

    /// Creates a new store; [`Error::AlreadyExists`] if the name is taken.
    pub fn create(&self, name: &str) -> Result<Store> {
        let name = SegmentName::parse(name)?;
        let capacity = self.checked_capacity()?;
        let region = Region::create(&name, capacity as usize, self.mode)?;
        match Store::initialise(region) {
            Ok(store) => Ok(store),
            Err(e) => {
                let _ = region::unlink(&name);
                Err(e)
            }
        }
    }

    /// Opens an existing store, validating everything it will trust.
    ///
    /// A store another process is still creating is waited for, up to the
    /// open timeout. One whose creator died before it was ready is
    /// [`Error::Corrupted`] at once ("left half-initialised by its
    /// creator"); it is never repaired or re-created behind your back:
    /// [`Store::unlink`] it and create it again. A segment that never got a
    /// store header is [`Error::NotAStore`] after the timeout.
    pub fn open(&self, name: &str) -> Result<Store> {
        let name = SegmentName::parse(name)?;
        Store::attach(&name, self.open_timeout)
    }

    /// Opens the store, creating it if it does not exist. When several
    /// processes race, exactly one creates and initialises it; the others
    /// wait (up to the open timeout) for it to become ready.
    pub fn open_or_create(&self, name: &str) -> Result<Store> {
        let parsed = SegmentName::parse(name)?;
        let deadline = Instant::now() + self.open_timeout;
        loop {
            match self.create(name) {
                Err(Error::AlreadyExists { .. }) => {}
                other => return other,
            }
            match Store::attach(&parsed, self.open_timeout) {
                // Unlinked between our create and open: try again.
                Err(Error::NotFound { .. }) if Instant::now() < deadline => continue,
                other => return other,
            }
        }
    }

    fn checked_capacity(&self) -> Result<u64> {
        let cap = self
            .capacity
            .checked_next_multiple_of(4096)
            .unwrap_or(u64::MAX);
        if !(MIN_CAPACITY..=crate::arena::dir::MAX_CAPACITY).contains(&cap) {
            return Err(Error::InvalidArgument {
                reason: format!(
                    "capacity {} is outside [{MIN_CAPACITY}, {}] bytes",
                    self.capacity,
                    crate::arena::dir::MAX_CAPACITY
                ),
            });
        }
        Ok(cap)
    }
}

/// A typed object store in a POSIX shared-memory segment.
///
/// Cheap to clone (an `Arc`); `Send + Sync`. Handles keep the mapping alive,
/// so a `Store` can be dropped while handles are still used.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    region: Region,
    mem: Mem,
    /// This process's slot in the store's process table ([`NO_SLOT`] if
    /// the table was full: pins are then not released if we die).
    slot: AtomicU32,
}

const NO_SLOT: u32 = u32::MAX;

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
        let guard = HeaderGuard { lock };
        let arena = Arena::new(self.mem, &|_, _| Ok(()));
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
    fn with_arena<R>(&self, mut f: impl FnMut(&Arena<'_>) -> Result<R>) -> Result<R> {
        let _guard = self.lock()?;
        let commit = |from: u64, to: u64| self.region.commit(from, to - from);
        let arena = Arena::journaled(self.mem, &commit);
        arena.validate_header()?;
        let mut consolidated = false;
        loop {
            match f(&arena) {
                Ok(r) => {
                    arena.commit_journal()?;
                    return Ok(r);
                }
                Err(e) => {
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

    fn new(region: Region, mem: Mem) -> Inner {
        Inner {
            region,
            mem,
            slot: AtomicU32::new(NO_SLOT),
        }
    }

    fn slot(&self) -> Option<u32> {
        Some(self.slot.load(Ordering::Relaxed)).filter(|&s| s != NO_SLOT)
    }
}

impl Drop for Inner {
    /// Gives this process's slot back (no handle exists any more: each
    /// holds the `Inner`). Errors cannot be reported from drop; a slot left
    /// behind is released by the next process that finds us gone.
    fn drop(&mut self) {
        if let Some(slot) = self.slot() {
            let owner = own_identity();
            while let Ok(true) = self.with_arena(|a| a.release_step(slot, owner)) {}
        }
    }
}

/// This process as the process table knows it.
fn own_identity() -> Owner {
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

/// One named entry, as listed by [`Store::entries`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The object's name.
    pub name: String,
    /// The recorded type name (for a slice, the element type).
    pub type_name: String,
    /// The type's fingerprint.
    pub fingerprint: u64,
    /// Bytes of the value (all elements of a slice).
    pub size: u64,
    /// Number of elements for a slice; `None` for a single object.
    pub len: Option<u64>,
}

/// The result of [`Store::check`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Allocated blocks found by walking the heap.
    pub used_blocks: u64,
    /// Free blocks found by walking the heap (each also found on its list).
    pub free_blocks: u64,
    /// Bytes in allocated blocks.
    pub used_bytes: u64,
    /// Bytes in free blocks below the heap's top.
    pub free_bytes: u64,
    /// Objects reached through the directory, each found again by name.
    pub objects: u64,
    /// Registered types.
    pub types: u64,
    /// Processes attached to the store (after releasing the dead ones).
    pub processes: u64,
    /// Every inconsistency found, with its offset. Empty when the store is
    /// consistent.
    pub problems: Vec<String>,
}

impl CheckReport {
    /// `true` if no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} objects, {} types, {} processes; heap: {} blocks used ({} bytes), {} free ({} bytes)",
            self.objects,
            self.types,
            self.processes,
            self.used_blocks,
            self.used_bytes,
            self.free_blocks,
            self.free_bytes
        )?;
        if self.problems.is_empty() {
            write!(f, "no problems found")
        } else {
            for p in &self.problems {
                writeln!(f, "problem: {p}")?;
            }
            Ok(())
        }
    }
}

/// Holds the header lock; unlocks on drop.
struct HeaderGuard<'a> {
    lock: &'a RawMutex,
}

impl Drop for HeaderGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: a HeaderGuard exists only while this thread holds the lock
        // (made in `Store::lock` after a successful lock()).
        unsafe { self.lock.unlock() };
    }
}

fn validate_object_name(name: &str) -> Result<&[u8]> {
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

    fn initialise(region: Region) -> Result<Store> {
        region.commit(0, HEAP_START)?;
        let base = region.base();
        // SAFETY: the region maps `len` bytes at `base`, page-aligned, for as
        // long as `Inner` (which owns both) lives; the arena forms no
        // references into it.
        let mem = unsafe { Mem::new(base, region.len()) };
        crate::crash::step();
        // Who is creating it, before anything says "store": an opener that
        // finds the magic and a creator that is gone knows the store will
        // never be ready.
        let me = own_identity();
        mem.set_u32(OFF_CREATOR, me.pid)?;
        mem.set_u32(OFF_CREATOR_START, me.start as u32)?;
        mem.atomic_u32(OFF_STATE)?
            .store(STATE_CREATING, Ordering::Relaxed);
        mem.write_bytes(OFF_MAGIC, &MAGIC)?;
        mem.set_u32(OFF_VERSION, VERSION)?;
        mem.set_u64(OFF_ABI, abi_tag(PTHREAD_MUTEX_SIZE))?;
        let inner = Inner::new(region, mem);
        let commit = |from: u64, to: u64| inner.region.commit(from, to - from);
        crate::crash::step();
        Arena::new(mem, &commit).format()?;
        crate::crash::step();
        let lock = mem.ptr(OFF_LOCK, LOCK_SPACE, 8)?.cast::<RawMutex>();
        // SAFETY: `lock` is inside the committed header page, aligned (the
        // offset is a multiple of 64 and the mapping page-aligned), and no
        // other process uses it: the state word still says "creating".
        unsafe { RawMutex::init(lock) }?;
        crate::crash::step();
        mem.atomic_u32(OFF_STATE)?
            .store(STATE_READY, Ordering::Release);
        let store = Store {
            inner: Arc::new(inner),
        };
        store.join()?;
        Ok(store)
    }

    fn attach(name: &SegmentName, timeout: Duration) -> Result<Store> {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_micros(100);
        let not_ready = |reason: String| -> Result<Option<Store>> {
            if Instant::now() >= deadline {
                Err(Error::NotAStore {
                    name: name.as_str().to_string(),
                    reason,
                })
            } else {
                Ok(None)
            }
        };
        loop {
            let attempt = match Region::open(name) {
                Ok(region) => Store::validate(region, name, deadline),
                Err(Error::NotAStore { reason, .. }) => not_ready(reason),
                Err(e) => Err(e),
            };
            if let Some(store) = attempt? {
                return Ok(store);
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// Validates a mapped segment. `Ok(None)` means "not ready yet, retry".
    fn validate(region: Region, name: &SegmentName, deadline: Instant) -> Result<Option<Store>> {
        let len = region.len() as u64;
        let late = Instant::now() >= deadline;
        let not_a_store = |reason: String| Error::NotAStore {
            name: name.as_str().to_string(),
            reason,
        };
        if len < HEAP_START * 2 {
            return if late {
                Err(not_a_store(format!(
                    "segment is {len} bytes, smaller than any store ({} bytes)",
                    HEAP_START * 2
                )))
            } else {
                Ok(None)
            };
        }
        // SAFETY: the region maps `len` bytes at its page-aligned base and
        // `Inner` keeps it alive for as long as the Mem is used.
        let mem = unsafe { Mem::new(region.base(), region.len()) };
        let magic = mem.read_bytes(OFF_MAGIC, 8)?;
        if magic != MAGIC {
            if magic == [0; 8] && !late {
                return Ok(None); // a creator has not written its header yet
            }
            return Err(not_a_store(format!(
                "its first bytes are {magic:02x?}, not the shmstore magic"
            )));
        }
        let version = mem.u32(OFF_VERSION)?;
        if version != VERSION {
            return Err(Error::Incompatible {
                name: name.as_str().to_string(),
                reason: format!("format version {version}, this build reads version {VERSION}"),
            });
        }
        let ours = abi_tag(PTHREAD_MUTEX_SIZE);
        let abi = mem.u64(OFF_ABI)?;
        if abi != ours {
            return Err(Error::Incompatible {
                name: name.as_str().to_string(),
                reason: format!(
                    "made by a {} process, this process is {}",
                    describe_abi(abi),
                    describe_abi(ours)
                ),
            });
        }
        match mem.atomic_u32(OFF_STATE)?.load(Ordering::Acquire) {
            STATE_READY => {}
            STATE_CREATING => {
                let creator = mem.u32(OFF_CREATOR)?;
                let started = mem.u32(OFF_CREATOR_START)?;
                // The start time tells the creator from a process that got
                // its pid after it died (the low 32 bits suffice for that).
                let alive = proc::start_time(creator).map(|t| t as u32) == Some(started);
                if !alive {
                    return Err(Error::corrupted(format!(
                        "store \"{}\" was left half-initialised by its creator (pid {creator}), which died; \
                         remove it with Store::unlink and create it again",
                        name.as_str()
                    )));
                }
                if late {
                    return Err(Error::corrupted(format!(
                        "store \"{}\" is still being initialised by pid {creator} after the open timeout",
                        name.as_str()
                    )));
                }
                return Ok(None);
            }
            other => {
                return Err(Error::corrupted(format!(
                    "store \"{}\" has an unknown init state {other}",
                    name.as_str()
                )))
            }
        }
        let capacity = mem.u64(OFF_CAPACITY)?;
        if capacity != len {
            return Err(Error::corrupted(format!(
                "header says capacity {capacity}, but the segment is {len} bytes"
            )));
        }
        let store = Store {
            inner: Arc::new(Inner::new(region, mem)),
        };
        // Validate the roots only: opening must not touch every page (a
        // reader's resident memory grows with what it reads). Each record is
        // validated when it is looked up.
        store.with_arena(|a| {
            a.type_count()?;
            a.dir_validate()
        })?;
        store.join()?;
        Ok(Some(store))
    }

    /// Takes a slot in the process table, then releases the slots of
    /// processes that are gone.
    fn join(&self) -> Result<()> {
        if let Some(slot) = self.with_arena(|a| a.attach(own_identity()))? {
            self.inner.slot.store(slot, Ordering::Relaxed);
        }
        // A dead process's slot that cannot be released (its pin table is
        // corrupted) must not keep everyone from opening the store: the
        // failure is reported by `check()`, which reaps again.
        let _ = self.reap();
        Ok(())
    }

    /// Releases what processes that died (or exited without closing the
    /// store) still held: their pins — so removed objects they pinned are
    /// freed — and their unfinished large inserts. Runs on open and in
    /// [`Store::check`], and when an insert finds the store full. Each step
    /// is its own journalled operation.
    fn reap(&self) -> Result<()> {
        let me = self.inner.slot();
        let attached = self.with_arena(|a| a.attached())?;
        for (slot, owner) in attached {
            if Some(slot) == me || proc::may_be_alive(owner.pid, owner.pidns, owner.start) {
                continue;
            }
            while self.with_arena(|a| a.release_step(slot, owner))? {}
        }
        Ok(())
    }

    fn with_arena<R>(&self, f: impl FnMut(&Arena<'_>) -> Result<R>) -> Result<R> {
        self.inner.with_arena(f)
    }

    /// Runs `f` with the header lock held and the registry index of the
    /// type `layout`, registering the type first if this store has not seen
    /// it. The layout text is rendered outside the lock.
    fn with_type<R>(
        &self,
        layout: &'static TypeLayout,
        mut f: impl FnMut(&Arena<'_>, u32) -> Result<R>,
    ) -> Result<R> {
        let fp = layout.fingerprint();
        let done = self.with_arena(|a| match a.find_type(fp)? {
            Some(idx) => f(a, idx).map(Some),
            None => Ok(None),
        })?;
        if let Some(r) = done {
            return Ok(r);
        }
        let (name, desc) = (layout.type_expr(), layout.to_string());
        self.with_arena(|a| {
            let idx = match a.find_type(fp)? {
                Some(idx) => idx,
                None => {
                    a.register_type(fp, layout.size as u64, layout.align as u64, &name, &desc)?
                }
            };
            f(a, idx)
        })
    }

    /// Checks that `rec` holds a `T` (or a slice of `T`) and pins it.
    fn typed_pin<T: ShmSafe>(
        &self,
        a: &Arena<'_>,
        name: &str,
        rec: u64,
        slice: bool,
    ) -> Result<Record> {
        let r = a.record(rec)?;
        let info = a.type_info(r.type_idx)?;
        if info.fingerprint != T::FINGERPRINT || r.is_slice() != slice {
            // Error path only: the stored layout text is copied out (and the
            // expected one rendered) under the lock, once.
            let (_, found_desc) = a.type_text(r.type_idx)?;
            let shape = |is_slice: bool, text: String| {
                if is_slice {
                    format!("a slice of {text}")
                } else {
                    text
                }
            };
            return Err(Error::TypeMismatch {
                name: name.to_string(),
                expected: shape(slice, T::LAYOUT.to_string()),
                found: shape(r.is_slice(), found_desc),
            });
        }
        if info.size != core::mem::size_of::<T>() as u64
            || info.align != core::mem::align_of::<T>() as u64
        {
            return Err(Error::corrupted(format!(
                "object \"{name}\": registry says {} bytes align {}, but its fingerprint is that of {}",
                info.size,
                info.align,
                T::LAYOUT.type_expr()
            )));
        }
        let counted = self.pin_in(a, rec)?;
        Ok(Record { counted, ..r })
    }

    /// Adds a pin of this process to `rec`, counted in its process slot so
    /// that it is released if the process dies. Inside an operation.
    /// Returns whether the pin was counted (see [`Arena::count_pin`]).
    fn pin_in(&self, a: &Arena<'_>, rec: u64) -> Result<bool> {
        a.pin(rec)?;
        match self.inner.slot() {
            Some(slot) => a.count_pin(slot, rec, 1),
            None => Ok(false),
        }
    }

    fn lookup_pinned<T: ShmSafe>(&self, name: &str, slice: bool) -> Result<Record> {
        let key = validate_object_name(name)?;
        let hash = hash_name(key);
        self.with_arena(|a| match a.lookup(key, hash)? {
            Some(Found { rec, .. }) => self.typed_pin::<T>(a, name, rec, slice),
            None => Err(Error::NotFound {
                what: format!("object \"{name}\""),
            }),
        })
    }

    /// Checks a pinned value's bytes if its type has invalid bit patterns
    /// (the caller's [`Pin`] gives the pin back if they are invalid).
    fn check_value<T: ShmSafe>(&self, name: &str, r: &Record) -> Result<NonNull<T>> {
        let size = core::mem::size_of::<T>() as u64;
        let p = self
            .inner
            .mem
            .ptr(
                r.value,
                size.saturating_mul(r.len),
                core::mem::align_of::<T>() as u64,
            )?
            .cast::<T>();
        if T::HAS_INVALID_BIT_PATTERNS {
            for i in 0..r.len {
                // SAFETY: `ptr` checked that `len` elements of T lie inside
                // the mapping, aligned; the record is pinned so its memory
                // stays allocated; element `i < len`.
                if let Err(e) = unsafe { T::check_bytes(p.add(i as usize)) } {
                    return Err(Error::corrupted(format!(
                        "object \"{name}\": {}",
                        e.within(i as usize * size as usize)
                    )));
                }
            }
        }
        // SAFETY: `ptr` never returns null for an in-bounds offset of a
        // non-null mapping.
        Ok(unsafe { NonNull::new_unchecked(p) })
    }

    /// Drops a pin of this process (one operation: the pin word and the
    /// process slot change together), freeing a removed record whose last
    /// pin this was.
    fn unpin(&self, rec: u64, counted: bool) -> Result<()> {
        self.with_arena(|a| {
            if let Some(slot) = self.inner.slot().filter(|_| counted) {
                a.count_pin(slot, rec, -1)?;
            }
            if a.drop_pins(rec, 1)? {
                a.free_released(rec)?;
            }
            Ok(())
        })
    }

    /// Wraps a pin the caller took (`r` was pinned) into its owner.
    fn pin_of(&self, r: &Record) -> Pin {
        Pin {
            store: self.clone(),
            rec: r.rec,
            held: true,
            counted: r.counted,
        }
    }

    /// Adds a pin to a record the caller already pins (a handle's clone).
    fn repin(&self, rec: u64) -> Pin {
        let pinned = self.with_arena(|a| self.pin_in(a, rec));
        Pin {
            store: self.clone(),
            rec,
            // A failure means corrupted metadata: the clone then holds no
            // pin of its own (the original's keeps the record alive while
            // the original lives) and its drop releases nothing.
            held: pinned.is_ok(),
            counted: pinned.unwrap_or(false),
        }
    }

    /// [`Store::put_once`], and once more if the store was full and
    /// releasing what dead processes held may have made room.
    #[allow(clippy::too_many_arguments)]
    fn put<T: ShmSafe>(
        &self,
        name: &str,
        slice: bool,
        len: u64,
        pin: bool,
        existing_ok: bool,
        fill: &mut dyn FnMut(*mut T) -> Result<()>,
    ) -> Result<(Record, bool)> {
        match self.put_once(name, slice, len, pin, existing_ok, fill) {
            Err(Error::OutOfMemory { .. }) => {
                self.reap()?;
                self.put_once(name, slice, len, pin, existing_ok, fill)
            }
            other => other,
        }
    }

    /// Reserves a record, fills it with `fill` (our own copy and in-place
    /// initialisation, never user code) and publishes it under `name`.
    /// With `existing_ok`, a name already present returns its record
    /// (pinned, type-checked) instead of an error. Returns the record and
    /// whether it is new; the record is pinned when `pin` is set.
    #[allow(clippy::too_many_arguments)]
    fn put_once<T: ShmSafe>(
        &self,
        name: &str,
        slice: bool,
        len: u64,
        pin: bool,
        existing_ok: bool,
        fill: &mut dyn FnMut(*mut T) -> Result<()>,
    ) -> Result<(Record, bool)> {
        let key = validate_object_name(name)?;
        let hash = hash_name(key);
        let bytes = (core::mem::size_of::<T>() as u64).saturating_mul(len);
        let exists = |a: &Arena<'_>, rec: u64| -> Result<(Record, bool)> {
            if existing_ok {
                Ok((self.typed_pin::<T>(a, name, rec, slice)?, false))
            } else {
                Err(Error::AlreadyExists {
                    what: format!("object \"{name}\""),
                })
            }
        };
        let finish = |a: &Arena<'_>, rec: u64| -> Result<(Record, bool)> {
            a.publish(hash, rec)?;
            let counted = if pin { self.pin_in(a, rec)? } else { false };
            Ok((
                Record {
                    counted,
                    ..a.record(rec)?
                },
                true,
            ))
        };
        let fill_at = |value: u64, fill: &mut dyn FnMut(*mut T) -> Result<()>| {
            let p = self
                .inner
                .mem
                .ptr(value, bytes, core::mem::align_of::<T>() as u64)?;
            fill(p.cast::<T>())
        };
        if bytes <= COPY_UNDER_LOCK {
            return self.with_type(T::LAYOUT, |a, idx| {
                if let Some(f) = a.lookup(key, hash)? {
                    return exists(a, f.rec);
                }
                let (rec, value) = a.new_record(key, idx, slice, len)?;
                if let Err(e) = fill_at(value, fill) {
                    a.free(rec)?;
                    return Err(e);
                }
                finish(a, rec)
            });
        }
        // Large: reserve under the lock, copy without it, publish under it.
        // The reservation is noted in our process slot, so that if we die
        // while copying, whoever finds us dead frees it. Without room to
        // note it, copy under the lock instead.
        let slot = self.inner.slot();
        let reserved = self.with_type(T::LAYOUT, |a, idx| {
            if let Some(f) = a.lookup(key, hash)? {
                return exists(a, f.rec).map(Err);
            }
            let (rec, value) = a.new_record(key, idx, slice, len)?;
            match slot {
                Some(slot) if a.reserve(slot, rec)? => Ok(Ok((slot, rec, value))),
                _ => {
                    fill_at(value, fill)?;
                    finish(a, rec).map(Err)
                }
            }
        })?;
        let (slot, rec, value) = match reserved {
            Ok(r) => r,
            Err(done) => return Ok(done),
        };
        if let Err(e) = fill_at(value, fill) {
            self.with_arena(|a| {
                a.unreserve(slot, rec)?;
                a.free(rec)
            })?;
            return Err(e);
        }
        crate::crash::step();
        // The name may have been taken while we copied: then our record is
        // freed and that commits, whatever `exists` answers.
        self.with_arena(|a| {
            a.unreserve(slot, rec)?;
            if let Some(f) = a.lookup(key, hash)? {
                a.free(rec)?;
                return Ok(exists(a, f.rec));
            }
            finish(a, rec).map(Ok)
        })?
    }

    /// Stores `value` under `name`. [`Error::AlreadyExists`] if the name is
    /// taken. The value is copied into the segment and initialised there
    /// (for example a [`ShmMutex`](crate::ShmMutex) becomes process-shared).
    pub fn insert<T: ShmSafe>(&self, name: &str, value: T) -> Result<()> {
        let items = core::slice::from_ref(&value);
        self.put::<T>(name, false, 1, false, false, &mut |dst| copy_in(dst, items))
            .map(|_| ())
    }

    /// Stores a copy of `items` under `name` as a slice.
    ///
    /// Elements are copied bit for bit and then initialised in place, so
    /// that, for example, a slice of [`ShmMutex`](crate::ShmMutex) gets
    /// process-shared locks.
    pub fn insert_slice<T: ShmSafe>(&self, name: &str, items: &[T]) -> Result<()> {
        self.put::<T>(name, true, items.len() as u64, false, false, &mut |dst| {
            copy_in(dst, items)
        })
        .map(|_| ())
    }

    /// A handle to the object `name`, checked to be a `T`.
    ///
    /// [`Error::NotFound`] if absent; [`Error::TypeMismatch`] (showing both
    /// layouts) if it was stored with another type or as a slice.
    pub fn get<T: ShmSafe>(&self, name: &str) -> Result<Handle<T>> {
        let r = self.lookup_pinned::<T>(name, false)?;
        // Owned first: if the check fails, dropping it gives the pin back.
        let pin = self.pin_of(&r);
        let ptr = self.check_value::<T>(name, &r)?;
        Ok(Handle { pin, ptr })
    }

    /// A handle to the slice `name`, checked to hold `T`s.
    pub fn get_slice<T: ShmSafe>(&self, name: &str) -> Result<SliceHandle<T>> {
        let r = self.lookup_pinned::<T>(name, true)?;
        let pin = self.pin_of(&r);
        let ptr = self.check_value::<T>(name, &r)?;
        Ok(SliceHandle {
            pin,
            ptr,
            len: r.len as usize,
        })
    }

    /// The object `name`, stored from `init()` if it does not exist yet.
    ///
    /// Atomic across processes: however many race, exactly one value is
    /// published and every caller gets a handle to it. `init` runs without
    /// any lock held, and may run in several racing processes; the values of
    /// the losers are discarded.
    pub fn get_or_insert_with<T: ShmSafe>(
        &self,
        name: &str,
        init: impl FnOnce() -> T,
    ) -> Result<Handle<T>> {
        match self.get::<T>(name) {
            Err(Error::NotFound { .. }) => {}
            other => return other,
        }
        let value = init();
        let items = core::slice::from_ref(&value);
        let (r, _) = self.put::<T>(name, false, 1, true, true, &mut |dst| copy_in(dst, items))?;
        // Owned first: if the check fails, dropping it gives the pin back.
        let pin = self.pin_of(&r);
        let ptr = self.check_value::<T>(name, &r)?;
        Ok(Handle { pin, ptr })
    }

    /// Removes `name`. Its memory is reused once no handle of this or any
    /// other process pins it.
    pub fn remove(&self, name: &str) -> Result<()> {
        let key = validate_object_name(name)?;
        let hash = hash_name(key);
        self.with_arena(|a| match a.lookup(key, hash)? {
            Some(found) => a.remove(&found),
            None => Err(Error::NotFound {
                what: format!("object \"{name}\""),
            }),
        })
    }

    /// `true` if an object or slice named `name` exists.
    pub fn contains(&self, name: &str) -> Result<bool> {
        let key = validate_object_name(name)?;
        let hash = hash_name(key);
        self.with_arena(|a| Ok(a.lookup(key, hash)?.is_some()))
    }

    /// Every named object and slice, in no particular order.
    pub fn entries(&self) -> Result<Vec<Entry>> {
        self.with_arena(|a| {
            let mut out = Vec::new();
            for rec in a.records()? {
                let r = a.record(rec)?;
                let info = a.type_info(r.type_idx)?;
                out.push(Entry {
                    name: a.record_name(rec)?,
                    type_name: a.type_text(r.type_idx)?.0,
                    fingerprint: info.fingerprint,
                    size: info.size * r.len,
                    len: r.is_slice().then_some(r.len),
                });
            }
            Ok(out)
        })
    }

    /// Space accounting: capacity, committed, used and free bytes, objects.
    pub fn stats(&self) -> Result<Stats> {
        self.with_arena(|a| a.stats())
    }

    /// Walks every structure of the store (header, every heap block, every
    /// free list, the directory, every record and the type registry) and
    /// reports what it verified and every inconsistency found. First it
    /// releases what processes that died still held (their pins and
    /// unfinished inserts), so space they pinned shows as free.
    pub fn check(&self) -> Result<CheckReport> {
        let reaped = self.reap();
        self.with_arena(|a| {
            let mut report = CheckReport::default();
            if let Err(e) = &reaped {
                report
                    .problems
                    .push(format!("releasing what dead processes held: {e}"));
            }
            match a.check_heap() {
                Ok((ub, fb, u, f)) => {
                    report.used_blocks = ub;
                    report.free_blocks = fb;
                    report.used_bytes = u;
                    report.free_bytes = f;
                }
                Err(e) => report.problems.push(format!("heap: {e}")),
            }
            match a.type_count() {
                Ok(n) => report.types = n,
                Err(e) => report.problems.push(format!("registry: {e}")),
            }
            let records = match a.records() {
                Ok(r) => r,
                Err(e) => {
                    report.problems.push(format!("directory: {e}"));
                    return Ok(report);
                }
            };
            for rec in records {
                let name = match a.record(rec).and_then(|_| a.record_name(rec)) {
                    Ok(n) => n,
                    Err(e) => {
                        report.problems.push(format!("record {rec:#x}: {e}"));
                        continue;
                    }
                };
                match a.lookup(name.as_bytes(), hash_name(name.as_bytes())) {
                    Ok(Some(f)) if f.rec == rec => report.objects += 1,
                    Ok(_) => report.problems.push(format!(
                        "record {rec:#x} (\"{name}\") cannot be found by its name"
                    )),
                    Err(e) => report.problems.push(format!("record {rec:#x}: {e}")),
                }
            }
            let objects = Header(a).objects()?;
            if objects != report.objects {
                report.problems.push(format!(
                    "header counts {objects} objects, the directory holds {}",
                    report.objects
                ));
            }
            // Every pin a process counts must be on an allocated record
            // whose pin word counts at least as many (pins that could not
            // be counted make the word larger, never smaller).
            let mut counted = std::collections::BTreeMap::<u64, u64>::new();
            match a.attached() {
                Ok(slots) => {
                    report.processes = slots.len() as u64;
                    for (slot, owner) in slots {
                        match a.counted_pins(slot) {
                            Ok(pins) => pins.into_iter().for_each(|(rec, n)| {
                                let c = counted.entry(rec).or_default();
                                *c = c.saturating_add(n);
                            }),
                            Err(e) => report
                                .problems
                                .push(format!("process slot {slot} (pid {}): {e}", owner.pid)),
                        }
                    }
                }
                Err(e) => report.problems.push(format!("process table: {e}")),
            }
            for (rec, n) in counted {
                match a.payload_size(rec).and_then(|_| a.pin_count(rec)) {
                    Ok(word) if u64::from(word) >= n => {}
                    Ok(word) => report.problems.push(format!(
                        "record {rec:#x}: processes count {n} pins, its pin word {word}"
                    )),
                    Err(e) => report
                        .problems
                        .push(format!("record {rec:#x}, pinned by a process: {e}")),
                }
            }
            Ok(report)
        })
    }

    /// Allocates `size` bytes from the store's allocator and returns their
    /// offset. Exposed for benchmarks and fuzzing; not part of the stable
    /// API.
    #[doc(hidden)]
    pub fn alloc_raw(&self, size: u64) -> Result<u64> {
        self.with_arena(|a| a.alloc(size))
    }

    /// Frees an offset returned by [`Store::alloc_raw`].
    #[doc(hidden)]
    pub fn free_raw(&self, offset: u64) -> Result<()> {
        self.with_arena(|a| a.free(offset))
    }
}

/// Copies `items` bit for bit to `dst` and initialises them in place.
///
/// The caller's values stay where they are: a fill may run again if its
/// operation is rolled back and retried, and `T` has no drop glue, so the
/// copies are independent values.
fn copy_in<T: ShmSafe>(dst: *mut T, items: &[T]) -> Result<()> {
    // SAFETY: `dst` points at `items.len()` elements of reserved, aligned,
    // unpublished segment memory (checked by `put`), which cannot overlap
    // the caller's slice.
    unsafe { core::ptr::copy_nonoverlapping(items.as_ptr(), dst, items.len()) };
    init_all(dst, items.len())
}

/// Runs `init_in_place` on `len` elements at `dst`.
fn init_all<T: ShmSafe>(dst: *mut T, len: usize) -> Result<()> {
    for i in 0..len {
        // SAFETY: element `i < len` lies in the reserved, aligned,
        // unpublished memory `put` checked, and holds a bitwise copy of a
        // valid T; nothing else can reach it before publication.
        unsafe { T::init_in_place(dst.add(i)) }?;
    }
    Ok(())
}

/// One pin on a record, owned by a handle: cloning adds a pin, dropping
/// removes it (freeing a removed record on its last pin). It holds the
/// store, so the mapping outlives every handle.
struct Pin {
    store: Store,
    rec: u64,
    /// This value holds a pin on `rec` (false only if pinning a clone
    /// failed).
    held: bool,
    /// The pin is counted in this process's slot of the process table.
    counted: bool,
}

impl Clone for Pin {
    fn clone(&self) -> Self {
        self.store.repin(self.rec)
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        // Errors cannot be reported from drop; a failed unpin only keeps the
        // record allocated.
        if self.held {
            let _ = self.store.unpin(self.rec, self.counted);
        }
    }
}

/// A zero-copy handle to one object in a store: derefs to `&T`.
///
/// It pins the object: after [`Store::remove`], the memory is not reused
/// until every handle to it is dropped. It keeps the mapping alive, so it
/// may outlive the `Store` it came from.
pub struct Handle<T: ShmSafe> {
    pin: Pin,
    ptr: NonNull<T>,
}

impl<T: ShmSafe> Deref for Handle<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: `ptr` was bounds-, alignment- and bit-pattern-checked when
        // the handle was made; the record is pinned (its memory is never
        // freed or reused while pinned) and the mapping is kept alive by
        // `pin`. All mutation by any process goes through T's interior
        // mutability (ShmSafe contract), so a shared reference is sound.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T: ShmSafe> Clone for Handle<T> {
    fn clone(&self) -> Self {
        Handle {
            pin: self.pin.clone(),
            ptr: self.ptr,
        }
    }
}

impl<T: ShmSafe + fmt::Debug> fmt::Debug for Handle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

// SAFETY: a handle only gives out `&T`; sending it to another thread is
// sending a `&T`, which is sound when `T: Sync`. The pin part is Send.
unsafe impl<T: ShmSafe + Sync> Send for Handle<T> {}
// SAFETY: as above: sharing the handle shares `&T`.
unsafe impl<T: ShmSafe + Sync> Sync for Handle<T> {}

/// A zero-copy handle to a slice in a store: derefs to `&[T]`.
///
/// Pins the slice like [`Handle`] does.
pub struct SliceHandle<T: ShmSafe> {
    pin: Pin,
    ptr: NonNull<T>,
    len: usize,
}

impl<T: ShmSafe> Deref for SliceHandle<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `len` elements at `ptr` were bounds-, alignment- and
        // bit-pattern-checked when the handle was made; the record is pinned
        // and the mapping alive (see `Handle::deref`).
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: ShmSafe> Clone for SliceHandle<T> {
    fn clone(&self) -> Self {
        SliceHandle {
            pin: self.pin.clone(),
            ptr: self.ptr,
            len: self.len,
        }
    }
}

impl<T: ShmSafe + fmt::Debug> fmt::Debug for SliceHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

// SAFETY: as for Handle: only `&[T]` is given out.
unsafe impl<T: ShmSafe + Sync> Send for SliceHandle<T> {}
// SAFETY: as for Handle.
unsafe impl<T: ShmSafe + Sync> Sync for SliceHandle<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a thread and fails the test if it does not finish in
    /// 60 s, instead of hanging the test run.
    fn with_watchdog(f: impl FnOnce() + Send + 'static) {
        let (done, wait) = std::sync::mpsc::channel();
        let worker = std::thread::spawn(move || {
            f();
            let _ = done.send(());
        });
        match wait.recv_timeout(Duration::from_secs(60)) {
            Ok(()) => worker.join().unwrap(),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                std::panic::resume_unwind(worker.join().unwrap_err())
            }
            Err(e) => panic!("watchdog: the test did not finish: {e}"),
        }
    }

    #[test]
    fn a_slot_whose_pid_was_reused_is_released_and_ours_is_kept() {
        let name = format!("shmstore-unit-reuse-{}", std::process::id());
        let _ = Store::unlink(&name);
        let store = Store::create(&name, 1 << 20).unwrap();
        let _ = Store::unlink(&name);
        store.insert_slice("x", &[1u64; 1024]).unwrap();
        // A process that had our pid before us (same pid, another start
        // time) pinned "x" and died.
        let ghost = Owner {
            start: proc::own_start_time() + 1,
            ..own_identity()
        };
        store
            .with_arena(|a| {
                let slot = a.attach(ghost)?.expect("a free slot");
                let f = a.lookup(b"x", hash_name(b"x"))?.expect("x");
                a.pin(f.rec)?;
                assert!(a.count_pin(slot, f.rec, 1)?);
                Ok(())
            })
            .unwrap();
        store.remove("x").unwrap();
        let pinned = store.stats().unwrap().used;
        let report = store.check().unwrap();
        assert!(report.is_ok(), "{report}");
        assert!(store.stats().unwrap().used + 8 * 1024 <= pinned, "x freed");
        let owners: Vec<Owner> = store
            .with_arena(|a| a.attached())
            .unwrap()
            .into_iter()
            .map(|(_, o)| o)
            .collect();
        assert_eq!(owners, vec![own_identity()]);
    }

    #[test]
    fn a_slot_of_another_pid_namespace_is_never_released_from_here() {
        let name = format!("shmstore-unit-pidns-{}", std::process::id());
        let _ = Store::unlink(&name);
        let store = Store::create(&name, 1 << 20).unwrap();
        let _ = Store::unlink(&name);
        store.insert_slice("x", &[1u64; 1024]).unwrap();
        // A process this namespace cannot see (its pid does not exist
        // here) pins "x", which is then removed.
        let stranger = Owner {
            pid: u32::MAX - 1,
            pidns: proc::own_pid_namespace().wrapping_add(1),
            start: 1,
        };
        store
            .with_arena(|a| {
                let slot = a.attach(stranger)?.expect("a free slot");
                let f = a.lookup(b"x", hash_name(b"x"))?.expect("x");
                a.pin(f.rec)?;
                assert!(a.count_pin(slot, f.rec, 1)?);
                Ok(())
            })
            .unwrap();
        store.remove("x").unwrap();
        let pinned = store.stats().unwrap().used;
        let report = store.check().unwrap();
        assert!(report.is_ok(), "{report}");
        assert_eq!(report.processes, 2, "the stranger's slot is kept");
        assert_eq!(store.stats().unwrap().used, pinned, "x is still pinned");
    }

    #[test]
    fn check_reports_pins_a_process_counts_but_the_record_does_not_have() {
        let name = format!("shmstore-unit-pins-{}", std::process::id());
        let _ = Store::unlink(&name);
        let store = Store::create(&name, 1 << 20).unwrap();
        let _ = Store::unlink(&name);
        store.insert("x", 5u64).unwrap();
        assert!(store.check().unwrap().is_ok());
        // A second slot of this (live) process claims a pin that the
        // record's pin word never got.
        store
            .with_arena(|a| {
                let slot = a.attach(own_identity())?.expect("a free slot");
                let f = a.lookup(b"x", hash_name(b"x"))?.expect("x");
                assert!(a.count_pin(slot, f.rec, 1)?);
                Ok(())
            })
            .unwrap();
        let report = store.check().unwrap();
        assert_eq!(report.processes, 2);
        assert_eq!(report.problems.len(), 1, "{report}");
        assert!(
            report.problems[0].contains("processes count 1 pins"),
            "{report}"
        );
    }

    #[test]
    fn a_header_lock_whose_owner_died_is_recovered_not_waited_on() {
        // Regression: formatting the header once zeroed the initialised lock,
        // leaving a plain process-private mutex that hung here.
        with_watchdog(header_lock_owner_death);
    }

    fn header_lock_owner_death() {
        let name = format!("shmstore-unit-hdr-{}", std::process::id());
        struct Unlink(String);
        impl Drop for Unlink {
            fn drop(&mut self) {
                let _ = Store::unlink(&self.0);
            }
        }
        let _ = Store::unlink(&name);
        let _cleanup = Unlink(name.clone());
        let store = Store::create(&name, 1 << 20).unwrap();
        store.insert("kept", 7u64).unwrap();
        let s2 = store.clone();
        // A thread that dies holding the header lock, as a killed process
        // would: robust mutexes report the death when the thread exits.
        std::thread::spawn(move || core::mem::forget(s2.inner.lock().unwrap()))
            .join()
            .unwrap();
        assert_eq!(*store.get::<u64>("kept").unwrap(), 7);
        store.insert("after", 8u64).unwrap();
        assert_eq!(store.with_arena(|a| Header(a).recoveries()).unwrap(), 1);
        assert!(store.check().unwrap().is_ok());
    }
}
