//! One walk over a layout tree, written once for [`TypeLayout`] (borrowed
//! from the compiler) and [`LayoutDesc`] (owned, decoded from a segment):
//! rendering, the canonical token stream that the encoding writes and the
//! fingerprint hashes, and conversion to an owned tree.
//!
//! Only [`TypeLayout::fingerprint`] walks on its own, because it is a
//! `const fn` and trait methods cannot be called in one. It hashes the same
//! tokens in the same order as [`walk`] (the tests compare the two over a
//! zoo of layouts, and every registration in a debug build compares them
//! again for the type it registers).

use crate::inspect::printable;
use core::fmt;

use super::{
    fmix, hash_bytes, hash_str, hash_u64, FieldDesc, LayoutDesc, LayoutDescKind, LayoutKind,
    TypeLayout, VariantDesc, FNV_OFFSET, FORMAT_SALT,
};

/// Kind tags: written in the encoding, hashed (as a `u64`) into the
/// fingerprint.
pub(super) const KIND_PRIMITIVE: u8 = 1;
pub(super) const KIND_STRUCT: u8 = 2;
pub(super) const KIND_TRANSPARENT: u8 = 3;
pub(super) const KIND_ENUM: u8 = 4;
pub(super) const KIND_ARRAY: u8 = 5;
pub(super) const KIND_OPAQUE: u8 = 6;
pub(super) const KIND_CONTAINER: u8 = 7;
pub(super) const KIND_BACKREF: u8 = 8;

/// How a walk treats a container's (lazy) type parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// By size and alignment only: what the compile-time
    /// [`TypeLayout::fingerprint`] can reach.
    Shallow,
    /// Expanded, each one a whole layout; a parameter that names a type the
    /// walk is already inside of (entered through another container
    /// parameter) becomes a back reference to it, so a type that holds
    /// containers of itself is a finite graph.
    Deep,
}

/// One type parameter of a container: its layout, and (for a
/// [`TypeLayout`]) its `TypeId`, by which a deep walk recognises a type it
/// is already inside of.
pub(super) struct ParamRef<'a, T> {
    pub(super) layout: &'a T,
    pub(super) id: Option<core::any::TypeId>,
}

/// A layout tree seen through borrowed parts.
pub(super) trait Tree: Sized {
    /// One field of a struct.
    type Field;
    /// One variant of an enum.
    type Variant;
    /// One type parameter of an opaque type.
    type Param;
    /// One (lazy) type parameter of a container.
    type CParam;
    fn name(&self) -> &str;
    fn size(&self) -> u64;
    fn align(&self) -> u64;
    fn shape(&self) -> Shape<'_, Self>;
    /// Name, offset and type of a field.
    fn field(f: &Self::Field) -> (&str, u64, &Self);
    /// Name and discriminant of a variant.
    fn variant(v: &Self::Variant) -> (&str, i128);
    fn param(p: &Self::Param) -> &Self;
    fn cparam(p: &Self::CParam) -> ParamRef<'_, Self>;
}

/// The kind of a [`Tree`] node, with its children borrowed.
pub(super) enum Shape<'a, T: Tree> {
    Primitive,
    Struct {
        transparent: bool,
        fields: &'a [T::Field],
    },
    Enum {
        repr: &'a T,
        variants: &'a [T::Variant],
    },
    Array {
        elem: &'a T,
        len: u64,
    },
    Opaque {
        params: &'a [T::Param],
    },
    Container {
        params: &'a [T::CParam],
    },
    /// A type the walk is already inside of: the `depth`-th enclosing
    /// container parameter, 0 the innermost (only in a [`LayoutDesc`]).
    BackRef {
        depth: u64,
    },
}

impl Tree for TypeLayout {
    type Field = super::FieldLayout;
    type Variant = super::VariantLayout;
    type Param = &'static TypeLayout;
    type CParam = super::LazyLayout;

    fn name(&self) -> &str {
        self.name
    }
    fn size(&self) -> u64 {
        self.size as u64
    }
    fn align(&self) -> u64 {
        self.align as u64
    }
    fn shape(&self) -> Shape<'_, Self> {
        match self.kind {
            LayoutKind::Primitive => Shape::Primitive,
            LayoutKind::Struct {
                transparent,
                fields,
            } => Shape::Struct {
                transparent,
                fields,
            },
            LayoutKind::Enum { repr, variants } => Shape::Enum { repr, variants },
            LayoutKind::Array { elem, len } => Shape::Array {
                elem,
                len: len as u64,
            },
            LayoutKind::Opaque { params } => Shape::Opaque { params },
            LayoutKind::Container { params } => Shape::Container { params },
        }
    }
    fn field(f: &Self::Field) -> (&str, u64, &Self) {
        (f.name, f.offset as u64, f.ty)
    }
    fn variant(v: &Self::Variant) -> (&str, i128) {
        (v.name, v.discriminant)
    }
    fn param(p: &Self::Param) -> &Self {
        p
    }
    fn cparam(p: &Self::CParam) -> ParamRef<'_, Self> {
        ParamRef {
            layout: (p.layout)(),
            id: Some((p.type_id)()),
        }
    }
}

