//! Nested blocks: the allocations that containers own (the elements of a
//! `ShmVec`, the bytes of a `ShmString`, the table of a `ShmMap`, the
//! target of a `RelPtr`).
//!
//! A nested block is an ordinary allocator block whose payload starts with a
//! header that says what it holds and who owns it, so that a container can
//! check, every time it follows its offset, that the block is still the one
//! it allocated — whatever another process, a crash or `Store::collect` did
//! meanwhile — and so that the store can recognise nested blocks when it
//! walks the heap.
//!
//! # Layout
//!
//! | offset | size | field                                                    |
//! |-------:|-----:|----------------------------------------------------------|
//! | 0      | 8    | magic [`NESTED_MAGIC`] (cleared when the block is freed) |
//! | 8      | 8    | fingerprint of the element type                          |
//! | 16     | 8    | capacity, in elements                                    |
//! | 24     | 8    | token of the owning container (non-zero)                 |
//! | 32     | 8    | pending: who may hold it outside the store (see below)   |
//! | 40     | 8    | check word: a hash of magic, fingerprint, capacity, token |
//! | 48     | 8    | length: elements in use (at most the capacity)           |
//! | 56     |      | the elements, at the next multiple of their alignment    |
//!
//! The length lives in the block, not in the container, so that an
//! operation that builds a new buffer (growth, an insertion in the middle)
//! publishes the new elements *and* their count by switching one word: the
//! container's offset of its buffer.
//!
//! The **token** is a 64-bit value drawn when a container first allocates;
//! the container keeps it beside the block's offset. A container uses a
//! block only if the block's token is its own, so a block that was freed
//! and reused for another container (whose token differs) is never taken
//! for its own: a stale container gets an error, never another container's
//! memory. Freeing a nested block clears its magic first, so a stale offset
//! into freed memory (even one whose old header bytes survive inside a
//! merged free block) never passes the check.
//!
//! **Pending** marks a block that is not (yet) reachable from any object of
//! the store but is held by a live process: a value being built on its
//! stack before `insert`, or a container moved out of the store through a
//! guard. `Store::collect` frees unreachable nested blocks only when their
//! pending mark names no live process. The word packs the holder's process
//! slot plus one (bits 32..64; all ones for a process without a slot) and
//! its pid (bits 0..32); 0 means "linked": reachable, or free to collect
//! once unreachable.

use core::sync::atomic::{AtomicU64, Ordering};

use super::Arena;
use crate::{Error, Result};

/// Identifies a nested block. The top nibble is `0xF` and the low 40 bits
/// are 0, so no directory slot, journal entry, record count or offset can
/// equal it.
pub(crate) const NESTED_MAGIC: u64 = 0xF5E5_7ED0_0000_0000;
/// Bytes of the header before the elements.
pub(crate) const NESTED_HEADER: u64 = 56;
const N_MAGIC: u64 = 0;
const N_FP: u64 = 8;
const N_CAP: u64 = 16;
const N_TOKEN: u64 = 24;
pub(crate) const N_PENDING: u64 = 32;
const N_CHECK: u64 = 40;
pub(crate) const N_LEN: u64 = 48;

/// The element type of a nested block, as the container knows it from the
/// compiler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ElemType {
    pub(crate) fingerprint: u64,
    pub(crate) size: u64,
    pub(crate) align: u64,
}

/// A validated nested block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Nested {
    /// Offset of the first element.
    pub(crate) elems: u64,
    /// Capacity in elements; `elems + cap * size` lies inside the block.
    pub(crate) cap: u64,
    /// Elements in use; at most `cap`.
    pub(crate) len: u64,
    /// The pending word (see the module docs).
    pub(crate) pending: u64,
    /// The first element, checked to be valid for `cap` elements (inside
    /// the mapping's committed bytes, aligned). Valid while the mapping
    /// lives and the block is not freed.
    pub(crate) ptr: *mut u8,
    /// The length word.
    len_word: *const AtomicU64,
}

impl Nested {
    /// Publishes a new length (a release store, after the elements it
    /// covers), checked against the capacity. The caller owns the block
    /// (it holds the container's lock, or the container is outside the
    /// store) and the mapping is alive.
    pub(crate) fn set_len(&self, len: u64) -> Result<()> {
        if len > self.cap {
            return Err(Error::corrupted(format!(
                "nested block: length {len} exceeds the capacity {}",
                self.cap
            )));
        }
        // SAFETY: `len_word` was checked (inside the mapping's committed
        // bytes, 8-aligned) when this `Nested` was read, and the block it
        // lies in is still allocated and mapped (the caller's contract);
        // the word is only accessed atomically.
        unsafe { &*self.len_word }.store(len, Ordering::Release);
        Ok(())
    }
}

