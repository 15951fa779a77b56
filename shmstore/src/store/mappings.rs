//! This process's table of mapped stores: which store a segment address
//! belongs to, and which mappings a store has, for code that holds only an
//! address or a store id — a container finding the store it lives in, a
//! lock naming itself in an error.
//!
//! Each entry is registered when a [`Store`] is made over a mapping and
//! removed when its last handle drops, before the mapping goes. Entries hold
//! a weak reference: the table never keeps a store alive.
//!
//! # The fast path
//!
//! A container looks its store up on every operation, so the lookup of an
//! address is served from a per-thread cache of the last mapping found,
//! valid while a global generation counter (bumped by every registration
//! and removal) has not moved: one atomic load and two comparisons.

use core::cell::Cell;
use core::sync::atomic::AtomicU64;
use std::sync::Weak;

use parking_lot::RwLock;

use super::*;

struct Mapping {
    base: usize,
    len: usize,
    store_id: u64,
    /// The segment's file (`st_dev`, `st_ino`).
    file: (u64, u64),
    inner: Weak<Inner>,
    raw: *const Inner,
}

// SAFETY: `raw` is only an address, dereferenced by `located` under the
// argument given there; the rest is plain data and a `Weak`.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

static MAPPINGS: RwLock<Vec<Mapping>> = RwLock::new(Vec::new());
/// Bumped by every change of `MAPPINGS`: a cached lookup made under another
/// generation is not used.
static GENERATION: AtomicU64 = AtomicU64::new(1);

#[derive(Clone, Copy)]
struct Cached {
    generation: u64,
    base: usize,
    len: usize,
    store_id: u64,
    raw: *const Inner,
}

thread_local! {
    static CACHE: Cell<Option<Cached>> = const { Cell::new(None) };
}

/// Adds the mapping of `inner`, whose segment is the file `file`.
///
/// Refused if this process has another segment open with the same store
/// id: a byte copy of a store (a backup, a snapshot) keeps its id, and
/// containers tell stores apart by id, so a container moved between the
/// two would be taken for one of the other's, sharing its buffers.
/// [`Error::InvalidArgument`], naming both.
pub(super) fn register(inner: &Arc<Inner>, file: (u64, u64)) -> Result<()> {
    let mut maps = MAPPINGS.write();
    if let Some(twin) = maps
        .iter()
        .find(|m| m.store_id == inner.store_id() && m.file != file)
    {
        let twin = twin.inner.upgrade().map_or_else(
            || "another segment".to_string(),
            |t| format!("\"{}\"", t.name()),
        );
        return Err(Error::InvalidArgument {
            reason: format!(
                "store \"{}\" has the same store id as {twin}, which this process has open: \
                 one is a byte copy of the other; open one of them at a time in a process \
                 (containers tell stores apart by their id)",
                inner.name()
            ),
        });
    }
    maps.push(Mapping {
        base: inner.region.base().as_ptr() as usize,
        len: inner.region.len(),
        store_id: inner.store_id(),
        file,
        inner: Arc::downgrade(inner),
        raw: Arc::as_ptr(inner),
    });
    GENERATION.fetch_add(1, Ordering::AcqRel);
    Ok(())
}

