//! The intent journal: every metadata operation is all or nothing, even if
//! its process is killed at any instruction.
//!
//! While an operation runs under the header lock, every metadata word it
//! overwrites is first appended to an undo log in the segment, with its old
//! value; the operation commits by setting the log's length to zero. When a
//! process takes the header lock and learns that the previous holder died
//! (`EOWNERDEAD`), it replays the log backwards, which puts back exactly the
//! state before the dead process's operation began, and only then marks the
//! lock consistent. An operation that fails with an error is rolled back the
//! same way, so a failed insert leaves nothing behind.
//!
//! Writes into memory the operation itself allocated ("fresh" blocks) are
//! not logged: after a rollback that memory is free again and nothing reads
//! its old contents — except the words a free block keeps for the allocator
//! (its list links and footer, or a parked block's link), which are logged
//! when the block is handed out (see `Arena::preserve`).
//!
//! # Layout
//!
//! The log is an array of 16-byte entries (offset of the entry array,
//! capacity and length are header words):
//!
//! | bytes | field                                                        |
//! |-------|--------------------------------------------------------------|
//! | 0..8  | the overwritten word's offset; bits 60..64 say its kind      |
//! | 8..16 | the old value                                                |
//!
//! Kinds: 1 a `u16`, 2 a `u32`, 3 a `u64`. (Pin words too are plain
//! journalled words: every change to them happens under the header lock.)

use super::header::{Header, LOCK_SPACE, OFF_COMMITTED, OFF_JOURNAL_LEN, OFF_LOCK};
use super::Arena;
use crate::{Error, Result};

/// Entries in a store's journal: far more than the largest operation
/// writes (an insert that grows both the registry and the directory logs
/// well under a hundred words).
pub(crate) const JOURNAL_ENTRIES: u64 = 1024;
const ENTRY: u64 = 16;
const KIND_SHIFT: u32 = 60;
const OFF_MASK: u64 = (1 << KIND_SHIFT) - 1;
pub(crate) const KIND_U16: u64 = 1;
pub(crate) const KIND_U32: u64 = 2;
pub(crate) const KIND_U64: u64 = 3;
/// Fresh ranges remembered per operation; more are simply logged.
pub(crate) const FRESH_RANGES: usize = 8;

