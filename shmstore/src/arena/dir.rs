//! The directory: an open-addressing hash table from names to records.
//!
//! # Slots
//!
//! The table is an array of `u64` slots, a power of two long, probed
//! linearly. A slot packs the top 24 bits of the name's hash (so most
//! mismatches are rejected without touching the record) with the record's
//! offset divided by 8:
//!
//! | bits   | meaning                         |
//! |--------|---------------------------------|
//! | 0..40  | record offset / 8               |
//! | 40..64 | hash tag (hash >> 40)           |
//!
//! `0` is an empty slot and `1` a tombstone (offset 8 lies in the header, so
//! neither can be a record). The table grows to keep live + tombstone slots
//! at most 3/4 of it. Offsets up to 2^43 bytes (8 TiB) can be encoded.
//!
//! A name's home slot is given by the *top* bits of its hash (a table of
//! 2^k slots uses the top k bits). The tag holds the top 24 bits, so while a
//! table has at most 2^24 slots, growing it moves every slot from its tag
//! alone, without reading a record or hashing a name again.
//!
//! # Records
//!
//! Each named object is one allocation, its record:
//!
//! | offset       | size | field                                        |
//! |--------------|------|----------------------------------------------|
//! | 0            | 8    | element count (1 for a single object)        |
//! | 8            | 4    | index of the type in the registry            |
//! | 12           | 4    | pin word, see below                          |
//! | 16           | 2    | name length                                  |
//! | 18           | 2    | flags: 1 slice                               |
//! | 20           | 4    | offset of the value from the record          |
//! | 24           | n    | name bytes                                   |
//! | `value_rel`  |      | the value, aligned for its type              |
//!
//! The pin word counts live handles (of every process; each process also
//! counts its own in the process table) and marks removal, so that a
//! removed record is freed by exactly one party: `remove` if no handle pins
//! it, else the unpin that takes the word from `REMOVED | n` to `REMOVED`.
//!
//! | bits  | meaning                                             |
//! |-------|-----------------------------------------------------|
//! | 0..31 | pins: handles to the value in any process           |
//! | 31    | removed: out of the directory, free at last unpin   |

use super::header::{Header, HEAP_START};
use super::Arena;
use crate::{Error, Result};

pub(crate) const REC_LEN: u64 = 0;
pub(crate) const REC_TYPE: u64 = 8;
pub(crate) const REC_PINS: u64 = 12;
pub(crate) const REC_NAME_LEN: u64 = 16;
pub(crate) const REC_FLAGS: u64 = 18;
pub(crate) const REC_VALUE_REL: u64 = 20;
pub(crate) const REC_NAME: u64 = 24;

/// Record flag: the value is a slice.
pub(crate) const FLAG_SLICE: u16 = 1;
/// Pin word: the count of pins.
pub(crate) const PIN_COUNT: u32 = (1 << 31) - 1;
/// Pin word: removed from the directory, freed when the last pin goes.
pub(crate) const PIN_REMOVED: u32 = 1 << 31;

const EMPTY: u64 = 0;
const TOMB: u64 = 1;
const OFF_BITS: u32 = 40;
const OFF_MASK: u64 = (1 << OFF_BITS) - 1;
/// The largest segment whose offsets a slot can hold.
pub(crate) const MAX_CAPACITY: u64 = 1 << (OFF_BITS + 3);
/// Slots of a new store's directory.
pub(crate) const INITIAL_SLOTS: u64 = 64;

