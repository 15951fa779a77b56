//! The segment header: the first page of every store.
//!
//! # Layout
//!
//! All fields are little-endian words at fixed offsets (the ABI tag records
//! the endianness; a store of another ABI is refused before any other field
//! is trusted).
//!
//! | offset | size | field                                                     |
//! |-------:|-----:|-----------------------------------------------------------|
//! | 0      | 8    | magic `b"SHMSTOR\0"`                                      |
//! | 8      | 4    | format version                                            |
//! | 12     | 4    | creator's start time (low 32 bits of its clock ticks)¹    |
//! | 16     | 8    | ABI tag (see [`abi_tag`])                                 |
//! | 24     | 4    | init state (atomic): 0 creating, 1 ready                  |
//! | 28     | 4    | pid of the creator                                        |
//! | 32     | 8    | capacity in bytes (= segment length)                      |
//! | 40     | 8    | committed bytes (pages allocated with `fallocate`)        |
//! | 48     | 8    | top: first byte never handed out by the allocator         |
//! | 56     | 8    | bytes in allocated blocks (headers included)              |
//! | 64     | 8    | number of named objects                                   |
//! | 72     | 8    | directory table offset                                    |
//! | 80     | 8    | directory slots (a power of two)                          |
//! | 88     | 8    | live directory slots                                      |
//! | 96     | 8    | tombstone directory slots                                 |
//! | 104    | 8    | type registry table offset                                |
//! | 112    | 8    | registered types                                          |
//! | 120    | 8    | registry table capacity (entries)                         |
//! | 128    | 8    | times the header lock was recovered from a dead owner     |
//! | 136    | 8    | blocks parked on the allocator's fast lists               |
//! | 144    | 8    | intent journal: offset of its entry array                 |
//! | 152    | 8    | intent journal: capacity in entries                       |
//! | 160    | 8    | intent journal: entries in use (0 = nothing to undo)      |
//! | 168    | 8    | process table: offset of its slot array                   |
//! | 176    | 8    | process table: slots                                      |
//! | 184    | 8    | store id: a random non-zero word drawn at creation, which |
//! |        |      | containers record to tell their own store from another    |
//! | 192    | 56   | the header lock (process-shared robust pthread mutex)     |
//! | 248    | 8    | lock generation (atomic, not journalled)⁴                 |
//! | 256    | 24   | bitmap of non-empty free-list bins                        |
//! | 280    | 4    | publications (atomic, not journalled): a futex word that  |
//! |        |      | every publish rings; `Store::wait_for` sleeps on it²      |
//! | 284    | 4    | pid namespace of every process that attached (atomic)⁶    |
//! | 288    | 32   | free                                                      |
//! | 320    | 8×N  | free-list bin heads ([`NBINS`](super::alloc::NBINS))      |
//! | 1664   | 8×M  | fast-list heads ([`NFAST`](super::alloc::NFAST))          |
//! | 2664   | 8    | top check: `!top`, written with `top`³                    |
//! | 2672   | 8    | lifecycle flags⁵                                          |
//! | 4096   |      | heap: allocator blocks                                    |
//!
//! ¹ `u32::MAX` ([`StartTime::UNKNOWN_LOW32_WORD`]) means the creator could
//! not read its start time: it counts as alive while its pid exists. The
//! word is decoded with [`StartTime::from_low32_word`] and compared only by
//! [`liveness_low32`]; a real start time whose low 32 bits are all ones
//! reads as unknown, which errs on the side of "alive".
//!
//! ² Bit 0: a waiter may sleep on it; bits 1..32 change with every
//! publication (insert, replace, a new `get_or_insert`), after its commit.
//! A hint only: a waiter looks the name up again after every ring and every
//! 25 ms, so a word that a crash left unrung, or that holds any value at
//! all, costs at most that delay. Zero in a new store (the header is zeroed
//! at creation), so no format change.
//!
//! ³ A lowered `top` is a corruption the allocator could not otherwise
//! notice before the harm: it would hand out blocks over live objects. Every
//! read of `top` compares it with its check word and reports a mismatch as
//! [`Error::Corrupted`](crate::Error::Corrupted). Both words are written
//! through the journal, so a crash between the two is rolled back.
//!
//! ⁴ Odd while a process holds the header lock, even when it is free: a
//! holder adds one right after it takes the lock and one more just before
//! it releases it (a holder that finds the previous owner dead makes it odd
//! again). Nothing trusts it: it lets a process that must not take the lock
//! (the read-only [`inspect`](crate::inspect) view) tell whether the
//! metadata it copied changed while it copied: the words were stable if the
//! generation was even, or odd with a dead owner, and the same before and
//! after. It shares the lock's cache line, which every holder writes anyway.
//!
//! ⁵ The flags in the low 32 bits, their complement in the high 32 bits
//! (a word whose halves disagree is corrupted, never acted on). Written
//! once, at creation, before the state says ready, except bit 1:
//!
//! | bit | meaning                                                        |
//! |-----|----------------------------------------------------------------|
//! | 0   | remove when unused ([`StoreOptions::remove_when_unused`])      |
//! | 1   | removed: whoever removes the store (its last user, an opener that finds its users all dead, `shmstore gc` or `rm`) sets it under the header lock, after finding no live user registered, and unlinks the name before releasing the lock; an opener that finds it goes away and opens the name anew |
//!
//! The removal protocol: a ready store's name is unlinked only by a
//! holder of its header lock that has just set bit 1 (see
//! [`Region::unlink_if_same`](crate::region::Region::unlink_if_same)). An
//! opener registers in the process table under the same lock, after
//! checking bit 1: so either it registered first, and the remover sees a
//! live user and keeps the store, or it sees the mark and opens the name
//! again (finding it gone, or a new store made since).
//!
//! ⁶ The inode of the pid namespace (`/proc/self/ns/pid`) of the creator,
//! written before the magic; a process that attaches from another pid
//! namespace, or that cannot read its own (0), replaces it, under the
//! header lock and before it attaches, with [`PIDNS_MIXED`] (every taker
//! of the header lock does so as soon as it holds it, before any recovery:
//! `shmstore gc` and `rm` take it without attaching) — for good:
//! the word is never set back. While it names this process's namespace,
//! every process that ever used the store shares it, so a pid recorded in
//! a lock means the same process here as there, and a holder found dead
//! may be repaired (see [`crate::sync`]). Once it is mixed, no holder is
//! ever judged dead through it (a pid of another namespace names another
//! process here): dead holders' locks, permits and slots are waited for,
//! never taken over. Not journalled (nothing undoes it: it only grows more
//! cautious). Before the magic is written it names the creator's
//! namespace: a process of another namespace cannot tell whether the
//! creator still runs, so it never takes a store being created for one
//! whose creator died.
//!
//! [`StoreOptions::remove_when_unused`]: crate::StoreOptions::remove_when_unused
//! [`StartTime::UNKNOWN_LOW32_WORD`]: crate::sys::proc::StartTime::UNKNOWN_LOW32_WORD
//! [`StartTime::from_low32_word`]: crate::sys::proc::StartTime::from_low32_word
//! [`liveness_low32`]: crate::sys::proc::liveness_low32

