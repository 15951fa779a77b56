//! Removing a store's name under its header lock, for
//! [`Store::remove_unused`] (what `shmstore gc` and `rm` do).
//!
//! The removal protocol (see the header's docs, note 5): the remover takes
//! the store's header lock, decides under it (every registered process
//! dead, or none), marks the store removed, commits, and unlinks the name
//! — if it still names this segment — before it releases the lock. An
//! opener registers under the same lock after checking the mark, so it
//! either was registered first (and the remover keeps the store) or sees
//! the mark and opens the name anew.

use super::*;

/// What [`remove_locked`] did.
pub(crate) enum Locked<T> {
    /// The name no longer names the file that was looked at, or that file
    /// is no longer a ready store of this format: nothing was done.
    Changed(String),
    /// Decided under the header lock: `judged` is the decision's grounds.
    Decided {
        /// The store was marked removed (by this call, or before it).
        removed: bool,
        /// Its name was unlinked by this call.
        unlinked: bool,
        /// What the caller's judgement returned.
        judged: T,
    },
}

/// Opens the store `name` read-write (without joining it), checks that it
/// is the file `file` (`st_dev`, `st_ino`) and a ready store of this
/// format, takes its header lock (waiting at most `wait`:
/// [`Error::TimedOut`] then; a holder that died is recovered from, as by
/// any locker), and asks `judge` whether to remove it. If so, marks it
/// removed, commits, and unlinks the name if it still names this segment,
/// all before the lock is released.
///
/// `judge` sees the store under the lock (its process table as it is);
/// it answers `(remove, grounds)`. A store already marked removed is
/// removed whatever it answers: its remover died before unlinking it.
pub(crate) fn remove_locked<T>(
    name: &SegmentName,
    file: (u64, u64),
    wait: Duration,
    mut judge: impl FnMut(&Arena<'_>) -> Result<(bool, T)>,
) -> Result<Locked<T>> {
    let region = Region::open(name)?;
    if region.file_id()? != file {
        return Ok(Locked::Changed(
            "another segment has its name now".to_string(),
        ));
    }
    let len = region.len() as u64;
    let mut inner = Inner::new(region);
    inner.lock_timeout = Some(wait);
    let mem = inner.mem;
    // What the look found, still so: else someone else's segment (or a
    // store being created again) is there now.
    let identity = || -> Result<Option<String>> {
        if mem.atomic_u64(OFF_MAGIC)?.load(Ordering::Acquire) != u64::from_le_bytes(MAGIC) {
            return Ok(Some("it is no longer a shmstore store".into()));
        }
        if mem.u32(OFF_VERSION)? != VERSION || mem.u64(OFF_ABI)? != abi_tag(PTHREAD_MUTEX_SIZE) {
            return Ok(Some("it is now a store of another format".into()));
        }
        if mem.atomic_u32(OFF_STATE)?.load(Ordering::Acquire) != STATE_READY {
            return Ok(Some("it is not a ready store any more".into()));
        }
        if mem.u64(OFF_CAPACITY)? != len {
            return Ok(Some("its capacity word disagrees with its size".into()));
        }
        Ok(None)
    };
    if let Some(why) = identity()? {
        return Ok(Locked::Changed(why));
    }
    inner
        .store_id
        .store(mem.u64(OFF_STORE_ID)?, Ordering::Relaxed);
    let unlinked = core::cell::Cell::new(false);
    let region = &inner.region;
    let ((removed, judged), _) = inner.with_arena_then(
        |a| {
            let flags = flags_of(a.mem.u64(OFF_FLAGS)?)?;
            let (remove, judged) = judge(a)?;
            let removed = flags & FLAG_REMOVED != 0 || remove;
            if removed && flags & FLAG_REMOVED == 0 {
                a.set_u64(OFF_FLAGS, flags_word(flags | FLAG_REMOVED))?;
            }
            Ok((removed, judged))
        },
        |(removed, _)| {
            if *removed {
                unlinked.set(region.unlink_if_same()?);
            }
            Ok(())
        },
    )?;
    Ok(Locked::Decided {
        removed,
        unlinked: unlinked.get(),
        judged,
    })
}

/// Unlinks `name` if it still names the file `file`, without any lock:
/// for a segment that has no usable header lock (a store left
/// half-created, a store of another format). Between the check and the
/// unlink another remover could unlink the name and a creator make a new
/// segment under it: a window of two system calls that needs two removers
/// and a creator at once.
pub(crate) fn unlink_unlocked(name: &SegmentName, file: (u64, u64)) -> Result<bool> {
    match crate::sys::shm::stat_segment(name.as_str())? {
        Some(now) if (now.dev, now.ino) == file => match region::unlink(name) {
            Ok(()) => Ok(true),
            Err(Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        },
        _ => Ok(false),
    }
}
