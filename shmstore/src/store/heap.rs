//! Stores over heap memory and images of stores, for fuzz targets (feature
//! `fuzzing`; the public face is [`crate::fuzzing`]).
//!
//! A heap store runs the very code a store over a mapping runs: the same
//! `Inner`, arena, header lock and process table; only its region is
//! page-aligned heap memory instead of a `/dev/shm` mapping (see
//! `Region::heap`), so that AddressSanitizer sees every access.

use core::sync::atomic::AtomicU32;

use super::*;
use crate::sys::pthread::FUTEX_OWNER_DIED;

/// What to make of the header lock's bytes in an image being opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderLockMode {
    /// Trust them: for images taken by this process (by
    /// [`crate::fuzzing::image`] or [`crate::fuzzing::image_at_step`]),
    /// whose lock is a valid mutex.
    AsIs,
    /// A freshly initialised, unlocked lock.
    Unlocked,
    /// A freshly initialised lock whose owner died holding it: the next
    /// locker recovers the store (rolls its journal back).
    OwnerDied,
}

/// A label for a heap region (nothing is created under it).
fn heap_name() -> Result<SegmentName> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    SegmentName::parse(&format!("shmstore-heap-{}-{n}", std::process::id()))
}

impl Store {
    /// A new, empty store of `capacity` bytes (rounded up to a page) in
    /// heap memory.
    pub(crate) fn create_in_heap(capacity: u64) -> Result<Store> {
        let capacity = Store::options().capacity(capacity).checked_capacity()?;
        let len = usize::try_from(capacity).map_err(|_| Error::InvalidArgument {
            reason: format!("capacity {capacity} does not fit in the address space"),
        })?;
        Store::initialise(Region::heap(&heap_name()?, &[], len)?, 0, None)
    }

    /// Opens `image`, zero-extended to `len` bytes, as a store in heap
    /// memory, validating it as [`Store::open`] validates a segment (without
    /// waiting for a creator: a store still being created is an error).
    pub(crate) fn open_heap_image(image: &[u8], len: usize, lock: HeaderLockMode) -> Result<Store> {
        let name = heap_name()?;
        let region = Region::heap(&name, image, len)?;
        // As `Region::open` does: the header page is committed before it is
        // read.
        region.commit(0, (len as u64).min(HEAP_START))?;
        if lock != HeaderLockMode::AsIs && len as u64 >= OFF_LOCK + LOCK_SPACE {
            // SAFETY: `OFF_LOCK + LOCK_SPACE <= len`, so the offset is inside
            // the allocation, whose base is page-aligned.
            let p = unsafe { region.base().as_ptr().add(OFF_LOCK as usize) };
            // SAFETY:
            // - `p` is 64-aligned (page-aligned base, `OFF_LOCK` a multiple
            //   of 64) and valid for writes of `LOCK_SPACE >=
            //   size_of::<RawMutex>()` bytes (checked above);
            // - the memory was allocated just now by `Region::heap` and no
            //   other thread can reach it, so no one accesses the mutex during
            //   the call, and it is not on any thread's robust list (only a
            //   thread that locked these very bytes could have put it there);
            // - it does not move afterwards: the region owns the allocation.
            unsafe { RawMutex::init(p.cast::<RawMutex>()) }?;
            if lock == HeaderLockMode::OwnerDied {
                // What the kernel leaves in a robust mutex's lock word when
                // its owner dies holding it.
                // SAFETY: the lock word is the first, 4-aligned `u32` of the
                // mutex initialised above, inside the allocation; glibc and
                // the kernel only access it atomically, and no other thread
                // can reach it yet.
                unsafe { &*p.cast::<AtomicU32>() }.store(FUTEX_OWNER_DIED, Ordering::Release);
            }
        }
        match Store::validate(region, &name, Instant::now(), None)? {
            Some(store) => Ok(store),
            None => Err(Error::NotAStore {
                name: name.as_str().to_string(),
                reason: "the image is not a ready store".to_string(),
            }),
        }
    }

    /// Gives every container buffer whose pending mark names process `pid`
    /// the pid `ghost` instead, keeping the slot part (see
    /// [`crate::fuzzing::open_crash_image`]). Returns how many it changed.
    pub(crate) fn repoint_pending(&self, pid: u32, ghost: u32) -> Result<usize> {
        self.with_arena(|a| {
            let mut changed = 0;
            for (blk, _) in a.allocated_blocks()? {
                if let Some((_, _, pending)) = a.nested_header(blk)? {
                    if pending != 0 && pending as u32 == pid {
                        a.set_pending(blk, (pending & !0xffff_ffff) | u64::from(ghost))?;
                        changed += 1;
                    }
                }
            }
            Ok(changed)
        })
    }

    /// The region's base address and length.
    pub(crate) fn region_span(&self) -> (usize, usize) {
        (self.inner.mem.base_addr(), self.inner.mem.len() as usize)
    }

    /// The bytes of the store this process knows to be committed, then
    /// zeros up to its length: what a copy of its segment holds. Takes no
    /// lock: the caller makes sure no other thread writes the store meanwhile
    /// (a fuzz target runs one thread).
    pub(crate) fn raw_image(&self) -> Result<Vec<u8>> {
        let mem = self.inner.mem;
        let mut out = mem.read_bytes(0, mem.backed())?;
        out.resize(mem.len() as usize, 0);
        Ok(out)
    }
}
