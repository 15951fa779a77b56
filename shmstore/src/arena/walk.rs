//! Walking a value by its recorded layout: finding the nested blocks its
//! containers own, in a process that may not have its Rust type.
//!
//! The store walks a value this way when it frees it (its containers'
//! buffers go with it), when `check()` looks for blocks no object reaches,
//! and when `collect()` frees them. The layout comes from the type
//! registry ([`LayoutDesc`]); the value's bytes come from the segment, so
//! every container word is checked as a container checks it (the block's
//! header, its token, its capacity), and a broken container is reported,
//! never followed.
//!
//! Containers inside a [`ShmMutex`](crate::ShmMutex) are read under that
//! mutex when others may be using the value ([`Locks::Try`]: the walk takes
//! it with `try_lock` — it runs under the header lock, which is always the
//! innermost lock, so it must not wait — and reports the walk incomplete
//! if it is held), or without it when no one else can reach the value
//! ([`Locks::Ignore`]: a value being freed, which no handle pins).

use std::collections::HashSet;

use super::mem::Mem;
use super::nested::read_nested_any;
use crate::containers::layout as cl;
use crate::layout::{LayoutDesc, LayoutDescKind};
use crate::{Error, Result};

/// How a walk treats the locks inside a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Locks {
    /// No one else can reach the value: read under no lock.
    Ignore,
    /// Others may be using it: take each `ShmMutex` with `try_lock`, and
    /// give up on what a held one guards.
    Try,
}

/// A nested block found by a walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NestedRef {
    /// The block's payload offset.
    pub(crate) blk: u64,
    /// The element fingerprint its header records.
    pub(crate) fp: u64,
    /// The owning container's token.
    pub(crate) token: u64,
}

/// What a walk found.
#[derive(Debug, Default)]
pub(crate) struct Walk {
    /// Every nested block reached (each once).
    pub(crate) found: Vec<NestedRef>,
    /// Offsets of `ShmMutex`es whose lock was held: what they guard was not
    /// walked.
    pub(crate) busy: Vec<u64>,
    /// Containers that belong to another store (moved here), not followed.
    pub(crate) foreign: u64,
    /// Containers whose words or buffers are broken, not followed.
    pub(crate) broken: Vec<String>,
    seen: HashSet<u64>,
    /// Nodes left to visit: bounds the work a corrupted layout or value can
    /// cause.
    budget: u64,
}

impl Walk {
    /// A walk that visits at most `budget` layout nodes.
    pub(crate) fn new(budget: u64) -> Walk {
        Walk {
            budget,
            ..Walk::default()
        }
    }

    fn spend(&mut self) -> Result<()> {
        if self.budget == 0 {
            return Err(Error::corrupted(
                "walking a value by its layout took more steps than the store can hold",
            ));
        }
        self.budget -= 1;
        Ok(())
    }
}

/// The context of one walk.
pub(crate) struct Walker<'a> {
    pub(crate) mem: Mem,
    pub(crate) store_id: u64,
    pub(crate) locks: Locks,
    pub(crate) out: &'a mut Walk,
}

