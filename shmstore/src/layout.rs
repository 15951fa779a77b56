//! What may live in shared memory: the [`ShmSafe`] trait, the compile-time
//! [`TypeLayout`] of a type, and its stable 64-bit fingerprint.
//!
//! A process that opens a store must be sure that the bytes it finds mean what
//! its own type says they mean. Every `ShmSafe` type therefore carries a
//! [`TypeLayout`]: its name, size, alignment and, for structs, every field's
//! name, offset and layout. The layout is hashed into a fingerprint by a
//! `const fn`, so two separately compiled binaries with the same definition
//! agree on it, and any change to field order, field types or repr changes it.
//!
//! ```
//! use shmstore::{ShmSafe, TypeLayout};
//!
//! #[derive(ShmSafe)]
//! #[repr(C)]
//! struct Point {
//!     x: f64,
//!     y: f64,
//! }
//!
//! let layout: &TypeLayout = Point::LAYOUT;
//! assert_eq!(layout.name, "Point");
//! assert_eq!(layout.size, 16);
//! assert_eq!(Point::FINGERPRINT, layout.fingerprint());
//! println!("{layout}");
//! ```
//!
//! A process that does not have the Rust type sees a layout as a
//! [`LayoutDesc`]: the same description, owned. A store's type registry
//! keeps every stored type's layout in the binary form of
//! [`encode_layout`], so that any process can read it back with
//! [`decode_layout`] (see [`Store::registered_layout`](crate::Store::registered_layout))
//! and walk a value by it.
//!
//! # Format
//!
//! An encoded layout is a version byte, then the root layout as a tree of
//! nodes in depth-first order. Every item appears in the order in which
//! the fingerprint hashes it, so a decoded layout's fingerprint is that of
//! the layout it was encoded from. Version 1 ([`LAYOUT_FORMAT_VERSION`]):
//!
//! | item | encoding |
//! |------|----------|
//! | layout | the version byte `1`, then the root node; nothing may follow |
//! | node | name, size (`uvar`), alignment (`uvar`), kind tag (one byte), then the kind's body |
//! | kind 1: primitive | nothing |
//! | kind 2: `#[repr(C)]` struct, kind 3: `#[repr(transparent)]` struct | field count (`uvar`), then for each field: name, offset (`uvar`), node |
//! | kind 4: enum | the integer repr's node, variant count (`uvar`), then for each variant: name, discriminant (`ivar`) |
//! | kind 5: array | length (`uvar`), then the element's node |
//! | kind 6: opaque | parameter count (`uvar`), then each type parameter's node |
//! | name | byte length (`uvar`), then that many bytes of UTF-8 |
//! | `uvar` | a `u64` in unsigned LEB128: 7 bits a byte, least significant first, the high bit set on every byte but the last; at most 10 bytes, in the shortest form |
//! | `ivar` | an `i128` zigzag-mapped to a `u128` (0, -1, 1, -2, … become 0, 1, 2, 3, …), then LEB128 as for `uvar`: at most 19 bytes, in the shortest form |
//!
//! Nothing in it depends on the machine (byte order, pointer width). Every
//! layout has exactly one encoding: [`decode_layout`] refuses integers that
//! are not in their shortest form and bytes after the root, so bytes that
//! decode re-encode to themselves.
//!
//! For example `[u16; 2]` (a [`LayoutKind::Array`] named `array`, 4 bytes,
//! aligned to 2, of 2 `u16`s) is
//! `01 | 05 "array" 04 02 05 02 | 03 "u16" 02 02 01`.
//!
//! # Limits
//!
//! [`decode_layout`] reads bytes from a segment that any process may have
//! written, so it refuses, with an error and never a panic:
//!
//! - nesting deeper than [`MAX_LAYOUT_DEPTH`] (32) levels;
//! - more than [`MAX_LAYOUT_NODES`] (4096) nodes in all;
//! - more than [`MAX_LAYOUT_VARIANTS`] (65,536) enum variants in all;
//! - names longer than [`MAX_LAYOUT_NAME_LEN`] (1024) bytes, or not UTF-8;
//! - counts larger than the bytes left could hold (checked before anything
//!   is allocated for them), unknown versions and kind tags, truncation.
//!
//! Its recursion is bounded by the depth limit, and the memory it allocates
//! by the input's length. [`encode_layout`] refuses a layout beyond these
//! limits, so everything it writes can be read back; a store refuses to
//! hold a type whose layout it cannot encode ([`Error::InvalidArgument`]).

