//! [`ShmQueue<T, N>`]: a bounded multi-producer multi-consumer queue of
//! `ShmSafe` values, shared by processes, that no dead process can wedge.

use core::cell::UnsafeCell;
use core::fmt;
use core::mem::{align_of, size_of, MaybeUninit};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use super::wait::{self, dead_in, Bell, Deadline};
use crate::layout::{LayoutKind, ShmMovable, ShmSafe, TypeLayout};
use crate::sys::proc::{self, StartTime};
use crate::{Error, Result};

// Slot state word:
//
// | bits   | field                                                      |
// |--------|------------------------------------------------------------|
// | 0..2   | phase: EMPTY, WRITING, FULL, READING                       |
// | 2..24  | claimant's pid (WRITING, READING; 0 otherwise)             |
// | 24..40 | low 16 bits of the claimant's start time (0 if no claimant)|
// | 40..64 | lap: position / N, modulo 2^24                             |

const EMPTY: u64 = 0;
const WRITING: u64 = 1;
const FULL: u64 = 2;
const READING: u64 = 3;
const PHASE: u64 = 3;
const PID_SHIFT: u32 = 2;
const PID_BITS: u32 = 22;
const START_SHIFT: u32 = 24;
const LAP_SHIFT: u32 = 40;
const LAP_MASK: u64 = (1 << 24) - 1;
const OWNER: u64 = ((1 << LAP_SHIFT) - 1) & !PHASE;

fn phase(s: u64) -> u64 {
    s & PHASE
}

fn owner(s: u64) -> u64 {
    s & OWNER
}

fn lap(s: u64) -> u64 {
    s >> LAP_SHIFT
}

fn word(lap: u64, phase: u64, owner: u64) -> u64 {
    (lap & LAP_MASK) << LAP_SHIFT | owner | phase
}

/// `a - b` for laps modulo 2^24, as a signed distance.
fn lap_diff(a: u64, b: u64) -> i64 {
    let d = a.wrapping_sub(b) & LAP_MASK;
    if d >= 1 << 23 {
        d as i64 - (1 << 24)
    } else {
        d as i64
    }
}

/// This process's claimant bits, or an error on a pid that does not fit
/// (Linux pids are below 2^22).
#[inline]
fn my_owner() -> Result<u64> {
    let me = proc::me();
    if me.pid == 0 || me.pid >= 1 << PID_BITS {
        return Err(Error::InvalidArgument {
            reason: format!(
                "process id {} does not fit the 22 bits a ShmQueue records",
                me.pid
            ),
        });
    }
    Ok((me.pid as u64) << PID_SHIFT | (me.start.low16_word() as u64) << START_SHIFT)
}

/// Whether the claimant recorded in `s`, a slot word of `queue`, is known
/// to be dead.
fn claimant_dead<Q>(queue: &Q, s: u64) -> bool {
    let pid = ((s >> PID_SHIFT) & ((1 << PID_BITS) - 1)) as u32;
    let start = StartTime::from_low16_word((s >> START_SHIFT) as u16);
    dead_in(queue, pid, start, 16)
}

#[repr(C)]
struct Slot<T> {
    state: AtomicU64,
    value: UnsafeCell<MaybeUninit<T>>,
}

