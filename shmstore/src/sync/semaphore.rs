//! [`ShmSemaphore`]: a counting semaphore, optionally returning the permits
//! of dead holders.

use core::fmt;
use core::mem::{align_of, size_of};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::wait::{self, id64_dead_in, my_id64, Deadline, CHECK_EVERY};
use crate::layout::{LayoutKind, ShmMovable, ShmSafe, TypeLayout};
use crate::sys::futex;
use crate::{Error, Result};

/// Count word bit: someone may sleep on the word.
const SLEEPERS: u32 = 1 << 31;
/// Count word bits: the permits available.
const COUNT: u32 = SLEEPERS - 1;

/// The most permits a semaphore holds: 2^31 - 1.
pub const MAX_PERMITS: u32 = COUNT;

/// `mode`: permits are not owned (anyone may release).
const PLAIN: u32 = 0;
/// `mode`: permits are owned by the process that acquired them.
const OWNED: u32 = 1;

/// Holder slots of an owned semaphore: how many processes can hold its
/// permits at once.
pub const MAX_HOLDERS: usize = 32;

/// One process's permits of an owned semaphore.
#[repr(C)]
struct Holder {
    /// The holder's identity (pid and low start-time bits), 0 if never
    /// used; meaningful while `held > 0`.
    owner: AtomicU64,
    /// Permits it holds.
    held: AtomicU32,
    _pad: u32,
}

/// The redo record of an owned semaphore's bookkeeping: the values the
/// operation in progress writes, so that whoever finds its process dead
/// can finish it.
#[repr(C)]
struct Redo {
    /// 1 while the record describes an unfinished operation.
    valid: AtomicU32,
    /// The holder slot it writes.
    slot: AtomicU32,
    /// The slot's new owner.
    owner: AtomicU64,
    /// The slot's new permit count.
    held: AtomicU32,
    /// The new number of available permits.
    count: AtomicU32,
}