use core::fmt;
use core::marker::PhantomData;
use core::sync::atomic::{
    AtomicBool, AtomicI16, AtomicI32, AtomicI64, AtomicI8, AtomicU16, AtomicU32, AtomicU64,
    AtomicU8,
};

use crate::Error;

mod codec;
mod desc;
mod tree;
#[cfg(test)]
mod zoo;

pub use codec::{
    decode_layout, encode_layout, LayoutDecodeError, LayoutEncodeError, LAYOUT_FORMAT_VERSION,
    MAX_LAYOUT_DEPTH, MAX_LAYOUT_NAME_LEN, MAX_LAYOUT_NODES, MAX_LAYOUT_VARIANTS,
};
pub use desc::{FieldDesc, LayoutDesc, LayoutDescKind, VariantDesc};

/// The shape of a type's layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LayoutKind {
    /// A scalar with no inner structure (integers, floats, `bool`, `char`, atomics).
    Primitive,
    /// A struct; `transparent` is true for `#[repr(transparent)]`.
    Struct {
        /// `true` for `#[repr(transparent)]`, `false` for `#[repr(C)]`.
        transparent: bool,
        /// The fields, in declaration order.
        fields: &'static [FieldLayout],
    },
    /// A fieldless enum with an explicit integer representation.
    Enum {
        /// The layout of the integer representation (`u8`, `i32`, ...).
        repr: &'static TypeLayout,
        /// Every variant with its discriminant.
        variants: &'static [VariantLayout],
    },
    /// An array `[elem; len]`.
    Array {
        /// The element's layout.
        elem: &'static TypeLayout,
        /// The number of elements.
        len: usize,
    },
    /// Bytes whose meaning is owned by shmstore itself (for example the
    /// process-shared pthread mutex inside [`ShmMutex`](crate::ShmMutex)).
    /// `params` lists the layouts of its type parameters.
    Opaque {
        /// Layouts of the type parameters (for `ShmMutex<T>`, `T`'s layout).
        params: &'static [&'static TypeLayout],
    },
    /// One of shmstore's containers (`ShmVec`, `ShmString`, `ShmMap`,
    /// `RelPtr`): words of its own that point into the store, and type
    /// parameters reached *lazily*, so that a type may hold containers of
    /// itself (`struct Node { next: RelPtr<Node> }`).
    ///
    /// The compile-time fingerprint hashes only each parameter's size and
    /// alignment (a parameter's full layout is not a constant the compiler
    /// can reach without recursing); the store identifies types by the
    /// fingerprint of their whole layout graph, which follows the parameters
    /// (see [`TypeLayout::graph_fingerprint`]), and every container checks
    /// the element type of its buffer at every use.
    Container {
        /// The type parameters.
        params: &'static [LazyLayout],
    },
}

/// A type parameter of a container, reached through functions (see
/// [`LayoutKind::Container`]).
#[derive(Clone, Copy)]
pub struct LazyLayout {
    /// `size_of` the parameter.
    pub size: usize,
    /// `align_of` the parameter.
    pub align: usize,
    /// The parameter's layout.
    pub layout: fn() -> &'static TypeLayout,
    /// The parameter's `TypeId`: how a walk of a layout graph recognises a
    /// type it is already inside of.
    pub type_id: fn() -> core::any::TypeId,
}

impl LazyLayout {
    /// The lazy layout of `T`.
    pub const fn of<T: ShmSafe>() -> LazyLayout {
        fn layout<T: ShmSafe>() -> &'static TypeLayout {
            T::LAYOUT
        }
        LazyLayout {
            size: core::mem::size_of::<T>(),
            align: core::mem::align_of::<T>(),
            layout: layout::<T>,
            type_id: core::any::TypeId::of::<T>,
        }
    }
}

impl PartialEq for LazyLayout {
    fn eq(&self, other: &Self) -> bool {
        (self.type_id)() == (other.type_id)()
    }
}

impl Eq for LazyLayout {}

impl fmt::Debug for LazyLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyLayout")
            .field("type", &(self.layout)().type_expr())
            .field("size", &self.size)
            .field("align", &self.align)
            .finish()
    }
}

