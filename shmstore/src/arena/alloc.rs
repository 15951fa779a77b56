//! The allocator: boundary-tagged blocks, segregated free lists, coalescing.
//!
//! # Blocks
//!
//! The heap runs from [`HEAP_START`] to `top`; past `top` lies never-used
//! space, committed lazily. Every block starts with a header word:
//!
//! | bits  | meaning                                          |
//! |-------|--------------------------------------------------|
//! | 0     | `INUSE`: this block is allocated                 |
//! | 1     | `PREV_INUSE`: the block just before is allocated |
//! | 2     | `FAST`: (with `INUSE`) free, on a fast list      |
//! | 3..64 | block size in bytes (a multiple of 8, ≥ 32)      |
//!
//! An allocated block's payload starts 8 bytes after its header. A free block
//! holds `next` and `prev` offsets of its bin's doubly linked list at +8 and
//! +16, and its size again in its last word (the footer), so that freeing the
//! block after it can find its start and merge. Two free blocks are never
//! adjacent, and the block just below `top` is never free (freeing it lowers
//! `top` instead).
//!
//! # Fast lists
//!
//! A freed block of at most 1024 bytes does not merge with its neighbours:
//! it keeps its `INUSE` bit (so neighbours treat it as allocated), gains
//! `FAST`, and is pushed on a singly linked list of blocks of exactly its
//! size, its link at +8. An allocation of that size pops it again. Both
//! touch only the block and the list head, which makes the common
//! allocate/free cycle of small objects a few instructions and one cache
//! line. When a request finds no free block and no room at `top`, every
//! parked block is released into the bins with merging ("consolidation")
//! and the request is tried again, so space freed in small pieces is never
//! lost to large requests. Each parked block is consolidated at most once
//! per free, so the work is amortised O(1). Under the journal (see
//! [`journal`](super::journal)) the operation is undone first and the
//! consolidation runs in committed steps of its own.
//!
//! # Bins
//!
//! Sizes 32..=1024 have one exact bin per 8 bytes (a pop is O(1)); larger
//! sizes share a bin per power of two, searched best-fit. A bitmap of
//! non-empty bins finds the next usable bin in a few instructions.

use super::header::{Header, HEAP_START, OFF_BINS, OFF_BITMAP, OFF_COMMITTED, OFF_FAST};
use super::Arena;
use crate::{Error, Result};

pub(crate) const INUSE: u64 = 1;
const PREV_INUSE: u64 = 2;
/// With `INUSE`: the block is free, parked on a fast list.
pub(crate) const FAST: u64 = 4;
pub(crate) const FLAGS: u64 = 7;
/// Smallest block: header, two links, footer.
pub(crate) const MIN_BLOCK: u64 = 32;
/// Largest size with an exact bin.
const SMALL_MAX: u64 = 1024;
const SMALL_BINS: usize = ((SMALL_MAX - MIN_BLOCK) / 8 + 1) as usize;
/// Number of bins: exact small bins, then one per power of two up to 2^47.
pub(crate) const NBINS: usize = SMALL_BINS + 38;
/// Number of fast lists: one per small size.
pub(crate) const NFAST: usize = SMALL_BINS;
/// Granularity of committing pages as the heap grows.
const COMMIT_CHUNK: u64 = 1 << 20;
/// Parked blocks merged per committed step of a consolidation (each logs
/// about a dozen words; the journal holds 1024).
const CONSOLIDATE_STEP: u64 = 32;
/// Granularity of committing when a whole chunk does not fit.
const PAGE: u64 = 4096;

fn bin_index(size: u64) -> usize {
    if size <= SMALL_MAX {
        ((size - MIN_BLOCK) / 8) as usize
    } else {
        let log = 63 - size.leading_zeros() as usize; // ≥ 10
        (SMALL_BINS + log - 10).min(NBINS - 1)
    }
}

