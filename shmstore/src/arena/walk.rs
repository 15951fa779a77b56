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

use std::collections::{HashMap, HashSet};

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
    /// The caller holds what the walk reads (a container's own elements,
    /// through `&mut`): read under no lock and probe none.
    Blind,
    /// A private copy of a segment (the read-only `inspect` view), which
    /// no one writes and whose locks must not be taken: read each
    /// `ShmMutex`'s lock word, and give up on what one that was held when
    /// the copy was made guards (its holder may have been half-way through
    /// a change). One whose holder died is read: no one was writing it.
    Observe,
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
    /// Where a locked `ShmMutex` was found ([`Locks::Ignore`] walks, which
    /// probe each one): the nested block holding it, or 0 for the value
    /// walked. Such memory must not be freed: the holder's C library keeps
    /// pointers into it (the robust list) for as long as it holds the lock,
    /// and writes through them.
    pub(crate) locked: HashSet<u64>,
    /// A lenient walk (of a block a live process holds, see
    /// [`Walker::block`]): a buffer reached again is skipped, and a broken
    /// container is not reported, only not followed.
    pub(crate) lenient: bool,
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

    /// `true` if the walk has reached the nested block `blk`.
    pub(crate) fn reached(&self, blk: u64) -> bool {
        self.seen.contains(&blk)
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

/// How many `ShmMutex`es a walk takes at once (one inside what another
/// guards, and so on); what lies deeper is reported busy.
const MAX_HELD: usize = 32;

/// The context of one walk.
pub(crate) struct Walker<'a> {
    pub(crate) mem: Mem,
    pub(crate) store_id: u64,
    pub(crate) locks: Locks,
    pub(crate) out: &'a mut Walk,
}

/// Where each back reference of a layout leads: the container parameter
/// it names. Back references are resolved once, over the layout tree (the
/// encoder computed their depths over that tree: see `layout::tree`), so
/// that walking a value needs no stack of enclosing types and a value that
/// refers to itself many times over (a linked list of a million nodes) is
/// walked in a loop, not by recursion.
pub(crate) struct Targets<'d>(HashMap<*const LayoutDesc, &'d LayoutDesc>);

impl<'d> Targets<'d> {
    pub(crate) fn of(d: &'d LayoutDesc) -> Result<Targets<'d>> {
        let mut t = Targets(HashMap::new());
        t.collect(d, &mut Vec::new())?;
        Ok(t)
    }

    /// Records the back references under `d`; `params` holds the container
    /// parameters entered on the way, innermost last (never the root).
    fn collect(&mut self, d: &'d LayoutDesc, params: &mut Vec<&'d LayoutDesc>) -> Result<()> {
        match &d.kind {
            LayoutDescKind::Primitive | LayoutDescKind::Enum { .. } => {}
            LayoutDescKind::Struct { fields, .. } => {
                for f in fields {
                    self.collect(&f.ty, params)?;
                }
            }
            LayoutDescKind::Array { elem, .. } => self.collect(elem, params)?,
            LayoutDescKind::Opaque { params: ps } => {
                for p in ps {
                    self.collect(p, params)?;
                }
            }
            LayoutDescKind::Container { params: ps } => {
                for p in ps {
                    if let LayoutDescKind::BackRef { .. } = p.kind {
                        self.collect(p, params)?;
                    } else {
                        params.push(p);
                        let r = self.collect(p, params);
                        params.pop();
                        r?;
                    }
                }
            }
            LayoutDescKind::BackRef { depth } => {
                let target = usize::try_from(*depth)
                    .ok()
                    .and_then(|depth| params.len().checked_sub(1 + depth))
                    .and_then(|i| params.get(i).copied())
                    .ok_or_else(|| Error::corrupted("a layout's back reference points nowhere"))?;
                self.0.insert(d as *const LayoutDesc, target);
            }
        }
        Ok(())
    }

    /// `d`, or what it refers to if it is a back reference.
    pub(crate) fn resolve(&self, d: &'d LayoutDesc) -> Result<&'d LayoutDesc> {
        match d.kind {
            LayoutDescKind::BackRef { .. } => self
                .0
                .get(&(d as *const LayoutDesc))
                .copied()
                .ok_or_else(|| Error::corrupted("a layout's back reference points nowhere")),
            _ => Ok(d),
        }
    }
}

/// What is left to walk: `count` values of layout `d`, `stride` bytes
/// apart, from `off` (a map's slots are walked only if live).
struct Work<'d> {
    off: u64,
    d: &'d LayoutDesc,
    count: u64,
    stride: u64,
    /// For a map's keys or values: the slot's metadata word is this many
    /// bytes before `off`.
    live_at: Option<u64>,
    /// The nested block these values lie in (0: the value walked).
    owner: u64,
}

impl Walker<'_> {
    /// Walks `count` consecutive values of layout `d` at `off`.
    pub(crate) fn values(&mut self, off: u64, d: &LayoutDesc, count: u64) -> Result<()> {
        if !walks_into(d) {
            return Ok(());
        }
        let targets = Targets::of(d)?;
        self.run(
            &targets,
            Work {
                off,
                d,
                count,
                stride: d.size,
                live_at: None,
                owner: 0,
            },
            0,
        )
    }

