//! A segment opened read-only, and private copies of its first bytes.
//!
//! Nothing here writes to a segment: it is opened `O_RDONLY`, read with
//! `pread` (which reads a hole as zeros and allocates nothing, so it can
//! never fault), and only its header page, once known to exist, is mapped,
//! `PROT_READ`, to read the header lock's words atomically.
//!
//! # A consistent copy without the lock
//!
//! Metadata changes only under the header lock, whose holder keeps the
//! *lock generation* odd while it holds it (see the header's layout, note
//! 3). A copy is consistent if, before and after it was made, the
//! generation was the same and the lock was free (or its holder dead: no
//! one writes until someone recovers it, which changes the generation).
//! [`Snapshot::take`] copies until a copy is consistent or its patience runs
//! out, and says which. Memory safety never depends on it: the copy is
//! private and every read of it is checked ([`Mem`]); only the coherence of
//! what is reported does.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::arena::header::*;
use crate::arena::mem::{Backed, Mem};
use crate::region::SegmentName;
use crate::sys::pthread::{observe, Observed, OWNER_WORD};
use crate::sys::shm::{self, FileStat, OpenHow};
use crate::{Error, Result};

/// A segment opened read-only.
pub(crate) struct Segment {
    fd: OwnedFd,
    /// `fstat` of the open descriptor.
    pub(crate) stat: FileStat,
}

impl Segment {
    /// Opens `name` read-only. A segment this user may not read is
    /// [`Error::PermissionDenied`].
    pub(crate) fn open(name: &SegmentName) -> Result<Segment> {
        let fd = shm::shm_open(name.as_cstr(), OpenHow::ReadOnly)?;
        let stat = shm::fstat(fd.as_fd())?;
        Ok(Segment { fd, stat })
    }

    /// Reads up to `buf.len()` bytes at `offset`; returns how many.
    pub(crate) fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        shm::read_at(self.fd.as_fd(), buf, offset)
    }

    /// The first `min(4096, size)` bytes.
    pub(crate) fn header_page(&self) -> Result<Vec<u8>> {
        let len = self.stat.size.min(HEAP_START) as usize;
        let mut page = vec![0u8; len];
        let n = self.read_at(&mut page, 0)?;
        page.truncate(n);
        Ok(page)
    }
}

/// The little-endian `u64` at `off` of `bytes` (0 past the end).
pub(crate) fn word_at(bytes: &[u8], off: u64) -> u64 {
    let off = off as usize;
    bytes
        .get(off..off + 8)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
}

/// The little-endian `u32` at `off` of `bytes` (0 past the end).
pub(crate) fn word32_at(bytes: &[u8], off: u64) -> u32 {
    let off = off as usize;
    bytes
        .get(off..off + 4)
        .map_or(0, |b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
}

/// The header page mapped read-only, for atomic reads of the lock's words.
struct HeaderView {
    base: NonNull<u8>,
}

impl HeaderView {
    /// Maps the first page of `seg`.
    ///
    /// The caller has read the page with `pread` and found the store's
    /// magic in it, so the page is allocated in the file (a hole reads as
    /// zeros): touching it through the mapping cannot raise `SIGBUS`.
    fn map(seg: &Segment) -> Result<HeaderView> {
        let base = shm::mmap_shared_read_only(seg.fd.as_fd(), HEAP_START as usize)?;
        Ok(HeaderView { base })
    }

    fn word(&self, off: u64) -> u32 {
        debug_assert!(off % 4 == 0 && off + 4 <= HEAP_START);
        // SAFETY: `off + 4 <= HEAP_START`, the mapped length, and `off` is
        // a multiple of 4 from a page-aligned base; the page exists (see
        // `map`) and stays mapped while `self` lives; these words are only
        // ever written atomically (the lock's by glibc and the kernel, the
        // generation by `AtomicU64` stores, whose halves a 32-bit load
        // reads without tearing either half); a load never writes, so the
        // read-only protection is respected.
        unsafe { &*self.base.as_ptr().add(off as usize).cast::<AtomicU32>() }
            .load(Ordering::Acquire)
    }

    /// The low 32 bits of the lock generation (enough to see a change
    /// during one copy).
    fn generation(&self) -> u32 {
        let low = if cfg!(target_endian = "big") { 4 } else { 0 };
        self.word(OFF_LOCK_GEN + low)
    }

    fn lock(&self) -> Observed {
        observe(self.word(OFF_LOCK), self.word(OFF_LOCK + OWNER_WORD))
    }
}

impl Drop for HeaderView {
    fn drop(&mut self) {
        // SAFETY: `base` is the mapping of `HEAP_START` bytes made in `map`,
        // unmapped only here; no reference into it outlives `word`.
        let _ = unsafe { shm::munmap(self.base, HEAP_START as usize) };
    }
}

/// How much of a store a [`Snapshot`] copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Extent {
    /// The header page and the process table (what `Store::list` needs).
    Summary,
    /// Every committed byte.
    Full,
}

/// A private copy of a store's first bytes, laid out as the mapping is.
pub(crate) struct Snapshot {
    buf: NonNull<u8>,
    layout: std::alloc::Layout,
    _backed: Backed,
    /// The copy, addressed as the segment is (its length is the segment's;
    /// only the copied bytes are backed).
    pub(crate) mem: Mem,
    /// The copy was made while no live process held the header lock, and
    /// nothing changed meanwhile.
    pub(crate) consistent: bool,
    /// The header lock, as last observed.
    pub(crate) lock: Observed,
}

