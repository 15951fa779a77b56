//! This process's table of mapped stores: which store a segment address
//! belongs to, for code that holds only an address (a lock inside an
//! object naming itself in an error).
//!
//! Each entry is registered when a [`Store`] is made over a mapping and
//! removed when its last handle drops, before the mapping goes. Entries hold
//! a weak reference: the table never keeps a store alive.

use std::sync::Weak;

use parking_lot::RwLock;

use super::*;

struct Mapping {
    base: usize,
    len: usize,
    inner: Weak<Inner>,
}

static MAPPINGS: RwLock<Vec<Mapping>> = RwLock::new(Vec::new());

/// Adds the mapping of `inner`.
pub(super) fn register(inner: &Arc<Inner>) {
    MAPPINGS.write().push(Mapping {
        base: inner.region.base().as_ptr() as usize,
        len: inner.region.len(),
        inner: Arc::downgrade(inner),
    });
}

/// Removes the mapping of `inner` (being dropped).
pub(super) fn unregister(inner: &Inner) {
    let base = inner.region.base().as_ptr() as usize;
    MAPPINGS.write().retain(|m| m.base != base);
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
/// it. Takes the header lock: for error paths only.
pub(crate) fn describe_address(addr: usize) -> Option<String> {
    let (store, off) = store_at(addr)?;
    let object = store
        .with_arena(|a| {
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
        .flatten();
    Some(match object {
        Some(name) => format!("in object \"{name}\" of store \"{}\"", store.name()),
        None => format!("at offset {off:#x} of store \"{}\"", store.name()),
    })
}
