//! The arena: header, allocator, directory and type registry, over any byte
//! region addressed by offsets.
//!
//! Nothing here knows about `mmap` or locks: the caller hands in a [`Mem`]
//! and a commit callback and promises that it holds the header lock (or has
//! the region to itself). So the same code runs over a segment, over a heap
//! buffer in unit tests and under Miri.

pub(crate) mod alloc;
pub(crate) mod dir;
pub(crate) mod header;
pub(crate) mod journal;
pub(crate) mod mem;
pub(crate) mod nested;
pub(crate) mod procs;
pub(crate) mod registry;
pub(crate) mod walk;

use self::dir::{
    Found, FLAG_SLICE, PIN_COUNT, PIN_REMOVED, REC_FLAGS, REC_LEN, REC_NAME, REC_NAME_LEN,
    REC_PINS, REC_TYPE, REC_VALUE_REL,
};
use self::header::*;
use self::mem::Mem;
use crate::{Error, Result};
use core::cell::Cell;

/// Commits the pages in `[from, to)` so that writing them cannot fault.
pub(crate) type Commit<'a> = &'a dyn Fn(u64, u64) -> Result<()>;

/// The metadata of one store, seen through its region.
///
/// Every method requires that the caller holds the header lock (or owns the
/// region exclusively): the arena reads and writes metadata with plain
/// loads and stores. A journalled arena (one per locked operation) logs
/// every metadata word it overwrites, so the operation can be undone (see
/// [`journal`]).
pub(crate) struct Arena<'a> {
    pub(crate) mem: Mem,
    commit: Commit<'a>,
    journaled: bool,
    fresh: Cell<[(u64, u64); journal::FRESH_RANGES]>,
    nfresh: Cell<usize>,
    consolidation_requested: Cell<bool>,
    journal_area: Cell<Option<(u64, u64)>>,
    /// `top`, once read and checked in this operation (kept by `set_top`,
    /// forgotten by a rollback): every allocator step reads it.
    pub(crate) top_cache: Cell<Option<u64>>,
    /// The heap's top when the current operation began.
    untouched_from: Cell<Option<u64>>,
    /// Nested blocks of records this operation freed, to free once it has
    /// committed (see [`Arena::free_record`]).
    nested_frees: core::cell::RefCell<Vec<walk::NestedRef>>,
}

/// Why a value cannot be published ([`Arena::link_value`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unfit {
    /// It holds a container of another store.
    Foreign,
    /// It holds a container whose buffer is gone (described).
    Broken(String),
}

/// What a record holds, validated against its block.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record {
    pub(crate) rec: u64,
    pub(crate) type_idx: u32,
    pub(crate) len: u64,
    pub(crate) flags: u16,
    pub(crate) value: u64,
    /// Set by the store when it pins the record for a handle: the pin is
    /// counted in the process table.
    pub(crate) counted: bool,
}

impl Record {
    pub(crate) fn is_slice(&self) -> bool {
        self.flags & FLAG_SLICE != 0
    }
}

/// Space accounting of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Bytes reserved for the store (its segment's length).
    pub capacity: u64,
    /// Bytes whose pages have been committed in `/dev/shm`.
    pub committed: u64,
    /// Bytes in allocated blocks, metadata included.
    pub used: u64,
    /// Bytes that can still be allocated (possibly fragmented).
    pub free: u64,
    /// Named objects and slices.
    pub objects: u64,
    /// Times a process found the header lock's previous holder dead and
    /// rolled its operation back, since the store was created.
    pub recoveries: u64,
}

/// The offset of `rec`'s pin word, computed without overflow: `rec` may
/// come from the segment (a process's pin table).
fn pins_word(rec: u64) -> Result<u64> {
    rec.checked_add(REC_PINS)
        .ok_or_else(|| Error::corrupted(format!("record offset {rec:#x} overflows")))
}

/// Bytes a record needs for a value of `bytes` bytes aligned to `align`
/// under a name of `name_len` bytes.
pub(crate) fn record_payload(name_len: u64, align: u64, bytes: u64) -> Option<u64> {
    let head = (REC_NAME + name_len).next_multiple_of(8);
    let pad = align.saturating_sub(8);
    head.checked_add(pad)?.checked_add(bytes)
}

