//! Process-shared robust pthread mutexes, and process liveness.
//!
//! [`RawMutex`] is a `pthread_mutex_t` that [`RawMutex::init`] makes
//! process-shared, robust and error-checking at its final address:
//!
//! - *process-shared*: any process that maps the segment may lock it;
//! - *robust*: when the owner (thread or process) dies holding it, the kernel
//!   marks it, and the next locker gets [`Acquired::OwnerDied`] instead of
//!   waiting forever; it must then call [`RawMutex::make_consistent`], or the
//!   unlock makes the mutex unrecoverable for every process;
//! - *error-checking*: locking it again from the thread that holds it is an
//!   error, not a silent deadlock.
//!
//! Trust model: the robust list that the kernel walks when a thread exits
//! threads through the `pthread_mutex_t`s themselves, so a process that
//! scribbles over a *held* mutex's bytes can make its owner write to wrong
//! addresses. Processes that share a store trust each other not to do that
//! (as with any `pthread_mutex_t` in shared memory).

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;

use nix::errno::Errno;

use crate::{Error, Result};

/// Lock word bit: the owner died holding the lock (kernel robust futex ABI).
pub(crate) const FUTEX_OWNER_DIED: u32 = 0x4000_0000;
/// Lock word bit: threads wait on the lock (kernel futex ABI).
#[allow(dead_code)]
pub(crate) const FUTEX_WAITERS: u32 = 0x8000_0000;

/// `size_of::<pthread_mutex_t>()`, part of a store's ABI tag: a process
/// whose libc has another mutex size must not share locks with this one.
pub(crate) const PTHREAD_MUTEX_SIZE: usize = core::mem::size_of::<libc::pthread_mutex_t>();

/// A `pthread_mutex_t` that may live in shared memory.
///
/// Invariant: the bytes are always a valid mutex — either
/// `PTHREAD_MUTEX_INITIALIZER` from [`RawMutex::new_uninit`] (a plain
/// process-private mutex), or what [`RawMutex::init`] made of them. Code that
/// views segment bytes as a `RawMutex` must uphold this.
///
/// # Layout
///
/// `#[repr(C)]`, exactly one `pthread_mutex_t`: [`PTHREAD_MUTEX_SIZE`] bytes
/// (40 on x86_64 glibc), align 8.
#[repr(C)]
pub(crate) struct RawMutex {
    inner: UnsafeCell<libc::pthread_mutex_t>,
}

// SAFETY: a pthread mutex holds no thread-affine state while unlocked; it
// may be moved to another thread.
unsafe impl Send for RawMutex {}
// SAFETY: a pthread mutex is made to be operated on by many threads at once:
// every access goes through pthread calls, which synchronise internally.
unsafe impl Sync for RawMutex {}

/// How a lock was acquired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// The previous owner unlocked it.
    Clean,
    /// The previous owner died holding it (`EOWNERDEAD`). The caller holds
    /// the lock and must call [`RawMutex::make_consistent`] before unlocking,
    /// or the mutex becomes unrecoverable.
    OwnerDied,
}

/// Destroys a mutex attribute object when dropped.
struct Attr(MaybeUninit<libc::pthread_mutexattr_t>);

impl Drop for Attr {
    fn drop(&mut self) {
        // SAFETY: an `Attr` exists only after `pthread_mutexattr_init`
        // succeeded on it, and is destroyed exactly once, here.
        unsafe { libc::pthread_mutexattr_destroy(self.0.as_mut_ptr()) };
    }
}

fn check(rc: libc::c_int, op: &'static str) -> Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(Error::io(op, std::io::Error::from_raw_os_error(rc)))
    }
}

fn lock_error(rc: libc::c_int, op: &'static str) -> Error {
    match Errno::from_raw(rc) {
        Errno::ENOTRECOVERABLE => Error::corrupted(
            "the lock is unrecoverable: an owner died holding it and it was released \
             without being marked consistent",
        ),
        Errno::EINVAL => Error::corrupted(format!(
            "the lock's bytes are not a valid mutex ({op}: EINVAL)"
        )),
        Errno::EDEADLK => Error::InvalidArgument {
            reason: "the lock is already held by this thread; locking it again would deadlock"
                .to_string(),
        },
        _ => Error::io(op, std::io::Error::from_raw_os_error(rc)),
    }
}

