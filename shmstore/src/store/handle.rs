//! [`Handle`] and [`SliceHandle`]: zero-copy, pinned views of objects.

use super::pins::Pin;
use super::*;

/// A zero-copy handle to one object in a store: derefs to `&T`.
///
/// It pins the object: after [`Store::remove`], the memory is not reused
/// until every handle to it is dropped. It keeps the mapping alive, so it
/// may outlive the `Store` it came from.
pub struct Handle<T: ShmSafe> {
    pub(super) pin: Pin,
    pub(super) ptr: NonNull<T>,
}

impl<T: ShmSafe> Deref for Handle<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: `ptr` was bounds-, alignment- and bit-pattern-checked when
        // the handle was made; the record is pinned (its memory is never
        // freed or reused while pinned) and the mapping is kept alive by
        // `pin`. All mutation by any process goes through T's interior
        // mutability (ShmSafe contract), so a shared reference is sound.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T: ShmSafe + bytemuck::NoUninit> Handle<T> {
    /// The value's bytes, without copying (for a type without padding or
    /// uninitialised bytes: `bytemuck::NoUninit`).
    pub fn as_bytes(&self) -> &[u8] {
        bytemuck::bytes_of(&**self)
    }
}

impl<T: ShmSafe + bytemuck::NoUninit> SliceHandle<T> {
    /// The elements' bytes, without copying.
    pub fn as_bytes(&self) -> &[u8] {
        bytemuck::cast_slice(&self[..])
    }
}

impl<T: ShmSafe> Clone for Handle<T> {
    fn clone(&self) -> Self {
        Handle {
            pin: self.pin.clone(),
            ptr: self.ptr,
        }
    }
}

impl<T: ShmSafe + fmt::Debug> fmt::Debug for Handle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

// SAFETY: a handle only gives out `&T`; sending it to another thread is
// sending a `&T`, which is sound when `T: Sync`. The pin part is Send.
unsafe impl<T: ShmSafe + Sync> Send for Handle<T> {}
// SAFETY: as above: sharing the handle shares `&T`.
unsafe impl<T: ShmSafe + Sync> Sync for Handle<T> {}

/// A zero-copy handle to a slice in a store: derefs to `&[T]`.
///
/// Pins the slice like [`Handle`] does.
pub struct SliceHandle<T: ShmSafe> {
    pub(super) pin: Pin,
    pub(super) ptr: NonNull<T>,
    pub(super) len: usize,
}

impl<T: ShmSafe> Deref for SliceHandle<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `len` elements at `ptr` were bounds-, alignment- and
        // bit-pattern-checked when the handle was made; the record is pinned
        // and the mapping alive (see `Handle::deref`).
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: ShmSafe> Clone for SliceHandle<T> {
    fn clone(&self) -> Self {
        SliceHandle {
            pin: self.pin.clone(),
            ptr: self.ptr,
            len: self.len,
        }
    }
}

impl<T: ShmSafe + fmt::Debug> fmt::Debug for SliceHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

// SAFETY: as for Handle: only `&[T]` is given out.
unsafe impl<T: ShmSafe + Sync> Send for SliceHandle<T> {}
// SAFETY: as for Handle.
unsafe impl<T: ShmSafe + Sync> Sync for SliceHandle<T> {}