/// One field of a struct layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldLayout {
    /// Field name; tuple fields are named `"0"`, `"1"`, ...
    pub name: &'static str,
    /// Byte offset of the field inside the struct.
    pub offset: usize,
    /// The field type's layout.
    pub ty: &'static TypeLayout,
}

/// One variant of a fieldless enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VariantLayout {
    /// Variant name.
    pub name: &'static str,
    /// The discriminant, widened to `i128`.
    pub discriminant: i128,
}

/// The compile-time description of a [`ShmSafe`] type.
///
/// Built by `#[derive(ShmSafe)]` (or by hand for the crate's own types) as a
/// `const`, so it costs nothing at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeLayout {
    /// The recorded type name: the identifier, or the one pinned with
    /// `#[shm(name = "...")]`. Module paths are not part of it, so the same
    /// definition in two crates has the same layout.
    pub name: &'static str,
    /// `size_of::<T>()`.
    pub size: usize,
    /// `align_of::<T>()`.
    pub align: usize,
    /// The shape.
    pub kind: LayoutKind,
}

/// FNV-1a 64-bit offset basis.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64-bit prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

const fn hash_bytes(mut h: u64, bytes: &[u8]) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(FNV_PRIME);
        i += 1;
    }
    h
}

const fn hash_u64(h: u64, v: u64) -> u64 {
    hash_bytes(h, &v.to_le_bytes())
}

const fn hash_str(h: u64, s: &str) -> u64 {
    // Length prefix so that ("ab", "c") and ("a", "bc") differ.
    hash_bytes(hash_u64(h, s.len() as u64), s.as_bytes())
}

/// A final avalanche (the `fmix64` of MurmurHash3), so that nearby inputs
/// give unrelated fingerprints.
const fn fmix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

impl TypeLayout {
    /// A primitive layout for `T` with the given name.
    pub const fn primitive<T>(name: &'static str) -> TypeLayout {
        TypeLayout {
            name,
            size: core::mem::size_of::<T>(),
            align: core::mem::align_of::<T>(),
            kind: LayoutKind::Primitive,
        }
    }

    /// The stable 64-bit fingerprint of this layout.
    ///
    /// It hashes a canonical description: name, size, align, kind, and
    /// recursively every field's name, offset and layout (or every variant's
    /// name and discriminant, or the element layout and length). It is the
    /// same in every build of the same definition, and equal to the
    /// [`LayoutDesc::fingerprint`] of the layout's owned copy or of its
    /// decoded encoding.
    pub const fn fingerprint(&self) -> u64 {
        fmix(self.hash_into(hash_u64(FNV_OFFSET, FORMAT_SALT)))
    }

    /// Hashes the canonical description: the same tokens, in the same
    /// order, as the shared walk of `tree::walk` (which cannot be called
    /// from a `const fn`); the tests compare the two.
    const fn hash_into(&self, mut h: u64) -> u64 {
        h = hash_str(h, self.name);
        h = hash_u64(h, self.size as u64);
        h = hash_u64(h, self.align as u64);
        match self.kind {
            LayoutKind::Primitive => hash_u64(h, tree::KIND_PRIMITIVE as u64),
            LayoutKind::Struct {
                transparent,
                fields,
            } => {
                h = hash_u64(
                    h,
                    if transparent {
                        tree::KIND_TRANSPARENT
                    } else {
                        tree::KIND_STRUCT
                    } as u64,
                );
                h = hash_u64(h, fields.len() as u64);
                let mut i = 0;
                while i < fields.len() {
                    h = hash_str(h, fields[i].name);
                    h = hash_u64(h, fields[i].offset as u64);
                    h = fields[i].ty.hash_into(h);
                    i += 1;
                }
                h
            }
            LayoutKind::Enum { repr, variants } => {
                h = hash_u64(h, tree::KIND_ENUM as u64);
                h = repr.hash_into(h);
                h = hash_u64(h, variants.len() as u64);
                let mut i = 0;
                while i < variants.len() {
                    h = hash_str(h, variants[i].name);
                    h = hash_bytes(h, &variants[i].discriminant.to_le_bytes());
                    i += 1;
                }
                h
            }
            LayoutKind::Array { elem, len } => {
                h = hash_u64(h, tree::KIND_ARRAY as u64);
                h = hash_u64(h, len as u64);
                elem.hash_into(h)
            }
            LayoutKind::Opaque { params } => {
                h = hash_u64(h, tree::KIND_OPAQUE as u64);
                h = hash_u64(h, params.len() as u64);
                let mut i = 0;
                while i < params.len() {
                    h = params[i].hash_into(h);
                    i += 1;
                }
                h
            }
            LayoutKind::Container { params } => {
                h = hash_u64(h, tree::KIND_CONTAINER as u64);
                h = hash_u64(h, params.len() as u64);
                let mut i = 0;
                while i < params.len() {
                    h = hash_u64(h, params[i].size as u64);
                    h = hash_u64(h, params[i].align as u64);
                    i += 1;
                }
                h
            }
        }
    }

