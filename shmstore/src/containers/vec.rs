//! [`ShmVec<T>`]: a growable array in a store.

use core::fmt;
use core::marker::PhantomData;

use super::ctx::Ctx;
use super::own;
use super::raw::{Buf, RawBuf};
use super::{Ref, RefMut};
use crate::layout::{LayoutKind, LazyLayout, ShmMovable, ShmSafe, TypeLayout};
use crate::{Error, Result, Store};

/// A growable array of `T` in a store, allocated from its arena.
///
/// Like a `Vec<T>`, but its buffer lives in the store's segment and it
/// holds an offset, not a pointer, so every process that maps the store
/// sees the same elements. See the [module docs](crate::containers) for how
/// it finds its store, what its operations check, and what a crash costs.
///
/// ```
/// use shmstore::{ShmMutex, ShmVec, Store};
///
/// # fn main() -> shmstore::Result<()> {
/// # let name = format!("doc-vec-{}", std::process::id());
/// let store = Store::open_or_create(&name, 1 << 20)?;
/// let log = store.get_or_insert_with("log", || ShmMutex::new(ShmVec::<u64>::new()))?;
/// let mut log = log.lock()?;
/// for i in 0..100 {
///     log.push(i)?; // allocates from the store when it must grow
/// }
/// assert_eq!(log.as_slice()?.iter().sum::<u64>(), 4950);
/// assert_eq!(log.pop()?, Some(99));
/// assert_eq!(log.len()?, 99);
/// # drop(log);
/// # Store::unlink(&name)?;
/// # Ok(())
/// # }
/// ```
///
/// # Crash safety
///
/// The length lives in the buffer's header. `push`, `pop`, `truncate` and
/// `clear` publish their effect with one word (an element is written before
/// the length that covers it; the length is lowered before an element is
/// dropped). Growth, `insert`, `remove` and `swap_remove` build a new buffer
/// — elements and length — and switch to it with one word before freeing
/// the old one. So a process killed at any instruction leaves the vector as
/// it was before or after the operation, plus at most an unreachable block,
/// which [`Store::collect`](crate::Store::collect) reclaims.
///
/// # Layout
///
/// `#[repr(C)]`, 24 bytes, align 8; its layout is [`LayoutKind::Opaque`]
/// named `ShmVec` with `T`'s layout as its parameter:
///
/// | offset | field   | meaning                                              |
/// |-------:|---------|------------------------------------------------------|
/// | 0      | `store` | id of the store it allocates from (0: not bound yet) |
/// | 8      | `token` | its token, also in its buffer's header (0: none yet) |
/// | 16     | `buf`   | offset of its buffer, a nested block (0: none)       |
#[repr(C)]
pub struct ShmVec<T: ShmSafe> {
    raw: RawBuf,
    _elems: PhantomData<T>,
}

const WHAT: &str = "ShmVec";

impl<T: ShmSafe> Default for ShmVec<T> {
    fn default() -> Self {
        ShmVec::new()
    }
}

impl<T: ShmSafe> ShmVec<T> {
    /// An empty vector bound to no store: it binds to the store it lives
    /// in when it first allocates there (a push through a guard).
    pub const fn new() -> Self {
        ShmVec {
            raw: RawBuf::new(),
            _elems: PhantomData,
        }
    }

    /// An empty vector that allocates from `store`, for building a value
    /// outside the store before inserting it.
    pub fn new_in(store: &Store) -> Self {
        ShmVec {
            raw: RawBuf::bound(Ctx::for_store(store).store_id),
            _elems: PhantomData,
        }
    }

    /// An empty vector bound to the store with id `store_id`.
    pub(crate) fn bound(store_id: u64) -> Self {
        ShmVec {
            raw: RawBuf::bound(store_id),
            _elems: PhantomData,
        }
    }