impl Tree for LayoutDesc {
    type Field = FieldDesc;
    type Variant = VariantDesc;
    type Param = LayoutDesc;
    type CParam = LayoutDesc;

    fn name(&self) -> &str {
        &self.name
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn align(&self) -> u64 {
        self.align
    }
    fn shape(&self) -> Shape<'_, Self> {
        match &self.kind {
            LayoutDescKind::Primitive => Shape::Primitive,
            LayoutDescKind::Struct {
                transparent,
                fields,
            } => Shape::Struct {
                transparent: *transparent,
                fields,
            },
            LayoutDescKind::Enum { repr, variants } => Shape::Enum { repr, variants },
            LayoutDescKind::Array { elem, len } => Shape::Array { elem, len: *len },
            LayoutDescKind::Opaque { params } => Shape::Opaque { params },
            LayoutDescKind::Container { params } => Shape::Container { params },
            LayoutDescKind::BackRef { depth } => Shape::BackRef { depth: *depth },
        }
    }
    fn field(f: &Self::Field) -> (&str, u64, &Self) {
        (&f.name, f.offset, &f.ty)
    }
    fn variant(v: &Self::Variant) -> (&str, i128) {
        (&v.name, v.discriminant)
    }
    fn param(p: &Self::Param) -> &Self {
        p
    }
    fn cparam(p: &Self::CParam) -> ParamRef<'_, Self> {
        ParamRef {
            layout: p,
            id: None,
        }
    }
}

/// Receives the canonical description of a layout, token by token.
pub(super) trait Sink {
    type Error;
    /// A node (a layout) begins at `depth` (the root is at depth 1).
    fn node(&mut self, depth: usize) -> Result<(), Self::Error>;
    /// An enum variant begins.
    fn variant(&mut self) -> Result<(), Self::Error>;
    /// A name: of a type, a field or a variant.
    fn name(&mut self, s: &str) -> Result<(), Self::Error>;
    /// A size, alignment, offset, length or count.
    fn word(&mut self, v: u64);
    /// A kind tag.
    fn tag(&mut self, t: u8);
    /// An enum discriminant.
    fn discriminant(&mut self, d: i128);
}

/// Feeds the canonical description of `t` to `sink`: name, size, align,
/// kind tag, then by kind: for a struct the field count and each field's
/// name, offset and layout; for an enum the repr's layout, the variant
/// count and each variant's name and discriminant; for an array the length
/// and the element's layout; for an opaque type the parameter count and
/// each parameter's layout.
///
/// A container's parameters are walked as `mode` says: by size and
/// alignment ([`Mode::Shallow`]), or expanded ([`Mode::Deep`]), with
/// `stack` holding the `TypeId`s of the container parameters the walk is
/// inside of (a parameter found on it becomes a back reference).
pub(super) fn walk<T: Tree, S: Sink>(
    t: &T,
    sink: &mut S,
    depth: usize,
    mode: Mode,
    stack: &mut Vec<core::any::TypeId>,
) -> Result<(), S::Error> {
    sink.node(depth)?;
    sink.name(t.name())?;
    sink.word(t.size());
    sink.word(t.align());
    match t.shape() {
        Shape::Primitive => sink.tag(KIND_PRIMITIVE),
        Shape::Struct {
            transparent,
            fields,
        } => {
            sink.tag(if transparent {
                KIND_TRANSPARENT
            } else {
                KIND_STRUCT
            });
            sink.word(fields.len() as u64);
            for f in fields {
                let (name, offset, ty) = T::field(f);
                sink.name(name)?;
                sink.word(offset);
                walk(ty, sink, depth + 1, mode, stack)?;
            }
        }
        Shape::Enum { repr, variants } => {
            sink.tag(KIND_ENUM);
            walk(repr, sink, depth + 1, mode, stack)?;
            sink.word(variants.len() as u64);
            for v in variants {
                let (name, discriminant) = T::variant(v);
                sink.variant()?;
                sink.name(name)?;
                sink.discriminant(discriminant);
            }
        }
        Shape::Array { elem, len } => {
            sink.tag(KIND_ARRAY);
            sink.word(len);
            walk(elem, sink, depth + 1, mode, stack)?;
        }
        Shape::Opaque { params } => {
            sink.tag(KIND_OPAQUE);
            sink.word(params.len() as u64);
            for p in params {
                walk(T::param(p), sink, depth + 1, mode, stack)?;
            }
        }
        Shape::Container { params } => {
            sink.tag(KIND_CONTAINER);
            sink.word(params.len() as u64);
            for p in params {
                let p = T::cparam(p);
                match mode {
                    Mode::Shallow => {
                        sink.word(p.layout.size());
                        sink.word(p.layout.align());
                    }
                    Mode::Deep => match p.id.and_then(|id| stack.iter().rposition(|&s| s == id)) {
                        Some(at) => {
                            // Already inside it: a back reference.
                            sink.node(depth + 1)?;
                            sink.name(p.layout.name())?;
                            sink.word(p.layout.size());
                            sink.word(p.layout.align());
                            sink.tag(KIND_BACKREF);
                            sink.word((stack.len() - 1 - at) as u64);
                        }
                        None => {
                            if let Some(id) = p.id {
                                stack.push(id);
                            }
                            let r = walk(p.layout, sink, depth + 1, mode, stack);
                            if p.id.is_some() {
                                stack.pop();
                            }
                            r?;
                        }
                    },
                }
            }
        }
        Shape::BackRef { depth: back } => {
            sink.tag(KIND_BACKREF);
            sink.word(back);
        }
    }
    Ok(())
}

