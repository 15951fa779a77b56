//! What a container's elements own — the nested blocks their own
//! containers reach — found by walking the elements' layout: claimed for
//! this process before they leave the store's reach, and freed in a loop,
//! not by recursive drops.
//!
//! # Who may reclaim a block
//!
//! Every nested block carries a *pending* word (see `arena::nested`): the
//! process that may be using it outside the store's reach. `Store::collect`
//! frees a block only if no object reaches it, no block a live process
//! holds reaches it, and the process its pending word names is gone. So
//! every operation that takes a block out of the store's reach first claims
//! it (and what it reaches) for this process:
//!
//! - a new block is allocated held by this process (it is reachable only
//!   once its container switches to it);
//! - a container that switches to a new buffer claims the old one before
//!   the switch (if this process then dies, the old one is reclaimed);
//! - an element taken out (`pop`, `remove`, a map's `remove` or replaced
//!   value, `RelPtr::take`) or about to be dropped (`truncate`, `clear`, a
//!   container's `Drop`) is claimed, with all it reaches, before the length
//!   or slot word that unpublishes it;
//! - a container first used outside the store (moved out through a guard)
//!   claims its buffer and all it reaches.
//!
//! Publishing a value (`insert`, `replace`) clears the marks of what it
//! reaches: from then on it is the store's.

use std::collections::hash_map::HashMap;
use std::rc::Rc;

use super::ctx::Ctx;
use crate::arena::walk::{Locks, Walk, Walker};
use crate::arena::Arena;
use crate::layout::{LayoutDesc, ShmSafe};
use crate::Result;

/// `true` if values of `T` may own nested blocks (they hold containers, and
/// take bytes).
pub(crate) const fn owns<T: ShmSafe>() -> bool {
    core::mem::size_of::<T>() != 0 && T::LAYOUT.has_containers()
}

/// `true` if freeing values of `T` needs a walk of them: they may own
/// nested blocks, or hold a lock (memory holding a locked `ShmMutex` is
/// never freed: see [`free_block`]).
pub(crate) const fn walks<T: ShmSafe>() -> bool {
    core::mem::size_of::<T>() != 0 && (T::LAYOUT.has_containers() || T::LAYOUT.may_hold_locks())
}

/// `T`'s layout as the store's walk reads it, built once per type and
/// thread.
pub(crate) fn desc_of<T: ShmSafe>() -> Rc<LayoutDesc> {
    thread_local! {
        static CACHE: core::cell::RefCell<HashMap<core::any::TypeId, Rc<LayoutDesc>>> =
            core::cell::RefCell::new(HashMap::new());
    }
    let id = core::any::TypeId::of::<T>();
    let cached = CACHE
        .try_with(|c| c.borrow().get(&id).cloned())
        .ok()
        .flatten();
    cached.unwrap_or_else(|| {
        let d = Rc::new(LayoutDesc::from(T::LAYOUT));
        let _ = CACHE.try_with(|c| c.borrow_mut().insert(id, d.clone()));
        d
    })
}

/// What the value of `T` at `value`, inside `holder`, owns, when `holder`
/// lies in a store's segment: claimed, then freed by walking its bytes
/// (never read as a `T`: they may be invalid). For `ShmMutex::reset`, which
/// overwrites a value without dropping it. Errors are swallowed (what is
/// not freed stays for `collect`).
pub(crate) fn free_in_place<T: ShmSafe, C>(holder: &C, value: *const T) {
    if !walks::<T>() {
        return;
    }
    let Ok(ctx) = Ctx::of(holder, 0, "value") else {
        return;
    };
    let Some(at) = ctx.mem().offset_of(value as usize) else {
        return;
    };
    if claim::<T>(&ctx, at, 1).is_ok() {
        free_values::<T>(&ctx, at, 1);
    }
}

/// Claims for this process every nested block that the `count` values of
/// `T` at offset `at` reach (see the module docs). The caller holds the
/// values (through `&mut`).
pub(crate) fn claim<T: ShmSafe>(ctx: &Ctx<'_>, at: u64, count: u64) -> Result<()> {
    if !owns::<T>() || count == 0 {
        return Ok(());
    }
    let desc = desc_of::<T>();
    let mark = ctx.inner().pending_word();
    ctx.with_arena(|a| {
        let walk = lenient_walk(ctx, a, Locks::Blind, |w| w.values(at, &desc, count))?;
        for n in &walk.found {
            a.set_pending(n.blk, mark)?;
        }
        Ok(())
    })
}

