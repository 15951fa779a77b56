//! Pins: what keeps a removed object's memory from reuse while a handle
//! of any process points at it, and the release of what dead processes held.

use super::*;

impl Store {
    /// Releases what processes that died (or exited without closing the
    /// store) still held: their pins — so removed objects they pinned are
    /// freed — and their unfinished large inserts. Runs on open and in
    /// [`Store::check`], and when an insert finds the store full. Each step
    /// is its own journalled operation.
    ///
    /// Only a process known to be gone ([`Liveness::Dead`]: its pid does
    /// not exist, or belongs to a process that started at another time) is
    /// released. One whose liveness this process cannot determine (its
    /// `/proc` entry unreadable: no file descriptor left, `hidepid`; another
    /// pid namespace; its start time unknown while its pid exists) keeps
    /// everything: its handles may still be reading.
    pub(super) fn reap(&self) -> Result<()> {
        let me = self.inner.slot();
        let attached = self.with_arena(|a| a.attached())?;
        for (slot, owner) in attached {
            if Some(slot) == me {
                continue;
            }
            match proc::liveness_in(owner.pid, owner.pidns, owner.start) {
                Liveness::Dead => {}
                Liveness::Alive | Liveness::Unknown => continue,
            }
            // `release_step` rechecks that the slot still has this owner.
            // A dead process stays dead, so the answer cannot go stale.
            while self.with_arena(|a| a.release_step(slot, owner))? {}
        }
        Ok(())
    }

    /// Adds a pin of this process to `rec`, counted in its process slot so
    /// that it is released if the process dies. Inside an operation.
    /// Returns whether the pin was counted (see [`Arena::count_pin`]).
    pub(super) fn pin_in(&self, a: &Arena<'_>, rec: u64) -> Result<bool> {
        a.pin(rec)?;
        match self.inner.slot() {
            Some(slot) => a.count_pin(slot, rec, 1),
            None => Ok(false),
        }
    }

    /// Drops a pin of this process (one operation: the pin word and the
    /// process slot change together), freeing a removed record whose last
    /// pin this was.
    pub(super) fn unpin(&self, rec: u64, counted: bool) -> Result<()> {
        self.with_arena(|a| {
            if let Some(slot) = self.inner.slot().filter(|_| counted) {
                a.count_pin(slot, rec, -1)?;
            }
            if a.drop_pins(rec, 1)? {
                a.free_released(rec)?;
            }
            Ok(())
        })
    }

    /// Wraps a pin the caller took (`r` was pinned) into its owner.
    pub(super) fn pin_of(&self, r: &Record) -> Pin {
        Pin {
            store: self.clone(),
            rec: r.rec,
            held: true,
            counted: r.counted,
        }
    }

    /// Adds a pin to a record the caller already pins (a handle's clone).
    pub(super) fn repin(&self, rec: u64) -> Pin {
        let pinned = self.with_arena(|a| self.pin_in(a, rec));
        Pin {
            store: self.clone(),
            rec,
            // A failure means corrupted metadata: the clone then holds no
            // pin of its own (the original's keeps the record alive while
            // the original lives) and its drop releases nothing.
            held: pinned.is_ok(),
            counted: pinned.unwrap_or(false),
        }
    }
}

/// One pin on a record, owned by a handle: cloning adds a pin, dropping
/// removes it (freeing a removed record on its last pin). It holds the
/// store, so the mapping outlives every handle.
pub(super) struct Pin {
    store: Store,
    rec: u64,
    /// This value holds a pin on `rec` (false only if pinning a clone
    /// failed).
    held: bool,
    /// The pin is counted in this process's slot of the process table.
    counted: bool,
}

impl Clone for Pin {
    fn clone(&self) -> Self {
        self.store.repin(self.rec)
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        // Errors cannot be reported from drop; a failed unpin only keeps the
        // record allocated.
        if self.held {
            let _ = self.store.unpin(self.rec, self.counted);
        }
    }
}