    /// A short type expression: `Point`, `[u8; 16]`, `ShmMutex<u64>`.
    pub fn type_expr(&self) -> String {
        tree::type_expr(self)
    }

    /// The fingerprint of the whole layout graph: equal to
    /// [`fingerprint`](TypeLayout::fingerprint) for a layout without
    /// containers; for one with containers, it also covers their type
    /// parameters' full layouts (which the compile-time fingerprint reaches
    /// only by size and alignment), with a back reference where a type
    /// holds containers of itself. The store identifies types by it.
    /// Computed at run time; see [`graph_fingerprint_of`] for a cached one.
    pub fn graph_fingerprint(&self) -> u64 {
        tree::graph_fingerprint(self)
    }

    /// `true` if the layout may hold a lock anywhere (conservatively: any
    /// [`LayoutKind::Opaque`] type, which is how the synchronisation
    /// primitives describe themselves). The store never frees memory that
    /// holds a locked `ShmMutex` (see `Store::remove`).
    #[doc(hidden)]
    pub const fn may_hold_locks(&self) -> bool {
        match self.kind {
            LayoutKind::Primitive | LayoutKind::Enum { .. } => false,
            LayoutKind::Struct { fields, .. } => {
                let mut i = 0;
                while i < fields.len() {
                    if fields[i].ty.may_hold_locks() {
                        return true;
                    }
                    i += 1;
                }
                false
            }
            LayoutKind::Array { elem, .. } => elem.may_hold_locks(),
            LayoutKind::Opaque { .. } => true,
            // Their parameters are lazy (not readable in a `const fn`):
            // conservatively yes, except for the byte containers.
            LayoutKind::Container { params } => !params.is_empty(),
        }
    }

    /// `true` if the layout holds one of shmstore's containers anywhere
    /// (then [`graph_fingerprint`](TypeLayout::graph_fingerprint) differs
    /// from [`fingerprint`](TypeLayout::fingerprint)).
    pub const fn has_containers(&self) -> bool {
        match self.kind {
            LayoutKind::Primitive | LayoutKind::Enum { .. } => false,
            LayoutKind::Struct { fields, .. } => {
                let mut i = 0;
                while i < fields.len() {
                    if fields[i].ty.has_containers() {
                        return true;
                    }
                    i += 1;
                }
                false
            }
            LayoutKind::Array { elem, .. } => elem.has_containers(),
            LayoutKind::Opaque { params } => {
                let mut i = 0;
                while i < params.len() {
                    if params[i].has_containers() {
                        return true;
                    }
                    i += 1;
                }
                false
            }
            LayoutKind::Container { .. } => true,
        }
    }

    /// An owned copy of this layout, as a process without the type sees it.
    pub fn to_desc(&self) -> LayoutDesc {
        LayoutDesc::from(self)
    }
}

/// The [graph fingerprint](TypeLayout::graph_fingerprint) of `T`'s layout,
/// computed once per type and thread (the compile-time
/// [`ShmSafe::FINGERPRINT`] for a type without containers).
pub fn graph_fingerprint_of<T: ShmSafe>() -> u64 {
    if !const { T::LAYOUT.has_containers() } {
        return T::FINGERPRINT;
    }
    thread_local! {
        static CACHE: core::cell::RefCell<std::collections::HashMap<core::any::TypeId, u64>> =
            core::cell::RefCell::new(std::collections::HashMap::new());
    }
    let id = core::any::TypeId::of::<T>();
    let cached = CACHE
        .try_with(|c| c.borrow().get(&id).copied())
        .ok()
        .flatten();
    cached.unwrap_or_else(|| {
        let fp = T::LAYOUT.graph_fingerprint();
        let _ = CACHE.try_with(|c| c.borrow_mut().insert(id, fp));
        fp
    })
}