/// A bounded queue of up to `N` values of `T`, for many producers and
/// many consumers in any processes that map it.
///
/// [`push`](ShmQueue::push) copies a value in (waiting while the queue is
/// full), [`pop`](ShmQueue::pop) takes the oldest one out (waiting while
/// it is empty). Waiting spins briefly, then sleeps on a shared futex in
/// slices of at most 25 ms; `try_*` variants never wait, `try_*_for` ones
/// wait at most the time given.
///
/// ```
/// use std::time::Duration;
/// use shmstore::{ShmQueue, ShmSafe, Store};
///
/// #[derive(ShmSafe, Clone, Copy, Debug, PartialEq)]
/// #[repr(C)]
/// struct Job {
///     id: u64,
///     cost: u32,
///     _pad: u32,
/// }
///
/// # fn main() -> shmstore::Result<()> {
/// # let name = format!("doc-queue-{}", std::process::id());
/// let store = Store::open_or_create(&name, 1 << 20)?;
/// let jobs = store.get_or_insert_with("jobs", ShmQueue::<Job, 64>::new)?;
/// jobs.push(Job { id: 1, cost: 5, _pad: 0 })?; // a producer, any process
/// let job = jobs.try_pop_for(Duration::from_secs(1))?; // a consumer, any process
/// assert_eq!(job.map(|j| j.id), Some(1));
/// # Store::unlink(&name)?;
/// # Ok(())
/// # }
/// ```
///
/// # What a value goes through
///
/// Every value whose `push` returned `Ok` is, at any later moment, either
/// still in the queue or was returned by exactly one `pop`. A value is
/// *returned* when its slot is given back to the producers: that is the
/// last thing a pop does before returning, so a consumer killed before it
/// leaves the value in the queue, and a consumer killed after it loses only
/// the value it was returning (its own records show which; see
/// [`pop_with`](ShmQueue::pop_with) to record it before the slot is given
/// back).
///
/// # Dead producers and consumers
///
/// Each slot has a state word saying whether it is empty, being written,
/// full, or being read, and by which process (pid and the low 16 bits of
/// its start time) — changed with one compare-and-swap, so a claim and its
/// claimant are recorded together. A process killed at any instruction
/// leaves at most one slot claimed. Waiters check every 20 ms whether the
/// claimants of the slots they wait on are alive, and repair the slot of a
/// dead one:
///
/// - a slot **being written by a dead producer** is *skipped*: it becomes
///   empty for the next round, and its value — which that producer's `push`
///   never reported as pushed — is dropped (its bytes are never read, and
///   never dropped as a `T`);
/// - a slot **being read by a dead consumer** is *put back*: it becomes full
///   again, and the value (intact: a pop only reads it) goes to the next
///   consumer.
///
/// A claimed slot holds up the other processes only when it is the one
/// they need — producers that have gone round the ring to it, or nobody
/// else: consumers pass over slots being written or read, taking later
/// values. So values of different producers may be claimed out of push
/// order while one of them is slow or dead. The values of one producer are
/// first claimed in the order it pushed them (a consumer that passed over
/// a slot being written checks, after claiming a later one, that it was
/// not published meanwhile, and starts again if it was) — but a value that
/// is *put back* is claimed again after the values claimed while it was
/// out: its consumer died, or its [`pop_with`](ShmQueue::pop_with) closure
/// panicked, while other consumers went on past it. So the order of one
/// producer's values holds as long as no value of it is put back; each
/// value is still returned by exactly one pop. With several consumers,
/// their pops may of course *return* in another order. A dead process
/// delays the others by about 50 ms at most, and only when they would
/// otherwise wait on it.
///
/// A slot is repaired only when its claimant is known to be dead, and
/// only while every process that ever attached to the queue's store shares
/// one pid namespace (see [the module docs](crate::sync#dead-processes)).
/// A process stopped (`SIGSTOP`) with a slot claimed is alive: its slot
/// waits for it.
///
/// A `head` or `tail` word that contradicts the other (see the layout) is
/// [`Error::Corrupted`], checked once a lap and whenever a push finds the
/// queue full or a pop finds it empty.
///
/// # Values
///
/// `T` is copied in and out bit for bit, so it must be [`ShmMovable`] (no
/// lock initialised in place). A value is checked when it is popped, if
/// `T` has invalid bit patterns; invalid bytes are given back as
/// [`Error::Corrupted`] and the slot released. Values still in the queue
/// are never dropped (a store never drops what it holds).
///
/// # Layout
///
/// `#[repr(C, align(64))]`:
///
/// | offset | field   | type                                               |
/// |--------|---------|----------------------------------------------------|
/// | 0      | `tail`  | `AtomicU64`: the next position to push (a hint: may lag by the claim of a producer that died just after claiming) |
/// | 64     | `head`  | `AtomicU64`: the oldest position not yet given back (a hint: may lag); at most `tail + 1`, at least `tail - 2 N` |
/// | 128    | `items` | `AtomicU32`: the shared futex consumers sleep on (bit 0: someone may sleep; bits 1..32: rung when a value is published) |
/// | 132    | `space` | `AtomicU32`: the same, for producers (rung when a slot is given back) |
/// | 192    | `slots` | `N` × `{ state: AtomicU64, value: T }` (each slot aligned to `max(8, align_of::<T>())`) |
///
/// A slot's `state` word:
///
/// | bits   | field                                                     |
/// |--------|-----------------------------------------------------------|
/// | 0..2   | phase: 0 empty, 1 being written, 2 full, 3 being read     |
/// | 2..24  | the claimant's pid (being written or read; else 0)        |
/// | 24..40 | the low 16 bits of the claimant's start time (`0xffff`: unknown; else 0) |
/// | 40..64 | the lap: position / `N`, modulo 2^24                      |
///
/// Position `p` uses lap `p / N` of slot `p % N`, spread over cache lines:
/// with `S` slots a line and `L = N / S` lines (when `S ≥ 2` divides `N`),
/// ring index `i` is slot `i % L * S + i / L`, so that consecutive
/// positions do not share a line. A state that cannot
/// happen (a lap behind by two or more from what the positions say, an
/// owner on an empty or full slot) is [`Error::Corrupted`]. The queue is
/// [`ShmMovable`]: its words hold no address and it is used only through
/// borrows. Build large queues with care: `new` builds the value on the
/// stack before the store copies it in.
#[repr(C, align(64))]
pub struct ShmQueue<T, const N: usize> {
    tail: AtomicU64,
    _p0: [u8; 56],
    head: AtomicU64,
    _p1: [u8; 56],
    items: AtomicU32,
    space: AtomicU32,
    _p2: [u8; 56],
    slots: [Slot<T>; N],
}

// SAFETY: values move between threads through the queue (`T: Send`); no
// `&T` to a value in a slot is ever shared between threads (a value is
// read only by the consumer that claimed its slot).
unsafe impl<T: Send, const N: usize> Sync for ShmQueue<T, N> {}
// SAFETY: the values it holds are `Send`.
unsafe impl<T: Send, const N: usize> Send for ShmQueue<T, N> {}

/// A claimed position: the slot and its lap.
#[derive(Clone, Copy)]
struct Claim {
    pos: u64,
    lap: u64,
    owner: u64,
}

impl<T: ShmMovable, const N: usize> ShmQueue<T, N> {
    // Only an array-repeat initialiser: each use is a fresh value.
    #[allow(clippy::declare_interior_mutable_const)]
    const SLOT: Slot<T> = Slot {
        state: AtomicU64::new(0),
        value: UnsafeCell::new(MaybeUninit::uninit()),
    };
    const CHECK_N: () = assert!(N > 0, "a ShmQueue needs at least one slot");
    const CHECK_T: () = assert!(
        !T::LAYOUT.has_containers(),
        "a ShmQueue's values cannot hold containers (ShmVec, ShmString, ShmMap, RelPtr): \
         the store cannot follow them into the queue's slots; send plain data (an id, a \
         FixedString) instead"
    );