use super::Arena;
use crate::Result;

/// Identifies a segment as a shmstore store.
pub(crate) const MAGIC: [u8; 8] = *b"SHMSTOR\0";
/// Bumped on any change of the segment format.
///
/// 2: the start-time words of the process table and of the creator have an
/// "unknown" value (`u64::MAX`, `u32::MAX`) instead of 0, which version 1
/// would read as a start time; and the type registry records each type's
/// layout in the binary encoding of
/// [`encode_layout`](crate::layout::encode_layout) (32-byte entries: see
/// [`registry`](super::registry)) instead of its rendered text (40-byte
/// entries with a name length), which version 1 would misread.
///
/// 3: the store id word (offset 184), which containers record in their
/// blocks; nested container blocks (see [`nested`](super::nested)); and the
/// top check word (offset 2664), which version 2 leaves zero and version 3
/// would read as a corrupted `top`.
///
/// 4: the lifecycle flags (offset 2672), which version 3 leaves zero and
/// would never act on (a store created to be removed when unused would
/// outlive its users), and the lock generation (offset 248), which a
/// version 3 holder would not maintain, so that a read-only view could take
/// a changing store for a stable one.
///
/// 5: the pid namespace word (offset 284, note 6), which version 4 leaves
/// zero and would neither maintain nor honour (a version 4 process of
/// another pid namespace would take the locks of live processes over);
/// and, inside objects, the reader slots of a
/// [`ShmRwLock`](crate::ShmRwLock) (one word per slot: pid, start time and
/// count together) and its writer-thread word, which a version 4 process
/// would misread;
/// and the "removed" lifecycle flag may be set on any store (`gc` and `rm`
/// mark a persistent store removed under its header lock before unlinking
/// it), which version 4 would read as a damaged word.
pub(crate) const VERSION: u32 = 5;

