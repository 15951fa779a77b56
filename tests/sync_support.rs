//! Helpers shared by the synchronisation tests (`#[path]`-included by each
//! of them): watchdogs, crash-point children, a small PRNG.

#![allow(dead_code)]

use std::os::unix::process::ExitStatusExt;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use shmstore_tests::Finished;

/// How long a primitive may take to notice a dead process and go on, in
/// these tests: the design says about 50 ms (a 20 ms liveness check plus a
/// 25 ms sleep slice); a busy 2-core machine gets a wide margin.
pub const RECOVERY: Duration = Duration::from_secs(10);

/// How long any single blocking call may take before the test calls it a
/// hang.
pub const WATCHDOG: Duration = Duration::from_secs(60);

/// Runs `f` on another thread; fails the test if it does not return
/// within `limit`.
pub fn within<R: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(r) => r,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what} did not return within {limit:?}: it hangs")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what} panicked"),
    }
}

/// No core files: many deliberate aborts must stay cheap.
pub fn no_core_dumps() {
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads a valid rlimit; it only lowers a limit.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) };
}

/// How a crash-point child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It ran its operation to the end (the step count was past its last
    /// step).
    Finished,
    /// It aborted at the armed step.
    Crashed,
}

/// Classifies a crash-point child: exited 0, or killed by `SIGABRT`; any
/// other end fails the test.
pub fn ended(done: &Finished) -> Ended {
    if done.status.success() {
        Ended::Finished
    } else if done.status.signal() == Some(libc::SIGABRT) {
        Ended::Crashed
    } else {
        panic!("the child neither finished nor aborted at its crash point\n{done}")
    }
}

/// Asserts that a killed child died of `SIGKILL` (and not of a failure of
/// its own before it).
pub fn assert_killed(done: &Finished) {
    assert_eq!(
        done.status.signal(),
        Some(libc::SIGKILL),
        "the child was expected to be killed\n{done}"
    );
}

/// xorshift64*: a small deterministic PRNG, seeded from the clock (the
/// seed is printed, so a failure can be replayed with `SYNC_TEST_SEED`).
pub struct Rng(u64);

impl Rng {
    pub fn from_env_or_clock(test: &str) -> Rng {
        let seed = std::env::var("SYNC_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1);
                t | 1
            });
        eprintln!("{test}: SYNC_TEST_SEED={seed}");
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Elapsed time of `f`, with its result.
pub fn timed<R>(f: impl FnOnce() -> R) -> (R, Duration) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed())
}
