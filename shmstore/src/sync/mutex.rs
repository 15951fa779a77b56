//! [`ShmMutex<T>`]: a robust, process-shared mutex around a `T`.

use core::cell::UnsafeCell;
use core::fmt;
use core::mem::{align_of, offset_of, size_of};
use core::ops::{Deref, DerefMut};
use core::ptr;
use core::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::held::{self, Held};
use super::wait::{self, Place};
use crate::layout::{InvalidBitPattern, LayoutKind, ShmMovable, ShmSafe, TypeLayout};
use crate::sys::pthread::{Acquired, RawMutex, FUTEX_OWNER_DIED};
use crate::Error;

/// `state` bit: a holder died, and no one has marked the data consistent
/// since.
const INCONSISTENT: u32 = 1;

/// A mutual-exclusion lock around a `T`, shared by every process that maps
/// the store it lives in.
///
/// Build it with [`ShmMutex::new`] and put it into a store; lock it with
/// [`lock`](ShmMutex::lock), which returns a guard that dereferences to the
/// data and unlocks when dropped.
///
/// ```
/// use shmstore::{ShmMutex, Store};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let name = format!("doc-mutex-{}", std::process::id());
/// let store = Store::open_or_create(&name, 1 << 20)?;
/// let total = store.get_or_insert_with("total", || ShmMutex::new(0u64))?;
/// *total.lock()? += 5; // `?` works in any function returning a std error
/// assert_eq!(*total.lock()?, 5);
/// # Store::unlink(&name)?;
/// # Ok(())
/// # }
/// ```
///
/// # Robustness and process sharing
///
/// `new` is `const` and cannot know where the mutex will live, so it builds a
/// plain process-private mutex. The store, after copying the value to its
/// final address in the segment and before publishing it, runs
/// [`ShmSafe::init_in_place`], which re-initialises the lock there as
/// *process-shared*, *robust* and *error-checking*. So a `ShmMutex` only
/// becomes robust and process-shared once it lives in a store; on the stack
/// or in a `Box` it is an ordinary local mutex.
///
/// # Owner death
///
/// If a process (or thread) dies holding a store's `ShmMutex`, the data it
/// guarded may be half-updated. The mutex remembers that in a flag of its
/// own, in the segment, until someone says the data is consistent again:
///
/// - [`lock`](ShmMutex::lock) (and `try_lock`) refuse with
///   [`Error::OwnerDied`] — naming the mutex — for as long as the flag is
///   set, so owner death cannot be ignored by accident, by this process or
///   any other. `?` propagates it like any other error.
/// - [`lock_recover`](ShmMutex::lock_recover) returns the guard whatever
///   the flag says; [`ShmMutexGuard::owner_died`] tells whether it is set.
///   Repair the data, then call [`ShmMutexGuard::mark_consistent`]. A guard
///   dropped without it leaves the flag set for the next locker.
///
/// The pthread mutex underneath is made consistent as soon as its owner's
/// death is seen (so it never becomes unrecoverable); the flag carries the
/// report from then on. A holder that dies after `mark_consistent` but
/// before unlocking sets it again.
///
/// A guard dropped while its thread unwinds from a panic sets the flag
/// too, as `std`'s mutex is poisoned: the update may be half done, and the
/// next locker — in any process — is told so in the same way. (Under
/// `panic = "abort"` the process dies instead, which is reported alike.)
///
/// # A lock word that names no thread
///
/// The kernel marks a robust mutex whose owner died, but only through the
/// owner's own list of the locks it holds: a lock word that names a thread
/// which does not exist (bytes another process wrote over the mutex) would
/// be waited on forever. So a mutex in a store is waited for in slices of
/// 100 ms, and after each one that ended without the lock, the thread its
/// word names is looked up (`kill(tid, 0)`); the same word naming no
/// thread after two slices in a row is [`Error::Corrupted`]. This is
/// judged only while every process that attached to the store shares this
/// process's pid namespace (thread ids of another namespace name other
/// threads here); otherwise such a word is waited on like a held lock,
/// and only the timed forms return.
///
/// # Invalid values
///
/// When `T` has invalid bit patterns (`bool`, `char`, enums), every
/// acquisition checks the data's bytes while holding the lock, before any
/// `&T` exists; invalid bytes are [`Error::Corrupted`]. To recover a mutex
/// whose data another process corrupted, [`ShmMutex::reset`] overwrites it
/// without reading it.
///
/// # Moving and overwriting
///
/// A lock in a segment must never move: its owner's robust list points at
/// it. A guard therefore gives `&mut T` (`DerefMut`) only for
/// [`ShmMovable`] types, which have no such parts; for a `T` that itself
/// holds a `ShmMutex`, the guard gives `&T`, and the nested locks are used
/// through it. Asking for `&mut` of such a `T` is a compile-time error.
///
/// # Layout
///
/// `#[repr(C, align(64))]`:
///
/// | offset                             | field   | type                                   |
/// |------------------------------------|---------|----------------------------------------|
/// | 0                                  | `raw`   | `pthread_mutex_t` (40 bytes, glibc x86_64) |
/// | 40                                 | `state` | `AtomicU32`: bit 0 set = owner died, not yet marked consistent |
/// | 44 rounded up to `align_of::<T>()` | `data`  | `T`                                    |
///
/// Align is `max(64, align_of::<T>())`: a mutex starts a cache line of its
/// own, so a small one (lock and data in 64 bytes) never shares a line with
/// a neighbouring object that other processes write, and lock handoffs
/// between processes move one line, not two. The layout's kind is
/// [`LayoutKind::Opaque`] with `T`'s layout as its one parameter; the size
/// (hence the `pthread_mutex_t` size) is part of the fingerprint.
#[repr(C, align(64))]
pub struct ShmMutex<T> {
    raw: RawMutex,
    state: AtomicU32,
    data: UnsafeCell<T>,
}

