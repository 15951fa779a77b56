//! [`LayoutDesc`]: an owned layout, for processes that do not have the type.

use core::fmt;

use super::codec::{encode_tree, LayoutEncodeError};
use super::tree;
use super::TypeLayout;

/// An owned description of a type's layout: what a [`TypeLayout`] says,
/// held in `String`s, `Vec`s and `Box`es instead of `'static` references.
///
/// It is how a process that does not have the Rust type sees a stored
/// type: [`decode_layout`](super::decode_layout) builds one from the bytes
/// a store's type registry keeps, and
/// [`Store::registered_layout`](crate::Store::registered_layout) and
/// [`Entry::layout`](crate::Entry::layout) hand one out. Its
/// [`fingerprint`](LayoutDesc::fingerprint), [`Display`](fmt::Display) and
/// [`type_expr`](LayoutDesc::type_expr) are those of the [`TypeLayout`] it
/// was made from.
///
/// ```
/// use shmstore::layout::{decode_layout, encode_layout, LayoutDesc, LayoutDescKind};
/// use shmstore::ShmSafe;
///
/// #[derive(ShmSafe)]
/// #[repr(C)]
/// struct Point {
///     x: f64,
///     y: f64,
/// }
///
/// let bytes = encode_layout(Point::LAYOUT)?;
/// let desc: LayoutDesc = decode_layout(&bytes)?;
/// assert_eq!(desc, Point::LAYOUT.to_desc());
/// assert_eq!(desc.fingerprint(), Point::FINGERPRINT);
/// assert_eq!(desc.to_string(), Point::LAYOUT.to_string());
/// match &desc.kind {
///     LayoutDescKind::Struct { fields, .. } => {
///         assert_eq!((fields[1].name.as_str(), fields[1].offset), ("y", 8));
///     }
///     other => panic!("not a struct: {other:?}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// A decoded layout is well formed (see the limits in the
/// [module docs](super#limits)) but not checked for consistency with
/// itself: nothing guarantees that a field lies inside its struct, that an
/// alignment is a power of two or that an array's size is its length times
/// its element's size. Code that walks bytes by a layout from a segment
/// checks every offset against the bytes it has.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LayoutDesc {
    /// The recorded type name (see [`TypeLayout::name`]).
    pub name: String,
    /// The type's size in bytes.
    pub size: u64,
    /// The type's alignment in bytes.
    pub align: u64,
    /// The shape.
    pub kind: LayoutDescKind,
}

/// The shape of a [`LayoutDesc`]: an owned [`LayoutKind`](super::LayoutKind).
///
/// Non-exhaustive: a later version of the encoding may add kinds, which a
/// tool should show as unknown rather than fail on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LayoutDescKind {
    /// A scalar with no inner structure (integers, floats, `bool`, `char`,
    /// atomics); what it is, is in its name.
    Primitive,
    /// A struct.
    Struct {
        /// `true` for `#[repr(transparent)]`, `false` for `#[repr(C)]`.
        transparent: bool,
        /// The fields, in declaration order.
        fields: Vec<FieldDesc>,
    },
    /// A fieldless enum with an explicit integer representation.
    Enum {
        /// The layout of the integer representation (`u8`, `i32`, ...).
        repr: Box<LayoutDesc>,
        /// Every variant with its discriminant.
        variants: Vec<VariantDesc>,
    },
    /// An array `[elem; len]`.
    Array {
        /// The element's layout.
        elem: Box<LayoutDesc>,
        /// The number of elements.
        len: u64,
    },
    /// Bytes whose meaning is owned by shmstore itself (a
    /// [`ShmMutex`](crate::ShmMutex), a `PhantomData`, and the crate's
    /// containers and relative pointers), told apart by name; `params`
    /// lists the layouts of its type parameters.
    Opaque {
        /// Layouts of the type parameters (for `ShmMutex<T>`, `T`'s layout).
        params: Vec<LayoutDesc>,
    },
    /// One of shmstore's containers (see
    /// [`LayoutKind::Container`](super::LayoutKind::Container)), its
    /// parameters expanded; a parameter that is a type the description is
    /// already inside of is a [`BackRef`](LayoutDescKind::BackRef).
    Container {
        /// Layouts of the type parameters.
        params: Vec<LayoutDesc>,
    },
    /// The type of an enclosing container parameter: `depth` 0 is the
    /// innermost one this node is inside of, 1 the next, and so on. (A type
    /// that holds containers of itself, `struct Node { next: RelPtr<Node> }`,
    /// is described once, with a back reference where it recurs.) Its name,
    /// size and alignment are that type's.
    BackRef {
        /// How many container parameters up.
        depth: u64,
    },
}

