//! Shared futexes: `FUTEX_WAIT` and `FUTEX_WAKE` on a 32-bit word that may
//! live in a segment mapped by several processes.
//!
//! Never `FUTEX_PRIVATE_FLAG`: a private futex is keyed by the address in
//! one process's address space, so a waiter in another process (which maps
//! the segment elsewhere) would never be woken. A shared futex is keyed by
//! the page's backing object and offset, which every process mapping the
//! segment shares.
//!
//! Each wrapper makes exactly one `futex(2)` system call and maps its errno
//! here:
//!
//! | call          | errno       | result                                      |
//! |---------------|-------------|---------------------------------------------|
//! | `FUTEX_WAIT`  | none        | [`Woke::Woken`] (or a spurious return)      |
//! | `FUTEX_WAIT`  | `EAGAIN`    | [`Woke::Changed`]: the word was not `expected` |
//! | `FUTEX_WAIT`  | `ETIMEDOUT` | [`Woke::TimedOut`]                          |
//! | `FUTEX_WAIT`  | `EINTR`     | [`Woke::Interrupted`] (a signal handler ran) |
//! | any           | `EINVAL`, `EFAULT` | [`Error::Corrupted`] (the word is not a usable futex: cannot happen for a live, aligned word) |
//! | any           | other       | [`Error::Io`] with the raw errno            |
//!
//! Every wait takes a timeout: callers never sleep unboundedly (see
//! `sync`'s module docs: a sleep is bounded, then the condition and the
//! liveness of whoever is waited for are checked again).

use core::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Duration;

use crate::{Error, Result};

/// How a [`wait`] returned. Every outcome means "look again": a futex wait
/// may also return without any of these reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Woke {
    /// Woken by a [`wake`] (or spuriously).
    Woken,
    /// The word did not hold the expected value when the call started.
    Changed,
    /// The timeout passed.
    TimedOut,
    /// A signal handler ran.
    Interrupted,
}

/// The longest timeout passed to the kernel: a sleep is sliced by the
/// callers anyway, and this keeps `tv_sec` far from overflow.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

fn timespec(timeout: Duration) -> libc::timespec {
    let t = timeout.min(MAX_TIMEOUT);
    libc::timespec {
        // At most 3600: fits every `time_t`.
        tv_sec: t.as_secs() as libc::time_t,
        // Below 10^9: fits every `c_long`.
        tv_nsec: t.subsec_nanos() as libc::c_long,
    }
}

fn error(op: &'static str, errno: i32) -> Error {
    match errno {
        libc::EINVAL | libc::EFAULT => Error::corrupted(format!(
            "{op} refused the word (errno {errno}): it is not a usable futex"
        )),
        _ => Error::io(op, std::io::Error::from_raw_os_error(errno)),
    }
}

/// `FUTEX_WAIT` on the 32-bit word at `addr`.
///
/// # Safety
///
/// `addr` is aligned to 4 and points at 4 bytes that stay mapped for the
/// duration of the call (the kernel only reads them, atomically).
unsafe fn wait_at(addr: *const u32, expected: u32, timeout: Duration) -> Result<Woke> {
    let ts = timespec(timeout);
    // SAFETY:
    // - `addr` is aligned and mapped for the call (caller's guarantee); the
    //   kernel reads the word atomically and writes nothing;
    // - `ts` is a valid timespec on this stack frame, read during the call;
    // - the two trailing arguments are unused by FUTEX_WAIT.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex,
            addr,
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            core::ptr::null::<u32>(),
            0u32,
        )
    };
    if rc == 0 {
        return Ok(Woke::Woken);
    }
    match std::io::Error::last_os_error().raw_os_error().unwrap_or(0) {
        libc::EAGAIN => Ok(Woke::Changed),
        libc::ETIMEDOUT => Ok(Woke::TimedOut),
        libc::EINTR => Ok(Woke::Interrupted),
        errno => Err(error("futex(FUTEX_WAIT)", errno)),
    }
}

