//! [`RelPtr<T>`]: an owning, nullable, position-independent pointer.

use core::fmt;
use core::marker::PhantomData;

use super::ctx::Ctx;
use super::own;
use super::raw::RawBuf;
use super::{Ref, RefMut};
use crate::layout::{LayoutKind, LazyLayout, ShmMovable, ShmSafe, TypeLayout};
use crate::{Result, Store};

/// An owning, nullable pointer to one `T` in the same store — the store's
/// `Box<T>`.
///
/// It holds the target's offset from the start of the segment, so it is
/// valid at any mapping address, in every process, and it stays valid when
/// the value holding it is moved inside the segment (a vector growing, a
/// value replaced); it means nothing outside its store ("same segment
/// only"). Every dereference checks that the offset is an allocated block
/// of its store, inside the mapping and committed, aligned, holding a `T`
/// (by fingerprint) and owned by this pointer (by token); a pointer whose
/// target was freed or replaced gets an error, never other memory.
///
/// Segment-relative rather than self-relative: the containers that hold
/// `RelPtr`s move their elements bitwise when they grow, which would break
/// an offset from the pointer's own address; an offset from the segment's
/// start survives any move inside the segment.
///
/// Like a `Box`, it owns its target: dropping or replacing the pointer
/// frees it, and removing the object that holds it frees it too. To refer
/// to a *named* object, store its name instead.
///
/// ```
/// use shmstore::{RelPtr, ShmSafe, Store};
///
/// #[derive(ShmSafe)]
/// #[repr(C)]
/// struct Node {
///     value: u64,
///     next: RelPtr<Node>,
/// }
///
/// # fn main() -> shmstore::Result<()> {
/// # let name = format!("doc-rel-{}", std::process::id());
/// let store = Store::open_or_create(&name, 1 << 20)?;
/// let tail = RelPtr::new_in(&store, Node { value: 2, next: RelPtr::null() })?;
/// store.insert("list", Node { value: 1, next: tail })?;
/// let head = store.get::<Node>("list")?;
/// let second = head.next.get()?.expect("not null");
/// assert_eq!(second.value, 2);
/// assert!(second.next.is_null());
/// # drop(second);
/// # drop(head);
/// # Store::unlink(&name)?;
/// # Ok(())
/// # }
/// ```
///
/// # Layout
///
/// As a [`ShmVec`](crate::ShmVec) (24 bytes, align 8: store id, token,
/// offset of a nested block holding at most one `T`), named `RelPtr`, with
/// `T`'s layout as its parameter.
#[repr(C)]
pub struct RelPtr<T: ShmSafe> {
    raw: RawBuf,
    _to: PhantomData<T>,
}

const WHAT: &str = "RelPtr";

impl<T: ShmSafe> Default for RelPtr<T> {
    fn default() -> Self {
        RelPtr::null()
    }
}

impl<T: ShmSafe> RelPtr<T> {
    /// The null pointer.
    pub const fn null() -> Self {
        RelPtr {
            raw: RawBuf::new(),
            _to: PhantomData,
        }
    }

    /// A pointer to `value`, allocated in `store`.
    pub fn new_in(store: &Store, value: T) -> Result<Self> {
        let p = RelPtr {
            raw: RawBuf::bound(Ctx::for_store(store).store_id),
            _to: PhantomData,
        };
        p.put(value)?;
        Ok(p)
    }

    /// `true` for the null pointer.
    pub fn is_null(&self) -> bool {
        self.raw.is_unallocated()
    }