/// Changes with the fingerprint scheme itself, so that a future change of the
/// hash never lets two different schemes agree by accident.
const FORMAT_SALT: u64 = 1;

impl fmt::Display for TypeLayout {
    /// Renders the layout field by field, one line per field, nested types
    /// indented:
    ///
    /// ```text
    /// Point (size 16, align 8, fingerprint 0x3b1f...)
    ///   x: f64 (offset 0, size 8, align 8)
    ///   y: f64 (offset 8, size 8, align 8)
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        tree::display(self, self.fingerprint(), f)
    }
}

/// A value whose bytes are not a valid value of its type, found by
/// [`ShmSafe::check_bytes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidBitPattern {
    /// The type whose bytes were invalid (`bool`, `char`, an enum, ...).
    pub type_name: &'static str,
    /// Byte offset of the invalid value from the start of the checked value.
    pub offset: usize,
    /// The raw bits found, widened.
    pub bits: u128,
}

impl InvalidBitPattern {
    /// An invalid value of `type_name` at offset 0.
    pub fn new(type_name: &'static str, bits: u128) -> Self {
        InvalidBitPattern {
            type_name,
            offset: 0,
            bits,
        }
    }

    /// The same error seen from a value that contains the checked one at
    /// `offset` (used by derived checks to report the full offset).
    #[must_use]
    pub fn within(mut self, offset: usize) -> Self {
        self.offset += offset;
        self
    }
}

impl fmt::Display for InvalidBitPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid bit pattern {:#x} for `{}` at byte offset {}",
            self.bits, self.type_name, self.offset
        )
    }
}

impl std::error::Error for InvalidBitPattern {}

/// A type whose bytes mean the same thing in every process that maps them.
///
/// Implement it with `#[derive(ShmSafe)]`; a hand-written implementation must
/// uphold the contract below, which the derive checks at compile time.
///
/// # Safety
///
/// An implementation promises that:
///
/// - the type holds no absolute address: no references, raw pointers,
///   function pointers, `Box`/`Vec`/`String` or other heap handles, file
///   descriptors or thread-local state; positions inside a segment are
///   offsets from the segment's start;
/// - its layout is defined (`#[repr(C)]`, `#[repr(transparent)]`, an explicit
///   integer repr for fieldless enums, or a primitive) and [`Self::LAYOUT`]
///   describes it exactly (size, align, every field's offset and type);
/// - it has no drop glue (`core::mem::needs_drop::<Self>()` is `false`):
///   values in a segment are never dropped;
/// - every bit pattern that [`Self::check_bytes`] accepts is a valid value of
///   the type, and if [`Self::HAS_INVALID_BIT_PATTERNS`] is `false`, every bit
///   pattern of `size_of::<Self>()` initialised bytes is a valid value;
/// - all mutation through `&Self` goes through interior mutability that is
///   sound across processes (atomics, shmstore's process-shared locks), and
///   the type is `Send + Sync` (several threads and processes hold `&Self`
///   to one value at once);
/// - [`Self::init_in_place`] only touches the value at `ptr`, and does
///   nothing at all unless [`Self::IMMOVABLE`] is `true`: a value that is not
///   immovable may be moved or copied bit for bit without being initialised
///   again;
/// - [`Self::IMMOVABLE`] is `true` if any part of the value is initialised in
///   place and must not move or be overwritten afterwards (a process-shared
///   lock, which its holder's robust list points at);
/// - its alignment is at most 4096 (a page: mappings are only page-aligned,
///   so a larger alignment could not hold in every process).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot live in shared memory: it does not implement `ShmSafe`",
    label = "`{Self}` is not `ShmSafe`",
    note = "heap handles (`Vec`, `String`, `Box`), references, raw and function pointers and `usize`/`isize` have no meaning in another process",
    note = "use fixed-width integers, floats, arrays, atomics, shmstore's types, or a `#[repr(C)]` type with `#[derive(ShmSafe)]`"
)]
pub unsafe trait ShmSafe: Sized + Send + Sync + 'static {
    /// The type's layout, computed at compile time.
    const LAYOUT: &'static TypeLayout;

    /// The stable fingerprint of [`Self::LAYOUT`].
    const FINGERPRINT: u64 = Self::LAYOUT.fingerprint();

    /// `true` if some bit patterns are not valid values (`bool`, `char`,
    /// enums, and anything containing them); [`Self::check_bytes`] must then
    /// be called on bytes from another process before they are read as `Self`.
    const HAS_INVALID_BIT_PATTERNS: bool = false;

    /// `true` if the value holds parts that are initialised in place, at
    /// their final address, and must never move or be overwritten once
    /// published (process-shared locks: a held one is on its owner's robust
    /// list). No safe API hands out `&mut Self` for such a type once it
    /// lives in a store: a guard of a `ShmMutex<Self>` gives `&Self`, and
    /// containers do not move such elements.
    const IMMOVABLE: bool = false;

    /// Checks that the bytes at `ptr` are a valid value of `Self`.
    ///
    /// # Safety
    ///
    /// - `ptr` is aligned for `Self` and valid for reads of
    ///   `size_of::<Self>()` initialised bytes;
    /// - no other process or thread writes those bytes non-atomically while
    ///   the check runs.
    unsafe fn check_bytes(ptr: *const Self) -> Result<(), InvalidBitPattern> {
        let _ = ptr;
        Ok(())
    }

    /// Initialises, at its final address, anything that cannot be moved: run
    /// by the store after a value has been copied into the segment and before
    /// it is published. The default does nothing; the derive calls it on
    /// every field.
    ///
    /// # Safety
    ///
    /// - `ptr` is aligned, valid for reads and writes of `size_of::<Self>()`
    ///   bytes, and holds a bitwise copy of a valid `Self`;
    /// - no other thread or process can reach the value yet (it is not
    ///   published), so no reference to it exists.
    unsafe fn init_in_place(ptr: *mut Self) -> Result<(), Error> {
        let _ = ptr;
        Ok(())
    }

    /// Calls `visit` with every segment offset this value holds (relative
    /// pointers and containers), so that the store can follow nested
    /// allocations. The default holds none; the derive visits every field.
    fn trace(&self, visit: &mut dyn FnMut(u64)) {
        let _ = visit;
    }
}