#[cfg(target_env = "gnu")]
extern "C" {
    /// glibc 2.30 and later: `pthread_mutex_timedlock` on a clock of the
    /// caller's choice (not in the `libc` crate yet).
    fn pthread_mutex_clocklock(
        mutex: *mut libc::pthread_mutex_t,
        clock: libc::clockid_t,
        abstime: *const libc::timespec,
    ) -> libc::c_int;
}

/// The clock of timed locks: monotonic where the C library can wait on it.
#[cfg(target_env = "gnu")]
const CLOCK: libc::clockid_t = libc::CLOCK_MONOTONIC;
/// Elsewhere, the realtime clock of `pthread_mutex_timedlock`.
#[cfg(not(target_env = "gnu"))]
const CLOCK: libc::clockid_t = libc::CLOCK_REALTIME;

/// A timed lock until `abstime` on [`CLOCK`].
///
/// # Safety
///
/// As for `pthread_mutex_timedlock`: `m` is a valid mutex and `abstime` a
/// valid timespec, both live for the call.
unsafe fn clock_lock(m: *mut libc::pthread_mutex_t, abstime: &libc::timespec) -> libc::c_int {
    #[cfg(target_env = "gnu")]
    // SAFETY: the caller's guarantee; CLOCK_MONOTONIC is a clock glibc
    // accepts here.
    let rc = unsafe { pthread_mutex_clocklock(m, CLOCK, abstime) };
    #[cfg(not(target_env = "gnu"))]
    // SAFETY: the caller's guarantee.
    let rc = unsafe { libc::pthread_mutex_timedlock(m, abstime) };
    rc
}

/// `now + timeout` on `clock`, as an absolute timespec (saturating far in
/// the future rather than overflowing).
// `time_t` and `c_long` are `i64` on 64-bit Linux but not everywhere.
#[allow(clippy::useless_conversion)]
fn deadline_timespec(
    clock: libc::clockid_t,
    timeout: std::time::Duration,
) -> Result<libc::timespec> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; `clock` is a clock id
    // every Linux C library knows.
    let rc = unsafe { libc::clock_gettime(clock, &mut now) };
    if rc != 0 {
        return Err(Error::io("clock_gettime", std::io::Error::last_os_error()));
    }
    // Saturate at about 30 years from now: far enough to mean "never", and
    // representable in every 64-bit `time_t`.
    let secs = timeout.as_secs().min(1 << 30) as i64;
    let mut sec = i64::from(now.tv_sec).saturating_add(secs);
    let mut nsec = i64::from(now.tv_nsec) + i64::from(timeout.subsec_nanos());
    if nsec >= 1_000_000_000 {
        nsec -= 1_000_000_000;
        sec = sec.saturating_add(1);
    }
    Ok(libc::timespec {
        tv_sec: sec as libc::time_t,
        tv_nsec: nsec as libc::c_long,
    })
}

/// What the bytes of a robust mutex say about who holds it, read without
/// taking it: an observation, stale as soon as it is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Observed {
    /// No one holds it.
    Free,
    /// The thread with this id holds it.
    Held { tid: u32 },
    /// Its holder died holding it; the next locker is told
    /// (`EOWNERDEAD`) and recovers.
    OwnerDied,
    /// A locker that was told its holder died holds it and has not yet
    /// marked it consistent.
    Recovering { tid: u32 },
    /// Released without being marked consistent after its holder died:
    /// every lock fails.
    Unrecoverable,
    /// Bytes this build cannot interpret (another C library's mutex).
    Unknown,
}

/// The kernel's robust-futex bits of a lock word: the owner's thread id.
const FUTEX_TID_MASK: u32 = 0x3fff_ffff;

/// The longest sleep of [`RawMutex::lock_until`] before it looks at the
/// lock word (a release wakes it at once: this only bounds how soon a word
/// naming no thread is noticed).
pub(crate) const GHOST_SLICE: std::time::Duration = std::time::Duration::from_millis(100);
/// glibc's `__owner` of a robust mutex whose owner died and that was not
/// yet marked consistent (`PTHREAD_MUTEX_INCONSISTENT`).
const OWNER_INCONSISTENT: u32 = i32::MAX as u32;
/// glibc's `__owner` of an unrecoverable mutex
/// (`PTHREAD_MUTEX_NOTRECOVERABLE`).
const OWNER_NOTRECOVERABLE: u32 = i32::MAX as u32 - 1;

