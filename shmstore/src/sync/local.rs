//! Which [`ShmRwLock`](super::ShmRwLock)s the current thread holds, and
//! how: so that a thread that already reads may read again even while a
//! writer waits (instead of deadlocking behind it), and a thread that asks
//! to write a lock it holds is told so instead of waiting for itself.
//!
//! A few entries per thread, in thread-local cells (a read lock's fast
//! path costs a few loads and stores, no borrow flag, no allocation); a
//! thread holding more than [`ENTRIES`] different locks at once spills the
//! rest into a vector. A guard adds its entry when it is made and removes
//! it when dropped. A guard that is `mem::forget`ten leaves its entry (the
//! lock stays held, as it does in the segment).
//!
//! An entry is the lock's address (64-aligned, so its low 6 bits are free)
//! with the reader slot in bits 0..5 and "write" in bit 5, and a count of
//! the read locks held.

use core::cell::{Cell, RefCell};

/// How this thread holds a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Holding {
    /// Not at all.
    No,
    /// Read locks, counted in reader slot `slot`.
    Read { slot: usize },
    /// The write lock.
    Write,
}

/// Entries kept in cells; more spill into a vector.
const ENTRIES: usize = 8;
const SLOT_BITS: usize = 0x1f;
const WRITE: usize = 0x20;
const LOW: usize = 0x3f;

thread_local! {
    static TAGS: [Cell<usize>; ENTRIES] = const { [const { Cell::new(0) }; ENTRIES] };
    static READS: [Cell<u32>; ENTRIES] = const { [const { Cell::new(0) }; ENTRIES] };
    static SPILL: RefCell<Vec<(usize, u32)>> = const { RefCell::new(Vec::new()) };
    /// Entries in `SPILL` (so that a miss in the cells looks no further
    /// when there are none).
    static SPILLED: Cell<usize> = const { Cell::new(0) };
}

impl Holding {
    /// Decodes a [`holding_tag`].
    #[inline]
    pub(crate) fn of(tag: usize) -> Holding {
        if tag == 0 {
            Holding::No
        } else if tag & WRITE != 0 {
            Holding::Write
        } else {
            Holding::Read {
                slot: tag & SLOT_BITS,
            }
        }
    }
}

/// How this thread holds the lock at `addr` (64-aligned).
#[cfg(test)]
pub(crate) fn holding(addr: usize) -> Holding {
    Holding::of(holding_tag(addr))
}

/// How this thread holds the lock at `addr` (64-aligned), as its entry's
/// tag: 0 if not at all (decode with [`Holding::of`]; a plain word, cheap
/// to return from the read lock's fast path).
#[inline]
pub(crate) fn holding_tag(addr: usize) -> usize {
    debug_assert_eq!(addr & LOW, 0);
    let found = TAGS
        .try_with(|tags| {
            let mut found = 0;
            for t in tags {
                let t = t.get();
                if t & !LOW == addr && t != 0 {
                    found = t;
                }
            }
            found
        })
        .unwrap_or(0);
    if found != 0 || SPILLED.try_with(Cell::get).unwrap_or(0) == 0 {
        return found;
    }
    spilled(addr)
}

#[cold]
fn spilled(addr: usize) -> usize {
    SPILL
        .try_with(|s| {
            s.borrow()
                .iter()
                .find(|e| e.0 & !LOW == addr)
                .map_or(0, |e| e.0)
        })
        .unwrap_or(0)
}

/// Adds one hold of `tag` (address and kind): counts it in its entry, or
/// makes one.
#[inline]
fn add(tag: usize) {
    let done = TAGS
        .try_with(|tags| {
            READS.with(|reads| {
                if let Some(i) = tags.iter().position(|t| t.get() == tag) {
                    reads[i].set(reads[i].get().saturating_add(1));
                    return true;
                }
                if let Some(i) = tags.iter().position(|t| t.get() == 0) {
                    tags[i].set(tag);
                    reads[i].set(1);
                    return true;
                }
                false
            })
        })
        .unwrap_or(true);
    if !done {
        add_spilled(tag);
    }
}