    /// A new, empty queue.
    ///
    /// Its values hold no containers (a compile-time check): the store
    /// could not see what they own while they sit in the queue.
    pub const fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::CHECK_N;
        #[allow(clippy::let_unit_value)]
        let () = Self::CHECK_T;
        ShmQueue {
            tail: AtomicU64::new(0),
            _p0: [0; 56],
            head: AtomicU64::new(0),
            _p1: [0; 56],
            items: AtomicU32::new(0),
            space: AtomicU32::new(0),
            _p2: [0; 56],
            slots: [Self::SLOT; N],
        }
    }

    /// The number of slots, `N`.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// About how many values are in the queue (or being pushed or popped):
    /// a snapshot that may be stale as soon as it is taken.
    pub fn len(&self) -> usize {
        let tail = self.tail.load(Ordering::Acquire);
        let head = self.head.load(Ordering::Acquire);
        (tail.saturating_sub(head) as usize).min(N)
    }

    /// `true` if [`len`](ShmQueue::len) is 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pushes `value`, waiting while the queue is full.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupted`] if the queue's words are not valid (the value is
    /// dropped).
    pub fn push(&self, value: T) -> Result<()> {
        match self.push_until(value, Some(Deadline::NEVER))? {
            Ok(()) => Ok(()),
            Err(_) => Err(Error::corrupted("an untimed push ended without a slot")),
        }
    }

    /// Pushes `value` if a slot is free now: `Ok(Err(value))` gives it back
    /// if the queue is full.
    ///
    /// # Errors
    ///
    /// As for [`push`](ShmQueue::push).
    pub fn try_push(&self, value: T) -> Result<Result<(), T>> {
        self.push_until(value, None)
    }

    /// Pushes `value`, waiting at most `timeout` for a free slot:
    /// `Ok(Err(value))` gives it back if none came.
    ///
    /// # Errors
    ///
    /// As for [`push`](ShmQueue::push).
    pub fn try_push_for(&self, value: T, timeout: Duration) -> Result<Result<(), T>> {
        self.push_until(value, Some(Deadline::after(timeout)))
    }

    /// Pops the oldest value, waiting while the queue is empty.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupted`] if the queue's words are not valid, or the value
    /// is not a valid `T` (its slot is released).
    pub fn pop(&self) -> Result<T> {
        self.pop_until(Some(Deadline::NEVER), |_| ())?
            .map(|(v, ())| v)
            .ok_or_else(|| Error::corrupted("an untimed pop ended without a value"))
    }

    /// Pops the oldest value if there is one now.
    ///
    /// # Errors
    ///
    /// As for [`pop`](ShmQueue::pop).
    pub fn try_pop(&self) -> Result<Option<T>> {
        Ok(self.pop_until(None, |_| ())?.map(|(v, ())| v))
    }

    /// Pops the oldest value, waiting at most `timeout` for one: `Ok(None)`
    /// if none came.
    ///
    /// # Errors
    ///
    /// As for [`pop`](ShmQueue::pop).
    pub fn try_pop_for(&self, timeout: Duration) -> Result<Option<T>> {
        Ok(self
            .pop_until(Some(Deadline::after(timeout)), |_| ())?
            .map(|(v, ())| v))
    }

    /// Pops the oldest value, first running `f` on it *while its slot is
    /// still claimed*: if this process dies before `pop_with` returns — in
    /// `f` or after — the value goes back to the queue for another consumer
    /// (unless the slot had already been given back, the very last step).
    /// So what `f` records (a log entry, a receipt) is made before the value
    /// leaves the queue: a consumer that dies can only have recorded a value
    /// that either it popped or someone else pops again.
    ///
    /// `f` holds one slot while it runs: keep it short (producers that go
    /// round the ring to that slot wait for it). If `f` panics, the value
    /// goes back to the queue — behind the values other consumers claimed
    /// meanwhile (see [the type docs](ShmQueue#dead-producers-and-consumers)
    /// on order).
    ///
    /// # Errors
    ///
    /// As for [`pop`](ShmQueue::pop).
    pub fn pop_with<R>(&self, f: impl FnOnce(&T) -> R) -> Result<(T, R)> {
        self.pop_until(Some(Deadline::NEVER), f)?
            .ok_or_else(|| Error::corrupted("an untimed pop ended without a value"))
    }

    /// [`pop_with`](ShmQueue::pop_with), waiting at most `timeout`:
    /// `Ok(None)` if no value came (and `f` did not run).
    ///
    /// # Errors
    ///
    /// As for [`pop`](ShmQueue::pop).
    pub fn try_pop_with_for<R>(
        &self,
        timeout: Duration,
        f: impl FnOnce(&T) -> R,
    ) -> Result<Option<(T, R)>> {
        self.pop_until(Some(Deadline::after(timeout)), f)
    }

    /// Slots that share a cache line, when consecutive positions are
    /// spread over lines (see [`Self::index`]); 1 when they are not.
    const SPREAD: usize = {
        let per_line = 64 / size_of::<Slot<T>>();
        if per_line >= 2 && N % per_line == 0 && N / per_line >= 2 {
            per_line
        } else {
            1
        }
    };

    /// The slot of position `pos`: `pos % N`, spread so that consecutive
    /// positions use slots in different cache lines (slot `i`'s position
    /// in the ring is `i % L * S + i / L`, with `S` slots a line and
    /// `L = N / S` lines). A producer filling position `p + 1` then does
    /// not take the line away from a consumer reading position `p`.
    fn index(pos: u64) -> usize {
        // `pos % N < N`, and the spread is a permutation of `0..N`.
        let i = (pos % N as u64) as usize;
        if Self::SPREAD == 1 {
            i
        } else {
            let lines = N / Self::SPREAD;
            i % lines * Self::SPREAD + i / lines
        }
    }

    fn slot(&self, pos: u64) -> &Slot<T> {
        &self.slots[Self::index(pos)]
    }

    fn lap_of(pos: u64) -> u64 {
        (pos / N as u64) & LAP_MASK
    }

    fn corrupted(&self, pos: u64, s: u64, what: &str) -> Error {
        Error::corrupted(format!(
            "{}: slot {} (position {pos}) has state {s:#018x}: {what}",
            Self::LAYOUT.type_expr(),
            Self::index(pos)
        ))
    }

    /// Checks the head and tail words against each other: the head is at
    /// most one past the tail (the tail lags only by the claim of a
    /// producer between claiming a slot and moving the tail on, and a
    /// position is given back only after it was claimed), and the tail at
    /// most `2 N` past the head (the head lags only by positions given
    /// back that no one moved it over yet, fewer than `N`, and no position
    /// `N` or more past the oldest one not given back can be claimed). A
    /// head or tail word that breaks either (another process wrote it) is
    /// [`Error::Corrupted`]: otherwise pops would look for values where
    /// none are, and pushes fill a ring no pop empties, forever and
    /// without a word.
    ///
    /// The head is read before and after the tail, each bound against the
    /// read that makes it hold whatever moved in between (both only grow).
    fn check_ends(&self) -> Result<()> {
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        let head_after = self.head.load(Ordering::Acquire);
        let n = N as u64;
        if head > tail.saturating_add(1) {
            return Err(Error::corrupted(format!(
                "{}: the head {head} is ahead of the tail {tail}",
                Self::LAYOUT.type_expr()
            )));
        }
        if tail.saturating_sub(head_after) > n.saturating_mul(2) {
            return Err(Error::corrupted(format!(
                "{}: the tail {tail} is more than twice the capacity ahead of the head \
                 {head_after}",
                Self::LAYOUT.type_expr()
            )));
        }
        if tail.checked_add(n.saturating_mul(2)).is_none() {
            return Err(Error::corrupted(format!(
                "{}: the tail {tail} is within twice the capacity of 2^64",
                Self::LAYOUT.type_expr()
            )));
        }
        Ok(())
    }

    /// `head + N`, the end of a scan from `head`: [`Error::Corrupted`] near
    /// 2^64 (no queue gets there by pushing).
    fn scan_end(&self, head: u64) -> Result<u64> {
        head.checked_add(N as u64).ok_or_else(|| {
            Error::corrupted(format!(
                "{}: the head {head} is within the capacity of 2^64",
                Self::LAYOUT.type_expr()
            ))
        })
    }

    fn push_until(&self, value: T, deadline: Option<Deadline>) -> Result<Result<(), T>> {
        let me = my_owner()?;
        let claim = || self.claim_push(me);
        // One attempt before the waiting machinery: the common case.
        let claim = match (claim()?, deadline) {
            (Some(c), _) => Some(c),
            (None, None) => None,
            (None, Some(deadline)) => {
                wait::wait_until(Bell::new(&self.space), deadline, claim, || {
                    self.repair_for_push()
                })?
            }
        };
        let Some(c) = claim else {
            return Ok(Err(value));
        };
        crate::crash::step();
        let slot = self.slot(c.pos);
        // SAFETY: the slot is claimed by this process (WRITING, with our
        // identity): no other process reads or writes its value until we
        // publish it (a repairer only takes a slot over from a dead
        // claimant, and we are alive), and no reference to it exists.
        unsafe { (*slot.value.get()).write(value) };
        crate::crash::step();
        // SeqCst: ordered before the look at the sleepers flag, as
        // `Bell::ring_if_announced` requires.
        slot.state.store(word(c.lap, FULL, 0), Ordering::SeqCst);
        crate::crash::step();
        Bell::new(&self.items).ring_if_announced();
        Ok(Ok(()))
    }

    /// One attempt to claim the position at the tail for writing.
    fn claim_push(&self, me: u64) -> Result<Option<Claim>> {
        // Each failed round means another producer made progress; a few
        // rounds, then let the caller's wait loop come back.
        for _ in 0..N.saturating_mul(2).max(8) {
            let pos = self.tail.load(Ordering::Acquire);
            let slot = self.slot(pos);
            let s = slot.state.load(Ordering::Acquire);
            let lp = Self::lap_of(pos);
            match lap_diff(lap(s), lp) {
                0 if phase(s) == EMPTY => {
                    if owner(s) != 0 {
                        return Err(self.corrupted(pos, s, "an empty slot with an owner"));
                    }
                    // Once a lap (a few loads, on a line the consumers
                    // write: not on every push), before claiming anything.
                    if pos % N as u64 == 0 {
                        self.check_ends()?;
                    }
                    let claimed = word(lp, WRITING, me);
                    if slot
                        .state
                        .compare_exchange(s, claimed, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                    {
                        crate::crash::step();
                        let _ = self.tail.compare_exchange(
                            pos,
                            pos.wrapping_add(1),
                            Ordering::AcqRel,
                            Ordering::Relaxed,
                        );
                        return Ok(Some(Claim {
                            pos,
                            lap: lp,
                            owner: me,
                        }));
                    }
                }
                // Claimed for this position already, or even given back:
                // the tail lags behind; move it on (seldom: a look at the
                // ends first, so that a damaged tail is not walked on).
                0 | 1 => {
                    self.check_ends()?;
                    let _ = self.tail.compare_exchange(
                        pos,
                        pos.wrapping_add(1),
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    );
                }
                // The slot still holds position `pos - N`: full.
                -1 => {
                    if phase(s) == EMPTY {
                        return Err(self.corrupted(
                            pos,
                            s,
                            "an unclaimed slot a lap behind the tail",
                        ));
                    }
                    self.check_ends()?;
                    return Ok(None);
                }
                _ => {
                    if self.tail.load(Ordering::Acquire) == pos {
                        return Err(self.corrupted(pos, s, "a lap far from the tail's"));
                    }
                }
            }
        }
        // Full, or lost every race: a look at the ends before waiting.
        self.check_ends()?;
        Ok(None)
    }

    /// Run by a producer that waits: the slot at the tail may be held by a
    /// dead claimant of the previous lap.
    fn repair_for_push(&self) -> Result<()> {
        let pos = self.tail.load(Ordering::Acquire);
        let prev = pos.wrapping_sub(N as u64);
        if pos >= N as u64 {
            self.repair(prev)?;
        }
        self.repair_scan()
    }

    fn pop_until<R>(
        &self,
        deadline: Option<Deadline>,
        f: impl FnOnce(&T) -> R,
    ) -> Result<Option<(T, R)>> {
        let me = my_owner()?;
        let claim = || self.claim_pop(me);
        // One attempt before the waiting machinery: the common case.
        let claim = match (claim()?, deadline) {
            (Some(c), _) => Some(c),
            (None, None) => None,
            (None, Some(deadline)) => {
                wait::wait_until(Bell::new(&self.items), deadline, claim, || {
                    self.repair_scan()
                })?
            }
        };
        let Some(c) = claim else {
            return Ok(None);
        };
        crate::crash::step();
        // Puts the value back if `f` panics.
        let mut held = Held {
            queue: self,
            claim: c,
            done: false,
        };
        let slot = self.slot(c.pos);
        let value_ptr = slot.value.get().cast::<T>();
        if T::HAS_INVALID_BIT_PATTERNS {
            // SAFETY: the slot is claimed by us (READING): its bytes were
            // fully written by a producer before it published FULL (our
            // claim's acquire saw that store), and no one writes them while
            // we hold the claim. The pointer is aligned (a field of the
            // slot) and valid for a `T`'s bytes.
            if let Err(e) = unsafe { T::check_bytes(value_ptr) } {
                // Give the slot back without reading the value as a `T`.
                held.done = true;
                self.release(c);
                return Err(Error::corrupted(format!(
                    "{}: the value at position {} is not a valid {}: {e}",
                    Self::LAYOUT.type_expr(),
                    c.pos,
                    T::LAYOUT.type_expr()
                )));
            }
        }
        // SAFETY: as above, and the bytes are a valid `T` (checked, or any
        // bytes are); the reference lives only during `f`, while we hold
        // the claim.
        let r = f(unsafe { &*value_ptr });
        crate::crash::step();
        // SAFETY: as above; the value is moved out exactly once: the slot
        // is given back right after, and its bytes are never read as a `T`
        // again (the next producer overwrites them).
        let value = unsafe { value_ptr.read() };
        held.done = true;
        self.release(c);
        Ok(Some((value, r)))
    }

    /// Gives the slot of a read claim back to producers (the value has
    /// left the queue), then moves the head over what is given back.
    fn release(&self, c: Claim) {
        self.slot(c.pos)
            .state
            .store(word(c.lap + 1, EMPTY, 0), Ordering::SeqCst);
        crate::crash::step();
        self.advance_head();
        Bell::new(&self.space).ring_if_announced();
    }

    /// Moves the head over positions already given back (at most `N`).
    fn advance_head(&self) {
        for _ in 0..N {
            let h = self.head.load(Ordering::Acquire);
            let s = self.slot(h).state.load(Ordering::Acquire);
            if lap_diff(lap(s), Self::lap_of(h)) != 1 {
                return;
            }
            let _ = self.head.compare_exchange(
                h,
                h.wrapping_add(1),
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
    }

    /// One attempt to claim the oldest full slot for reading: scans from
    /// the head, passing over slots being written or read by others.
    ///
    /// Passing over a slot being written must not reorder one producer's
    /// values: between reading slot `p` ("being written") and claiming a
    /// later `q`, this consumer may have been delayed while the producer of
    /// `p` published it and then pushed `q`. So after claiming `q`, the
    /// slots passed over as being written are read again: if one is full
    /// now, the claim of `q` is put back and the scan starts again. (If it
    /// is still being written, its producer is not `q`'s: a producer
    /// publishes a value before it claims the next.)
    fn claim_pop(&self, me: u64) -> Result<Option<Claim>> {
        let claim = self.scan_for_pop(me)?;
        if claim.is_none() {
            // Nothing to pop: a look at the ends before waiting (a head
            // ahead of the tail would otherwise make this for ever).
            self.check_ends()?;
        }
        Ok(claim)
    }

    /// [`Self::claim_pop`]'s scan.
    fn scan_for_pop(&self, me: u64) -> Result<Option<Claim>> {
        let mut rounds = 0usize;
        'scan: loop {
            let head = self.head.load(Ordering::Acquire);
            let end = self.scan_end(head)?;
            // Once a lap, as for a push.
            if head % N as u64 == 0 {
                self.check_ends()?;
            }
            let mut pos = head;
            // The first position passed over as being written.
            let mut passed: Option<u64> = None;
            while pos < end {
                rounds += 1;
                if rounds > 4 * N + 8 {
                    // Lost every race for a while: let the wait loop retry.
                    return Ok(None);
                }
                let slot = self.slot(pos);
                let s = slot.state.load(Ordering::Acquire);
                let lp = Self::lap_of(pos);
                match lap_diff(lap(s), lp) {
                    0 => match phase(s) {
                        FULL => {
                            if owner(s) != 0 {
                                return Err(self.corrupted(pos, s, "a full slot with an owner"));
                            }
                            let claimed = word(lp, READING, me);
                            if slot
                                .state
                                .compare_exchange(s, claimed, Ordering::AcqRel, Ordering::Relaxed)
                                .is_err()
                            {
                                // Lost the race: look at the same position again.
                                continue;
                            }
                            if let Some(first) = passed {
                                if self.published_since(first, pos) {
                                    let _ = slot.state.compare_exchange(
                                        claimed,
                                        s,
                                        Ordering::AcqRel,
                                        Ordering::Relaxed,
                                    );
                                    continue 'scan;
                                }
                            }
                            return Ok(Some(Claim {
                                pos,
                                lap: lp,
                                owner: me,
                            }));
                        }
                        WRITING => {
                            passed.get_or_insert(pos);
                            #[cfg(test)]
                            tests::after_passing_a_slot_being_written(pos);
                        }
                        // Being read by another consumer: pass over it.
                        READING => {}
                        // Not claimed by a producer yet: nothing after it is.
                        _ => {
                            if owner(s) != 0 {
                                return Err(self.corrupted(pos, s, "an empty slot with an owner"));
                            }
                            return Ok(None);
                        }
                    },
                    // Given back already.
                    1 => {
                        if pos == self.head.load(Ordering::Acquire) {
                            let _ = self.head.compare_exchange(
                                pos,
                                pos.wrapping_add(1),
                                Ordering::AcqRel,
                                Ordering::Relaxed,
                            );
                        }
                    }
                    // Still holds position `pos - N`: `pos` is not produced
                    // yet, nor anything after it.
                    -1 => return Ok(None),
                    _ => {
                        if self.head.load(Ordering::Acquire) == head {
                            return Err(self.corrupted(pos, s, "a lap far from the head's"));
                        }
                        // The head moved on while we looked: start again there.
                        return Ok(None);
                    }
                }
                pos += 1;
            }
            return Ok(None);
        }
    }

    /// Whether a position in `from..to` that was being written is full
    /// now (or further on): see [`Self::claim_pop`]. Read after claiming
    /// `to`, whose acquire makes everything its producer published before
    /// it visible here.
    fn published_since(&self, from: u64, to: u64) -> bool {
        (from..to).any(|pos| {
            let s = self.slot(pos).state.load(Ordering::Acquire);
            let d = lap_diff(lap(s), Self::lap_of(pos));
            d > 0 || (d == 0 && matches!(phase(s), FULL | READING))
        })
    }

    /// Repairs the slots between the head and the tail claimed by dead
    /// processes. Run by waiters every 20 ms.
    fn repair_scan(&self) -> Result<()> {
        self.check_ends()?;
        let head = self.head.load(Ordering::Acquire);
        for pos in head..self.scan_end(head)? {
            let s = self.slot(pos).state.load(Ordering::Acquire);
            if lap_diff(lap(s), Self::lap_of(pos)) == 0 && phase(s) == EMPTY {
                break;
            }
            self.repair(pos)?;
        }
        Ok(())
    }

    /// If position `pos`'s slot is claimed by a dead process: skips it (a
    /// producer's) or puts it back (a consumer's), and rings.
    fn repair(&self, pos: u64) -> Result<()> {
        let slot = self.slot(pos);
        let s = slot.state.load(Ordering::Acquire);
        if lap_diff(lap(s), Self::lap_of(pos)) != 0 {
            return Ok(());
        }
        let lp = Self::lap_of(pos);
        let (fixed, bell) = match phase(s) {
            WRITING if claimant_dead(self, s) => (word(lp + 1, EMPTY, 0), &self.space),
            READING if claimant_dead(self, s) => (word(lp, FULL, 0), &self.items),
            _ => return Ok(()),
        };
        if slot
            .state
            .compare_exchange(s, fixed, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
        {
            if phase(s) == WRITING {
                self.advance_head();
            }
            Bell::new(bell).ring();
        }
        Ok(())
    }
}

/// A read claim in progress: if dropped before `done` (a panic in the
/// caller's closure), the value goes back to the queue.
struct Held<'a, T: ShmMovable, const N: usize> {
    queue: &'a ShmQueue<T, N>,
    claim: Claim,
    done: bool,
}

impl<T: ShmMovable, const N: usize> Drop for Held<'_, T, N> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let c = self.claim;
        let _ = self.queue.slot(c.pos).state.compare_exchange(
            word(c.lap, READING, c.owner),
            word(c.lap, FULL, 0),
            Ordering::SeqCst,
            Ordering::Relaxed,
        );
        Bell::new(&self.queue.items).ring();
    }
}

