//! [`ShmRwLock<T>`]: a robust, process-shared readers-writer lock around a
//! `T`, on a futex of its own.

use core::cell::UnsafeCell;
use core::fmt;
use core::marker::PhantomData;
use core::mem::{align_of, offset_of, size_of};
use core::ops::{Deref, DerefMut};
use core::ptr;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use super::local::{self, Holding};
use super::mutex::Flag;
use super::wait::{self, dead, id64_is_dead, my_id64, Bell, Deadline};
use crate::layout::{InvalidBitPattern, LayoutKind, ShmMovable, ShmSafe, TypeLayout};
use crate::sys::proc::{self, Me, StartTime};
use crate::{Error, Result};

/// Reader slots: how many processes can hold read locks at once (a further
/// one waits until a slot is free, as for a writer).
pub const MAX_READER_PROCESSES: usize = 32;

/// `state` bit: a writer died holding the lock, and no one has marked the
/// data consistent since.
const INCONSISTENT: u32 = 1;
/// `state` bit: the holder of the writer word has exclusive access (all
/// readers drained) and may be changing the data.
const WRITING: u32 = 2;

/// The read locks one process holds.
#[repr(C)]
struct ReaderSlot {
    /// The process's pid (high half) and how many read locks it holds (low
    /// half). A slot with count 0 is free to be taken over.
    word: AtomicU64,
    /// The low 32 bits of the process's start time (`u32::MAX`: unknown);
    /// written before the count first becomes non-zero.
    start: AtomicU32,
    _pad: u32,
}

impl ReaderSlot {
    // Only an array-repeat initialiser: each use is a fresh value.
    #[allow(clippy::declare_interior_mutable_const)]
    const FREE: ReaderSlot = ReaderSlot {
        word: AtomicU64::new(0),
        start: AtomicU32::new(0),
        _pad: 0,
    };
}

fn pid_of(word: u64) -> u32 {
    (word >> 32) as u32
}

fn count_of(word: u64) -> u32 {
    word as u32
}

/// A readers-writer lock around a `T`, shared by every process that maps
/// the store it lives in: many readers, or one writer.
///
/// ```
/// use shmstore::{ShmRwLock, Store};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let name = format!("doc-rwlock-{}", std::process::id());
/// let store = Store::open_or_create(&name, 1 << 20)?;
/// let table = store.get_or_insert_with("table", || ShmRwLock::new([0u64; 16]))?;
/// table.write()?[3] = 42; // one writer, any process
/// let a = table.read()?; // many readers at once
/// let b = table.read()?;
/// assert_eq!(a[3] + b[3], 84);
/// # drop((a, b));
/// # Store::unlink(&name)?;
/// # Ok(())
/// # }
/// ```
///
/// Waiting spins briefly, then sleeps on a shared futex in slices of at
/// most 25 ms. Writers are preferred: once a writer has claimed the lock,
/// new readers wait, so a stream of readers cannot starve it; a thread that
/// already holds a read lock may read again even then.
///
/// # A dead writer
///
/// The writer is recorded (pid + start time) in the lock. A process killed
/// while writing is found dead by the next process that waits for the lock
/// (it checks every 20 ms while it waits), which then reports it exactly as
/// [`ShmMutex`](crate::ShmMutex) does: [`read`](ShmRwLock::read) and
/// [`write`](ShmRwLock::write) refuse with
/// [`Error::OwnerDied`] (naming the lock) until a holder from
/// [`write_recover`](ShmRwLock::write_recover) repairs the data and calls
/// [`ShmRwLockWriteGuard::mark_consistent`]; the `*_recover` methods return
/// the guard with [`owner_died`](ShmRwLockWriteGuard::owner_died) set. A
/// writer killed before it had exclusive access (while readers drained)
/// changed nothing, and is not reported.
///
/// # A dead reader
///
/// Each process that reads counts its read locks in a reader slot of its
/// own, which records its pid and start time. A writer waiting for readers
/// checks every 20 ms whether the processes of the slots still counting are
/// alive, and empties the slots of dead ones: a reader killed at any
/// instruction holds writers up for about 50 ms at most. At most
/// [`MAX_READER_PROCESSES`] processes hold read locks at once.
///
/// Robustness is per process: a *thread* that exits holding a guard of this
/// lock (one passed to `mem::forget`) keeps holding it for as long as its
/// process lives.
///
/// # Invalid values
///
/// As for `ShmMutex`: when `T` has invalid bit patterns, every acquisition
/// checks the data's bytes with the lock held, and invalid bytes are
/// [`Error::Corrupted`]; [`reset`](ShmRwLock::reset) overwrites them.
///
/// # Moving and overwriting
///
/// Unlike `ShmMutex`, the lock itself is movable: it is a futex and integer
/// words, used only through borrows, with no list of the kernel's or the C
/// library's pointing at it; a moved lock carries its state along (a lock
/// that is held cannot be moved: its guard borrows it). So
/// `ShmRwLock<T>` is [`ShmMovable`] when `T` is, and a write guard gives
/// `&mut T` for a movable `T`.
///
/// # Layout
///
/// `#[repr(C, align(64))]`:
///
/// | offset | field     | type                                            |
/// |--------|-----------|-------------------------------------------------|
/// | 0      | `writer`  | `AtomicU64`: 0, or the writer's pid (low 32 bits) and start time (low 32 bits of it, high half; `u32::MAX` unknown) |
/// | 8      | `state`   | `AtomicU32`, bits below                         |
/// | 12     | `seq`     | `AtomicU32`: the shared futex waiters sleep on (bit 0: someone may sleep; bits 1..32: changes when the lock is released) |
/// | 16     | —         | padding to 64                                   |
/// | 64     | `readers` | [`MAX_READER_PROCESSES`] × 16 bytes: `word: AtomicU64` (pid in the high half, read locks held in the low half), `start: AtomicU32` (low 32 bits of the start time), padding |
/// | 576    | `data`    | `T` (at the next multiple of `align_of::<T>()`) |
///
/// `state`:
///
/// | bit | meaning                                                        |
/// |-----|----------------------------------------------------------------|
/// | 0   | a writer died holding the lock; no one has marked the data consistent since |
/// | 1   | the writer has drained every reader and may be changing the data |
///
/// Other `state` bits are [`Error::Corrupted`].
#[repr(C, align(64))]
pub struct ShmRwLock<T> {
    writer: AtomicU64,
    state: AtomicU32,
    seq: AtomicU32,
    _pad: [u8; 48],
    readers: [ReaderSlot; MAX_READER_PROCESSES],
    data: UnsafeCell<T>,
}

