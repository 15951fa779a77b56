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
use super::wait::{self, dead_in, id64_dead_in, my_id64, Bell, Deadline};
use crate::layout::{InvalidBitPattern, LayoutKind, ShmMovable, ShmSafe, TypeLayout};
use crate::sys::proc::{self, StartTime};
use crate::{Error, Result};

/// Reader slots: how many processes can hold read locks at once (a further
/// one waits until a slot is free, as for a writer). A process holding
/// more than [`MAX_READS_PER_SLOT`] read locks at once counts them in more
/// than one slot.
pub const MAX_READER_PROCESSES: usize = 32;

/// The most read locks one reader slot counts (a process holding more at
/// once takes another slot).
pub const MAX_READS_PER_SLOT: u32 = COUNT as u32;

/// `state` bit: a writer died (or panicked) holding the lock, and no one
/// has marked the data consistent since.
const INCONSISTENT: u32 = 1;
/// `state` bit: the holder of the writer word has exclusive access (all
/// readers drained) and may be changing the data.
const WRITING: u32 = 2;

// A reader slot's word:
//
// | bits   | field                                                  |
// |--------|--------------------------------------------------------|
// | 0..12  | read locks the process counts here                     |
// | 12..34 | its pid (Linux pids are below 2^22)                    |
// | 34..64 | the low 30 bits of its start time (all ones: unknown)  |
//
// One word, changed only by compare-and-swap: the identity and the count
// of a slot change together, so no one ever sees a count under an
// identity that is not the counting process's.

/// Reader slot word bits: the count.
const COUNT: u64 = (1 << 12) - 1;
const PID_SHIFT: u32 = 12;
const PID_BITS: u32 = 22;
const START_SHIFT: u32 = 34;
/// Start-time bits a reader slot records.
const START_BITS: u32 = 30;
/// Reader slot word bits: the identity (pid and start time).
const IDENT: u64 = !COUNT;

/// The read locks one process counts (see the word's table above).
#[repr(C)]
struct ReaderSlot {
    /// Identity and count. A slot with count 0 is free to be taken by any
    /// process (it keeps the identity of its last user until then).
    word: AtomicU64,
    _pad: u64,
}

impl ReaderSlot {
    // Only an array-repeat initialiser: each use is a fresh value.
    #[allow(clippy::declare_interior_mutable_const)]
    const FREE: ReaderSlot = ReaderSlot {
        word: AtomicU64::new(0),
        _pad: 0,
    };
}

fn count_of(word: u64) -> u64 {
    word & COUNT
}

fn pid_of(word: u64) -> u32 {
    ((word >> PID_SHIFT) & ((1 << PID_BITS) - 1)) as u32
}

fn start_of(word: u64) -> StartTime {
    StartTime::from_low_bits(word >> START_SHIFT, START_BITS)
}