pub(crate) const OFF_MAGIC: u64 = 0;
pub(crate) const OFF_VERSION: u64 = 8;
pub(crate) const OFF_ABI: u64 = 16;
pub(crate) const OFF_STATE: u64 = 24;
pub(crate) const OFF_CREATOR: u64 = 28;
pub(crate) const OFF_CREATOR_START: u64 = 12;
pub(crate) const OFF_CAPACITY: u64 = 32;
pub(crate) const OFF_COMMITTED: u64 = 40;
pub(crate) const OFF_TOP: u64 = 48;
pub(crate) const OFF_USED: u64 = 56;
pub(crate) const OFF_OBJECTS: u64 = 64;
pub(crate) const OFF_DIR_TABLE: u64 = 72;
pub(crate) const OFF_DIR_CAP: u64 = 80;
pub(crate) const OFF_DIR_LIVE: u64 = 88;
pub(crate) const OFF_DIR_TOMBS: u64 = 96;
pub(crate) const OFF_REG_TABLE: u64 = 104;
pub(crate) const OFF_REG_LEN: u64 = 112;
pub(crate) const OFF_REG_CAP: u64 = 120;
pub(crate) const OFF_RECOVERIES: u64 = 128;
pub(crate) const OFF_FAST_COUNT: u64 = 136;
pub(crate) const OFF_JOURNAL: u64 = 144;
pub(crate) const OFF_JOURNAL_CAP: u64 = 152;
pub(crate) const OFF_JOURNAL_LEN: u64 = 160;
pub(crate) const OFF_PROCS: u64 = 168;
pub(crate) const OFF_PROCS_LEN: u64 = 176;
pub(crate) const OFF_STORE_ID: u64 = 184;
pub(crate) const OFF_LOCK: u64 = 192;
/// The header lock's cache line: the `pthread_mutex_t` and the lock
/// generation. Never journalled, never zeroed by `format`.
pub(crate) const LOCK_SPACE: u64 = 64;
/// Bytes reserved for the `pthread_mutex_t` (40 on x86_64 glibc and musl,
/// 48 on aarch64 glibc).
pub(crate) const MUTEX_SPACE: u64 = 56;
/// The lock generation: see the layout table's note 4.
pub(crate) const OFF_LOCK_GEN: u64 = 248;
const _: () = assert!(OFF_LOCK + MUTEX_SPACE <= OFF_LOCK_GEN);
const _: () = assert!(OFF_LOCK_GEN + 8 <= OFF_LOCK + LOCK_SPACE);
pub(crate) const OFF_BITMAP: u64 = 256;
pub(crate) const OFF_PUBLISHED: u64 = 280;
const _: () = assert!(OFF_BITMAP + 8 * (super::alloc::NBINS as u64).div_ceil(64) <= OFF_PUBLISHED);
/// The pid namespace word: see the layout table's note 6.
pub(crate) const OFF_PIDNS: u64 = 284;
/// The pid namespace word once processes of several namespaces (or one
/// that could not tell its own) attached.
pub(crate) const PIDNS_MIXED: u32 = u32::MAX;
const _: () = assert!(OFF_PUBLISHED + 4 <= OFF_PIDNS);
const _: () = assert!(OFF_PIDNS + 4 <= OFF_BINS);
pub(crate) const OFF_BINS: u64 = 320;
pub(crate) const OFF_FAST: u64 = 1664;
const _: () = assert!(OFF_BINS + 8 * super::alloc::NBINS as u64 <= OFF_FAST);
const _: () = assert!(OFF_FAST + 8 * super::alloc::NFAST as u64 <= OFF_TOP_CHECK);
/// `!top`: see the layout table's note 3.
pub(crate) const OFF_TOP_CHECK: u64 = 2664;
/// Lifecycle flags: see the layout table's note 5.
pub(crate) const OFF_FLAGS: u64 = 2672;
const _: () = assert!(OFF_TOP_CHECK + 8 <= OFF_FLAGS);
const _: () = assert!(OFF_FLAGS + 8 <= HEAP_START);
/// Flag: remove the store when its last user is gone.
pub(crate) const FLAG_REMOVE_WHEN_UNUSED: u64 = 1;
/// Flag: the store was removed (or is being removed) under its header
/// lock: its name is gone or going.
pub(crate) const FLAG_REMOVED: u64 = 2;

/// The lifecycle flags word for `flags`: the flags in the low 32 bits,
/// their complement in the high 32 (see [`flags_of`]).
pub(crate) fn flags_word(flags: u64) -> u64 {
    let low = flags as u32;
    (!low as u64) << 32 | low as u64
}

/// The lifecycle flags a word holds: [`Error::Corrupted`] unless its high
/// half is the complement of its low half and the flags are known. A
/// damaged word must never make a store go away (an opener removes a
/// store marked removed): one flipped bit, or a word of zeros or ones,
/// never passes.
///
/// [`Error::Corrupted`]: crate::Error::Corrupted
pub(crate) fn flags_of(word: u64) -> Result<u64> {
    let (low, high) = (word as u32, (word >> 32) as u32);
    let flags = low as u64;
    if high != !low || flags & !(FLAG_REMOVE_WHEN_UNUSED | FLAG_REMOVED) != 0 {
        return Err(crate::Error::corrupted(format!(
            "the lifecycle flags word {word:#018x} is damaged"
        )));
    }
    Ok(flags)
}
/// The first heap byte: one page after the start.
pub(crate) const HEAP_START: u64 = 4096;

