//! The process table: which processes are attached to a store, and which
//! records each of them pins, so that the pins of a process that died can
//! be released by the survivors.
//!
//! A process is known by its pid and its start time (field 22 of
//! `/proc/<pid>/stat`), so a reused pid is not mistaken for the process that
//! had it. Every change to the table happens under the header lock, inside
//! a journalled operation, so a crash leaves it consistent with the pin
//! words it counts.
//!
//! A slot is released only when its process is known to be gone
//! ([`Liveness::Dead`](crate::sys::proc::Liveness::Dead)): its pid does not
//! exist, or the process with that pid started at another time. When that
//! cannot be determined (its `/proc` entry unreadable, another pid
//! namespace) the process counts as alive and its slot is kept.
//!
//! # Layout
//!
//! An array of 64-byte slots (its offset and length are header words):
//!
//! | offset | size | field                                                         |
//! |--------|------|---------------------------------------------------------------|
//! | 0      | 4    | pid (0: free slot)                                            |
//! | 4      | 4    | its pid namespace (inode of `/proc/<pid>/ns/pid`; 0: unknown) |
//! | 8      | 8    | its start time, clock ticks after boot (`u64::MAX`: unknown)  |
//! | 16     | 8    | offset of its pin table (0: none yet)                         |
//! | 24     | 8    | pin table capacity (entries, a power of two)                  |
//! | 32     | 8    | pin table entries in use (count > 0 or not)                   |
//! | 40     | 24   | up to 3 records reserved by unfinished large inserts          |
//!
//! A slot whose pid namespace is not this process's, or is 0 (its process
//! could not read it), is never released from here: its pid means nothing
//! in this namespace.
//!
//! A process that could not read its own start time when it attached
//! records `u64::MAX` ([`StartTime::UNKNOWN_WORD`]), never 0, meaning
//! "start time unknown: alive while the pid exists". The word is decoded
//! into a [`StartTime`] as it is read ([`StartTime::from_word`]), so the
//! sentinel is never compared with a real start time: such a slot is
//! released only once no process has its pid (a process that got the pid
//! after it cannot be told from it, and keeps the slot until it is gone
//! too).
//!
//! A pin table is an open-addressing array of 16-byte entries `(record
//! offset, pins held)`, probed linearly from a slot given by the record's
//! offset; a record offset of 0 marks an empty entry. An entry whose count
//! falls to 0 is deleted (later entries of its run move back), so the table
//! holds only records the process pins now.

use super::dir::{hash_name, REC_NAME, REC_PINS};
use super::header::{Header, HEAP_START};
use super::Arena;
use crate::sys::proc::StartTime;
use crate::{Error, Result};

/// Slots in a new store's process table.
pub(crate) const PROC_SLOTS: u64 = 128;
const SLOT: u64 = 64;
const S_PID: u64 = 0;
const S_PIDNS: u64 = 4;
const S_START: u64 = 8;
const S_TABLE: u64 = 16;
const S_CAP: u64 = 24;
const S_USED: u64 = 32;
const S_RESERVED: u64 = 40;
/// Reservations one process can hold at a time.
pub(crate) const RESERVATIONS: u64 = 3;
const ENTRY: u64 = 16;
const INITIAL_PINS: u64 = 16;

/// Who a slot belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Owner {
    pub(crate) pid: u32,
    /// Its pid namespace: a pid means nothing in another one.
    pub(crate) pidns: u32,
    /// Its start time (the slot's word decoded: the "unknown" sentinel is
    /// [`StartTime::Unknown`], never a number).
    pub(crate) start: StartTime,
}

/// The home entry of `rec` in a pin table of `cap` (a power of two)
/// entries. A capacity read from the segment may be 1: that table has one
/// home, entry 0 (a shift by 64 would overflow).
fn home(rec: u64, cap: u64) -> u64 {
    let k = cap.trailing_zeros();
    if k == 0 {
        return 0;
    }
    ((rec >> 3).wrapping_mul(0x9e37_79b9_7f4a_7c15)) >> (64 - k)
}