/// A counting semaphore shared by every process that maps it.
///
/// [`acquire`](ShmSemaphore::acquire) takes a permit, waiting until one is
/// available; [`release`](ShmSemaphore::release) gives one. Waiting spins
/// briefly, then sleeps on a shared futex in bounded slices.
///
/// ```
/// use std::time::Duration;
/// use shmstore::{ShmSemaphore, Store};
///
/// # fn main() -> shmstore::Result<()> {
/// # let name = format!("doc-sem-{}", std::process::id());
/// let store = Store::open_or_create(&name, 1 << 20)?;
/// // At most 4 processes in the section at once, and a process that dies
/// // inside gives its permit back.
/// let slots = store.get_or_insert_with("slots", || ShmSemaphore::with_owners(4))?;
/// if slots.try_acquire_for(Duration::from_secs(1))? {
///     // ... the section ...
///     slots.release()?;
/// }
/// # Store::unlink(&name)?;
/// # Ok(())
/// # }
/// ```
///
/// # Two modes
///
/// - [`new`](ShmSemaphore::new): permits are anonymous, as with a POSIX
///   semaphore: any process may `release`, including one that never
///   acquired (a producer signalling a consumer). A process that dies
///   holding permits keeps them: nothing records who had them.
/// - [`with_owners`](ShmSemaphore::with_owners): each permit belongs to the
///   process that acquired it, recorded (pid + start time) in one of
///   [`MAX_HOLDERS`] holder slots, and only a holder may release. When a
///   process holding permits dies, a waiter finds it dead (it checks every
///   20 ms while it waits) and returns its permits: the semaphore is back
///   to its full count within about 50 ms of the death. Acquiring and
///   releasing cost more (a short bookkeeping lock and a redo record, see
///   below), and at most `MAX_HOLDERS` processes hold permits at once (a
///   further one waits, like for a permit).
///
/// # Dead processes
///
/// A **waiter killed** at any instruction leaves at most the sleeper flag
/// (the next release clears it if it wakes no one). A **releaser killed**
/// after adding its permit but before waking leaves sleepers that take the
/// permit when their slice (25 ms) ends. In owned mode the count and a
/// holder's slot change together: the process doing it takes a small lock
/// (its identity in a word), writes what it is about to write into a redo
/// record, marks the record valid, writes, and clears the record. A process
/// killed at any of those instructions leaves either nothing done, or a
/// valid record that the next process to take the lock (after finding the
/// holder dead, within 20 ms of trying) writes again — the same values, so
/// writing them twice is harmless. So `available + Σ held` is always the
/// permits the semaphore was made with, whatever was killed where.
///
/// A process stopped (`SIGSTOP`) inside the bookkeeping lock is alive: the
/// others wait for it — [`try_acquire_for`](ShmSemaphore::try_acquire_for)
/// and [`try_release_for`](ShmSemaphore::try_release_for) as long as you
/// say, [`release`](ShmSemaphore::release) at most [`RELEASE_PATIENCE`]
/// (then [`Error::Busy`], the permit still held), `acquire` as long as it
/// takes.
///
/// Only a process known to be dead is repaired, and only while every
/// process that ever attached to the semaphore's store shares one pid
/// namespace (see [the module docs](crate::sync#dead-processes)).
///
/// # Layout
///
/// `#[repr(C, align(64))]`, 576 bytes:
///
/// | offset | field     | type                                          |
/// |--------|-----------|-----------------------------------------------|
/// | 0      | `count`   | `AtomicU32`: the shared futex (bits below)    |
/// | 4      | `mode`    | `AtomicU32`: 0 plain, 1 owned                 |
/// | 8      | `lock`    | `AtomicU64`: owned mode's bookkeeping lock: 0 free, else the holder's pid (low 32 bits) and start time (low 32 bits, high half) |
/// | 16     | `redo`    | 24 bytes: `valid: u32`, `slot: u32`, `owner: u64`, `held: u32`, `count: u32` |
/// | 40     | —         | padding                                       |
/// | 64     | `holders` | [`MAX_HOLDERS`] × 16 bytes: `owner: u64` (as `lock`), `held: u32`, padding |
///
/// `count`:
///
/// | bits  | meaning                                                  |
/// |-------|----------------------------------------------------------|
/// | 0..31 | permits available (at most [`MAX_PERMITS`])               |
/// | 31    | someone may sleep on the word (set by a waiter; cleared when a release wakes no one) |
///
/// A `mode` other than 0 or 1, or a redo record naming a slot past the end,
/// is [`Error::Corrupted`]. The semaphore is [`ShmMovable`]: its words hold
/// no address, and it is only used through a borrow.
#[repr(C, align(64))]
pub struct ShmSemaphore {
    count: AtomicU32,
    mode: AtomicU32,
    lock: AtomicU64,
    redo: Redo,
    _pad: [u8; 24],
    holders: [Holder; MAX_HOLDERS],
}

// SAFETY-free assertion of the documented layout.
const _: () = assert!(size_of::<ShmSemaphore>() == 64 + 16 * MAX_HOLDERS);
const _: () = assert!(core::mem::offset_of!(ShmSemaphore, holders) == 64);

impl ShmSemaphore {
    const fn build(permits: u32, mode: u32) -> ShmSemaphore {
        // Only an array-repeat initialiser: each use is a fresh value.
        #[allow(clippy::declare_interior_mutable_const)]
        const HOLDER: Holder = Holder {
            owner: AtomicU64::new(0),
            held: AtomicU32::new(0),
            _pad: 0,
        };
        let permits = if permits > MAX_PERMITS {
            MAX_PERMITS
        } else {
            permits
        };
        ShmSemaphore {
            count: AtomicU32::new(permits),
            mode: AtomicU32::new(mode),
            lock: AtomicU64::new(0),
            redo: Redo {
                valid: AtomicU32::new(0),
                slot: AtomicU32::new(0),
                owner: AtomicU64::new(0),
                held: AtomicU32::new(0),
                count: AtomicU32::new(0),
            },
            _pad: [0; 24],
            holders: [HOLDER; MAX_HOLDERS],
        }
    }

    /// A semaphore with `permits` anonymous permits (at most
    /// [`MAX_PERMITS`]; more is taken as that many): any process may
    /// release, and a dead process's permits are not returned.
    pub const fn new(permits: u32) -> ShmSemaphore {
        ShmSemaphore::build(permits, PLAIN)
    }