/// The block size that holds `payload` bytes.
pub(crate) fn block_size(payload: u64) -> Option<u64> {
    let s = payload.checked_add(8 + 7)? & !7;
    Some(s.max(MIN_BLOCK))
}

/// `true` if a block of `size` bytes can be the one `alloc(payload)`
/// returned: at least [`block_size`], and less than a minimum block more
/// (the slack `take_free` hands out rather than split off a block too small
/// to stand alone; the fast lists and `top` give exact sizes).
pub(crate) fn is_block_for(size: u64, payload: u64) -> bool {
    block_size(payload).is_some_and(|need| size >= need && size - need < MIN_BLOCK)
}

impl Arena<'_> {
    fn bin_head_off(idx: usize) -> u64 {
        OFF_BINS + 8 * idx as u64
    }

    fn set_bit(&self, idx: usize, on: bool) -> Result<()> {
        let off = OFF_BITMAP + 8 * (idx / 64) as u64;
        let w = self.mem.u64(off)?;
        let bit = 1u64 << (idx % 64);
        self.set_u64(off, if on { w | bit } else { w & !bit })
    }

    /// The first non-empty bin at or after `from`.
    fn next_bin(&self, from: usize) -> Result<Option<usize>> {
        let mut idx = from;
        while idx < NBINS {
            let word = self.mem.u64(OFF_BITMAP + 8 * (idx / 64) as u64)?;
            let masked = word & (!0u64 << (idx % 64));
            if masked != 0 {
                let found = (idx / 64) * 64 + masked.trailing_zeros() as usize;
                return Ok((found < NBINS).then_some(found));
            }
            idx = (idx / 64 + 1) * 64;
        }
        Ok(None)
    }

    /// Reads and validates the header of the block at `blk`.
    fn block(&self, blk: u64, top: u64) -> Result<(u64, u64)> {
        let word = self.mem.u64(blk)?;
        let size = word & !FLAGS;
        if blk < HEAP_START || size < MIN_BLOCK || blk.checked_add(size).is_none_or(|e| e > top) {
            return Err(Error::corrupted(format!(
                "block at {blk:#x} has header {word:#x}: size {size} does not fit the heap [{HEAP_START:#x}, {top:#x})"
            )));
        }
        Ok((size, word & FLAGS))
    }

    /// Validates a free block found on a list and returns its size.
    fn free_block(&self, blk: u64, top: u64) -> Result<u64> {
        let (size, flags) = self.block(blk, top)?;
        if flags & INUSE != 0 || self.mem.u64(blk + size - 8)? != size {
            return Err(Error::corrupted(format!(
                "free list holds block {blk:#x} which is not a well-formed free block"
            )));
        }
        Ok(size)
    }

    /// Checks that `link`, read from a free-list node or head of bin `idx`,
    /// is 0 or a free block filed in that bin, before anything is written
    /// through it ("safe unlinking": a corrupted link must not turn into a
    /// write anywhere in the segment).
    fn check_link(&self, link: u64, idx: usize) -> Result<()> {
        if link == 0 {
            return Ok(());
        }
        let top = Header(self).top()?;
        match self.free_block(link, top) {
            Ok(size) if bin_index(size) == idx => Ok(()),
            _ => Err(Error::corrupted(format!(
                "free list {idx} links to {link:#x}, which is not a free block of that list"
            ))),
        }
    }

    fn bin_push(&self, blk: u64, size: u64) -> Result<()> {
        let idx = bin_index(size);
        let head_off = Self::bin_head_off(idx);
        let head = self.mem.u64(head_off)?;
        self.check_link(head, idx)?;
        if head != 0 && self.mem.u64(head + 16)? != 0 {
            return Err(Error::corrupted(format!(
                "head {head:#x} of free list {idx} has a predecessor"
            )));
        }
        self.set_u64(blk + 8, head)?;
        self.set_u64(blk + 16, 0)?;
        if head != 0 {
            self.set_u64(head + 16, blk)?;
        }
        self.set_u64(head_off, blk)?;
        self.set_bit(idx, true)
    }

    fn bin_unlink(&self, blk: u64, size: u64) -> Result<()> {
        let idx = bin_index(size);
        let head_off = Self::bin_head_off(idx);
        let next = self.mem.u64(blk + 8)?;
        let prev = self.mem.u64(blk + 16)?;
        self.check_link(next, idx)?;
        self.check_link(prev, idx)?;
        if (next != 0 && self.mem.u64(next + 16)? != blk)
            || (prev != 0 && self.mem.u64(prev + 8)? != blk)
        {
            return Err(Error::corrupted(format!(
                "free block {blk:#x}: its neighbours in list {idx} do not link back to it"
            )));
        }
        if prev == 0 {
            if self.mem.u64(head_off)? != blk {
                return Err(Error::corrupted(format!(
                    "free block {blk:#x} has no predecessor but is not the head of bin {idx}"
                )));
            }
            self.set_u64(head_off, next)?;
            if next == 0 {
                self.set_bit(idx, false)?;
            }
        } else {
            self.set_u64(prev + 8, next)?;
        }
        if next != 0 {
            self.set_u64(next + 16, prev)?;
        }
        Ok(())
    }

    fn write_free(&self, blk: u64, size: u64) -> Result<()> {
        self.set_u64(blk, size | PREV_INUSE)?;
        self.set_u64(blk + size - 8, size)
    }

    /// Allocates a block whose payload holds `payload` bytes and returns the
    /// payload's offset (8-byte aligned). The payload's contents are
    /// unspecified.
    pub(crate) fn alloc(&self, payload: u64) -> Result<u64> {
        let hdr = Header(self);
        let capacity = hdr.capacity()?;
        let Some(size) = block_size(payload).filter(|s| *s <= capacity) else {
            return Err(self.out_of_memory(payload.saturating_add(8))?);
        };
        let blk = match self.pop_fast(size)? {
            Some(blk) => blk,
            None => self.alloc_block(size, capacity)?,
        };
        hdr.set_used(hdr.used()? + size)?;
        // The whole block, slack included (take_free may hand out more).
        let end = blk + (self.mem.u64(blk)? & !FLAGS);
        self.mark_fresh(blk + 8, end);
        Ok(blk + 8)
    }

    /// Finds a block of `size` in the bins or at `top`, consolidating the
    /// fast lists when that is the only way to succeed.
    fn alloc_block(&self, size: u64, capacity: u64) -> Result<u64> {
        let hdr = Header(self);
        if let Some(blk) = self.take_free(size, hdr.top()?)? {
            return Ok(blk);
        }
        match self.bump(size, hdr.top()?, capacity) {
            Err(Error::OutOfMemory { .. }) if hdr.fast_count()? > 0 && self.journaled => {
                // Merging every parked block may be far more work than the
                // journal holds: ask the caller to undo this operation,
                // consolidate in steps of its own, and run it again.
                self.consolidation_requested.set(true);
                Err(self.out_of_memory(size)?)
            }
            Err(Error::OutOfMemory { .. }) if hdr.fast_count()? > 0 => {
                self.consolidate()?;
                match self.take_free(size, hdr.top()?)? {
                    Some(blk) => Ok(blk),
                    None => self.bump(size, hdr.top()?, capacity),
                }
            }
            other => other,
        }
    }

    /// `true` (once) if an allocation failed only for want of
    /// consolidation.
    pub(crate) fn take_consolidation_request(&self) -> bool {
        self.consolidation_requested.replace(false)
    }

    /// Consolidates in steps of at most [`CONSOLIDATE_STEP`] blocks, each
    /// committed on its own: merging parked blocks changes no contents, so
    /// a crash between steps leaves a consistent, partly merged heap.
    pub(crate) fn consolidate_in_steps(&self) -> Result<()> {
        while Header(self).fast_count()? > 0 {
            self.consolidate_some(CONSOLIDATE_STEP)?;
            self.commit_journal()?;
        }
        Ok(())
    }

    fn fast_head_off(size: u64) -> u64 {
        OFF_FAST + 8 * bin_index(size) as u64
    }

    /// Pops a parked block of exactly `size` bytes.
    fn pop_fast(&self, size: u64) -> Result<Option<u64>> {
        if size > SMALL_MAX {
            return Ok(None);
        }
        let head_off = Self::fast_head_off(size);
        let blk = self.mem.u64(head_off)?;
        if blk == 0 {
            return Ok(None);
        }
        let top = Header(self).top()?;
        let (found, flags) = self.block(blk, top)?;
        if found != size || flags & (INUSE | FAST) != INUSE | FAST {
            return Err(Error::corrupted(format!(
                "fast list for {size}-byte blocks holds block {blk:#x} with header {:#x}",
                found | flags
            )));
        }
        self.set_u64(head_off, self.mem.u64(blk + 8)?)?;
        self.set_u64(blk, size | (flags & !FAST))?;
        // The link is about to become payload: keep it for a rollback.
        self.preserve(blk + 8)?;
        let hdr = Header(self);
        hdr.set_fast_count(hdr.fast_count()?.saturating_sub(1))?;
        Ok(Some(blk))
    }

    /// Releases every parked block into the bins, merging neighbours.
    pub(crate) fn consolidate(&self) -> Result<()> {
        self.consolidate_some(u64::MAX)
    }

    /// Releases up to `max` parked blocks into the bins.
    fn consolidate_some(&self, max: u64) -> Result<()> {
        let hdr = Header(self);
        let count = hdr.fast_count()?;
        let mut done = 0u64;
        for idx in 0..NFAST {
            let head_off = OFF_FAST + 8 * idx as u64;
            loop {
                let blk = self.mem.u64(head_off)?;
                if blk == 0 {
                    break;
                }
                if done == max {
                    return hdr.set_fast_count(count - done);
                }
                done += 1;
                if done > count {
                    return Err(Error::corrupted(format!(
                        "fast lists hold more blocks than the {count} counted (a cycle?)"
                    )));
                }
                let top = hdr.top()?;
                let (size, flags) = self.block(blk, top)?;
                if flags & (INUSE | FAST) != INUSE | FAST || bin_index(size) != idx {
                    return Err(Error::corrupted(format!(
                        "fast list {idx} holds block {blk:#x} with header {:#x}",
                        size | flags
                    )));
                }
                self.set_u64(head_off, self.mem.u64(blk + 8)?)?;
                self.set_u64(blk, size | (flags & !FAST))?;
                self.release(blk, size, flags & !FAST)?;
            }
        }
        if done != count {
            return Err(Error::corrupted(format!(
                "header counts {count} parked blocks, the fast lists hold {done}"
            )));
        }
        hdr.set_fast_count(0)
    }

    fn out_of_memory(&self, requested: u64) -> Result<Error> {
        let hdr = Header(self);
        let capacity = hdr.capacity()?;
        Ok(Error::OutOfMemory {
            requested,
            free: capacity.saturating_sub(HEAP_START + hdr.used()?),
            capacity,
        })
    }

    /// Takes a free block of at least `size` bytes off the bins, splitting
    /// off the rest.
    fn take_free(&self, size: u64, top: u64) -> Result<Option<u64>> {
        let want = bin_index(size);
        let mut idx = want;
        let limit = (top - HEAP_START) / MIN_BLOCK + 1;
        let (blk, found) = loop {
            let Some(i) = self.next_bin(idx)? else {
                return Ok(None);
            };
            let mut cur = self.mem.u64(Self::bin_head_off(i))?;
            let mut best: Option<(u64, u64)> = None;
            let mut steps = 0u64;
            while cur != 0 {
                let s = self.free_block(cur, top)?;
                if s >= size && best.is_none_or(|(_, b)| s < b) {
                    best = Some((cur, s));
                    if s == size || i != want {
                        break;
                    }
                }
                steps += 1;
                if steps > limit {
                    return Err(Error::corrupted(format!(
                        "free list of bin {i} has a cycle"
                    )));
                }
                cur = self.mem.u64(cur + 8)?;
            }
            match best {
                Some(b) => break b,
                None => idx = i + 1,
            }
        };
        self.bin_unlink(blk, found)?;
        // Links and footer are about to become payload: keep them for a
        // rollback.
        self.preserve(blk + 8)?;
        self.preserve(blk + 16)?;
        self.preserve(blk + found - 8)?;
        let flags = self.mem.u64(blk)? & PREV_INUSE;
        if found - size >= MIN_BLOCK {
            self.set_u64(blk, size | INUSE | flags)?;
            self.write_free(blk + size, found - size)?;
            self.bin_push(blk + size, found - size)?;
        } else {
            self.set_u64(blk, found | INUSE | flags)?;
            let next = blk + found;
            if next < top {
                let w = self.mem.u64(next)?;
                self.set_u64(next, w | PREV_INUSE)?;
            }
            // The whole block is used: account the slack too.
            if found != size {
                let hdr = Header(self);
                hdr.set_used(hdr.used()? + found - size)?;
            }
        }
        Ok(Some(blk))
    }

    /// Carves a block from `top`, committing pages as needed.
    fn bump(&self, size: u64, top: u64, capacity: u64) -> Result<u64> {
        let hdr = Header(self);
        let new_top = match top.checked_add(size) {
            Some(t) if t <= capacity => t,
            _ => return Err(self.out_of_memory(size)?),
        };
        let committed = hdr.committed()?;
        if new_top > committed {
            let chunked = new_top
                .div_ceil(COMMIT_CHUNK)
                .saturating_mul(COMMIT_CHUNK)
                .min(capacity);
            let target = match (self.commit)(committed, chunked) {
                Ok(()) => chunked,
                // A nearly full /dev/shm may still hold the pages this block
                // needs, if not a whole chunk.
                Err(Error::NoSpace { .. }) if new_top.next_multiple_of(PAGE) < chunked => {
                    let exact = new_top.next_multiple_of(PAGE);
                    (self.commit)(committed, exact)?;
                    exact
                }
                Err(e) => return Err(e),
            };
            // Everything below `committed` was backed before (the
            // operation began with `sync_backed`): now all of it up to
            // `target` is.
            self.mem.raise_backed(target);
            hdr.set_committed(target)?;
        }
        self.set_u64(top, size | INUSE | PREV_INUSE)?;
        hdr.set_top(new_top)?;
        Ok(top)
    }

    /// `true` if `[off, off + len)` is a table the header (or a process
    /// slot) may point to: the payload of an allocated block of exactly
    /// that size (give or take the allocator's slack), in the heap's
    /// committed pages, 8-aligned.
    ///
    /// Every table is one allocation of its own (`alloc(len)`), so an
    /// offset that is not (it points into an object, into another table,
    /// or into free space) is corrupted: without this check, the table's
    /// next write would land in whatever lies there. Checking "committed"
    /// (rather than only the mapping's bounds) keeps a corrupted pointer
    /// from reaching pages that were never committed, which could fault on
    /// a full `/dev/shm`; committed pages are never given back, so a range
    /// that passed stays valid.
    pub(crate) fn holds(&self, off: u64, len: u64) -> bool {
        Header(self)
            .top()
            .is_ok_and(|top| self.holds_below(off, len, top))
    }

    /// [`Arena::holds`] with the heap's top given: the journal is found this
    /// way with the raw `top` word, which a crash between writing `top` and
    /// its check word leaves disagreeing until the journal rolls it back.
    pub(crate) fn holds_below(&self, off: u64, len: u64, top: u64) -> bool {
        let committed = self.mem.u64(OFF_COMMITTED).unwrap_or(0);
        off >= HEAP_START
            && off % 8 == 0
            && off.checked_add(len).is_some_and(|end| end <= committed)
            && self
                .payload_size_below(off, top)
                .is_ok_and(|payload| is_block_for(payload + 8, len))
    }

    /// The payload size of the allocated block whose payload is at `payload`.
    pub(crate) fn payload_size(&self, payload: u64) -> Result<u64> {
        self.payload_size_below(payload, Header(self).top()?)
    }

    fn payload_size_below(&self, payload: u64, top: u64) -> Result<u64> {
        let blk = payload.wrapping_sub(8);
        let (size, flags) = self.block(blk, top)?;
        if flags & INUSE == 0 || flags & FAST != 0 {
            return Err(Error::corrupted(format!(
                "offset {payload:#x} is not an allocated block"
            )));
        }
        Ok(size - 8)
    }

    /// Frees the block whose payload is at `payload`, merging it with free
    /// neighbours (or with `top`).
    pub(crate) fn free(&self, payload: u64) -> Result<()> {
        let hdr = Header(self);
        let top = hdr.top()?;
        let blk = payload.wrapping_sub(8);
        let (size, flags) = self.block(blk, top)?;
        if flags & INUSE == 0 || flags & FAST != 0 {
            return Err(Error::corrupted(format!(
                "double free: block {blk:#x} is already free"
            )));
        }
        // The block after an allocated one says so (`PREV_INUSE`): a size
        // word that grew would otherwise free the start of the neighbour
        // with this block, and the next allocation of it would overwrite
        // that neighbour.
        let next = blk + size;
        if next < top && self.block(next, top)?.1 & PREV_INUSE == 0 {
            return Err(Error::corrupted(format!(
                "block {blk:#x} of {size} bytes is not followed by a block that knows it is allocated"
            )));
        }
        hdr.set_used(hdr.used()?.checked_sub(size).ok_or_else(|| {
            Error::corrupted("allocator's used-bytes counter is below a live block's size")
        })?)?;
        if size <= SMALL_MAX {
            let head_off = Self::fast_head_off(size);
            self.set_u64(blk + 8, self.mem.u64(head_off)?)?;
            self.set_u64(blk, size | flags | FAST)?;
            self.set_u64(head_off, blk)?;
            return hdr.set_fast_count(hdr.fast_count()?.saturating_add(1));
        }
        self.release(blk, size, flags)
    }

    /// Returns an allocated block (header already validated: `size`,
    /// `flags`) to the bins, merging it with free neighbours or with `top`.
    fn release(&self, mut blk: u64, mut size: u64, flags: u64) -> Result<()> {
        let hdr = Header(self);
        let top = hdr.top()?;
        if flags & PREV_INUSE == 0 {
            let prev_size = self.mem.u64(blk - 8)?;
            let prev = blk.saturating_sub(prev_size);
            if self.free_block(prev, top).ok() != Some(prev_size) {
                return Err(Error::corrupted(format!(
                    "block {blk:#x} says its predecessor is free, but no free block of {prev_size} bytes ends there"
                )));
            }
            self.bin_unlink(prev, prev_size)?;
            blk = prev;
            size += prev_size;
        }
        let next = blk + size;
        if next == top {
            hdr.set_top(blk)?;
            return Ok(());
        }
        let (next_size, next_flags) = self.block(next, top)?;
        if next_flags & INUSE == 0 {
            self.free_block(next, top)?;
            self.bin_unlink(next, next_size)?;
            size += next_size;
        } else {
            self.set_u64(next, (next_size | next_flags) & !PREV_INUSE)?;
        }
        self.write_free(blk, size)?;
        self.bin_push(blk, size)
    }

    /// Every allocated block (not free, not parked): (payload offset,
    /// block size), by walking the heap from its start to `top`.
    pub(crate) fn allocated_blocks(&self) -> Result<Vec<(u64, u64)>> {
        let top = Header(self).top()?;
        let mut out = Vec::new();
        let mut blk = HEAP_START;
        while blk < top {
            let (size, flags) = self.block(blk, top)?;
            if flags & INUSE != 0 && flags & FAST == 0 {
                out.push((blk + 8, size));
            }
            blk += size;
        }
        Ok(out)
    }

    /// Walks every block from the heap start to `top` and every bin,
    /// checking that they agree. Returns (allocated blocks, free blocks,
    /// allocated bytes, free bytes).
    pub(crate) fn check_heap(&self) -> Result<(u64, u64, u64, u64)> {
        let hdr = Header(self);
        let top = hdr.top()?;
        let (mut used_blocks, mut used) = (0, 0);
        let (mut binned, mut binned_bytes, mut fast, mut fast_bytes) = (0u64, 0u64, 0u64, 0u64);
        let mut blk = HEAP_START;
        let mut prev_inuse = true;
        while blk < top {
            let (size, flags) = self.block(blk, top)?;
            if (flags & PREV_INUSE != 0) != prev_inuse {
                return Err(Error::corrupted(format!(
                    "block {blk:#x}: PREV_INUSE bit disagrees with the block before it"
                )));
            }
            prev_inuse = flags & INUSE != 0;
            if flags & FAST != 0 {
                if !prev_inuse || size > SMALL_MAX {
                    return Err(Error::corrupted(format!(
                        "block {blk:#x} has header {:#x}: FAST on a block that cannot be parked",
                        size | flags
                    )));
                }
                fast += 1;
                fast_bytes += size;
            } else if prev_inuse {
                used_blocks += 1;
                used += size;
            } else {
                self.free_block(blk, top)?;
                binned += 1;
                binned_bytes += size;
            }
            blk += size;
        }
        if !prev_inuse {
            return Err(Error::corrupted("the block just below top is free"));
        }
        if used != hdr.used()? {
            return Err(Error::corrupted(format!(
                "header says {} bytes are allocated, the heap walk found {used}",
                hdr.used()?
            )));
        }
        if fast != hdr.fast_count()? {
            return Err(Error::corrupted(format!(
                "header counts {} parked blocks, the heap walk found {fast}",
                hdr.fast_count()?
            )));
        }
        let (mut listed, mut listed_bytes) = (0u64, 0u64);
        for idx in 0..NBINS {
            let mut cur = self.mem.u64(Self::bin_head_off(idx))?;
            let mut prev = 0;
            while cur != 0 {
                let s = self.free_block(cur, top)?;
                if bin_index(s) != idx || self.mem.u64(cur + 16)? != prev {
                    return Err(Error::corrupted(format!(
                        "free block {cur:#x} is misfiled in bin {idx} or its back link is wrong"
                    )));
                }
                listed += 1;
                listed_bytes += s;
                if listed > binned {
                    return Err(Error::corrupted(
                        "free lists hold more blocks than the heap",
                    ));
                }
                prev = cur;
                cur = self.mem.u64(cur + 8)?;
            }
        }
        if listed != binned || listed_bytes != binned_bytes {
            return Err(Error::corrupted(format!(
                "the heap has {binned} free blocks, the free lists {listed}"
            )));
        }
        let mut parked = 0u64;
        for idx in 0..NFAST {
            let mut cur = self.mem.u64(OFF_FAST + 8 * idx as u64)?;
            while cur != 0 {
                let (size, flags) = self.block(cur, top)?;
                if flags & (INUSE | FAST) != INUSE | FAST || bin_index(size) != idx {
                    return Err(Error::corrupted(format!(
                        "fast list {idx} holds block {cur:#x} with header {:#x}",
                        size | flags
                    )));
                }
                parked += 1;
                if parked > fast {
                    return Err(Error::corrupted(
                        "fast lists hold more blocks than the heap",
                    ));
                }
                cur = self.mem.u64(cur + 8)?;
            }
        }
        if parked != fast {
            return Err(Error::corrupted(format!(
                "the heap has {fast} parked blocks, the fast lists {parked}"
            )));
        }
        Ok((used_blocks, binned + fast, used, binned_bytes + fast_bytes))
    }
}