/// In a copy of a store's bytes (`image`), makes the slots of `me` those of
/// a process that is gone: their start time becomes another one, as if the
/// pid had been reused since (see [`crate::sys::proc::Liveness::Dead`]).
/// So whoever opens the copy releases what `me` held there. A table the
/// header does not locate inside the image is left alone. Returns the
/// number of slots changed.
#[cfg(feature = "fuzzing")]
pub(crate) fn mark_gone_in_image(image: &mut [u8], me: Owner) -> usize {
    use super::header::{OFF_PROCS, OFF_PROCS_LEN};
    let word = |image: &[u8], off: u64| -> Option<u64> {
        let off = usize::try_from(off).ok()?;
        let bytes = image.get(off..off.checked_add(8)?)?;
        Some(u64::from_ne_bytes(bytes.try_into().ok()?))
    };
    let half = |image: &[u8], off: u64| -> Option<u32> {
        let off = usize::try_from(off).ok()?;
        let bytes = image.get(off..off.checked_add(4)?)?;
        Some(u32::from_ne_bytes(bytes.try_into().ok()?))
    };
    let StartTime::Known(start) = me.start else {
        // Alive while the pid exists: no start time says otherwise.
        return 0;
    };
    let (Some(table), Some(len)) = (word(image, OFF_PROCS), word(image, OFF_PROCS_LEN)) else {
        return 0;
    };
    let mut changed = 0;
    for slot in 0..len.min(1 << 16) {
        let Some(s) = slot.checked_mul(SLOT).and_then(|o| o.checked_add(table)) else {
            break;
        };
        let (Some(pid), Some(pidns), Some(started)) = (
            half(image, s + S_PID),
            half(image, s + S_PIDNS),
            word(image, s + S_START),
        ) else {
            break;
        };
        if pid == me.pid && pidns == me.pidns && started == start {
            let other = match start.wrapping_add(1) {
                StartTime::UNKNOWN_WORD => 0,
                t => t,
            };
            let at = (s + S_START) as usize;
            image[at..at + 8].copy_from_slice(&other.to_ne_bytes());
            changed += 1;
        }
    }
    changed
}