    /// A semaphore with `permits` permits (at most [`MAX_PERMITS`]), each
    /// owned by the process that acquires it: only a holder may release,
    /// and the permits of a holder that dies are returned (see
    /// [the type docs](ShmSemaphore#two-modes)).
    pub const fn with_owners(permits: u32) -> ShmSemaphore {
        ShmSemaphore::build(permits, OWNED)
    }

    /// Permits available now (a snapshot).
    pub fn available(&self) -> u32 {
        self.count.load(Ordering::Acquire) & COUNT
    }

    /// Permits this process holds (owned mode; 0 in plain mode).
    pub fn held(&self) -> u32 {
        let me = my_id64();
        self.holders
            .iter()
            .filter(|h| h.owner.load(Ordering::Acquire) == me)
            .map(|h| h.held.load(Ordering::Acquire))
            .fold(0u32, u32::saturating_add)
    }

    /// Takes a permit, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupted`] if the semaphore's words are not valid.
    pub fn acquire(&self) -> Result<()> {
        self.acquire_until(Deadline::NEVER).map(|_| ())
    }

    /// Takes a permit if one is available now: `Ok(false)` if none is.
    ///
    /// # Errors
    ///
    /// As for [`acquire`](ShmSemaphore::acquire).
    pub fn try_acquire(&self) -> Result<bool> {
        match self.owned()? {
            false => Ok(self.take_plain()),
            true => self.take_owned(Deadline::after(Duration::ZERO)),
        }
    }

    /// Takes a permit, waiting at most `timeout`: `Ok(false)` if none
    /// became available in time.
    ///
    /// # Errors
    ///
    /// As for [`acquire`](ShmSemaphore::acquire).
    pub fn try_acquire_for(&self, timeout: Duration) -> Result<bool> {
        self.acquire_until(Deadline::after(timeout))
    }

    /// Gives a permit back and wakes a waiter. In owned mode, only a
    /// process holding a permit may release one.
    ///
    /// A plain semaphore's release never waits. An owned one's takes the
    /// bookkeeping lock (see [the type docs](ShmSemaphore#dead-processes)),
    /// which its holders keep for a few instructions; it waits for it at
    /// most [`RELEASE_PATIENCE`], then gives up with [`Error::Busy`],
    /// having changed nothing (the permit is still this process's): the
    /// lock is then held by a process that is stopped (`SIGSTOP`), or its
    /// word was overwritten. [`try_release_for`](ShmSemaphore::try_release_for)
    /// waits as long as you choose instead.
    ///
    /// # Errors
    ///
    /// - [`Error::InvalidArgument`] if the semaphore already holds
    ///   [`MAX_PERMITS`], or (owned mode) this process holds no permit;
    /// - [`Error::Busy`] (owned mode) if the bookkeeping lock stayed held
    ///   by a process not known to be dead for [`RELEASE_PATIENCE`];
    /// - [`Error::Corrupted`] if the semaphore's words are not valid.
    pub fn release(&self) -> Result<()> {
        if self.try_release_for(RELEASE_PATIENCE)? {
            return Ok(());
        }
        Err(Error::Busy {
            what: format!(
                "releasing a permit of a ShmSemaphore: its bookkeeping lock stayed held for \
                 {RELEASE_PATIENCE:?} by {} (stopped, or the lock word was overwritten); the \
                 permit is still this process's",
                describe_id(self.lock.load(Ordering::Relaxed))
            ),
        })
    }