// SAFETY: the mutex only hands out access to `T` to one thread at a time,
// so it can be shared when `T` can be sent between threads (as for
// `std::sync::Mutex`); the pthread mutex and the state word are
// thread-safe.
unsafe impl<T: Send> Sync for ShmMutex<T> {}
// SAFETY: moving the mutex moves the `T` with it (`T: Send`); an unlocked
// pthread mutex holds nothing tied to a thread.
unsafe impl<T: Send> Send for ShmMutex<T> {}

/// How [`ShmMutex::acquire`] treats the owner-died flag.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flag {
    /// Refuse with `OwnerDied` while it is set.
    Refuse,
    /// Hand out the guard; it reports the flag.
    Report,
}

impl<T: ShmSafe> ShmMutex<T> {
    /// A new unlocked mutex holding `value`.
    ///
    /// It becomes process-shared and robust only once a store has placed it
    /// in a segment; see [the type docs](ShmMutex#robustness-and-process-sharing).
    pub const fn new(value: T) -> Self {
        ShmMutex {
            raw: RawMutex::new_uninit(),
            state: AtomicU32::new(0),
            data: UnsafeCell::new(value),
        }
    }

    /// Blocks until this thread holds the lock, and returns a guard giving
    /// access to the data.
    ///
    /// # Errors
    ///
    /// - [`Error::OwnerDied`] if a holder died and no one has marked the
    ///   data consistent since (the lock is released again; see
    ///   [`lock_recover`](ShmMutex::lock_recover));
    /// - [`Error::Corrupted`] if the lock's bytes are not a valid mutex, or
    ///   the data holds an invalid value;
    /// - [`Error::InvalidArgument`] if this thread already holds the lock of
    ///   this mutex (in a store; a relock would deadlock).
    pub fn lock(&self) -> Result<ShmMutexGuard<'_, T>, Error> {
        let acquired = self.raw_lock()?;
        self.acquire(acquired, Flag::Refuse)
    }

    /// Takes the lock if no one holds it: `Ok(None)` if someone does.
    ///
    /// # Errors
    ///
    /// As for [`lock`](ShmMutex::lock).
    pub fn try_lock(&self) -> Result<Option<ShmMutexGuard<'_, T>>, Error> {
        match self.raw.try_lock()? {
            Some(acquired) => self.acquire(acquired, Flag::Refuse).map(Some),
            None => Ok(None),
        }
    }

    /// Like [`lock`](ShmMutex::lock), but gives up after `timeout`:
    /// `Ok(None)` if the lock was still held by someone else then.
    ///
    /// The wait is measured on the monotonic clock. A holder that died is
    /// noticed at once (the kernel hands the lock over), so the timeout only
    /// bounds waiting for a live holder — one that is slow, stopped
    /// (`SIGSTOP`), or waiting for something itself.
    ///
    /// ```
    /// # use shmstore::ShmMutex;
    /// # use std::time::{Duration, Instant};
    /// # fn main() -> shmstore::Result<()> {
    /// let m = ShmMutex::new(0u64);
    /// match m.try_lock_for(Duration::from_millis(100))? {
    ///     Some(mut guard) => *guard += 1,
    ///     None => eprintln!("still busy after 100 ms"),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`lock`](ShmMutex::lock).
    pub fn try_lock_for(&self, timeout: Duration) -> Result<Option<ShmMutexGuard<'_, T>>, Error> {
        match self.raw_lock_for(timeout)? {
            Some(acquired) => self.acquire(acquired, Flag::Refuse).map(Some),
            None => Ok(None),
        }
    }

    /// [`lock_recover`](ShmMutex::lock_recover) with a timeout, as
    /// [`try_lock_for`](ShmMutex::try_lock_for): `Ok(None)` if the lock was
    /// still held when `timeout` passed.
    ///
    /// # Errors
    ///
    /// As for [`lock_recover`](ShmMutex::lock_recover).
    pub fn try_lock_recover_for(
        &self,
        timeout: Duration,
    ) -> Result<Option<ShmMutexGuard<'_, T>>, Error> {
        match self.raw_lock_for(timeout)? {
            Some(acquired) => self.acquire(acquired, Flag::Report).map(Some),
            None => Ok(None),
        }
    }

    /// Like [`lock`](ShmMutex::lock), but returns the guard even if a
    /// holder died: [`ShmMutexGuard::owner_died`] says so. Repair the data,
    /// then call [`ShmMutexGuard::mark_consistent`].
    ///
    /// ```
    /// # use shmstore::ShmMutex;
    /// # fn main() -> shmstore::Result<()> {
    /// # let m = ShmMutex::new(0u64);
    /// let mut guard = m.lock_recover()?;
    /// if guard.owner_died() {
    ///     *guard = 0; // whatever puts the data right
    ///     guard.mark_consistent();
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`lock`](ShmMutex::lock), but never [`Error::OwnerDied`].
    pub fn lock_recover(&self) -> Result<ShmMutexGuard<'_, T>, Error> {
        let acquired = self.raw_lock()?;
        self.acquire(acquired, Flag::Report)
    }

    /// [`lock_recover`](ShmMutex::lock_recover) without blocking: `Ok(None)`
    /// if someone holds the lock.
    ///
    /// # Errors
    ///
    /// As for [`lock_recover`](ShmMutex::lock_recover).
    pub fn try_lock_recover(&self) -> Result<Option<ShmMutexGuard<'_, T>>, Error> {
        match self.raw.try_lock()? {
            Some(acquired) => self.acquire(acquired, Flag::Report).map(Some),
            None => Ok(None),
        }
    }

    /// Overwrites the data with `value`, whatever its bytes hold now (even
    /// invalid ones, which make [`lock`](ShmMutex::lock) fail), and marks
    /// it consistent. Blocks until the lock is free.
    ///
    /// Only for a [`ShmMovable`] `T`: overwriting a nested lock could break
    /// a holder's robust list.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupted`] or [`Error::InvalidArgument`] as for
    /// [`lock`](ShmMutex::lock) (never an invalid value or owner death).
    pub fn reset(&self, value: T) -> Result<(), Error>
    where
        T: ShmMovable,
    {
        let acquired = self.raw_lock()?;
        let guard = self.locked(acquired);
        // What the old value's containers own is freed by walking its
        // bytes by layout (checked, never read as a `T`), this thread
        // holding the lock.
        crate::containers::own::free_in_place::<T, Self>(self, guard.mutex.data.get());
        // SAFETY: this thread holds the lock, so nothing else reads or
        // writes the data; `T`'s only drop glue is its containers' (freed
        // above by layout), and it has no in-place parts (`T: ShmMovable`),
        // so the old bytes, valid or not, are simply overwritten and the
        // new value needs no initialisation.
        unsafe { guard.mutex.data.get().write(value) };
        guard.mutex.state.store(0, Ordering::Release);
        drop(guard);
        Ok(())
    }

    /// The guard for a lock this thread just acquired: records owner death,
    /// notes the lock as held (see [`held`]), and makes the pthread mutex
    /// consistent again so that it can never become unrecoverable.
    fn locked(&self, acquired: Acquired) -> ShmMutexGuard<'_, T> {
        self.locked_as(acquired, Flag::Refuse)
    }

    /// [`locked`](Self::locked), for a guard of the given kind.
    fn locked_as(&self, acquired: Acquired, flag: Flag) -> ShmMutexGuard<'_, T> {
        let held = held::note_locked(self as *const Self as usize);
        if acquired == Acquired::OwnerDied {
            // First the flag (a death after it is seen again by the next
            // locker, through the pthread mutex), then the pthread mutex.
            self.state.fetch_or(INCONSISTENT, Ordering::AcqRel);
            // Cannot fail for a lock that just reported its owner's death;
            // if it did, the unlock at the guard's drop would leave it
            // unrecoverable, which the next lock reports as corrupted.
            let _ = self.raw.make_consistent();
        }
        ShmMutexGuard {
            mutex: self,
            held: Some(held),
            owner_died: self.state.load(Ordering::Acquire) & INCONSISTENT != 0,
            flag,
        }
    }

    /// Turns a fresh acquisition into a guard: records an owner's death,
    /// applies `flag`, then validates the data.
    fn acquire(&self, acquired: Acquired, flag: Flag) -> Result<ShmMutexGuard<'_, T>, Error> {
        // From here on the guard owns the lock: any early return unlocks.
        let guard = self.locked_as(acquired, flag);
        if guard.owner_died && flag == Flag::Refuse {
            return Err(Error::OwnerDied {
                what: super::describe(self.lock_addr(), Self::LAYOUT),
            });
        }
        if let Err(e) = self.check_data_locked() {
            return Err(Error::corrupted(format!(
                "{} holds an invalid value: {e}",
                Self::LAYOUT.type_expr()
            )));
        }
        Ok(guard)
    }

    /// Takes the lock again for a guard of kind `flag` that gave it up to
    /// wait on a condition variable: spins on `try_lock` for a moment (the
    /// notifier usually releases the lock within microseconds, and a futex
    /// sleep would cost a wake-up), then blocks.
    pub(crate) fn relock(&self, flag: Flag) -> Result<ShmMutexGuard<'_, T>, Error> {
        let mut acquired = None;
        let mut failed = None;
        super::wait::spin(|| match self.raw.try_lock() {
            Ok(Some(a)) => {
                acquired = Some(a);
                true
            }
            Ok(None) => false,
            Err(e) => {
                failed = Some(e);
                true
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        let acquired = match acquired {
            Some(a) => a,
            None => self.raw_lock()?,
        };
        self.acquire(acquired, flag)
    }

    /// Takes the pthread mutex, as long as it takes.
    fn raw_lock(&self) -> Result<Acquired, Error> {
        self.raw_lock_until(None)?
            .ok_or_else(|| Error::corrupted("an untimed lock ended without the lock"))
    }

    /// Takes the pthread mutex, waiting at most `timeout` (`Ok(None)`
    /// then).
    fn raw_lock_for(&self, timeout: Duration) -> Result<Option<Acquired>, Error> {
        // A timeout too far to represent: no deadline.
        self.raw_lock_until(Instant::now().checked_add(timeout))
    }

    /// Takes the pthread mutex, waiting until `deadline` (`None`: as long
    /// as it takes). A mutex in a store sleeps in slices and checks that
    /// the thread its lock word names exists (see
    /// [the type docs](ShmMutex#a-lock-word-that-names-no-thread)); a
    /// local one (not robust: its word holds no thread id) just waits.
    fn raw_lock_until(&self, deadline: Option<Instant>) -> Result<Option<Acquired>, Error> {
        if let Some(a) = self.raw.try_lock()? {
            return Ok(Some(a));
        }
        match wait::place_of(self) {
            Place::Store(_) => self.raw.lock_until(deadline, || {
                matches!(wait::place_of(self), Place::Store(true))
            }),
            Place::Local => match deadline {
                None => self.raw.lock().map(Some),
                Some(at) => self
                    .raw
                    .lock_for(at.saturating_duration_since(Instant::now())),
            },
        }
    }

    fn lock_addr(&self) -> usize {
        self as *const Self as usize
    }

    /// Checks the data's bytes; the calling thread holds the lock.
    fn check_data_locked(&self) -> Result<(), InvalidBitPattern> {
        if !T::HAS_INVALID_BIT_PATTERNS {
            return Ok(());
        }
        // SAFETY:
        // - `data.get()` is aligned and valid for reads of a `T`: it is a
        //   field of `*self`;
        // - the calling thread holds the lock, so no one writes the data
        //   during the check (writers hold the lock too).
        unsafe { T::check_bytes(self.data.get()) }.map_err(|e| e.within(offset_of!(Self, data)))
    }

    /// `true` if a holder died and no one has marked the data consistent
    /// since (whether a locker has seen the death yet or not). An
    /// observation without locking: it may be stale by the time it is used.
    pub fn owner_died(&self) -> bool {
        self.state.load(Ordering::Acquire) & INCONSISTENT != 0
            || self.raw.word() & FUTEX_OWNER_DIED != 0
    }

    /// The data, through exclusive access (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// Consumes the mutex and returns the data.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

/// The offset of the data in a `ShmMutex<T>` whose `T` is aligned to
/// `align`: after the pthread mutex and the state word, aligned (as the
/// `#[repr(C)]` layout puts it). For the store's walk of a value by its
/// recorded layout.
pub(crate) fn mutex_data_offset(align: u64) -> Option<u64> {
    (core::mem::size_of::<RawMutex>() as u64 + 4).checked_next_multiple_of(align.max(1))
}

/// Runs `f` holding the `ShmMutex` whose bytes start at `off` of `mem`, if
/// it can be taken right now (`Ok(None)` if someone holds it). For the
/// store's walk of a value, which cannot know the mutex's `T` and runs under
/// the header lock (so must never wait). An owner's death seen here is
/// recorded in the mutex's flag, as `lock` would: the next locker is told.
pub(crate) fn try_with_locked<R>(
    mem: &crate::arena::mem::Mem,
    off: u64,
    f: impl FnOnce() -> R,
) -> Result<Option<R>, Error> {
    let bytes = core::mem::size_of::<RawMutex>() as u64 + 4;
    let p = mem.ptr(off, bytes, 8)?;
    // SAFETY: `p` points at `bytes` checked bytes inside the mapping,
    // aligned for `RawMutex` (8) and for the `AtomicU32` after it (at 40,
    // a multiple of 4): the `raw` and `state` fields of a `ShmMutex` (its
    // `repr(C)` layout, which the recorded layout named). Both are only
    // ever operated on by pthread calls and atomics, and the mapping
    // outlives this call.
    let (raw, state) = unsafe {
        (
            &*p.cast::<RawMutex>(),
            &*p.add(core::mem::size_of::<RawMutex>()).cast::<AtomicU32>(),
        )
    };
    let Some(acquired) = raw.try_lock()? else {
        return Ok(None);
    };
    let held = held::note_locked(p as usize);
    if acquired == Acquired::OwnerDied {
        state.fetch_or(INCONSISTENT, Ordering::AcqRel);
        let _ = raw.make_consistent();
    }
    let r = f();
    // SAFETY: this thread acquired the lock just above.
    unsafe { raw.unlock() };
    held.released();
    Ok(Some(r))
}

// SAFETY:
// - no absolute addresses: a `pthread_mutex_t` (whose robust-list links are
//   only meaningful while held by a live thread, which the kernel and glibc
//   maintain), a state word and a `T: ShmSafe`;
// - `repr(C)`, and LAYOUT records name, size, align and `T`'s layout; the
//   field offsets follow from these;
// - no drop glue: `RawMutex` has no `Drop`, atomics have none, and
//   `T: ShmSafe` has none;
// - bit patterns: every byte pattern is a valid `pthread_mutex_t` value (an
//   array of integers to Rust) and a valid `AtomicU32`, and `check_bytes`
//   checks `T`'s bytes; lock acquisition re-checks them under the lock;
// - mutation through `&Self` goes through the process-shared lock and the
//   atomic state word;
// - IMMOVABLE: the pthread mutex is initialised in place (`init_in_place`
//   only touches `*ptr`) and must not move while held.
unsafe impl<T: ShmSafe> ShmSafe for ShmMutex<T> {
    const LAYOUT: &'static TypeLayout = &TypeLayout {
        name: "ShmMutex",
        size: size_of::<Self>(),
        align: align_of::<Self>(),
        kind: LayoutKind::Opaque {
            params: &[T::LAYOUT],
        },
    };
    // The data is never checked from outside the lock: once a `ShmMutex`
    // is published, lock holders write the data at any time, so a check
    // from `Store::get` would race with them. Instead every
    // [`lock`](ShmMutex::lock) validates the data's bytes while it holds the
    // lock, and reports invalid bytes as `Error::Corrupted`. The pthread
    // mutex bytes themselves have no invalid patterns we could check.
    const HAS_INVALID_BIT_PATTERNS: bool = false;
    const IMMOVABLE: bool = true;

    unsafe fn init_in_place(ptr: *mut Self) -> Result<(), Error> {
        // SAFETY: the caller guarantees `ptr` is valid for writes of a
        // `Self`; `addr_of_mut!` creates no reference.
        let (raw, data) = unsafe {
            (
                ptr::addr_of_mut!((*ptr).raw),
                ptr::addr_of_mut!((*ptr).data).cast::<T>(),
            )
        };
        // SAFETY:
        // - `raw` is aligned and writable (a field of `*ptr`) at its final
        //   address (the store runs this after the final copy);
        // - the value is unpublished, so no one else accesses it;
        // - it is not on any robust list: the value was moved into the
        //   store by value (`insert`, `get_or_insert_with`: no guard can
        //   outlive a move) or built from an owned iterator, and a mutex
        //   made by `new` is process-private and not robust, so even a
        //   guard forgotten before the move linked it nowhere.
        unsafe { RawMutex::init(raw) }?;
        // SAFETY: `data` is an aligned, writable field of `*ptr` holding a
        // valid `T` (caller's guarantee), unpublished.
        unsafe { T::init_in_place(data) }
    }

    /// Visits `T`'s offsets, under the lock if it can be taken right now.
    ///
    /// Reading the data needs the lock, and `trace` must not block: the
    /// store calls it under its header lock, which is always the innermost
    /// lock, so waiting here could deadlock against a holder of this mutex
    /// that waits for the header lock. So it uses `try_lock`:
    ///
    /// - free (owner-died or not): the data is traced and the lock released;
    ///   an owner's death seen here is recorded in the flag, so the next
    ///   `lock` still reports it;
    /// - held by a live thread, or unusable: nothing is visited.
    ///
    /// A caller that needs every offset (to free nested allocations or to
    /// rebuild the allocator) cannot rely on `trace` alone for a `T` holding
    /// segment offsets inside a `ShmMutex` that is held at that moment.
    fn trace(&self, visit: &mut dyn FnMut(u64)) {
        let Ok(Some(guard)) = self.try_lock_recover() else {
            return;
        };
        guard.trace(visit);
    }
}

impl<T: ShmSafe + fmt::Debug> fmt::Debug for ShmMutex<T> {
    /// Never blocks and never changes what the next locker is told: shows
    /// the data if the lock is free, `<locked>` otherwise, and
    /// `owner_died: true` (without the data) while a dead holder's update
    /// has not been marked consistent.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ShmMutex");
        match self.try_lock_recover() {
            Ok(Some(guard)) if guard.owner_died() => d.field("owner_died", &true),
            Ok(Some(guard)) => d.field("data", &&*guard),
            Ok(None) => d.field("data", &format_args!("<locked>")),
            Err(e) => d.field("error", &format_args!("{e}")),
        };
        d.finish_non_exhaustive()
    }
}

