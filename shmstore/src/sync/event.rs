//! [`ShmEvent`]: a generation counter that processes wait on.

use core::fmt;
use core::mem::{align_of, size_of};
use core::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::wait::{self, Deadline, CHECK_EVERY};
use crate::layout::{LayoutKind, ShmMovable, ShmSafe, TypeLayout};
use crate::sys::futex;
use crate::Result;

/// Flag bit of the word: someone may sleep on it.
const SLEEPERS: u64 = 1;

/// An event that any process can signal and any process can wait for: a
/// generation counter, bumped by [`notify`](ShmEvent::notify), that waiters
/// compare with the generation they last saw.
///
/// There is nothing to reset and no notification to lose: a waiter that
/// was busy when the event was notified sees the new generation the next
/// time it looks, and several notifications while it was away are one
/// change. Use it to say "something changed, look again" (a new value was
/// published, a queue got work); the data itself lives elsewhere in the
/// store.
///
/// ```
/// use std::time::Duration;
/// use shmstore::{ShmEvent, Store};
///
/// # fn main() -> shmstore::Result<()> {
/// # let name = format!("doc-event-{}", std::process::id());
/// let store = Store::open_or_create(&name, 1 << 20)?;
/// let changed = store.get_or_insert_with("config-changed", ShmEvent::new)?;
/// let seen = changed.generation();
/// // ... in another process: update the config, then `changed.notify()`.
/// # changed.notify();
/// match changed.wait_for_change(seen, Duration::from_secs(5))? {
///     Some(now) => println!("generation {now}: reload"),
///     None => println!("no change within 5 s"),
/// }
/// # Store::unlink(&name)?;
/// # Ok(())
/// # }
/// ```
///
/// # Dead processes
///
/// The event holds no record of who waits: a waiter announces itself by
/// setting a flag bit before it sleeps, and `notify` clears the flag as it
/// wakes everyone. So:
///
/// - a **waiter killed** at any instruction leaves at most that flag, which
///   makes the next `notify` issue one `FUTEX_WAKE` that finds no one, and
///   is gone after it;
/// - a **notifier killed** after bumping the generation but before waking
///   anyone leaves sleepers that see the new generation when their sleep
///   slice ends (every sleep is at most 25 ms, then the generation is read
///   again), so a wait returns at most one slice late.
///
/// # Layout
///
/// `#[repr(C)]`, 8 bytes, align 8: one `AtomicU64` word.
///
/// | bits  | meaning                                                  |
/// |-------|----------------------------------------------------------|
/// | 0     | someone may sleep on the word (set by a waiter, cleared by `notify`) |
/// | 1..64 | the generation (wraps after 2^63 notifications)          |
///
/// Waiters sleep on the word's low 32 bits (a shared futex). Every bit
/// pattern is a valid event. The event is [`ShmMovable`]: it holds no
/// address and is only ever used through a borrow, so no thread can sleep on
/// it while it is moved.
#[repr(C)]
pub struct ShmEvent {
    word: AtomicU64,
}

impl ShmEvent {
    /// A new event at generation 0.
    pub const fn new() -> ShmEvent {
        ShmEvent {
            word: AtomicU64::new(0),
        }
    }

    /// The current generation.
    pub fn generation(&self) -> u64 {
        self.word.load(Ordering::Acquire) >> 1
    }

    /// Bumps the generation and wakes every waiter; returns the new
    /// generation. Costs one atomic read-modify-write, plus one system call
    /// when someone sleeps.
    pub fn notify(&self) -> u64 {
        let old = self
            .word
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                Some(v.wrapping_add(2) & !SLEEPERS)
            })
            .unwrap_or_else(|v| v);
        crate::crash::step();
        if old & SLEEPERS != 0 {
            // A failed wake (impossible for a live word) only leaves the
            // sleepers to their slice's end, where they see the change.
            let _ = futex::wake_low(&self.word, u32::MAX);
        }
        (old >> 1).wrapping_add(1) & (u64::MAX >> 1)
    }

    /// Waits until the generation is no longer `seen`, for at most
    /// `timeout`: `Some(generation)` then, or `None` if it had not changed
    /// when the time ran out. Returns at once if it already differs.
    /// `Duration::MAX` waits as long as it takes.
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) if the futex system call fails for a
    /// reason other than those it is expected to return (not seen in
    /// practice).
    pub fn wait_for_change(&self, seen: u64, timeout: Duration) -> Result<Option<u64>> {
        let deadline = Deadline::after(timeout);
        let changed = || {
            let g = self.generation();
            (g != seen).then_some(g)
        };
        if let Some(g) = changed() {
            return Ok(Some(g));
        }
        let mut now = None;
        if wait::spin(|| {
            now = changed();
            now.is_some()
        }) {
            return Ok(now);
        }
        loop {
            let Some(slice) = deadline.slice() else {
                return Ok(None);
            };
            let w = self.word.fetch_or(SLEEPERS, Ordering::AcqRel) | SLEEPERS;
            if w >> 1 != seen {
                return Ok(Some(w >> 1));
            }
            // The generation is read again after every slice: a notifier
            // that died before waking anyone delays us by one slice at most.
            futex::wait_low(&self.word, w as u32, slice.min(CHECK_EVERY))?;
            if let Some(g) = changed() {
                return Ok(Some(g));
            }
        }
    }
}