#[cold]
fn add_spilled(tag: usize) {
    let _ = SPILL.try_with(|s| {
        let mut s = s.borrow_mut();
        match s.iter_mut().find(|e| e.0 == tag) {
            Some(e) => e.1 = e.1.saturating_add(1),
            None => {
                s.push((tag, 1));
                let _ = SPILLED.try_with(|n| n.set(s.len()));
            }
        }
    });
}

/// Removes one hold of a lock at `addr` of kind `write`.
#[inline]
fn remove(addr: usize, write: bool) {
    let kind = |t: usize| t & !LOW == addr && (t & WRITE != 0) == write && t != 0;
    let done = TAGS
        .try_with(|tags| {
            READS.with(|reads| match tags.iter().position(|t| kind(t.get())) {
                Some(i) => {
                    let n = reads[i].get().saturating_sub(1);
                    reads[i].set(n);
                    if n == 0 {
                        tags[i].set(0);
                    }
                    true
                }
                None => false,
            })
        })
        .unwrap_or(true);
    if !done {
        remove_spilled(kind);
    }
}

#[cold]
fn remove_spilled(kind: impl Fn(usize) -> bool) {
    let _ = SPILL.try_with(|s| {
        let mut s = s.borrow_mut();
        if let Some(i) = s.iter().position(|e| kind(e.0)) {
            s[i].1 -= 1;
            if s[i].1 == 0 {
                s.swap_remove(i);
                let _ = SPILLED.try_with(|n| n.set(s.len()));
            }
        }
    });
}

/// Notes one more read lock of `addr`, counted in reader `slot` (below 32).
#[inline]
pub(crate) fn add_read(addr: usize, slot: usize) {
    debug_assert!(slot <= SLOT_BITS);
    add(addr | (slot & SLOT_BITS));
}

/// Notes that one read lock of `addr` was released.
#[inline]
pub(crate) fn remove_read(addr: usize) {
    remove(addr, false);
}

/// Notes the write lock of `addr`.
#[inline]
pub(crate) fn add_write(addr: usize) {
    add(addr | WRITE);
}

/// Notes that the write lock of `addr` was released.
#[inline]
pub(crate) fn remove_write(addr: usize) {
    remove(addr, true);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holdings_are_counted_per_address() {
        assert_eq!(holding(64), Holding::No);
        add_read(64, 3);
        add_read(64, 3);
        add_write(128);
        assert_eq!(holding(64), Holding::Read { slot: 3 });
        assert_eq!(holding(128), Holding::Write);
        remove_read(64);
        assert_eq!(holding(64), Holding::Read { slot: 3 });
        remove_read(64);
        assert_eq!(holding(64), Holding::No);
        remove_write(128);
        assert_eq!(holding(128), Holding::No);
        std::thread::spawn(|| assert_eq!(holding(64), Holding::No))
            .join()
            .unwrap();
    }

    #[test]
    fn more_locks_than_entries_spill_and_come_back() {
        let base = 1 << 20;
        let addrs: Vec<usize> = (0..ENTRIES + 5).map(|i| base + 64 * i).collect();
        for (i, &a) in addrs.iter().enumerate() {
            add_read(a, i % 32);
        }
        add_write(base + 64 * 100);
        for (i, &a) in addrs.iter().enumerate() {
            assert_eq!(holding(a), Holding::Read { slot: i % 32 }, "{i}");
        }
        assert_eq!(holding(base + 64 * 100), Holding::Write);
        for &a in &addrs {
            remove_read(a);
            assert_eq!(holding(a), Holding::No);
        }
        remove_write(base + 64 * 100);
        assert_eq!(holding(base + 64 * 100), Holding::No);
    }
}