/// Access to a [`ShmMutex`]'s data while the lock is held; dropping it
/// unlocks.
///
/// Not `Send`: a pthread mutex must be unlocked by the thread that locked it.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ShmMutexGuard<'a, T: ShmSafe> {
    mutex: &'a ShmMutex<T>,
    /// This thread's note that it holds the lock (see [`held`]); `!Send`.
    held: Option<Held>,
    /// The owner-died flag was set when the lock was taken.
    owner_died: bool,
    /// How the guard was asked for (a condition variable's wait takes the
    /// lock again the same way).
    flag: Flag,
}

// SAFETY: sharing `&ShmMutexGuard` across threads only gives out `&T`,
// which is fine when `T: Sync` (as for `std::sync::MutexGuard`).
unsafe impl<T: ShmSafe + Sync> Sync for ShmMutexGuard<'_, T> {}

impl<'a, T: ShmSafe> ShmMutexGuard<'a, T> {
    /// `true` if a previous holder died and the data has not been marked
    /// consistent since (only a guard from
    /// [`lock_recover`](ShmMutex::lock_recover) can say so).
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }

    /// Declares the data consistent again: later lockers are no longer told
    /// that a holder died.
    pub fn mark_consistent(&mut self) {
        self.mutex.state.store(0, Ordering::Release);
        self.owner_died = false;
    }

    /// Releases the lock to wait on a condition variable: returns the
    /// mutex and how to take it again ([`ShmMutex::relock`]).
    pub(crate) fn unlock_for_wait(self) -> (&'a ShmMutex<T>, Flag) {
        let (mutex, flag) = (self.mutex, self.flag);
        // Dropping the guard unlocks and un-notes the lock.
        drop(self);
        (mutex, flag)
    }
}