    fn ctx(&self) -> Result<Ctx<'_>> {
        self.raw.ctx(self, WHAT)
    }

    /// The target, checked; `None` for the null pointer.
    pub fn get(&self) -> Result<Option<Ref<'_, T>>> {
        if self.is_null() {
            return Ok(None);
        }
        let ctx = self.ctx()?;
        let (p, len, _) = self.raw.elements::<T>(&ctx)?;
        if len == 0 {
            return Ok(None);
        }
        // SAFETY: `elements` checked one `T` at `p`, in this pointer's own
        // block of its store, with valid bytes; it is freed or written only
        // through `&mut self`, and the mapping outlives the `Ref` (see
        // `ShmVec::as_slice`).
        Ok(Some(Ref::new(unsafe { &*p }, ctx.keep())))
    }

    /// Writes `value` into a new block and switches to it (the old target,
    /// if any, is handed back to the caller as a bitwise copy).
    fn put(&self, value: T) -> Result<Option<core::mem::ManuallyDrop<T>>> {
        let ctx = self.ctx()?;
        let old = match self.raw.elements::<T>(&ctx)? {
            (p, 1, Some(b)) => {
                // What the old target owns leaves the store's reach with it.
                own::claim::<T>(&ctx, b.n.elems, 1)?;
                // SAFETY: element 0 was checked by `elements`; the copy is
                // held unowned until the new block is switched in.
                Some(core::mem::ManuallyDrop::new(unsafe { p.read() }))
            }
            _ => None,
        };
        let mut value = Some(value);
        // SAFETY: writes element 0 of the new one-element block, moved in
        // from `value` and initialised in place if it must be (the block is
        // not published yet, so no one else can reach it), and moves nothing
        // from the old block (its element is handed back).
        unsafe {
            self.raw.rebuild::<T>(&ctx, 1, |_, new| {
                let Some(v) = value.take() else {
                    return Ok(0);
                };
                new.write(v);
                if T::IMMOVABLE {
                    T::init_in_place(new)?;
                }
                Ok(1)
            })?;
        }
        Ok(old)
    }
}

impl<T: ShmMovable> RelPtr<T> {
    /// The target, mutably; `None` for the null pointer.
    pub fn get_mut(&mut self) -> Result<Option<RefMut<'_, T>>> {
        if self.is_null() {
            return Ok(None);
        }
        let ctx = self.ctx()?;
        let (p, len, _) = self.raw.elements::<T>(&ctx)?;
        if len == 0 {
            return Ok(None);
        }
        let keep = ctx.keep();
        // SAFETY: as in `get`, exclusively (`&mut self`); `T` is movable.
        Ok(Some(RefMut::new(unsafe { &mut *p }, keep)))
    }

    /// Points at `value` (allocated in the store this pointer lives in or
    /// belongs to) and drops the old target.
    pub fn set(&mut self, value: T) -> Result<()> {
        if let Some(old) = self.put(value)? {
            drop(core::mem::ManuallyDrop::into_inner(old));
        }
        Ok(())
    }

    /// Takes the target out, leaving the pointer null.
    pub fn take(&mut self) -> Result<Option<T>> {
        if self.is_null() {
            return Ok(None);
        }
        let ctx = self.ctx()?;
        let (p, len, b) = self.raw.elements::<T>(&ctx)?;
        let Some(b) = b.filter(|_| len == 1) else {
            return Ok(None);
        };
        own::claim::<T>(&ctx, b.n.elems, 1)?;
        // SAFETY: element 0 was checked; it is read before the length drops
        // (a crash in between leaves it in the block), then the copy owns it.
        let value = unsafe { p.read() };
        self.raw.set_len(&b, 0)?;
        crate::crash::step();
        // SAFETY: the slot is past the length now, in the checked block.
        unsafe { super::vec::zero(p, 1) };
        Ok(Some(value))
    }
}

impl<T: ShmSafe> Drop for RelPtr<T> {
    /// Drops the target and frees its block (see [`ShmVec`](crate::ShmVec)'s
    /// `Drop`).
    fn drop(&mut self) {
        self.raw.release::<T, Self>(self, WHAT);
    }
}

impl<T: ShmSafe + fmt::Debug> fmt::Debug for RelPtr<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.get() {
            Ok(Some(v)) => f.debug_tuple("RelPtr").field(&*v).finish(),
            Ok(None) => f.write_str("RelPtr(null)"),
            Err(e) => write!(f, "RelPtr(<{e}>)"),
        }
    }
}

// SAFETY: as for `ShmVec` (three words, offsets checked at every use, a
// `Drop` that frees only its own block in its own store, atomics for
// mutation through `&Self`); its layout names `T`, so a `RelPtr<A>` is
// never read as a `RelPtr<B>`, and the block's fingerprint is checked at
// every dereference.
unsafe impl<T: ShmSafe> ShmSafe for RelPtr<T> {
    const LAYOUT: &'static TypeLayout = &TypeLayout {
        name: "RelPtr",
        size: core::mem::size_of::<Self>(),
        align: core::mem::align_of::<Self>(),
        kind: LayoutKind::Container {
            params: &[LazyLayout::of::<T>()],
        },
    };
}

// SAFETY: moving the pointer moves three words; the target stays in its
// block (even an immovable target: it never moves with the pointer).
unsafe impl<T: ShmSafe> ShmMovable for RelPtr<T> {}
