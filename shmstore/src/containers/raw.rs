//! [`RawBuf`]: the state every growable container shares — its store, its
//! token and the offset of its buffer — and the operations on it.

use core::sync::atomic::{AtomicU64, Ordering};

use super::ctx::{elem_type, new_token, Ctx};
use crate::arena::nested::Nested;
use crate::layout::ShmSafe;
use crate::{Error, Result};

/// The three words of a container (see `ShmVec`'s layout table).
#[repr(C)]
pub(crate) struct RawBuf {
    store: AtomicU64,
    token: AtomicU64,
    buf: AtomicU64,
}

/// Field offsets, for the store's layout walk.
#[allow(dead_code)] // used by the store's layout walk
pub(crate) const RAW_STORE: u64 = 0;
#[allow(dead_code)]
pub(crate) const RAW_TOKEN: u64 = 8;
#[allow(dead_code)]
pub(crate) const RAW_BUF: u64 = 16;
/// Size of [`RawBuf`].
pub(crate) const RAW_SIZE: u64 = 24;

/// A checked buffer: its block and what its header says.
#[derive(Clone, Copy)]
pub(crate) struct Buf {
    pub(crate) blk: u64,
    pub(crate) n: Nested,
}

impl RawBuf {
    pub(crate) const fn new() -> RawBuf {
        RawBuf {
            store: AtomicU64::new(0),
            token: AtomicU64::new(0),
            buf: AtomicU64::new(0),
        }
    }

    /// Bound to the store with id `store_id`, without a buffer.
    pub(crate) fn bound(store_id: u64) -> RawBuf {
        let r = RawBuf::new();
        r.store.store(store_id, Ordering::Relaxed);
        r
    }

    /// `true` if there is no buffer.
    pub(crate) fn is_unallocated(&self) -> bool {
        self.buf.load(Ordering::Acquire) == 0
    }

    /// The store this container works in (see [`Ctx::of`]).
    pub(crate) fn ctx<'a, C>(&self, container: &'a C, what: &'static str) -> Result<Ctx<'a>> {
        Ctx::of(container, self.store.load(Ordering::Relaxed), what)
    }

    /// The buffer, checked (`None` without one).
    pub(crate) fn buffer<T: ShmSafe>(&self, ctx: &Ctx<'_>) -> Result<Option<Buf>> {
        let blk = self.buf.load(Ordering::Acquire);
        if blk == 0 {
            return Ok(None);
        }
        let n = ctx.nested::<T>(blk, self.token.load(Ordering::Relaxed))?;
        Ok(Some(Buf { blk, n }))
    }

    /// A pointer to the elements and their number; the elements' bytes are
    /// checked when `T` has invalid bit patterns.
    pub(crate) fn elements<T: ShmSafe>(
        &self,
        ctx: &Ctx<'_>,
    ) -> Result<(*mut T, usize, Option<Buf>)> {
        let Some(b) = self.buffer::<T>(ctx)? else {
            return Ok((core::ptr::NonNull::<T>::dangling().as_ptr(), 0, None));
        };
        if b.n.len == 0 {
            return Ok((core::ptr::NonNull::<T>::dangling().as_ptr(), 0, Some(b)));
        }
        let p = b.n.ptr.cast::<T>();
        check_all(p, b.n.len as usize)?;
        Ok((p, b.n.len as usize, Some(b)))
    }

    /// Binds an unbound container to the store it lives in, and gives it a
    /// token.
    fn bind(&self, ctx: &Ctx<'_>) {
        if self.store.load(Ordering::Relaxed) == 0 {
            self.store.store(ctx.store_id, Ordering::Relaxed);
        }
        if self.token.load(Ordering::Relaxed) == 0 {
            self.token.store(new_token(), Ordering::Relaxed);
        }
    }