/// A [`ShmSafe`] type that may be moved or overwritten once it lives in a
/// store: it has no part initialised in place at its address.
///
/// A guard of a [`ShmMutex<T>`](crate::ShmMutex) gives `&mut T` (so that
/// `*guard = value` and `mem::swap` work) only for `T: ShmMovable`. A type
/// holding a `ShmMutex` is not movable: its holder's robust list points at
/// the lock's bytes, so moving or overwriting them could make another
/// thread, or the kernel, write through a stale pointer. Use the nested
/// lock through `&T` instead.
///
/// `#[derive(ShmSafe)]` implements it for every type whose fields all are.
///
/// # Safety
///
/// Implement it only for a type with no part initialised in place: its
/// [`ShmSafe::IMMOVABLE`] is `false` and its
/// [`init_in_place`](ShmSafe::init_in_place) does nothing.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be moved or overwritten in a store: it holds a lock initialised in place",
    label = "`{Self}` is not `ShmMovable`",
    note = "a guard gives `&mut T` only for movable `T`; use the nested lock through `&T` (for example `guard.inner.lock()`)"
)]
pub unsafe trait ShmMovable: ShmSafe {}

macro_rules! plain_primitive {
    ($($t:ty => $name:literal),* $(,)?) => {$(
        // SAFETY: a fixed-width integer or float: no pointers, no drop glue,
        // every bit pattern is a valid value, and LAYOUT is its size/align.
        unsafe impl ShmSafe for $t {
            const LAYOUT: &'static TypeLayout = &TypeLayout::primitive::<$t>($name);
        }
        // SAFETY: nothing initialised in place (the default init, not
        // IMMOVABLE).
        unsafe impl ShmMovable for $t {}
    )*};
}

plain_primitive! {
    u8 => "u8", u16 => "u16", u32 => "u32", u64 => "u64", u128 => "u128",
    i8 => "i8", i16 => "i16", i32 => "i32", i64 => "i64", i128 => "i128",
    f32 => "f32", f64 => "f64",
    AtomicU8 => "AtomicU8", AtomicU16 => "AtomicU16",
    AtomicU32 => "AtomicU32", AtomicU64 => "AtomicU64",
    AtomicI8 => "AtomicI8", AtomicI16 => "AtomicI16",
    AtomicI32 => "AtomicI32", AtomicI64 => "AtomicI64",
}

