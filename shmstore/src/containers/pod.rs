//! [`Pod<T>`]: the bridge for plain-old-data types of other crates.

use core::any::TypeId;
use std::collections::HashMap;

use parking_lot::Mutex;

use crate::layout::{LayoutKind, LazyLayout, ShmMovable, ShmSafe, TypeLayout};

/// A [`bytemuck::Pod`] value stored as is: the bridge for plain-old-data
/// types that cannot derive `ShmSafe` (a `glam::Vec3`, a C struct from a
/// `-sys` crate).
///
/// Every bit pattern of a `Pod` type is a valid value and it holds no
/// pointers, so it may live in a store; `Pod<T>` records it with the name
/// `core::any::type_name::<T>()` (plus its size and alignment) in its
/// layout, so that a `Pod<A>` is not read as a `Pod<B>`.
///
/// ```
/// use shmstore::{Pod, Store};
///
/// #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
/// #[repr(C)]
/// struct Vec3 { x: f32, y: f32, z: f32 }
///
/// # fn main() -> shmstore::Result<()> {
/// # let name = format!("doc-pod-{}", std::process::id());
/// # let store = Store::create(&name, 1 << 20)?;
/// store.insert("position", Pod(Vec3 { x: 1.0, y: 2.0, z: 3.0 }))?;
/// let p = store.get::<Pod<Vec3>>("position")?;
/// assert_eq!(p.0.y, 2.0);
/// assert_eq!(p.as_bytes().len(), 12); // a byte view, no transmute
/// # drop(p);
/// # Store::unlink(&name)?;
/// # Ok(())
/// # }
/// ```
///
/// The name comes from `type_name`, which the standard library does not
/// promise to keep the same across compiler versions: programs built by
/// different compilers may see each other's `Pod<T>` as another type (an
/// [`Error::TypeMismatch`](crate::Error::TypeMismatch), never a
/// misreading). For a name of your own, wrap the type in a
/// `#[repr(transparent)]` struct of yours with `#[derive(ShmSafe)]` over
/// `Pod<T>`.
///
/// # Layout
///
/// `#[repr(transparent)]` over `T`.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Pod<T>(pub T);

impl<T: bytemuck::Pod> Pod<T> {
    /// The value's bytes, without copying.
    pub fn as_bytes(&self) -> &[u8] {
        bytemuck::bytes_of(&self.0)
    }
}

impl<T> core::ops::Deref for Pod<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> core::ops::DerefMut for Pod<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

/// The layout `Pod<T>` records for `T`: its type name, size and
/// alignment, made once per type and kept for the life of the process.
fn pod_param<T: 'static>() -> &'static TypeLayout {
    static MADE: Mutex<Option<HashMap<TypeId, &'static TypeLayout>>> = Mutex::new(None);
    let mut made = MADE.lock();
    made.get_or_insert_with(HashMap::new)
        .entry(TypeId::of::<T>())
        .or_insert_with(|| {
            Box::leak(Box::new(TypeLayout {
                name: core::any::type_name::<T>(),
                size: core::mem::size_of::<T>(),
                align: core::mem::align_of::<T>(),
                kind: LayoutKind::Primitive,
            }))
        })
}

fn pod_type_id<T: 'static>() -> TypeId {
    TypeId::of::<T>()
}

// SAFETY:
// - `T: bytemuck::Pod`: no pointers, no drop glue (it is `Copy`), every
//   bit pattern a valid value (so `check_bytes` has nothing to refuse);
// - `repr(transparent)`: exactly `T`'s layout, which LAYOUT records (size,
//   align, and `T` by name through a lazy parameter);
// - no interior mutability (`Pod` types have none) and `Send + Sync` by
//   bound; nothing initialised in place; alignment above a page is refused
//   by the store at run time.
unsafe impl<T: bytemuck::Pod + Send + Sync> ShmSafe for Pod<T> {
    const LAYOUT: &'static TypeLayout = &TypeLayout {
        name: "Pod",
        size: core::mem::size_of::<T>(),
        align: core::mem::align_of::<T>(),
        kind: LayoutKind::Container {
            params: &[LazyLayout {
                size: core::mem::size_of::<T>(),
                align: core::mem::align_of::<T>(),
                layout: pod_param::<T>,
                type_id: pod_type_id::<T>,
            }],
        },
    };
}

// SAFETY: plain data: moving it is copying it.
unsafe impl<T: bytemuck::Pod + Send + Sync> ShmMovable for Pod<T> {}