impl Default for ShmEvent {
    fn default() -> Self {
        ShmEvent::new()
    }
}

impl fmt::Debug for ShmEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmEvent")
            .field("generation", &self.generation())
            .finish()
    }
}

// SAFETY:
// - no absolute addresses: one integer word;
// - `repr(C)` with one `AtomicU64`; LAYOUT records name, size and align;
// - no drop glue;
// - every bit pattern is a valid `AtomicU64` and a valid event (see the
//   type docs: any generation, flag set or not);
// - mutation through `&Self` is atomic operations only, sound across
//   processes; `Send + Sync` as an atomic is;
// - not IMMOVABLE: nothing is initialised in place, and nothing outside a
//   borrow of the event refers to its address (a sleeper holds a borrow).
unsafe impl ShmSafe for ShmEvent {
    const LAYOUT: &'static TypeLayout = &TypeLayout {
        name: "ShmEvent",
        size: size_of::<Self>(),
        align: align_of::<Self>(),
        kind: LayoutKind::Opaque { params: &[] },
    };
}

// SAFETY: nothing initialised in place (the default `init_in_place`, not
// IMMOVABLE); see the type docs for why moving it is harmless.
unsafe impl ShmMovable for ShmEvent {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn layout_is_one_word() {
        assert_eq!(ShmEvent::LAYOUT.size, 8);
        assert_eq!(ShmEvent::LAYOUT.align, 8);
        assert_eq!(ShmEvent::LAYOUT.type_expr(), "ShmEvent");
        const { assert!(!ShmEvent::IMMOVABLE) };
    }

    #[test]
    fn notify_bumps_the_generation_and_a_changed_one_returns_at_once() {
        let e = ShmEvent::new();
        assert_eq!(e.generation(), 0);
        assert_eq!(e.notify(), 1);
        assert_eq!(e.notify(), 2);
        assert_eq!(e.generation(), 2);
        assert_eq!(
            e.wait_for_change(0, Duration::from_secs(5)).unwrap(),
            Some(2)
        );
    }

    #[test]
    fn a_wait_without_change_times_out() {
        let e = ShmEvent::new();
        let t = Instant::now();
        assert_eq!(
            e.wait_for_change(0, Duration::from_millis(40)).unwrap(),
            None
        );
        assert!(t.elapsed() >= Duration::from_millis(40));
        // The flag it left is cleared by the next notify.
        assert_eq!(e.word.load(Ordering::Relaxed) & SLEEPERS, SLEEPERS);
        e.notify();
        assert_eq!(e.word.load(Ordering::Relaxed) & SLEEPERS, 0);
    }

    #[test]
    fn a_sleeping_waiter_is_woken_by_a_notify_from_another_thread() {
        let e = ShmEvent::new();
        std::thread::scope(|s| {
            let w = s.spawn(|| e.wait_for_change(0, Duration::from_secs(30)));
            // Whether the waiter sleeps yet or not, it must see the change.
            std::thread::sleep(Duration::from_millis(10));
            e.notify();
            assert_eq!(w.join().unwrap().unwrap(), Some(1));
        });
    }

    #[test]
    fn a_notify_lost_before_its_wake_is_seen_within_a_slice() {
        let e = ShmEvent::new();
        std::thread::scope(|s| {
            let w = s.spawn(|| {
                let t = Instant::now();
                let r = e.wait_for_change(0, Duration::from_secs(30));
                (r, t.elapsed())
            });
            std::thread::sleep(Duration::from_millis(30));
            // A notifier that bumped the generation and died before waking:
            // the flag stays, no FUTEX_WAKE is issued.
            e.word.fetch_add(2, Ordering::AcqRel);
            let (r, took) = w.join().unwrap();
            assert_eq!(r.unwrap(), Some(1));
            assert!(took < Duration::from_secs(5), "{took:?}");
        });
    }
}