/// Hashes an object name (64-bit; FxHash-style mixing then a final
/// avalanche so that the low bits, which pick the slot, depend on every
/// byte).
pub(crate) fn hash_name(name: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = name.len() as u64;
    let mut chunks = name.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = (h.rotate_left(5) ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// Bits of the hash kept in a slot.
const TAG_BITS: u32 = 64 - OFF_BITS;

/// The home slot of `hash` in a table of `slots` (a power of two) slots:
/// the hash's top bits.
fn home(hash: u64, slots: u64) -> u64 {
    let k = slots.trailing_zeros();
    if k == 0 {
        0
    } else {
        hash >> (64 - k)
    }
}

fn slot_for(hash: u64, rec: u64) -> u64 {
    (hash >> OFF_BITS) << OFF_BITS | rec >> 3
}

/// Where a name is, or is not.
pub(crate) struct Found {
    /// Index of the slot that holds it.
    pub(crate) slot: u64,
    /// Offset of its record.
    pub(crate) rec: u64,
}

impl Arena<'_> {
    /// Allocates an empty table of `slots` slots.
    fn new_table(&self, slots: u64) -> Result<u64> {
        let bytes = slots * 8;
        let table = self.alloc(bytes)?;
        self.zero_fresh(table, bytes)?;
        Ok(table)
    }

    /// Creates the directory of a new store.
    pub(crate) fn dir_init(&self) -> Result<()> {
        let hdr = Header(self);
        let table = self.new_table(INITIAL_SLOTS)?;
        hdr.set_dir_table(table)?;
        hdr.set_dir_cap(INITIAL_SLOTS)?;
        hdr.set_dir_live(0)?;
        hdr.set_dir_tombs(0)
    }

    /// The table and its slot count, validated.
    fn table(&self) -> Result<(u64, u64)> {
        let hdr = Header(self);
        let (table, cap) = (hdr.dir_table()?, hdr.dir_cap()?);
        let (live, tombs) = (hdr.dir_live()?, hdr.dir_tombs()?);
        if !cap.is_power_of_two()
            || !(INITIAL_SLOTS..=MAX_CAPACITY / 8).contains(&cap)
            || !self.holds(table, cap * 8)
            || live.checked_add(tombs).is_none_or(|used| used > cap)
        {
            return Err(Error::corrupted(format!(
                "directory header is invalid: table {table:#x}, {cap} slots, {live} live, {tombs} tombstones"
            )));
        }
        Ok((table, cap))
    }

    /// The directory's table (its block).
    pub(crate) fn dir_table_block(&self) -> Result<u64> {
        Ok(self.table()?.0)
    }

    /// Checks the directory's header words and that its table lies inside
    /// the region, without reading the table.
    pub(crate) fn dir_validate(&self) -> Result<()> {
        self.table().map(|_| ())
    }

    /// The record a live slot points to, checked to be inside the heap.
    fn slot_record(&self, slot: u64) -> Result<u64> {
        let rec = (slot & OFF_MASK) << 3;
        if rec < HEAP_START || rec >= Header(self).top()? {
            return Err(Error::corrupted(format!(
                "directory slot {slot:#x} points outside the heap"
            )));
        }
        Ok(rec)
    }

    /// The name of the record at `rec`, checked against the record's block.
    pub(crate) fn record_name_len(&self, rec: u64) -> Result<u64> {
        let len = self.mem.u16(rec + REC_NAME_LEN)? as u64;
        if REC_NAME + len > self.payload_size(rec)? {
            return Err(Error::corrupted(format!(
                "record {rec:#x}: name of {len} bytes overruns its block"
            )));
        }
        Ok(len)
    }

    /// Looks `name` up.
    pub(crate) fn lookup(&self, name: &[u8], hash: u64) -> Result<Option<Found>> {
        let (table, cap) = self.table()?;
        let tag = hash >> OFF_BITS;
        let mut i = home(hash, cap);
        for _ in 0..cap {
            let slot = self.mem.u64(table + i * 8)?;
            if slot == EMPTY {
                return Ok(None);
            }
            if slot != TOMB && slot >> OFF_BITS == tag {
                let rec = self.slot_record(slot)?;
                let len = self.mem.u16(rec + REC_NAME_LEN)? as u64;
                if len == name.len() as u64 && self.mem.bytes_eq(rec + REC_NAME, name)? {
                    return Ok(Some(Found { slot: i, rec }));
                }
            }
            i = (i + 1) & (cap - 1);
        }
        // Every slot visited: live or tombstone, none of them `name`.
        Ok(None)
    }

    /// Adds `rec` under a name known to be absent, growing the table first
    /// if needed.
    pub(crate) fn dir_insert(&self, hash: u64, rec: u64) -> Result<()> {
        let hdr = Header(self);
        let (live, tombs) = (hdr.dir_live()?, hdr.dir_tombs()?);
        let (_, cap) = self.table()?;
        if (live + tombs + 1) * 4 > cap * 3 {
            // Double when live slots dominate; rehash in place otherwise.
            let slots = if (live + 1) * 2 > cap { cap * 2 } else { cap };
            match self.rehash(slots) {
                Ok(()) => {}
                // No room for a bigger table, but the current one still has
                // a free or tombstone slot: a full store whose objects were
                // removed must take new ones. (Probes stay bounded: a lookup
                // gives up after visiting every slot.)
                Err(Error::OutOfMemory { .. }) if live + 1 < cap => {}
                Err(e) => return Err(e),
            }
        }
        let (table, cap) = self.table()?;
        let mut i = home(hash, cap);
        for _ in 0..cap {
            let off = table + i * 8;
            let slot = self.mem.u64(off)?;
            if slot == EMPTY || slot == TOMB {
                self.set_u64(off, slot_for(hash, rec))?;
                hdr.set_dir_live(live + 1)?;
                if slot == TOMB {
                    let tombs = hdr.dir_tombs()?.checked_sub(1).ok_or_else(|| {
                        Error::corrupted("directory holds a tombstone its header does not count")
                    })?;
                    hdr.set_dir_tombs(tombs)?;
                }
                return Ok(());
            }
            i = (i + 1) & (cap - 1);
        }
        Err(Error::corrupted("directory has no free slot after growing"))
    }

    /// Moves every live slot into a new table of `slots` slots.
    fn rehash(&self, slots: u64) -> Result<()> {
        let hdr = Header(self);
        let (old, cap) = self.table()?;
        let new = self.new_table(slots)?;
        let mut live = 0;
        for i in 0..cap {
            let slot = self.mem.u64(old + i * 8)?;
            if slot == EMPTY || slot == TOMB {
                continue;
            }
            let rec = self.slot_record(slot)?;
            let hash = if slots <= 1 << TAG_BITS {
                (slot >> OFF_BITS) << OFF_BITS
            } else {
                let len = self.record_name_len(rec)?;
                self.mem.with_bytes(rec + REC_NAME, len, hash_name)?
            };
            let mut j = home(hash, slots);
            while self.mem.u64(new + j * 8)? != EMPTY {
                j = (j + 1) & (slots - 1);
            }
            self.set_u64(new + j * 8, slot)?;
            live += 1;
        }
        hdr.set_dir_table(new)?;
        hdr.set_dir_cap(slots)?;
        hdr.set_dir_live(live)?;
        hdr.set_dir_tombs(0)?;
        self.free(old)
    }

    /// Points the slot `found.slot` at `rec` instead (a record under the
    /// same name: same hash).
    pub(crate) fn dir_repoint(&self, found: &Found, hash: u64, rec: u64) -> Result<()> {
        let (table, cap) = self.table()?;
        if found.slot >= cap {
            return Err(Error::corrupted(format!(
                "directory slot {} is past the table's {cap} slots",
                found.slot
            )));
        }
        self.set_u64(table + found.slot * 8, slot_for(hash, rec))
    }

    /// Removes the slot `found.slot`.
    pub(crate) fn dir_remove(&self, found: &Found) -> Result<()> {
        let hdr = Header(self);
        let (table, _) = self.table()?;
        self.set_u64(table + found.slot * 8, TOMB)?;
        hdr.set_dir_live(hdr.dir_live()?.saturating_sub(1))?;
        hdr.set_dir_tombs(hdr.dir_tombs()?.saturating_add(1))
    }

    /// Every live record, in table order.
    pub(crate) fn records(&self) -> Result<Vec<u64>> {
        let (table, cap) = self.table()?;
        let mut out = Vec::new();
        for i in 0..cap {
            let slot = self.mem.u64(table + i * 8)?;
            if slot != EMPTY && slot != TOMB {
                out.push(self.slot_record(slot)?);
            }
        }
        Ok(out)
    }
}
