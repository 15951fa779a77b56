//! Which robust locks the threads of this process hold, by address.
//!
//! Locking a robust pthread mutex links it into the locking thread's robust
//! list, which glibc keeps *in the mutexes themselves*: each held mutex
//! points to the next. If the memory of a held mutex is unmapped (its
//! guard was `mem::forget`ten, then the last handle to its store dropped),
//! the list runs through an address that is no longer ours: the next lock
//! or unlock of any robust mutex by that thread, or the kernel's walk of the
//! list when the thread exits, writes through it — a `SIGSEGV`, or a write
//! into whatever is mapped there later.
//!
//! So every acquisition of a robust lock in a segment is noted here (its
//! address, in a per-thread record), and every release un-notes it. Before a
//! region is unmapped, [`any_in`] tells whether some thread may still hold a
//! lock inside it; if so the region is leaked instead (its pages stay
//! mapped, so the robust lists stay valid; see `Region::drop`).
//!
//! # Cost and visibility
//!
//! Noting a lock is two thread-local loads and one relaxed store into the
//! thread's own record (no shared cache line, no read-modify-write).
//! [`any_in`] reads every record. It runs when the last handle to a store is
//! dropped, which happens after every lock of that thread on that store was
//! noted: the notes are sequenced before that thread's last use of the
//! store, whose `Arc` release (and the dropping thread's acquire) makes
//! them visible.
//!
//! Records are never freed: a thread's record goes back to a pool when the
//! thread exits holding nothing, and stays marked (keeping its regions
//! mapped) if it exits holding a forgotten lock.

use core::cell::Cell;
use core::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

/// Locks a thread can hold at once before its notes spill into a mutexed
/// vector.
const SLOTS: usize = 16;

/// The locks one thread holds: addresses of held mutexes (0: a free slot).
struct Record {
    slots: [AtomicUsize; SLOTS],
    spilled: Mutex<Vec<usize>>,
}

impl Record {
    fn holds_any(&self) -> bool {
        self.slots.iter().any(|s| s.load(Ordering::Relaxed) != 0) || !self.spilled.lock().is_empty()
    }
}

/// Every record ever made, and the ones free for a new thread.
struct Registry {
    all: Vec<&'static Record>,
    free: Vec<&'static Record>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    all: Vec::new(),
    free: Vec::new(),
});

thread_local! {
    /// This thread's record, once it has locked something.
    static MINE: Cell<Option<&'static Record>> = const { Cell::new(None) };
    /// Gives the record back when the thread exits (if it holds nothing).
    static RETURN: Return = const { Return };
}

/// Thread-exit hook: returns the thread's record to the pool.
struct Return;

impl Drop for Return {
    fn drop(&mut self) {
        let Ok(Some(record)) = MINE.try_with(|m| m.take()) else {
            return;
        };
        if !record.holds_any() {
            REGISTRY.lock().free.push(record);
        }
        // A record that still notes a lock stays out of the pool for good:
        // the regions it names are never unmapped.
    }
}

/// This thread's record, made (or taken from the pool) on first use. During
/// thread teardown, after the exit hook ran, a fresh record is made that is
/// never returned (harmless: it only keeps regions mapped).
fn mine() -> &'static Record {
    if let Ok(Some(r)) = MINE.try_with(Cell::get) {
        return r;
    }
    let record = {
        let mut reg = REGISTRY.lock();
        match reg.free.pop() {
            Some(r) => r,
            None => {
                let r: &'static Record = Box::leak(Box::new(Record {
                    slots: Default::default(),
                    spilled: Mutex::new(Vec::new()),
                }));
                reg.all.push(r);
                r
            }
        }
    };
    let _ = MINE.try_with(|m| m.set(Some(record)));
    // Registers the exit hook (a no-op value whose drop runs at exit).
    let _ = RETURN.try_with(|_| ());
    record
}

/// A note that this thread holds the lock at some address. Not `Send`: it
/// is released by the thread that took it, like the lock. It has no `Drop`:
/// a note dropped (or forgotten with its guard) without
/// [`Held::released`] stays, which is what keeps the region mapped.
#[must_use]
pub(crate) struct Held {
    record: &'static Record,
    /// The slot, or `SLOTS` for a spilled note.
    slot: usize,
    addr: usize,
    _not_send: core::marker::PhantomData<*const ()>,
}

/// Notes that the calling thread now holds the robust lock at `addr`.
pub(crate) fn note_locked(addr: usize) -> Held {
    let record = mine();
    let slot = record
        .slots
        .iter()
        .position(|s| s.load(Ordering::Relaxed) == 0)
        .unwrap_or(SLOTS);
    if slot < SLOTS {
        record.slots[slot].store(addr, Ordering::Relaxed);
    } else {
        record.spilled.lock().push(addr);
    }
    Held {
        record,
        slot,
        addr,
        _not_send: core::marker::PhantomData,
    }
}

impl Held {
    /// Notes that the lock was released.
    pub(crate) fn released(self) {
        if self.slot < SLOTS {
            self.record.slots[self.slot].store(0, Ordering::Relaxed);
        } else {
            let mut spilled = self.record.spilled.lock();
            if let Some(i) = spilled.iter().position(|&a| a == self.addr) {
                spilled.swap_remove(i);
            }
        }
    }
}

/// `true` if some thread of this process may hold a robust lock whose
/// address lies in `[base, base + len)`.
pub(crate) fn any_in(base: usize, len: usize) -> bool {
    let inside = |a: usize| a != 0 && a >= base && a - base < len;
    let reg = REGISTRY.lock();
    reg.all.iter().any(|r| {
        r.slots.iter().any(|s| inside(s.load(Ordering::Acquire)))
            || r.spilled.lock().iter().any(|&a| inside(a))
    })
}

/// The addresses in `[base, base + len)` of the robust locks the calling
/// thread holds (for a crash simulated by [`crate::fuzzing`]).
#[cfg(feature = "fuzzing")]
pub(crate) fn held_here_in(base: usize, len: usize) -> Vec<usize> {
    let inside = |a: usize| a != 0 && a >= base && a - base < len;
    let Ok(Some(record)) = MINE.try_with(Cell::get) else {
        return Vec::new();
    };
    let mut out: Vec<usize> = record
        .slots
        .iter()
        .map(|s| s.load(Ordering::Relaxed))
        .filter(|&a| inside(a))
        .collect();
    out.extend(record.spilled.lock().iter().copied().filter(|&a| inside(a)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_found_until_released_and_forgotten_ones_stay() {
        let base = 0x7000_0000_0000usize;
        assert!(!any_in(base, 4096));
        let a = note_locked(base + 64);
        assert!(any_in(base, 4096));
        assert!(!any_in(base + 128, 4096));
        // More than a record's slots: the rest spill.
        let many: Vec<Held> = (0..SLOTS + 3)
            .map(|i| note_locked(base + 8192 + 64 * i))
            .collect();
        assert!(any_in(base + 8192 + 64 * (SLOTS + 2), 64));
        for h in many {
            h.released();
        }
        assert!(!any_in(base + 8192, 1 << 20));
        a.released();
        assert!(!any_in(base, 4096));
        let _never_released = note_locked(base + 4000);
        assert!(any_in(base, 4096), "a forgotten note stays");
    }

    #[test]
    fn a_thread_that_exits_holding_a_note_keeps_it_and_others_recycle() {
        let base = 0x7100_0000_0000usize;
        std::thread::spawn(move || {
            note_locked(base).released();
        })
        .join()
        .unwrap();
        std::thread::spawn(move || drop(note_locked(base + 8)))
            .join()
            .unwrap();
        assert!(any_in(base, 16));
    }
}
