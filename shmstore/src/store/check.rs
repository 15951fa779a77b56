//! Space accounting and the full consistency check.

use super::*;
use crate::arena::walk::Locks;

/// The result of [`Store::check`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Allocated blocks found by walking the heap.
    pub used_blocks: u64,
    /// Free blocks found by walking the heap (each also found on its list).
    pub free_blocks: u64,
    /// Bytes in allocated blocks.
    pub used_bytes: u64,
    /// Bytes in free blocks below the heap's top.
    pub free_bytes: u64,
    /// Objects reached through the directory, each found again by name.
    pub objects: u64,
    /// Registered types.
    pub types: u64,
    /// Processes attached to the store (after releasing the dead ones).
    pub processes: u64,
    /// Containers' buffers (nested blocks) reached from the objects.
    pub nested_blocks: u64,
    /// Nested blocks no object reaches: what a crash in the middle of a
    /// container operation costs, or a value dropped without its `Drop`
    /// (a process that exited or died). Not a problem in itself:
    /// [`Store::collect`] frees them. (Counted only when every object could
    /// be read: see `untraced`.)
    pub unreachable_blocks: u64,
    /// Bytes in `unreachable_blocks`.
    pub unreachable_bytes: u64,
    /// Objects whose containers could not be read because a `ShmMutex`
    /// guarding them was held at that moment.
    pub untraced: Vec<String>,
    /// Allocated blocks that nothing accounts for — neither the store's
    /// metadata, nor an object, nor a container's buffer: memory lost for
    /// good (`collect` frees only containers' buffers). Raw allocations
    /// (`alloc_raw`, for benchmarks) show here. (Counted only when every
    /// object could be read.)
    pub unaccounted_blocks: u64,
    /// Every inconsistency found, with its offset. Empty when the store is
    /// consistent.
    pub problems: Vec<String>,
}

impl CheckReport {
    /// `true` if no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} objects, {} types, {} processes; heap: {} blocks used ({} bytes), {} free ({} bytes)",
            self.objects,
            self.types,
            self.processes,
            self.used_blocks,
            self.used_bytes,
            self.free_blocks,
            self.free_bytes
        )?;
        writeln!(
            f,
            "containers: {} buffers reached, {} unreachable ({} bytes); {} blocks unaccounted for{}",
            self.nested_blocks,
            self.unreachable_blocks,
            self.unreachable_bytes,
            self.unaccounted_blocks,
            if self.untraced.is_empty() {
                String::new()
            } else {
                format!("; not traced (lock held): {}", self.untraced.join(", "))
            }
        )?;
        if self.problems.is_empty() {
            write!(f, "no problems found")
        } else {
            for p in &self.problems {
                writeln!(f, "problem: {p}")?;
            }
            Ok(())
        }
    }
}

impl Store {
    /// Space accounting: capacity, committed, used and free bytes, objects.
    pub fn stats(&self) -> Result<Stats> {
        self.with_arena(|a| a.stats())
    }

    /// Walks every structure of the store (header, every heap block, every
    /// free list, the directory, every record and the type registry, where
    /// every recorded layout must decode to the layout its entry describes)
    /// and reports what it verified and every inconsistency found. First it
    /// releases what processes that died still held (their pins and
    /// unfinished inserts), so space they pinned shows as free.
    pub fn check(&self) -> Result<CheckReport> {
        let reaped = self.reap();
        let mut report = self.with_arena(|a| check_arena(a, self.inner.store_id(), Locks::Try))?;
        if let Err(e) = &reaped {
            report
                .problems
                .insert(0, format!("releasing what dead processes held: {e}"));
        }
        Ok(report)
    }
}

