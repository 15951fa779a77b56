//! A segment opened read-only, and private copies of its first bytes.
//!
//! Nothing here writes to a segment, and nothing of it is mapped: it is
//! opened `O_RDONLY` (without following a symlink, without blocking on a
//! FIFO; anything but a regular file is refused) and read with `pread`,
//! which reads a hole as zeros, allocates nothing, and reads a file that
//! its owner shrank meanwhile as shorter — never a fault. (A mapping would
//! raise `SIGBUS` on the first read past a shrunk file's end.)
//!
//! # A consistent copy without the lock
//!
//! Metadata changes only under the header lock, whose holder keeps the
//! *lock generation* odd while it holds it (see the header's layout, note
//! 4). A copy is consistent if, before and after it was made, the
//! generation was the same and the lock was free (or its holder dead: no
//! one writes until someone recovers it, which changes the generation).
//! The lock's cache line (the mutex and the generation) is read with one
//! `pread` of 64 aligned bytes; the kernel copies it in word-sized pieces
//! on the machines shmstore runs on, but nothing depends on that: a torn
//! read can only make a moment look busy or changed (another try), or,
//! against odds that need two torn reads agreeing, a changing moment look
//! stable — a report that mixes two moments, never a fault.
//! [`Snapshot::take`] copies until a copy is consistent or its patience
//! runs out, and says which. Memory safety never depends on it: the copy
//! is private and every read of it is checked ([`Mem`]); only the coherence
//! of what is reported does.

use core::ptr::NonNull;
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

/// The header lock's cache line, read with `pread` (see the module docs):
/// the mutex's words and the lock generation.
struct LockLine([u8; LOCK_SPACE as usize]);

impl LockLine {
    /// Reads it from `seg`; `None` if the file no longer holds it (shrunk
    /// since it was opened).
    fn read(seg: &Segment) -> Result<Option<LockLine>> {
        let mut line = [0u8; LOCK_SPACE as usize];
        let n = seg.read_at(&mut line, OFF_LOCK)?;
        Ok((n == line.len()).then_some(LockLine(line)))
    }

    /// The native-endian 32-bit word at segment offset `off` (inside the
    /// line), as the C library and the atomics wrote it.
    fn word(&self, off: u64) -> u32 {
        let at = (off - OFF_LOCK) as usize;
        u32::from_ne_bytes(self.0[at..at + 4].try_into().expect("4 bytes"))
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

/// The most a summary copy (what
/// [`Store::list`](crate::Store::list) and `shmstore ls` read of each
/// store) copies, whatever the header's words say: the header page, the
/// intent journal and the process table, which a store allocates first
/// and never moves, their block headers, and a page to spare. A process
/// table that a damaged word places further is reported as beyond the
/// copy.
pub const SUMMARY_MAX_BYTES: u64 = HEAP_START
    + crate::arena::journal::JOURNAL_ENTRIES * 16
    + crate::arena::procs::PROC_SLOTS * 64
    + 2 * HEAP_START;

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
        let size = seg.stat.size;
        let deadline = Instant::now() + patience;
        let mut pause = Duration::from_micros(50);
        // The lock line as it is now: a file shrunk below it reads as a
        // lock of unknown state that never changes.
        let observe = || -> Result<(u32, Observed)> {
            Ok(LockLine::read(seg)?.map_or((0, Observed::Unknown), |l| (l.generation(), l.lock())))
        };
        loop {
            let (g1, l1) = observe()?;
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
            let (g2, l2) = observe()?;
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
                // header before them; never more than a healthy store's
                // table needs, whatever the words say.
                let table = word_at(&page, OFF_PROCS);
                let slots = word_at(&page, OFF_PROCS_LEN);
                let end = slots
                    .checked_mul(64)
                    .and_then(|b| b.checked_add(table))
                    .unwrap_or(SUMMARY_MAX_BYTES);
                end.next_multiple_of(8)
                    .min(SUMMARY_MAX_BYTES)
                    .clamp(HEAP_START, committed)
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
