//! Finding the store a container belongs to, from the container alone.

use core::sync::atomic::{AtomicU64, Ordering};
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::OnceLock;

use crate::arena::mem::Mem;
use crate::arena::nested::{read_nested_any, ElemType, Nested};
use crate::arena::Arena;
use crate::store::{located, store_with_id, Inner};
use crate::{Error, Result, ShmSafe, Store};

/// The store a container operation works in.
pub(crate) struct Ctx<'a> {
    store: Place<'a>,
    /// The store's id.
    pub(crate) store_id: u64,
    /// The container lives in the store's segment (else it is outside any
    /// store: on the stack, in a `Box`, ...).
    pub(crate) in_segment: bool,
}

enum Place<'a> {
    /// The mapping that holds the container, kept alive by the caller's
    /// borrow of the container.
    Mapping(&'a Inner),
    /// A store found by id, for a container outside it.
    Open(Store),
}

fn no_commit(_: u64, _: u64) -> Result<()> {
    Err(Error::corrupted(
        "a read-only view of a store tried to commit pages",
    ))
}

impl<'a> Ctx<'a> {
    /// The store of the container `c`, bound to store `bound` (0: not bound
    /// to any store yet). `what` names the container type for errors.
    pub(crate) fn of<C>(c: &'a C, bound: u64, what: &'static str) -> Result<Ctx<'a>> {
        let addr = c as *const C as usize;
        // SAFETY: `c` is a reference for `'a` to the `size_of::<C>()` bytes
        // at `addr`: whatever gave it out keeps their mapping (if they are
        // in one) alive for `'a`.
        if let Some((inner, id)) = unsafe { located(addr, core::mem::size_of::<C>()) } {
            if bound != 0 && bound != id {
                return Err(Error::ForeignContainer {
                    container: what,
                    store: inner.name().to_string(),
                });
            }
            return Ok(Ctx {
                store: Place::Mapping(inner),
                store_id: id,
                in_segment: true,
            });
        }
        if bound == 0 {
            return Err(Error::InvalidArgument {
                reason: format!(
                    "this {what} is outside any store and not bound to one: create it with \
                     {what}::new_in(&store) (or a `*_in` constructor), or use it once it lives \
                     in a store"
                ),
            });
        }
        match store_with_id(bound) {
            Some(store) => Ok(Ctx {
                store: Place::Open(store),
                store_id: bound,
                in_segment: false,
            }),
            None => Err(Error::NotFound {
                what: format!("the store this {what} belongs to (it is not open in this process)"),
            }),
        }
    }

    /// The context of a store, for a container being created outside it.
    pub(crate) fn for_store(store: &Store) -> Ctx<'static> {
        Ctx {
            store_id: store.inner_ref().store_id(),
            store: Place::Open(store.clone()),
            in_segment: false,
        }
    }

    pub(crate) fn inner(&self) -> &Inner {
        match &self.store {
            Place::Mapping(inner) => inner,
            Place::Open(store) => store.inner_ref(),
        }
    }

    /// What a view into a container outside the store must hold to keep
    /// the store mapped: the store itself (a container in the segment is
    /// kept mapped by whoever lent it).
    pub(crate) fn keep(&self) -> Option<Store> {
        match &self.store {
            Place::Mapping(_) => None,
            Place::Open(store) => Some(store.clone()),
        }
    }

    /// The store's bytes.
    pub(crate) fn mem(&self) -> Mem {
        self.inner().mem()
    }

    /// An arena for reads outside the header lock, after committing here
    /// whatever another process committed (so every page the header
    /// vouches for can be read).
    pub(crate) fn reader(&self) -> Result<Arena<'static>> {
        self.inner().sync_backed()?;
        Ok(Arena::new(self.mem(), &no_commit))
    }

    /// Runs `f` as one journalled operation under the header lock.
    pub(crate) fn with_arena<R>(&self, f: impl FnMut(&Arena<'_>) -> Result<R>) -> Result<R> {
        self.inner().with_arena(f)
    }

    /// Registers `T`'s layout in the store's type registry (once per store
    /// and process), so that the store can walk a buffer of `T`s by their
    /// layout when no object reaches it (`Store::collect` walks the buffers
    /// live processes hold).
    pub(crate) fn register_elements<T: ShmSafe>(&self) -> Result<()> {
        static DONE: parking_lot::Mutex<Vec<(u64, u64)>> = parking_lot::Mutex::new(Vec::new());
        let fp = elem_type::<T>().fingerprint;
        let key = (self.store_id, fp);
        if DONE.lock().contains(&key) {
            return Ok(());
        }
        let layout = T::LAYOUT;
        let encoded = crate::layout::encode_layout(layout).map_err(|e| Error::InvalidArgument {
            reason: format!("{} cannot be stored: {e}", layout.type_expr()),
        })?;
        self.with_arena(|a| {
            if a.find_type(fp)?.is_none() {
                a.register_type(fp, layout.size as u64, layout.align as u64, &encoded)?;
            }
            Ok(())
        })?;
        DONE.lock().push(key);
        Ok(())
    }

    /// Checks the nested block `blk` of the container with `token`, for
    /// elements of `T`. For a container outside the store, also makes sure
    /// the block is marked as held by this process (one locked operation,
    /// once), so that `collect` cannot reclaim it while it is used here.
    pub(crate) fn nested<T: ShmSafe>(&self, blk: u64, token: u64) -> Result<Nested> {
        let ty = elem_type::<T>();
        let mem = self.mem();
        let read = || read_nested_any(&mem, blk, ty.size, ty.align, token);
        let (n, fp) = match read() {
            Ok(found) => found,
            // Perhaps in pages another process committed since this one
            // last looked: commit them here too, and look again.
            Err(_) => {
                self.inner().sync_backed()?;
                read()?
            }
        };
        if fp != ty.fingerprint {
            // The container's own block (its token matched), of another
            // element type: refused, never reinterpreted.
            return Err(self.wrong_elements::<T>(blk, fp));
        }
        let mark = self.inner().pending_word();
        if !self.in_segment && n.pending != mark {
            // First use outside the store (a value being built, a container
            // moved out through a guard): claim the buffer and everything
            // its elements reach.
            super::own::claim_block::<T>(self, blk, token)?;
            let mut n = n;
            n.pending = mark;
            return Ok(n);
        }
        Ok(n)
    }
}

