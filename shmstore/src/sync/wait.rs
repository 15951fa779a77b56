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

use core::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::sys::futex::{self, Woke};
use crate::sys::proc::{self, Liveness, Me, StartTime};
use crate::Result;

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

/// Pause rounds of [`spin`]: round `r` re-reads the condition, then
/// executes `2^min(r, 5)` `pause` instructions: 127 pauses in all, about
/// 3 µs on the AMD EPYC development VM (24 ns a pause) and up to 9 µs on
/// CPUs with a slow `pause` — about what a futex wake-up costs, so a
/// partner running on another core is caught without a system call.
const PAUSE_ROUNDS: u32 = 8;
/// Then rounds that yield the CPU (about 0.4 µs each when nothing else
/// wants it): a partner waiting to run on this CPU runs now, instead of
/// after a sleep.
const YIELD_ROUNDS: u32 = 8;
/// Consecutive waits that pausing did not end after which a thread skips
/// the pause rounds, …
const MISSES_TO_SKIP: u8 = 4;
/// … for this many waits, then tries them again.
const SKIPPED_WAITS: u8 = 16;

thread_local! {
    /// Whether pausing has paid off for this thread lately: (consecutive
    /// misses, waits left to skip the pause rounds).
    static SPIN_LUCK: core::cell::Cell<(u8, u8)> = const { core::cell::Cell::new((0, 0)) };
}

/// Spins briefly until `ready()` holds; `true` if it did.
///
/// Pausing pays when the process that will make `ready()` true runs on
/// another core: it is seen within a few hundred nanoseconds. It is pure
/// loss when that process waits for this one's CPU (two processes passing
/// a token back and forth are often placed on one CPU by the scheduler):
/// then every pause delays it, and only yielding or sleeping helps. So the
/// pause rounds adapt, per thread: after [`MISSES_TO_SKIP`] waits in a row
/// that pausing did not end (they ended while yielding, or asleep), the
/// next [`SKIPPED_WAITS`] waits go straight to yielding, then pausing is
/// tried again. (Measured on the 2-vCPU development VM, a semaphore
/// ping-pong: 0.45 µs a round trip with pausing when the two processes run
/// on two CPUs, 2.5 µs with yielding only when they share one, and 11 µs
/// with pausing when they share one.)
pub(crate) fn spin(mut ready: impl FnMut() -> bool) -> bool {
    if ready() {
        return true;
    }
    let (mut misses, mut skip) = SPIN_LUCK.try_with(|l| l.get()).unwrap_or((0, 0));
    let paused = skip == 0;
    if paused {
        for round in 0..PAUSE_ROUNDS {
            for _ in 0..(1u32 << round.min(5)) {
                core::hint::spin_loop();
            }
            if ready() {
                let _ = SPIN_LUCK.try_with(|l| l.set((0, 0)));
                return true;
            }
        }
        misses += 1;
        if misses >= MISSES_TO_SKIP {
            (misses, skip) = (0, SKIPPED_WAITS);
        }
    } else {
        skip -= 1;
    }
    let _ = SPIN_LUCK.try_with(|l| l.set((misses, skip)));
    for _ in 0..YIELD_ROUNDS {
        std::thread::yield_now();
        if ready() {
            return true;
        }
    }
    false
}

/// Flag bit of a bell word: someone may sleep on it.
pub(crate) const SLEEPERS: u32 = 1;

/// A 32-bit futex word that waiters sleep on and wakers ring.
///
/// | bits  | meaning                                                      |
/// |-------|--------------------------------------------------------------|
/// | 0     | [`SLEEPERS`]: someone announced it would sleep; cleared by a ring |
/// | 1..32 | ring count (wraps): every ring changes it                     |
///
/// A waiter reads the word, checks its condition, announces itself
/// ([`Bell::announce`]), checks the condition again, and sleeps on the word
/// it announced. A waker changes the state the condition reads, then
/// rings: [`Bell::ring`] always (one read-modify-write), or
/// [`Bell::ring_if_announced`] (one load when no one sleeps) provided the
/// state change and that load are both `SeqCst`, as are the waiter's
/// announcement and recheck — then either the waiter sees the new state or
/// the waker sees the flag.
///
/// A word whose low bits count something else (a semaphore's permits)
/// uses another flag bit: [`Bell::with_flag`].
pub(crate) struct Bell<'a> {
    word: &'a AtomicU32,
    flag: u32,
}