impl<T: ShmMovable, const N: usize> Default for ShmQueue<T, N> {
    fn default() -> Self {
        ShmQueue::new()
    }
}

impl<T: ShmMovable, const N: usize> fmt::Debug for ShmQueue<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmQueue")
            .field("len", &self.len())
            .field("capacity", &N)
            .finish_non_exhaustive()
    }
}

// SAFETY:
// - no absolute addresses: integer words (identities are pid and
//   start-time bits) and `T: ShmSafe` values;
// - `repr(C, align(64))`; LAYOUT records name, size, align and `T`'s
//   layout (the size determines `N`), and the offsets follow;
// - no drop glue: atomics, pad arrays and `MaybeUninit<T>` (values in the
//   queue are never dropped);
// - every bit pattern is a valid value: atomics, pads, and `MaybeUninit`;
//   a value's bytes are checked when it is popped (HAS_INVALID_BIT_PATTERNS
//   is false: the queue itself accepts any bytes), and impossible states
//   are refused with `Error::Corrupted`;
// - mutation through `&Self` goes through the atomics, and a slot's value
//   is written or read only by the process that claimed the slot;
// - not IMMOVABLE: `T: ShmMovable`, and the queue's own words hold nothing
//   initialised in place.
unsafe impl<T: ShmMovable, const N: usize> ShmSafe for ShmQueue<T, N> {
    const LAYOUT: &'static TypeLayout = &TypeLayout {
        name: "ShmQueue",
        size: size_of::<Self>(),
        align: align_of::<Self>(),
        kind: LayoutKind::Opaque {
            params: &[T::LAYOUT],
        },
    };

    /// Visits the offsets of the values in full slots, each under a read
    /// claim taken without waiting (and given back after: the value stays
    /// in the queue). Values being written or read at that moment are not
    /// visited.
    fn trace(&self, visit: &mut dyn FnMut(u64)) {
        let Ok(me) = my_owner() else {
            return;
        };
        for slot in &self.slots {
            let s = slot.state.load(Ordering::Acquire);
            if phase(s) != FULL || owner(s) != 0 {
                continue;
            }
            let claimed = word(lap(s), READING, me);
            if slot
                .state
                .compare_exchange(s, claimed, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            let p = slot.value.get().cast::<T>();
            // SAFETY: claimed by us: the bytes were fully written before
            // FULL was published and no one writes them while we hold the
            // claim; aligned and sized for a `T`.
            if unsafe { T::check_bytes(p) }.is_ok() {
                // SAFETY: as above, and the bytes are a valid `T`.
                unsafe { &*p }.trace(visit);
            }
            let _ = slot
                .state
                .compare_exchange(claimed, s, Ordering::AcqRel, Ordering::Relaxed);
        }
    }
}

