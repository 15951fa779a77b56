//! [`ShmMutex<T>`]: a robust, process-shared mutex around a `T`.

use core::cell::UnsafeCell;
use core::fmt;
use core::marker::PhantomData;
use core::mem::{align_of, offset_of, size_of};
use core::ops::{Deref, DerefMut};
use core::ptr;

use crate::layout::{InvalidBitPattern, LayoutKind, ShmSafe, TypeLayout};
use crate::sys::pthread::{Acquired, RawMutex};
use crate::Error;

/// A mutual-exclusion lock around a `T`, shared by every process that maps
/// the store it lives in.
///
/// Build it with [`ShmMutex::new`] and put it into a store; lock it with
/// [`lock`](ShmMutex::lock), which returns a guard that dereferences to the
/// data and unlocks when dropped.
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
/// If a process (or thread) dies holding a store's `ShmMutex`, the next
/// [`lock`](ShmMutex::lock) returns [`LockError::OwnerDied`] carrying the
/// guard: the caller holds the lock and decides whether the data, which the
/// dead owner may have left half-updated, is consistent. Before returning,
/// `lock` has already marked the lock itself consistent, so it keeps working
/// for everyone once the guard is dropped. This is deliberate: a robust
/// pthread mutex released without being marked consistent becomes
/// unrecoverable, for every process, forever — one caller that merely
/// propagated the error with `?` would break the store's mutex for all. The
/// owner-death report is delivered exactly once, to the caller that
/// recovered the lock.
///
/// With `?` in a function returning [`shmstore::Result`](crate::Result), the
/// owner-died case becomes [`Error::OwnerDied`] (and the guard is dropped,
/// unlocking). To accept the data anyway, use [`LockError::into_inner`].
///
/// # Invalid values
///
/// When `T` has invalid bit patterns (`bool`, `char`, enums), every
/// acquisition checks the data's bytes while holding the lock, before any
/// `&T` exists; invalid bytes are [`Error::Corrupted`].
///
/// # Layout
///
/// `#[repr(C, align(64))]`:
///
/// | offset                         | field  | type                               |
/// |--------------------------------|--------|------------------------------------|
/// | 0                              | `raw`  | `pthread_mutex_t` (40 bytes, glibc x86_64) |
/// | 40 rounded up to `align_of::<T>()` | `data` | `T`                          |
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
    data: UnsafeCell<T>,
}

// SAFETY: the mutex only hands out access to `T` to one thread at a time,
// so it can be shared when `T` can be sent between threads (as for
// `std::sync::Mutex`); the pthread mutex itself is thread-safe.
unsafe impl<T: ShmSafe + Send> Sync for ShmMutex<T> {}
// SAFETY: moving the mutex moves the `T` with it (`T: Send`); an unlocked
// pthread mutex holds nothing tied to a thread.
unsafe impl<T: ShmSafe + Send> Send for ShmMutex<T> {}

impl<T: ShmSafe> ShmMutex<T> {
    /// A new unlocked mutex holding `value`.
    ///
    /// It becomes process-shared and robust only once a store has placed it
    /// in a segment; see [the type docs](ShmMutex#robustness-and-process-sharing).
    pub const fn new(value: T) -> Self {
        ShmMutex {
            raw: RawMutex::new_uninit(),
            data: UnsafeCell::new(value),
        }
    }

    /// Blocks until this thread holds the lock, and returns a guard giving
    /// access to the data.
    ///
    /// # Errors
    ///
    /// - [`LockError::OwnerDied`] with the guard if the previous owner died
    ///   holding the lock (the lock is already consistent again);
    /// - [`LockError::Failed`] with [`Error::Corrupted`] if the lock is
    ///   unrecoverable or its bytes are not a valid mutex, or the data holds
    ///   an invalid value; with [`Error::InvalidArgument`] if this thread
    ///   already holds the lock of a mutex in a store.
    pub fn lock(&self) -> Result<ShmMutexGuard<'_, T>, LockError<'_, T>> {
        match self.raw.lock() {
            Ok(acquired) => self.acquired(acquired),
            Err(e) => Err(LockError::Failed(e)),
        }
    }

    /// Takes the lock if no one holds it: `Ok(None)` if someone does.
    ///
    /// # Errors
    ///
    /// As for [`lock`](ShmMutex::lock).
    pub fn try_lock(&self) -> Result<Option<ShmMutexGuard<'_, T>>, LockError<'_, T>> {
        match self.raw.try_lock() {
            Ok(Some(acquired)) => self.acquired(acquired).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(LockError::Failed(e)),
        }
    }