impl<'a> Bell<'a> {
    /// A bell on `word` with the [`SLEEPERS`] flag.
    pub(crate) fn new(word: &'a AtomicU32) -> Bell<'a> {
        Bell {
            word,
            flag: SLEEPERS,
        }
    }

    /// A bell on `word` whose sleeper flag is `flag` (one bit); only
    /// [`Bell::announce`] and [`Bell::sleep`] may be used on it (the other
    /// bits are not a ring count).
    pub(crate) fn with_flag(word: &'a AtomicU32, flag: u32) -> Bell<'a> {
        Bell { word, flag }
    }

    /// The word now (to pass to [`Bell::announce`] after checking the
    /// condition).
    pub(crate) fn read(&self) -> u32 {
        self.word.load(Ordering::SeqCst)
    }

    /// Sets the flag unless the word was rung since `seen`: the word to
    /// sleep on, or `None` if it was rung.
    pub(crate) fn announce(&self, seen: u32) -> Option<u32> {
        let flag = self.flag;
        let mut cur = self.word.load(Ordering::SeqCst);
        loop {
            if cur | flag != seen | flag {
                return None;
            }
            if cur & flag != 0 {
                return Some(cur);
            }
            match self.word.compare_exchange_weak(
                cur,
                cur | flag,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return Some(cur | flag),
                Err(now) => cur = now,
            }
        }
    }

    /// Sleeps on `announced` (from [`Bell::announce`]) for at most `slice`.
    pub(crate) fn sleep(&self, announced: u32, slice: Duration) -> Result<Woke> {
        futex::wait(self.word, announced, slice)
    }

    /// Changes the ring count, clears the flag, and wakes every sleeper if
    /// the flag was set.
    pub(crate) fn ring(&self) {
        debug_assert_eq!(self.flag, SLEEPERS);
        let old = self
            .word
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
                Some(v.wrapping_add(2) & !SLEEPERS)
            });
        // `fetch_update` with a closure that always returns `Some` cannot
        // fail.
        let old = old.unwrap_or_else(|v| v);
        if old & SLEEPERS != 0 {
            // A failed wake (impossible for a live word) leaves sleepers to
            // wake up at the end of their slice, which they do anyway.
            let _ = futex::wake(self.word, u32::MAX);
        }
    }

    /// [`Bell::ring`] only if someone announced itself (see the type docs
    /// for the ordering this needs).
    #[inline]
    pub(crate) fn ring_if_announced(&self) {
        if self.word.load(Ordering::SeqCst) & SLEEPERS != 0 {
            self.ring();
        }
    }
}

