//! Creating, opening and validating a segment, and joining its process table.

use super::*;

impl Store {
    pub(super) fn initialise(
        region: Region,
        flags: u64,
        lock_timeout: Option<Duration>,
    ) -> Result<Store> {
        region.commit(0, HEAP_START)?;
        let mut inner = Inner::new(region);
        inner.lock_timeout = lock_timeout;
        let mem = inner.mem;
        crate::crash::step();
        // Who is creating it, before anything says "store": an opener that
        // finds the magic (released after these) and a creator that is gone
        // knows the store will never be ready.
        let me = own_identity();
        mem.set_u32(OFF_CREATOR, me.pid)?;
        // The low 32 bits of our start time, or the "unknown" word if we
        // could not read it (then we count as alive while our pid exists).
        mem.set_u32(OFF_CREATOR_START, me.start.low32_word())?;
        // The pid namespace those are numbered in (header note 6); one this
        // process cannot tell is mixed from the start.
        mem.atomic_u32(OFF_PIDNS)?
            .store(namespace_word(me.pidns), Ordering::Relaxed);
        mem.atomic_u32(OFF_STATE)?
            .store(STATE_CREATING, Ordering::Relaxed);
        mem.set_u32(OFF_VERSION, VERSION)?;
        mem.set_u64(OFF_ABI, abi_tag(PTHREAD_MUTEX_SIZE))?;
        mem.atomic_u64(OFF_MAGIC)?
            .store(u64::from_le_bytes(MAGIC), Ordering::Release);
        let commit = |from: u64, to: u64| inner.region.commit(from, to - from);
        crate::crash::step();
        Arena::new(mem, &commit).format()?;
        crate::crash::step();
        let lock = mem.ptr(OFF_LOCK, MUTEX_SPACE, 8)?.cast::<RawMutex>();
        // SAFETY: `lock` is inside the committed header page, aligned (the
        // offset is a multiple of 64 and the mapping page-aligned), and no
        // other process uses it: the state word still says "creating".
        unsafe { RawMutex::init(lock) }?;
        // After `format` (which zeroes the header's words): the id is read
        // only once the state says ready.
        let store_id = new_store_id();
        mem.set_u64(OFF_STORE_ID, store_id)?;
        mem.set_u64(OFF_FLAGS, flags_word(flags))?;
        inner.store_id.store(store_id, Ordering::Relaxed);
        crate::crash::step();
        mem.atomic_u32(OFF_STATE)?
            .store(STATE_READY, Ordering::Release);
        let store = Store::from_inner(inner)?;
        store.join()?;
        Ok(store)
    }

