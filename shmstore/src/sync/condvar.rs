//! [`ShmCondvar`]: a condition variable for [`ShmMutex`].

use core::fmt;
use core::mem::{align_of, size_of};
use core::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::mutex::{ShmMutex, ShmMutexGuard};
use super::wait::{self, Deadline, SLEEPERS};
use crate::layout::{LayoutKind, ShmMovable, ShmSafe, TypeLayout};
use crate::sys::futex;
use crate::Result;

/// A condition variable shared by every process that maps it, used with a
/// [`ShmMutex`]: a process waits for a condition on the mutex's data, and
/// the process that changes the data notifies it.
///
/// ```
/// use std::time::Duration;
/// use shmstore::{ShmCondvar, ShmMutex, ShmSafe, Store};
///
/// #[derive(ShmSafe)]
/// #[repr(C)]
/// struct Mailbox {
///     lock: ShmMutex<u64>, // the number of letters
///     arrived: ShmCondvar,
/// }
///
/// # fn main() -> shmstore::Result<()> {
/// # let name = format!("doc-condvar-{}", std::process::id());
/// let store = Store::open_or_create(&name, 1 << 20)?;
/// let mb = store.get_or_insert_with("mailbox", || Mailbox {
///     lock: ShmMutex::new(0),
///     arrived: ShmCondvar::new(),
/// })?;
/// // A sender, in any process:
/// *mb.lock.lock()? += 1;
/// mb.arrived.notify_all();
/// // A receiver, in any process:
/// let letters = mb.arrived.wait_while(mb.lock.lock()?, |n| *n == 0)?;
/// assert_eq!(*letters, 1);
/// # drop(letters);
/// # Store::unlink(&name)?;
/// # Ok(())
/// # }
/// ```
///
/// # Waits are bounded, so always recheck
///
/// As with [`std::sync::Condvar`], a wait may return without a
/// notification (a spurious wake-up) — here, at the latest after a slice
/// of 25 ms. That is what makes a dead notifier harmless: a process killed
/// after changing the data but before notifying cannot leave a waiter
/// asleep, because every waiter looks at the data again at least that
/// often. Loop on your condition, or let
/// [`wait_while`](ShmCondvar::wait_while) do it.
///
/// # Owner death and the mutex
///
/// A wait gives the mutex up and takes it again before returning, in the
/// same way the guard was obtained: a guard from [`ShmMutex::lock`] comes
/// back as [`Error::OwnerDied`](crate::Error::OwnerDied) if a holder died
/// meanwhile (the lock is released again), one from
/// [`ShmMutex::lock_recover`] comes back reporting it
/// ([`ShmMutexGuard::owner_died`]).
///
/// # Dead processes
///
/// There is no count of waiters to leave wrong. A waiter announces itself
/// by setting a flag bit in the sequence word before it sleeps:
///
/// - a **waiter killed** at any instruction leaves at most that flag: the
///   next notify issues one wake-up that finds no one, sees that, and
///   clears the flag;
/// - a **notifier killed** at any instruction either bumped the sequence
///   (waiters that were sleeping see the change at the end of their slice,
///   and return) or did not (then it had not notified; waiters recheck the
///   data when their slice ends, as always);
/// - a waiter killed right after `notify_one` chose it takes that wake-up
///   with it; the others return within a slice, as above.
///
/// # Layout
///
/// `#[repr(C)]`, 4 bytes, align 4: one `AtomicU32` sequence word, the
/// shared futex waiters sleep on.
///
/// | bits  | meaning                                                    |
/// |-------|------------------------------------------------------------|
/// | 0     | someone may sleep on the word (set by a waiter, cleared when a notify finds no sleeper or wakes all) |
/// | 1..32 | notification count (wraps): every notify changes it        |
///
/// Every bit pattern is a valid condition variable. It is [`ShmMovable`]:
/// it holds no address and is only used through a borrow.
#[repr(C)]
pub struct ShmCondvar {
    seq: AtomicU32,
}

/// Whether a timed wait returned because its time ran out (see
/// [`ShmCondvar::wait_timeout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    /// `true` if the time ran out (for `wait_timeout_while`: with the
    /// condition still holding).
    pub fn timed_out(&self) -> bool {
        self.0
    }
}

impl ShmCondvar {
    /// A new condition variable.
    pub const fn new() -> ShmCondvar {
        ShmCondvar {
            seq: AtomicU32::new(0),
        }
    }

