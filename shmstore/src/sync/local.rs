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
//!
//! # Addresses and what they name
//!
//! The fast path ([`holding_tag`]) compares addresses only. Whenever it
//! matters — before a lock would wait, or refuse — the lock asks
//! [`holding_checked`] instead, which
//!
//! - also finds the entries made through another mapping of the same
//!   store (one process may map a store twice: the same lock then has two
//!   addresses), by comparing the store id and offset of each entry's
//!   address with the lock's (see `store::store_place`); and
//! - believes an entry only if the lock's own words agree (the caller's
//!   check): the entry of a forgotten guard, of a lock that was since
//!   replaced by a new one at the same address, is dropped.
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

/// Removes one hold of `tag` (address and kind, exactly as added).
#[inline]
fn remove(tag: usize) {
    let kind = |t: usize| t == tag;
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

/// Notes that one read lock of `addr`, counted in reader `slot`, was
/// released.
#[inline]
pub(crate) fn remove_read(addr: usize, slot: usize) {
    remove(addr | (slot & SLOT_BITS));
}

/// Notes the write lock of `addr`.
#[inline]
pub(crate) fn add_write(addr: usize) {
    add(addr | WRITE);
}

/// Notes that the write lock of `addr` was released.
#[inline]
pub(crate) fn remove_write(addr: usize) {
    remove(addr | WRITE);
}

/// How this thread holds the lock of `size` bytes at `addr` (64-aligned),
/// through this or any other mapping of its store: the first entry that
/// names it and that `valid` accepts (given what the entry says). Entries
/// that name it and that `valid` rejects are dropped (see the module
/// docs).
pub(crate) fn holding_checked(
    addr: usize,
    size: usize,
    valid: impl Fn(Holding) -> bool,
) -> Holding {
    debug_assert_eq!(addr & LOW, 0);
    // Looked up once, and only if some entry is at another address.
    let mut place: Option<Option<(u64, u64)>> = None;
    let mut names_it = |entry: usize| {
        let at = entry & !LOW;
        if entry == 0 {
            return false;
        }
        if at == addr {
            return true;
        }
        let here = *place.get_or_insert_with(|| crate::store::store_place(addr, size));
        here.is_some() && crate::store::store_place(at, size) == here
    };
    let mut found = Holding::No;
    let _ = TAGS.try_with(|tags| {
        READS.with(|reads| {
            for (t, n) in tags.iter().zip(reads) {
                let tag = t.get();
                if found != Holding::No || !names_it(tag) {
                    continue;
                }
                let h = Holding::of(tag);
                if valid(h) {
                    found = h;
                } else {
                    t.set(0);
                    n.set(0);
                }
            }
        })
    });
    if found != Holding::No || SPILLED.try_with(Cell::get).unwrap_or(0) == 0 {
        return found;
    }
    let _ = SPILL.try_with(|s| {
        let mut s = s.borrow_mut();
        let mut i = 0;
        while i < s.len() {
            let tag = s[i].0;
            if found == Holding::No && names_it(tag) {
                let h = Holding::of(tag);
                if valid(h) {
                    found = h;
                } else {
                    s.swap_remove(i);
                    continue;
                }
            }
            i += 1;
        }
        let _ = SPILLED.try_with(|n| n.set(s.len()));
    });
    found
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
        remove_read(64, 3);
        assert_eq!(holding(64), Holding::Read { slot: 3 });
        remove_read(64, 3);
        assert_eq!(holding(64), Holding::No);
        remove_write(128);
        assert_eq!(holding(128), Holding::No);
        std::thread::spawn(|| assert_eq!(holding(64), Holding::No))
            .join()
            .unwrap();
    }

    #[test]
    fn checked_holdings_drop_entries_the_lock_contradicts() {
        let (a, b) = (1 << 30, (1 << 30) + 64);
        add_write(a);
        add_read(b, 4);
        // The lock at `a` says no one writes it: the entry goes.
        assert_eq!(holding_checked(a, 64, |_| false), Holding::No);
        assert_eq!(holding(a), Holding::No);
        // The lock at `b` agrees: the entry stays.
        let at_b = holding_checked(b, 64, |h| h == Holding::Read { slot: 4 });
        assert_eq!(at_b, Holding::Read { slot: 4 });
        assert_eq!(holding(b), Holding::Read { slot: 4 });
        remove_read(b, 4);
        assert_eq!(holding_checked(b, 64, |_| true), Holding::No);
        // Spilled entries are checked alike.
        let base = 1 << 31;
        for i in 0..ENTRIES + 2 {
            add_write(base + 64 * i);
        }
        let last = base + 64 * (ENTRIES + 1);
        assert_eq!(holding_checked(last, 64, |_| true), Holding::Write);
        assert_eq!(holding_checked(last, 64, |_| false), Holding::No);
        assert_eq!(holding(last), Holding::No);
        for i in 0..ENTRIES + 1 {
            remove_write(base + 64 * i);
        }
        assert_eq!(SPILLED.with(Cell::get), 0);
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
        for (i, &a) in addrs.iter().enumerate() {
            remove_read(a, i % 32);
            assert_eq!(holding(a), Holding::No);
        }
        remove_write(base + 64 * 100);
        assert_eq!(holding(base + 64 * 100), Holding::No);
    }
}