/// The check word of a header.
fn check_word(fp: u64, cap: u64, token: u64) -> u64 {
    let mut h = NESTED_MAGIC ^ fp.rotate_left(13) ^ cap.rotate_left(29) ^ token.rotate_left(47);
    h ^= h >> 31;
    h = h.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 29)
}

/// Offset of the elements of a block whose payload is at `blk`, for
/// elements aligned to `align` (a power of two, at most a page).
pub(crate) fn elems_offset(blk: u64, align: u64) -> Option<u64> {
    blk.checked_add(NESTED_HEADER)?
        .checked_next_multiple_of(align.max(1))
}

/// Payload bytes a block for `cap` elements of `ty` needs (the payload is
/// 8-aligned, so at most `align - 8` bytes of padding).
pub(crate) fn payload_bytes(ty: ElemType, cap: u64) -> Option<u64> {
    let pad = ty.align.saturating_sub(8);
    NESTED_HEADER
        .checked_add(pad)?
        .checked_add(ty.size.checked_mul(cap)?)
}

/// Reads and checks the nested block at `blk` straight from `mem`, without
/// the allocator's header: one bounds check for the block's header word
/// and the nested header together (they are adjacent), then plain
/// comparisons. The block must be allocated (`INUSE`, not parked), large
/// enough for its capacity and inside the bytes this process knows are
/// committed; its header must be intact (magic and check word), for `ty`,
/// owned by `token`, with a length no larger than its capacity.
///
/// This is the check every container operation makes; it needs no lock
/// (every word is read atomically, and the caller knows the block cannot
/// be freed meanwhile: it holds the container's lock, or the block is
/// marked as held by this process).
pub(crate) fn read_nested(
    mem: &super::mem::Mem,
    blk: u64,
    ty: ElemType,
    token: u64,
) -> Result<Nested> {
    let (n, fp) = read_nested_any(mem, blk, ty.size, ty.align, token)?;
    if fp != ty.fingerprint {
        // The container's own block (its token matched), of another element
        // type: refused, never reinterpreted. The caller names the types.
        return Err(Error::TypeMismatch {
            name: format!("the buffer at {blk:#x}"),
            expected: format!("elements with fingerprint {:#018x}", ty.fingerprint),
            found: format!("elements with fingerprint {fp:#018x}"),
        });
    }
    Ok(n)
}

/// [`read_nested`] for a caller that knows the elements' size and
/// alignment but not their fingerprint (the store's walk of a value by its
/// recorded layout); returns the fingerprint the block records too.
pub(crate) fn read_nested_any(
    mem: &super::mem::Mem,
    blk: u64,
    size: u64,
    align: u64,
    token: u64,
) -> Result<(Nested, u64)> {
    let ty = ElemType {
        fingerprint: 0,
        size,
        align,
    };
    let bad = |what: &str| {
        Error::corrupted(format!(
            "nested block {blk:#x}: {what} (a container's buffer was reclaimed, corrupted, \
             or belongs to another container)"
        ))
    };
    let head = blk.checked_sub(8).ok_or_else(|| bad("not a block"))?;
    let (words, hp) = mem.words::<8>(head)?;
    let [word, magic, fp, cap, owner, pending, check, len] = words;
    if magic != NESTED_MAGIC || check != check_word(fp, cap, owner) {
        return Err(bad("no nested-block header"));
    }
    if owner != token {
        return Err(bad("owned by another container"));
    }
    if !ty.align.is_power_of_two() || ty.align > super::mem::MAX_ALIGN {
        return Err(bad("elements with an impossible alignment"));
    }
    let size = word & !super::alloc::FLAGS;
    let allocated = word & super::alloc::INUSE != 0 && word & super::alloc::FAST == 0;
    let fits = payload_bytes(ty, cap).is_some_and(|need| need <= size.saturating_sub(8))
        && head
            .checked_add(size)
            .is_some_and(|end| end <= mem.backed());
    if !allocated || !fits {
        return Err(bad("not an allocated block large enough for its capacity"));
    }
    if len > cap {
        return Err(bad("length larger than the capacity"));
    }
    let elems = elems_offset(blk, ty.align).ok_or_else(|| bad("overflows"))?;
    let ptr = mem.ptr(elems, ty.size.saturating_mul(cap), ty.align.max(1))?;
    // The elements a length covers were written before it (a release
    // store): order the reads of them after this one.
    core::sync::atomic::fence(Ordering::Acquire);
    Ok((
        Nested {
            elems,
            cap,
            len,
            pending,
            ptr,
            // Word 7 of the eight `words` checked at `hp`.
            len_word: hp.wrapping_add(7).cast_const(),
        },
        fp,
    ))
}

