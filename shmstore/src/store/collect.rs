//! Reachability: which nested blocks (containers' buffers) the store's
//! objects reach, for [`Store::check`] and [`Store::collect`].

use std::collections::{BTreeSet, HashMap};

use super::*;
use crate::arena::dir::{PIN_COUNT, PIN_REMOVED};
use crate::arena::walk::{Locks, Walk, Walker};
use crate::sys::proc::{Liveness, StartTime};

/// The result of [`Store::collect`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CollectReport {
    /// Unreachable blocks freed.
    pub freed_blocks: u64,
    /// Bytes they held (block headers included).
    pub freed_bytes: u64,
    /// Unreachable blocks kept because a live process may be using them
    /// outside the store (a value it is building, a container it moved out
    /// through a guard).
    pub kept_held: u64,
    /// Objects whose `ShmMutex` was held when `collect` looked (or whose
    /// value could not be walked): what they hold could not be read, so
    /// nothing was freed (try again later).
    pub busy: Vec<String>,
    /// Containers whose words or buffers are broken (see
    /// [`Store::check`]): nothing was freed either.
    pub broken: Vec<String>,
    /// Removed objects freed now: their free had been put off because a
    /// `ShmMutex` in them was locked (a guard passed to `mem::forget`),
    /// and that lock has since been released.
    pub freed_records: u64,
}

/// Nested blocks the objects reach, and what the walk could not read.
pub(super) struct Reach {
    /// Every nested block reached: from the objects (named, pinned, or
    /// removed but still allocated) and from the buffers live processes
    /// hold.
    pub(super) reached: BTreeSet<u64>,
    pub(super) busy: Vec<String>,
    pub(super) broken: Vec<String>,
    /// Removed records that no handle pins but that are still allocated
    /// (their free found a locked mutex in them): `collect` tries again.
    pub(super) leftover: Vec<u64>,
}

impl Store {
    /// Walks, under the header lock, everything that may reach a nested
    /// block, taking each `ShmMutex` it must read with `try_lock`:
    ///
    /// - every object: the directory's, and removed ones still allocated —
    ///   pinned by a handle (counted in a process's pin table, or not: a
    ///   process without a slot, or with a full pin table) or left by a
    ///   free that found a lock held in them;
    /// - every nested block a live process holds (its pending word: a value
    ///   that process is building, a container it moved out of the store),
    ///   by its element type's layout in the registry (containers register
    ///   their element types when they allocate, if they hold containers).
    ///   These walks are lenient: a container there that does not check out
    ///   is not followed, and reaching a buffer twice is no error (a
    ///   buffer being rebuilt shares its elements' buffers with the old one
    ///   for a moment).
    pub(super) fn reach(&self, a: &Arena<'_>) -> Result<Reach> {
        reach(a, self.inner.store_id(), Locks::Try)
    }

    /// Frees the nested blocks no object of the store reaches — what a
    /// process killed in the middle of a container operation, or a value
    /// lost before it was inserted, leaves behind — when that is safe:
    ///
    /// - every object's containers could be read: a `ShmMutex` held at that
    ///   moment hides what it guards, so then nothing is freed and
    ///   [`CollectReport::busy`] names the objects (try again);
    /// - the block is not held by a live process: one that is building a
    ///   value outside the store, or has moved a container out through a
    ///   guard and used it there, marks the blocks it uses, and they are
    ///   kept for as long as it lives (a process that cannot be told dead
    ///   counts as alive).
    ///
    /// A container moved out of the store and not used at all before
    /// `collect` runs (taken with `mem::take` through a guard and held on
    /// the stack) is not marked: its buffer may be freed, and its later
    /// operations then fail with [`Error::Corrupted`] — never read or write
    /// another container's memory (its token no longer matches).
    ///
    /// ```
    /// # fn main() -> shmstore::Result<()> {
    /// # let name = format!("doc-collect-{}", std::process::id());
    /// # let store = shmstore::Store::create(&name, 1 << 20)?;
    /// let report = store.collect()?;
    /// assert!(report.busy.is_empty());
    /// assert_eq!(store.check()?.unreachable_blocks, 0);
    /// # shmstore::Store::unlink(&name)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn collect(&self) -> Result<CollectReport> {
        let _ = self.reap();
        let (victims, report, leftover) = self.with_arena(|a| {
            let mut report = CollectReport::default();
            let reach = self.reach(a)?;
            if !reach.busy.is_empty() || !reach.broken.is_empty() {
                // Something could not be read: any block might be what it
                // reaches. Free nothing.
                report.busy = reach.busy;
                report.broken = reach.broken;
                return Ok((Vec::new(), report, Vec::new()));
            }
            let mut liveness = HashMap::new();
            let mut victims = Vec::new();
            for (blk, size, pending) in unreachable(a, &reach.reached)? {
                if pending != 0 && holder_alive(a, pending, &mut liveness)? {
                    report.kept_held += 1;
                } else {
                    victims.push((blk, size));
                }
            }
            Ok((victims, report, reach.leftover))
        })?;
        let (victims, mut report, leftover) = (victims, report, leftover);
        // Removed records whose free found a lock held in them: freed now if
        // it was released (each checked again).
        for rec in leftover {
            let freed = self.with_arena(|a| {
                let pins = a.pin_count(rec)?;
                if pins & PIN_REMOVED == 0 || pins & PIN_COUNT != 0 {
                    return Ok(false);
                }
                a.free_record(rec)?;
                Ok(a.record(rec).is_err())
            });
            if matches!(freed, Ok(true)) {
                report.freed_records += 1;
            }
        }
        // In committed steps; each block is checked again (still an
        // unreachable, unheld nested block) in the step that frees it.
        for chunk in victims.chunks(NESTED_FREES_PER_STEP) {
            let (n, bytes) = self.with_arena(|a| {
                let reach = self.reach(a)?;
                if !reach.busy.is_empty() || !reach.broken.is_empty() {
                    return Ok((0, 0));
                }
                let mut liveness = HashMap::new();
                let (mut n, mut bytes) = (0, 0);
                for &(blk, size) in chunk {
                    if reach.reached.contains(&blk) {
                        continue;
                    }
                    let Some((fp, token, pending)) = a.nested_header(blk)? else {
                        continue;
                    };
                    if pending != 0 && holder_alive(a, pending, &mut liveness)? {
                        continue;
                    }
                    if holds_lock(a, self.inner.store_id(), blk, fp) {
                        continue;
                    }
                    if a.free_nested(blk, fp, token)? {
                        n += 1;
                        bytes += size;
                    }
                }
                Ok((n, bytes))
            })?;
            report.freed_blocks += n;
            report.freed_bytes += bytes;
        }
        Ok(report)
    }
}