    /// [`release`](ShmSemaphore::release), waiting at most `timeout` for
    /// an owned semaphore's bookkeeping lock: `Ok(false)`, having changed
    /// nothing, if it was still held then by a process not known to be
    /// dead. A plain semaphore never waits.
    ///
    /// # Errors
    ///
    /// As for [`release`](ShmSemaphore::release), but never
    /// [`Error::Busy`].
    pub fn try_release_for(&self, timeout: Duration) -> Result<bool> {
        let before = if self.owned()? {
            match self.release_owned(Deadline::after(timeout))? {
                Some(before) => before,
                None => return Ok(false),
            }
        } else {
            let mut cur = self.count.load(Ordering::Relaxed);
            loop {
                if cur & COUNT == MAX_PERMITS {
                    return Err(too_many());
                }
                match self.count.compare_exchange_weak(
                    cur,
                    cur + 1,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break cur,
                    Err(now) => cur = now,
                }
            }
        };
        crate::crash::step();
        if before & SLEEPERS != 0 {
            self.wake_one(before + 1);
        }
        Ok(true)
    }

    /// Wakes a sleeper after a release made the word `now`; clears a stale
    /// sleeper flag (see `ShmCondvar::notify_one` for the reasoning).
    fn wake_one(&self, now: u32) {
        if futex::wake(&self.count, 1).unwrap_or(1) != 0 {
            return;
        }
        if self
            .count
            .compare_exchange(now, now & !SLEEPERS, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let _ = futex::wake(&self.count, 1);
        }
    }

    fn owned(&self) -> Result<bool> {
        match self.mode.load(Ordering::Relaxed) {
            PLAIN => Ok(false),
            OWNED => Ok(true),
            other => Err(Error::corrupted(format!(
                "ShmSemaphore: mode word {other:#x} is neither plain (0) nor owned (1)"
            ))),
        }
    }

    /// Takes a permit in plain mode if one is available.
    fn take_plain(&self) -> bool {
        let mut cur = self.count.load(Ordering::Relaxed);
        while cur & COUNT != 0 {
            match self.count.compare_exchange_weak(
                cur,
                cur - 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
        false
    }

    fn acquire_until(&self, deadline: Deadline) -> Result<bool> {
        let owned = self.owned()?;
        let take = || -> Result<Option<()>> {
            let got = if owned {
                // Only worth the bookkeeping lock when a permit shows.
                self.available() != 0 && self.take_owned(deadline)?
            } else {
                self.take_plain()
            };
            Ok(got.then_some(()))
        };
        // One attempt before the waiting machinery: the common case.
        if take()?.is_some() {
            return Ok(true);
        }
        let got = wait::wait_until(
            wait::Bell::with_flag(&self.count, SLEEPERS),
            deadline,
            take,
            // In owned mode, a holder may have died with the permits we
            // wait for.
            || if owned { self.reap() } else { Ok(()) },
        );
        got.map(|g| g.is_some())
    }

    /// Takes the bookkeeping lock of an owned semaphore, waiting until the
    /// deadline (the lock is held only for a few instructions; a holder
    /// found dead is replaced, and its unfinished operation redone).
    fn book(&self, deadline: Deadline) -> Result<Option<Book<'_>>> {
        let me = my_id64();
        let mut last_check = Instant::now();
        let mut round = 0u32;
        loop {
            // AcqRel: taking the lock publishes our identity with a
            // release (a process judging us reads it with acquire).
            match self
                .lock
                .compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(holder) => {
                    if last_check.elapsed() >= CHECK_EVERY {
                        last_check = Instant::now();
                        if id64_dead_in(self, holder)
                            && self
                                .lock
                                .compare_exchange(holder, me, Ordering::AcqRel, Ordering::Relaxed)
                                .is_ok()
                        {
                            break;
                        }
                    }
                    if deadline.expired() {
                        return Ok(None);
                    }
                    round = round.saturating_add(1);
                    if round < 64 {
                        core::hint::spin_loop();
                    } else if round < 128 {
                        std::thread::yield_now();
                    } else {
                        std::thread::sleep(Duration::from_micros(100));
                    }
                }
            }
        }
        let book = Book { sem: self };
        crate::crash::step();
        book.redo()?;
        Ok(Some(book))
    }