impl Arena<'_> {
    /// Creates the journal of a new store (not journalled itself).
    pub(crate) fn journal_init(&self) -> Result<()> {
        let area = self.alloc(JOURNAL_ENTRIES * ENTRY)?;
        let hdr = Header(self);
        hdr.set_journal(area)?;
        hdr.set_journal_cap(JOURNAL_ENTRIES)?;
        self.mem.set_u64(OFF_JOURNAL_LEN, 0)
    }

    /// The journal's entry array and capacity, validated once per arena.
    pub(crate) fn journal_area(&self) -> Result<(u64, u64)> {
        if let Some(area) = self.journal_area.get() {
            return Ok(area);
        }
        let area = self.read_journal_area()?;
        self.journal_area.set(Some(area));
        Ok(area)
    }

    fn read_journal_area(&self) -> Result<(u64, u64)> {
        let hdr = Header(self);
        let (area, cap) = (hdr.journal()?, hdr.journal_cap()?);
        let raw_top = self.mem.u64(super::header::OFF_TOP)?;
        if cap == 0 || !self.holds_below(area, cap.saturating_mul(ENTRY), raw_top) {
            return Err(Error::corrupted(format!(
                "intent journal header is invalid: {cap} entries at {area:#x}"
            )));
        }
        Ok((area, cap))
    }

    /// Remembers that `[start, end)` was allocated by this operation.
    pub(crate) fn mark_fresh(&self, start: u64, end: u64) {
        let n = self.nfresh.get();
        if self.journaled && n < FRESH_RANGES {
            let mut ranges = self.fresh.get();
            ranges[n] = (start, end);
            self.fresh.set(ranges);
            self.nfresh.set(n + 1);
        }
    }

    fn is_fresh(&self, off: u64) -> Result<bool> {
        // Past the heap's top as it was when the operation began lies
        // memory nothing used before it: after a rollback the top is back
        // and nothing reads there.
        let untouched = match self.untouched_from.get() {
            Some(top) => top,
            None => {
                let top = Header(self).top()?;
                self.untouched_from.set(Some(top));
                top
            }
        };
        Ok(off >= untouched || self.is_fresh_range(off, 1))
    }

    /// `true` if freshness cannot be told: an unjournalled arena, or more
    /// allocations than the remembered ranges (correct either way: only the
    /// logging of scalar writes is an optimisation).
    pub(crate) fn fresh_unknown(&self) -> bool {
        !self.journaled || self.nfresh.get() >= FRESH_RANGES
    }

    /// `true` if `[off, off + len)` lies in one fresh range.
    pub(crate) fn is_fresh_range(&self, off: u64, len: u64) -> bool {
        let ranges = self.fresh.get();
        ranges[..self.nfresh.get()]
            .iter()
            .any(|&(s, e)| s <= off && off.saturating_add(len) <= e)
    }

    /// Appends one undo entry.
    fn append(&self, tagged: u64, old: u64) -> Result<()> {
        let (area, cap) = self.journal_area()?;
        let len = self.mem.u64(OFF_JOURNAL_LEN)?;
        if len >= cap {
            return Err(Error::corrupted(format!(
                "an operation wrote more than the journal's {cap} entries"
            )));
        }
        let e = area + len * ENTRY;
        self.mem.set_u64(e, tagged)?;
        self.mem.set_u64(e + 8, old)?;
        // The length is the commit point of the entry: a crash before it
        // leaves the target word unwritten, so nothing is lost.
        self.mem.set_u64(OFF_JOURNAL_LEN, len + 1)?;
        crate::crash::step();
        Ok(())
    }

    /// Logs the old value of the `kind` word at `off` before it is
    /// overwritten, unless the operation allocated that memory itself.
    pub(crate) fn before_write(&self, off: u64, kind: u64) -> Result<()> {
        // No metadata word lives in the header lock's bytes: a write there
        // can only come from a corrupted offset, and would break the lock
        // for every process.
        if off < OFF_LOCK + LOCK_SPACE && off + 8 > OFF_LOCK {
            return Err(Error::corrupted(format!(
                "a corrupted offset {off:#x} points into the header lock"
            )));
        }
        if !self.journaled || self.is_fresh(off)? {
            return Ok(());
        }
        let old = match kind {
            KIND_U16 => self.mem.u16(off)? as u64,
            KIND_U32 => self.mem.u32(off)? as u64,
            _ => self.mem.u64(off)?,
        };
        self.append(off | kind << KIND_SHIFT, old)
    }

    /// Logs the `u64` at `off` without writing it: for the words of a free
    /// block (links, footer) that the caller is about to hand out as fresh
    /// memory, so that a rollback gives the block back intact.
    pub(crate) fn preserve(&self, off: u64) -> Result<()> {
        self.before_write(off, KIND_U64)
    }

    /// Commits the operation: its writes stay.
    pub(crate) fn commit_journal(&self) -> Result<()> {
        if !self.journaled {
            return Ok(());
        }
        crate::crash::step();
        self.mem.set_u64(OFF_JOURNAL_LEN, 0)?;
        self.forget_fresh();
        crate::crash::step();
        Ok(())
    }

    /// Undoes every logged write, newest first, and empties the journal.
    /// Returns how many entries were undone.
    ///
    /// The entries come from the segment, so every one is checked before
    /// any is applied (a bad one leaves the store as it was, and the error
    /// says so): a known kind, and a target inside the committed pages,
    /// aligned, that an operation can have journalled — never the
    /// header's identity words (magic, version, creator, ABI, state,
    /// capacity: written only while the store is formatted) nor the
    /// header lock.
    pub(crate) fn rollback(&self) -> Result<u64> {
        self.top_cache.set(None);
        let (area, cap) = self.journal_area()?;
        let len = self.mem.u64(OFF_JOURNAL_LEN)?;
        if len > cap {
            return Err(Error::corrupted(format!(
                "intent journal claims {len} entries of {cap}"
            )));
        }
        let committed = self.mem.u64(OFF_COMMITTED)?;
        for i in 0..len {
            let (off, width, _) = self.journal_entry(area, i)?;
            let journalled = off >= OFF_COMMITTED
                && (off >= OFF_LOCK + LOCK_SPACE || off + width <= OFF_LOCK)
                && off.saturating_add(width) <= committed;
            if !journalled || self.mem.ptr(off, width, width).is_err() {
                return Err(Error::corrupted(format!(
                    "intent journal entry {i} targets offset {off:#x} ({width} bytes), outside the metadata"
                )));
            }
        }
        for i in (0..len).rev() {
            let (off, width, old) = self.journal_entry(area, i)?;
            match width {
                2 => self.mem.set_u16(off, old as u16)?,
                4 => self.mem.set_u32(off, old as u32)?,
                _ => self.mem.set_u64(off, old)?,
            }
        }
        self.mem.set_u64(OFF_JOURNAL_LEN, 0)?;
        self.forget_fresh();
        self.forget_nested_frees();
        self.top_cache.set(None);
        Ok(len)
    }

    /// Entry `i` of the journal at `area`: (target offset, width in bytes,
    /// old value). An unknown kind is corrupted.
    fn journal_entry(&self, area: u64, i: u64) -> Result<(u64, u64, u64)> {
        // `i` is below the capacity `journal_area` checked the area for.
        let e = area + i * ENTRY;
        let (tagged, old) = (self.mem.u64(e)?, self.mem.u64(e + 8)?);
        let width = match tagged >> KIND_SHIFT {
            KIND_U16 => 2,
            KIND_U32 => 4,
            KIND_U64 => 8,
            kind => {
                return Err(Error::corrupted(format!(
                    "intent journal entry {i} has unknown kind {kind}"
                )))
            }
        };
        Ok((tagged & OFF_MASK, width, old))
    }

    /// Starts a new operation's notion of fresh memory.
    fn forget_fresh(&self) {
        self.nfresh.set(0);
        self.untouched_from.set(None);
    }

    /// Forgets what an undone operation meant to free afterwards.
    pub(crate) fn forget_nested_frees(&self) {
        self.nested_frees.borrow_mut().clear();
    }

    /// Entries waiting in the journal (non-zero only between a write and
    /// the commit of an operation, or after its process died).
    pub(crate) fn journal_len(&self) -> Result<u64> {
        self.mem.u64(OFF_JOURNAL_LEN)
    }
}