// SAFETY: nothing initialised in place (`T: ShmMovable`; the default
// `init_in_place`, not IMMOVABLE).
unsafe impl<T: ShmMovable, const N: usize> ShmMovable for ShmQueue<T, N> {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    const GHOST: u64 = (4_000_000u64) << PID_SHIFT;

    type Hook = Option<Box<dyn FnMut(u64)>>;

    thread_local! {
        /// Run by `claim_pop` right after it passes over a slot being
        /// written (to play a producer that publishes at that moment).
        static AFTER_PASS: core::cell::RefCell<Hook> = const { core::cell::RefCell::new(None) };
    }

    pub(super) fn after_passing_a_slot_being_written(pos: u64) {
        AFTER_PASS.with(|h| {
            if let Some(f) = h.borrow_mut().as_mut() {
                f(pos)
            }
        });
    }

    #[test]
    fn a_consumer_delayed_past_a_slot_being_written_keeps_its_producer_s_order() {
        // Position 0 is being written by a producer that, while the
        // consumer looks at position 1, publishes 0 and pushes 1.
        let q: &'static ShmQueue<u64, 8> = Box::leak(Box::new(ShmQueue::new()));
        let me = my_owner().unwrap();
        q.slots[ShmQueue::<u64, 8>::index(0)]
            .state
            .store(word(0, WRITING, me), Ordering::Relaxed);
        q.tail.store(1, Ordering::Relaxed);
        AFTER_PASS.with(|h| {
            *h.borrow_mut() = Some(Box::new(move |pos| {
                if pos == 0 {
                    let s0 = &q.slots[ShmQueue::<u64, 8>::index(0)];
                    // SAFETY: plays the producer that claimed slot 0.
                    unsafe { (*s0.value.get()).write(100) };
                    s0.state.store(word(0, FULL, 0), Ordering::SeqCst);
                    q.push(101).unwrap();
                }
            }))
        });
        let first = q.pop().unwrap();
        AFTER_PASS.with(|h| *h.borrow_mut() = None);
        assert_eq!((first, q.pop().unwrap()), (100, 101));
    }