/// This process's identity bits in a reader slot word (count 0), or an
/// error on a pid that does not fit (Linux pids are below 2^22).
#[inline]
fn my_ident() -> Result<u64> {
    let me = proc::me();
    if me.pid == 0 || me.pid >= 1 << PID_BITS {
        return Err(Error::InvalidArgument {
            reason: format!(
                "process id {} does not fit the 22 bits a ShmRwLock's reader slot records",
                me.pid
            ),
        });
    }
    Ok((me.pid as u64) << PID_SHIFT | me.start.low_bits(START_BITS) << START_SHIFT)
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
/// own: one word holding its pid, its start time and the count, changed
/// with one compare-and-swap, so a slot never shows one process's count
/// under another's identity. A writer waiting for readers checks every
/// 20 ms whether the processes of the slots still counting are alive, and
/// empties the slots of dead ones: a reader killed at any instruction
/// holds writers up for about 50 ms at most. At most
/// [`MAX_READER_PROCESSES`] processes hold read locks at once.
///
/// Only a process known to be dead is repaired, and only while every
/// process that ever attached to the lock's store shares one pid namespace
/// (see [the module docs](crate::sync#dead-processes)): otherwise a holder
/// that died is waited for, like a live one.
///
/// Robustness is per process: a *thread* that exits holding a guard of this
/// lock (one passed to `mem::forget`) keeps holding it for as long as its
/// process lives.
///
/// # A writer that panics
///
/// A write guard dropped while its thread unwinds from a panic marks the
/// data inconsistent, exactly as a writer's death does (as `std`'s locks
/// are poisoned): the update may be half done, so later `read` and `write`
/// calls, in every process, refuse with [`Error::OwnerDied`] until a holder
/// from [`write_recover`](ShmRwLock::write_recover) repairs the data and
/// calls [`ShmRwLockWriteGuard::mark_consistent`]. (Under `panic = "abort"`
/// the process dies instead, which is reported the same way.) A read guard
/// dropped in a panic changes nothing.
///
/// # Re-entrancy
///
/// Each thread keeps a note of the locks it holds, so that reading again
/// while holding a read lock succeeds even while a writer waits, and a
/// call that would wait for the calling thread itself is refused with
/// [`Error::InvalidArgument`]. A lock is known by its store and offset, so
/// this also holds through two mappings of one store in one process. A
/// note is checked against the lock's own words before it is believed: the
/// note of a guard that was `mem::forget`ten is dropped once the lock no
/// longer says this thread writes (or this process reads) it — for example
/// when a new lock was put at the same place. (While another thread of the
/// same process reads the new lock in the forgotten guard's slot, that
/// thread's count cannot be told from the forgotten one: this thread's
/// `write` is refused as a re-entrant one until those reads end.)
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
/// | 16     | `writer_thread` | `AtomicU32`: the thread id of the thread that took the writer word last (only that process's own notes are checked against it) |
/// | 20     | —         | padding to 64                                   |
/// | 64     | `readers` | [`MAX_READER_PROCESSES`] × 16 bytes: `word: AtomicU64`, padding |
/// | 576    | `data`    | `T` (at the next multiple of `align_of::<T>()`) |
///
/// `state`:
///
/// | bit | meaning                                                        |
/// |-----|----------------------------------------------------------------|
/// | 0   | a writer died or panicked holding the lock; no one has marked the data consistent since |
/// | 1   | the writer has drained every reader and may be changing the data |
///
/// Other `state` bits are [`Error::Corrupted`].
///
/// A reader slot's `word`:
///
/// | bits   | meaning                                                   |
/// |--------|-----------------------------------------------------------|
/// | 0..12  | read locks the process holds, counted here (at most [`MAX_READS_PER_SLOT`]) |
/// | 12..34 | the process's pid                                         |
/// | 34..64 | the low 30 bits of its start time (all ones: unknown)     |
///
/// A slot counting 0 is free for any process to take.
#[repr(C, align(64))]
pub struct ShmRwLock<T> {
    writer: AtomicU64,
    state: AtomicU32,
    seq: AtomicU32,
    writer_thread: AtomicU32,
    _pad: [u8; 44],
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
            writer_thread: AtomicU32::new(0),
            _pad: [0; 44],
            readers: [ReaderSlot::FREE; MAX_READER_PROCESSES],
            data: UnsafeCell::new(value),
        }
    }

    /// Blocks until this thread may read, and returns a guard giving `&T`.
    ///
    /// # Errors
    ///
    /// - [`Error::OwnerDied`] if a writer died (or panicked) and no one has
    ///   marked the data consistent since (see
    ///   [the type docs](ShmRwLock#a-dead-writer));
    /// - [`Error::Corrupted`] if the lock's words are not valid, or the
    ///   data holds an invalid value;
    /// - [`Error::InvalidArgument`] if this thread holds the write lock.
    pub fn read(&self) -> Result<ShmRwLockReadGuard<'_, T>> {
        match self.read_fast() {
            Some((slot, ident)) => self.finish_read(slot, ident, Flag::Refuse),
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

    /// `true` if a writer died (or panicked) and no one has marked the data
    /// consistent since, as far as this process can tell without locking
    /// (a writer that died just now is only found by the next process that
    /// waits).
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

    /// How this thread holds this lock, through any mapping of it: the
    /// thread's notes (see [`local`]), each checked against the lock's
    /// words first; a note the words contradict (a forgotten guard's, of a
    /// lock since replaced) is dropped.
    fn held_by_this_thread(&self, ident: u64) -> Holding {
        local::holding_checked(self.addr(), size_of::<Self>(), |h| match h {
            Holding::No => false,
            Holding::Write => {
                self.writer.load(Ordering::SeqCst) == my_id64()
                    && self.writer_thread.load(Ordering::Relaxed) == proc::my_tid()
            }
            Holding::Read { slot } => self.readers.get(slot).is_some_and(|s| {
                let w = s.word.load(Ordering::SeqCst);
                w & IDENT == ident && count_of(w) > 0
            }),
        })
    }

    /// Takes a read lock: `deadline` `None` tries once without waiting.
    fn read_until(
        &self,
        flag: Flag,
        deadline: Option<Deadline>,
    ) -> Result<Option<ShmRwLockReadGuard<'_, T>>> {
        let ident = my_ident()?;
        let slot = match self.held_by_this_thread(ident) {
            Holding::Write => {
                return Err(Error::InvalidArgument {
                    reason: "this thread holds the write lock of this ShmRwLock; reading it \
                             would deadlock"
                        .to_string(),
                })
            }
            Holding::Read { slot } => Some(self.read_again(slot, ident)?),
            Holding::No => {
                let once = || self.try_read_once(ident);
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
            Some(slot) => self.finish_read(slot, ident, flag).map(Some),
            None => Ok(None),
        }
    }

    /// The common case of a read lock, kept small: this thread has no note
    /// of this lock at this address, no writer is there, and this
    /// process's slot counts the lock at once. `None` otherwise (including
    /// for every error, which the full path then meets and reports; and
    /// for a lock this thread holds through another mapping, which has a
    /// writer or a note of ours, and goes the full way too).
    #[inline]
    fn read_fast(&self) -> Option<(usize, u64)> {
        if local::holding_tag(self.addr()) != 0 {
            return None;
        }
        let ident = my_ident().ok()?;
        let slot = self.try_read_once(ident).ok().flatten()?;
        Some((slot, ident))
    }

    /// Turns a read lock counted in `slot` into a guard: notes it, applies
    /// `flag`, checks the state word and the data.
    #[inline]
    fn finish_read(
        &self,
        slot: usize,
        ident: u64,
        flag: Flag,
    ) -> Result<ShmRwLockReadGuard<'_, T>> {
        local::add_read(self.addr(), slot);
        let state = self.state.load(Ordering::Acquire);
        // From here on the guard owns the read lock: an early return
        // releases it. (Built whole: filling a field in afterwards costs a
        // store-forwarding stall on this hot path.)
        let guard = ShmRwLockReadGuard {
            lock: self,
            slot,
            ident,
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

    /// One more read lock for a thread that holds one counted in `slot`:
    /// counted there (or, if that slot is full, in another of this
    /// process's or a free one), whatever writer waits — it waits for this
    /// thread anyway. The slot that counts it.
    fn read_again(&self, slot: usize, ident: u64) -> Result<usize> {
        let counted = self.readers.get(slot).is_some_and(|s| {
            s.word
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
                    (w & IDENT == ident && count_of(w) > 0 && count_of(w) < COUNT).then_some(w + 1)
                })
                .is_ok()
        });
        if counted {
            return Ok(slot);
        }
        // Its slot is full: count in another, without waiting for a
        // writer (who waits for this thread's read lock anyway).
        loop {
            let Some((idx, w)) = self.my_slot(ident) else {
                return Err(Error::InvalidArgument {
                    reason: format!(
                        "this thread reads this ShmRwLock already and every reader slot is \
                         full ({MAX_READER_PROCESSES} slots of {MAX_READS_PER_SLOT} read \
                         locks): another read lock would wait for the writer that waits \
                         for this thread"
                    ),
                });
            };
            if self.count_in(idx, w, ident) {
                return Ok(idx);
            }
        }
    }

    /// Counts one read lock of the process `ident` in slot `idx`, whose
    /// word was `w` (ours with room, or free): `false` if it changed.
    #[inline]
    fn count_in(&self, idx: usize, w: u64, ident: u64) -> bool {
        let new = if w & IDENT == ident { w + 1 } else { ident | 1 };
        self.readers[idx]
            .word
            .compare_exchange(w, new, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
    }

    /// One attempt at a read lock: `Some(slot)` if taken.
    #[inline]
    fn try_read_once(&self, ident: u64) -> Result<Option<usize>> {
        if self.writer.load(Ordering::SeqCst) != 0 {
            return Ok(None);
        }
        // A few attempts: a slot may change between finding and counting
        // in it (a free one may be taken by another process).
        for _ in 0..4 {
            let Some((idx, w)) = self.my_slot(ident) else {
                return Ok(None);
            };
            if !self.count_in(idx, w, ident) {
                continue;
            }
            crate::crash::step();
            // Counted, then look for a writer: a writer claims the writer
            // word, then looks at the counts; both SeqCst, so either it
            // sees this count or this sees its claim.
            if self.writer.load(Ordering::SeqCst) == 0 {
                return Ok(Some(idx));
            }
            self.unlock_read(idx, ident);
            return Ok(None);
        }
        Ok(None)
    }

    /// A reader slot for the process `ident` and its word: one of its own
    /// with room for one more read lock, else a free one (counting 0);
    /// `None` if every slot counts read locks of others (or is full).
    #[inline]
    fn my_slot(&self, ident: u64) -> Option<(usize, u64)> {
        let first = pid_of(ident) as usize % MAX_READER_PROCESSES;
        let slots = (0..MAX_READER_PROCESSES).map(|i| (first + i) % MAX_READER_PROCESSES);
        for idx in slots.clone() {
            let w = self.readers[idx].word.load(Ordering::Acquire);
            if w & IDENT == ident && count_of(w) < COUNT {
                #[cfg(test)]
                tests::before_counting_in(idx);
                return Some((idx, w));
            }
        }
        for idx in slots {
            let w = self.readers[idx].word.load(Ordering::Acquire);
            if count_of(w) == 0 {
                #[cfg(test)]
                tests::before_counting_in(idx);
                return Some((idx, w));
            }
        }
        None
    }

    /// Releases one read lock of the process `ident` counted in `slot`,
    /// and wakes a waiting writer. A slot that no longer counts for
    /// `ident` (emptied by someone who found this process dead, which
    /// only corruption can bring about for a live one) is left alone: what
    /// it counts now is someone else's.
    #[inline]
    fn unlock_read(&self, slot: usize, ident: u64) {
        let s = &self.readers[slot];
        let mut w = s.word.load(Ordering::Relaxed);
        while w & IDENT == ident && count_of(w) > 0 {
            match s
                .word
                .compare_exchange_weak(w, w - 1, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => w = now,
            }
        }
        crate::crash::step();
        if self.writer.load(Ordering::SeqCst) != 0 {
            Bell::new(&self.seq).ring_if_announced();
        }
    }

    /// Takes the write lock: `deadline` `None` tries once without waiting.
    /// Neither applies the owner-died flag nor checks the data.
    fn lock_write(&self, deadline: Option<Deadline>) -> Result<Option<ShmRwLockWriteGuard<'_, T>>> {
        if self.held_by_this_thread(my_ident()?) != Holding::No {
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
        // Which thread of ours holds the writer word: only read by this
        // process's threads, to check their own notes.
        self.writer_thread.store(proc::my_tid(), Ordering::Relaxed);
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

    /// Empties the reader slots of processes known to be dead (their read
    /// locks), and rings if any was. A slot's identity and count are one
    /// word, so the identity judged is the counting process's.
    fn reap_readers(&self) {
        let mut reaped = false;
        for s in &self.readers {
            let w = s.word.load(Ordering::Acquire);
            if count_of(w) == 0 {
                continue;
            }
            if dead_in(self, pid_of(w), start_of(w), START_BITS)
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
        if w == 0 || !id64_dead_in(self, w) {
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
    /// The identity bits the slot counts this read lock under.
    ident: u64,
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
        self.lock.unlock_read(self.slot, self.ident);
        local::remove_read(self.lock.addr(), self.slot);
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
        if std::thread::panicking() {
            // The update may be half done: reported as a dead writer's is
            // (see the type docs), before the access is given up.
            lock.state.fetch_or(INCONSISTENT, Ordering::SeqCst);
        }
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

    /// A process that cannot exist (pid `i32::MAX`), for the writer word.
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

    /// A reader slot word of pid `pid` with start `start`, counting `n`.
    fn slot_word(pid: u32, start: StartTime, n: u64) -> u64 {
        (pid as u64) << PID_SHIFT | start.low_bits(START_BITS) << START_SHIFT | n
    }

    /// A pid no process has (below 2^22, as reader slots record; above
    /// any `pid_max` short of the largest).
    const GHOST_PID: u32 = 4_000_000;

    #[test]
    fn read_locks_of_a_dead_process_are_reaped() {
        let l = ShmRwLock::new(0u64);
        l.readers[7].word.store(
            slot_word(GHOST_PID, StartTime::Known(12), 3),
            Ordering::Relaxed,
        );
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
        let StartTime::Known(t) = me.start else {
            panic!("this test needs a readable /proc/self/stat")
        };
        let idx = me.pid as usize % MAX_READER_PROCESSES;
        let old = slot_word(me.pid, StartTime::Known(t ^ 1), 2);
        l.readers[idx].word.store(old, Ordering::Relaxed);
        let r = l.read().unwrap();
        // Counted in a slot of our own; the old process's is left as it is.
        assert_ne!(r.slot, idx);
        assert_eq!(l.readers[idx].word.load(Ordering::Relaxed), old);
        assert_eq!(
            l.readers[r.slot].word.load(Ordering::Relaxed),
            my_ident().unwrap() | 1
        );
        drop(r);
        // The old process is gone (our pid, another start): reaped.
        assert!(l.try_write_for(Duration::from_secs(30)).unwrap().is_some());
        assert!(l.no_readers());
    }

    type Hook = Option<Box<dyn FnMut(usize)>>;

    thread_local! {
        /// Run by `my_slot` right before it returns the slot it found (to
        /// play another process that takes the slot at that moment).
        static BEFORE_COUNT: core::cell::RefCell<Hook> = const { core::cell::RefCell::new(None) };
    }

    pub(super) fn before_counting_in(idx: usize) {
        BEFORE_COUNT.with(|h| {
            if let Some(f) = h.borrow_mut().as_mut() {
                f(idx)
            }
        });
    }

    /// Review 8, finding 2: a free slot was claimed (pid) and its start
    /// time written in two steps; another process could take the slot in
    /// between and then carry the first one's start time, which made it
    /// look dead to a writer. Here another process takes the free slot
    /// this thread found, right before this thread counts in it: the
    /// taker's word stays whole (its identity and count), this thread
    /// counts elsewhere under its own, and a writer judges both alive.
    #[test]
    fn a_slot_taken_between_finding_and_counting_keeps_its_taker_whole() {
        let l: &'static ShmRwLock<u64> = Box::leak(Box::new(ShmRwLock::new(0)));
        // pid 1 with an unknown start time: alive to everyone.
        let other = slot_word(1, StartTime::Unknown, 1);
        let mine = my_ident().unwrap();
        let taken = std::rc::Rc::new(core::cell::Cell::new(None));
        let seen = taken.clone();
        BEFORE_COUNT.with(|h| {
            *h.borrow_mut() = Some(Box::new(move |idx| {
                if seen.get().is_none() {
                    l.readers[idx].word.store(other, Ordering::SeqCst);
                    seen.set(Some(idx));
                }
            }))
        });
        let r = l.read().unwrap();
        BEFORE_COUNT.with(|h| *h.borrow_mut() = None);
        let first = taken.get().expect("the hook ran");
        assert_eq!(l.readers[first].word.load(Ordering::SeqCst), other);
        assert_ne!(r.slot, first);
        assert_eq!(l.readers[r.slot].word.load(Ordering::SeqCst), mine | 1);
        drop(r);
        std::thread::scope(|s| {
            s.spawn(|| {
                assert!(l
                    .try_write_for(Duration::from_millis(100))
                    .unwrap()
                    .is_none())
            })
            .join()
            .unwrap();
        });
        assert_eq!(l.readers[first].word.load(Ordering::SeqCst), other);
    }

    #[test]
    fn a_read_guard_leaves_a_slot_that_counts_for_another_process_alone() {
        let l = ShmRwLock::new(0u64);
        let r = l.read().unwrap();
        let slot = r.slot;
        // Someone emptied our slot and another process counts there now.
        let other = slot_word(1, StartTime::Unknown, 1);
        l.readers[slot].word.store(other, Ordering::SeqCst);
        drop(r);
        assert_eq!(l.readers[slot].word.load(Ordering::SeqCst), other);
    }

    #[test]
    fn a_process_holding_more_reads_than_a_slot_counts_uses_another_slot() {
        let l = ShmRwLock::new(7u8);
        let guards: Vec<_> = (0..MAX_READS_PER_SLOT + 2)
            .map(|_| l.read().unwrap())
            .collect();
        let mut slots: Vec<usize> = guards.iter().map(|g| g.slot).collect();
        slots.dedup();
        assert_eq!(
            slots.len(),
            2,
            "a second slot for the reads past the first's"
        );
        assert!(matches!(l.try_write(), Err(Error::InvalidArgument { .. })));
        drop(guards);
        assert!(l.no_readers());
        assert!(l.try_write().unwrap().is_some());
    }

    #[test]
    fn a_writer_that_panics_marks_the_data_inconsistent() {
        let l = ShmRwLock::new([0u64; 2]);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut w = l.write().unwrap();
            w[0] = 1;
            panic!("half-way");
        }));
        assert!(r.is_err());
        assert!(l.owner_died());
        assert!(matches!(l.read().map(|_| ()), Err(Error::OwnerDied { .. })));
        // A reader that panics changes nothing.
        let mut w = l.write_recover().unwrap();
        assert!(w.owner_died());
        w[1] = 1;
        w.mark_consistent();
        drop(w);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _g = l.read().unwrap();
            panic!("reading");
        }));
        assert!(r.is_err());
        assert_eq!(*l.read().unwrap(), [1, 1]);
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