/// Waits, in bounded sleeps, until `ready()` returns `Some`: spins first,
/// then announces itself on `bell`, checks again, sleeps a slice, and so on.
/// Every [`CHECK_EVERY`] of waiting it runs `check()` (which looks at the
/// liveness of holders and repairs what dead ones left; an error ends the
/// wait). `None` when the deadline passes.
pub(crate) fn wait_until<R>(
    bell: Bell<'_>,
    deadline: Deadline,
    mut ready: impl FnMut() -> Result<Option<R>>,
    mut check: impl FnMut() -> Result<()>,
) -> Result<Option<R>> {
    if let Some(r) = ready()? {
        return Ok(Some(r));
    }
    let mut found = None;
    let mut failed = None;
    spin(|| match ready() {
        Ok(Some(r)) => {
            found = Some(r);
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
    if found.is_some() {
        return Ok(found);
    }
    let mut last_check = Instant::now();
    loop {
        let seen = bell.read();
        if let Some(r) = ready()? {
            return Ok(Some(r));
        }
        let Some(slice) = deadline.slice() else {
            return Ok(None);
        };
        if let Some(announced) = bell.announce(seen) {
            // The recheck must not be ordered before the announcement.
            core::sync::atomic::fence(Ordering::SeqCst);
            if let Some(r) = ready()? {
                return Ok(Some(r));
            }
            bell.sleep(announced, slice)?;
        }
        if last_check.elapsed() >= CHECK_EVERY {
            check()?;
            last_check = Instant::now();
        }
    }
}

/// A process's identity packed into 64 bits: pid in the low half, the low
/// 32 bits of its start time in the high half (`u32::MAX` for unknown).
/// Never 0 (no process has pid 0), so 0 can mean "nobody".
pub(crate) fn id64(me: Me) -> u64 {
    me.pid as u64 | (me.start.low32_word() as u64) << 32
}

/// This process's [`id64`].
pub(crate) fn my_id64() -> u64 {
    id64(proc::me())
}

/// Where a primitive lives, for judging the processes it records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// In this process's own memory (not in a store): only its threads use
    /// it.
    Local,
    /// In a store; `true` if all its processes share this process's pid
    /// namespace and this process can judge liveness there.
    Store(bool),
}

/// Where `place` (a primitive, borrowed for the call) lives. Read it after
/// loading the identity to judge (see [`Inner::one_pid_namespace`]).
///
/// [`Inner::one_pid_namespace`]: crate::store::Inner::one_pid_namespace
pub(crate) fn place_of<P>(place: &P) -> Place {
    let addr = place as *const P as usize;
    // SAFETY: `place` is a reference the caller holds for this call.
    match unsafe { crate::store::one_pid_namespace_at(addr, core::mem::size_of::<P>()) } {
        Some(one) => Place::Store(one),
        None => Place::Local,
    }
}

/// Whether the process recorded as `id` ([`id64`]) in the primitive
/// `place` is known to be dead (see [`dead_in`]).
pub(crate) fn id64_dead_in<P>(place: &P, id: u64) -> bool {
    let pid = id as u32;
    let start = StartTime::from_low32_word((id >> 32) as u32);
    dead_in(place, pid, start, 32)
}

/// Whether `(pid, start)` (with `bits` low bits of the start time
/// recorded), loaded from the primitive `place` before this call, is known
/// to be dead. Unknown counts as alive; so does every process when this
/// one cannot judge: when `place` is in a store that processes of more
/// than one pid namespace attached to (a pid of another namespace names
/// another process here, or none), or this process's `/proc` is not its
/// own namespace's. This process (and a process recorded with our pid and
/// another start time, which must be gone) is answered without a system
/// call.
pub(crate) fn dead_in<P>(place: &P, pid: u32, start: StartTime, bits: u32) -> bool {
    let judge = match place_of(place) {
        Place::Local => proc::can_judge(),
        Place::Store(one) => one,
    };
    judge && dead(pid, start, bits)
}

/// [`dead_in`] without the look at where the primitive lives: for callers
/// that did it.
fn dead(pid: u32, start: StartTime, bits: u32) -> bool {
    let me = proc::me();
    if pid == me.pid {
        // Another process had our pid if the start times differ.
        let mine = StartTime::from_low_bits(me.start.low_bits(bits), bits);
        return match (start, mine) {
            (StartTime::Known(a), StartTime::Known(b)) => a != b,
            _ => false,
        };
    }
    proc::liveness_low_bits(pid, start, bits) == Liveness::Dead
}

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

    #[test]
    fn a_bell_wakes_an_announced_sleeper_and_clears_its_flag() {
        let word = AtomicU32::new(0);
        let bell = Bell::new(&word);
        let seen = bell.read();
        let announced = bell.announce(seen).unwrap();
        assert_eq!(announced & SLEEPERS, SLEEPERS);
        bell.ring();
        assert_eq!(word.load(Ordering::Relaxed) & SLEEPERS, 0);
        // Rung since `seen`: announcing again says so.
        assert_eq!(bell.announce(seen), None);
        // And a sleep on the old word returns at once.
        assert_eq!(
            bell.sleep(announced, Duration::from_secs(5)).unwrap(),
            Woke::Changed
        );
    }

    #[test]
    fn wait_until_returns_what_is_ready_or_none_at_the_deadline() {
        let word = AtomicU32::new(0);
        let flag = AtomicU32::new(0);
        let got = std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(5));
                flag.store(7, Ordering::SeqCst);
                Bell::new(&word).ring_if_announced();
            });
            wait_until(
                Bell::new(&word),
                Deadline::after(Duration::from_secs(30)),
                || Ok(Some(flag.load(Ordering::SeqCst)).filter(|&v| v != 0)),
                || Ok(()),
            )
        });
        assert_eq!(got.unwrap(), Some(7));
        let t = Instant::now();
        let none: Option<()> = wait_until(
            Bell::new(&word),
            Deadline::after(Duration::from_millis(30)),
            || Ok(None),
            || Ok(()),
        )
        .unwrap();
        assert_eq!(none, None);
        assert!(t.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn identities_round_trip_and_judge_this_process_alive() {
        let here = 0u64;
        assert_eq!(place_of(&here), Place::Local);
        let me = proc::me();
        let id = id64(me);
        assert_eq!(id as u32, me.pid);
        assert!(!id64_dead_in(&here, id));
        // Our pid with another start time: that process is gone.
        if let StartTime::Known(t) = me.start {
            let other = Me {
                pid: me.pid,
                start: StartTime::Known(t ^ 1),
            };
            assert!(id64_dead_in(&here, id64(other)));
            assert!(dead_in(&here, me.pid, StartTime::Known(t ^ 1), 30));
            assert!(!dead_in(&here, me.pid, StartTime::Known(t), 30));
        }
        let nobody = Me {
            pid: i32::MAX as u32,
            start: me.start,
        };
        assert!(id64_dead_in(&here, id64(nobody)));
    }
}