    /// Walks the elements of the nested block `blk` of element layout
    /// `elem` as a root: a block that no object may reach, but that a live
    /// process holds (a value it is building, a container it moved out of
    /// the store), or one about to be freed. Its own header is checked (its
    /// token is its own); a map's table (elements named `ShmMapEntry`) is
    /// walked slot by slot, live slots only; any other block, its elements
    /// below its length.
    pub(crate) fn block(&mut self, blk: u64, elem: &LayoutDesc) -> Result<()> {
        if !walks_into(elem) {
            return Ok(());
        }
        let token = self.mem.u64(
            blk.checked_add(24)
                .ok_or_else(|| Error::corrupted("a nested block's offset overflows"))?,
        )?;
        let targets = Targets::of(elem)?;
        let entry = match (elem.name.as_str(), &elem.kind) {
            ("ShmMapEntry", LayoutDescKind::Container { params }) => {
                cl::shape_of("ShmMap", params).map(|shape| (shape, params.as_slice()))
            }
            _ => None,
        };
        let (size, align) = match &entry {
            Some((shape, params)) => shape.element(params),
            None => (elem.size, elem.align),
        };
        let (n, _) = read_nested_any(&self.mem, blk, size, align, token)?;
        self.out.seen.insert(blk);
        match entry {
            Some((
                cl::Shape::Map {
                    key_off,
                    value_off,
                    slot,
                    ..
                },
                [k, v],
            )) => {
                for (field, d) in [(value_off, v), (key_off, k)] {
                    if walks_into(d) {
                        let work = Work {
                            off: n
                                .elems
                                .checked_add(field)
                                .ok_or_else(|| Error::corrupted("a map slot overflows"))?,
                            d: targets.resolve(d)?,
                            count: n.cap,
                            stride: slot,
                            live_at: Some(field),
                            owner: blk,
                        };
                        self.run(&targets, work, 0)?;
                    }
                }
                Ok(())
            }
            Some(_) => Ok(()),
            None => self.run(
                &targets,
                Work {
                    off: n.elems,
                    d: elem,
                    count: n.len,
                    stride: size,
                    live_at: None,
                    owner: blk,
                },
                0,
            ),
        }
    }

