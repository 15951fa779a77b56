//! Reachability: which nested blocks (containers' buffers) the store's
//! objects reach, for [`Store::check`] and [`Store::collect`].

use std::collections::{BTreeSet, HashMap};

use super::*;
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
}

/// Nested blocks the objects reach, and what the walk could not read.
pub(super) struct Reach {
    pub(super) reached: BTreeSet<u64>,
    pub(super) busy: Vec<String>,
    pub(super) broken: Vec<String>,
}

impl Store {
    /// Walks every object the store holds — the directory's, and removed
    /// ones that handles still pin — by its recorded layout, under the
    /// header lock, taking each `ShmMutex` it must read with `try_lock`.
    pub(super) fn reach(&self, a: &Arena<'_>) -> Result<Reach> {
        reach(a, self.inner.store_id(), Locks::Try)
    }

    /// See [`unreachable`].
    pub(super) fn unreachable(
        &self,
        a: &Arena<'_>,
        reached: &BTreeSet<u64>,
    ) -> Result<Vec<(u64, u64, u64)>> {
        unreachable(a, reached)
    }
}

/// Walks every object of the arena — the directory's, and removed ones
/// that handles still pin — by its recorded layout, treating the
/// `ShmMutex`es it must read as `locks` says.
pub(crate) fn reach(a: &Arena<'_>, store_id: u64, locks: Locks) -> Result<Reach> {
    {
        let mut records: BTreeSet<u64> = a.records()?.into_iter().collect();
        // Removed objects still pinned by a handle of some process.
        for (slot, _) in a.attached()? {
            if let Ok(pins) = a.counted_pins(slot) {
                records.extend(pins.into_iter().map(|(rec, _)| rec));
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
            let mut walker = Walker {
                mem: a.mem,
                store_id,
                locks,
                out: &mut walk,
            };
            let walked = walker.values(r.value, &desc, r.len);
            let name = || a.record_name(rec).unwrap_or_else(|_| format!("{rec:#x}"));
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
        Ok(Reach {
            reached: walk.found.iter().map(|n| n.blk).collect(),
            busy,
            broken,
        })
    }
}

/// Allocated blocks that are neither metadata, nor a record (named,
/// pinned or reserved), nor a nested block at all (reached or not).
pub(crate) fn unaccounted(a: &Arena<'_>, reached: &BTreeSet<u64>) -> Result<u64> {
    {
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
}

/// Nested blocks no object reaches: (block, bytes, pending word).
pub(crate) fn unreachable(a: &Arena<'_>, reached: &BTreeSet<u64>) -> Result<Vec<(u64, u64, u64)>> {
    {
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
}

impl Store {
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
        let (victims, mut report) = self.with_arena(|a| {
            let mut report = CollectReport::default();
            let reach = self.reach(a)?;
            if !reach.busy.is_empty() || !reach.broken.is_empty() {
                // Something could not be read: any block might be what it
                // reaches. Free nothing.
                report.busy = reach.busy;
                report.broken = reach.broken;
                return Ok((Vec::new(), report));
            }
            let mut liveness = HashMap::new();
            let mut victims = Vec::new();
            for (blk, size, pending) in self.unreachable(a, &reach.reached)? {
                if pending != 0 && self.holder_alive(a, pending, &mut liveness)? {
                    report.kept_held += 1;
                } else {
                    victims.push((blk, size));
                }
            }
            Ok((victims, report))
        })?;
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
                    if pending != 0 && self.holder_alive(a, pending, &mut liveness)? {
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

    /// `true` unless the process a nested block's pending word names is
    /// known to be gone (see `arena::nested`): its process slot is free or
    /// belongs to another process, or the process is dead.
    fn holder_alive(
        &self,
        a: &Arena<'_>,
        pending: u64,
        cache: &mut HashMap<u64, bool>,
    ) -> Result<bool> {
        if let Some(&alive) = cache.get(&pending) {
            return Ok(alive);
        }
        let (slot, pid) = ((pending >> 32) as u32, pending as u32);
        let alive = if slot == 0 {
            // Not a word this crate writes: keep the block.
            true
        } else if slot == u32::MAX {
            // No slot: known by pid alone.
            !matches!(proc::liveness(pid, StartTime::Unknown), Liveness::Dead)
        } else {
            match a.slot_owner(slot - 1) {
                Ok(Some(owner)) if owner.pid == pid => !matches!(
                    proc::liveness_in(owner.pid, owner.pidns, owner.start),
                    Liveness::Dead
                ),
                // The slot was released (its process detached or was found
                // dead) or taken by another process: not held.
                Ok(_) => false,
                // A slot index past the table: a corrupted word; keep the
                // block (freeing is the irreversible choice).
                Err(_) => true,
            }
        };
        cache.insert(pending, alive);
        Ok(alive)
    }
}