    #[test]
    fn layout() {
        type Q = ShmQueue<u64, 4>;
        assert_eq!(Q::LAYOUT.size, 192 + 4 * 16);
        assert_eq!(Q::LAYOUT.align, 64);
        assert_eq!(Q::LAYOUT.type_expr(), "ShmQueue<u64>");
        assert_ne!(Q::FINGERPRINT, <ShmQueue<u64, 8>>::FINGERPRINT);
        assert_ne!(Q::FINGERPRINT, <ShmQueue<i64, 4>>::FINGERPRINT);
        assert_eq!(lap_diff(0, LAP_MASK), 1);
        assert_eq!(lap_diff(LAP_MASK, 0), -1);
        assert_eq!(lap_diff(5, 3), 2);
    }

    #[test]
    fn consecutive_positions_are_spread_over_lines_by_a_permutation() {
        fn check<const N: usize>(spread: usize) {
            assert_eq!(ShmQueue::<u64, N>::SPREAD, spread, "N = {N}");
            let mut seen = vec![false; N];
            for p in 0..N as u64 {
                let i = ShmQueue::<u64, N>::index(p);
                assert!(!seen[i], "N = {N}: slot {i} twice");
                seen[i] = true;
                if spread > 1 && p > 0 {
                    let prev = ShmQueue::<u64, N>::index(p - 1);
                    assert_ne!(i / spread, prev / spread, "N = {N}: {p} shares a line");
                }
            }
            assert_eq!(
                ShmQueue::<u64, N>::index(N as u64 + 5),
                ShmQueue::<u64, N>::index(5)
            );
        }
        check::<1024>(4);
        check::<8>(4);
        check::<4>(1);
        check::<6>(1);
        check::<1>(1);
        assert_eq!(ShmQueue::<[u64; 8], 16>::SPREAD, 1);
    }

