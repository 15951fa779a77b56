//! What every blocking primitive shares: deadlines, bounded sleeps, a short
//! spin before sleeping, the "bell" word that sleepers announce themselves
//! on, and holders' identities with their liveness.
//!
//! # The rules (DESIGN.md, "Synchronisation")
//!
//! - No sleep is longer than [`SLICE`]: a waiter wakes up, looks at the
//!   condition again, and — every [`CHECK_EVERY`] of waiting — asks whether
//!   whoever it waits for is still alive. So no waiter sleeps forever
//!   because a waker died between changing the state and waking it.
//! - No counter of waiters: a sleeper announces itself by setting a flag
//!   bit in the futex word it sleeps on, and the next ring clears it and
//!   wakes everyone. A flag left by a waiter that was killed (or that timed
//!   out) costs one needless `FUTEX_WAKE` at the next ring, and is gone
//!   after it: there is nothing to leave wrong.
//! - Holders are recorded as pid + start time ([`Me`]), never thread ids,
//!   and judged by [`crate::sys::proc`]'s three-way liveness: only a
//!   definite "dead" lets anyone take over what they hold.

use std::time::{Duration, Instant};

/// The longest a waiter sleeps before it looks at the state again.
pub(crate) const SLICE: Duration = Duration::from_millis(25);

/// How often a waiter asks whether a holder it waits for is still alive
/// (a `kill(pid, 0)` and a read of `/proc/<pid>/stat`: tens of
/// microseconds, so not on every wake-up). A dead holder is noticed within
/// about `CHECK_EVERY + SLICE` of its death.
pub(crate) const CHECK_EVERY: Duration = Duration::from_millis(20);

/// When a wait gives up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    at: Option<Instant>,
}

impl Deadline {
    /// Never (an untimed call; its sleeps are still sliced).
    pub(crate) const NEVER: Deadline = Deadline { at: None };

    /// `timeout` from now; a timeout too large to represent is "never".
    pub(crate) fn after(timeout: Duration) -> Deadline {
        Deadline {
            at: Instant::now().checked_add(timeout),
        }
    }

    /// `true` once the deadline has passed.
    pub(crate) fn expired(&self) -> bool {
        self.at.is_some_and(|at| Instant::now() >= at)
    }

    /// How long the next sleep may be: [`SLICE`], or what is left if less;
    /// `None` once the deadline has passed.
    pub(crate) fn slice(&self) -> Option<Duration> {
        match self.at {
            None => Some(SLICE),
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                (!left.is_zero()).then(|| left.min(SLICE))
            }
        }
    }
}

/// Rounds of [`spin`] before a waiter sleeps. Each round re-reads the
/// condition and pauses a little longer (1, 2, 4 … 32 `pause`s), then a
/// few rounds yield the CPU: on the order of 10–50 µs in all, about what a
/// futex wake-up costs, so a partner running on another core is usually
/// caught without any system call, and a partner that is not running costs
/// only that.
const SPIN_ROUNDS: u32 = 48;
/// Of which the last ones yield instead of pausing.
const YIELD_ROUNDS: u32 = 6;

/// Spins briefly until `ready()` holds; `true` if it did.
pub(crate) fn spin(mut ready: impl FnMut() -> bool) -> bool {
    for round in 0..SPIN_ROUNDS {
        if ready() {
            return true;
        }
        if round < SPIN_ROUNDS - YIELD_ROUNDS {
            for _ in 0..(1u32 << round.min(5)) {
                core::hint::spin_loop();
            }
        } else {
            std::thread::yield_now();
        }
    }
    ready()
}

/// Flag bit of a futex word: someone may sleep on it.
pub(crate) const SLEEPERS: u32 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_slice_sleeps_and_expire() {
        assert_eq!(Deadline::NEVER.slice(), Some(SLICE));
        assert!(!Deadline::NEVER.expired());
        let d = Deadline::after(Duration::from_millis(5));
        assert!(d.slice().unwrap() <= Duration::from_millis(5));
        std::thread::sleep(Duration::from_millis(6));
        assert!(d.expired());
        assert_eq!(d.slice(), None);
        assert!(!Deadline::after(Duration::MAX).expired());
    }
}