/// See [`Store::reach`]; `locks` says how to treat the `ShmMutex`es the
/// walk must read (a read-only view observes them instead of locking).
pub(crate) fn reach(a: &Arena<'_>, store_id: u64, locks: Locks) -> Result<Reach> {
    let mut records: BTreeSet<u64> = a.records()?.into_iter().collect();
    // Removed objects still pinned by a handle of some process.
    for (slot, _) in a.attached()? {
        if let Ok(pins) = a.counted_pins(slot) {
            records.extend(pins.into_iter().map(|(rec, _)| rec));
        }
    }
    let metadata: BTreeSet<u64> = a.metadata_blocks()?.into_iter().collect();
    let blocks = a.allocated_blocks()?;
    // Removed records no pin table names.
    let mut leftover = Vec::new();
    for &(blk, _) in &blocks {
        if records.contains(&blk) || metadata.contains(&blk) || a.nested_header(blk)?.is_some() {
            continue;
        }
        if a.record(blk).is_ok() {
            let pins = a.pin_count(blk)?;
            if pins & PIN_REMOVED != 0 && pins & PIN_COUNT == 0 {
                leftover.push(blk);
            }
            records.insert(blk);
        }
    }
    let mut walk = Walk::new(a.walk_budget());
    let mut busy = Vec::new();
    let mut broken = Vec::new();
    for rec in records {
        let r = match a.record(rec) {
            Ok(r) => r,
            Err(e) => {
                broken.push(format!("record {rec:#x}: {e}"));
                continue;
            }
        };
        // A type that does not decode is reported by the registry's
        // own check; its value cannot be walked.
        let Ok(desc) = a.type_desc(r.type_idx) else {
            continue;
        };
        let before = walk.busy.len();
        let broken_before = walk.broken.len();
        let mut walker = Walker {
            mem: a.mem,
            store_id,
            locks,
            out: &mut walk,
        };
        let walked = walker.values(r.value, &desc, r.len);
        let name = || a.record_name(rec).unwrap_or_else(|_| format!("{rec:#x}"));
        if walk.broken.len() > broken_before {
            // Name the object, so that its owner can replace what broke.
            let object = name();
            for b in &mut walk.broken[broken_before..] {
                *b = format!("object \"{object}\": {b}");
            }
        }
        if let Err(e) = walked {
            // Part of the value could not be walked: what it reaches is
            // not known.
            broken.push(format!("record {rec:#x}: {e}"));
            busy.push(name());
        } else if walk.busy.len() > before {
            busy.push(name());
        }
    }
    broken.append(&mut walk.broken);
    // The buffers live processes hold, and what they reach.
    walk.lenient = true;
    let mut liveness = HashMap::new();
    for &(blk, _) in &blocks {
        let Some((fp, _, pending)) = a.nested_header(blk)? else {
            continue;
        };
        if pending == 0 || walk.reached(blk) || !holder_alive(a, pending, &mut liveness)? {
            continue;
        }
        // An element type that was not registered holds no container.
        let Some(idx) = a.find_type(fp)? else {
            continue;
        };
        let desc = match a.type_desc(idx) {
            Ok(d) => d,
            Err(e) => {
                broken.push(format!("held buffer {blk:#x}: {e}"));
                continue;
            }
        };
        let before = walk.busy.len();
        let mut walker = Walker {
            mem: a.mem,
            store_id,
            locks,
            out: &mut walk,
        };
        if let Err(e) = walker.block(blk, &desc) {
            broken.push(format!("held buffer {blk:#x}: {e}"));
        } else if walk.busy.len() > before {
            busy.push(format!("a buffer held by a live process ({blk:#x})"));
        }
    }
    Ok(Reach {
        reached: walk.found.iter().map(|n| n.blk).collect(),
        busy,
        broken,
        leftover,
    })
}