/// Interprets the first 12 bytes of a robust `pthread_mutex_t` — glibc's
/// `__lock` (the futex word: owner's thread id and the kernel's
/// [`FUTEX_OWNER_DIED`] bit), `__count` and `__owner` (its recovery
/// state) — as read from a segment without locking. Another C library
/// lays its mutex out otherwise: [`Observed::Unknown`].
pub(crate) fn observe(lock_word: u32, owner_word: u32) -> Observed {
    if !cfg!(target_env = "gnu") {
        return Observed::Unknown;
    }
    let tid = lock_word & FUTEX_TID_MASK;
    if owner_word == OWNER_NOTRECOVERABLE {
        Observed::Unrecoverable
    } else if lock_word & FUTEX_OWNER_DIED != 0 && tid == 0 {
        Observed::OwnerDied
    } else if tid != 0 && owner_word == OWNER_INCONSISTENT {
        Observed::Recovering { tid }
    } else if tid != 0 {
        Observed::Held { tid }
    } else {
        Observed::Free
    }
}

/// Offset of glibc's `__owner` in a `pthread_mutex_t` (after `__lock` and
/// `__count`), for [`observe`].
pub(crate) const OWNER_WORD: u64 = 8;

/// Byte offset of glibc's `__kind` word in a 64-bit `pthread_mutex_t`
/// (`int __lock; unsigned __count; int __owner; unsigned __nusers; int
/// __kind; ...`, the same on every 64-bit glibc target).
#[cfg(all(target_env = "gnu", target_pointer_width = "64"))]
const KIND_OFFSET: usize = 16;

/// The `__kind` word of a mutex made by [`RawMutex::init`] (robust,
/// process-shared, error-checking), learnt once from one initialised here,
/// so that no flag value of glibc's is written down in this crate.
#[cfg(all(target_env = "gnu", target_pointer_width = "64"))]
fn initialised_kind() -> Option<i32> {
    static KIND: std::sync::OnceLock<Option<i32>> = std::sync::OnceLock::new();
    *KIND.get_or_init(|| {
        let mut m = Box::new(RawMutex::new_uninit());
        // SAFETY: the box is aligned, writable, unlocked, reachable by no
        // other thread, and does not move while it is used (it is only read
        // below, then dropped; a pthread mutex needs no destruction).
        unsafe { RawMutex::init(&mut *m) }.ok()?;
        Some(m.kind())
    })
}

impl RawMutex {
    /// `PTHREAD_MUTEX_INITIALIZER`: a valid process-private, non-robust
    /// mutex until [`RawMutex::init`] runs at the final address.
    pub(crate) const fn new_uninit() -> RawMutex {
        RawMutex {
            inner: UnsafeCell::new(libc::PTHREAD_MUTEX_INITIALIZER),
        }
    }

    /// Initialises the mutex at `ptr` as process-shared, robust and
    /// error-checking.
    ///
    /// # Safety
    ///
    /// - `ptr` is aligned and valid for writes of `size_of::<RawMutex>()`
    ///   bytes, at the address where the mutex will be used (a pthread mutex
    ///   must not move after this);
    /// - no other thread or process accesses the mutex during the call;
    /// - the mutex is not locked (a locked robust mutex is linked into its
    ///   owner's robust list, which re-initialising would corrupt).
    pub(crate) unsafe fn init(ptr: *mut RawMutex) -> Result<()> {
        debug_assert!(ptr.is_aligned());
        let mut attr = MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        // SAFETY: `attr` is valid for writes of a pthread_mutexattr_t.
        let rc = unsafe { libc::pthread_mutexattr_init(attr.as_mut_ptr()) };
        check(rc, "pthread_mutexattr_init")?;
        let mut attr = Attr(attr);
        let a = attr.0.as_mut_ptr();
        // SAFETY: `a` points to an attribute object initialised above and
        // owned by `attr` until it is dropped at the end of this function.
        unsafe {
            check(
                libc::pthread_mutexattr_setpshared(a, libc::PTHREAD_PROCESS_SHARED),
                "pthread_mutexattr_setpshared",
            )?;
            check(
                libc::pthread_mutexattr_setrobust(a, libc::PTHREAD_MUTEX_ROBUST),
                "pthread_mutexattr_setrobust",
            )?;
            check(
                libc::pthread_mutexattr_settype(a, libc::PTHREAD_MUTEX_ERRORCHECK),
                "pthread_mutexattr_settype",
            )?;
        }
        // `RawMutex` is `repr(C)` with one field, an `UnsafeCell`, which is
        // `repr(transparent)`: the cast points at the `pthread_mutex_t`.
        let m = ptr.cast::<libc::pthread_mutex_t>();
        // SAFETY:
        // - the caller guarantees `m` is aligned, writable, at its final
        //   address, unlocked and not accessed concurrently;
        // - `a` is an initialised attribute object.
        let rc = unsafe { libc::pthread_mutex_init(m, a) };
        check(rc, "pthread_mutex_init")
    }