const _: () = assert!(offset_of!(ShmRwLock<u8>, readers) == 64);
const _: () = assert!(offset_of!(ShmRwLock<u8>, data) == 576);

// SAFETY: readers share `&T` across threads (`T: Sync`), a writer gets
// exclusive access (`T: Send`), as for `std::sync::RwLock`; the lock's
// words are atomics.
unsafe impl<T: Send + Sync> Sync for ShmRwLock<T> {}
// SAFETY: moving the lock moves the `T` (`T: Send`); its words are plain
// integers.
unsafe impl<T: Send> Send for ShmRwLock<T> {}

impl<T: ShmSafe> ShmRwLock<T> {
    const CHECK_T: () = assert!(
        !T::LAYOUT.has_containers(),
        "a ShmRwLock cannot hold containers (ShmVec, ShmString, ShmMap, RelPtr): the \
         store cannot follow them under this lock; use a ShmMutex around them"
    );

    /// A new unlocked lock holding `value`.
    ///
    /// `value` holds no containers (a compile-time check): the store walks
    /// what containers own only under a `ShmMutex`, which it can try
    /// without waiting; put containers behind one of those.
    pub const fn new(value: T) -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::CHECK_T;
        ShmRwLock {
            writer: AtomicU64::new(0),
            state: AtomicU32::new(0),
            seq: AtomicU32::new(0),
            _pad: [0; 48],
            readers: [ReaderSlot::FREE; MAX_READER_PROCESSES],
            data: UnsafeCell::new(value),
        }
    }

    /// Blocks until this thread may read, and returns a guard giving `&T`.
    ///
    /// # Errors
    ///
    /// - [`Error::OwnerDied`] if a writer died and no one has marked the
    ///   data consistent since (see [the type docs](ShmRwLock#a-dead-writer));
    /// - [`Error::Corrupted`] if the lock's words are not valid, or the
    ///   data holds an invalid value;
    /// - [`Error::InvalidArgument`] if this thread holds the write lock.
    pub fn read(&self) -> Result<ShmRwLockReadGuard<'_, T>> {
        match self.read_fast() {
            Some(slot) => self.finish_read(slot, Flag::Refuse),
            None => self
                .read_until(Flag::Refuse, Some(Deadline::NEVER))
                .and_then(|g| g.ok_or_else(never_timed_out)),
        }
    }

    /// Reads if no writer holds or waits for the lock: `Ok(None)` if one
    /// does.
    ///
    /// # Errors
    ///
    /// As for [`read`](ShmRwLock::read).
    pub fn try_read(&self) -> Result<Option<ShmRwLockReadGuard<'_, T>>> {
        self.read_until(Flag::Refuse, None)
    }

    /// [`read`](ShmRwLock::read), waiting at most `timeout`: `Ok(None)` if
    /// a writer still held the lock then.
    ///
    /// # Errors
    ///
    /// As for [`read`](ShmRwLock::read).
    pub fn try_read_for(&self, timeout: Duration) -> Result<Option<ShmRwLockReadGuard<'_, T>>> {
        self.read_until(Flag::Refuse, Some(Deadline::after(timeout)))
    }

    /// Like [`read`](ShmRwLock::read), but returns the guard even if a
    /// writer died: [`ShmRwLockReadGuard::owner_died`] says so.
    ///
    /// # Errors
    ///
    /// As for [`read`](ShmRwLock::read), but never [`Error::OwnerDied`].
    pub fn read_recover(&self) -> Result<ShmRwLockReadGuard<'_, T>> {
        self.read_until(Flag::Report, Some(Deadline::NEVER))
            .and_then(|g| g.ok_or_else(never_timed_out))
    }

    /// [`read_recover`](ShmRwLock::read_recover) without waiting.
    ///
    /// # Errors
    ///
    /// As for [`read_recover`](ShmRwLock::read_recover).
    pub fn try_read_recover(&self) -> Result<Option<ShmRwLockReadGuard<'_, T>>> {
        self.read_until(Flag::Report, None)
    }

    /// [`read_recover`](ShmRwLock::read_recover), waiting at most
    /// `timeout`.
    ///
    /// # Errors
    ///
    /// As for [`read_recover`](ShmRwLock::read_recover).
    pub fn try_read_recover_for(
        &self,
        timeout: Duration,
    ) -> Result<Option<ShmRwLockReadGuard<'_, T>>> {
        self.read_until(Flag::Report, Some(Deadline::after(timeout)))
    }

    /// Blocks until this thread is the only holder, and returns a guard
    /// giving access to the data (`&mut T` for a [`ShmMovable`] `T`).
    ///
    /// # Errors
    ///
    /// - [`Error::OwnerDied`], [`Error::Corrupted`] as for
    ///   [`read`](ShmRwLock::read);
    /// - [`Error::InvalidArgument`] if this thread holds a read or the
    ///   write lock of this lock already (waiting would deadlock).
    pub fn write(&self) -> Result<ShmRwLockWriteGuard<'_, T>> {
        self.write_until(Flag::Refuse, Some(Deadline::NEVER))
            .and_then(|g| g.ok_or_else(never_timed_out))
    }

    /// Writes if no one holds the lock: `Ok(None)` if someone does.
    ///
    /// # Errors
    ///
    /// As for [`write`](ShmRwLock::write).
    pub fn try_write(&self) -> Result<Option<ShmRwLockWriteGuard<'_, T>>> {
        self.write_until(Flag::Refuse, None)
    }

    /// [`write`](ShmRwLock::write), waiting at most `timeout`: `Ok(None)`
    /// if the lock was still held then (the claim is withdrawn, and waiting
    /// readers go on).
    ///
    /// # Errors
    ///
    /// As for [`write`](ShmRwLock::write).
    pub fn try_write_for(&self, timeout: Duration) -> Result<Option<ShmRwLockWriteGuard<'_, T>>> {
        self.write_until(Flag::Refuse, Some(Deadline::after(timeout)))
    }

    /// Like [`write`](ShmRwLock::write), but returns the guard even if a
    /// writer died: [`ShmRwLockWriteGuard::owner_died`] says so. Repair the
    /// data, then call [`ShmRwLockWriteGuard::mark_consistent`].
    ///
    /// # Errors
    ///
    /// As for [`write`](ShmRwLock::write), but never [`Error::OwnerDied`].
    pub fn write_recover(&self) -> Result<ShmRwLockWriteGuard<'_, T>> {
        self.write_until(Flag::Report, Some(Deadline::NEVER))
            .and_then(|g| g.ok_or_else(never_timed_out))
    }

    /// [`write_recover`](ShmRwLock::write_recover) without waiting.
    ///
    /// # Errors
    ///
    /// As for [`write_recover`](ShmRwLock::write_recover).
    pub fn try_write_recover(&self) -> Result<Option<ShmRwLockWriteGuard<'_, T>>> {
        self.write_until(Flag::Report, None)
    }

    /// [`write_recover`](ShmRwLock::write_recover), waiting at most
    /// `timeout`.
    ///
    /// # Errors
    ///
    /// As for [`write_recover`](ShmRwLock::write_recover).
    pub fn try_write_recover_for(
        &self,
        timeout: Duration,
    ) -> Result<Option<ShmRwLockWriteGuard<'_, T>>> {
        self.write_until(Flag::Report, Some(Deadline::after(timeout)))
    }

    /// Overwrites the data with `value` whatever its bytes hold (even
    /// invalid ones), and marks it consistent. Blocks until the write lock
    /// is free.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupted`] or [`Error::InvalidArgument`] as for
    /// [`write`](ShmRwLock::write).
    pub fn reset(&self, value: T) -> Result<()>
    where
        T: ShmMovable,
    {
        let Some(guard) = self.lock_write(Some(Deadline::NEVER))? else {
            return Err(never_timed_out());
        };
        // SAFETY: the guard gives this thread exclusive access to the data;
        // `T` has no drop glue (ShmSafe) and no in-place parts
        // (`ShmMovable`), so the old bytes, valid or not, are overwritten.
        unsafe { self.data.get().write(value) };
        self.state.fetch_and(!INCONSISTENT, Ordering::AcqRel);
        drop(guard);
        Ok(())
    }

    /// `true` if a writer died and no one has marked the data consistent
    /// since, as far as this process can tell without locking (a writer
    /// that died just now is only found by the next process that waits).
    pub fn owner_died(&self) -> bool {
        self.state.load(Ordering::Acquire) & INCONSISTENT != 0
    }

    /// The data, through exclusive access (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// Consumes the lock and returns the data.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }

    fn addr(&self) -> usize {
        self as *const Self as usize
    }

    /// Reads the `state` word, refusing bits it does not define.
    #[inline]
    fn state(&self) -> Result<u32> {
        let s = self.state.load(Ordering::Acquire);
        if s & !(INCONSISTENT | WRITING) != 0 {
            return Err(self.undefined_state(s));
        }
        Ok(s)
    }

    #[cold]
    fn undefined_state(&self, s: u32) -> Error {
        Error::corrupted(format!(
            "{}: state word {s:#x} has undefined bits",
            Self::LAYOUT.type_expr()
        ))
    }

    /// Takes a read lock: `deadline` `None` tries once without waiting.
    fn read_until(
        &self,
        flag: Flag,
        deadline: Option<Deadline>,
    ) -> Result<Option<ShmRwLockReadGuard<'_, T>>> {
        let me = proc::me();
        let slot = match Holding::of(local::holding_tag(self.addr())) {
            Holding::Write => {
                return Err(Error::InvalidArgument {
                    reason: "this thread holds the write lock of this ShmRwLock; reading it \
                             would deadlock"
                        .to_string(),
                })
            }
            Holding::Read { slot } if self.read_again(slot, me) => Some(slot),
            _ => {
                let once = || self.try_read_once(me);
                // One attempt before the waiting machinery: the common case.
                match (once()?, deadline) {
                    (Some(slot), _) => Some(slot),
                    (None, None) => None,
                    (None, Some(deadline)) => {
                        wait::wait_until(Bell::new(&self.seq), deadline, once, || {
                            self.repair_writer()?;
                            self.reap_readers();
                            Ok(())
                        })?
                    }
                }
            }
        };
        match slot {
            Some(slot) => self.finish_read(slot, flag).map(Some),
            None => Ok(None),
        }
    }

    /// The common case of a read lock, kept small: this thread holds no
    /// lock of this one, no writer is there, and this process's slot counts
    /// the lock at once. `None` otherwise (including for every error,
    /// which the full path then meets and reports).
    #[inline]
    fn read_fast(&self) -> Option<usize> {
        if local::holding_tag(self.addr()) != 0 {
            return None;
        }
        self.try_read_once(proc::me()).ok().flatten()
    }

    /// Turns a read lock counted in `slot` into a guard: notes it, applies
    /// `flag`, checks the state word and the data.
    #[inline]
    fn finish_read(&self, slot: usize, flag: Flag) -> Result<ShmRwLockReadGuard<'_, T>> {
        local::add_read(self.addr(), slot);
        let state = self.state.load(Ordering::Acquire);
        // From here on the guard owns the read lock: an early return
        // releases it. (Built whole: filling a field in afterwards costs a
        // store-forwarding stall on this hot path.)
        let guard = ShmRwLockReadGuard {
            lock: self,
            slot,
            owner_died: state & INCONSISTENT != 0,
            _not_send: PhantomData,
        };
        if state & !(INCONSISTENT | WRITING) != 0 {
            return Err(self.undefined_state(state));
        }
        if guard.owner_died && flag == Flag::Refuse {
            return Err(self.owner_died_error());
        }
        self.check_data()?;
        Ok(guard)
    }

    /// One more read lock for a thread that holds one in `slot`: counted
    /// there, whatever writer waits (it waits for this thread anyway).
    fn read_again(&self, slot: usize, me: Me) -> bool {
        let Some(s) = self.readers.get(slot) else {
            return false;
        };
        s.word
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
                (pid_of(w) == me.pid && count_of(w) > 0 && count_of(w) < u32::MAX).then_some(w + 1)
            })
            .is_ok()
    }

    /// One attempt at a read lock: `Some(slot)` if taken.
    #[inline]
    fn try_read_once(&self, me: Me) -> Result<Option<usize>> {
        if self.writer.load(Ordering::SeqCst) != 0 {
            return Ok(None);
        }
        // A few attempts: a slot may be taken over between finding and
        // counting in it (only while it counts 0).
        for _ in 0..4 {
            let Some((idx, w)) = self.my_slot(me) else {
                return Ok(None);
            };
            if count_of(w) == u32::MAX {
                return Err(Error::corrupted(format!(
                    "{}: reader slot {idx} counts 2^32 - 1 read locks",
                    Self::LAYOUT.type_expr()
                )));
            }
            if self.readers[idx]
                .word
                .compare_exchange(w, w + 1, Ordering::SeqCst, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            crate::crash::step();
            // Counted, then look for a writer: a writer claims the writer
            // word, then looks at the counts; both SeqCst, so either it
            // sees this count or this sees its claim.
            if self.writer.load(Ordering::SeqCst) == 0 {
                return Ok(Some(idx));
            }
            self.unlock_read(idx);
            return Ok(None);
        }
        Ok(None)
    }

    /// This process's reader slot (taking a free one if it has none) and
    /// its word; `None` if every slot counts read locks of other processes.
    #[inline]
    fn my_slot(&self, me: Me) -> Option<(usize, u64)> {
        let start = me.start.low32_word();
        let first = me.pid as usize % MAX_READER_PROCESSES;
        let slots = (0..MAX_READER_PROCESSES).map(|i| (first + i) % MAX_READER_PROCESSES);
        for idx in slots.clone() {
            let s = &self.readers[idx];
            let w = s.word.load(Ordering::Acquire);
            if pid_of(w) != me.pid {
                continue;
            }
            if s.start.load(Ordering::Acquire) == start {
                return Some((idx, w));
            }
            // Our pid with another start time: a process that had our pid
            // before us, gone for good. (A slot this process is claiming on
            // another thread, whose start is not written yet, counts 0:
            // emptying it only makes that thread look again.)
            let _ = s
                .word
                .compare_exchange(w, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
        for idx in slots {
            let s = &self.readers[idx];
            let w = s.word.load(Ordering::Acquire);
            if count_of(w) != 0 {
                continue;
            }
            let mine = (me.pid as u64) << 32;
            if s.word
                .compare_exchange(w, mine, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                // Before the count becomes non-zero (a release), so that
                // whoever judges a counting slot sees our start time.
                s.start.store(start, Ordering::Release);
                return Some((idx, mine));
            }
        }
        None
    }

    /// Releases one read lock counted in `slot`, and wakes a waiting
    /// writer.
    #[inline]
    fn unlock_read(&self, slot: usize) {
        let s = &self.readers[slot];
        let before = s.word.fetch_sub(1, Ordering::SeqCst);
        if count_of(before) == 0 {
            // Only another process's writing can empty a slot we count in:
            // undo the borrow from the pid half rather than leave it.
            s.word.fetch_add(1, Ordering::SeqCst);
        }
        crate::crash::step();
        if self.writer.load(Ordering::SeqCst) != 0 {
            Bell::new(&self.seq).ring_if_announced();
        }
    }

    /// Takes the write lock: `deadline` `None` tries once without waiting.
    /// Neither applies the owner-died flag nor checks the data.
    fn lock_write(&self, deadline: Option<Deadline>) -> Result<Option<ShmRwLockWriteGuard<'_, T>>> {
        if local::holding_tag(self.addr()) != 0 {
            return Err(Error::InvalidArgument {
                reason: "this thread holds a lock of this ShmRwLock already; writing it \
                         would deadlock"
                    .to_string(),
            });
        }
        let me = my_id64();
        let claim = || {
            Ok(self
                .writer
                .compare_exchange(0, me, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
                .then_some(()))
        };
        let claimed = match (claim()?, deadline) {
            (Some(()), _) => Some(()),
            (None, None) => None,
            (None, Some(deadline)) => {
                wait::wait_until(Bell::new(&self.seq), deadline, claim, || {
                    self.repair_writer()
                })?
            }
        };
        if claimed.is_none() {
            return Ok(None);
        }
        crate::crash::step();
        let drained = || Ok(self.no_readers().then_some(()));
        let drained = match (drained(), deadline) {
            (Ok(Some(())), _) => Ok(Some(())),
            (first, None) => first,
            (_, Some(deadline)) => {
                wait::wait_until(Bell::new(&self.seq), deadline, drained, || {
                    self.reap_readers();
                    Ok(())
                })
            }
        };
        match drained {
            Ok(Some(())) => {}
            Ok(None) => {
                self.withdraw();
                return Ok(None);
            }
            Err(e) => {
                self.withdraw();
                return Err(e);
            }
        }
        self.state.fetch_or(WRITING, Ordering::SeqCst);
        crate::crash::step();
        local::add_write(self.addr());
        Ok(Some(ShmRwLockWriteGuard {
            lock: self,
            owner_died: false,
            _not_send: PhantomData,
        }))
    }

    fn write_until(
        &self,
        flag: Flag,
        deadline: Option<Deadline>,
    ) -> Result<Option<ShmRwLockWriteGuard<'_, T>>> {
        let Some(mut guard) = self.lock_write(deadline)? else {
            return Ok(None);
        };
        guard.owner_died = self.state()? & INCONSISTENT != 0;
        if guard.owner_died && flag == Flag::Refuse {
            return Err(self.owner_died_error());
        }
        self.check_data()?;
        Ok(Some(guard))
    }

    /// Gives up a claim of the writer word (a timed-out or failed write).
    fn withdraw(&self) {
        self.writer.store(0, Ordering::SeqCst);
        Bell::new(&self.seq).ring();
    }

    /// `true` if no reader slot counts a read lock.
    fn no_readers(&self) -> bool {
        self.readers
            .iter()
            .all(|s| count_of(s.word.load(Ordering::SeqCst)) == 0)
    }

    /// Empties the reader slots of dead processes (their read locks), and
    /// rings if any was.
    fn reap_readers(&self) {
        let mut reaped = false;
        for s in &self.readers {
            let w = s.word.load(Ordering::Acquire);
            if count_of(w) == 0 {
                continue;
            }
            let start = StartTime::from_low32_word(s.start.load(Ordering::Acquire));
            if dead(pid_of(w), start, 32)
                && s.word
                    .compare_exchange(w, 0, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                reaped = true;
            }
        }
        if reaped {
            Bell::new(&self.seq).ring();
        }
    }

    /// If the writer word names a dead process, takes it over, records the
    /// death in `state` if that writer had exclusive access, and releases
    /// the lock. Taking the word over first makes the repair exclusive: a
    /// process killed while repairing is itself a dead writer to the next.
    fn repair_writer(&self) -> Result<()> {
        let w = self.writer.load(Ordering::Acquire);
        if w == 0 || !id64_is_dead(w) {
            return Ok(());
        }
        let me = my_id64();
        if self
            .writer
            .compare_exchange(w, me, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return Ok(());
        }
        crate::crash::step();
        let s = self.state.load(Ordering::Acquire);
        if s & WRITING != 0 {
            // Only the holder of the writer word changes `state` (and
            // `mark_consistent`, from the write guard, is that holder).
            self.state
                .store((s | INCONSISTENT) & !WRITING, Ordering::Release);
        }
        crate::crash::step();
        self.writer.store(0, Ordering::SeqCst);
        Bell::new(&self.seq).ring();
        Ok(())
    }

    fn owner_died_error(&self) -> Error {
        Error::OwnerDied {
            what: super::describe(self.addr(), Self::LAYOUT),
        }
    }

    /// Checks the data's bytes; the caller holds a lock.
    fn check_data(&self) -> Result<()> {
        if !T::HAS_INVALID_BIT_PATTERNS {
            return Ok(());
        }
        // SAFETY: `data.get()` is aligned and valid for reads of a `T` (a
        // field of `*self`); the caller holds a read or the write lock, so
        // no one writes the data during the check.
        unsafe { T::check_bytes(self.data.get()) }.map_err(|e: InvalidBitPattern| {
            Error::corrupted(format!(
                "{} holds an invalid value: {}",
                Self::LAYOUT.type_expr(),
                e.within(offset_of!(Self, data))
            ))
        })
    }
}

fn never_timed_out() -> Error {
    Error::corrupted("an untimed lock wait ended without the lock")
}

/// Access to a [`ShmRwLock`]'s data shared with other readers; dropping it
/// releases the read lock. Not `Send`.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ShmRwLockReadGuard<'a, T: ShmSafe> {
    lock: &'a ShmRwLock<T>,
    slot: usize,
    owner_died: bool,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a shared guard only gives out `&T` (`T: Sync`).
unsafe impl<T: ShmSafe + Sync> Sync for ShmRwLockReadGuard<'_, T> {}

impl<T: ShmSafe> ShmRwLockReadGuard<'_, T> {
    /// `true` if a writer died and the data has not been marked consistent
    /// since (only a guard from a `*_recover` method can say so).
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }
}