impl Walker<'_> {
    /// Walks `count` consecutive values of layout `d` at `off`.
    pub(crate) fn values(&mut self, off: u64, d: &LayoutDesc, count: u64) -> Result<()> {
        if !has_containers(d) {
            return Ok(());
        }
        // Back references name container parameters entered on the way,
        // never the root (see the deep walk in `layout::tree`).
        let mut roots = Vec::new();
        for i in 0..count {
            let at = i
                .checked_mul(d.size)
                .and_then(|b| off.checked_add(b))
                .ok_or_else(|| Error::corrupted("a value's elements overflow the segment"))?;
            self.value(at, d, &mut roots)?;
        }
        Ok(())
    }

    /// Walks one value of layout `d` at `off`. `roots` holds the layouts a
    /// back reference may name: each container parameter entered on the
    /// way here, innermost last.
    fn value<'d>(
        &mut self,
        off: u64,
        d: &'d LayoutDesc,
        roots: &mut Vec<&'d LayoutDesc>,
    ) -> Result<()> {
        self.out.spend()?;
        match &d.kind {
            LayoutDescKind::Primitive | LayoutDescKind::Enum { .. } => Ok(()),
            LayoutDescKind::Struct { fields, .. } => {
                for f in fields {
                    let at = off
                        .checked_add(f.offset)
                        .ok_or_else(|| Error::corrupted("a field offset overflows"))?;
                    self.value(at, &f.ty, roots)?;
                }
                Ok(())
            }
            LayoutDescKind::Array { elem, len } => {
                if !has_containers(elem) {
                    return Ok(());
                }
                for i in 0..*len {
                    let at = i
                        .checked_mul(elem.size)
                        .and_then(|b| off.checked_add(b))
                        .ok_or_else(|| Error::corrupted("an array overflows"))?;
                    self.value(at, elem, roots)?;
                }
                Ok(())
            }
            LayoutDescKind::Opaque { params } => match (d.name.as_str(), params.as_slice()) {
                ("ShmMutex", [data]) => self.mutex(off, data, roots),
                _ => Ok(()),
            },
            LayoutDescKind::Container { params } => self.container(off, d, params, roots),
            LayoutDescKind::BackRef { depth } => {
                let target = roots
                    .len()
                    .checked_sub(1 + *depth as usize)
                    .and_then(|i| roots.get(i).copied())
                    .ok_or_else(|| Error::corrupted("a layout's back reference points nowhere"))?;
                self.value(off, target, roots)
            }
        }
    }

    /// The data of a `ShmMutex` at `off`, under its lock as `locks` says.
    fn mutex<'d>(
        &mut self,
        off: u64,
        data: &'d LayoutDesc,
        roots: &mut Vec<&'d LayoutDesc>,
    ) -> Result<()> {
        if !has_containers(data) {
            return Ok(());
        }
        let data_off = crate::sync::mutex_data_offset(data.align)
            .and_then(|d| off.checked_add(d))
            .ok_or_else(|| Error::corrupted("a mutex's data offset overflows"))?;
        match self.locks {
            Locks::Ignore => self.value(data_off, data, roots),
            Locks::Try => {
                let mem = self.mem;
                match crate::sync::try_with_locked(&mem, off, || self.value(data_off, data, roots))?
                {
                    Some(r) => r,
                    None => {
                        self.out.busy.push(off);
                        Ok(())
                    }
                }
            }
        }
    }

    /// A container at `off`: its buffer, then its elements.
    fn container<'d>(
        &mut self,
        off: u64,
        d: &'d LayoutDesc,
        params: &'d [LayoutDesc],
        roots: &mut Vec<&'d LayoutDesc>,
    ) -> Result<()> {
        let Some(shape) = cl::shape_of(&d.name, params) else {
            return Ok(()); // no nested block (`Pod`)
        };
        let [store, token, blk] = match self.mem.words::<3>(off) {
            Ok((w, _)) => w,
            Err(e) => {
                self.out.broken.push(format!("container at {off:#x}: {e}"));
                return Ok(());
            }
        };
        if blk == 0 {
            return Ok(());
        }
        let (elem_size, elem_align) = shape.element(params);
        if store != self.store_id {
            // A container moved here from another store, whose buffer is
            // not ours to follow — unless this store holds, at its offset,
            // a buffer with its token (a 64-bit random value): then it is
            // ours and its store word is corrupted. It is reported, and
            // counted as reached, so that `collect` frees nothing.
            match read_nested_any(&self.mem, blk, elem_size, elem_align, token) {
                Ok((_, fp)) => {
                    self.out.broken.push(format!(
                        "{} at {off:#x}: its store word {store:#x} is not this store's \
                         ({:#x}), but its buffer {blk:#x} is here",
                        d.name, self.store_id
                    ));
                    if self.out.seen.insert(blk) {
                        self.out.found.push(NestedRef { blk, fp, token });
                    }
                }
                Err(_) => self.out.foreign += 1,
            }
            return Ok(());
        }
        let (n, fp) = match read_nested_any(&self.mem, blk, elem_size, elem_align, token) {
            Ok(found) => found,
            Err(e) => {
                self.out.broken.push(format!("{} at {off:#x}: {e}", d.name));
                return Ok(());
            }
        };
        if !self.out.seen.insert(blk) {
            self.out.broken.push(format!(
                "{} at {off:#x}: its buffer {blk:#x} is shared",
                d.name
            ));
            return Ok(());
        }
        self.out.found.push(NestedRef { blk, fp, token });
        match shape {
            cl::Shape::Elements => {
                let [elem] = params else { return Ok(()) };
                roots.push(elem);
                let r = (0..n.len).try_for_each(|i| {
                    let at = n.elems + i * elem_size;
                    self.value(at, elem, roots)
                });
                roots.pop();
                r
            }
            cl::Shape::Bytes => Ok(()),
            cl::Shape::Map {
                key_off,
                value_off,
                slot,
                ..
            } => {
                let [k, v] = params else { return Ok(()) };
                for i in 0..n.cap {
                    let at = n.elems + i * slot;
                    let meta = self.mem.u64(at)?;
                    if meta & cl::LIVE == 0 {
                        continue;
                    }
                    roots.push(k);
                    let r = self.value(at + key_off, k, roots);
                    roots.pop();
                    r?;
                    roots.push(v);
                    let r = self.value(at + value_off, v, roots);
                    roots.pop();
                    r?;
                }
                Ok(())
            }
        }
    }
}

/// `true` if a value of layout `d` may hold a container (conservatively:
/// any container or back reference inside).
pub(crate) fn has_containers(d: &LayoutDesc) -> bool {
    match &d.kind {
        LayoutDescKind::Primitive | LayoutDescKind::Enum { .. } => false,
        LayoutDescKind::Struct { fields, .. } => fields.iter().any(|f| has_containers(&f.ty)),
        LayoutDescKind::Array { elem, .. } => has_containers(elem),
        LayoutDescKind::Opaque { params } => params.iter().any(has_containers),
        LayoutDescKind::Container { .. } => d.name != "Pod",
        LayoutDescKind::BackRef { .. } => true,
    }
}