    /// Turns a fresh acquisition into a guard: recovers an owner-died lock,
    /// then validates the data.
    fn acquired(&self, acquired: Acquired) -> Result<ShmMutexGuard<'_, T>, LockError<'_, T>> {
        // From here on the guard owns the lock: any early return unlocks.
        let guard = ShmMutexGuard {
            mutex: self,
            _not_send: PhantomData,
        };
        if acquired == Acquired::OwnerDied {
            // Must happen before the guard can drop (unlock), or the lock
            // becomes unrecoverable.
            if let Err(e) = self.raw.make_consistent() {
                return Err(LockError::Failed(e));
            }
        }
        if let Err(e) = self.check_data_locked() {
            return Err(LockError::Failed(Error::corrupted(format!(
                "{} holds an invalid value: {e}",
                Self::LAYOUT.type_expr()
            ))));
        }
        match acquired {
            Acquired::Clean => Ok(guard),
            Acquired::OwnerDied => Err(LockError::OwnerDied(guard)),
        }
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

    /// The data, through exclusive access (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// Consumes the mutex and returns the data.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

// SAFETY:
// - no absolute addresses: a `pthread_mutex_t` (whose robust-list links are
//   only meaningful while held by a live thread, which the kernel and glibc
//   maintain) and a `T: ShmSafe`;
// - `repr(C)`, and LAYOUT records name, size, align and `T`'s layout; the
//   field offsets follow from these;
// - no drop glue: `RawMutex` has no `Drop` and `T: ShmSafe` has none;
// - bit patterns: every byte pattern is a valid `pthread_mutex_t` value (an
//   array of integers to Rust), and `check_bytes` checks `T`'s bytes; lock
//   acquisition re-checks them under the lock;
// - mutation through `&Self` goes through the process-shared lock;
// - `init_in_place` only touches `*ptr`.
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
        // - it is unlocked: a `ShmMutex` is moved into the store by value,
        //   which no guard can outlive.
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
    /// - free: the data is traced and the lock released;
    /// - its owner died: the data is traced, and the lock is marked
    ///   consistent and released (glibc cannot put an acquired owner-died
    ///   lock back, and releasing it inconsistent would make it
    ///   unrecoverable), so the next `lock` will *not* report the death;
    /// - held by a live thread, or unusable: nothing is visited.
    ///
    /// A caller that needs every offset (to free nested allocations or to
    /// rebuild the allocator) cannot rely on `trace` alone for a `T` holding
    /// segment offsets inside a `ShmMutex` that is held at that moment.
    fn trace(&self, visit: &mut dyn FnMut(u64)) {
        match self.raw.try_lock() {
            Ok(Some(Acquired::Clean)) => {}
            Ok(Some(Acquired::OwnerDied)) => {
                if self.raw.make_consistent().is_err() {
                    // Cannot happen for a lock that just reported its
                    // owner's death; releasing it is all that is left.
                    // SAFETY: this thread acquired the lock just above.
                    unsafe { self.raw.unlock() };
                    return;
                }
            }
            Ok(None) | Err(_) => return,
        }
        if self.check_data_locked().is_ok() {
            // SAFETY: this thread holds the lock, so no one else has a
            // reference to the data, and its bytes are a valid `T` (checked
            // just above when `T` has invalid bit patterns).
            unsafe { &*self.data.get() }.trace(visit);
        }
        // SAFETY: this thread acquired the lock above.
        unsafe { self.raw.unlock() };
    }
}

impl<T: ShmSafe + fmt::Debug> fmt::Debug for ShmMutex<T> {
    /// Never blocks: shows the data if the lock is free, `<locked>`
    /// otherwise. Formatting a mutex whose owner died recovers it as
    /// [`lock`](ShmMutex::lock) does and shows `owner_died: true`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ShmMutex");
        match self.try_lock() {
            Ok(Some(guard)) => d.field("data", &&*guard),
            Ok(None) => d.field("data", &format_args!("<locked>")),
            Err(LockError::OwnerDied(guard)) => {
                d.field("data", &&*guard).field("owner_died", &true)
            }
            Err(LockError::Failed(e)) => d.field("error", &format_args!("{e}")),
        };
        d.finish_non_exhaustive()
    }
}