    /// Walks what `first` names, and everything it leads to, in a loop.
    /// `held` counts the mutexes this walk holds.
    fn run<'d>(&mut self, targets: &Targets<'d>, first: Work<'d>, held: usize) -> Result<()> {
        let mut todo = vec![first];
        while let Some(w) = todo.last_mut() {
            if w.count == 0 {
                todo.pop();
                continue;
            }
            let (off, d, live_at, owner) = (w.off, w.d, w.live_at, w.owner);
            w.count -= 1;
            if w.count > 0 {
                w.off = w
                    .off
                    .checked_add(w.stride)
                    .ok_or_else(|| Error::corrupted("a value's elements overflow the segment"))?;
            }
            self.out.spend()?;
            if let Some(back) = live_at {
                let meta = off
                    .checked_sub(back)
                    .ok_or_else(|| Error::corrupted("a map slot overflows"))?;
                if self.mem.u64(meta)? & cl::LIVE == 0 {
                    continue;
                }
            }
            let at = |field: u64| {
                off.checked_add(field)
                    .ok_or_else(|| Error::corrupted("a field offset overflows"))
            };
            match &d.kind {
                LayoutDescKind::Primitive | LayoutDescKind::Enum { .. } => {}
                LayoutDescKind::Struct { fields, .. } => {
                    for f in fields.iter().rev().filter(|f| walks_into(&f.ty)) {
                        todo.push(Work {
                            off: at(f.offset)?,
                            d: &f.ty,
                            count: 1,
                            stride: 0,
                            live_at: None,
                            owner,
                        });
                    }
                }
                LayoutDescKind::Array { elem, len } => {
                    if walks_into(elem) {
                        todo.push(Work {
                            off,
                            d: elem,
                            count: *len,
                            stride: elem.size,
                            live_at: None,
                            owner,
                        });
                    }
                }
                LayoutDescKind::Opaque { params } => {
                    if let ("ShmMutex", [data]) = (d.name.as_str(), params.as_slice()) {
                        if self.locks == Locks::Ignore && self.probe_locked(off) {
                            self.out.locked.insert(owner);
                        }
                        if walks_into(data) {
                            let data_off = crate::sync::mutex_data_offset(data.align)
                                .and_then(|d| off.checked_add(d))
                                .ok_or_else(|| {
                                    Error::corrupted("a mutex's data offset overflows")
                                })?;
                            let inner = Work {
                                off: data_off,
                                d: data,
                                count: 1,
                                stride: 0,
                                live_at: None,
                                owner,
                            };
                            match self.locks {
                                Locks::Ignore | Locks::Blind => todo.push(inner),
                                Locks::Try => self.locked(targets, off, inner, held)?,
                                Locks::Observe => {
                                    if observed_held(&self.mem, off)? {
                                        self.out.busy.push(off);
                                    } else {
                                        todo.push(inner);
                                    }
                                }
                            }
                        }
                    }
                }
                LayoutDescKind::Container { params } => {
                    self.container(off, d, params, targets, &mut todo)?
                }
                LayoutDescKind::BackRef { .. } => todo.push(Work {
                    off,
                    d: targets.resolve(d)?,
                    count: 1,
                    stride: 0,
                    live_at: None,
                    owner,
                }),
            }
        }
        Ok(())
    }

    /// What the `ShmMutex` at `off` guards (`inner`), walked under its lock
    /// taken with `try_lock`; busy if it is held (or too many are held
    /// here already).
    fn locked<'d>(
        &mut self,
        targets: &Targets<'d>,
        off: u64,
        inner: Work<'d>,
        held: usize,
    ) -> Result<()> {
        if held >= MAX_HELD {
            self.out.busy.push(off);
            return Ok(());
        }
        let mem = self.mem;
        match crate::sync::try_with_locked(&mem, off, || self.run(targets, inner, held + 1))? {
            Some(r) => r,
            None => {
                self.out.busy.push(off);
                Ok(())
            }
        }
    }

    /// `true` if the `ShmMutex` at `off` is held by any thread (this one
    /// included) or cannot be probed: it is tried once, never waited for
    /// (the walk runs under the header lock). A dead owner's lock is taken
    /// and given back here (its death recorded, as `try_lock` would):
    /// nothing holds it any more.
    fn probe_locked(&self, off: u64) -> bool {
        !matches!(
            crate::sync::try_with_locked(&self.mem, off, || ()),
            Ok(Some(()))
        )
    }

    /// A container at `off`: its buffer, then (queued) its elements.
    fn container<'d>(
        &mut self,
        off: u64,
        d: &'d LayoutDesc,
        params: &'d [LayoutDesc],
        targets: &Targets<'d>,
        todo: &mut Vec<Work<'d>>,
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
                if !self.out.lenient {
                    self.out.broken.push(format!("{} at {off:#x}: {e}", d.name));
                }
                return Ok(());
            }
        };
        if !self.out.seen.insert(blk) {
            if !self.out.lenient {
                self.out.broken.push(format!(
                    "{} at {off:#x}: its buffer {blk:#x} is shared",
                    d.name
                ));
            }
            return Ok(());
        }
        self.out.found.push(NestedRef { blk, fp, token });
        match shape {
            cl::Shape::Elements => {
                let [elem] = params else { return Ok(()) };
                let elem = targets.resolve(elem)?;
                if walks_into(elem) {
                    todo.push(Work {
                        off: n.elems,
                        d: elem,
                        count: n.len,
                        stride: elem_size,
                        live_at: None,
                        owner: blk,
                    });
                }
            }
            cl::Shape::Bytes => {}
            cl::Shape::Map {
                key_off,
                value_off,
                slot,
                ..
            } => {
                let [k, v] = params else { return Ok(()) };
                let (k, v) = (targets.resolve(k)?, targets.resolve(v)?);
                for (field, d) in [(value_off, v), (key_off, k)] {
                    if walks_into(d) {
                        todo.push(Work {
                            off: n
                                .elems
                                .checked_add(field)
                                .ok_or_else(|| Error::corrupted("a map slot overflows"))?,
                            d,
                            count: n.cap,
                            stride: slot,
                            live_at: Some(field),
                            owner: blk,
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

/// `true` if the `ShmMutex` whose bytes start at `off` is held by a live
/// thread (or its bytes cannot be interpreted), read from its lock word
/// without locking.
pub(crate) fn observed_held(mem: &Mem, off: u64) -> Result<bool> {
    use crate::sys::pthread::{observe, Observed, OWNER_WORD};
    let word = mem.u32(off)?;
    let owner = mem.u32(
        off.checked_add(OWNER_WORD)
            .ok_or_else(|| Error::corrupted("a mutex's offset overflows"))?,
    )?;
    Ok(!matches!(
        observe(word, owner),
        Observed::Free | Observed::OwnerDied | Observed::Unrecoverable
    ))
}

/// `true` if a value of layout `d` may hold a container (conservatively:
/// any container or back reference inside).
pub(crate) fn has_containers(d: &LayoutDesc) -> bool {
    // A value of no bytes holds no container (a container is 24 bytes).
    if d.size == 0 {
        return false;
    }
    match &d.kind {
        LayoutDescKind::Primitive | LayoutDescKind::Enum { .. } => false,
        LayoutDescKind::Struct { fields, .. } => fields.iter().any(|f| has_containers(&f.ty)),
        LayoutDescKind::Array { elem, .. } => has_containers(elem),
        LayoutDescKind::Opaque { params } => params.iter().any(has_containers),
        LayoutDescKind::Container { .. } => d.name != "Pod",
        LayoutDescKind::BackRef { .. } => true,
    }
}

/// `true` if a value of layout `d` may hold a `ShmMutex` (conservatively:
/// any back reference too).
pub(crate) fn has_locks(d: &LayoutDesc) -> bool {
    if d.size == 0 {
        return false;
    }
    match &d.kind {
        LayoutDescKind::Primitive | LayoutDescKind::Enum { .. } => false,
        LayoutDescKind::Struct { fields, .. } => fields.iter().any(|f| has_locks(&f.ty)),
        LayoutDescKind::Array { elem, .. } => has_locks(elem),
        LayoutDescKind::Opaque { params } => d.name == "ShmMutex" || params.iter().any(has_locks),
        LayoutDescKind::Container { params } => d.name != "Pod" && params.iter().any(has_locks),
        LayoutDescKind::BackRef { .. } => true,
    }
}

/// `true` if a walk must look inside a value of layout `d`: for its
/// containers, and for the locks a [`Locks::Ignore`] walk probes.
pub(crate) fn walks_into(d: &LayoutDesc) -> bool {
    has_containers(d) || has_locks(d)
}