/// Claims the nested block `blk` (elements of `E`, owned by the container
/// with `token`) and everything its elements reach. The block is checked
/// again under the header lock first: it may have been reclaimed since the
/// caller looked (a container moved out and not yet used).
pub(crate) fn claim_block<E: ShmSafe>(ctx: &Ctx<'_>, blk: u64, token: u64) -> Result<()> {
    let mark = ctx.inner().pending_word();
    let desc = owns::<E>().then(desc_of::<E>);
    ctx.with_arena(|a| {
        a.nested(blk, super::ctx::elem_type::<E>(), token)?;
        a.set_pending(blk, mark)?;
        if let Some(desc) = &desc {
            let walk = lenient_walk(ctx, a, Locks::Blind, |w| w.block(blk, desc))?;
            for n in &walk.found {
                a.set_pending(n.blk, mark)?;
            }
        }
        Ok(())
    })
}

/// Frees what the `count` values of `T` at offset `at` own (the caller
/// holds them and has unpublished them): the nested blocks they reach, in
/// bounded steps — unless a `ShmMutex` among them is locked, in which case
/// nothing is freed (left to `Store::collect`, which frees it once the lock
/// is released). Errors cannot be reported by the callers (drops): what is
/// not freed here stays claimed by this process, for `collect`.
pub(crate) fn free_values<T: ShmSafe>(ctx: &Ctx<'_>, at: u64, count: u64) {
    if !walks::<T>() || count == 0 {
        return;
    }
    let desc = desc_of::<T>();
    let found = ctx.with_arena(|a| {
        let walk = lenient_walk(ctx, a, Locks::Ignore, |w| w.values(at, &desc, count))?;
        Ok((walk.locked.is_empty()).then_some(walk.found))
    });
    if let Ok(Some(found)) = found {
        free_found(ctx, &found);
    }
}

/// Frees the nested block `blk` (elements of `E`, element fingerprint
/// `fp`, token `token`) and everything its elements reach, in bounded
/// steps, its own block last — unless a `ShmMutex` in it is locked (then
/// nothing: see [`free_values`]). The caller has detached it from its
/// container (and claimed it).
pub(crate) fn free_block<E: ShmSafe>(ctx: &Ctx<'_>, blk: u64, fp: u64, token: u64) {
    let found = if walks::<E>() {
        let desc = desc_of::<E>();
        match ctx.with_arena(|a| {
            let walk = lenient_walk(ctx, a, Locks::Ignore, |w| w.block(blk, &desc))?;
            Ok(walk.locked.is_empty().then_some(walk.found))
        }) {
            Ok(Some(found)) => found,
            _ => return,
        }
    } else {
        Vec::new()
    };
    free_found(ctx, &found);
    let _ = ctx.with_arena(|a| a.free_nested(blk, fp, token));
}

/// A lenient walk (what it cannot read is skipped, not an error) of the
/// store's layout graph, within the arena's walk budget, starting where
/// `start` tells the walker to.
fn lenient_walk(
    ctx: &Ctx<'_>,
    a: &Arena<'_>,
    locks: Locks,
    start: impl FnOnce(&mut Walker<'_>) -> Result<()>,
) -> Result<Walk> {
    let mut walk = Walk::new(a.walk_budget());
    walk.lenient = true;
    start(&mut Walker {
        mem: a.mem,
        store_id: ctx.store_id,
        locks,
        out: &mut walk,
    })?;
    Ok(walk)
}

/// Frees the blocks a walk found, a bounded number per locked step (each
/// checked again: header, fingerprint and token).
fn free_found(ctx: &Ctx<'_>, found: &[crate::arena::walk::NestedRef]) {
    for chunk in found.chunks(crate::store::NESTED_FREES_PER_STEP) {
        let _ = ctx.with_arena(|a| {
            for n in chunk {
                a.free_nested(n.blk, n.fp, n.token)?;
            }
            Ok(())
        });
    }
}