    fn ctx(&self) -> Result<Ctx<'_>> {
        self.raw.ctx(self, WHAT)
    }

    /// Number of elements.
    pub fn len(&self) -> Result<usize> {
        if self.raw.is_unallocated() {
            return Ok(0);
        }
        let ctx = self.ctx()?;
        Ok(self.raw.buffer::<T>(&ctx)?.map_or(0, |b| b.n.len as usize))
    }

    /// `true` if there are no elements.
    pub fn is_empty(&self) -> Result<bool> {
        self.len().map(|n| n == 0)
    }

    /// Elements the buffer holds without growing.
    pub fn capacity(&self) -> Result<usize> {
        if self.raw.is_unallocated() {
            return Ok(0);
        }
        let ctx = self.ctx()?;
        Ok(self.raw.buffer::<T>(&ctx)?.map_or(0, |b| b.n.cap as usize))
    }

    /// The elements, without copying.
    pub fn as_slice(&self) -> Result<Ref<'_, [T]>> {
        if self.raw.is_unallocated() {
            return Ok(Ref::new(&[], None));
        }
        let ctx = self.ctx()?;
        let (p, len, _) = self.raw.elements::<T>(&ctx)?;
        // SAFETY: `elements` checked `len` elements of `T` at `p`: inside
        // the store's mapping, aligned, in this container's own buffer
        // (token), covered by its length, with valid bytes. No one frees or
        // writes them while `&self` lives: mutation needs `&mut self` (a
        // guard, on which other processes wait too), and a buffer outside
        // the store is marked as held by this process. The mapping outlives
        // the returned `Ref` (the caller's borrow, or the store it keeps).
        let slice = unsafe { core::slice::from_raw_parts(p, len) };
        Ok(Ref::new(slice, ctx.keep()))
    }

    /// Element `i`, or `None` past the end.
    pub fn get(&self, i: usize) -> Result<Option<Ref<'_, T>>> {
        Ok(self.as_slice()?.map_opt(|s| s.get(i)))
    }

    /// The first element.
    pub fn first(&self) -> Result<Option<Ref<'_, T>>> {
        Ok(self.as_slice()?.map_opt(|s| s.first()))
    }

    /// The last element.
    pub fn last(&self) -> Result<Option<Ref<'_, T>>> {
        Ok(self.as_slice()?.map_opt(|s| s.last()))
    }

    /// Copies the elements out into a `Vec`.
    pub fn to_vec(&self) -> Result<Vec<T>>
    where
        T: Copy,
    {
        Ok(self.as_slice()?.to_vec())
    }
}

impl<T: ShmMovable> ShmVec<T> {
    /// An empty vector with room for `cap` elements in `store`.
    pub fn with_capacity_in(store: &Store, cap: usize) -> Result<Self> {
        let mut v = ShmVec::new_in(store);
        v.reserve(cap)?;
        Ok(v)
    }

    /// A vector of `items`' values, allocated in `store`.
    pub fn from_iter_in(store: &Store, items: impl IntoIterator<Item = T>) -> Result<Self> {
        let mut v = ShmVec::new_in(store);
        v.extend(items)?;
        Ok(v)
    }

    /// A vector of copies of `items`, allocated in `store`.
    pub fn from_slice_in(store: &Store, items: &[T]) -> Result<Self>
    where
        T: Copy,
    {
        ShmVec::from_iter_in(store, items.iter().copied())
    }

    /// Moves the elements into a new buffer of `cap`, with `edit` applied,
    /// published with one word (see [`RawBuf::rebuild`]).
    fn rebuild(&self, ctx: &Ctx<'_>, cap: u64, edit: Edit) -> Result<Buf> {
        // SAFETY: the closure writes only `[0, new_len)` of the new buffer
        // (new_len <= cap is checked by the callers' capacity choice), each
        // element a bitwise move of an old one (T is movable), and reads
        // only `[0, old_len)` of the old one. Elements it does not move are
        // the caller's (`Edit::Remove` hands the removed one back).
        unsafe {
            self.raw.rebuild::<T>(ctx, cap, |old, new| {
                let (old, old_len) = old_parts(old);
                let new_len = match edit {
                    Edit::Keep => {
                        core::ptr::copy_nonoverlapping(old, new, old_len);
                        old_len
                    }
                    Edit::Remove { at, swap } => {
                        core::ptr::copy_nonoverlapping(old, new, at);
                        if swap && at + 1 < old_len {
                            core::ptr::copy_nonoverlapping(old.add(old_len - 1), new.add(at), 1);
                            core::ptr::copy_nonoverlapping(
                                old.add(at + 1),
                                new.add(at + 1),
                                old_len - at - 2,
                            );
                        } else {
                            core::ptr::copy_nonoverlapping(
                                old.add(at + 1),
                                new.add(at),
                                old_len - at - 1,
                            );
                        }
                        old_len - 1
                    }
                };
                Ok(new_len as u64)
            })
        }
    }