/// Access to a [`ShmMutex`]'s data while the lock is held; dropping it
/// unlocks.
///
/// Not `Send`: a pthread mutex must be unlocked by the thread that locked it.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ShmMutexGuard<'a, T> {
    mutex: &'a ShmMutex<T>,
    /// `*const ()` makes the guard `!Send`.
    _not_send: PhantomData<*const ()>,
}

// SAFETY: sharing `&ShmMutexGuard` across threads only gives out `&T`,
// which is fine when `T: Sync` (as for `std::sync::MutexGuard`).
unsafe impl<T: Sync> Sync for ShmMutexGuard<'_, T> {}

impl<T> Deref for ShmMutexGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock, so the only access to the data
        // goes through this guard, whose borrow rules `&self` follows; the
        // data was validated when the lock was acquired.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T> DerefMut for ShmMutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this access exclusive.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T> Drop for ShmMutexGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: a guard exists only while the thread that created it holds
        // the lock (it is `!Send`), and this drop releases it exactly once.
        unsafe { self.mutex.raw.unlock() };
    }
}

impl<T: fmt::Debug> fmt::Debug for ShmMutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: fmt::Display> fmt::Display for ShmMutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

/// Why [`ShmMutex::lock`] did not simply return a guard.
///
/// Like [`std::sync::PoisonError`], the owner-died case carries the guard:
/// the lock *is* held, and the caller decides whether the data is
/// consistent. `?` turns it into [`Error::OwnerDied`] (dropping the guard).
pub enum LockError<'a, T> {
    /// The previous owner died holding the lock. The guard holds it now and
    /// the lock has been marked consistent; the data may be half-updated.
    OwnerDied(ShmMutexGuard<'a, T>),
    /// The lock could not be taken (an unrecoverable or corrupted lock,
    /// invalid data, a relock from the holding thread).
    Failed(Error),
}

impl<'a, T> LockError<'a, T> {
    /// Accepts the data as it is: the guard if the owner died, the error
    /// otherwise. `m.lock().or_else(LockError::into_inner)?` locks,
    /// ignoring owner death.
    pub fn into_inner(self) -> Result<ShmMutexGuard<'a, T>, Error> {
        match self {
            LockError::OwnerDied(guard) => Ok(guard),
            LockError::Failed(e) => Err(e),
        }
    }

    /// The guard, if the owner died; `None` if the lock was not taken.
    pub fn into_guard(self) -> Option<ShmMutexGuard<'a, T>> {
        match self {
            LockError::OwnerDied(guard) => Some(guard),
            LockError::Failed(_) => None,
        }
    }

    /// `true` for [`LockError::OwnerDied`].
    pub fn is_owner_died(&self) -> bool {
        matches!(self, LockError::OwnerDied(_))
    }
}

impl<T> fmt::Debug for LockError<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(_) => f.write_str("OwnerDied(..)"),
            LockError::Failed(e) => f.debug_tuple("Failed").field(e).finish(),
        }
    }
}

impl<T> fmt::Display for LockError<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(_) => fmt::Display::fmt(&Error::OwnerDied, f),
            LockError::Failed(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl<T> std::error::Error for LockError<'_, T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LockError::OwnerDied(_) => None,
            LockError::Failed(e) => e.source(),
        }
    }
}