    /// Owned mode: takes a permit for this process if one is available and
    /// a holder slot is free (or ours).
    fn take_owned(&self, deadline: Deadline) -> Result<bool> {
        let Some(book) = self.book(deadline)? else {
            return Ok(false);
        };
        let me = my_id64();
        let count = self.available();
        if count == 0 {
            return Ok(false);
        }
        let slot = self
            .holders
            .iter()
            .position(|h| {
                h.owner.load(Ordering::Relaxed) == me && h.held.load(Ordering::Relaxed) > 0
            })
            .or_else(|| {
                self.holders
                    .iter()
                    .position(|h| h.held.load(Ordering::Relaxed) == 0)
            });
        let Some(slot) = slot else {
            return Ok(false);
        };
        let held = self.holders[slot].held.load(Ordering::Relaxed);
        let Some(held) = held.checked_add(1) else {
            return Err(Error::corrupted(
                "ShmSemaphore: a holder slot counts 2^32 permits",
            ));
        };
        book.write(slot, me, held, count - 1);
        Ok(true)
    }

    /// Owned mode: gives back one of this process's permits; returns the
    /// count word before (for the wake-up), or `None` if the bookkeeping
    /// lock was not free before `deadline`.
    fn release_owned(&self, deadline: Deadline) -> Result<Option<u32>> {
        let Some(book) = self.book(deadline)? else {
            return Ok(None);
        };
        let me = my_id64();
        let slot = self.holders.iter().position(|h| {
            h.owner.load(Ordering::Relaxed) == me && h.held.load(Ordering::Relaxed) > 0
        });
        let Some(slot) = slot else {
            return Err(Error::InvalidArgument {
                reason: "this process holds no permit of this semaphore (permits of a \
                         semaphore made with `with_owners` are released by their holder)"
                    .to_string(),
            });
        };
        let before = self.count.load(Ordering::Acquire);
        let count = before & COUNT;
        if count == MAX_PERMITS {
            return Err(too_many());
        }
        let held = self.holders[slot].held.load(Ordering::Relaxed);
        book.write(slot, me, held - 1, count + 1);
        Ok(Some(before))
    }

    /// Owned mode: returns the permits of holders that are dead. Called by
    /// waiters every [`CHECK_EVERY`].
    fn reap(&self) -> Result<()> {
        let dead: Vec<usize> = (0..MAX_HOLDERS)
            .filter(|&i| {
                let h = &self.holders[i];
                h.held.load(Ordering::Acquire) > 0
                    && id64_dead_in(self, h.owner.load(Ordering::Acquire))
            })
            .collect();
        if dead.is_empty() {
            return Ok(());
        }
        let Some(book) = self.book(Deadline::after(CHECK_EVERY))? else {
            return Ok(());
        };
        let mut returned = false;
        for slot in dead {
            let h = &self.holders[slot];
            let (owner, held) = (
                h.owner.load(Ordering::Relaxed),
                h.held.load(Ordering::Relaxed),
            );
            // Checked again under the lock: the slot may have changed hands.
            if held == 0 || !id64_dead_in(self, owner) {
                continue;
            }
            let count = self.available();
            let Some(count) = count.checked_add(held).filter(|&c| c <= MAX_PERMITS) else {
                return Err(Error::corrupted(format!(
                    "ShmSemaphore: {count} permits available and {held} held by a dead \
                     process add up to more than {MAX_PERMITS}"
                )));
            };
            book.write(slot, 0, 0, count);
            returned = true;
        }
        drop(book);
        if returned {
            let now = self.count.load(Ordering::Acquire);
            if now & SLEEPERS != 0 {
                let _ = futex::wake(&self.count, u32::MAX);
            }
        }
        Ok(())
    }
}

/// How long [`ShmSemaphore::release`] waits for an owned semaphore's
/// bookkeeping lock (held for a few instructions by a process that runs)
/// before it gives up with [`Error::Busy`].
pub const RELEASE_PATIENCE: Duration = Duration::from_secs(10);

/// A bookkeeping lock word's holder, in words.
fn describe_id(id: u64) -> String {
    match (id as u32, (id >> 32) as u32) {
        (0, _) => "no one now".to_string(),
        (pid, u32::MAX) => format!("pid {pid} (start time unknown)"),
        (pid, start) => format!("pid {pid} (start time {start:#x})"),
    }
}

fn too_many() -> Error {
    Error::InvalidArgument {
        reason: format!("the semaphore already holds the most permits it can ({MAX_PERMITS})"),
    }
}