impl<T: ShmSafe> Deref for ShmRwLockReadGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard holds a read lock: no writer has access while
        // it lives, so the data is only read (or changed through `T`'s own
        // interior mutability, which `&T` allows); it was validated when
        // the lock was taken.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ShmSafe> Drop for ShmRwLockReadGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.unlock_read(self.slot);
        local::remove_read(self.lock.addr());
    }
}

impl<T: ShmSafe + fmt::Debug> fmt::Debug for ShmRwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// Exclusive access to a [`ShmRwLock`]'s data; dropping it releases the
/// write lock. Not `Send`.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ShmRwLockWriteGuard<'a, T: ShmSafe> {
    lock: &'a ShmRwLock<T>,
    owner_died: bool,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: sharing `&ShmRwLockWriteGuard` only gives out `&T` (`T: Sync`).
unsafe impl<T: ShmSafe + Sync> Sync for ShmRwLockWriteGuard<'_, T> {}

impl<T: ShmSafe> ShmRwLockWriteGuard<'_, T> {
    /// `true` if a writer died and the data has not been marked consistent
    /// since (only a guard from a `*_recover` method can say so).
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }

    /// Declares the data consistent again: later lockers are no longer told
    /// that a writer died.
    pub fn mark_consistent(&mut self) {
        self.lock.state.fetch_and(!INCONSISTENT, Ordering::AcqRel);
        self.owner_died = false;
    }
}