impl Arena<'_> {
    /// Allocates a nested block for `cap` elements of `ty`, owned by the
    /// container with `token`, marked `pending` (see the module docs).
    /// Returns the block's payload offset. The elements are uninitialised.
    pub(crate) fn alloc_nested(
        &self,
        ty: ElemType,
        cap: u64,
        token: u64,
        pending: u64,
    ) -> Result<u64> {
        let bytes = payload_bytes(ty, cap).ok_or_else(|| Error::InvalidArgument {
            reason: format!(
                "{cap} elements of {} bytes overflow the address space",
                ty.size
            ),
        })?;
        if token == 0 {
            return Err(Error::InvalidArgument {
                reason: "a container token must not be 0".into(),
            });
        }
        let blk = self.alloc(bytes)?;
        // No element slot holds stale bytes (a reused block's old container
        // words could otherwise be taken for live ones if a length word
        // were corrupted): all-zero bytes are null containers.
        self.mem.zero(blk + NESTED_HEADER, bytes - NESTED_HEADER)?;
        // The block is fresh: its header words need no undo entries.
        self.set_u64(blk + N_FP, ty.fingerprint)?;
        self.set_u64(blk + N_CAP, cap)?;
        self.set_u64(blk + N_TOKEN, token)?;
        self.set_u64(blk + N_PENDING, pending)?;
        self.set_u64(blk + N_LEN, 0)?;
        self.set_u64(blk + N_CHECK, check_word(ty.fingerprint, cap, token))?;
        self.set_u64(blk + N_MAGIC, NESTED_MAGIC)?;
        Ok(blk)
    }

    /// Reads and checks the nested block at `blk`: it is an allocated block
    /// with a nested header for `ty`, owned by `token`, whose capacity fits
    /// inside it. Needs no lock: every word is read atomically, and the
    /// caller knows the block cannot be freed meanwhile (it holds the
    /// container's lock or the block is pending for this process).
    pub(crate) fn nested(&self, blk: u64, ty: ElemType, token: u64) -> Result<Nested> {
        read_nested(&self.mem, blk, ty, token)
    }

    /// The token and element fingerprint of what looks like a nested block
    /// at `blk`, if its header is intact (for the heap walk of `check` and
    /// `collect`, which do not know the owner).
    pub(crate) fn nested_header(&self, blk: u64) -> Result<Option<(u64, u64, u64)>> {
        let magic = self.mem.u64(blk + N_MAGIC)?;
        if magic != NESTED_MAGIC {
            return Ok(None);
        }
        let (fp, cap, token) = (
            self.mem.u64(blk + N_FP)?,
            self.mem.u64(blk + N_CAP)?,
            self.mem.u64(blk + N_TOKEN)?,
        );
        if self.mem.u64(blk + N_CHECK)? != check_word(fp, cap, token) {
            return Ok(None);
        }
        Ok(Some((fp, token, self.mem.u64(blk + N_PENDING)?)))
    }

    /// Sets the pending word of a nested block (see the module docs). A
    /// hint written atomically, outside the journal: it only ever protects
    /// a block from `collect`, and a stale value is corrected by the next
    /// writer or found dead.
    pub(crate) fn set_pending(&self, blk: u64, pending: u64) -> Result<()> {
        self.mem.set_u64(blk + N_PENDING, pending)
    }

    /// Sets the length of a nested block the caller owns (it holds the
    /// container's lock, or the container is outside the store): the word
    /// that publishes elements written before it. Checked against the
    /// capacity.
    pub(crate) fn set_nested_len(&self, blk: u64, n: &Nested, len: u64) -> Result<()> {
        let _ = blk;
        n.set_len(len)
    }

    /// Frees the nested block at `blk` if it still is the block of the
    /// container with `token` holding `fp` elements; clears its magic first
    /// (journalled). Returns `false`, freeing nothing, if it is not (freed
    /// and perhaps reused already).
    pub(crate) fn free_nested(&self, blk: u64, fp: u64, token: u64) -> Result<bool> {
        if self.payload_size(blk).is_err() {
            return Ok(false);
        }
        match self.nested_header(blk)? {
            Some((f, t, _)) if f == fp && t == token => {}
            _ => return Ok(false),
        }
        self.set_u64(blk + N_MAGIC, 0)?;
        self.free(blk)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arena::tests::HeapStore;

    const U64: ElemType = ElemType {
        fingerprint: 0x1234,
        size: 8,
        align: 8,
    };

    #[test]
    fn a_nested_block_is_found_only_by_its_owner_and_type() {
        let s = HeapStore::new(1 << 20);
        let a = s.arena();
        let blk = a.alloc_nested(U64, 10, 77, 0).unwrap();
        let n = a.nested(blk, U64, 77).unwrap();
        assert_eq!((n.elems, n.cap, n.len), (blk + 56, 10, 0));
        a.set_nested_len(blk, &n, 10).unwrap();
        assert!(a.set_nested_len(blk, &n, 11).is_err());
        assert_eq!(a.nested(blk, U64, 77).unwrap().len, 10);
        a.mem.set_u64(blk + N_LEN, 11).unwrap();
        assert!(a.nested(blk, U64, 77).is_err(), "length past the capacity");
        a.mem.set_u64(blk + N_LEN, 0).unwrap();
        assert!(a.nested(blk, U64, 78).is_err(), "another token");
        let other = ElemType {
            fingerprint: 1,
            ..U64
        };
        assert!(a.nested(blk, other, 77).is_err(), "another type");
        assert!(a.nested(blk + 8, U64, 77).is_err(), "not a block start");
        assert_eq!(a.nested_header(blk).unwrap(), Some((0x1234, 77, 0)));
        // A forged capacity fails the check word; a consistent but too
        // large one fails the block size.
        a.mem.set_u64(blk + N_CAP, 1000).unwrap();
        assert!(a.nested(blk, U64, 77).is_err());
        a.mem
            .set_u64(blk + N_CHECK, check_word(0x1234, 1000, 77))
            .unwrap();
        assert!(a.nested(blk, U64, 77).is_err());
        a.mem.set_u64(blk + N_CAP, 10).unwrap();
        a.mem
            .set_u64(blk + N_CHECK, check_word(0x1234, 10, 77))
            .unwrap();
        assert!(a.nested(blk, U64, 77).is_ok());
    }

    #[test]
    fn a_freed_nested_block_is_never_taken_for_live_even_inside_a_merged_free_block() {
        let s = HeapStore::new(1 << 20);
        let a = s.arena();
        // Big blocks go to the bins and merge with free neighbours.
        let big = ElemType { size: 2048, ..U64 };
        let x = a.alloc_nested(big, 1, 5, 0).unwrap();
        let y = a.alloc_nested(big, 1, 6, 0).unwrap();
        let _guard = a.alloc(8).unwrap();
        assert!(a.free_nested(x, big.fingerprint, 5).unwrap());
        assert!(a.free_nested(y, big.fingerprint, 6).unwrap());
        // y merged into x's free block: its old header word survives in the
        // middle of a free block, but its magic does not.
        assert!(a.nested(y, big, 6).is_err());
        assert!(
            !a.free_nested(y, big.fingerprint, 6).unwrap(),
            "no double free"
        );
        assert!(!a.free_nested(x, big.fingerprint, 5).unwrap());
        a.check_heap().unwrap();
    }

    #[test]
    fn elements_are_aligned_as_their_type_asks() {
        let s = HeapStore::new(1 << 20);
        let a = s.arena();
        for align in [1u64, 2, 8, 16, 64, 256, 4096] {
            let ty = ElemType {
                fingerprint: align,
                size: align.max(4),
                align,
            };
            let blk = a.alloc_nested(ty, 3, 9, 0).unwrap();
            let n = a.nested(blk, ty, 9).unwrap();
            assert_eq!(n.elems % align, 0);
            assert!(a.mem.ptr(n.elems, ty.size * 3, align).is_ok());
        }
    }
}