/// One field of a [`LayoutDesc`] struct.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldDesc {
    /// Field name; tuple fields are named `"0"`, `"1"`, ...
    pub name: String,
    /// Byte offset of the field inside the struct.
    pub offset: u64,
    /// The field type's layout.
    pub ty: LayoutDesc,
}

/// One variant of a [`LayoutDesc`] enum.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VariantDesc {
    /// Variant name.
    pub name: String,
    /// The discriminant, widened to `i128`.
    pub discriminant: i128,
}

impl LayoutDesc {
    /// The stable 64-bit fingerprint of this layout: for a layout made from
    /// (or encoded from) a [`TypeLayout`], that layout's
    /// [`fingerprint`](TypeLayout::fingerprint).
    pub fn fingerprint(&self) -> u64 {
        tree::fingerprint(self)
    }

    /// The fingerprint of the whole layout graph, containers' parameters
    /// included: what the store identifies types by (see
    /// [`TypeLayout::graph_fingerprint`]).
    pub fn graph_fingerprint(&self) -> u64 {
        tree::graph_fingerprint(self)
    }

    /// `true` if the layout holds a container anywhere.
    pub fn has_containers(&self) -> bool {
        tree::has_container(self)
    }

    /// A short type expression: `Point`, `[u8; 16]`, `ShmMutex<u64>`.
    pub fn type_expr(&self) -> String {
        tree::type_expr(self)
    }

    /// The layout in the binary encoding that
    /// [`decode_layout`](super::decode_layout) reads (see the
    /// [format](super#format)). Fails only if the layout is beyond the
    /// [limits](super#limits) that decoding enforces, so whatever it
    /// returns decodes to an equal layout.
    pub fn encode(&self) -> Result<Vec<u8>, LayoutEncodeError> {
        encode_tree(self)
    }
}

impl From<&TypeLayout> for LayoutDesc {
    fn from(layout: &TypeLayout) -> LayoutDesc {
        tree::to_desc(layout)
    }
}

impl fmt::Display for LayoutDesc {
    /// Renders the layout exactly as [`TypeLayout`]'s `Display` renders the
    /// layout it was made from.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        tree::display(self, self.fingerprint(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{tree, zoo, ShmSafe};
    use super::*;

    /// Fingerprints and renderings of the zoo, as the implementation before
    /// `LayoutDesc` (one `const fn` hash, one `Display` for `TypeLayout`)
    /// produced them on x86_64 Linux with glibc: `=== <fingerprint>` lines,
    /// each followed by the layout's `Display`. Stores created by earlier
    /// builds hold these fingerprints, and error messages and tests show
    /// this text. (Elsewhere a `ShmMutex`'s size, which holds a
    /// `pthread_mutex_t`, may differ, and so would its fingerprint.)
    const GOLDEN: &str = include_str!("zoo.golden");
    const GOLDEN_TARGET: bool = cfg!(all(
        target_os = "linux",
        target_arch = "x86_64",
        target_env = "gnu"
    ));

    fn golden() -> Vec<(u64, &'static str)> {
        GOLDEN
            .split("=== ")
            .skip(1)
            .map(|entry| {
                let (fp, text) = entry.split_once('\n').expect("a fingerprint line");
                let fp = u64::from_str_radix(fp.trim_start_matches("0x"), 16).expect("hex");
                (fp, text)
            })
            .collect()
    }