/// `FUTEX_WAKE` of up to `n` waiters on the word at `addr`; returns how
/// many were woken.
///
/// # Safety
///
/// As for [`wait_at`].
unsafe fn wake_at(addr: *const u32, n: u32) -> Result<u32> {
    let n = n.min(i32::MAX as u32);
    // SAFETY:
    // - `addr` is aligned and mapped for the call (caller's guarantee); the
    //   kernel only uses it as the futex key, it reads and writes nothing;
    // - the trailing arguments are unused by FUTEX_WAKE.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex,
            addr,
            libc::FUTEX_WAKE,
            n,
            core::ptr::null::<libc::timespec>(),
            core::ptr::null::<u32>(),
            0u32,
        )
    };
    if rc >= 0 {
        // The kernel wakes at most `n <= i32::MAX`.
        return Ok(rc as u32);
    }
    Err(error(
        "futex(FUTEX_WAKE)",
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
    ))
}

/// Sleeps while `word` holds `expected`, for at most `timeout`.
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Duration) -> Result<Woke> {
    // SAFETY: `word` is a live, 4-aligned `AtomicU32` for the call.
    unsafe { wait_at(word.as_ptr(), expected, timeout) }
}

/// Wakes up to `n` threads (of any process) sleeping on `word`.
pub(crate) fn wake(word: &AtomicU32, n: u32) -> Result<u32> {
    // SAFETY: as in `wait`.
    unsafe { wake_at(word.as_ptr(), n) }
}

/// The low 32 bits of a 64-bit word, as the kernel sees them: the first
/// four bytes on a little-endian machine, the last four on a big-endian one.
fn low_half(word: &AtomicU64) -> *const u32 {
    let p = word.as_ptr().cast::<u32>();
    if cfg!(target_endian = "little") {
        p
    } else {
        p.wrapping_add(1)
    }
}

/// [`wait`] on the low 32 bits of a 64-bit word: sleeps while they hold
/// `expected`. The kernel reads the half-word atomically; Rust code only
/// ever accesses the word as a whole `AtomicU64`.
pub(crate) fn wait_low(word: &AtomicU64, expected: u32, timeout: Duration) -> Result<Woke> {
    // SAFETY: `low_half` points at 4 bytes inside the live, 8-aligned word
    // (hence 4-aligned), mapped for the call.
    unsafe { wait_at(low_half(word), expected, timeout) }
}

/// [`wake`] for waiters of [`wait_low`] on the same word.
pub(crate) fn wake_low(word: &AtomicU64, n: u32) -> Result<u32> {
    // SAFETY: as in `wait_low`.
    unsafe { wake_at(low_half(word), n) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::Ordering;
    use std::time::Instant;

    #[test]
    fn a_wait_on_another_value_returns_at_once() {
        let w = AtomicU32::new(5);
        assert_eq!(wait(&w, 4, Duration::from_secs(5)).unwrap(), Woke::Changed);
    }

    #[test]
    fn a_wait_times_out() {
        let w = AtomicU32::new(5);
        let t = Instant::now();
        assert_eq!(
            wait(&w, 5, Duration::from_millis(20)).unwrap(),
            Woke::TimedOut
        );
        assert!(t.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn wake_with_no_waiter_wakes_nobody() {
        let w = AtomicU32::new(0);
        assert_eq!(wake(&w, u32::MAX).unwrap(), 0);
        let w64 = AtomicU64::new(0);
        assert_eq!(wake_low(&w64, 1).unwrap(), 0);
    }

    #[test]
    fn a_sleeper_is_woken_by_another_thread() {
        let w = AtomicU32::new(0);
        std::thread::scope(|s| {
            s.spawn(|| {
                let deadline = Instant::now() + Duration::from_secs(30);
                while w.load(Ordering::Acquire) == 0 && Instant::now() < deadline {
                    let _ = wait(&w, 0, Duration::from_millis(100)).unwrap();
                }
                assert_eq!(w.load(Ordering::Acquire), 1);
            });
            w.store(1, Ordering::Release);
            wake(&w, 1).unwrap();
        });
    }

    #[test]
    fn the_low_half_of_a_64_bit_word_is_the_futex() {
        let w = AtomicU64::new(0x1_0000_0007);
        assert_eq!(
            wait_low(&w, 6, Duration::from_secs(1)).unwrap(),
            Woke::Changed
        );
        assert_eq!(
            wait_low(&w, 7, Duration::from_millis(5)).unwrap(),
            Woke::TimedOut
        );
    }
}