    /// Room for at least `additional` more elements.
    pub fn reserve(&mut self, additional: usize) -> Result<()> {
        let ctx = self.ctx()?;
        let b = self.raw.buffer::<T>(&ctx)?;
        let (len, cap) = b.map_or((0, 0), |b| (b.n.len, b.n.cap));
        let need = len
            .checked_add(additional as u64)
            .ok_or_else(|| Error::InvalidArgument {
                reason: format!("capacity overflow: {len} + {additional}"),
            })?;
        if need > cap {
            self.rebuild(&ctx, grown(cap, need), Edit::Keep)?;
        }
        Ok(())
    }

    /// Appends `value`, growing the buffer if needed. [`Error::OutOfMemory`]
    /// if the store has no room (the value is then dropped).
    pub fn push(&mut self, value: T) -> Result<()> {
        let ctx = self.ctx()?;
        let b = match self.raw.buffer::<T>(&ctx)? {
            Some(b) if b.n.len < b.n.cap => b,
            other => {
                let (len, cap) = other.map_or((0, 0), |b| (b.n.len, b.n.cap));
                self.rebuild(&ctx, grown(cap, len + 1), Edit::Keep)?
            }
        };
        let len = b.n.len;
        let p = b.n.ptr.cast::<T>();
        // SAFETY: slot `len` is inside the checked buffer (len < cap) and
        // not covered by the length, so no one reads it and writing it
        // disturbs no element.
        unsafe { p.add(len as usize).write(value) };
        crate::crash::step();
        // The element is written: publish it.
        self.raw.set_len(&b, len + 1)?;
        crate::crash::step();
        Ok(())
    }

    /// Appends every value of `items`, all at once: they are collected
    /// first, written after the last element, then published together by
    /// one length word (so a crash appends all of them or none).
    pub fn extend(&mut self, items: impl IntoIterator<Item = T>) -> Result<()> {
        let items: Vec<T> = items.into_iter().collect();
        if items.is_empty() {
            return Ok(());
        }
        self.reserve(items.len())?;
        let ctx = self.ctx()?;
        let b = self
            .raw
            .buffer::<T>(&ctx)?
            .ok_or_else(|| Error::corrupted("ShmVec: no buffer after reserving"))?;
        let len = b.n.len;
        let n = items.len() as u64;
        if len.checked_add(n).is_none_or(|end| end > b.n.cap) {
            return Err(Error::corrupted("ShmVec: reserved room is missing"));
        }
        let p = b.n.ptr.cast::<T>();
        let mut items = core::mem::ManuallyDrop::new(items);
        // SAFETY: slots `[len, len + n)` lie inside the checked buffer
        // (checked just above) and are not covered by the length, so no one
        // reads them; the values are moved in bitwise from the `Vec`, whose
        // own copies are then forgotten (its length set to 0) — the buffer
        // owns them once the length below covers them.
        unsafe {
            core::ptr::copy_nonoverlapping(items.as_ptr(), p.add(len as usize), items.len());
            items.set_len(0);
            core::mem::ManuallyDrop::drop(&mut items);
        }
        crate::crash::step();
        self.raw.set_len(&b, len + n)?;
        crate::crash::step();
        Ok(())
    }

    /// Appends copies of `items`.
    pub fn extend_from_slice(&mut self, items: &[T]) -> Result<()>
    where
        T: Copy,
    {
        self.extend(items.iter().copied())
    }

    /// Removes and returns the last element.
    pub fn pop(&mut self) -> Result<Option<T>> {
        if self.raw.is_unallocated() {
            return Ok(None);
        }
        let ctx = self.ctx()?;
        let (p, len, b) = self.raw.elements::<T>(&ctx)?;
        let Some(b) = b.filter(|_| len > 0) else {
            return Ok(None);
        };
        let size = core::mem::size_of::<T>() as u64;
        own::claim::<T>(&ctx, b.n.elems + (len as u64 - 1) * size, 1)?;
        // SAFETY: element `len - 1` was checked by `elements`; it is read
        // (a bitwise copy) before the length drops, so a crash in between
        // leaves it in the vector, and after the length drops the copy is
        // its only owner.
        let value = unsafe { p.add(len - 1).read() };
        self.raw.set_len(&b, len as u64 - 1)?;
        crate::crash::step();
        // SAFETY: the slot is past the length (no one reads it) and inside
        // the checked buffer; zeroing it leaves no second copy of the
        // element's container words behind.
        unsafe { zero(p.add(len - 1), 1) };
        Ok(Some(value))
    }