    /// Builds a new buffer of `cap` elements, filled by `fill(old, new)` —
    /// `old` is the old buffer's first element and header, `None` without
    /// one — which returns the new length (it moves elements bitwise from
    /// the old buffer, whose copies are then never used again); switches to
    /// it with one word; then frees the old buffer. The new elements and
    /// their length are published together by that switch. If `fill`
    /// fails, the new buffer is freed and the container is unchanged.
    ///
    /// # Safety
    ///
    /// `fill` writes only elements `[0, new_len)` of `new` (room for
    /// `cap`), each a valid `T` once it returns `Ok`, reads only elements
    /// of `old` inside its capacity (checked by the caller where it relies
    /// on their bytes), and leaves every element of the old buffer that it
    /// does not move owned by the caller (the caller forgets or drops it).
    pub(crate) unsafe fn rebuild<T: ShmSafe>(
        &self,
        ctx: &Ctx<'_>,
        cap: u64,
        fill: impl FnOnce(Option<(*mut T, Nested)>, *mut T) -> Result<u64>,
    ) -> Result<Buf> {
        self.bind(ctx);
        let ty = elem_type::<T>();
        if ty.align > crate::arena::mem::MAX_ALIGN {
            return Err(Error::InvalidArgument {
                reason: format!(
                    "{} is aligned to {} bytes; a store holds values aligned to at most {}",
                    core::any::type_name::<T>(),
                    ty.align,
                    crate::arena::mem::MAX_ALIGN
                ),
            });
        }
        if super::own::walks::<T>() {
            // So that `collect` can walk a buffer of them that no object
            // reaches but a live process holds.
            ctx.register_elements::<T>()?;
        }
        let old = self.buffer::<T>(ctx)?;
        let old_view = old.map(|b| (b.n.ptr.cast::<T>(), b.n));
        let token = self.token.load(Ordering::Relaxed);
        let mark = ctx.inner().pending_word();
        // Allocated held by this process (reachable only once switched
        // in); the old buffer is claimed too (unreachable once switched
        // out, until freed below): if this process dies in between, both
        // are `collect`'s.
        let blk = ctx.with_arena(|a| {
            if let Some(old) = &old {
                a.nested(old.blk, ty, token)?;
                a.set_pending(old.blk, mark)?;
            }
            a.alloc_nested(ty, cap, token, mark)
        })?;
        let n = match ctx.nested::<T>(blk, token) {
            Ok(n) => n,
            Err(e) => {
                let _ = ctx.with_arena(|a| a.free_nested(blk, ty.fingerprint, token));
                return Err(e);
            }
        };
        let new_p = n.ptr.cast::<T>();
        let new_len = match fill(old_view, new_p) {
            Ok(len) if len <= cap => len,
            other => {
                let _ = ctx.with_arena(|a| a.free_nested(blk, ty.fingerprint, token));
                return Err(other.err().unwrap_or_else(|| {
                    Error::corrupted("a container rebuild filled more than its capacity")
                }));
            }
        };
        let reader = ctx.reader()?;
        reader.set_nested_len(blk, &n, new_len)?;
        crate::crash::step();
        // The one word that switches to the new elements and length.
        self.buf.store(blk, Ordering::Release);
        crate::crash::step();
        if let Some(old) = old {
            ctx.with_arena(|a| a.free_nested(old.blk, ty.fingerprint, token))?;
        }
        ctx.nested::<T>(blk, token).map(|n| Buf { blk, n })
    }

    /// Publishes a new length for a buffer the caller owns (elements below
    /// it written, elements above it no longer used).
    pub(crate) fn set_len(&self, b: &Buf, len: u64) -> Result<()> {
        b.n.set_len(len)
    }

    /// Frees the buffer and everything its elements own (the container's
    /// `Drop`): claims it all for this process, detaches the buffer (the
    /// container is then empty, whatever happens next), and frees by
    /// walking the elements' layout, in bounded steps — never by recursive
    /// drops, so a list of a million `RelPtr`s is freed in a loop. Memory
    /// holding a locked `ShmMutex` is not freed (see `own::free_block`).
    /// Errors are swallowed: what cannot be freed now is left to
    /// `Store::collect`.
    pub(crate) fn release<T: ShmSafe, C>(&self, container: &C, what: &'static str) {
        if self.is_unallocated() {
            return;
        }
        let Ok(ctx) = self.ctx(container, what) else {
            return;
        };
        let Ok(Some(b)) = self.buffer::<T>(&ctx) else {
            return;
        };
        let token = self.token.load(Ordering::Relaxed);
        if super::own::claim_block::<T>(&ctx, b.blk, token).is_err() {
            return;
        }
        self.buf.store(0, Ordering::Release);
        crate::crash::step();
        let fp = crate::layout::graph_fingerprint_of::<T>();
        super::own::free_block::<T>(&ctx, b.blk, fp, token);
    }
}

/// Checks `len` elements at `p` when `T` has invalid bit patterns.
pub(crate) fn check_all<T: ShmSafe>(p: *const T, len: usize) -> Result<()> {
    if !T::HAS_INVALID_BIT_PATTERNS || core::mem::size_of::<T>() == 0 {
        return Ok(());
    }
    for i in 0..len {
        // SAFETY: the caller checked `len` elements of `T` at `p` (inside
        // the mapping, aligned, in a buffer no one else writes meanwhile).
        if let Err(e) = unsafe { T::check_bytes(p.add(i)) } {
            return Err(Error::corrupted(format!(
                "container element {i}: {}",
                e.within(i * core::mem::size_of::<T>())
            )));
        }
    }
    Ok(())
}