impl Arena<'_> {
    /// Creates the process table of a new store.
    pub(crate) fn procs_init(&self) -> Result<()> {
        let table = self.alloc(PROC_SLOTS * SLOT)?;
        self.zero_fresh(table, PROC_SLOTS * SLOT)?;
        let hdr = Header(self);
        hdr.set_procs(table)?;
        hdr.set_procs_len(PROC_SLOTS)
    }

    /// The slot array and its length, validated.
    fn procs(&self) -> Result<(u64, u64)> {
        let hdr = Header(self);
        let (table, len) = (hdr.procs()?, hdr.procs_len()?);
        if len == 0 || !self.holds(table, len.saturating_mul(SLOT)) {
            return Err(Error::corrupted(format!(
                "process table header is invalid: {len} slots at {table:#x}"
            )));
        }
        Ok((table, len))
    }

    fn slot_off(&self, slot: u32) -> Result<u64> {
        let (table, len) = self.procs()?;
        if slot as u64 >= len {
            return Err(Error::corrupted(format!(
                "process slot {slot} is past the table's {len} slots"
            )));
        }
        Ok(table + slot as u64 * SLOT)
    }

    /// The owner of `slot`, if it is in use.
    pub(crate) fn slot_owner(&self, slot: u32) -> Result<Option<Owner>> {
        self.owner_at(self.slot_off(slot)?)
    }

    /// The owner of the slot at offset `s` (inside the validated table).
    fn owner_at(&self, s: u64) -> Result<Option<Owner>> {
        let pid = self.mem.u32(s + S_PID)?;
        if pid == 0 {
            return Ok(None);
        }
        Ok(Some(Owner {
            pid,
            pidns: self.mem.u32(s + S_PIDNS)?,
            start: StartTime::from_word(self.mem.u64(s + S_START)?),
        }))
    }

    /// Every slot in use, with its owner.
    ///
    /// The table is validated once, then walked: slot `i` lies at
    /// `table + i * SLOT`, inside the range `procs` checked.
    pub(crate) fn attached(&self) -> Result<Vec<(u32, Owner)>> {
        let (table, len) = self.procs()?;
        let mut out = Vec::new();
        for slot in 0..len as u32 {
            if let Some(owner) = self.owner_at(table + slot as u64 * SLOT)? {
                out.push((slot, owner));
            }
        }
        Ok(out)
    }

    /// Takes a free slot for `owner`; `None` if the table is full (the
    /// process then runs untracked: its pins are not released if it dies).
    pub(crate) fn attach(&self, owner: Owner) -> Result<Option<u32>> {
        let (table, len) = self.procs()?;
        for slot in 0..len as u32 {
            // Inside the range `procs` checked, as in `attached`.
            let s = table + slot as u64 * SLOT;
            if self.mem.u32(s + S_PID)? == 0 {
                self.set_u64(s + S_START, owner.start.word())?;
                self.set_u32(s + S_PIDNS, owner.pidns)?;
                self.set_u64(s + S_TABLE, 0)?;
                self.set_u64(s + S_CAP, 0)?;
                self.set_u64(s + S_USED, 0)?;
                for r in 0..RESERVATIONS {
                    self.set_u64(s + S_RESERVED + 8 * r, 0)?;
                }
                self.set_u32(s + S_PID, owner.pid)?;
                // A pin table now, while there may be room: pins of a full
                // store are counted as long as it lasts.
                match self.grow_pin_table(s) {
                    Ok(()) | Err(Error::OutOfMemory { .. }) => {}
                    Err(e) => return Err(e),
                }
                return Ok(Some(slot));
            }
        }
        Ok(None)
    }

    /// The pin table of `slot`: (offset, capacity), or (0, 0).
    fn pin_table(&self, s: u64) -> Result<(u64, u64)> {
        let (table, cap) = (self.mem.u64(s + S_TABLE)?, self.mem.u64(s + S_CAP)?);
        if table == 0 {
            return Ok((0, 0));
        }
        if !cap.is_power_of_two() || !self.holds(table, cap.saturating_mul(ENTRY)) {
            return Err(Error::corrupted(format!(
                "pin table of process slot at {s:#x} is invalid: {cap} entries at {table:#x}"
            )));
        }
        Ok((table, cap))
    }

    /// Finds the entry of `rec` in a pin table, or the empty entry where it
    /// would go.
    fn pin_entry(&self, table: u64, cap: u64, rec: u64) -> Result<Option<u64>> {
        let mut i = home(rec, cap);
        for _ in 0..cap {
            let e = table + i * ENTRY;
            let r = self.mem.u64(e)?;
            if r == rec || r == 0 {
                return Ok(Some(e));
            }
            i = (i + 1) & (cap - 1);
        }
        Ok(None)
    }

    /// Rebuilds the pin table of the slot at `s` with room for one more
    /// entry, dropping entries whose count is 0.
    fn grow_pin_table(&self, s: u64) -> Result<()> {
        let (old, cap) = self.pin_table(s)?;
        let mut live = 0u64;
        for i in 0..cap {
            if self.mem.u64(old + i * ENTRY + 8)? > 0 {
                live += 1;
            }
        }
        let mut new_cap = INITIAL_PINS;
        while (live + 1) * 4 > new_cap * 2 {
            new_cap *= 2;
        }
        let new = self.alloc(new_cap * ENTRY)?;
        self.zero_fresh(new, new_cap * ENTRY)?;
        for i in 0..cap {
            let e = old + i * ENTRY;
            let (rec, count) = (self.mem.u64(e)?, self.mem.u64(e + 8)?);
            if rec != 0 && count > 0 {
                let slot = self
                    .pin_entry(new, new_cap, rec)?
                    .ok_or_else(|| Error::corrupted("rebuilt pin table is full"))?;
                self.set_u64(slot, rec)?;
                self.set_u64(slot + 8, count)?;
            }
        }
        self.set_u64(s + S_TABLE, new)?;
        self.set_u64(s + S_CAP, new_cap)?;
        self.set_u64(s + S_USED, live)?;
        if old != 0 {
            self.free(old)?;
        }
        Ok(())
    }

    /// Counts one more (`delta = 1`) or one fewer (`-1`) pin of `rec` held
    /// by the process in `slot`. Returns `false`, having written nothing,
    /// if a new entry was needed and the store has no room to grow the pin
    /// table: the pin is then simply not counted (a full store must still
    /// be readable), and is not released should the process die.
    pub(crate) fn count_pin(&self, slot: u32, rec: u64, delta: i64) -> Result<bool> {
        let s = self.slot_off(slot)?;
        let (mut table, mut cap) = self.pin_table(s)?;
        if delta > 0
            && (table == 0
                || self
                    .mem
                    .u64(s + S_USED)?
                    .saturating_add(1)
                    .saturating_mul(4)
                    > cap * 3)
        {
            // Only a new entry needs room; an existing one is updated in place.
            let existing = if table == 0 {
                None
            } else {
                self.pin_entry(table, cap, rec)?
                    .filter(|&e| self.mem.u64(e).ok() == Some(rec))
            };
            if existing.is_none() {
                match self.grow_pin_table(s) {
                    Ok(()) => {}
                    // The allocation failed before writing anything.
                    Err(Error::OutOfMemory { .. }) => return Ok(false),
                    Err(e) => return Err(e),
                }
                (table, cap) = self.pin_table(s)?;
            }
        }
        let e = match self.pin_entry(table, cap, rec)? {
            Some(e) if table != 0 => e,
            _ => {
                return Err(Error::corrupted(format!(
                    "process slot {slot} has no pin entry for record {rec:#x}"
                )))
            }
        };
        let (found, count) = (self.mem.u64(e)?, self.mem.u64(e + 8)?);
        let new = count
            .checked_add_signed(delta)
            .filter(|_| found == rec || delta > 0);
        let Some(new) = new else {
            return Err(Error::corrupted(format!(
                "process slot {slot} drops a pin of record {rec:#x} it does not hold"
            )));
        };
        if new == 0 {
            self.delete_pin_entry(s, table, cap, e)?;
            return Ok(true);
        }
        if found == 0 {
            self.set_u64(e, rec)?;
            self.set_u64(s + S_USED, self.mem.u64(s + S_USED)?.saturating_add(1))?;
        }
        self.set_u64(e + 8, new)?;
        Ok(true)
    }

    /// Empties the pin-table entry at `e`, moving later entries of its
    /// probe run back so that every entry stays reachable from its home
    /// slot (deletion without tombstones, so that a process pinning many
    /// records in turn keeps a small table).
    fn delete_pin_entry(&self, s: u64, table: u64, cap: u64, e: u64) -> Result<()> {
        let mask = cap - 1;
        let mut hole = (e - table) / ENTRY;
        let mut j = hole;
        for _ in 0..cap {
            j = (j + 1) & mask;
            let ej = table + j * ENTRY;
            let rec = self.mem.u64(ej)?;
            if rec == 0 {
                break;
            }
            let home = home(rec, cap);
            // The entry at j may fill the hole if its home is not in the
            // cyclic range (hole, j].
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                let eh = table + hole * ENTRY;
                self.set_u64(eh, rec)?;
                self.set_u64(eh + 8, self.mem.u64(ej + 8)?)?;
                hole = j;
            }
        }
        let eh = table + hole * ENTRY;
        self.set_u64(eh, 0)?;
        self.set_u64(eh + 8, 0)?;
        let used = self.mem.u64(s + S_USED)?;
        self.set_u64(s + S_USED, used.saturating_sub(1))
    }

    /// The pins counted in `slot`'s pin table: (record, count) for every
    /// entry with a non-zero count.
    pub(crate) fn counted_pins(&self, slot: u32) -> Result<Vec<(u64, u64)>> {
        let s = self.slot_off(slot)?;
        let (table, cap) = self.pin_table(s)?;
        let mut out = Vec::new();
        for i in 0..cap {
            let e = table + i * ENTRY;
            let (rec, count) = (self.mem.u64(e)?, self.mem.u64(e + 8)?);
            if rec != 0 && count > 0 {
                out.push((rec, count));
            }
        }
        Ok(out)
    }

    /// The blocks the process table owns: its slot array, every slot's pin
    /// table, and the records reserved by unfinished large inserts.
    pub(crate) fn procs_blocks(&self) -> Result<Vec<u64>> {
        let (table, len) = self.procs()?;
        let mut out = vec![table];
        for slot in 0..len as u32 {
            let s = table + slot as u64 * SLOT;
            if self.mem.u32(s + S_PID)? == 0 {
                continue;
            }
            let (pins, _) = self.pin_table(s)?;
            if pins != 0 {
                out.push(pins);
            }
            for r in 0..RESERVATIONS {
                let rec = self.mem.u64(s + S_RESERVED + 8 * r)?;
                if rec != 0 {
                    out.push(rec);
                }
            }
        }
        Ok(out)
    }

    /// Records that the process in `slot` reserved `rec` (a large insert
    /// in progress). `false` if its reservation list is full.
    pub(crate) fn reserve(&self, slot: u32, rec: u64) -> Result<bool> {
        let s = self.slot_off(slot)?;
        for r in 0..RESERVATIONS {
            if self.mem.u64(s + S_RESERVED + 8 * r)? == 0 {
                self.set_u64(s + S_RESERVED + 8 * r, rec)?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Forgets the reservation of `rec` (published or freed).
    pub(crate) fn unreserve(&self, slot: u32, rec: u64) -> Result<()> {
        let s = self.slot_off(slot)?;
        for r in 0..RESERVATIONS {
            if self.mem.u64(s + S_RESERVED + 8 * r)? == rec {
                return self.set_u64(s + S_RESERVED + 8 * r, 0);
            }
        }
        Ok(())
    }

    /// Checks that the reservation `rec` of `slot`, read from the segment,
    /// names what a reservation can: a well-formed record that nothing can
    /// reach, so that freeing it cannot free a live object. A reserved
    /// record is unpinned (no handle can find it) and not in the directory
    /// (`put` publishes it in the same operation that forgets the
    /// reservation).
    fn check_reserved(&self, slot: u32, rec: u64) -> Result<()> {
        let invalid = |why: &str| {
            Error::corrupted(format!("process slot {slot}: reservation {rec:#x} {why}"))
        };
        self.record(rec)
            .map_err(|e| invalid(&format!("is not a record ({e})")))?;
        // `record` checked the block, so `rec + REC_PINS` cannot overflow.
        if self.mem.u32(rec + REC_PINS)? != 0 {
            return Err(invalid("is pinned or removed"));
        }
        let name_len = self.record_name_len(rec)?;
        let found = self
            .mem
            .with_bytes(rec + REC_NAME, name_len, |name| {
                (name.to_vec(), hash_name(name))
            })
            .and_then(|(name, hash)| self.lookup(&name, hash))?;
        if found.is_some_and(|f| f.rec == rec) {
            return Err(invalid("is a published object"));
        }
        Ok(())
    }

    /// One step of releasing the slot of a process that is gone (died, or
    /// detached): drops one record's pins (freeing the record if it was
    /// removed and this was its last pin), or frees one reservation, or
    /// finally frees the pin table and the slot. Returns `true` if there
    /// is more to do. Each step is small enough for one journalled
    /// operation; the caller commits between steps.
    pub(crate) fn release_step(&self, slot: u32, owner: Owner) -> Result<bool> {
        if self.slot_owner(slot)? != Some(owner) {
            return Ok(false); // already released by someone else
        }
        let s = self.slot_off(slot)?;
        let (table, cap) = self.pin_table(s)?;
        for i in 0..cap {
            let e = table + i * ENTRY;
            let (rec, count) = (self.mem.u64(e)?, self.mem.u64(e + 8)?);
            if rec != 0 && count > 0 {
                // The entry comes from the segment: it must name an
                // allocated, well-formed record before its pin word is
                // touched (`record` checks the block with overflow-checked
                // arithmetic).
                if rec < HEAP_START || count > u32::MAX as u64 || self.record(rec).is_err() {
                    return Err(Error::corrupted(format!(
                        "process slot {slot}: pin entry ({rec:#x}, {count}) is invalid"
                    )));
                }
                self.set_u64(e + 8, 0)?;
                if self.drop_pins(rec, count as u32)? {
                    self.free_released(rec)?;
                }
                return Ok(true);
            }
        }
        for r in 0..RESERVATIONS {
            let rec = self.mem.u64(s + S_RESERVED + 8 * r)?;
            if rec != 0 {
                self.check_reserved(slot, rec)?;
                self.set_u64(s + S_RESERVED + 8 * r, 0)?;
                self.free(rec)?;
                return Ok(true);
            }
        }
        if table != 0 {
            self.set_u64(s + S_TABLE, 0)?;
            self.set_u64(s + S_CAP, 0)?;
            self.set_u64(s + S_USED, 0)?;
            self.free(table)?;
        }
        self.set_u32(s + S_PID, 0)?;
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arena::tests::{HeapStore, Rng};
    use std::collections::BTreeMap;

    #[test]
    fn pin_tables_count_exactly_and_shrink_back_to_empty() {
        let s = HeapStore::new(1 << 20);
        let a = s.arena();
        let me = Owner {
            pid: 42,
            pidns: 1,
            start: StartTime::Known(7),
        };
        let slot = a.attach(me).unwrap().unwrap();
        let mut model = BTreeMap::<u64, u64>::new();
        let mut rng = Rng(5);
        let steps = if cfg!(miri) { 300 } else { 5000 };
        for _ in 0..steps {
            // Record offsets only need to be distinct, non-zero multiples
            // of 8 here: the table never dereferences them.
            let rec = HEAP_START + 8 * (rng.next() % 200);
            let held = model.get(&rec).copied().unwrap_or(0);
            if held > 0 && rng.next() % 2 == 0 {
                assert!(a.count_pin(slot, rec, -1).unwrap());
                model.insert(rec, held - 1);
            } else {
                assert!(a.count_pin(slot, rec, 1).unwrap());
                model.insert(rec, held + 1);
            }
            model.retain(|_, n| *n > 0);
        }
        let mut counted: Vec<(u64, u64)> = a.counted_pins(slot).unwrap();
        counted.sort();
        assert_eq!(
            counted,
            model.iter().map(|(&r, &n)| (r, n)).collect::<Vec<_>>()
        );
        for (&rec, &n) in &model {
            for _ in 0..n {
                assert!(a.count_pin(slot, rec, -1).unwrap());
            }
        }
        assert!(a.counted_pins(slot).unwrap().is_empty());
        let s_off = a.slot_off(slot).unwrap();
        assert_eq!(a.mem.u64(s_off + S_USED).unwrap(), 0);
        // Dropping a pin the process does not hold is corruption.
        assert!(matches!(
            a.count_pin(slot, HEAP_START + 8, -1),
            Err(Error::Corrupted { .. })
        ));
        // Releasing the slot frees its table.
        while a.release_step(slot, me).unwrap() {}
        assert_eq!(a.slot_owner(slot).unwrap(), None);
        a.check_heap().unwrap();
    }

    fn owner() -> Owner {
        Owner {
            pid: 42,
            pidns: 1,
            start: StartTime::Known(7),
        }
    }

    // Regression (review item 7): a pin table capacity of 1 passes the
    // power-of-two check, and `home` shifted by 64 - 0 ("attempt to shift
    // right with overflow" in debug builds).
    #[test]
    fn a_pin_table_of_one_entry_read_from_the_segment_does_not_overflow() {
        let s = HeapStore::new(1 << 20);
        let a = s.arena();
        let slot = a.attach(owner()).unwrap().unwrap();
        let so = a.slot_off(slot).unwrap();
        // A capacity of 1 over the 16-entry table no longer matches the
        // table's block (see `Arena::holds`)...
        a.mem.set_u64(so + S_CAP, 1).unwrap();
        assert!(matches!(
            a.count_pin(slot, HEAP_START + 64, 1),
            Err(Error::Corrupted { .. })
        ));
        // ...but a one-entry table in a block of its own does.
        let one = a.alloc(ENTRY).unwrap();
        a.mem.zero(one, ENTRY).unwrap();
        a.mem.set_u64(so + S_TABLE, one).unwrap();
        a.mem.set_u64(so + S_USED, 0).unwrap();
        assert_eq!(home(u64::MAX, 1), 0);
        // Whatever it answers, it answers (no panic), and a second pin of
        // another record finds the one entry taken.
        let first = a.count_pin(slot, HEAP_START + 64, 1);
        assert!(first.is_ok(), "{first:?}");
        let _ = a.count_pin(slot, HEAP_START + 128, 1);
        let _ = a.counted_pins(slot);
        let _ = a.release_step(slot, owner());
    }

    // Regression (corruption sweep): releasing a dead process's slot freed
    // whatever its reservation words named. A corrupted reservation that
    // named a published object freed it while the directory still listed
    // it, and the next allocation overwrote it. A reservation is freed only
    // if it is a well-formed record that nothing can reach: unpinned and
    // not in the directory.
    #[test]
    fn a_reservation_naming_a_published_object_is_corrupted_not_freed() {
        use crate::arena::dir::hash_name;
        let s = HeapStore::new(1 << 20);
        let a = s.arena();
        let t = crate::arena::tests::register(&a, "u64", 8, 8);
        let (live, value) = a.new_record(b"live", t, false, 1).unwrap();
        a.mem.set_u64(value, 77).unwrap();
        a.publish(hash_name(b"live"), live).unwrap();
        let (pinned, _) = a.new_record(b"pinned", t, false, 1).unwrap();
        a.publish(hash_name(b"pinned"), pinned).unwrap();
        a.pin(pinned).unwrap();
        let found = a.lookup(b"pinned", hash_name(b"pinned")).unwrap().unwrap();
        a.remove(&found).unwrap();
        let slot = a.attach(owner()).unwrap().unwrap();
        let so = a.slot_off(slot).unwrap();
        let fields = |rec: u64| a.mem.read_bytes(rec - 8, 32 + 8).unwrap();
        let (live_before, pinned_before) = (fields(live), fields(pinned));
        // A published object, a removed one still pinned, a free block.
        let freed = a.alloc(24).unwrap();
        let _keep = a.alloc(24).unwrap();
        a.free(freed).unwrap();
        for rec in [live, pinned, freed] {
            a.mem.set_u64(so + S_RESERVED, rec).unwrap();
            let r = a.release_step(slot, owner());
            assert!(matches!(r, Err(Error::Corrupted { .. })), "{rec:#x}: {r:?}");
        }
        assert_eq!(fields(live), live_before);
        assert_eq!(fields(pinned), pinned_before);
        assert_eq!(a.mem.u64(value).unwrap(), 77);
        assert!(a.lookup(b"live", hash_name(b"live")).unwrap().is_some());
        // A genuine reservation (allocated, unpublished) is still freed.
        let (reserved, _) = a.new_record(b"reserved", t, false, 1).unwrap();
        a.mem.set_u64(so + S_RESERVED, reserved).unwrap();
        while a.release_step(slot, owner()).unwrap() {}
        assert!(a.payload_size(reserved).is_err(), "freed");
        a.check_heap().unwrap();
    }

    // Regression (review item 7): a pin entry whose record offset is near
    // u64::MAX made `rec + REC_PINS` overflow: a panic in debug builds, and
    // in release a wrap to offset 8, a write into the header's version.
    #[test]
    fn a_pin_entry_near_u64_max_is_corrupted_not_a_write_into_the_header() {
        let s = HeapStore::new(1 << 20);
        let a = s.arena();
        let slot = a.attach(owner()).unwrap().unwrap();
        let so = a.slot_off(slot).unwrap();
        let (table, _) = a.pin_table(so).unwrap();
        let header = a.mem.read_bytes(0, 64).unwrap();
        for rec in [u64::MAX - 3, u64::MAX - 11, u64::MAX, 1 << 60] {
            a.mem.set_u64(table, rec).unwrap();
            a.mem.set_u64(table + 8, 1).unwrap();
            assert!(
                matches!(a.release_step(slot, owner()), Err(Error::Corrupted { .. })),
                "{rec:#x}"
            );
            assert_eq!(a.mem.read_bytes(0, 64).unwrap(), header, "{rec:#x}");
        }
    }
}