    /// Releases the mutex of `guard`, waits for a notification (or at most
    /// a slice: see [the type docs](ShmCondvar#waits-are-bounded-so-always-recheck)),
    /// and takes the mutex again.
    ///
    /// # Errors
    ///
    /// What taking the mutex again can return: [`Error::OwnerDied`](crate::Error::OwnerDied)
    /// for a guard from [`ShmMutex::lock`] if a holder died meanwhile,
    /// [`Error::Corrupted`](crate::Error::Corrupted) for an invalid lock or
    /// value.
    pub fn wait<'a, T: ShmSafe>(
        &self,
        guard: ShmMutexGuard<'a, T>,
    ) -> Result<ShmMutexGuard<'a, T>> {
        self.wait_once(guard, Deadline::NEVER).map(|(g, _)| g)
    }

    /// Waits until `condition` returns `false`, checking it first, then
    /// after every wake-up, with the mutex held.
    ///
    /// # Errors
    ///
    /// As for [`wait`](ShmCondvar::wait).
    pub fn wait_while<'a, T: ShmSafe>(
        &self,
        mut guard: ShmMutexGuard<'a, T>,
        mut condition: impl FnMut(&T) -> bool,
    ) -> Result<ShmMutexGuard<'a, T>> {
        while condition(&guard) {
            guard = self.wait(guard)?;
        }
        Ok(guard)
    }

    /// [`wait`](ShmCondvar::wait), for at most `timeout`: the result says
    /// whether the time ran out. Like `wait`, it may also return early
    /// without a notification.
    ///
    /// # Errors
    ///
    /// As for [`wait`](ShmCondvar::wait).
    pub fn wait_timeout<'a, T: ShmSafe>(
        &self,
        guard: ShmMutexGuard<'a, T>,
        timeout: Duration,
    ) -> Result<(ShmMutexGuard<'a, T>, WaitTimeoutResult)> {
        let deadline = Deadline::after(timeout);
        let (guard, notified) = self.wait_once(guard, deadline)?;
        let timed_out = !notified && deadline.expired();
        Ok((guard, WaitTimeoutResult(timed_out)))
    }

    /// [`wait_while`](ShmCondvar::wait_while), for at most `timeout`: the
    /// result says whether the time ran out with the condition still
    /// holding.
    ///
    /// # Errors
    ///
    /// As for [`wait`](ShmCondvar::wait).
    pub fn wait_timeout_while<'a, T: ShmSafe>(
        &self,
        mut guard: ShmMutexGuard<'a, T>,
        timeout: Duration,
        mut condition: impl FnMut(&T) -> bool,
    ) -> Result<(ShmMutexGuard<'a, T>, WaitTimeoutResult)> {
        let deadline = Deadline::after(timeout);
        while condition(&guard) {
            if deadline.expired() {
                return Ok((guard, WaitTimeoutResult(true)));
            }
            guard = self.wait_once(guard, deadline)?.0;
        }
        Ok((guard, WaitTimeoutResult(false)))
    }

    /// Wakes one waiter (if any sleeps; one that is still spinning sees the
    /// notification without a wake-up). A notification with no waiter is
    /// not remembered: waiters check their condition under the mutex first.
    pub fn notify_one(&self) {
        let old = self.seq.fetch_add(2, Ordering::AcqRel);
        crate::crash::step();
        if old & SLEEPERS == 0 {
            return;
        }
        // Someone announced it would sleep. Keep the flag (others may
        // sleep too) and wake one.
        if futex::wake(&self.seq, 1).unwrap_or(1) != 0 {
            return;
        }
        // No one was asleep: the flag is stale (a waiter that was killed,
        // timed out, or is about to sleep). Clear it if the word is still
        // ours, then wake once more: a waiter that went to sleep between
        // the two steps is woken (a spurious wake-up for it), and one that
        // sleeps later finds the word changed.
        let now = old.wrapping_add(2);
        if self
            .seq
            .compare_exchange(now, now & !SLEEPERS, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let _ = futex::wake(&self.seq, 1);
        }
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        let old = self
            .seq
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                Some(v.wrapping_add(2) & !SLEEPERS)
            })
            .unwrap_or_else(|v| v);
        crate::crash::step();
        if old & SLEEPERS != 0 {
            // A failed wake (impossible for a live word) leaves sleepers to
            // the end of their slice.
            let _ = futex::wake(&self.seq, u32::MAX);
        }
    }

    /// One bounded wait: releases the mutex, spins, then sleeps at most a
    /// slice (less if the deadline is nearer), and takes the mutex again.
    /// Returns the guard and whether a notification came.
    fn wait_once<'a, T: ShmSafe>(
        &self,
        guard: ShmMutexGuard<'a, T>,
        deadline: Deadline,
    ) -> Result<(ShmMutexGuard<'a, T>, bool)> {
        // Read under the mutex: a notifier that changes the data under the
        // mutex afterwards also changes this word.
        let seen = self.seq.load(Ordering::Acquire) & !SLEEPERS;
        let (mutex, flag): (&'a ShmMutex<T>, _) = guard.unlock_for_wait();
        crate::crash::step();
        let notified = || self.seq.load(Ordering::Acquire) & !SLEEPERS != seen;
        let mut came = wait::spin(notified);
        if !came {
            if let Some(slice) = deadline.slice() {
                if let Some(announced) = self.announce(seen) {
                    crate::crash::step();
                    // A sleep's error (not seen in practice) is only a
                    // shorter wait: the caller rechecks anyway.
                    let _ = futex::wait(&self.seq, announced, slice);
                }
            }
            came = notified();
        }
        crate::crash::step();
        let guard = mutex.relock(flag)?;
        Ok((guard, came))
    }

    /// Sets the sleeper flag unless a notification came since `seen`: the
    /// word to sleep on, or `None` if notified.
    fn announce(&self, seen: u32) -> Option<u32> {
        let mut cur = self.seq.load(Ordering::Acquire);
        loop {
            if cur & !SLEEPERS != seen {
                return None;
            }
            let flagged = cur | SLEEPERS;
            if cur == flagged {
                return Some(cur);
            }
            match self
                .seq
                .compare_exchange_weak(cur, flagged, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(flagged),
                Err(now) => cur = now,
            }
        }
    }
}