// SAFETY: the snapshot owns its buffer and backed limit outright (no other
// thread or process can reach them); moving or sharing it moves or shares
// plain bytes.
unsafe impl Send for Snapshot {}
// SAFETY: as above; `&Snapshot` only gives reads through `Mem`, whose
// writes (used on a snapshot only to roll back its journal, through `&self`
// of an `Arena`) are the caller's to order.
unsafe impl Sync for Snapshot {}

impl Snapshot {
    /// Copies `extent` of the store in `seg`, whose header page `page`
    /// (already read) holds the store's magic. Waits up to `patience` for
    /// a moment when no live process holds the header lock; after that
    /// takes the last copy, marked inconsistent.
    pub(crate) fn take(seg: &Segment, extent: Extent, patience: Duration) -> Result<Snapshot> {
        let view = HeaderView::map(seg)?;
        let size = seg.stat.size;
        let deadline = Instant::now() + patience;
        let mut pause = Duration::from_micros(50);
        loop {
            let (g1, l1) = (view.generation(), view.lock());
            // A live holder may be writing: the lock names one, or the
            // generation is odd while the lock does not say its holder died.
            let busy = matches!(l1, Observed::Held { .. } | Observed::Recovering { .. })
                || (g1 & 1 == 1 && !matches!(l1, Observed::OwnerDied | Observed::Unrecoverable));
            if busy && Instant::now() < deadline {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(5));
                continue;
            }
            let mut snap = Snapshot::copy(seg, extent, size)?;
            core::sync::atomic::fence(Ordering::Acquire);
            let (g2, l2) = (view.generation(), view.lock());
            snap.consistent = !busy && g1 == g2 && l1 == l2;
            snap.lock = l2;
            if snap.consistent || Instant::now() >= deadline {
                return Ok(snap);
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(5));
        }
    }

    /// One copy: the header page, then as far as `extent` asks (never past
    /// what the header says is committed, nor the file's end).
    fn copy(seg: &Segment, extent: Extent, size: u64) -> Result<Snapshot> {
        let page = seg.header_page()?;
        // Never more than the file holds in memory: a header that claims
        // more committed bytes (a damaged word over a large sparse segment)
        // must not make this copy gigabytes of holes. The arena then finds
        // the claim beyond the copy and says so.
        let held = shm::fstat(seg.fd.as_fd())?
            .allocated
            .next_multiple_of(HEAP_START);
        let committed = word_at(&page, OFF_COMMITTED)
            .min(held)
            .clamp(HEAP_START, size.max(HEAP_START));
        let upto = match extent {
            Extent::Full => committed,
            Extent::Summary => {
                // The process table's slots (64 bytes each), and the block
                // header before them.
                let table = word_at(&page, OFF_PROCS);
                let slots = word_at(&page, OFF_PROCS_LEN);
                let end = slots
                    .checked_mul(64)
                    .and_then(|b| b.checked_add(table))
                    .unwrap_or(committed);
                end.next_multiple_of(8).clamp(HEAP_START, committed)
            }
        }
        .min(size);
        let upto = upto.max(page.len() as u64);
        let layout = std::alloc::Layout::from_size_align(
            (upto as usize).max(HEAP_START as usize),
            crate::arena::mem::MAX_ALIGN as usize,
        )
        .map_err(|_| Error::InvalidArgument {
            reason: format!("a copy of {upto} bytes does not fit in memory"),
        })?;
        // SAFETY: the layout's size is at least a page, non-zero; its
        // alignment is a power of two.
        let buf = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).ok_or_else(|| {
            Error::InvalidArgument {
                reason: format!("no memory for a copy of the store's {upto} used bytes"),
            }
        })?;
        // Owned from here on: freed when `snap` drops, even on an error.
        let backed = Backed::new(upto);
        // SAFETY: `buf` is a fresh, exclusively owned, page-aligned
        // allocation of at least `upto` bytes, and `backed` holds `upto`
        // and never grows (a snapshot's arena refuses to commit); both are
        // owned by the `Snapshot` that owns every copy of this `Mem`.
        let mem = unsafe { Mem::new(buf, size.max(upto) as usize, backed.ptr()) };
        let snap = Snapshot {
            buf,
            layout,
            _backed: backed,
            mem,
            consistent: false,
            lock: Observed::Unknown,
        };
        // SAFETY: `buf` holds `layout.size() >= upto` bytes, owned by
        // `snap`; no other reference to them exists.
        let bytes = unsafe { core::slice::from_raw_parts_mut(snap.buf.as_ptr(), upto as usize) };
        bytes[..page.len()].copy_from_slice(&page);
        if upto > page.len() as u64 {
            seg.read_at(&mut bytes[page.len()..], page.len() as u64)?;
        }
        Ok(snap)
    }

    /// Bytes copied.
    pub(crate) fn copied(&self) -> u64 {
        self.mem.backed()
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        // SAFETY: allocated in `copy` with exactly this layout, freed once.
        unsafe { std::alloc::dealloc(self.buf.as_ptr(), self.layout) };
    }
}

/// The commit callback of a snapshot's arena: nothing can be committed in
/// a copy; a header that claims more committed bytes than were copied is
/// reported as such.
pub(crate) fn no_commit(from: u64, to: u64) -> Result<()> {
    Err(Error::corrupted(format!(
        "the header says bytes up to {to:#x} are committed, but the segment holds only {from:#x}"
    )))
}