    /// glibc's `__kind` word, read atomically: glibc writes it only when it
    /// initialises the mutex, and every lock operation reads it first to
    /// pick its code path.
    #[cfg(all(target_env = "gnu", target_pointer_width = "64"))]
    fn kind(&self) -> i32 {
        // SAFETY: `KIND_OFFSET + 4` is within the `pthread_mutex_t`
        // (`PTHREAD_MUTEX_SIZE` is 40 on 64-bit glibc, asserted in the
        // tests) and 4-aligned in the 8-aligned mutex; the bytes live as long
        // as `&self`, and an atomic load races with nothing (glibc writes the
        // word only in `pthread_mutex_init`, before the mutex is shared).
        let k = unsafe {
            &*self
                .inner
                .get()
                .cast::<u8>()
                .add(KIND_OFFSET)
                .cast::<core::sync::atomic::AtomicI32>()
        };
        k.load(core::sync::atomic::Ordering::Relaxed)
    }

    /// Refuses, before any pthread call, a mutex whose kind is neither the
    /// one [`RawMutex::init`] makes nor that of
    /// [`PTHREAD_MUTEX_INITIALIZER`](RawMutex::new_uninit) (0: a plain
    /// mutex, for a `ShmMutex` not yet placed in a store). Another process
    /// (or corruption) may have written any kind into a mutex in a segment,
    /// and glibc trusts it: a kind with the lock-elision flag makes
    /// `pthread_mutex_trylock` execute a TSX instruction that raises
    /// `SIGILL` on a processor without TSX; priority-protection and
    /// priority-inheritance kinds change the thread's scheduling or call
    /// into the kernel's PI futexes on arbitrary words.
    fn check_kind(&self, op: &'static str) -> Result<()> {
        #[cfg(all(target_env = "gnu", target_pointer_width = "64"))]
        {
            let kind = self.kind();
            if kind != 0 && Some(kind) != initialised_kind() {
                return Err(Error::corrupted(format!(
                    "the lock's bytes are not a mutex shmstore initialised (kind {kind:#x}; {op} refused)"
                )));
            }
        }
        #[cfg(not(all(target_env = "gnu", target_pointer_width = "64")))]
        let _ = op;
        Ok(())
    }

    /// Blocks until the lock is held by the calling thread.
    ///
    /// Errors: an unrecoverable mutex or invalid mutex bytes (a kind of
    /// mutex [`init`](RawMutex::init) does not make, see `check_kind`) are
    /// [`Error::Corrupted`]; a relock by the holding thread (of an
    /// [`init`](RawMutex::init)ed mutex) is [`Error::InvalidArgument`].
    pub(crate) fn lock(&self) -> Result<Acquired> {
        self.check_kind("pthread_mutex_lock")?;
        // SAFETY: by the type's invariant `inner` is a valid mutex, and it
        // lives at least as long as `&self`.
        let rc = unsafe { libc::pthread_mutex_lock(self.inner.get()) };
        match rc {
            0 => Ok(Acquired::Clean),
            libc::EOWNERDEAD => Ok(Acquired::OwnerDied),
            rc => Err(lock_error(rc, "pthread_mutex_lock")),
        }
    }

    /// Takes the lock if it is free; `Ok(None)` if another thread holds it.
    pub(crate) fn try_lock(&self) -> Result<Option<Acquired>> {
        self.check_kind("pthread_mutex_trylock")?;
        // SAFETY: as in `lock`.
        let rc = unsafe { libc::pthread_mutex_trylock(self.inner.get()) };
        match rc {
            0 => Ok(Some(Acquired::Clean)),
            libc::EOWNERDEAD => Ok(Some(Acquired::OwnerDied)),
            libc::EBUSY => Ok(None),
            rc => Err(lock_error(rc, "pthread_mutex_trylock")),
        }
    }