    pub(super) fn attach(
        name: &SegmentName,
        timeout: Duration,
        lock_timeout: Option<Duration>,
    ) -> Result<Store> {
        let deadline = deadline_after(timeout);
        let mut pause = Duration::from_micros(100);
        let not_ready = |reason: String| -> Result<Option<Store>> {
            if Instant::now() >= deadline {
                Err(Error::NotAStore {
                    name: name.as_str().to_string(),
                    reason,
                })
            } else {
                Ok(None)
            }
        };
        loop {
            let attempt = match Region::open(name) {
                Ok(region) => Store::validate(region, name, deadline, lock_timeout),
                Err(Error::NotAStore { reason, .. }) => not_ready(reason),
                Err(e) => Err(e),
            };
            if let Some(store) = attempt? {
                return Ok(store);
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// Validates a mapped segment. `Ok(None)` means "not ready yet, retry".
    pub(super) fn validate(
        region: Region,
        name: &SegmentName,
        deadline: Instant,
        lock_timeout: Option<Duration>,
    ) -> Result<Option<Store>> {
        let len = region.len() as u64;
        let late = Instant::now() >= deadline;
        let not_a_store = |reason: String| Error::NotAStore {
            name: name.as_str().to_string(),
            reason,
        };
        if len < HEAP_START * 2 {
            return if late {
                Err(not_a_store(format!(
                    "segment is {len} bytes, smaller than any store ({} bytes)",
                    HEAP_START * 2
                )))
            } else {
                Ok(None)
            };
        }
        let mut inner = Inner::new(region);
        inner.lock_timeout = lock_timeout;
        let mem = inner.mem;
        // Another process may be writing these words right now (creating the
        // store): they are read atomically, and in the order the creator
        // publishes them. The magic is released after the creator's
        // identity, version and ABI tag; the ready state after everything.
        let magic = mem.atomic_u64(OFF_MAGIC)?.load(Ordering::Acquire);
        if magic != u64::from_le_bytes(MAGIC) {
            if magic == 0 && !late {
                return Ok(None); // a creator has not written its header yet
            }
            return Err(not_a_store(format!(
                "its first bytes are {:02x?}, not the shmstore magic",
                magic.to_le_bytes()
            )));
        }
        let incompatible = |reason: String| Error::Incompatible {
            name: name.as_str().to_string(),
            reason,
        };
        let version = mem.u32(OFF_VERSION)?;
        if version != VERSION {
            return Err(incompatible(format!(
                "format version {version}, this build reads version {VERSION}"
            )));
        }
        let ours = abi_tag(PTHREAD_MUTEX_SIZE);
        let abi = mem.u64(OFF_ABI)?;
        if abi != ours {
            return Err(incompatible(format!(
                "made by a {} process, this process is {}",
                describe_abi(abi),
                describe_abi(ours)
            )));
        }
        match mem.atomic_u32(OFF_STATE)?.load(Ordering::Acquire) {
            STATE_READY => {}
            STATE_CREATING => {
                let creator = mem.u32(OFF_CREATOR)?;
                let started = StartTime::from_low32_word(mem.u32(OFF_CREATOR_START)?);
                // The start time tells the creator from a process that got
                // its pid after it died (the low 32 bits suffice for that).
                // Only a definite answer says it died: if this process
                // cannot tell (no fd left, `hidepid`, a creator of another
                // pid namespace), it waits for the creator as for a live
                // one, up to the open timeout.
                let pidns = mem.atomic_u32(OFF_PIDNS)?.load(Ordering::Relaxed);
                let ours = proc::can_judge() && pidns == proc::own_pid_namespace();
                let died = ours
                    && match proc::liveness_low32(creator, started) {
                        Liveness::Dead => true,
                        Liveness::Alive | Liveness::Unknown => false,
                    };
                if died {
                    return Err(Error::corrupted(format!(
                        "store \"{}\" was left half-initialised by its creator (pid {creator}), which died; \
                         remove it with Store::unlink and create it again",
                        name.as_str()
                    )));
                }
                if late {
                    return Err(Error::corrupted(format!(
                        "store \"{}\" is still being initialised by pid {creator} after the open timeout",
                        name.as_str()
                    )));
                }
                return Ok(None);
            }
            other => {
                return Err(Error::corrupted(format!(
                    "store \"{}\" has an unknown init state {other}",
                    name.as_str()
                )))
            }
        }
        let capacity = mem.u64(OFF_CAPACITY)?;
        if capacity != len {
            return Err(Error::corrupted(format!(
                "header says capacity {capacity}, but the segment is {len} bytes"
            )));
        }
        let store_id = mem.u64(OFF_STORE_ID)?;
        if store_id == 0 {
            return Err(Error::corrupted(format!(
                "store \"{}\" has no store id",
                name.as_str()
            )));
        }
        inner.store_id.store(store_id, Ordering::Relaxed);
        let store = Store::from_inner(inner)?;
        // Validate the roots only: opening must not touch every page (a
        // reader's resident memory grows with what it reads). Each record is
        // validated when it is looked up.
        store.with_arena(|a| {
            a.type_count()?;
            a.dir_validate()
        })?;
        if !store.join()? {
            // Removed by its last user (or by us, its users all dead): the
            // name is gone or going; open it anew.
            if late {
                return Err(Error::NotFound {
                    what: format!(
                        "store \"{}\" (it was removed when its last user left, but its name \
                         could not be unlinked)",
                        name.as_str()
                    ),
                });
            }
            return Ok(None);
        }
        Ok(Some(store))
    }

    /// Takes a slot in the process table, then releases the slots of
    /// processes that are gone. Returns `false`, taking no slot, if the
    /// store was removed (marked so by its last user, `shmstore gc` or
    /// `rm`: see the removal protocol in the header's docs), or is a store
    /// made to be removed when unused whose registered users are all dead,
    /// which it then removes: it marks it removed and unlinks its name (if
    /// it is still this segment's) before it releases the header lock, and
    /// the caller opens the name again.
    pub(super) fn join(&self) -> Result<bool> {
        // Judged outside the lock (it asks the OS about each process), then
        // confirmed under it: the slots must not have changed meanwhile.
        let ephemeral = flags_of(self.inner.mem.u64(OFF_FLAGS)?)? & FLAG_REMOVE_WHEN_UNUSED != 0;
        let dead_users = if ephemeral {
            self.inner.all_users_dead()?
        } else {
            None
        };
        let region = &self.inner.region;
        let (attached, _) = self.inner.with_arena_then(
            |a| {
                let flags = flags_of(a.mem.u64(OFF_FLAGS)?)?;
                if flags & FLAG_REMOVED != 0 {
                    return Ok(None);
                }
                if let Some(dead) = &dead_users {
                    if a.attached()? == *dead {
                        a.set_u64(OFF_FLAGS, flags_word(flags | FLAG_REMOVED))?;
                        return Ok(None);
                    }
                }
                // (The pid namespace word was seen to when the lock was
                // taken: see `note_namespace`.)
                a.attach(own_identity()).map(Some)
            },
            // Marked removed (by us, now committed, or by a remover that
            // died before unlinking): the name goes before anyone else
            // may look.
            |attached| match attached {
                None => region.unlink_if_same().map(drop),
                Some(_) => Ok(()),
            },
        )?;
        let Some(slot) = attached else {
            return Ok(false);
        };
        if let Some(slot) = slot {
            self.inner.slot.store(slot, Ordering::Relaxed);
        }
        // A dead process's slot that cannot be released (its pin table is
        // corrupted) must not keep everyone from opening the store: the
        // failure is reported by `check()`, which reaps again.
        let _ = self.reap();
        Ok(true)
    }
}

impl Inner {
    /// The process table's slots if it holds at least one and every one
    /// belongs to a process known to be dead; `None` otherwise (a process
    /// whose liveness cannot be told counts as alive).
    pub(super) fn all_users_dead(&self) -> Result<Option<Vec<(u32, Owner)>>> {
        let slots = self.with_arena(|a| a.attached())?;
        let dead = !slots.is_empty()
            && slots
                .iter()
                .all(|(_, o)| matches!(proc::liveness_in(o.pid, o.pidns, o.start), Liveness::Dead));
        Ok(dead.then_some(slots))
    }

    /// After this process released its slot: if the store is to be
    /// removed when unused and no live process is registered any more,
    /// marks it removed and unlinks its name, both under the header lock
    /// (see the removal protocol in the header's docs): a process opening
    /// it concurrently either was registered before, and keeps it, or sees
    /// the mark and opens the name anew — and a new store made under the
    /// name since can never be the one unlinked.
    pub(super) fn remove_if_unused(&self) -> Result<()> {
        if flags_of(self.mem.u64(OFF_FLAGS)?)? & FLAG_REMOVE_WHEN_UNUSED == 0 {
            return Ok(());
        }
        let slots = self.with_arena(|a| a.attached())?;
        let unused = slots
            .iter()
            .all(|(_, o)| matches!(proc::liveness_in(o.pid, o.pidns, o.start), Liveness::Dead));
        if !unused {
            return Ok(());
        }
        let region = &self.region;
        self.with_arena_then(
            |a| {
                if a.attached()? != slots {
                    return Ok(false); // someone joined meanwhile
                }
                let flags = flags_of(a.mem.u64(OFF_FLAGS)?)?;
                a.set_u64(OFF_FLAGS, flags_word(flags | FLAG_REMOVED))?;
                Ok(true)
            },
            |&removed| {
                if removed {
                    region.unlink_if_same()?;
                }
                Ok(())
            },
        )?;
        Ok(())
    }
}

/// As soon as this process holds the store's header lock, before it
/// records itself anywhere in the store or does anything that may take a
/// while (header note 6): a process of another pid namespace (`pidns`, 0
/// if unknown) makes the store's namespace mixed, for good. SeqCst: every
/// record this process makes later comes after it, and a waiter for the
/// lock that reads this process's thread id in the lock word (a number of
/// another namespace) finds the store mixed by its second look and does
/// not judge it.
pub(super) fn note_namespace(mem: &Mem, pidns: u32) -> Result<()> {
    let word = mem.atomic_u32(OFF_PIDNS)?;
    if word.load(Ordering::SeqCst) != namespace_word(pidns) {
        word.store(PIDNS_MIXED, Ordering::SeqCst);
    }
    Ok(())
}

/// The pid namespace word (header note 6) for a process of namespace
/// `pidns`: mixed if it could not read it (0), or if it is the sentinel
/// itself.
fn namespace_word(pidns: u32) -> u32 {
    if pidns == 0 {
        PIDNS_MIXED
    } else {
        pidns
    }
}

impl Inner {
    /// Whether every process that ever attached to this store shares this
    /// process's pid namespace, and this process can judge liveness in it
    /// (header note 6): only then may a holder recorded in the store be
    /// judged dead here.
    pub(crate) fn one_pid_namespace(&self) -> bool {
        one_pid_namespace_in(&self.mem)
    }
}

/// [`Inner::one_pid_namespace`] of the store whose bytes are `mem`.
pub(crate) fn one_pid_namespace_in(mem: &Mem) -> bool {
    if !proc::can_judge() {
        return false;
    }
    // The caller loaded the holder's identity before this (with acquire,
    // from a release by the holder, which set the word — if it had to —
    // before it could record itself anywhere). The fence keeps this load
    // after that one.
    core::sync::atomic::fence(Ordering::SeqCst);
    mem.atomic_u32(OFF_PIDNS).is_ok_and(|w| {
        let ns = w.load(Ordering::SeqCst);
        ns != PIDNS_MIXED && ns == proc::own_pid_namespace()
    })
}

/// A fresh, non-zero store id: a hash, with this process's random SipHash
/// keys (seeded from the OS), of the time, the pid and a counter.
fn new_store_id() -> u64 {
    use std::hash::BuildHasher;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let id =
        std::collections::hash_map::RandomState::new().hash_one((nanos, std::process::id(), n));
    id.max(1)
}