impl<T: ShmSafe> Deref for ShmMutexGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock, so the only access to the data
        // goes through this guard, whose borrow rules `&self` follows; the
        // data was validated when the lock was acquired.
        unsafe { &*self.mutex.data.get() }
    }
}

/// `&mut T` only for a movable `T` (see [`ShmMovable`]): a `T` holding a
/// nested lock could otherwise be moved or overwritten (`mem::swap`,
/// `*guard = ...`) under a holder of that lock.
impl<T: ShmMovable> DerefMut for ShmMutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this access exclusive.
        // `T` has no in-place-initialised parts (`T: ShmMovable`), so any
        // value safe code writes through the `&mut T` is a valid, movable
        // `T` (no drop glue, nothing tied to its address).
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T: ShmSafe> Drop for ShmMutexGuard<'_, T> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The update may be half done: reported as a dead holder's is
            // (see the type docs), before the lock is given up.
            self.mutex.state.fetch_or(INCONSISTENT, Ordering::AcqRel);
        }
        // SAFETY: a guard exists only while the thread that created it holds
        // the lock (it is `!Send`), and this drop releases it exactly once.
        unsafe { self.mutex.raw.unlock() };
        if let Some(held) = self.held.take() {
            held.released();
        }
    }
}

impl<T: ShmSafe + fmt::Debug> fmt::Debug for ShmMutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ShmSafe + fmt::Display> fmt::Display for ShmMutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `ShmMutex` in a heap buffer, initialised in place as the store
    /// would after copying it into a segment.
    fn in_place<T: ShmSafe>(value: T) -> Box<ShmMutex<T>> {
        let mut m = Box::new(ShmMutex::new(value));
        // SAFETY: the box is aligned, writable, holds a valid value, is not
        // shared yet and does not move until dropped.
        unsafe { ShmMutex::init_in_place(&mut *m) }.unwrap();
        m
    }

    /// Locks `m` on a thread that exits holding the lock (the guard is
    /// forgotten); `join` returns after the kernel has marked the lock.
    fn lock_and_die<T: ShmMovable>(m: &ShmMutex<T>, write: impl FnOnce(&mut T) + Send) {
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut guard = m.lock_recover().unwrap();
                write(&mut guard);
                core::mem::forget(guard);
            })
            .join()
            .unwrap();
        });
    }

    #[test]
    fn layout_is_opaque_over_t() {
        let layout = <ShmMutex<u64>>::LAYOUT;
        assert_eq!(layout.name, "ShmMutex");
        assert_eq!(layout.size, 64);
        assert_eq!(layout.align, 64);
        assert_eq!(
            layout.kind,
            LayoutKind::Opaque {
                params: &[u64::LAYOUT]
            }
        );
        assert_eq!(layout.type_expr(), "ShmMutex<u64>");
        assert_ne!(<ShmMutex<u64>>::FINGERPRINT, <ShmMutex<i64>>::FINGERPRINT);
        assert_ne!(<ShmMutex<u64>>::FINGERPRINT, u64::FINGERPRINT);
        assert_eq!(offset_of!(ShmMutex<u8>, state), 40);
        assert_eq!(offset_of!(ShmMutex<u8>, data), 44);
        assert_eq!(offset_of!(ShmMutex<u64>, data), 48);
        // What the store's layout walk computes from `T`'s alignment alone.
        assert_eq!(
            mutex_data_offset(1),
            Some(offset_of!(ShmMutex<u8>, data) as u64)
        );
        assert_eq!(
            mutex_data_offset(8),
            Some(offset_of!(ShmMutex<u64>, data) as u64)
        );
        assert_eq!(
            mutex_data_offset(16),
            Some(offset_of!(ShmMutex<u128>, data) as u64)
        );
        assert_eq!(
            mutex_data_offset(8),
            Some(offset_of!(ShmMutex<[u64; 8]>, data) as u64)
        );
        assert_eq!(mutex_data_offset(64), Some(64));
        assert_eq!(offset_of!(ShmMutex<u128>, data), 48);
        const { assert!(!<ShmMutex<u32>>::HAS_INVALID_BIT_PATTERNS) };
        // Checked under the lock instead (see `lock`), never from outside.
        const { assert!(!<ShmMutex<bool>>::HAS_INVALID_BIT_PATTERNS) };
        const { assert!(<ShmMutex<u32>>::IMMOVABLE) };
        const { assert!(<[ShmMutex<u32>; 2]>::IMMOVABLE) };
    }

    #[test]
    fn guard_mutates_the_data() {
        let m = in_place(5u64);
        *m.lock().unwrap() += 1;
        {
            let mut guard = m.lock().unwrap();
            *guard *= 7;
            assert!(m.try_lock().is_err(), "relock from the holder is refused");
        }
        assert_eq!(*m.try_lock().unwrap().unwrap(), 42);
        let mut m = *m;
        *m.get_mut() += 1;
        assert_eq!(m.into_inner(), 43);
    }

    #[test]
    fn a_timed_lock_gives_up_on_a_held_mutex() {
        let m = in_place(1u32);
        let m = &*m;
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|s| {
            let holder = s.spawn(move || {
                let g = m.lock().unwrap();
                locked_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                drop(g);
            });
            locked_rx.recv().unwrap();
            let t = std::time::Instant::now();
            assert!(m.try_lock_for(Duration::from_millis(30)).unwrap().is_none());
            assert!(m
                .try_lock_recover_for(Duration::from_millis(1))
                .unwrap()
                .is_none());
            assert!(t.elapsed() >= Duration::from_millis(30));
            release_tx.send(()).unwrap();
            holder.join().unwrap();
        });
        let g = m.try_lock_for(Duration::from_secs(5)).unwrap().unwrap();
        assert!(
            matches!(
                m.try_lock_for(Duration::from_secs(5)),
                Err(Error::InvalidArgument { .. })
            ),
            "a relock is refused, not waited for"
        );
        drop(g);
        lock_and_die(m, |v| *v = 2);
        assert!(matches!(
            m.try_lock_for(Duration::from_secs(5)),
            Err(Error::OwnerDied { .. })
        ));
        let mut g = m
            .try_lock_recover_for(Duration::from_secs(5))
            .unwrap()
            .unwrap();
        assert!(g.owner_died());
        g.mark_consistent();
    }

    #[test]
    fn a_local_mutex_works_without_init() {
        let m = ShmMutex::new([1u32, 2, 3]);
        m.lock().unwrap()[1] = 20;
        let guard = m.lock().unwrap();
        assert!(m.try_lock().unwrap().is_none());
        assert_eq!(*guard, [1, 20, 3]);
    }

    #[test]
    fn owner_death_is_refused_until_someone_marks_the_data_consistent() {
        let m = in_place(0u64);
        lock_and_die(&m, |v| *v = 17);
        assert!(m.owner_died());
        for _ in 0..2 {
            match m.lock() {
                Err(Error::OwnerDied { what }) => {
                    assert!(what.starts_with("ShmMutex<u64>"), "{what}")
                }
                other => panic!("{other:?}"),
            }
            assert!(matches!(m.try_lock(), Err(Error::OwnerDied { .. })));
        }
        // Recovering without marking it consistent leaves the report.
        {
            let guard = m.lock_recover().unwrap();
            assert!(guard.owner_died());
            assert_eq!(*guard, 17);
        }
        assert!(matches!(m.lock(), Err(Error::OwnerDied { .. })));
        let mut guard = m.try_lock_recover().unwrap().unwrap();
        *guard = 18;
        guard.mark_consistent();
        assert!(!guard.owner_died());
        drop(guard);
        assert!(!m.owner_died());
        assert_eq!(*m.lock().unwrap(), 18);
        assert!(!m.lock_recover().unwrap().owner_died());
    }

    #[test]
    fn a_holder_dying_after_marking_consistent_is_reported_again() {
        let m = in_place(0u64);
        lock_and_die(&m, |v| *v = 1);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut g = m.lock_recover().unwrap();
                g.mark_consistent();
                *g = 2;
                core::mem::forget(g);
            })
            .join()
            .unwrap();
        });
        assert!(matches!(m.lock(), Err(Error::OwnerDied { .. })));
    }

    #[test]
    fn question_mark_works_in_functions_returning_a_boxed_std_error() {
        fn bump(m: &ShmMutex<u64>) -> Result<u64, Box<dyn std::error::Error + Send + Sync>> {
            let mut guard = m.lock()?;
            *guard += 1;
            Ok(*guard)
        }
        let m = in_place(0u64);
        assert_eq!(bump(&m).unwrap(), 1);
        lock_and_die(&m, |v| *v = 10);
        let err = bump(&m).unwrap_err();
        assert!(err.to_string().contains("died"), "{err}");
        // Still refused: `?` did not swallow the report.
        assert!(bump(&m).is_err());
        m.lock_recover().unwrap().mark_consistent();
        assert_eq!(bump(&m).unwrap(), 11);
    }

    #[test]
    fn invalid_data_is_refused_under_the_lock_and_can_be_reset() {
        let m = in_place(true);
        // SAFETY: no guard exists; writing the byte 7 into a `bool` slot
        // through a raw pointer simulates another process's corruption, and
        // no `&bool` is created from it.
        unsafe { m.data.get().cast::<u8>().write(7) };
        for _ in 0..2 {
            match m.lock() {
                Err(Error::Corrupted { reason }) => {
                    assert!(reason.contains("ShmMutex<bool>"), "{reason}");
                    assert!(reason.contains("byte offset 44"), "{reason}");
                }
                other => panic!("{other:?}"),
            }
            assert!(m.lock_recover().is_err());
        }
        // `check_bytes` from outside the lock accepts it: the data is only
        // ever checked under the lock, where no holder is writing it.
        // SAFETY: `&*m` is valid for reads of the whole value.
        assert!(unsafe { ShmMutex::<bool>::check_bytes(&*m) }.is_ok());
        // The failed locks released the mutex; the holder can overwrite
        // the invalid value.
        m.reset(false).unwrap();
        assert!(!*m.lock().unwrap());
    }

    #[test]
    fn trace_uses_the_lock_without_blocking_or_swallowing_owner_death() {
        #[repr(C)]
        struct Offsets([u64; 2]);
        // SAFETY: two u64 at known offsets, no pointers, no drop glue.
        unsafe impl ShmSafe for Offsets {
            const LAYOUT: &'static TypeLayout = <[u64; 2]>::LAYOUT;
            fn trace(&self, visit: &mut dyn FnMut(u64)) {
                self.0.iter().for_each(|&o| visit(o));
            }
        }
        // SAFETY: nothing initialised in place.
        unsafe impl ShmMovable for Offsets {}
        let m = in_place(Offsets([64, 128]));
        let mut seen = Vec::new();
        m.trace(&mut |o| seen.push(o));
        assert_eq!(seen, [64, 128]);
        let guard = m.lock().unwrap();
        m.trace(&mut |o| seen.push(o));
        assert_eq!(seen.len(), 2, "held: nothing visited");
        drop(guard);
        assert!(m.try_lock().unwrap().is_some(), "trace left it unlocked");
        lock_and_die(&m, |_| {});
        m.trace(&mut |o| seen.push(o));
        assert_eq!(seen.len(), 4, "traced after the owner died");
        assert!(matches!(m.lock(), Err(Error::OwnerDied { .. })));
    }

    #[test]
    fn debug_never_blocks_and_never_swallows_owner_death() {
        let m = in_place(3u32);
        assert_eq!(format!("{m:?}"), "ShmMutex { data: 3, .. }");
        let guard = m.lock().unwrap();
        assert!(format!("{m:?}").starts_with("ShmMutex { error: "));
        drop(guard);
        let local = ShmMutex::new(4u32);
        let _guard = local.lock().unwrap();
        assert_eq!(format!("{local:?}"), "ShmMutex { data: <locked>, .. }");
        lock_and_die(&m, |v| *v = 9);
        for _ in 0..2 {
            assert_eq!(format!("{m:?}"), "ShmMutex { owner_died: true, .. }");
        }
        assert!(matches!(m.lock(), Err(Error::OwnerDied { .. })));
        let mut g = m.lock_recover().unwrap();
        assert_eq!(*g, 9);
        g.mark_consistent();
        drop(g);
        assert_eq!(format!("{m:?}"), "ShmMutex { data: 9, .. }");
    }

    #[test]
    fn a_holder_that_panics_is_reported_like_one_that_died() {
        let m = in_place([0u64; 2]);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut g = m.lock().unwrap();
            g[0] = 1;
            panic!("half-way");
        }));
        assert!(r.is_err());
        assert!(m.owner_died());
        match m.lock() {
            Err(e @ Error::OwnerDied { .. }) => {
                assert!(e.to_string().contains("panicked"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        let mut g = m.lock_recover().unwrap();
        assert!(g.owner_died());
        assert_eq!(*g, [1, 0]);
        g[1] = 1;
        g.mark_consistent();
        drop(g);
        assert_eq!(*m.lock().unwrap(), [1, 1]);
    }

    #[test]
    fn a_guard_notes_its_lock_until_dropped_and_a_forgotten_one_stays_noted() {
        let m = in_place(0u32);
        let addr = &*m as *const ShmMutex<u32> as usize;
        let g = m.lock().unwrap();
        assert!(held::any_in(addr, 64));
        drop(g);
        assert!(!held::any_in(addr, 64));
        core::mem::forget(m.lock().unwrap());
        assert!(held::any_in(addr, 64));
        // Leak the box: its bytes are on this thread's robust list now.
        core::mem::forget(m);
    }
}