    /// Like [`lock`](RawMutex::lock), but gives up after `timeout`:
    /// `Ok(None)` then. The deadline is on `CLOCK_MONOTONIC`
    /// (`pthread_mutex_clocklock`), so changing the wall clock neither
    /// shortens nor stretches the wait; a robust mutex whose owner died is
    /// reported at once, as by `lock`.
    pub(crate) fn lock_for(&self, timeout: std::time::Duration) -> Result<Option<Acquired>> {
        self.check_kind("pthread_mutex_clocklock")?;
        let abstime = deadline_timespec(CLOCK, timeout)?;
        // SAFETY: as in `lock`; `abstime` is a valid timespec on this stack
        // frame, only read during the call.
        let rc = unsafe { clock_lock(self.inner.get(), &abstime) };
        match rc {
            0 => Ok(Some(Acquired::Clean)),
            libc::EOWNERDEAD => Ok(Some(Acquired::OwnerDied)),
            libc::ETIMEDOUT => Ok(None),
            rc => Err(lock_error(rc, "pthread_mutex_clocklock")),
        }
    }

    /// Blocks until the lock is held by the calling thread, or `deadline`
    /// passes (`Ok(None)`; `None` waits as long as it takes), without
    /// waiting forever for an owner that does not exist.
    ///
    /// Tries once; then sleeps in timed slices of at most [`GHOST_SLICE`].
    /// After a slice in which the lock stayed held, it reads the lock word:
    /// the kernel and glibc keep the owner's thread id there, and a thread
    /// that dies holding a robust mutex has the word marked by the kernel
    /// (its robust list names the lock, even half-way through locking), so
    /// a word that names a thread that does not exist (`kill(tid, 0)` says
    /// `ESRCH`) is not a lock anyone holds: another process wrote those
    /// bytes. The same word seen so, unchanged, after two consecutive
    /// slices (a thread id the kernel handed out again in between would
    /// exist at the second look) is [`Error::Corrupted`], instead of a wait
    /// that nothing would ever end.
    ///
    /// `judge()` says whether thread ids in the word may be looked up in
    /// this process's pid namespace at all (false for a lock shared with
    /// processes of another pid namespace, whose ids mean other threads
    /// here, and for a lock that is not robust, whose word holds no thread
    /// id): when it does not, the wait is only sliced. It is asked after
    /// the word is read.
    ///
    /// Errors as for [`lock`](RawMutex::lock).
    pub(crate) fn lock_until(
        &self,
        deadline: Option<std::time::Instant>,
        judge: impl Fn() -> bool,
    ) -> Result<Option<Acquired>> {
        if let Some(a) = self.try_lock()? {
            return Ok(Some(a));
        }
        let mut suspect: Option<u32> = None;
        loop {
            let slice = match deadline {
                None => GHOST_SLICE,
                Some(at) => {
                    let left = at.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return Ok(None);
                    }
                    left.min(GHOST_SLICE)
                }
            };
            if let Some(a) = self.lock_for(slice)? {
                return Ok(Some(a));
            }
            let word = self.word();
            let tid = word & FUTEX_TID_MASK;
            let ghost = tid != 0
                && judge()
                && crate::sys::proc::pid_exists(tid) == Ok(false)
                && self.word() == word;
            if !ghost {
                suspect = None;
                continue;
            }
            if suspect == Some(word) {
                return Err(Error::corrupted(format!(
                    "the lock word {word:#x} names thread {tid}, which does not exist: no \
                     one holds the lock and no one ever will release it (its bytes were \
                     overwritten)"
                )));
            }
            suspect = Some(word);
        }
    }

    /// Marks a mutex acquired with [`Acquired::OwnerDied`] consistent again
    /// (`pthread_mutex_consistent`); the caller still holds it.
    pub(crate) fn make_consistent(&self) -> Result<()> {
        self.check_kind("pthread_mutex_consistent")?;
        // SAFETY: as in `lock`; the call only changes the mutex's state.
        let rc = unsafe { libc::pthread_mutex_consistent(self.inner.get()) };
        match rc {
            0 => Ok(()),
            libc::EINVAL => Err(Error::InvalidArgument {
                reason: "the lock is not robust or its owner did not die".to_string(),
            }),
            rc => Err(Error::io(
                "pthread_mutex_consistent",
                std::io::Error::from_raw_os_error(rc),
            )),
        }
    }

    /// The lock word (`__data.__lock` of glibc's mutex, its first 32 bits),
    /// read atomically without locking: for a robust mutex the owner's
    /// thread id, with [`FUTEX_OWNER_DIED`] set by the kernel when the owner
    /// died holding it and [`FUTEX_WAITERS`] while threads sleep on it. An
    /// observation only: it may be stale as soon as it is read.
    pub(crate) fn word(&self) -> u32 {
        // SAFETY: the first four bytes of a glibc `pthread_mutex_t` are its
        // lock word (`int __lock`, 4-aligned inside the 8-aligned mutex),
        // which glibc and the kernel only ever access atomically; an atomic
        // load of it races with nothing. The bytes live as long as `&self`.
        let w = unsafe { &*self.inner.get().cast::<core::sync::atomic::AtomicU32>() };
        w.load(core::sync::atomic::Ordering::Acquire)
    }

    /// Releases the lock.
    ///
    /// # Safety
    ///
    /// The calling thread holds the lock (from [`lock`](RawMutex::lock) or
    /// [`try_lock`](RawMutex::try_lock)).
    pub(crate) unsafe fn unlock(&self) {
        // SAFETY: as in `lock`; the caller guarantees this thread holds it.
        let rc = unsafe { libc::pthread_mutex_unlock(self.inner.get()) };
        // The caller holds the lock, so only bytes another process wrote
        // over the mutex can make this fail (EPERM: "not the owner"). There
        // is nothing to undo and no one to tell from a guard's drop; the
        // next lock() reports what state the mutex is in.
        let _ = rc;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A `RawMutex` initialised in place in a heap buffer.
    fn robust() -> Box<RawMutex> {
        let mut m = Box::new(RawMutex::new_uninit());
        // SAFETY: the box is aligned, writable, unlocked, not shared yet, and
        // does not move until it is dropped.
        unsafe { RawMutex::init(&mut *m) }.unwrap();
        m
    }

    #[test]
    fn abi_facts() {
        assert_eq!(PTHREAD_MUTEX_SIZE, 40);
        assert_eq!(core::mem::size_of::<RawMutex>(), PTHREAD_MUTEX_SIZE);
    }

    #[test]
    fn uninit_mutex_is_a_plain_local_mutex() {
        let m = RawMutex::new_uninit();
        assert_eq!(m.lock().unwrap(), Acquired::Clean);
        assert_eq!(m.try_lock().unwrap(), None);
        // SAFETY: locked above by this thread.
        unsafe { m.unlock() };
        assert_eq!(m.try_lock().unwrap(), Some(Acquired::Clean));
        // SAFETY: locked by the try_lock above.
        unsafe { m.unlock() };
    }

    #[test]
    fn initialised_mutex_locks_and_unlocks() {
        let m = robust();
        assert_eq!(m.lock().unwrap(), Acquired::Clean);
        // SAFETY: held by this thread.
        unsafe { m.unlock() };
        assert_eq!(m.try_lock().unwrap(), Some(Acquired::Clean));
        // SAFETY: held by this thread.
        unsafe { m.unlock() };
    }

    #[test]
    fn relocking_from_the_holder_is_an_error_not_a_deadlock() {
        let m = robust();
        m.lock().unwrap();
        assert!(matches!(m.lock(), Err(Error::InvalidArgument { .. })));
        assert!(m.try_lock().is_err());
        // SAFETY: held by this thread.
        unsafe { m.unlock() };
    }

    #[test]
    fn try_lock_reports_a_lock_held_elsewhere_as_none() {
        let m = robust();
        let m = &*m;
        while_held_elsewhere(m, || {
            assert_eq!(m.try_lock().unwrap(), None);
        });
        assert_eq!(m.try_lock().unwrap(), Some(Acquired::Clean));
        // SAFETY: held by this thread.
        unsafe { m.unlock() };
    }

    /// Runs `f` while another thread holds `m`, then lets it go.
    fn while_held_elsewhere(m: &RawMutex, f: impl FnOnce()) {
        let (locked_tx, locked_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        std::thread::scope(|s| {
            let holder = s.spawn(move || {
                m.lock().unwrap();
                locked_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                // SAFETY: held by this thread.
                unsafe { m.unlock() };
            });
            locked_rx.recv().unwrap();
            f();
            release_tx.send(()).unwrap();
            holder.join().unwrap();
        });
    }

    /// Locks `m` on a thread that exits without unlocking; `join` returns
    /// after the kernel has processed the thread's robust list.
    fn lock_on_a_dying_thread(m: &RawMutex) {
        std::thread::scope(|s| {
            s.spawn(|| assert_eq!(m.lock().unwrap(), Acquired::Clean))
                .join()
                .unwrap();
        });
    }

    #[test]
    fn owner_death_is_reported_then_recovered() {
        let m = robust();
        lock_on_a_dying_thread(&m);
        assert_eq!(m.lock().unwrap(), Acquired::OwnerDied);
        m.make_consistent().unwrap();
        // SAFETY: held by this thread.
        unsafe { m.unlock() };
        assert_eq!(m.lock().unwrap(), Acquired::Clean);
        // SAFETY: held by this thread.
        unsafe { m.unlock() };

        lock_on_a_dying_thread(&m);
        assert_eq!(m.try_lock().unwrap(), Some(Acquired::OwnerDied));
        m.make_consistent().unwrap();
        // SAFETY: held by this thread.
        unsafe { m.unlock() };
    }

    #[test]
    fn unlocking_without_consistency_makes_the_lock_unrecoverable() {
        let m = robust();
        lock_on_a_dying_thread(&m);
        assert_eq!(m.lock().unwrap(), Acquired::OwnerDied);
        // SAFETY: held by this thread.
        unsafe { m.unlock() };
        let err = m.lock().unwrap_err();
        assert!(
            matches!(&err, Error::Corrupted { reason } if reason.contains("unrecoverable")),
            "{err}"
        );
        assert!(matches!(m.try_lock(), Err(Error::Corrupted { .. })));
    }

    /// What `observe` reads from a mutex's bytes.
    fn observed(m: &RawMutex) -> Observed {
        // SAFETY: the first 12 bytes of a glibc mutex are three 4-aligned
        // ints that glibc and the kernel access atomically; these are
        // atomic loads of them, and `m` outlives the call.
        let words = unsafe { &*m.inner.get().cast::<[core::sync::atomic::AtomicU32; 3]>() };
        observe(
            words[0].load(core::sync::atomic::Ordering::Acquire),
            words[2].load(core::sync::atomic::Ordering::Acquire),
        )
    }

    #[test]
    #[cfg(target_env = "gnu")]
    fn observing_a_lock_tells_free_held_owner_died_recovering_and_unrecoverable() {
        let m = robust();
        assert_eq!(observed(&m), Observed::Free);
        m.lock().unwrap();
        // SAFETY: gettid has no preconditions.
        let me = unsafe { libc::gettid() } as u32;
        assert_eq!(observed(&m), Observed::Held { tid: me });
        // SAFETY: held by this thread.
        unsafe { m.unlock() };
        assert_eq!(observed(&m), Observed::Free);
        lock_on_a_dying_thread(&m);
        assert_eq!(observed(&m), Observed::OwnerDied);
        assert_eq!(m.lock().unwrap(), Acquired::OwnerDied);
        assert_eq!(observed(&m), Observed::Recovering { tid: me });
        // SAFETY: held by this thread.
        unsafe { m.unlock() };
        assert_eq!(observed(&m), Observed::Unrecoverable);
    }

    #[test]
    fn a_timed_lock_gives_up_on_a_held_lock_and_takes_a_free_one() {
        use std::time::{Duration, Instant};
        let m = robust();
        let m = &*m;
        while_held_elsewhere(m, || {
            let t = Instant::now();
            assert_eq!(m.lock_for(Duration::from_millis(30)).unwrap(), None);
            assert!(t.elapsed() >= Duration::from_millis(30));
        });
        assert_eq!(
            m.lock_for(Duration::from_secs(5)).unwrap(),
            Some(Acquired::Clean)
        );
        assert!(matches!(
            m.lock_for(Duration::from_secs(5)),
            Err(Error::InvalidArgument { .. })
        ));
        // SAFETY: held by this thread.
        unsafe { m.unlock() };
        lock_on_a_dying_thread(m);
        assert_eq!(
            m.lock_for(Duration::ZERO).unwrap(),
            Some(Acquired::OwnerDied)
        );
        m.make_consistent().unwrap();
        // SAFETY: held by this thread.
        unsafe { m.unlock() };
    }

    /// The lock word (glibc's `__lock`) of `m`, to play another process
    /// writing over it.
    fn lock_word(m: &RawMutex) -> &core::sync::atomic::AtomicU32 {
        // SAFETY: the first four bytes of a glibc mutex are its lock word,
        // 4-aligned, accessed atomically by glibc and the kernel.
        unsafe { &*m.inner.get().cast::<core::sync::atomic::AtomicU32>() }
    }

    #[test]
    #[cfg(target_env = "gnu")]
    fn a_lock_word_naming_no_thread_is_corruption_not_a_wait_for_ever() {
        use core::sync::atomic::Ordering;
        use std::time::{Duration, Instant};
        let m = robust();
        // No thread has id 0x3fff_fff0 (above every `pid_max`).
        lock_word(&m).store(0x3fff_fff0, Ordering::SeqCst);
        let t = Instant::now();
        let r = m.lock_until(None, || true);
        assert!(
            matches!(&r, Err(Error::Corrupted { reason }) if reason.contains("does not exist")),
            "{r:?}"
        );
        assert!(t.elapsed() < Duration::from_secs(30));
        // Not judged (another pid namespace may be using it): a bounded
        // wait for the timed form, no verdict.
        let r = m.lock_until(Some(Instant::now() + Duration::from_millis(250)), || false);
        assert!(matches!(r, Ok(None)), "{r:?}");
        lock_word(&m).store(0, Ordering::SeqCst);
        assert_eq!(m.lock_until(None, || true).unwrap(), Some(Acquired::Clean));
        // SAFETY: held by this thread.
        unsafe { m.unlock() };
    }

    #[test]
    fn a_lock_held_by_a_live_thread_is_waited_for_not_reported() {
        use std::time::{Duration, Instant};
        let m = robust();
        let m = &*m;
        while_held_elsewhere(m, || {
            // Several slices, each followed by the owner check.
            let r = m.lock_until(Some(Instant::now() + Duration::from_millis(350)), || true);
            assert!(matches!(r, Ok(None)), "{r:?}");
        });
        assert_eq!(m.lock_until(None, || true).unwrap(), Some(Acquired::Clean));
        // SAFETY: held by this thread.
        unsafe { m.unlock() };
    }

    // Regression (fuzzing, segment_open): a `ShmMutex` whose `__kind` word
    // another process changed (here: the lock-elision flag, 0x100) was
    // handed to glibc, whose `pthread_mutex_trylock` then executed an
    // `xabort` instruction, a `SIGILL` on a processor without TSX; `check()`
    // and `collect()` try-lock every mutex they walk, so a corrupted store
    // killed whoever checked it. A kind `init` does not make is now refused
    // before any pthread call.
    #[test]
    fn a_mutex_of_a_kind_init_does_not_make_is_refused_before_glibc_sees_it() {
        let m = robust();
        let kind = m.kind();
        assert_eq!(Some(kind), initialised_kind());
        let word = || {
            // SAFETY: the kind word of the boxed mutex, as in `kind`; no
            // other thread uses the mutex.
            unsafe {
                &*m.inner
                    .get()
                    .cast::<u8>()
                    .add(KIND_OFFSET)
                    .cast::<core::sync::atomic::AtomicI32>()
            }
        };
        for bad in [
            kind | 0x100,
            kind | 0x20,
            kind | 0x40,
            kind ^ 0x2,
            1,
            0x7fff_ffff,
            -1,
        ] {
            word().store(bad, core::sync::atomic::Ordering::Relaxed);
            for r in [
                m.try_lock().map(|_| ()),
                m.lock().map(|_| ()),
                m.lock_for(std::time::Duration::from_millis(10)).map(|_| ()),
                m.lock_until(None, || true).map(|_| ()),
                m.make_consistent(),
            ] {
                assert!(
                    matches!(&r, Err(Error::Corrupted { reason }) if reason.contains("not a mutex")),
                    "kind {bad:#x}: {r:?}"
                );
            }
        }
        word().store(kind, core::sync::atomic::Ordering::Relaxed);
        assert_eq!(m.try_lock().unwrap(), Some(Acquired::Clean));
        // SAFETY: held by this thread.
        unsafe { m.unlock() };
        // The static initializer's kind (a `ShmMutex` outside any store).
        let plain = RawMutex::new_uninit();
        assert_eq!(plain.kind(), 0);
        assert_eq!(plain.lock().unwrap(), Acquired::Clean);
        // SAFETY: held by this thread.
        unsafe { plain.unlock() };
    }

    #[test]
    fn make_consistent_on_a_healthy_lock_is_refused() {
        let m = robust();
        m.lock().unwrap();
        assert!(matches!(
            m.make_consistent(),
            Err(Error::InvalidArgument { .. })
        ));
        // SAFETY: held by this thread.
        unsafe { m.unlock() };
    }
}