/// `true` if the nested block `blk` (element fingerprint `fp`) holds a
/// locked `ShmMutex` (or cannot be read): it must not be freed (see
/// `Arena::free_record`).
fn holds_lock(a: &Arena<'_>, store_id: u64, blk: u64, fp: u64) -> bool {
    let Ok(Some(idx)) = a.find_type(fp) else {
        return false;
    };
    let Ok(desc) = a.type_desc(idx) else {
        return true;
    };
    if !crate::arena::walk::has_locks(&desc) {
        return false;
    }
    let mut walk = Walk::new(a.walk_budget());
    walk.lenient = true;
    let walked = Walker {
        mem: a.mem,
        store_id,
        locks: Locks::Ignore,
        out: &mut walk,
    }
    .block(blk, &desc);
    walked.is_err() || !walk.locked.is_empty()
}

/// Allocated blocks that are neither metadata, nor a record (named,
/// pinned or reserved), nor a nested block at all (reached or not).
pub(crate) fn unaccounted(a: &Arena<'_>, reached: &BTreeSet<u64>) -> Result<u64> {
    let mut known: BTreeSet<u64> = a.metadata_blocks()?.into_iter().collect();
    known.extend(a.records()?);
    for (slot, _) in a.attached()? {
        if let Ok(pins) = a.counted_pins(slot) {
            known.extend(pins.into_iter().map(|(rec, _)| rec));
        }
    }
    let mut n = 0;
    for (blk, _) in a.allocated_blocks()? {
        if !known.contains(&blk) && !reached.contains(&blk) && a.nested_header(blk)?.is_none() {
            n += 1;
        }
    }
    Ok(n)
}

/// Nested blocks no object reaches: (block, bytes, pending word).
pub(crate) fn unreachable(a: &Arena<'_>, reached: &BTreeSet<u64>) -> Result<Vec<(u64, u64, u64)>> {
    let mut out = Vec::new();
    for (blk, size) in a.allocated_blocks()? {
        if reached.contains(&blk) {
            continue;
        }
        if let Some((_, _, pending)) = a.nested_header(blk)? {
            out.push((blk, size, pending));
        }
    }
    Ok(out)
}

/// `true` unless the process a nested block's pending word names is
/// known to be gone (see `arena::nested`): its process slot is free or
/// belongs to another process, or the process is dead.
fn holder_alive(a: &Arena<'_>, pending: u64, cache: &mut HashMap<u64, bool>) -> Result<bool> {
    if let Some(&alive) = cache.get(&pending) {
        return Ok(alive);
    }
    let (slot, pid) = ((pending >> 32) as u32, pending as u32);
    let alive = if slot == 0 {
        // Not a word this crate writes: keep the block.
        true
    } else if slot == u32::MAX {
        // No slot: known by pid alone, which means this process only in a
        // store whose processes all share one pid namespace.
        !super::open::one_pid_namespace_in(&a.mem)
            || !matches!(proc::liveness(pid, StartTime::Unknown), Liveness::Dead)
    } else {
        let alive = |owner: &crate::arena::procs::Owner| {
            !matches!(
                proc::liveness_in(owner.pid, owner.pidns, owner.start),
                Liveness::Dead
            )
        };
        match a.slot_owner(slot - 1) {
            Ok(Some(owner)) if owner.pid == pid => alive(&owner),
            // The slot was released (that mapping closed, or its
            // process was found dead) or taken by another process: held
            // if the process is still attached through another mapping
            // (a value built through one mapping is still used through
            // the others).
            Ok(_) => a
                .attached()?
                .iter()
                .any(|(_, owner)| owner.pid == pid && alive(owner)),
            // A slot index past the table: a corrupted word; keep the
            // block (freeing is the irreversible choice).
            Err(_) => true,
        }
    };
    cache.insert(pending, alive);
    Ok(alive)
}