    /// Keeps the first `n` elements and drops the rest (last first, each
    /// once the length no longer covers it).
    pub fn truncate(&mut self, n: usize) -> Result<()> {
        if self.raw.is_unallocated() {
            return Ok(());
        }
        let ctx = self.ctx()?;
        let (p, len, b) = self.raw.elements::<T>(&ctx)?;
        let Some(b) = b.filter(|_| n < len) else {
            return Ok(());
        };
        let size = core::mem::size_of::<T>() as u64;
        let (at, count) = (b.n.elems + n as u64 * size, (len - n) as u64);
        own::claim::<T>(&ctx, at, count)?;
        self.raw.set_len(&b, n as u64)?;
        crate::crash::step();
        // What the dropped elements own, freed by walking them (no
        // recursive drops: an element's only drop glue is its containers').
        own::free_values::<T>(&ctx, at, count);
        // SAFETY: elements `[n, len)` are past the length now, inside the
        // checked buffer: zeroed, they leave no copies of container words.
        unsafe { zero(p.add(n), len - n) };
        Ok(())
    }

    /// Drops every element (the buffer is kept for reuse).
    pub fn clear(&mut self) -> Result<()> {
        self.truncate(0)
    }

    /// The elements, mutably.
    pub fn as_mut_slice(&mut self) -> Result<RefMut<'_, [T]>> {
        if self.raw.is_unallocated() {
            return Ok(RefMut::new(&mut [], None));
        }
        let ctx = self.ctx()?;
        let (p, len, _) = self.raw.elements::<T>(&ctx)?;
        let keep = ctx.keep();
        // SAFETY: as in `as_slice`; `&mut self` makes the access exclusive
        // in this process, and other processes reach the vector only through
        // the same lock. `T` is movable, so whatever safe code writes
        // through the `&mut [T]` is fine in place.
        let slice = unsafe { core::slice::from_raw_parts_mut(p, len) };
        Ok(RefMut::new(slice, keep))
    }

    /// Element `i`, mutably.
    pub fn get_mut(&mut self, i: usize) -> Result<Option<RefMut<'_, T>>> {
        Ok(self.as_mut_slice()?.map_opt(|s| s.get_mut(i)))
    }

    /// The last element, mutably.
    pub fn last_mut(&mut self) -> Result<Option<RefMut<'_, T>>> {
        Ok(self.as_mut_slice()?.map_opt(|s| s.last_mut()))
    }

    /// Inserts `value` at `index`, shifting the rest up (into a new buffer,
    /// switched in with one word: see [Crash safety](ShmVec#crash-safety)).
    pub fn insert(&mut self, index: usize, value: T) -> Result<()> {
        let ctx = self.ctx()?;
        let b = self.raw.buffer::<T>(&ctx)?;
        let (len, cap) = b.map_or((0, 0), |b| (b.n.len, b.n.cap));
        if index as u64 > len {
            return Err(Error::InvalidArgument {
                reason: format!("insertion index {index} is past the length {len}"),
            });
        }
        // Write the value into the gap before the new buffer is published:
        // build it by hand (the gap is filled inside the rebuild).
        let cap = if len < cap { cap } else { grown(cap, len + 1) };
        let mut value = Some(value);
        // SAFETY: writes `[0, old_len + 1)` of the new buffer (cap > len):
        // the old elements moved bitwise around the new one, which is moved
        // in from `value`; reads only `[0, old_len)`.
        unsafe {
            self.raw.rebuild::<T>(&ctx, cap, |old, new| {
                let (old, old_len) = old_parts(old);
                let at = index.min(old_len);
                core::ptr::copy_nonoverlapping(old, new, at);
                core::ptr::copy_nonoverlapping(old.add(at), new.add(at + 1), old_len - at);
                if let Some(v) = value.take() {
                    new.add(at).write(v);
                }
                Ok(old_len as u64 + 1)
            })?;
        }
        Ok(())
    }

    /// Removes and returns element `index`, shifting the rest down (into a
    /// new buffer, switched in with one word).
    pub fn remove(&mut self, index: usize) -> Result<T> {
        self.take_at(index, false)
    }

    /// Removes and returns element `index`, moving the last element into
    /// its place (into a new buffer, switched in with one word).
    pub fn swap_remove(&mut self, index: usize) -> Result<T> {
        self.take_at(index, true)
    }

    fn take_at(&mut self, index: usize, swap: bool) -> Result<T> {
        let ctx = self.ctx()?;
        let (p, len, b) = self.raw.elements::<T>(&ctx)?;
        let Some(b) = b.filter(|_| index < len) else {
            return Err(Error::InvalidArgument {
                reason: format!("index {index} is past the length {len}"),
            });
        };
        let size = core::mem::size_of::<T>() as u64;
        own::claim::<T>(&ctx, b.n.elems + index as u64 * size, 1)?;
        // SAFETY: element `index < len` was checked by `elements`. The copy
        // becomes the only owner once the new buffer, without it, is
        // switched in (if that fails, the copy is forgotten below and the
        // vector still owns the element).
        let value = core::mem::ManuallyDrop::new(unsafe { p.add(index).read() });
        self.rebuild(&ctx, b.n.cap, Edit::Remove { at: index, swap })?;
        Ok(core::mem::ManuallyDrop::into_inner(value))
    }
}