/// Hashes the tokens exactly as [`TypeLayout::fingerprint`] does.
struct Hasher(u64);

impl Sink for Hasher {
    type Error = core::convert::Infallible;
    fn node(&mut self, _: usize) -> Result<(), Self::Error> {
        Ok(())
    }
    fn variant(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
    fn name(&mut self, s: &str) -> Result<(), Self::Error> {
        self.0 = hash_str(self.0, s);
        Ok(())
    }
    fn word(&mut self, v: u64) {
        self.0 = hash_u64(self.0, v);
    }
    fn tag(&mut self, t: u8) {
        self.0 = hash_u64(self.0, t as u64);
    }
    fn discriminant(&mut self, d: i128) {
        self.0 = hash_bytes(self.0, &d.to_le_bytes());
    }
}

/// The fingerprint of `t`, by the shared walk: containers' parameters by
/// size and alignment (what [`TypeLayout::fingerprint`] computes).
pub(super) fn fingerprint<T: Tree>(t: &T) -> u64 {
    let mut h = Hasher(hash_u64(FNV_OFFSET, FORMAT_SALT));
    match walk(t, &mut h, 1, Mode::Shallow, &mut Vec::new()) {
        Ok(()) => fmix(h.0),
        Err(never) => match never {},
    }
}

/// The fingerprint of `t`'s whole layout graph: containers' parameters
/// expanded (back references where a type contains itself). Equal to
/// [`fingerprint`] for a layout without containers; otherwise a hash of
/// the deep walk, salted apart from it.
pub(super) fn graph_fingerprint<T: Tree>(t: &T) -> u64 {
    if !has_container(t) {
        return fingerprint(t);
    }
    let mut h = Hasher(hash_u64(FNV_OFFSET, FORMAT_SALT ^ GRAPH_SALT));
    match walk(t, &mut h, 1, Mode::Deep, &mut Vec::new()) {
        Ok(()) => fmix(h.0),
        Err(never) => match never {},
    }
}

/// Keeps graph fingerprints apart from tree fingerprints.
const GRAPH_SALT: u64 = 0x6772_6170_6800_0000;

/// `true` if `t` holds a container (or a back reference) anywhere.
pub(super) fn has_container<T: Tree>(t: &T) -> bool {
    match t.shape() {
        Shape::Primitive => false,
        Shape::Struct { fields, .. } => fields.iter().any(|f| has_container(T::field(f).2)),
        Shape::Enum { .. } => false,
        Shape::Array { elem, .. } => has_container(elem),
        Shape::Opaque { params } => params.iter().any(|p| has_container(T::param(p))),
        Shape::Container { .. } | Shape::BackRef { .. } => true,
    }
}

/// An owned copy of `t`, containers' parameters expanded as the deep walk
/// expands them.
pub(super) fn to_desc<T: Tree>(t: &T) -> LayoutDesc {
    to_desc_in(t, &mut Vec::new())
}

fn to_desc_in<T: Tree>(t: &T, stack: &mut Vec<core::any::TypeId>) -> LayoutDesc {
    let kind = match t.shape() {
        Shape::Primitive => LayoutDescKind::Primitive,
        Shape::Struct {
            transparent,
            fields,
        } => LayoutDescKind::Struct {
            transparent,
            fields: fields
                .iter()
                .map(|f| {
                    let (name, offset, ty) = T::field(f);
                    FieldDesc {
                        name: name.to_string(),
                        offset,
                        ty: to_desc_in(ty, stack),
                    }
                })
                .collect(),
        },
        Shape::Enum { repr, variants } => LayoutDescKind::Enum {
            repr: Box::new(to_desc_in(repr, stack)),
            variants: variants
                .iter()
                .map(|v| {
                    let (name, discriminant) = T::variant(v);
                    VariantDesc {
                        name: name.to_string(),
                        discriminant,
                    }
                })
                .collect(),
        },
        Shape::Array { elem, len } => LayoutDescKind::Array {
            elem: Box::new(to_desc_in(elem, stack)),
            len,
        },
        Shape::Opaque { params } => LayoutDescKind::Opaque {
            params: params
                .iter()
                .map(|p| to_desc_in(T::param(p), stack))
                .collect(),
        },
        Shape::Container { params } => LayoutDescKind::Container {
            params: params
                .iter()
                .map(|p| {
                    let p = T::cparam(p);
                    match p.id.and_then(|id| stack.iter().rposition(|&s| s == id)) {
                        Some(at) => LayoutDesc {
                            name: p.layout.name().to_string(),
                            size: p.layout.size(),
                            align: p.layout.align(),
                            kind: LayoutDescKind::BackRef {
                                depth: (stack.len() - 1 - at) as u64,
                            },
                        },
                        None => {
                            if let Some(id) = p.id {
                                stack.push(id);
                            }
                            let d = to_desc_in(p.layout, stack);
                            if p.id.is_some() {
                                stack.pop();
                            }
                            d
                        }
                    }
                })
                .collect(),
        },
        Shape::BackRef { depth } => LayoutDescKind::BackRef { depth },
    };
    LayoutDesc {
        name: t.name().to_string(),
        size: t.size(),
        align: t.align(),
        kind,
    }
}

/// A short type expression: `Point`, `[u8; 16]`, `ShmMutex<u64>`.
pub(super) fn type_expr<T: Tree>(t: &T) -> String {
    match t.shape() {
        Shape::Array { elem, len } => format!("[{}; {len}]", type_expr(elem)),
        Shape::Opaque { params } if !params.is_empty() => {
            let inner: Vec<String> = params.iter().map(|p| type_expr(T::param(p))).collect();
            format!("{}<{}>", t.name(), inner.join(", "))
        }
        Shape::Container { params } if !params.is_empty() => {
            // A parameter is named, not expanded: it may be the type itself.
            let inner: Vec<String> = params
                .iter()
                .map(|p| type_expr(T::cparam(p).layout))
                .collect();
            format!("{}<{}>", t.name(), inner.join(", "))
        }
        _ => t.name().to_string(),
    }
}

/// The `Display` of a layout whose fingerprint is `fingerprint`: a header
/// line, then one line per field, nested types indented. Names are shown
/// through [`printable`](crate::inspect::printable): a layout read from a
/// segment may hold any bytes in them (a derived layout never has a
/// character that this changes).
pub(super) fn display<T: Tree>(t: &T, fingerprint: u64, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    writeln!(
        f,
        "{} (size {}, align {}, fingerprint {:#018x})",
        printable(&type_expr(t)),
        t.size(),
        t.align(),
        fingerprint
    )?;
    render(t, f, 2)
}

fn render<T: Tree>(t: &T, f: &mut fmt::Formatter<'_>, indent: usize) -> fmt::Result {
    match t.shape() {
        Shape::Struct { fields, .. } => {
            for field in fields {
                let (name, offset, ty) = T::field(field);
                writeln!(
                    f,
                    "{:indent$}{}: {} (offset {}, size {}, align {})",
                    "",
                    printable(name),
                    printable(&type_expr(ty)),
                    offset,
                    ty.size(),
                    ty.align(),
                )?;
                render(ty, f, indent + 2)?;
            }
            Ok(())
        }
        Shape::Enum { repr, variants } => {
            for v in variants {
                let (name, discriminant) = T::variant(v);
                writeln!(
                    f,
                    "{:indent$}{} = {} ({})",
                    "",
                    printable(name),
                    discriminant,
                    printable(repr.name())
                )?;
            }
            Ok(())
        }
        Shape::Array { elem, .. } => render(elem, f, indent),
        Shape::Opaque { params } => {
            for p in params {
                let p = T::param(p);
                if matches!(p.shape(), Shape::Struct { .. } | Shape::Enum { .. }) {
                    writeln!(f, "{:indent$}{}:", "", printable(&type_expr(p)))?;
                    render(p, f, indent + 2)?;
                }
            }
            Ok(())
        }
        // A container's parameters are named in its type expression; their
        // fields are not rendered again (a type may contain containers of
        // itself).
        Shape::Primitive | Shape::Container { .. } | Shape::BackRef { .. } => Ok(()),
    }
}