/// Checks a byte that must be 0 or 1.
///
/// # Safety
///
/// `ptr` is valid for a read of one initialised byte.
unsafe fn check_bool_byte(ptr: *const u8, name: &'static str) -> Result<(), InvalidBitPattern> {
    // SAFETY: the caller guarantees `ptr` is valid for a one-byte read.
    let b = unsafe { ptr.read() };
    if b <= 1 {
        Ok(())
    } else {
        Err(InvalidBitPattern::new(name, b as u128))
    }
}

// SAFETY: one byte, no pointers, no drop glue; only 0 and 1 are valid and
// check_bytes accepts exactly those.
unsafe impl ShmSafe for bool {
    const LAYOUT: &'static TypeLayout = &TypeLayout::primitive::<bool>("bool");
    const HAS_INVALID_BIT_PATTERNS: bool = true;
    unsafe fn check_bytes(ptr: *const Self) -> Result<(), InvalidBitPattern> {
        // SAFETY: the caller guarantees `ptr` is valid for reading one byte.
        unsafe { check_bool_byte(ptr.cast(), "bool") }
    }
}

// SAFETY: no in-place parts (the default init, not IMMOVABLE).
unsafe impl ShmMovable for bool {}
// SAFETY: as above.
unsafe impl ShmMovable for AtomicBool {}
// SAFETY: as above.
unsafe impl ShmMovable for char {}
// SAFETY: as above.
unsafe impl ShmMovable for () {}
// SAFETY: zero-sized: nothing to initialise, whatever `T` is.
unsafe impl<T: ShmSafe> ShmMovable for PhantomData<T> {}
// SAFETY: an array has in-place parts exactly when its element does.
unsafe impl<T: ShmMovable, const N: usize> ShmMovable for [T; N] {}

// SAFETY: same representation as `bool` (one byte, 0 or 1), interior
// mutability through atomic operations, which are sound across processes.
unsafe impl ShmSafe for AtomicBool {
    const LAYOUT: &'static TypeLayout = &TypeLayout::primitive::<AtomicBool>("AtomicBool");
    const HAS_INVALID_BIT_PATTERNS: bool = true;
    unsafe fn check_bytes(ptr: *const Self) -> Result<(), InvalidBitPattern> {
        // An AtomicBool in a published object may be stored to by other
        // processes at any time, so it is read with an atomic load (as an
        // AtomicU8, which accepts any byte), never a plain read.
        // SAFETY: the caller guarantees `ptr` is aligned and valid for
        // reading one byte; AtomicU8 has the size and alignment of
        // AtomicBool and every bit pattern is a valid AtomicU8.
        let b = unsafe { &*ptr.cast::<AtomicU8>() }.load(core::sync::atomic::Ordering::Relaxed);
        if b <= 1 {
            Ok(())
        } else {
            Err(InvalidBitPattern::new("AtomicBool", b as u128))
        }
    }
}

// SAFETY: four bytes holding a Unicode scalar value; check_bytes accepts
// exactly the values `char::from_u32` accepts.
unsafe impl ShmSafe for char {
    const LAYOUT: &'static TypeLayout = &TypeLayout::primitive::<char>("char");
    const HAS_INVALID_BIT_PATTERNS: bool = true;
    unsafe fn check_bytes(ptr: *const Self) -> Result<(), InvalidBitPattern> {
        // SAFETY: the caller guarantees `ptr` is aligned and valid for reading
        // four bytes; a u32 read accepts any bit pattern.
        let v = unsafe { ptr.cast::<u32>().read() };
        match char::from_u32(v) {
            Some(_) => Ok(()),
            None => Err(InvalidBitPattern::new("char", v as u128)),
        }
    }
}

// SAFETY: zero-sized, no pointers, no drop glue.
unsafe impl ShmSafe for () {
    const LAYOUT: &'static TypeLayout = &TypeLayout::primitive::<()>("()");
}

// SAFETY: zero-sized, no pointers, no drop glue; `Send + Sync` because `T`
// is. Its layout names `T`'s, so that `Wrapper<A>` and `Wrapper<B>` whose
// only use of the parameter is a `PhantomData` fingerprint differently (a
// typed offset must not be read as another type).
unsafe impl<T: ShmSafe> ShmSafe for PhantomData<T> {
    const LAYOUT: &'static TypeLayout = &TypeLayout {
        name: "PhantomData",
        size: 0,
        align: 1,
        kind: LayoutKind::Opaque {
            params: &[T::LAYOUT],
        },
    };
}