impl<T: ShmSafe> Deref for ShmRwLockWriteGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard holds the write lock: the only access to the
        // data goes through it, following `&self`'s borrow; validated when
        // the lock was taken.
        unsafe { &*self.lock.data.get() }
    }
}

/// `&mut T` only for a movable `T`, as for `ShmMutexGuard`.
impl<T: ShmMovable> DerefMut for ShmRwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes the access
        // exclusive; a movable `T` has no part that writing through
        // `&mut T` could break.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ShmSafe> Drop for ShmRwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        let lock = self.lock;
        // First the flag, then the word: a death between the two leaves a
        // dead writer without access, which is released without a report.
        lock.state.fetch_and(!WRITING, Ordering::SeqCst);
        crate::crash::step();
        lock.writer.store(0, Ordering::SeqCst);
        Bell::new(&lock.seq).ring_if_announced();
        local::remove_write(lock.addr());
    }
}

impl<T: ShmSafe + fmt::Debug> fmt::Debug for ShmRwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ShmSafe + fmt::Debug> fmt::Debug for ShmRwLock<T> {
    /// Never blocks and never changes what the next locker is told.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ShmRwLock");
        match self.try_read_recover() {
            Ok(Some(guard)) if guard.owner_died() => d.field("owner_died", &true),
            Ok(Some(guard)) => d.field("data", &&*guard),
            Ok(None) => d.field("data", &format_args!("<locked>")),
            Err(e) => d.field("error", &format_args!("{e}")),
        };
        d.finish_non_exhaustive()
    }
}

