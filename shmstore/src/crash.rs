//! Crash points for tests: with the `crash-points` feature, a process can
//! be made to abort at the k-th step of the metadata operations it runs
//! (each journalled write is a step, and so are commits). With the
//! `fuzzing` feature, a fuzz target can instead take an image of the store
//! at the k-th step, as a process that died there would leave it, without
//! aborting (see [`crate::fuzzing::image_at_step`]). Without either
//! feature, [`step`] is an empty inline function.

#[cfg(feature = "crash-points")]
use core::sync::atomic::{AtomicU64, Ordering};

#[cfg(feature = "crash-points")]
static COUNTDOWN: AtomicU64 = AtomicU64::new(0);

/// One step of a metadata operation: aborts the process if the countdown
/// set by [`crash_after_steps`] reaches it.
#[inline(always)]
pub(crate) fn step() {
    #[cfg(feature = "fuzzing")]
    crate::fuzzing::on_step();
    #[cfg(feature = "crash-points")]
    {
        let left = COUNTDOWN.load(Ordering::Relaxed);
        if left == 1 {
            std::process::abort();
        }
        if left > 1 {
            COUNTDOWN.store(left - 1, Ordering::Relaxed);
        }
    }
}

/// Makes the process abort (`SIGABRT`, no unwinding, locks left held) at
/// its `n`-th step from now; `0` disarms.
#[cfg(feature = "crash-points")]
pub fn crash_after_steps(n: u64) {
    COUNTDOWN.store(n, Ordering::Relaxed);
}

/// Steps left before the armed crash (`0`: disarmed).
#[cfg(feature = "crash-points")]
pub fn steps_left() -> u64 {
    COUNTDOWN.load(Ordering::Relaxed)
}