    #[test]
    fn layouts_render_and_fingerprint_as_they_did_before_owned_layouts() {
        let golden = golden();
        let zoo = zoo::all();
        assert_eq!(golden.len(), zoo.len());
        for (layout, (fp, text)) in zoo.into_iter().zip(golden) {
            let desc = layout.to_desc();
            if GOLDEN_TARGET {
                assert_eq!(layout.fingerprint(), fp, "{layout}");
                assert_eq!(layout.to_string(), text);
            }
            let fp = layout.fingerprint();
            assert_eq!(tree::fingerprint(layout), fp, "shared walk: {layout}");
            assert_eq!(desc.fingerprint(), fp, "{desc:?}");
            assert_eq!(desc.to_string(), layout.to_string());
            assert_eq!(desc.type_expr(), layout.type_expr());
            assert_eq!(LayoutDesc::from(layout), desc);
            assert_eq!(tree::to_desc(&desc), desc, "an owned copy of a copy");
        }
    }

    #[test]
    fn the_zoo_fingerprints_are_all_different() {
        let mut fps: Vec<u64> = zoo::all().iter().map(|l| l.fingerprint()).collect();
        fps.sort_unstable();
        fps.dedup();
        assert_eq!(fps.len(), zoo::all().len());
    }

    /// Every part of a layout goes into its fingerprint: changing any one
    /// of them changes it.
    #[test]
    fn every_part_of_an_owned_layout_changes_its_fingerprint() {
        let base = <zoo::Locked>::LAYOUT.to_desc();
        let fp = base.fingerprint();
        type Edit = fn(&mut LayoutDesc);
        let edits: Vec<(&str, Edit)> = vec![
            ("name", |d| d.name.push('x')),
            ("size", |d| d.size += 1),
            ("align", |d| d.align *= 2),
            ("field name", |d| field(d, 0).name = "other".into()),
            ("field offset", |d| field(d, 0).offset += 1),
            ("field type", |d| field(d, 0).ty.size += 1),
            ("field order", |d| match &mut d.kind {
                LayoutDescKind::Struct { fields, .. } => fields.swap(0, 1),
                _ => unreachable!(),
            }),
            ("transparency", |d| match &mut d.kind {
                LayoutDescKind::Struct { transparent, .. } => *transparent = true,
                _ => unreachable!(),
            }),
            ("opaque parameter", |d| param(field(d, 1)).name.push('x')),
            ("variant name", |d| {
                variant(param(field(d, 2))).name.push('x')
            }),
            ("discriminant", |d| {
                variant(param(field(d, 2))).discriminant = -6;
            }),
            ("enum repr", |d| match &mut param(field(d, 2)).kind {
                LayoutDescKind::Enum { repr, .. } => repr.name = "u32".into(),
                _ => unreachable!(),
            }),
            ("array length", |d| {
                match &mut field(param(field(d, 1)), 1).ty.kind {
                    LayoutDescKind::Array { len, .. } => *len += 1,
                    _ => unreachable!(),
                }
            }),
        ];
        for (what, edit) in edits {
            let mut d = base.clone();
            edit(&mut d);
            assert_ne!(d, base, "{what}");
            assert_ne!(d.fingerprint(), fp, "{what}");
        }
    }

    fn field(d: &mut LayoutDesc, i: usize) -> &mut FieldDesc {
        match &mut d.kind {
            LayoutDescKind::Struct { fields, .. } => &mut fields[i],
            other => panic!("not a struct: {other:?}"),
        }
    }

    fn param(f: &mut FieldDesc) -> &mut LayoutDesc {
        match &mut f.ty.kind {
            LayoutDescKind::Opaque { params } => &mut params[0],
            other => panic!("not opaque: {other:?}"),
        }
    }

    fn variant(d: &mut LayoutDesc) -> &mut VariantDesc {
        match &mut d.kind {
            LayoutDescKind::Enum { variants, .. } => &mut variants[0],
            other => panic!("not an enum: {other:?}"),
        }
    }
}