impl Default for ShmCondvar {
    fn default() -> Self {
        ShmCondvar::new()
    }
}

impl fmt::Debug for ShmCondvar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmCondvar").finish_non_exhaustive()
    }
}

// SAFETY:
// - no absolute addresses: one integer word;
// - `repr(C)` with one `AtomicU32`; LAYOUT records name, size and align;
// - no drop glue;
// - every bit pattern is a valid `AtomicU32` and a valid condition
//   variable (any count, flag set or not);
// - mutation through `&Self` is atomic operations only;
// - not IMMOVABLE: nothing initialised in place, nothing outside a borrow
//   refers to its address.
unsafe impl ShmSafe for ShmCondvar {
    const LAYOUT: &'static TypeLayout = &TypeLayout {
        name: "ShmCondvar",
        size: size_of::<Self>(),
        align: align_of::<Self>(),
        kind: LayoutKind::Opaque { params: &[] },
    };
}

// SAFETY: nothing initialised in place; see the type docs.
unsafe impl ShmMovable for ShmCondvar {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use std::time::Instant;

    fn in_place<T: ShmSafe>(value: T) -> Box<ShmMutex<T>> {
        let mut m = Box::new(ShmMutex::new(value));
        // SAFETY: the box is aligned, writable, holds a valid value, is not
        // shared yet and does not move until dropped.
        unsafe { ShmMutex::init_in_place(&mut *m) }.unwrap();
        m
    }

    #[test]
    fn a_waiter_is_woken_by_a_notify_under_the_mutex() {
        let m = in_place(0u32);
        let cv = ShmCondvar::new();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                let g = cv.wait_while(m.lock().unwrap(), |v| *v == 0).unwrap();
                *g
            });
            std::thread::sleep(Duration::from_millis(5));
            *m.lock().unwrap() = 3;
            cv.notify_one();
            assert_eq!(waiter.join().unwrap(), 3);
        });
    }

    #[test]
    fn notify_all_wakes_every_waiter() {
        let m = in_place(0u32);
        let cv = ShmCondvar::new();
        std::thread::scope(|s| {
            let waiters: Vec<_> = (0..3)
                .map(|_| s.spawn(|| *cv.wait_while(m.lock().unwrap(), |v| *v == 0).unwrap()))
                .collect();
            std::thread::sleep(Duration::from_millis(10));
            *m.lock().unwrap() = 1;
            cv.notify_all();
            for w in waiters {
                assert_eq!(w.join().unwrap(), 1);
            }
        });
    }

    #[test]
    fn a_timed_wait_times_out_and_says_so() {
        let m = in_place(0u32);
        let cv = ShmCondvar::new();
        let t = Instant::now();
        let (g, r) = cv
            .wait_timeout_while(m.lock().unwrap(), Duration::from_millis(60), |v| *v == 0)
            .unwrap();
        assert!(r.timed_out());
        assert!(t.elapsed() >= Duration::from_millis(60));
        assert_eq!(*g, 0);
        drop(g);
        let (_g, r) = cv
            .wait_timeout(m.lock().unwrap(), Duration::from_millis(1))
            .unwrap();
        assert!(r.timed_out() || t.elapsed() < Duration::from_millis(1));
    }

    #[test]
    fn a_stale_sleeper_flag_is_cleared_by_the_next_notify() {
        let cv = ShmCondvar::new();
        cv.seq.store(SLEEPERS, Ordering::Relaxed);
        cv.notify_one();
        assert_eq!(cv.seq.load(Ordering::Relaxed) & SLEEPERS, 0);
        assert_eq!(cv.seq.load(Ordering::Relaxed) >> 1, 1);
    }

    #[test]
    fn a_wait_keeps_the_kind_of_its_guard() {
        let m = in_place(0u64);
        let cv = ShmCondvar::new();
        // A holder dies while a thread waits: the plain guard comes back as
        // OwnerDied, a recovering one reports it.
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                let g = m.lock().unwrap();
                locked_tx.send(()).unwrap();
                cv.wait_timeout(g, Duration::from_secs(30)).map(|_| ())
            });
            locked_rx.recv().unwrap();
            // Takes the mutex once the waiter gave it up, then dies with it.
            s.spawn(|| {
                let mut g = m.lock_recover().unwrap();
                *g = 5;
                core::mem::forget(g);
            })
            .join()
            .unwrap();
            cv.notify_all();
            assert!(matches!(
                waiter.join().unwrap(),
                Err(Error::OwnerDied { .. })
            ));
        });
        let g = m.lock_recover().unwrap();
        let (mut g, _) = cv.wait_timeout(g, Duration::from_millis(1)).unwrap();
        assert!(g.owner_died());
        assert_eq!(*g, 5);
        g.mark_consistent();
    }
}