impl Ctx<'_> {
    /// [`Error::TypeMismatch`] for a buffer of elements with fingerprint
    /// `stored` where a `T` was expected: `T`'s layout, and the stored
    /// elements' layout if the store has registered their type.
    fn wrong_elements<T: ShmSafe>(&self, blk: u64, stored: u64) -> Error {
        // Read without the header lock (which the caller may hold): the
        // registry only grows, and a text read while it moves is at worst
        // not found.
        let found = self
            .reader()
            .and_then(|a| match a.find_type(stored)? {
                Some(idx) => a.type_text(idx).map(|(_, text)| Some(text)),
                None => Ok(None),
            })
            .ok()
            .flatten()
            .unwrap_or_else(|| {
                format!(
                    "elements of a type this store has not registered (fingerprint {stored:#018x})"
                )
            });
        Error::TypeMismatch {
            name: format!("the buffer at {blk:#x}"),
            expected: format!(
                "{} (fingerprint {:#018x})",
                T::LAYOUT,
                elem_type::<T>().fingerprint
            ),
            found,
        }
    }
}

/// The nested-block element type of `T`.
pub(crate) fn elem_type<T: ShmSafe>() -> ElemType {
    ElemType {
        fingerprint: crate::layout::graph_fingerprint_of::<T>(),
        size: core::mem::size_of::<T>() as u64,
        align: core::mem::align_of::<T>() as u64,
    }
}

/// A fresh container token: non-zero, and unique in practice (a hash,
/// with this process's random keys, of a per-process counter and the
/// process's identity).
pub(crate) fn new_token() -> u64 {
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let keys = KEYS.get_or_init(RandomState::new);
    keys.hash_one((n, std::process::id())).max(1)
}
