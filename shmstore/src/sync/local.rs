//! Which [`ShmRwLock`](super::ShmRwLock)s the current thread holds, and
//! how: so that a thread that already reads may read again even while a
//! writer waits (instead of deadlocking behind it), and a thread that asks
//! to write a lock it holds is told so instead of waiting for itself.
//!
//! A few entries per thread, in a thread-local vector; a guard adds its
//! entry when it is made and removes it when dropped. A guard that is
//! `mem::forget`ten leaves its entry (the lock stays held, as it does in
//! the segment).

use core::cell::RefCell;

/// How this thread holds a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Holding {
    /// Not at all.
    No,
    /// `reads` read locks, counted in reader slot `slot`.
    Read { slot: usize },
    /// The write lock.
    Write,
}

#[derive(Clone, Copy)]
struct Entry {
    addr: usize,
    /// Read locks held (0 for a write entry).
    reads: u32,
    /// The reader slot the read locks are counted in.
    slot: usize,
    write: bool,
}

thread_local! {
    static HOLDS: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
}

/// How this thread holds the lock at `addr`.
pub(crate) fn holding(addr: usize) -> Holding {
    HOLDS
        .try_with(|h| {
            let h = h.borrow();
            match h.iter().find(|e| e.addr == addr) {
                Some(e) if e.write => Holding::Write,
                Some(e) => Holding::Read { slot: e.slot },
                None => Holding::No,
            }
        })
        .unwrap_or(Holding::No)
}

/// Notes one more read lock of `addr`, counted in `slot`.
pub(crate) fn add_read(addr: usize, slot: usize) {
    let _ = HOLDS.try_with(|h| {
        let mut h = h.borrow_mut();
        match h.iter_mut().find(|e| e.addr == addr && !e.write) {
            Some(e) => e.reads = e.reads.saturating_add(1),
            None => h.push(Entry {
                addr,
                reads: 1,
                slot,
                write: false,
            }),
        }
    });
}

/// Notes that one read lock of `addr` was released.
pub(crate) fn remove_read(addr: usize) {
    let _ = HOLDS.try_with(|h| {
        let mut h = h.borrow_mut();
        if let Some(i) = h.iter().position(|e| e.addr == addr && !e.write) {
            h[i].reads -= 1;
            if h[i].reads == 0 {
                h.swap_remove(i);
            }
        }
    });
}

/// Notes the write lock of `addr`.
pub(crate) fn add_write(addr: usize) {
    let _ = HOLDS.try_with(|h| {
        h.borrow_mut().push(Entry {
            addr,
            reads: 0,
            slot: 0,
            write: true,
        })
    });
}

/// Notes that the write lock of `addr` was released.
pub(crate) fn remove_write(addr: usize) {
    let _ = HOLDS.try_with(|h| {
        let mut h = h.borrow_mut();
        if let Some(i) = h.iter().position(|e| e.addr == addr && e.write) {
            h.swap_remove(i);
        }
    });
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
}