impl<T> From<LockError<'_, T>> for Error {
    /// `OwnerDied` becomes [`Error::OwnerDied`] (the guard is dropped, which
    /// unlocks; the lock was already marked consistent); `Failed(e)` is `e`.
    fn from(e: LockError<'_, T>) -> Error {
        match e {
            LockError::OwnerDied(_guard) => Error::OwnerDied,
            LockError::Failed(e) => e,
        }
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
    fn lock_and_die<T: ShmSafe + Send>(m: &ShmMutex<T>, write: impl FnOnce(&mut T) + Send) {
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut guard = m.lock().unwrap();
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
        assert_eq!(offset_of!(ShmMutex<u8>, data), 40);
        assert_eq!(offset_of!(ShmMutex<u128>, data), 48);
        const { assert!(!<ShmMutex<u32>>::HAS_INVALID_BIT_PATTERNS) };
        // Checked under the lock instead (see `lock`), never from outside.
        const { assert!(!<ShmMutex<bool>>::HAS_INVALID_BIT_PATTERNS) };
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
    fn a_local_mutex_works_without_init() {
        let m = ShmMutex::new([1u32, 2, 3]);
        m.lock().unwrap()[1] = 20;
        let guard = m.lock().unwrap();
        assert!(m.try_lock().unwrap().is_none());
        assert_eq!(*guard, [1, 20, 3]);
    }

    #[test]
    fn owner_death_returns_the_guard_with_the_data() {
        let m = in_place(0u64);
        lock_and_die(&m, |v| *v = 17);
        let err = m.lock().unwrap_err();
        assert!(err.is_owner_died());
        assert_eq!(err.to_string(), Error::OwnerDied.to_string());
        let mut guard = err.into_guard().unwrap();
        assert_eq!(*guard, 17);
        *guard = 18;
        drop(guard);
        // Already consistent: the lock is usable again, cleanly.
        assert_eq!(*m.lock().unwrap(), 18);

        lock_and_die(&m, |v| *v = 19);
        let guard = m.try_lock().unwrap_err().into_inner().unwrap();
        assert_eq!(*guard, 19);
    }

    #[test]
    fn question_mark_turns_owner_death_into_an_error() {
        fn bump(m: &ShmMutex<u64>) -> crate::Result<u64> {
            let mut guard = m.lock()?;
            *guard += 1;
            Ok(*guard)
        }
        let m = in_place(0u64);
        assert_eq!(bump(&m).unwrap(), 1);
        lock_and_die(&m, |v| *v = 10);
        assert!(matches!(bump(&m), Err(Error::OwnerDied)));
        // The error dropped the guard; the owner's write is visible and the
        // lock works.
        assert_eq!(bump(&m).unwrap(), 11);
    }

    #[test]
    fn invalid_data_is_refused_under_the_lock() {
        let m = in_place(true);
        // SAFETY: no guard exists; writing the byte 7 into a `bool` slot
        // through a raw pointer simulates another process's corruption, and
        // no `&bool` is created from it.
        unsafe { m.data.get().cast::<u8>().write(7) };
        match m.lock() {
            Err(LockError::Failed(Error::Corrupted { reason })) => {
                assert!(reason.contains("ShmMutex<bool>"), "{reason}");
                assert!(reason.contains("byte offset 40"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        // `check_bytes` from outside the lock accepts it: the data is only
        // ever checked under the lock, where no holder is writing it.
        // SAFETY: `&*m` is valid for reads of the whole value.
        assert!(unsafe { ShmMutex::<bool>::check_bytes(&*m) }.is_ok());
        // The failed lock released the mutex.
        // SAFETY: as above.
        unsafe { m.data.get().cast::<u8>().write(1) };
        assert!(*m.lock().unwrap());
    }

    #[test]
    fn trace_uses_the_lock_without_blocking() {
        #[repr(C)]
        struct Offsets([u64; 2]);
        // SAFETY: two u64 at known offsets, no pointers, no drop glue.
        unsafe impl ShmSafe for Offsets {
            const LAYOUT: &'static TypeLayout = <[u64; 2]>::LAYOUT;
            fn trace(&self, visit: &mut dyn FnMut(u64)) {
                self.0.iter().for_each(|&o| visit(o));
            }
        }
        let m = in_place(Offsets([64, 128]));
        let mut seen = Vec::new();
        m.trace(&mut |o| seen.push(o));
        assert_eq!(seen, [64, 128]);
        let guard = m.lock().unwrap();
        m.trace(&mut |o| seen.push(o));
        assert_eq!(seen.len(), 2, "held: nothing visited");
        drop(guard);
        assert!(m.try_lock().unwrap().is_some(), "trace left it unlocked");
    }

    #[test]
    fn debug_never_blocks() {
        let m = in_place(3u32);
        assert_eq!(format!("{m:?}"), "ShmMutex { data: 3, .. }");
        let guard = m.lock().unwrap();
        assert!(format!("{m:?}").starts_with("ShmMutex { error: "));
        drop(guard);
        let local = ShmMutex::new(4u32);
        let _guard = local.lock().unwrap();
        assert_eq!(format!("{local:?}"), "ShmMutex { data: <locked>, .. }");
        lock_and_die(&m, |v| *v = 9);
        assert_eq!(
            format!("{m:?}"),
            "ShmMutex { data: 9, owner_died: true, .. }"
        );
        assert_eq!(*m.lock().unwrap(), 9);
    }
}