/// Holds the bookkeeping lock of an owned semaphore.
struct Book<'a> {
    sem: &'a ShmSemaphore,
}

impl Book<'_> {
    /// Finishes an operation whose process died after marking its redo
    /// record valid: writes the recorded values again.
    fn redo(&self) -> Result<()> {
        let r = &self.sem.redo;
        if r.valid.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        let slot = r.slot.load(Ordering::Relaxed) as usize;
        if slot >= MAX_HOLDERS {
            return Err(Error::corrupted(format!(
                "ShmSemaphore: the redo record names holder slot {slot} of {MAX_HOLDERS}"
            )));
        }
        let count = r.count.load(Ordering::Relaxed);
        if count > MAX_PERMITS {
            return Err(Error::corrupted(format!(
                "ShmSemaphore: the redo record sets {count} permits, more than {MAX_PERMITS}"
            )));
        }
        self.apply(
            slot,
            r.owner.load(Ordering::Relaxed),
            r.held.load(Ordering::Relaxed),
            count,
        );
        r.valid.store(0, Ordering::Release);
        Ok(())
    }

    /// Sets holder `slot` to (`owner`, `held`) and the available permits to
    /// `count`, through the redo record (so that a death half-way is
    /// finished by the next process).
    fn write(&self, slot: usize, owner: u64, held: u32, count: u32) {
        let r = &self.sem.redo;
        r.slot.store(slot as u32, Ordering::Relaxed);
        r.owner.store(owner, Ordering::Relaxed);
        r.held.store(held, Ordering::Relaxed);
        r.count.store(count, Ordering::Relaxed);
        crate::crash::step();
        r.valid.store(1, Ordering::Release);
        crate::crash::step();
        self.apply(slot, owner, held, count);
        crate::crash::step();
        r.valid.store(0, Ordering::Release);
        crate::crash::step();
    }

    fn apply(&self, slot: usize, owner: u64, held: u32, count: u32) {
        let h = &self.sem.holders[slot];
        h.owner.store(owner, Ordering::Relaxed);
        crate::crash::step();
        h.held.store(held, Ordering::Release);
        crate::crash::step();
        // Keep the sleeper flag, which waiters set without the lock.
        let _ = self
            .sem
            .count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                Some(v & SLEEPERS | count)
            });
    }
}

impl Drop for Book<'_> {
    fn drop(&mut self) {
        self.sem.lock.store(0, Ordering::Release);
    }
}

impl fmt::Debug for ShmSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.mode.load(Ordering::Relaxed) {
            PLAIN => "plain",
            OWNED => "owned",
            _ => "corrupted",
        };
        f.debug_struct("ShmSemaphore")
            .field("available", &self.available())
            .field("mode", &mode)
            .finish_non_exhaustive()
    }
}

// SAFETY:
// - no absolute addresses: integer words only (identities are pid and
//   start-time bits);
// - `repr(C, align(64))`; LAYOUT records name, size and align (the
//   offsets follow, see the type docs, asserted above);
// - no drop glue;
// - every bit pattern is a valid value: atomics and a zeroed pad array;
//   meaningless words (a mode other than 0/1, a slot past the end) are
//   refused with `Error::Corrupted` when used;
// - mutation through `&Self` is atomic operations only;
// - not IMMOVABLE: nothing initialised in place, nothing outside a borrow
//   refers to its address.
unsafe impl ShmSafe for ShmSemaphore {
    const LAYOUT: &'static TypeLayout = &TypeLayout {
        name: "ShmSemaphore",
        size: size_of::<Self>(),
        align: align_of::<Self>(),
        kind: LayoutKind::Opaque { params: &[] },
    };
}