// SAFETY: an array of ShmSafe elements has the elements' properties; its
// layout is exactly N elements at stride size_of::<T>() (the array layout
// guarantee), which LAYOUT records.
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for [T; N] {
    const LAYOUT: &'static TypeLayout = &TypeLayout {
        name: "array",
        size: core::mem::size_of::<[T; N]>(),
        align: core::mem::align_of::<[T; N]>(),
        kind: LayoutKind::Array {
            elem: T::LAYOUT,
            len: N,
        },
    };
    const HAS_INVALID_BIT_PATTERNS: bool = T::HAS_INVALID_BIT_PATTERNS;
    const IMMOVABLE: bool = T::IMMOVABLE;

    unsafe fn check_bytes(ptr: *const Self) -> Result<(), InvalidBitPattern> {
        if !T::HAS_INVALID_BIT_PATTERNS {
            return Ok(());
        }
        let first = ptr.cast::<T>();
        for i in 0..N {
            // SAFETY: `i < N`, so element `i` lies inside the array the
            // caller vouched for; it is aligned because the array is.
            unsafe { T::check_bytes(first.add(i)) }
                .map_err(|e| e.within(i * core::mem::size_of::<T>()))?;
        }
        Ok(())
    }

    unsafe fn init_in_place(ptr: *mut Self) -> Result<(), Error> {
        let first = ptr.cast::<T>();
        for i in 0..N {
            // SAFETY: element `i < N` is inside the value the caller vouched
            // for, unpublished and aligned.
            unsafe { T::init_in_place(first.add(i)) }?;
        }
        Ok(())
    }

    fn trace(&self, visit: &mut dyn FnMut(u64)) {
        for elem in self {
            elem.trace(visit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_differ_between_primitives() {
        let all = [
            u8::FINGERPRINT,
            u16::FINGERPRINT,
            u32::FINGERPRINT,
            u64::FINGERPRINT,
            i64::FINGERPRINT,
            f64::FINGERPRINT,
            AtomicU64::FINGERPRINT,
            <[u8; 8]>::FINGERPRINT,
            <[u16; 4]>::FINGERPRINT,
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn fingerprint_is_a_compile_time_constant() {
        const FP: u64 = <[u32; 3]>::FINGERPRINT;
        assert_eq!(FP, <[u32; 3]>::LAYOUT.fingerprint());
        // Pinned: a change here means every existing store's fingerprints
        // changed too, which must be a deliberate format change.
        assert_eq!(u64::FINGERPRINT, u64::LAYOUT.fingerprint());
    }

    #[test]
    fn invalid_bools_and_chars_are_rejected() {
        let bad: u8 = 2;
        // SAFETY: `&bad` is a valid one-byte read.
        let err = unsafe { bool::check_bytes((&bad as *const u8).cast()) }.unwrap_err();
        assert_eq!(err.bits, 2);
        let ok: u8 = 1;
        // SAFETY: as above.
        assert!(unsafe { bool::check_bytes((&ok as *const u8).cast()) }.is_ok());
        let surrogate: u32 = 0xD800;
        // SAFETY: `&surrogate` is an aligned four-byte read.
        let err = unsafe { char::check_bytes((&surrogate as *const u32).cast()) }.unwrap_err();
        assert_eq!(err.type_name, "char");
        let arr: [u8; 3] = [0, 1, 7];
        // SAFETY: `&arr` is a valid read of three bytes.
        let err = unsafe { <[bool; 3]>::check_bytes((&arr as *const [u8; 3]).cast()) }.unwrap_err();
        assert_eq!(err.offset, 2);
    }

    #[test]
    fn atomic_bools_are_checked_with_an_atomic_load() {
        let raw = AtomicU8::new(2);
        // SAFETY: `&raw` is an aligned one-byte atomic, valid for reads.
        let err = unsafe { AtomicBool::check_bytes((&raw as *const AtomicU8).cast()) }.unwrap_err();
        assert_eq!((err.type_name, err.bits), ("AtomicBool", 2));
        raw.store(1, core::sync::atomic::Ordering::Relaxed);
        // SAFETY: as above.
        assert!(unsafe { AtomicBool::check_bytes((&raw as *const AtomicU8).cast()) }.is_ok());
    }

    #[test]
    fn display_names_nested_types() {
        let text = <[u16; 4]>::LAYOUT.to_string();
        assert!(text.starts_with("[u16; 4] (size 8, align 2"), "{text}");
    }
}