/// The walk of [`Store::check`] over an arena (the store's, under its
/// header lock, or a private copy of a segment), treating the `ShmMutex`es
/// inside values as `locks` says.
pub(crate) fn check_arena(a: &Arena<'_>, store_id: u64, locks: Locks) -> Result<CheckReport> {
    {
        {
            let mut report = CheckReport::default();
            match a.check_heap() {
                Ok((ub, fb, u, f)) => {
                    report.used_blocks = ub;
                    report.free_blocks = fb;
                    report.used_bytes = u;
                    report.free_bytes = f;
                }
                Err(e) => report.problems.push(format!("heap: {e}")),
            }
            match a.type_count() {
                Ok(n) => {
                    report.types = n;
                    // Every recorded layout decodes, and is the layout its
                    // entry's fingerprint, size and alignment describe.
                    for idx in 0..n {
                        let checked = u32::try_from(idx)
                            .map_err(|_| Error::corrupted(format!("type index {idx} overflows")))
                            .and_then(|idx| a.type_desc(idx));
                        if let Err(e) = checked {
                            report.problems.push(format!("registry: {e}"));
                        }
                    }
                }
                Err(e) => report.problems.push(format!("registry: {e}")),
            }
            let records = match a.records() {
                Ok(r) => r,
                Err(e) => {
                    report.problems.push(format!("directory: {e}"));
                    return Ok(report);
                }
            };
            for rec in records {
                let name = match a.record(rec).and_then(|_| a.record_name(rec)) {
                    Ok(n) => n,
                    Err(e) => {
                        report.problems.push(format!("record {rec:#x}: {e}"));
                        continue;
                    }
                };
                match a.lookup(name.as_bytes(), hash_name(name.as_bytes())) {
                    Ok(Some(f)) if f.rec == rec => report.objects += 1,
                    Ok(_) => report.problems.push(format!(
                        "record {rec:#x} (\"{name}\") cannot be found by its name"
                    )),
                    Err(e) => report.problems.push(format!("record {rec:#x}: {e}")),
                }
            }
            let objects = Header(a).objects()?;
            if objects != report.objects {
                report.problems.push(format!(
                    "header counts {objects} objects, the directory holds {}",
                    report.objects
                ));
            }
            // Every pin a process counts must be on an allocated record
            // whose pin word counts at least as many (pins that could not
            // be counted make the word larger, never smaller).
            let mut counted = std::collections::BTreeMap::<u64, u64>::new();
            match a.attached() {
                Ok(slots) => {
                    report.processes = slots.len() as u64;
                    for (slot, owner) in slots {
                        match a.counted_pins(slot) {
                            Ok(pins) => pins.into_iter().for_each(|(rec, n)| {
                                let c = counted.entry(rec).or_default();
                                *c = c.saturating_add(n);
                            }),
                            Err(e) => report
                                .problems
                                .push(format!("process slot {slot} (pid {}): {e}", owner.pid)),
                        }
                    }
                }
                Err(e) => report.problems.push(format!("process table: {e}")),
            }
            for (rec, n) in counted {
                match a.payload_size(rec).and_then(|_| a.pin_count(rec)) {
                    Ok(word) if u64::from(word) >= n => {}
                    Ok(word) => report.problems.push(format!(
                        "record {rec:#x}: processes count {n} pins, its pin word {word}"
                    )),
                    Err(e) => report
                        .problems
                        .push(format!("record {rec:#x}, pinned by a process: {e}")),
                }
            }
            // Containers: every buffer reached, checked; the rest counted.
            match collect::reach(a, store_id, locks) {
                Ok(reach) => {
                    report.nested_blocks = reach.reached.len() as u64;
                    report
                        .problems
                        .extend(reach.broken.into_iter().map(|b| format!("container: {b}")));
                    if reach.busy.is_empty() {
                        match collect::unreachable(a, &reach.reached) {
                            Ok(lost) => {
                                report.unreachable_blocks = lost.len() as u64;
                                report.unreachable_bytes = lost.iter().map(|l| l.1).sum();
                            }
                            Err(e) => report.problems.push(format!("heap walk: {e}")),
                        }
                        match collect::unaccounted(a, &reach.reached) {
                            Ok(n) => report.unaccounted_blocks = n,
                            Err(e) => report.problems.push(format!("heap walk: {e}")),
                        }
                    }
                    report.untraced = reach.busy;
                }
                Err(e) => report.problems.push(format!("containers: {e}")),
            }
            Ok(report)
        }
    }
}