// SAFETY: nothing initialised in place; see the type docs.
unsafe impl ShmMovable for ShmSemaphore {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        assert_eq!(ShmSemaphore::LAYOUT.size, 576);
        assert_eq!(ShmSemaphore::LAYOUT.align, 64);
    }

    #[test]
    fn permits_are_counted_and_waits_time_out() {
        let s = ShmSemaphore::new(2);
        assert!(s.try_acquire().unwrap());
        assert!(s.try_acquire().unwrap());
        assert!(!s.try_acquire().unwrap());
        let t = Instant::now();
        assert!(!s.try_acquire_for(Duration::from_millis(30)).unwrap());
        assert!(t.elapsed() >= Duration::from_millis(30));
        s.release().unwrap();
        assert_eq!(s.available(), 1);
        s.acquire().unwrap();
        assert_eq!(s.available(), 0);
        assert_eq!(ShmSemaphore::new(u32::MAX).available(), MAX_PERMITS);
        assert!(matches!(
            ShmSemaphore::new(MAX_PERMITS).release(),
            Err(Error::InvalidArgument { .. })
        ));
    }

    #[test]
    fn a_sleeping_acquirer_is_woken_by_a_release() {
        let s = ShmSemaphore::new(0);
        std::thread::scope(|sc| {
            let w = sc.spawn(|| s.try_acquire_for(Duration::from_secs(30)).unwrap());
            std::thread::sleep(Duration::from_millis(20));
            s.release().unwrap();
            assert!(w.join().unwrap());
        });
        assert_eq!(s.count.load(Ordering::Relaxed) & COUNT, 0);
    }

    #[test]
    fn owned_permits_are_released_only_by_their_holder() {
        let s = ShmSemaphore::with_owners(2);
        assert!(matches!(s.release(), Err(Error::InvalidArgument { .. })));
        s.acquire().unwrap();
        s.acquire().unwrap();
        assert_eq!(s.held(), 2);
        assert!(!s.try_acquire().unwrap());
        s.release().unwrap();
        assert_eq!((s.available(), s.held()), (1, 1));
        s.release().unwrap();
        assert_eq!((s.available(), s.held()), (2, 0));
        assert!(matches!(s.release(), Err(Error::InvalidArgument { .. })));
    }

    #[test]
    fn permits_of_a_dead_holder_come_back() {
        let s = ShmSemaphore::with_owners(3);
        // A holder that cannot exist: pid i32::MAX.
        let ghost = i32::MAX as u64 | (7u64 << 32);
        s.holders[5].owner.store(ghost, Ordering::Relaxed);
        s.holders[5].held.store(2, Ordering::Relaxed);
        s.count.store(1, Ordering::Relaxed);
        assert!(s.try_acquire().unwrap());
        let t = Instant::now();
        assert!(s.try_acquire_for(Duration::from_secs(30)).unwrap());
        assert!(t.elapsed() < Duration::from_secs(5));
        assert_eq!(s.available(), 1);
        assert_eq!(s.held(), 2);
    }

    #[test]
    fn a_valid_redo_record_is_finished_by_the_next_locker() {
        let s = ShmSemaphore::with_owners(3);
        let ghost = i32::MAX as u64;
        // A process died holding the lock after marking "slot 2 gets one
        // permit, 2 left" valid, having written only the slot.
        s.lock.store(ghost, Ordering::Relaxed);
        s.redo.slot.store(2, Ordering::Relaxed);
        s.redo.owner.store(ghost, Ordering::Relaxed);
        s.redo.held.store(1, Ordering::Relaxed);
        s.redo.count.store(2, Ordering::Relaxed);
        s.redo.valid.store(1, Ordering::Relaxed);
        s.holders[2].owner.store(ghost, Ordering::Relaxed);
        assert!(s.try_acquire_for(Duration::from_secs(30)).unwrap());
        // Redone (2 left, slot 2 holds 1), then ours taken; the ghost's
        // permit comes back at the next reap.
        assert_eq!(
            s.available() + s.held() + s.holders[2].held.load(Ordering::Relaxed),
            3
        );
        s.reap().unwrap();
        assert_eq!(s.available() + s.held(), 3);
    }

    #[test]
    fn a_corrupted_mode_is_an_error() {
        let s = ShmSemaphore::new(1);
        s.mode.store(9, Ordering::Relaxed);
        assert!(matches!(s.acquire(), Err(Error::Corrupted { .. })));
        assert!(matches!(s.release(), Err(Error::Corrupted { .. })));
    }
}