/// `init state` values.
pub(crate) const STATE_CREATING: u32 = 0;
pub(crate) const STATE_READY: u32 = 1;

/// The ABI tag: pointer width, endianness, the size of `pthread_mutex_t` and
/// the C library, packed into one word. Two processes may share a store only
/// if their tags are equal.
///
/// | bits   | field                                   |
/// |--------|-----------------------------------------|
/// | 0..8   | pointer width in bytes                  |
/// | 8..16  | 1 little-endian, 2 big-endian           |
/// | 16..32 | `size_of::<pthread_mutex_t>()`          |
/// | 32..40 | C library: 1 glibc, 2 musl, 3 other     |
pub(crate) fn abi_tag(mutex_size: usize) -> u64 {
    let ptr = core::mem::size_of::<usize>() as u64;
    let endian: u64 = if cfg!(target_endian = "little") { 1 } else { 2 };
    let libc: u64 = if cfg!(target_env = "gnu") {
        1
    } else if cfg!(target_env = "musl") {
        2
    } else {
        3
    };
    ptr | endian << 8 | (mutex_size as u64 & 0xffff) << 16 | libc << 32
}

/// Describes an ABI tag for error messages.
pub(crate) fn describe_abi(tag: u64) -> String {
    let endian = match (tag >> 8) & 0xff {
        1 => "little-endian",
        2 => "big-endian",
        _ => "unknown endianness",
    };
    let libc = match (tag >> 32) & 0xff {
        1 => "glibc",
        2 => "musl",
        _ => "another libc",
    };
    format!(
        "{}-bit {endian}, {libc}, {}-byte pthread_mutex_t",
        (tag & 0xff) * 8,
        (tag >> 16) & 0xffff
    )
}

/// Typed access to the header words, through the arena (so that writes
/// are journalled).
pub(crate) struct Header<'h>(pub(crate) &'h Arena<'h>);

macro_rules! word {
    ($get:ident, $set:ident, $off:expr) => {
        pub(crate) fn $get(&self) -> Result<u64> {
            self.0.mem.u64($off)
        }
        pub(crate) fn $set(&self, v: u64) -> Result<()> {
            self.0.set_u64($off, v)
        }
    };
}

impl Header<'_> {
    word!(capacity, set_capacity, OFF_CAPACITY);
    word!(committed, set_committed, OFF_COMMITTED);
    /// `top`, checked against its check word.
    pub(crate) fn top(&self) -> Result<u64> {
        if let Some(top) = self.0.top_cache.get() {
            return Ok(top);
        }
        let top = self.0.mem.u64(OFF_TOP)?;
        let check = self.0.mem.u64(OFF_TOP_CHECK)?;
        if check != !top {
            return Err(crate::Error::corrupted(format!(
                "the heap top {top:#x} disagrees with its check word {check:#x} (expected {:#x})",
                !top
            )));
        }
        // Kept for the rest of this operation: only `set_top` changes it
        // then (another process can change it only under the header lock,
        // which this operation holds; a rollback forgets it).
        if self.0.journaled {
            self.0.top_cache.set(Some(top));
        }
        Ok(top)
    }
    /// Sets `top` and its check word (both journalled).
    pub(crate) fn set_top(&self, v: u64) -> Result<()> {
        self.0.top_cache.set(None);
        self.0.set_u64(OFF_TOP, v)?;
        self.0.set_u64(OFF_TOP_CHECK, !v)?;
        if self.0.journaled {
            self.0.top_cache.set(Some(v));
        }
        Ok(())
    }
    word!(used, set_used, OFF_USED);
    word!(objects, set_objects, OFF_OBJECTS);
    word!(dir_table, set_dir_table, OFF_DIR_TABLE);
    word!(dir_cap, set_dir_cap, OFF_DIR_CAP);
    word!(dir_live, set_dir_live, OFF_DIR_LIVE);
    word!(dir_tombs, set_dir_tombs, OFF_DIR_TOMBS);
    word!(reg_table, set_reg_table, OFF_REG_TABLE);
    word!(reg_len, set_reg_len, OFF_REG_LEN);
    word!(reg_cap, set_reg_cap, OFF_REG_CAP);
    word!(recoveries, set_recoveries, OFF_RECOVERIES);
    word!(fast_count, set_fast_count, OFF_FAST_COUNT);
    word!(journal, set_journal, OFF_JOURNAL);
    word!(journal_cap, set_journal_cap, OFF_JOURNAL_CAP);
    word!(procs, set_procs, OFF_PROCS);
    word!(procs_len, set_procs_len, OFF_PROCS_LEN);
}