/// Removes the mapping of `inner` (being dropped).
pub(super) fn unregister(inner: &Inner) {
    let base = inner.region.base().as_ptr() as usize;
    let mut maps = MAPPINGS.write();
    maps.retain(|m| m.base != base);
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

/// The mapping that holds `addr`: its `Inner` (as a raw pointer: see
/// [`located`]) and store id.
fn find(addr: usize) -> Option<Cached> {
    let generation = GENERATION.load(Ordering::Acquire);
    if let Ok(Some(c)) = CACHE.try_with(Cell::get) {
        if c.generation == generation && addr >= c.base && addr - c.base < c.len {
            return Some(c);
        }
    }
    let maps = MAPPINGS.read();
    // Read under the lock: no registration can slip between the lookup and
    // the generation the cache records.
    let generation = GENERATION.load(Ordering::Acquire);
    let m = maps
        .iter()
        .find(|m| addr >= m.base && addr - m.base < m.len)?;
    let c = Cached {
        generation,
        base: m.base,
        len: m.len,
        store_id: m.store_id,
        raw: m.raw,
    };
    let _ = CACHE.try_with(|cell| cell.set(Some(c)));
    Some(c)
}

/// The store whose mapping holds the `size` bytes at `addr`, borrowed for
/// as long as the caller's borrow of those bytes.
///
/// # Safety
///
/// The caller holds a shared or exclusive reference to the `size` bytes at
/// `addr` for `'a` (a container in a segment, reached through a handle or a
/// guard): whatever gave it that reference keeps the mapping, hence the
/// store's `Inner`, alive for `'a`. (An `Inner` unregisters before its
/// mapping goes, so an address inside a registered mapping belongs to a
/// live `Inner`; and while the caller's reference lives, the handle behind
/// it keeps that `Inner` alive.)
pub(crate) unsafe fn located<'a>(addr: usize, size: usize) -> Option<(&'a Inner, u64)> {
    let c = find(addr)?;
    if size > c.len - (addr - c.base) {
        return None;
    }
    // SAFETY: `c.raw` is the `Inner` of the mapping that holds the caller's
    // bytes; the caller's reference keeps it alive for `'a` (contract
    // above).
    Some((unsafe { &*c.raw }, c.store_id))
}

/// Whether a holder recorded in the `size` bytes at `addr` may be judged
/// dead by this process: `Some(true)` if they lie in a store all of whose
/// processes share this process's pid namespace (see
/// [`Inner::one_pid_namespace`]), `Some(false)` in any other store, `None`
/// if no store of this process maps them (a primitive in this process's
/// own memory, which only its threads use).
///
/// # Safety
///
/// As for [`located`]: the caller holds a reference to those bytes.
pub(crate) unsafe fn one_pid_namespace_at(addr: usize, size: usize) -> Option<bool> {
    // SAFETY: the caller's guarantee.
    let (inner, _) = unsafe { located(addr, size) }?;
    Some(inner.one_pid_namespace())
}

/// The store id and offset of the `size` bytes at `addr`, if a store of
/// this process maps them: the same for every mapping of one store, so
/// that a lock reached through two mappings is known as one.
pub(crate) fn store_place(addr: usize, size: usize) -> Option<(u64, u64)> {
    let c = find(addr)?;
    let off = addr - c.base;
    (size <= c.len - off).then_some((c.store_id, off as u64))
}

/// A store of this process with id `store_id`, if one is open.
pub(crate) fn store_with_id(store_id: u64) -> Option<Store> {
    let maps = MAPPINGS.read();
    maps.iter()
        .filter(|m| m.store_id == store_id)
        .find_map(|m| m.inner.upgrade())
        .map(|inner| Store { inner })
}

/// The store whose mapping holds `addr`, and the offset of `addr` in it.
fn store_at(addr: usize) -> Option<(Store, u64)> {
    let maps = MAPPINGS.read();
    let m = maps
        .iter()
        .find(|m| addr >= m.base && addr - m.base < m.len)?;
    let inner = m.inner.upgrade()?;
    Some((Store { inner }, (addr - m.base) as u64))
}

/// Where `addr` is, in words: `in object "name" of store "/s"`, or `at
/// offset 0x... of store "/s"`; `None` if no store of this process maps
/// it. For error paths only. Never waits: the object's name is looked up
/// only if the header lock is free right now (a lock's error must not
/// wait for a process that holds the header lock, a stopped one say); if
/// it is not, the offset is given instead.
pub(crate) fn describe_address(addr: usize) -> Option<String> {
    let (store, off) = store_at(addr)?;
    let object = store
        .inner
        .try_with_arena(|a| {
            for rec in a.records()? {
                let r = a.record(rec)?;
                let size = a.type_info(r.type_idx)?.size.saturating_mul(r.len);
                if off >= r.value && off - r.value < size.max(1) {
                    return Ok(Some(a.record_name(rec)?));
                }
            }
            Ok(None)
        })
        .ok()
        .flatten()
        .flatten();
    Some(match object {
        Some(name) => format!("in object \"{name}\" of store \"{}\"", store.name()),
        None => format!("at offset {off:#x} of store \"{}\"", store.name()),
    })
}