// SAFETY:
// - no absolute addresses: integer words (identities are pid and
//   start-time bits) and a `T: ShmSafe`;
// - `repr(C, align(64))`; LAYOUT records name, size, align and `T`'s
//   layout, and the offsets follow (asserted above for the header part);
// - no drop glue (atomics, a pad array, `T: ShmSafe`);
// - every bit pattern of the lock's words is a valid value (undefined
//   state bits are refused when used); `T`'s bytes are checked under the
//   lock at every acquisition, so HAS_INVALID_BIT_PATTERNS is false;
// - mutation through `&Self` goes through the lock's atomics and, for the
//   data, through the lock;
// - IMMOVABLE exactly when `T` is: the lock's own words may move (see the
//   type docs), and `init_in_place` only initialises `T`'s parts.
unsafe impl<T: ShmSafe> ShmSafe for ShmRwLock<T> {
    const LAYOUT: &'static TypeLayout = &TypeLayout {
        name: "ShmRwLock",
        size: size_of::<Self>(),
        align: align_of::<Self>(),
        kind: LayoutKind::Opaque {
            params: &[T::LAYOUT],
        },
    };
    const IMMOVABLE: bool = T::IMMOVABLE;

    unsafe fn init_in_place(ptr: *mut Self) -> Result<()> {
        // SAFETY: the caller guarantees `ptr` is valid for writes of a
        // `Self`; `addr_of_mut!` creates no reference.
        let data = unsafe { ptr::addr_of_mut!((*ptr).data) }.cast::<T>();
        // SAFETY: `data` is an aligned, writable field of `*ptr` holding a
        // valid, unpublished `T` (caller's guarantee).
        unsafe { T::init_in_place(data) }
    }

    /// Visits `T`'s offsets under a read lock if one can be had without
    /// waiting (the store calls this under its header lock, which must
    /// never wait for another lock); nothing if a writer holds the lock.
    fn trace(&self, visit: &mut dyn FnMut(u64)) {
        if let Ok(Some(guard)) = self.try_read_recover() {
            guard.trace(visit);
        }
    }
}