    #[test]
    fn values_come_out_in_order_and_a_full_queue_refuses() {
        let q = ShmQueue::<u64, 4>::new();
        for round in 0..3u64 {
            for i in 0..4 {
                q.push(round * 10 + i).unwrap();
            }
            assert_eq!(q.len(), 4);
            assert_eq!(q.try_push(99).unwrap(), Err(99));
            let t = Instant::now();
            assert_eq!(
                q.try_push_for(98, Duration::from_millis(30)).unwrap(),
                Err(98)
            );
            assert!(t.elapsed() >= Duration::from_millis(30));
            for i in 0..4 {
                assert_eq!(q.pop().unwrap(), round * 10 + i);
            }
            assert_eq!(q.try_pop().unwrap(), None);
            assert!(q.is_empty());
        }
        assert_eq!(q.try_pop_for(Duration::from_millis(20)).unwrap(), None);
    }

    #[test]
    fn threads_pass_every_value_exactly_once() {
        let q = ShmQueue::<u64, 8>::new();
        const PER: u64 = 2000;
        let total = std::thread::scope(|s| {
            for p in 0..3u64 {
                let q = &q;
                s.spawn(move || {
                    for i in 0..PER {
                        q.push(p * PER + i).unwrap();
                    }
                });
            }
            let consumers: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        let mut got = Vec::new();
                        while let Some(v) = q.try_pop_for(Duration::from_millis(300)).unwrap() {
                            got.push(v);
                        }
                        got
                    })
                })
                .collect();
            let mut all: Vec<u64> = consumers
                .into_iter()
                .flat_map(|c| c.join().unwrap())
                .collect();
            all.sort_unstable();
            all
        });
        assert_eq!(total, (0..3 * PER).collect::<Vec<_>>());
    }

    #[test]
    fn a_slot_claimed_by_a_dead_producer_is_skipped() {
        let q = ShmQueue::<u64, 4>::new();
        q.push(1).unwrap();
        // A producer claimed position 1 and died.
        q.slots[1]
            .state
            .store(word(0, WRITING, GHOST), Ordering::Relaxed);
        q.tail.store(2, Ordering::Relaxed);
        q.push(3).unwrap();
        assert_eq!(q.pop().unwrap(), 1);
        assert_eq!(q.pop().unwrap(), 3, "consumers pass over the claim");
        let t = Instant::now();
        assert_eq!(q.try_pop_for(Duration::from_millis(200)).unwrap(), None);
        assert!(t.elapsed() >= Duration::from_millis(200));
        // The wait repaired the slot: the head moved over it.
        assert_eq!(q.head.load(Ordering::Relaxed), 3);
        for i in 0..4 {
            q.push(10 + i).unwrap();
        }
        for i in 0..4 {
            assert_eq!(q.pop().unwrap(), 10 + i);
        }
    }

    #[test]
    fn a_value_claimed_by_a_dead_consumer_goes_back() {
        let q = ShmQueue::<u64, 2>::new();
        q.push(7).unwrap();
        q.push(8).unwrap();
        q.slots[0]
            .state
            .store(word(0, READING, GHOST), Ordering::Relaxed);
        assert_eq!(q.pop().unwrap(), 8);
        // The producer waits for slot 0; it repairs it, and 7 is popped.
        std::thread::scope(|s| {
            let p = s.spawn(|| q.try_push_for(9, Duration::from_secs(30)).unwrap());
            assert_eq!(q.try_pop_for(Duration::from_secs(30)).unwrap(), Some(7));
            assert_eq!(p.join().unwrap(), Ok(()));
        });
        assert_eq!(q.pop().unwrap(), 9);
    }

    #[test]
    fn pop_with_puts_the_value_back_if_its_closure_panics() {
        let q = ShmQueue::<u64, 2>::new();
        q.push(5).unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            q.pop_with(|_| panic!("boom")).unwrap();
        }));
        assert!(r.is_err());
        let (v, seen) = q.pop_with(|v| *v * 2).unwrap();
        assert_eq!((v, seen), (5, 10));
    }

    #[test]
    fn impossible_states_are_corruption() {
        let q = ShmQueue::<u64, 2>::new();
        q.slots[0].state.store(word(7, FULL, 0), Ordering::Relaxed);
        assert!(matches!(q.try_pop(), Err(Error::Corrupted { .. })));
        let q = ShmQueue::<u64, 2>::new();
        q.slots[0]
            .state
            .store(word(0, EMPTY, GHOST), Ordering::Relaxed);
        assert!(matches!(q.try_push(1), Err(Error::Corrupted { .. })));
    }

    #[test]
    fn a_head_or_tail_that_contradicts_the_other_is_corruption() {
        // Review 8, finding 7: a head ahead of the tail hid values and
        // wedged the queue without an error.
        for head in [2, 3, 7, u64::MAX - 3, u64::MAX] {
            let q = ShmQueue::<u64, 8>::new();
            q.head.store(head, Ordering::Relaxed);
            assert!(
                matches!(q.try_push(1), Err(Error::Corrupted { .. })),
                "head {head}"
            );
            assert!(
                matches!(q.try_pop(), Err(Error::Corrupted { .. })),
                "head {head}"
            );
        }
        // One past the tail is what a producer that died before moving
        // the tail leaves: not corruption.
        let q = ShmQueue::<u64, 8>::new();
        q.head.store(1, Ordering::Relaxed);
        assert_eq!(q.try_pop().unwrap(), None);
        // A tail too far ahead of the head, or near 2^64.
        for tail in [17, 1000, u64::MAX - 3] {
            let q = ShmQueue::<u64, 8>::new();
            q.tail.store(tail, Ordering::Relaxed);
            assert!(
                matches!(q.try_pop(), Err(Error::Corrupted { .. })),
                "tail {tail}"
            );
            let q = ShmQueue::<u64, 8>::new();
            q.tail.store(tail, Ordering::Relaxed);
            let r = q.try_push_for(1, Duration::from_millis(50));
            assert!(
                matches!(r, Err(Error::Corrupted { .. })),
                "tail {tail}: {r:?}"
            );
        }
        // Many laps of a sound queue never trip the checks.
        let q = ShmQueue::<u64, 2>::new();
        for i in 0..1000 {
            q.push(i).unwrap();
            assert_eq!(q.pop().unwrap(), i);
        }
    }

    #[test]
    fn invalid_values_are_refused_and_their_slot_released() {
        let q = ShmQueue::<bool, 2>::new();
        q.push(true).unwrap();
        // SAFETY: simulates another process writing a byte 5 into the
        // value; no `&bool` is formed.
        unsafe { q.slots[0].value.get().cast::<u8>().write(5) };
        assert!(matches!(q.pop(), Err(Error::Corrupted { .. })));
        q.push(false).unwrap();
        assert!(!q.pop().unwrap());
    }
}