impl<'a> Arena<'a> {
    /// The arena of the region `mem`, unjournalled: for a store being
    /// formatted, and for tests of the arena alone.
    pub(crate) fn new(mem: Mem, commit: Commit<'a>) -> Arena<'a> {
        Arena {
            mem,
            commit,
            journaled: false,
            fresh: Cell::new([(0, 0); journal::FRESH_RANGES]),
            nfresh: Cell::new(0),
            consolidation_requested: Cell::new(false),
            journal_area: Cell::new(None),
            top_cache: Cell::new(None),
            untouched_from: Cell::new(None),
            nested_frees: core::cell::RefCell::new(Vec::new()),
        }
    }

    /// The arena of the region `mem` for one operation under the header
    /// lock: every write is journalled until [`Arena::commit_journal`].
    pub(crate) fn journaled(mem: Mem, commit: Commit<'a>) -> Arena<'a> {
        Arena {
            journaled: true,
            ..Arena::new(mem, commit)
        }
    }

    /// Writes the `u64` at `off`, journalled.
    pub(crate) fn set_u64(&self, off: u64, v: u64) -> Result<()> {
        self.before_write(off, journal::KIND_U64)?;
        self.mem.set_u64(off, v)
    }

    /// Writes the `u32` at `off`, journalled.
    pub(crate) fn set_u32(&self, off: u64, v: u32) -> Result<()> {
        self.before_write(off, journal::KIND_U32)?;
        self.mem.set_u32(off, v)
    }

    /// Writes the `u16` at `off`, journalled.
    pub(crate) fn set_u16(&self, off: u64, v: u16) -> Result<()> {
        self.before_write(off, journal::KIND_U16)?;
        self.mem.set_u16(off, v)
    }

    /// Copies `bytes` into memory this operation allocated (unjournalled:
    /// see [`journal`]).
    pub(crate) fn write_fresh(&self, off: u64, bytes: &[u8]) -> Result<()> {
        debug_assert!(self.fresh_unknown() || self.is_fresh_range(off, bytes.len() as u64));
        self.mem.write_bytes(off, bytes)
    }

    /// Zeroes memory this operation allocated (unjournalled).
    pub(crate) fn zero_fresh(&self, off: u64, len: u64) -> Result<()> {
        debug_assert!(self.fresh_unknown() || self.is_fresh_range(off, len));
        self.mem.zero(off, len)
    }

    /// Formats an empty store over `mem` (whose first page must already be
    /// committed): header words, empty bins, directory and registry. Magic,
    /// version, ABI and the ready state are written by the caller, last.
    pub(crate) fn format(&self) -> Result<()> {
        let capacity = self.mem.len();
        if capacity < HEAP_START * 2 {
            return Err(Error::InvalidArgument {
                reason: format!(
                    "capacity {capacity} is below the minimum of {}",
                    HEAP_START * 2
                ),
            });
        }
        // Everything after the identity words, except the header lock (the
        // caller initialises it, and zeroing a live pthread mutex would turn
        // it into a process-private one) and the pid namespace word (the
        // creator writes it with its identity, before the magic).
        self.zero_fresh(OFF_CAPACITY, OFF_LOCK - OFF_CAPACITY)?;
        let after_lock = OFF_LOCK + LOCK_SPACE;
        self.zero_fresh(after_lock, OFF_PIDNS - after_lock)?;
        let after_pidns = OFF_PIDNS + 4;
        self.zero_fresh(after_pidns, HEAP_START - after_pidns)?;
        let hdr = Header(self);
        hdr.set_capacity(capacity)?;
        hdr.set_committed(HEAP_START.min(capacity))?;
        hdr.set_top(HEAP_START)?;
        self.journal_init()?;
        self.procs_init()?;
        self.dir_init()?;
        self.registry_init()
    }

    /// Makes sure every page the header says is committed is committed in
    /// this process's view too: committing is idempotent, so a range
    /// another process committed is committed again (allocating nothing),
    /// and only then may this process touch it. A header that claims more
    /// than the region is corrupted.
    pub(crate) fn sync_backed(&self) -> Result<()> {
        let committed = self.mem.u64(OFF_COMMITTED)?;
        let backed = self.mem.backed();
        if committed <= backed {
            return Ok(());
        }
        if committed > self.mem.len() {
            return Err(Error::corrupted(format!(
                "header says {committed} bytes are committed, but the region has {}",
                self.mem.len()
            )));
        }
        (self.commit)(backed, committed).map_err(|e| match e {
            Error::NoSpace { .. } => Error::corrupted(format!(
                "header says {committed} bytes are committed, but pages from {backed:#x} are not \
                 and /dev/shm has no room for them"
            )),
            e => e,
        })?;
        self.mem.raise_backed(committed);
        Ok(())
    }

    /// Checks the words every operation relies on, cheaply, before use.
    pub(crate) fn validate_header(&self) -> Result<()> {
        self.sync_backed()?;
        self.validate_header_words()
    }

    /// [`Arena::validate_header`] without committing anything: the words'
    /// consistency alone (for a private copy of a segment's first pages).
    pub(crate) fn validate_header_words(&self) -> Result<()> {
        let hdr = Header(self);
        let (cap, committed, top, used) =
            (hdr.capacity()?, hdr.committed()?, hdr.top()?, hdr.used()?);
        if cap != self.mem.len()
            || committed > cap
            || top < HEAP_START
            || top > committed
            || top % 8 != 0
            || used > top - HEAP_START
        {
            return Err(Error::corrupted(format!(
                "header words are inconsistent: capacity {cap}, mapping {}, committed {committed}, top {top}, used {used}",
                self.mem.len()
            )));
        }
        Ok(())
    }

    /// Reads and validates the record at `rec`: the name and the value lie
    /// inside its block and the value is aligned for its registered type.
    pub(crate) fn record(&self, rec: u64) -> Result<Record> {
        let payload = self.payload_size(rec)?;
        let name_len = self.record_name_len(rec)?;
        let type_idx = self.mem.u32(rec + REC_TYPE)?;
        let info = self.type_info(type_idx)?;
        let len = self.mem.u64(rec + REC_LEN)?;
        let flags = self.mem.u16(rec + REC_FLAGS)?;
        let rel = self.mem.u32(rec + REC_VALUE_REL)? as u64;
        let bytes = info.size.checked_mul(len);
        let fits = bytes
            .and_then(|b| rel.checked_add(b))
            .is_some_and(|end| end <= payload);
        let value = rec + rel;
        if rel < REC_NAME + name_len || !fits || value % info.align != 0 {
            return Err(Error::corrupted(format!(
                "record {rec:#x}: value at +{rel} ({len} × {} bytes, align {}) does not fit its {payload}-byte block",
                info.size, info.align
            )));
        }
        // The block must be the one `new_record` allocated: freeing a
        // block whose size word grew would free its neighbours with it.
        let need = bytes.and_then(|b| record_payload(name_len, info.align, b));
        if !need.is_some_and(|need| alloc::is_block_for(payload + 8, need)) {
            return Err(Error::corrupted(format!(
                "record {rec:#x}: its {payload}-byte block is not the one allocated for a name of \
                 {name_len} bytes and {len} × {} bytes aligned to {}",
                info.size, info.align
            )));
        }
        if flags & FLAG_SLICE == 0 && len != 1 {
            return Err(Error::corrupted(format!(
                "record {rec:#x}: a single object with element count {len}"
            )));
        }
        Ok(Record {
            rec,
            type_idx,
            len,
            flags,
            value,
            counted: false,
        })
    }

    /// Allocates and fills a record for `len` elements of type `type_idx`
    /// under `name` (not yet published). Returns (record, value offset).
    pub(crate) fn new_record(
        &self,
        name: &[u8],
        type_idx: u32,
        slice: bool,
        len: u64,
    ) -> Result<(u64, u64)> {
        let info = self.type_info(type_idx)?;
        let too_big = || Error::InvalidArgument {
            reason: format!(
                "{len} elements of {} bytes overflow the address space",
                info.size
            ),
        };
        let bytes = info.size.checked_mul(len).ok_or_else(too_big)?;
        let payload = record_payload(name.len() as u64, info.align, bytes).ok_or_else(too_big)?;
        let rec = self.alloc(payload)?;
        let value = (rec + REC_NAME + name.len() as u64).next_multiple_of(info.align.max(8));
        self.set_u64(rec + REC_LEN, len)?;
        self.set_u32(rec + REC_TYPE, type_idx)?;
        self.set_u32(rec + REC_PINS, 0)?;
        self.set_u16(rec + REC_NAME_LEN, name.len() as u16)?;
        self.set_u16(rec + REC_FLAGS, if slice { FLAG_SLICE } else { 0 })?;
        self.set_u32(rec + REC_VALUE_REL, (value - rec) as u32)?;
        self.write_fresh(rec + REC_NAME, name)?;
        Ok((rec, value))
    }

    /// Publishes a filled record under `name`.
    pub(crate) fn publish(&self, hash: u64, rec: u64) -> Result<()> {
        self.dir_insert(hash, rec)?;
        let hdr = Header(self);
        hdr.set_objects(hdr.objects()?.saturating_add(1))
    }

    /// Adds a pin to a record (journalled: a rollback takes it back).
    ///
    /// The record must not be freed meanwhile: the caller found it in the
    /// directory, or already holds a pin on it.
    pub(crate) fn pin(&self, rec: u64) -> Result<()> {
        let at = pins_word(rec)?;
        let word = self.mem.u32(at)?;
        if word & PIN_COUNT == PIN_COUNT {
            return Err(Error::corrupted(format!(
                "record {rec:#x}: pin word {word:#x} is full"
            )));
        }
        self.set_u32(at, word + 1)
    }

    /// Drops `n` pins of `rec` that their holder no longer has. Returns
    /// `true` if these were the last pins of a removed record: the caller
    /// then frees it (with [`Arena::free_released`]).
    pub(crate) fn drop_pins(&self, rec: u64, n: u32) -> Result<bool> {
        let at = pins_word(rec)?;
        let word = self.mem.u32(at)?;
        if word & PIN_COUNT < n {
            return Err(Error::corrupted(format!(
                "record {rec:#x}: {n} pins dropped, but the pin word is {word:#x}"
            )));
        }
        self.set_u32(at, word - n)?;
        Ok(word == PIN_REMOVED | n)
    }

    /// The pins on `rec` (without the removed mark).
    pub(crate) fn pin_count(&self, rec: u64) -> Result<u32> {
        Ok(self.mem.u32(pins_word(rec)?)? & PIN_COUNT)
    }

    /// Frees a removed record whose last pin was dropped (`drop_pins`
    /// returned `true`) if it is still removed and unpinned.
    pub(crate) fn free_released(&self, rec: u64) -> Result<()> {
        if self.mem.u32(pins_word(rec)?)? == PIN_REMOVED {
            // `free_record` checks the record (its block size too) before
            // the block is freed.
            self.free_record(rec)?;
        }
        Ok(())
    }

    /// Takes the record found at `found` out of the directory and frees it,
    /// or marks it removed while handles still pin it (the last unpin then
    /// frees it). Pins change only under the header lock, so exactly one of
    /// `remove` and the last unpin frees.
    pub(crate) fn remove(&self, found: &Found) -> Result<()> {
        self.record(found.rec)?;
        self.dir_remove(found)?;
        let hdr = Header(self);
        hdr.set_objects(hdr.objects()?.saturating_sub(1))?;
        let old = self.mem.u32(found.rec + REC_PINS)?;
        self.set_u32(found.rec + REC_PINS, old | PIN_REMOVED)?;
        if old & PIN_COUNT == 0 {
            self.free_record(found.rec)?;
        }
        Ok(())
    }

    /// Publishes the filled record `rec` under the name found at `found`,
    /// in place of the record there, which is marked removed and freed now
    /// if no handle pins it (else by its last unpin). One directory word
    /// switches readers from the old value to the new one.
    pub(crate) fn replace(&self, found: &Found, hash: u64, rec: u64) -> Result<()> {
        self.record(found.rec)?;
        self.dir_repoint(found, hash, rec)?;
        let old = self.mem.u32(pins_word(found.rec)?)?;
        self.set_u32(pins_word(found.rec)?, old | PIN_REMOVED)?;
        if old & PIN_COUNT == 0 {
            self.free_record(found.rec)?;
        }
        Ok(())
    }

    /// Frees the record `rec` (removed and unpinned: no one can reach its
    /// value any more), and notes the nested blocks its containers own —
    /// found by walking the value by its recorded layout — to be freed once
    /// this operation has committed ([`Arena::take_nested_frees`]): in
    /// steps of their own, so that a large value does not overflow the
    /// journal. A crash in between leaves them unreachable, for `collect`.
    /// A value whose layout or containers cannot be read is freed all the
    /// same; what it held is then left to `collect` too.
    ///
    /// A value holding a locked `ShmMutex` (a guard passed to `mem::forget`
    /// and its handle dropped) is not freed at all, nor what it owns: the
    /// holder's C library keeps pointers into the lock (its robust list)
    /// and writes through them, so that memory must not be reused. The
    /// record stays, removed and unpinned; `Store::collect` frees it once
    /// the lock is released (its holder thread gone).
    pub(crate) fn free_record(&self, rec: u64) -> Result<()> {
        let r = self.record(rec)?;
        if let Ok(desc) = self.type_desc(r.type_idx) {
            if walk::walks_into(&desc) {
                let mut found = walk::Walk::new(self.walk_budget());
                found.lenient = true;
                let store_id = self.mem.u64(OFF_STORE_ID)?;
                let mut walker = walk::Walker {
                    mem: self.mem,
                    store_id,
                    locks: walk::Locks::Ignore,
                    out: &mut found,
                };
                if walker.values(r.value, &desc, r.len).is_ok() {
                    if !found.locked.is_empty() {
                        return Ok(());
                    }
                    self.nested_frees.borrow_mut().extend(found.found);
                }
            }
        }
        self.free(rec)
    }

    /// Links the containers of the value of record `rec`, about to be
    /// published: clears the pending mark of every nested block it reaches
    /// (they are reachable from now on, so that once unreachable again
    /// `collect` need not wait for this process to exit). Returns what makes
    /// the value unfit to publish, if anything: containers of another
    /// store, or broken ones (the caller refuses the value).
    ///
    /// The pending words are written without the journal: if the operation
    /// is undone, the value was not published and is dropped by its holder
    /// (which frees the blocks) or its holder died (and the marks would name
    /// a dead process anyway).
    pub(crate) fn link_value(&self, rec: u64) -> Result<Option<Unfit>> {
        let r = self.record(rec)?;
        let desc = self.type_desc(r.type_idx)?;
        if !walk::has_containers(&desc) {
            return Ok(None);
        }
        let mut found = walk::Walk::new(self.walk_budget());
        let store_id = self.mem.u64(OFF_STORE_ID)?;
        walk::Walker {
            mem: self.mem,
            store_id,
            locks: walk::Locks::Blind,
            out: &mut found,
        }
        .values(r.value, &desc, r.len)?;
        if found.foreign != 0 {
            return Ok(Some(Unfit::Foreign));
        }
        if let Some(b) = found.broken.first() {
            return Ok(Some(Unfit::Broken(b.clone())));
        }
        for n in &found.found {
            self.mem.set_u64(n.blk + nested::N_PENDING, 0)?;
        }
        Ok(None)
    }

    /// The nested blocks of the records this operation freed (see
    /// [`Arena::free_record`]); call after the commit.
    pub(crate) fn take_nested_frees(&self) -> Vec<walk::NestedRef> {
        core::mem::take(&mut *self.nested_frees.borrow_mut())
    }

    /// Every block the store's own metadata owns (not objects or
    /// containers' buffers): the directory table, the registry's table and
    /// layouts, the journal, the process table, its pin tables and the
    /// records reserved by unfinished inserts.
    pub(crate) fn metadata_blocks(&self) -> Result<Vec<u64>> {
        let mut out = vec![self.dir_table_block()?, self.journal_area()?.0];
        out.extend(self.registry_blocks()?);
        out.extend(self.procs_blocks()?);
        Ok(out)
    }

    /// How many layout nodes a walk may visit: more than any value the
    /// heap can hold (every node of a value occupies at least a byte, or
    /// is an element of a nested block).
    pub(crate) fn walk_budget(&self) -> u64 {
        Header(self)
            .top()
            .unwrap_or(0)
            .saturating_mul(2)
            .max(1 << 16)
    }

    /// The name of a record, checked to be one that an insert could have
    /// written (UTF-8, 1 to 255 bytes, no NUL): any other is a corrupted
    /// record, never a name handed out (the API would refuse it with
    /// `InvalidName`, and a lossy conversion would name another object).
    pub(crate) fn record_name(&self, rec: u64) -> Result<String> {
        let len = self.record_name_len(rec)?;
        let bytes = self.mem.read_bytes(rec + REC_NAME, len)?;
        match String::from_utf8(bytes) {
            Ok(name)
                if !name.is_empty()
                    && name.len() <= crate::MAX_OBJECT_NAME
                    && !name.contains('\0') =>
            {
                Ok(name)
            }
            Ok(name) => Err(Error::corrupted(format!(
                "record {rec:#x}: its name {name:?} is not an object name"
            ))),
            Err(e) => Err(Error::corrupted(format!(
                "record {rec:#x}: its name is not UTF-8 ({e})"
            ))),
        }
    }

    /// Space accounting.
    pub(crate) fn stats(&self) -> Result<Stats> {
        let hdr = Header(self);
        let capacity = hdr.capacity()?;
        let used = hdr.used()?;
        Ok(Stats {
            capacity,
            committed: hdr.committed()?,
            used,
            free: capacity.saturating_sub(HEAP_START + used),
            objects: hdr.objects()?,
            recoveries: hdr.recoveries()?,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::arena::alloc::MIN_BLOCK;
    use crate::arena::header::OFF_JOURNAL_LEN;
    use crate::layout::{LayoutDesc, LayoutDescKind};

    /// A heap buffer formatted as a store, for tests of the arena alone
    /// (page-aligned, like a mapping).
    pub(crate) struct HeapStore {
        _buf: mem::HeapRegion,
        pub(crate) mem: Mem,
    }

    fn no_commit(_: u64, _: u64) -> Result<()> {
        Ok(())
    }

    impl HeapStore {
        pub(crate) fn new(bytes: usize) -> HeapStore {
            let buf = mem::HeapRegion::new(bytes);
            let mem = buf.mem();
            let s = HeapStore { _buf: buf, mem };
            s.arena().format().unwrap();
            s
        }

        pub(crate) fn arena(&self) -> Arena<'static> {
            Arena::new(self.mem, &no_commit)
        }
    }

    /// A made-up primitive layout.
    pub(crate) fn primitive(name: &str, size: u64, align: u64) -> LayoutDesc {
        LayoutDesc {
            name: name.into(),
            size,
            align,
            kind: LayoutDescKind::Primitive,
        }
    }

    /// Registers the made-up primitive type `name` as the store would: with
    /// its fingerprint and encoded layout.
    pub(crate) fn register(a: &Arena<'_>, name: &str, size: u64, align: u64) -> u32 {
        let desc = primitive(name, size, align);
        a.register_type(desc.fingerprint(), size, align, &desc.encode().unwrap())
            .unwrap()
    }

    /// A small deterministic generator (xorshift64*), for shuffles in tests.
    pub(crate) struct Rng(pub(crate) u64);
    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    fn iterations(n: usize) -> usize {
        if cfg!(miri) {
            n / 50 + 1
        } else {
            n
        }
    }

    #[test]
    fn allocations_do_not_overlap_and_frees_are_reused() {
        // ~1300 blocks of up to 3 KB stay live: room for them, fragmented.
        let s = HeapStore::new(4 << 20);
        let a = s.arena();
        let mut live: Vec<(u64, u64)> = Vec::new();
        let mut rng = Rng(7);
        for _ in 0..iterations(2000) {
            if live.len() > 20 && rng.next() % 3 == 0 {
                let i = (rng.next() % live.len() as u64) as usize;
                let (off, _) = live.swap_remove(i);
                a.free(off).unwrap();
            } else {
                let size = 1 + rng.next() % 3000;
                let off = a.alloc(size).unwrap();
                assert_eq!(off % 8, 0);
                assert!(a.payload_size(off).unwrap() >= size);
                live.push((off, size));
            }
        }
        let mut sorted = live.clone();
        sorted.sort();
        for w in sorted.windows(2) {
            assert!(w[0].0 + w[0].1 <= w[1].0, "{w:?} overlap");
        }
        a.check_heap().unwrap();
        for (off, _) in live {
            a.free(off).unwrap();
        }
        a.check_heap().unwrap();
        a.consolidate().unwrap();
        let (used_blocks, free_blocks, _, _) = a.check_heap().unwrap();
        // Only the journal, the process table, the directory table and the
        // registry table remain, and every free block, parked or not, merged
        // back into top.
        assert_eq!((used_blocks, free_blocks), (4, 0));
    }

    #[test]
    fn freed_small_block_is_reused_exactly() {
        let s = HeapStore::new(1 << 16);
        let a = s.arena();
        let x = a.alloc(64).unwrap();
        let _guard = a.alloc(64).unwrap();
        a.free(x).unwrap();
        assert_eq!(a.alloc(64).unwrap(), x);
        a.check_heap().unwrap();
    }

    #[test]
    fn neighbours_coalesce() {
        let s = HeapStore::new(1 << 16);
        let a = s.arena();
        let x = a.alloc(400).unwrap();
        let y = a.alloc(400).unwrap();
        let z = a.alloc(400).unwrap();
        let _pin = a.alloc(8).unwrap();
        a.free(x).unwrap();
        a.free(z).unwrap();
        a.free(y).unwrap();
        // Small blocks are parked on fast lists first, unmerged.
        let (_, free_blocks, _, free) = a.check_heap().unwrap();
        assert_eq!(free_blocks, 3);
        // Consolidation merges them: one block for all three comes back
        // whole.
        a.consolidate().unwrap();
        assert_eq!(a.check_heap().unwrap().1, 1);
        assert_eq!(a.alloc(free - 8).unwrap(), x);
        assert_eq!(a.check_heap().unwrap().1, 0);
    }

    #[test]
    fn parked_blocks_are_consolidated_before_the_arena_is_declared_full() {
        let s = HeapStore::new(1 << 16);
        let a = s.arena();
        let mut small = Vec::new();
        while let Ok(off) = a.alloc(48) {
            small.push(off);
        }
        for off in small {
            a.free(off).unwrap();
        }
        // All the space is parked in 56-byte blocks; a 20 KiB request must
        // still succeed.
        let big = a.alloc(20 << 10).unwrap();
        a.check_heap().unwrap();
        a.free(big).unwrap();
        assert!(matches!(a.free(big), Err(Error::Corrupted { .. })));
    }

    #[test]
    fn a_parked_block_cannot_be_freed_twice_or_read_as_allocated() {
        let s = HeapStore::new(1 << 16);
        let a = s.arena();
        let x = a.alloc(24).unwrap();
        let _y = a.alloc(24).unwrap();
        a.free(x).unwrap();
        assert!(matches!(a.free(x), Err(Error::Corrupted { .. })));
        assert!(a.payload_size(x).is_err());
        assert_eq!(a.alloc(24).unwrap(), x);
        assert_eq!(a.payload_size(x).unwrap(), 24);
    }

    /// Everything recovery restores: the header page (but the journal
    /// length), every block header from the heap start to top, and the
    /// allocator's own view of free space.
    type Snapshot = (Vec<u8>, Vec<(u64, u64)>, (u64, u64, u64, u64));

    fn snapshot(a: &Arena<'_>) -> Snapshot {
        let mut page = a.mem.read_bytes(0, HEAP_START).unwrap();
        page[OFF_JOURNAL_LEN as usize..OFF_JOURNAL_LEN as usize + 8].fill(0);
        let top = Header(a).top().unwrap();
        let mut blocks = Vec::new();
        let mut blk = HEAP_START;
        while blk < top {
            let word = a.mem.u64(blk).unwrap();
            blocks.push((blk, word));
            blk += word & !7;
        }
        (page, blocks, a.check_heap().unwrap())
    }

    #[test]
    fn rollback_restores_the_exact_state_before_an_operation() {
        let s = HeapStore::new(1 << 20);
        let setup = s.arena();
        let t = register(&setup, "u64", 8, 8);
        // Some history: parked, binned and allocated blocks, tombstones.
        let mut rng = Rng(99);
        let mut live = Vec::new();
        for i in 0..40 {
            live.push(insert(&setup, &format!("k{i}"), t));
            let big = setup.alloc(1500 + rng.next() % 3000).unwrap();
            if rng.next() % 2 == 0 {
                setup.free(big).unwrap();
            }
        }
        for i in (0..live.len()).step_by(3) {
            let name = format!("k{i}");
            let f = setup
                .lookup(name.as_bytes(), dir::hash_name(name.as_bytes()))
                .unwrap()
                .unwrap();
            setup.remove(&f).unwrap();
        }
        let before = snapshot(&setup);
        let a = Arena::journaled(s.mem, &no_commit);
        // An operation that allocates from every source, grows the
        // directory and the registry, frees and removes.
        // 26 live names and 14 tombstones in 64 slots: 20 more make the
        // directory rehash.
        let table_before = Header(&a).dir_table().unwrap();
        for i in 0..20 {
            insert(&a, &format!("new{i}"), t);
        }
        assert_ne!(Header(&a).dir_table().unwrap(), table_before, "rehashed");
        let t2 = register(&a, "Pair", 16, 8);
        for i in 0..10 {
            let r = register(&a, &format!("T{i}"), 8, 8);
            assert!(r > t2);
        }
        let f = a.lookup(b"k1", dir::hash_name(b"k1")).unwrap().unwrap();
        a.remove(&f).unwrap();
        let big = a.alloc(5000).unwrap();
        a.free(big).unwrap();
        a.consolidate().unwrap();
        assert!(a.journal_len().unwrap() > 0);
        let undone = a.rollback().unwrap();
        assert!(undone > 0);
        assert_eq!(snapshot(&setup), before);
        assert!(a
            .lookup(b"new0", dir::hash_name(b"new0"))
            .unwrap()
            .is_none());
        assert!(a.lookup(b"k1", dir::hash_name(b"k1")).unwrap().is_some());
        // The restored store keeps working.
        insert(&setup, "after", t);
        setup.check_heap().unwrap();
    }

    // Regression (corruption sweep): rollback wrote a journal entry's old
    // value wherever the entry pointed, outside the header lock and below
    // `committed`: an entry that targeted the magic, version or capacity
    // (which no operation journals) turned the store into "not a store"
    // for every process. And it applied entries one by one, so an invalid
    // older entry stopped it half-way. Now every entry is checked first,
    // and the header's identity words are refused like the lock.
    #[test]
    fn rollback_never_writes_the_identity_words_and_applies_all_or_nothing() {
        use crate::arena::header::{OFF_CAPACITY, OFF_MAGIC, OFF_VERSION};
        let s = HeapStore::new(1 << 20);
        let a = s.arena();
        let t = crate::arena::tests::register(&a, "u64", 8, 8);
        let x = insert(&a, "x", t);
        let header = a.mem.read_bytes(0, 64).unwrap();
        let area = Header(&a).journal().unwrap();
        let entry = |i: u64, off: u64, kind: u64, old: u64| {
            a.mem.set_u64(area + 16 * i, kind << 60 | off).unwrap();
            a.mem.set_u64(area + 16 * i + 8, old).unwrap();
        };
        let pins = x + dir::REC_PINS;
        let x_bytes = a.mem.read_bytes(x - 8, 48).unwrap();
        for (off, kind) in [
            (OFF_MAGIC, 3),
            (OFF_VERSION, 2),
            (OFF_VERSION, 3),
            (12, 2),
            (OFF_CAPACITY, 3),
            (OFF_CAPACITY + 4, 2),
            (OFF_LOCK, 3),
            (OFF_TOP + 1, 1),
        ] {
            // Entry 1 (applied first, newest) is valid; entry 0 is not.
            entry(1, pins, 2, 77);
            entry(0, off, kind, 0);
            a.mem.set_u64(OFF_JOURNAL_LEN, 2).unwrap();
            assert!(
                matches!(a.rollback(), Err(Error::Corrupted { .. })),
                "{off} kind {kind}"
            );
            assert_eq!(
                a.mem.read_bytes(0, 64).unwrap(),
                header,
                "{off} kind {kind}"
            );
            assert_eq!(
                a.mem.read_bytes(x - 8, 48).unwrap(),
                x_bytes,
                "{off} kind {kind}"
            );
        }
        // A valid journal still rolls back.
        entry(0, pins, 2, 5);
        a.mem.set_u64(OFF_JOURNAL_LEN, 1).unwrap();
        assert_eq!(a.rollback().unwrap(), 1);
        assert_eq!(a.mem.u32(pins).unwrap(), 5);
    }

    #[test]
    fn exhaustion_is_out_of_memory_with_sizes() {
        let s = HeapStore::new(1 << 16);
        let a = s.arena();
        let err = a.alloc(1 << 20).unwrap_err();
        match err {
            Error::OutOfMemory {
                requested,
                capacity,
                ..
            } => {
                assert!(requested >= 1 << 20);
                assert_eq!(capacity, 1 << 16);
            }
            other => panic!("unexpected {other:?}"),
        }
        while a.alloc(1000).is_ok() {}
        assert!(matches!(a.alloc(1000), Err(Error::OutOfMemory { .. })));
        a.check_heap().unwrap();
    }

    #[test]
    fn double_free_and_wild_free_are_errors() {
        let s = HeapStore::new(1 << 16);
        let a = s.arena();
        let x = a.alloc(40).unwrap();
        let _y = a.alloc(40).unwrap();
        a.free(x).unwrap();
        assert!(matches!(a.free(x), Err(Error::Corrupted { .. })));
        assert!(matches!(a.free(12345), Err(Error::Corrupted { .. })));
        assert!(matches!(a.free(8), Err(Error::Corrupted { .. })));
    }

    fn insert(a: &Arena<'_>, name: &str, type_idx: u32) -> u64 {
        let (rec, value) = a.new_record(name.as_bytes(), type_idx, false, 1).unwrap();
        a.mem.set_u64(value, name.len() as u64).unwrap();
        a.publish(dir::hash_name(name.as_bytes()), rec).unwrap();
        rec
    }

    #[test]
    fn directory_finds_every_name_and_grows() {
        let s = HeapStore::new(4 << 20);
        let a = s.arena();
        let t = register(&a, "u64", 8, 8);
        let n = iterations(5000);
        for i in 0..n {
            insert(&a, &format!("key{i}"), t);
        }
        assert!(Header(&a).dir_cap().unwrap() >= n as u64 * 4 / 3);
        for i in 0..n {
            let name = format!("key{i}");
            let found = a
                .lookup(name.as_bytes(), dir::hash_name(name.as_bytes()))
                .unwrap();
            let rec = a.record(found.expect("present").rec).unwrap();
            assert_eq!(a.mem.u64(rec.value).unwrap(), name.len() as u64);
            assert_eq!(a.record_name(rec.rec).unwrap(), name);
        }
        assert!(a
            .lookup(b"absent", dir::hash_name(b"absent"))
            .unwrap()
            .is_none());
        assert_eq!(a.stats().unwrap().objects, n as u64);
        a.check_heap().unwrap();
    }

    #[test]
    fn removal_frees_unpinned_records_and_defers_pinned_ones() {
        let s = HeapStore::new(1 << 20);
        let a = s.arena();
        let t = register(&a, "u64", 8, 8);
        let before = a.stats().unwrap().used;
        let r1 = insert(&a, "one", t);
        let r2 = insert(&a, "two", t);
        a.pin(r2).unwrap();
        for name in ["one", "two"] {
            let f = a
                .lookup(name.as_bytes(), dir::hash_name(name.as_bytes()))
                .unwrap()
                .unwrap();
            a.remove(&f).unwrap();
        }
        assert!(a.lookup(b"two", dir::hash_name(b"two")).unwrap().is_none());
        // r2 is still allocated and readable while pinned.
        assert_eq!(a.record(r2).unwrap().len, 1);
        assert!(a.payload_size(r1).is_err());
        assert!(
            a.drop_pins(r2, 1).unwrap(),
            "the last pin of a removed record"
        );
        a.free(r2).unwrap();
        assert_eq!(a.stats().unwrap().used, before);
        assert_eq!(a.stats().unwrap().objects, 0);
        a.check_heap().unwrap();
    }

    #[test]
    fn tombstones_are_reused_without_unbounded_growth() {
        let s = HeapStore::new(1 << 20);
        let a = s.arena();
        let t = register(&a, "u64", 8, 8);
        for i in 0..iterations(3000) {
            let name = format!("churn{}", i % 10);
            if let Some(f) = a
                .lookup(name.as_bytes(), dir::hash_name(name.as_bytes()))
                .unwrap()
            {
                a.remove(&f).unwrap();
            }
            insert(&a, &name, t);
        }
        assert_eq!(Header(&a).dir_cap().unwrap(), dir::INITIAL_SLOTS);
        assert_eq!(a.records().unwrap().len(), 10);
    }

    #[test]
    fn registry_grows_and_keeps_layouts() {
        let s = HeapStore::new(1 << 20);
        let a = s.arena();
        for i in 0..20u64 {
            let idx = register(&a, &format!("T{i}"), i, 8);
            assert_eq!(idx as u64, i);
        }
        assert_eq!(
            a.find_type(primitive("T7", 7, 8).fingerprint()).unwrap(),
            Some(7)
        );
        assert_eq!(a.find_type(1).unwrap(), None);
        let t13 = primitive("T13", 13, 8);
        assert_eq!(a.type_desc(13).unwrap(), t13);
        let (name, desc) = a.type_text(13).unwrap();
        assert_eq!((name, desc), ("T13".to_string(), t13.to_string()));
        assert_eq!(a.type_info(5).unwrap().size, 5);
        a.check_heap().unwrap();
    }

    #[test]
    fn records_align_values_for_large_alignments() {
        let s = HeapStore::new(1 << 20);
        let a = s.arena();
        let t = register(&a, "Line", 64, 64);
        for name in ["a", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "cc"] {
            let (rec, value) = a.new_record(name.as_bytes(), t, true, 3).unwrap();
            assert_eq!(value % 64, 0);
            let r = a.record(rec).unwrap();
            assert_eq!((r.value, r.len), (value, 3));
        }
    }

    // Regression (corruption sweep): a table offset in the header (or a
    // process slot) was only checked to lie in the committed heap, so one
    // that pointed into a live object passed, and the next write to the
    // table (a directory slot, a registry entry, a journal entry, a process
    // slot, a pin entry) landed in that object's record and value. A table
    // must be exactly the payload of an allocated block of its size.
    #[test]
    fn a_table_offset_into_another_allocation_is_corrupted_not_a_write_into_it() {
        use crate::sys::proc::StartTime;
        let s = HeapStore::new(1 << 20);
        let a = s.arena();
        let t = crate::arena::tests::register(&a, "u64", 8, 8);
        let victim = insert(&a, "victim", t);
        let big = insert(&a, "big", t);
        let blk = victim - 8;
        let end = blk + (a.mem.u64(blk).unwrap() & !7);
        let before = a.mem.read_bytes(blk, end - blk).unwrap();
        let owner = procs::Owner {
            pid: 42,
            pidns: 1,
            start: StartTime::Known(7),
        };
        let slot = a.attach(owner).unwrap().unwrap();
        let journal = Header(&a).journal().unwrap();
        // Each word, pointed at the victim's record, then an operation that
        // writes through it.
        type Op<'o> = &'o dyn Fn(&Arena<'_>) -> Result<()>;
        let ops: [(u64, Op<'_>); 4] = [
            (OFF_DIR_TABLE, &|a| insert_checked(a, "new", t)),
            (OFF_REG_TABLE, &|a| {
                let d = primitive("u32", 4, 4);
                a.register_type(d.fingerprint(), 4, 4, &d.encode().unwrap())
                    .map(|_| ())
            }),
            (OFF_JOURNAL, &|a| {
                let j = Arena::journaled(a.mem, &no_commit);
                Header(&j).set_recoveries(5)
            }),
            (OFF_PROCS, &|a| a.attach(owner).map(|_| ())),
        ];
        for (word, op) in ops {
            let saved = a.mem.u64(word).unwrap();
            a.mem.set_u64(word, victim).unwrap();
            let r = op(&a);
            assert!(
                matches!(r, Err(Error::Corrupted { .. })),
                "word {word}: {r:?}"
            );
            assert_eq!(
                a.mem.read_bytes(blk, end - blk).unwrap(),
                before,
                "word {word}"
            );
            a.mem.set_u64(word, saved).unwrap();
        }
        // A process slot's pin table, pointed at the victim.
        let so = Header(&a).procs().unwrap() + u64::from(slot) * 64;
        let saved = a.mem.u64(so + 16).unwrap();
        a.mem.set_u64(so + 16, victim).unwrap();
        let r = a.count_pin(slot, big, 1);
        assert!(matches!(r, Err(Error::Corrupted { .. })), "{r:?}");
        assert_eq!(a.mem.read_bytes(blk, end - blk).unwrap(), before);
        a.mem.set_u64(so + 16, saved).unwrap();
        // A table pointed at a larger table: the process table (8 KiB) over
        // the journal (16 KiB).
        let saved = Header(&a).procs().unwrap();
        a.mem.set_u64(OFF_PROCS, journal).unwrap();
        assert!(matches!(a.attached(), Err(Error::Corrupted { .. })));
        a.mem.set_u64(OFF_PROCS, saved).unwrap();
        a.check_heap().unwrap();
    }

    // Regression (corruption sweep): a record's block header whose size
    // was changed (to reach `top`, or over its neighbour) was trusted when
    // the record was freed: `remove` then freed the neighbours with it (or
    // lowered `top` below them), and the next inserts overwrote them. A
    // record's block must be the one `new_record` allocated for it.
    #[test]
    fn a_record_whose_block_size_was_changed_is_corrupted_not_freed_with_its_neighbours() {
        let s = HeapStore::new(1 << 20);
        let a = s.arena();
        let t = crate::arena::tests::register(&a, "u64", 8, 8);
        let b = insert(&a, "b", t);
        let c = insert(&a, "c", t);
        let _d = insert(&a, "d", t);
        let top = Header(&a).top().unwrap();
        let blk = b - 8;
        let head = a.mem.u64(blk).unwrap();
        let (size, flags) = (head & !7, head & 7);
        let c_bytes = a.mem.read_bytes(c - 8, 40).unwrap();
        // Grown past the allocator's slack: the record itself is invalid.
        // Grown within it (8..32 bytes): freeing finds the next block's
        // header in the wrong place.
        for (bad, record_fails) in [
            (top - blk, true),
            (size + 48, true),
            (size + MIN_BLOCK, true),
            (size + 8, false),
            (size + 24, false),
        ] {
            a.mem.set_u64(blk, bad | flags).unwrap();
            assert_eq!(a.record(b).is_err(), record_fails, "{bad}");
            let found = a.lookup(b"b", dir::hash_name(b"b")).unwrap().unwrap();
            let j = Arena::journaled(s.mem, &no_commit);
            assert!(
                matches!(j.remove(&found), Err(Error::Corrupted { .. })),
                "{bad}"
            );
            j.rollback().unwrap();
            assert_eq!(Header(&a).top().unwrap(), top, "{bad}");
            assert_eq!(a.mem.read_bytes(c - 8, 40).unwrap(), c_bytes, "{bad}");
        }
        a.mem.set_u64(blk, head).unwrap();
        // A removed record whose last pin goes, with a block that grew.
        a.pin(b).unwrap();
        let found = a.lookup(b"b", dir::hash_name(b"b")).unwrap().unwrap();
        a.remove(&found).unwrap();
        a.mem.set_u64(blk, (top - blk) | flags).unwrap();
        assert!(a.drop_pins(b, 1).unwrap());
        assert!(matches!(a.free_released(b), Err(Error::Corrupted { .. })));
        assert_eq!(Header(&a).top().unwrap(), top);
        assert_eq!(a.mem.read_bytes(c - 8, 40).unwrap(), c_bytes);
    }

    fn insert_checked(a: &Arena<'_>, name: &str, type_idx: u32) -> Result<()> {
        let (rec, _) = a.new_record(name.as_bytes(), type_idx, false, 1)?;
        a.publish(dir::hash_name(name.as_bytes()), rec)
    }

    // Regression (fuzzing, segment_open): a record whose name bytes were
    // changed to bytes no insert writes (a NUL, invalid UTF-8, an empty
    // name) was listed by `entries` under that name — lossily converted,
    // so possibly another object's name — and `check()` found nothing
    // wrong; the name then failed every lookup with `InvalidName`. A record
    // name must be one an insert could have written.
    #[test]
    fn a_record_name_no_insert_could_write_is_corrupted() {
        let s = HeapStore::new(1 << 20);
        let a = s.arena();
        let t = register(&a, "u64", 8, 8);
        let rec = insert(&a, "abc", t);
        assert_eq!(a.record_name(rec).unwrap(), "abc");
        for (bad, len) in [
            (&b"a\0c"[..], 3u16),
            (&b"a\xffc"[..], 3),
            (&b"\xc3("[..], 2),
            (&b""[..], 0),
        ] {
            a.mem.write_bytes(rec + REC_NAME, bad).unwrap();
            a.mem.set_u16(rec + REC_NAME_LEN, len).unwrap();
            assert!(
                matches!(a.record_name(rec), Err(Error::Corrupted { .. })),
                "{bad:?}"
            );
        }
        a.mem.write_bytes(rec + REC_NAME, b"abc").unwrap();
        a.mem.set_u16(rec + REC_NAME_LEN, 3).unwrap();
        assert_eq!(a.record_name(rec).unwrap(), "abc");
    }

    #[test]
    fn corrupted_directory_slot_is_an_error_not_a_crash() {
        let s = HeapStore::new(1 << 20);
        let a = s.arena();
        let t = register(&a, "u64", 8, 8);
        insert(&a, "x", t);
        let table = Header(&a).dir_table().unwrap();
        let cap = Header(&a).dir_cap().unwrap();
        for i in 0..cap {
            let slot = a.mem.u64(table + i * 8).unwrap();
            if slot > 1 {
                a.mem.set_u64(table + i * 8, slot | 0xff_ffff_ffff).unwrap();
            }
        }
        assert!(matches!(
            a.lookup(b"x", dir::hash_name(b"x")),
            Err(Error::Corrupted { .. })
        ));
    }
}