/// How [`ShmVec::rebuild`] lays the old elements into the new buffer.
#[derive(Clone, Copy)]
enum Edit {
    /// All of them, in order.
    Keep,
    /// All but `at`; with `swap`, the last one takes its place.
    Remove { at: usize, swap: bool },
}

/// The old buffer's elements in use: pointer and count (none: a dangling
/// pointer and 0).
fn old_parts<T>(old: Option<(*mut T, crate::arena::nested::Nested)>) -> (*mut T, usize) {
    old.map_or((core::ptr::NonNull::dangling().as_ptr(), 0), |(p, n)| {
        (p, n.len as usize)
    })
}

/// Zeroes `count` elements at `p` (vacated slots: all-zero bytes are a
/// null container, so no stale copy of an element's container words stays
/// behind to be mistaken for a live one).
///
/// # Safety
///
/// `p` is valid for writes of `count` elements of `T`, none of which is
/// read as a `T` again.
pub(super) unsafe fn zero<T>(p: *mut T, count: usize) {
    // SAFETY: the caller's contract.
    unsafe { core::ptr::write_bytes(p, 0, count) };
}

/// The capacity to grow to for `need` elements from `cap`.
fn grown(cap: u64, need: u64) -> u64 {
    cap.saturating_mul(2).max(need).max(4)
}

impl<T: ShmSafe> Drop for ShmVec<T> {
    /// Drops the elements and frees the buffer, in the store the vector
    /// belongs to. Errors cannot be reported from here: a buffer that cannot
    /// be freed now (its store is not open in this process) is left to
    /// [`Store::collect`](crate::Store::collect).
    fn drop(&mut self) {
        self.raw.release::<T, Self>(self, WHAT);
    }
}

impl<T: ShmSafe + fmt::Debug> fmt::Debug for ShmVec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_slice() {
            Ok(s) => f.debug_list().entries(s.iter()).finish(),
            Err(e) => write!(f, "ShmVec(<{e}>)"),
        }
    }
}

// SAFETY:
// - no absolute addresses: three words (a store id, a token, an offset into
//   the store);
// - `repr(C)`, 24 bytes, align 8, described by LAYOUT (an opaque layout
//   whose parameter is `T`'s, so `ShmVec<A>` and `ShmVec<B>` differ);
// - its `Drop` frees only its own buffer (checked by token) in its own
//   store, and drops only its own elements;
// - every bit pattern is a valid value (three integers), and every offset
//   is checked before use;
// - mutation through `&Self` is by atomics only; `Send + Sync` follow
//   from `T`'s;
// - nothing is initialised in place; its alignment is 8.
unsafe impl<T: ShmSafe> ShmSafe for ShmVec<T> {
    const LAYOUT: &'static TypeLayout = &TypeLayout {
        name: "ShmVec",
        size: core::mem::size_of::<Self>(),
        align: core::mem::align_of::<Self>(),
        kind: LayoutKind::Container {
            params: &[LazyLayout::of::<T>()],
        },
    };
}

// SAFETY: moving the vector moves three words; its elements stay where they
// are, in its buffer.
unsafe impl<T: ShmSafe> ShmMovable for ShmVec<T> {}