// SAFETY: a movable `T`, and the lock's own words hold nothing initialised
// in place (IMMOVABLE is then false, `init_in_place` does nothing).
unsafe impl<T: ShmMovable> ShmMovable for ShmRwLock<T> {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A process that cannot exist (pid `i32::MAX`).
    const GHOST: u32 = i32::MAX as u32;

    #[test]
    fn layout() {
        let l = <ShmRwLock<u64>>::LAYOUT;
        assert_eq!(l.type_expr(), "ShmRwLock<u64>");
        assert_eq!(l.size, 640);
        assert_eq!(l.align, 64);
        const { assert!(!<ShmRwLock<u64>>::IMMOVABLE) };
        const { assert!(<ShmRwLock<crate::ShmMutex<u64>>>::IMMOVABLE) };
    }

    #[test]
    fn readers_share_and_a_writer_excludes() {
        let l = ShmRwLock::new(5u64);
        let a = l.read().unwrap();
        let b = l.read().unwrap();
        assert_eq!(*a + *b, 10);
        assert!(matches!(l.try_write(), Err(Error::InvalidArgument { .. })));
        std::thread::scope(|s| {
            s.spawn(|| assert!(l.try_write().unwrap().is_none()))
                .join()
                .unwrap();
        });
        drop((a, b));
        *l.write().unwrap() += 1;
        let w = l.write_recover();
        assert!(w.is_ok());
        assert!(matches!(l.try_read(), Err(Error::InvalidArgument { .. })));
        drop(w);
        assert_eq!(*l.read().unwrap(), 6);
        assert!(l.no_readers());
        assert_eq!(l.writer.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_reader_may_read_again_while_a_writer_waits() {
        let l = ShmRwLock::new(1u32);
        let r = l.read().unwrap();
        std::thread::scope(|s| {
            let w = s.spawn(|| {
                let mut g = l.write().unwrap();
                *g = 2;
            });
            // Wait until the writer has claimed the lock.
            let t = Instant::now();
            while l.writer.load(Ordering::Relaxed) == 0 && t.elapsed() < Duration::from_secs(30) {
                std::thread::yield_now();
            }
            let again = l.read().unwrap();
            assert_eq!(*again, 1);
            drop(again);
            drop(r);
            w.join().unwrap();
        });
        assert_eq!(*l.read().unwrap(), 2);
    }

    #[test]
    fn timed_waits_give_up_and_withdraw() {
        let l = ShmRwLock::new(0u8);
        let r = l.read().unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                let t = Instant::now();
                assert!(l
                    .try_write_for(Duration::from_millis(40))
                    .unwrap()
                    .is_none());
                assert!(t.elapsed() >= Duration::from_millis(40));
            })
            .join()
            .unwrap();
        });
        assert_eq!(
            l.writer.load(Ordering::Relaxed),
            0,
            "the claim was withdrawn"
        );
        drop(r);
        let w = l.write().unwrap();
        std::thread::scope(|s| {
            s.spawn(|| assert!(l.try_read_for(Duration::from_millis(20)).unwrap().is_none()))
                .join()
                .unwrap();
        });
        drop(w);
    }

    #[test]
    fn a_dead_writer_is_reported_until_marked_consistent() {
        let l = ShmRwLock::new(3u64);
        // A writer that died with exclusive access.
        l.writer.store(GHOST as u64, Ordering::Relaxed);
        l.state.store(WRITING, Ordering::Relaxed);
        assert!(matches!(l.read().map(|_| ()), Err(Error::OwnerDied { .. })));
        assert!(l.owner_died());
        assert!(matches!(
            l.write().map(|_| ()),
            Err(Error::OwnerDied { .. })
        ));
        assert!(l.read_recover().unwrap().owner_died());
        let mut g = l.write_recover().unwrap();
        assert!(g.owner_died());
        *g = 4;
        g.mark_consistent();
        drop(g);
        assert_eq!(*l.read().unwrap(), 4);
    }

    #[test]
    fn a_writer_that_died_before_access_is_not_reported() {
        let l = ShmRwLock::new(3u64);
        l.writer.store(GHOST as u64, Ordering::Relaxed);
        assert_eq!(*l.read().unwrap(), 3);
        assert!(!l.owner_died());
    }

    #[test]
    fn read_locks_of_a_dead_process_are_reaped() {
        let l = ShmRwLock::new(0u64);
        l.readers[7]
            .word
            .store((GHOST as u64) << 32 | 3, Ordering::Relaxed);
        l.readers[7].start.store(12, Ordering::Relaxed);
        let t = Instant::now();
        let g = l.try_write_for(Duration::from_secs(30)).unwrap();
        assert!(g.is_some());
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(l.try_write().is_err(), "held by this thread");
    }

    #[test]
    fn a_slot_of_a_process_that_had_our_pid_is_not_ours() {
        let l = ShmRwLock::new(0u64);
        let me = proc::me();
        let idx = me.pid as usize % MAX_READER_PROCESSES;
        l.readers[idx]
            .word
            .store((me.pid as u64) << 32 | 2, Ordering::Relaxed);
        l.readers[idx]
            .start
            .store(me.start.low32_word() ^ 1, Ordering::Relaxed);
        let r = l.read().unwrap();
        assert_eq!(count_of(l.readers[idx].word.load(Ordering::Relaxed)), 1);
        drop(r);
        assert!(l.no_readers());
    }

    #[test]
    fn undefined_state_bits_are_corruption() {
        let l = ShmRwLock::new(0u64);
        l.state.store(0x80, Ordering::Relaxed);
        assert!(matches!(l.read().map(|_| ()), Err(Error::Corrupted { .. })));
        assert!(matches!(
            l.write().map(|_| ()),
            Err(Error::Corrupted { .. })
        ));
        assert!(l.no_readers());
        assert_eq!(l.writer.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn invalid_data_is_refused_and_can_be_reset() {
        let l = ShmRwLock::new(true);
        // SAFETY: no guard exists; a raw byte write simulates another
        // process's corruption, and no `&bool` is made from it.
        unsafe { l.data.get().cast::<u8>().write(9) };
        assert!(matches!(l.read().map(|_| ()), Err(Error::Corrupted { .. })));
        l.reset(false).unwrap();
        assert!(!*l.read().unwrap());
    }
}
