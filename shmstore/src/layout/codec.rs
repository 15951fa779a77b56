//! The binary encoding of layouts: [`encode_layout`] and [`decode_layout`].
//! The format and the limits are documented in the [`layout`](super)
//! module, which re-exports what is public here.

use core::fmt;

use super::tree::{
    walk, Mode, Sink, Tree, KIND_ARRAY, KIND_BACKREF, KIND_CONTAINER, KIND_ENUM, KIND_OPAQUE,
    KIND_PRIMITIVE, KIND_STRUCT, KIND_TRANSPARENT,
};
use super::{FieldDesc, LayoutDesc, LayoutDescKind, TypeLayout, VariantDesc};

/// The version byte that starts every encoded layout.
pub const LAYOUT_FORMAT_VERSION: u8 = 1;
/// Layouts nest at most this deep (the root is at depth 1; a field's type,
/// an enum's repr, an array's element and an opaque type's parameter are
/// one deeper than their parent).
pub const MAX_LAYOUT_DEPTH: usize = 32;
/// A layout holds at most this many nodes (the root, and every field type,
/// enum repr, array element and type parameter, recursively).
pub const MAX_LAYOUT_NODES: usize = 4096;
/// A layout holds at most this many enum variants, over all its enums.
pub const MAX_LAYOUT_VARIANTS: usize = 65_536;
/// A type, field or variant name is at most this many bytes of UTF-8.
pub const MAX_LAYOUT_NAME_LEN: usize = 1024;

/// Fewest bytes a node takes: name length, size, align, kind tag.
const MIN_NODE: usize = 4;
/// Fewest bytes a struct field takes: name length, offset, its node.
const MIN_FIELD: usize = 2 + MIN_NODE;
/// Fewest bytes an enum variant takes: name length, discriminant.
const MIN_VARIANT: usize = 2;

/// A layout that [`encode_layout`] or [`LayoutDesc::encode`] cannot write,
/// because decoding would refuse it: it is beyond one of the
/// [limits](super#limits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutEncodeError {
    message: String,
}

impl LayoutEncodeError {
    /// What limit the layout exceeds.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for LayoutEncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "layout cannot be encoded: {}", self.message)
    }
}

impl std::error::Error for LayoutEncodeError {}

/// Bytes that [`decode_layout`] refused, with where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutDecodeError {
    offset: usize,
    message: String,
}

impl LayoutDecodeError {
    /// The byte offset in the input of the item that was refused (the
    /// input's length if it ended too early).
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// What was wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for LayoutDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid layout encoding at byte {}: {}",
            self.offset, self.message
        )
    }
}

impl std::error::Error for LayoutDecodeError {}

/// Encodes `layout` in the [format](super#format) that [`decode_layout`]
/// reads, in any process and any build.
///
/// Fails only if the layout is beyond the [limits](super#limits) that
/// decoding enforces, so whatever it returns decodes to a layout equal to
/// [`layout.to_desc()`](TypeLayout::to_desc), with the same fingerprint.
///
/// ```
/// use shmstore::layout::{decode_layout, encode_layout};
/// use shmstore::ShmSafe;
///
/// let bytes = encode_layout(<[u16; 4]>::LAYOUT)?;
/// assert_eq!(bytes[0], shmstore::layout::LAYOUT_FORMAT_VERSION);
/// let desc = decode_layout(&bytes)?;
/// assert_eq!(desc.type_expr(), "[u16; 4]");
/// assert_eq!(desc.fingerprint(), <[u16; 4]>::FINGERPRINT);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn encode_layout(layout: &TypeLayout) -> Result<Vec<u8>, LayoutEncodeError> {
    encode_tree(layout)
}

/// Encodes any layout tree (the one writer of the format).
pub(super) fn encode_tree<T: Tree>(t: &T) -> Result<Vec<u8>, LayoutEncodeError> {
    let mut enc = Encoder {
        out: vec![LAYOUT_FORMAT_VERSION],
        nodes: 0,
        variants: 0,
    };
    walk(t, &mut enc, 1, Mode::Deep, &mut Vec::new())?;
    Ok(enc.out)
}

struct Encoder {
    out: Vec<u8>,
    nodes: usize,
    variants: usize,
}

impl Sink for Encoder {
    type Error = LayoutEncodeError;

    fn node(&mut self, depth: usize) -> Result<(), LayoutEncodeError> {
        self.nodes += 1;
        if depth > MAX_LAYOUT_DEPTH {
            return Err(LayoutEncodeError {
                message: format!("it nests deeper than {MAX_LAYOUT_DEPTH} levels"),
            });
        }
        if self.nodes > MAX_LAYOUT_NODES {
            return Err(LayoutEncodeError {
                message: format!("it has more than {MAX_LAYOUT_NODES} nodes"),
            });
        }
        Ok(())
    }

    fn variant(&mut self) -> Result<(), LayoutEncodeError> {
        self.variants += 1;
        if self.variants > MAX_LAYOUT_VARIANTS {
            return Err(LayoutEncodeError {
                message: format!("it has more than {MAX_LAYOUT_VARIANTS} enum variants"),
            });
        }
        Ok(())
    }

    fn name(&mut self, s: &str) -> Result<(), LayoutEncodeError> {
        if s.len() > MAX_LAYOUT_NAME_LEN {
            return Err(LayoutEncodeError {
                message: format!(
                    "a name of {} bytes is longer than {MAX_LAYOUT_NAME_LEN}",
                    s.len()
                ),
            });
        }
        put_uvar(&mut self.out, s.len() as u64);
        self.out.extend_from_slice(s.as_bytes());
        Ok(())
    }

    fn word(&mut self, v: u64) {
        put_uvar(&mut self.out, v);
    }

    fn tag(&mut self, t: u8) {
        self.out.push(t);
    }

    fn discriminant(&mut self, d: i128) {
        // Zigzag: 0, -1, 1, -2, ... -> 0, 1, 2, 3, ...
        let mut v = ((d << 1) ^ (d >> 127)) as u128;
        while v >= 0x80 {
            self.out.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.out.push(v as u8);
    }
}

fn put_uvar(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Decodes a layout written by [`encode_layout`] (or
/// [`LayoutDesc::encode`]).
///
/// Any bytes may be passed: bytes that are not an encoded layout within the
/// [limits](super#limits) are an error naming the offending byte, never a
/// panic; the work and the memory it takes are bounded by the input's
/// length and the limits. Every layout has exactly one encoding (integers
/// in their shortest form, nothing after the root), so bytes that decode
/// re-encode to themselves.
pub fn decode_layout(bytes: &[u8]) -> Result<LayoutDesc, LayoutDecodeError> {
    let mut d = Decoder {
        bytes,
        pos: 0,
        nodes: 0,
        variants: 0,
    };
    let version = d.byte("the version byte")?;
    if version != LAYOUT_FORMAT_VERSION {
        return Err(d.error_at(
            0,
            format!(
                "format version {version}, but this build reads version {LAYOUT_FORMAT_VERSION}"
            ),
        ));
    }
    let root = d.node(1, 0)?;
    if d.pos != bytes.len() {
        return Err(d.error_at(
            d.pos,
            format!(
                "{} bytes follow the layout",
                bytes.len().saturating_sub(d.pos)
            ),
        ));
    }
    Ok(root)
}

struct Decoder<'a> {
    bytes: &'a [u8],
    /// The next byte to read; never past `bytes.len()`.
    pos: usize,
    nodes: usize,
    variants: usize,
}

type Decoded<T> = Result<T, LayoutDecodeError>;

impl Decoder<'_> {
    fn error_at(&self, offset: usize, message: String) -> LayoutDecodeError {
        LayoutDecodeError { offset, message }
    }

    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    fn byte(&mut self, what: &str) -> Decoded<u8> {
        match self.bytes.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(self.error_at(self.pos, format!("the input ends in {what}"))),
        }
    }

    /// An unsigned LEB128 integer of at most `bits` bits, in its shortest
    /// form.
    fn leb128(&mut self, bits: u32, what: &str) -> Decoded<u128> {
        let start = self.pos;
        let max_bytes = bits.div_ceil(7);
        let mut v: u128 = 0;
        for i in 0..max_bytes {
            let b = self.byte(what)?;
            let low = u128::from(b & 0x7f);
            let shift = 7 * i;
            // The last byte may only carry the bits that are left.
            if i + 1 == max_bytes && (b & 0x80 != 0 || low >> (bits - shift) != 0) {
                return Err(self.error_at(start, format!("{what} overflows {bits} bits")));
            }
            v |= low << shift;
            if b & 0x80 == 0 {
                if i > 0 && b == 0 {
                    return Err(self.error_at(start, format!("{what} is not in its shortest form")));
                }
                return Ok(v);
            }
        }
        // Not reached: the last byte either ends the number or is refused.
        Err(self.error_at(start, format!("{what} overflows {bits} bits")))
    }

    fn uvar(&mut self, what: &str) -> Decoded<u64> {
        // At most 64 bits, so the conversion cannot fail.
        let v = self.leb128(64, what)?;
        Ok(u64::try_from(v).unwrap_or(u64::MAX))
    }

    fn ivar(&mut self, what: &str) -> Decoded<i128> {
        let v = self.leb128(128, what)?;
        Ok((v >> 1) as i128 ^ -((v & 1) as i128))
    }

    fn name(&mut self, what: &str) -> Decoded<String> {
        let start = self.pos;
        let len = self.uvar(what)?;
        if len > MAX_LAYOUT_NAME_LEN as u64 {
            return Err(self.error_at(
                start,
                format!("{what} of {len} bytes is longer than {MAX_LAYOUT_NAME_LEN}"),
            ));
        }
        let len = len as usize;
        let Some(raw) = self.bytes.get(self.pos..self.pos.saturating_add(len)) else {
            return Err(self.error_at(self.bytes.len(), format!("the input ends in {what}")));
        };
        let s = core::str::from_utf8(raw).map_err(|e| {
            self.error_at(
                self.pos + e.valid_up_to(),
                format!("{what} is not valid UTF-8"),
            )
        })?;
        self.pos += len;
        Ok(s.to_owned())
    }

    /// A count of items that take at least `min_bytes` each, at most `max`.
    fn count(&mut self, what: &str, min_bytes: usize, max: usize) -> Decoded<usize> {
        let start = self.pos;
        let n = self.uvar(what)?;
        if n > max as u64 {
            return Err(self.error_at(start, format!("{n} {what} exceed the limit of {max}")));
        }
        let n = n as usize;
        if n > self.remaining() / min_bytes {
            return Err(self.error_at(
                start,
                format!(
                    "{n} {what} cannot fit in the {} bytes left",
                    self.remaining()
                ),
            ));
        }
        Ok(n)
    }

    /// A node at `depth`, inside `inside` container parameters (how far
    /// back a back reference may point).
    fn node(&mut self, depth: usize, inside: u64) -> Decoded<LayoutDesc> {
        let start = self.pos;
        if depth > MAX_LAYOUT_DEPTH {
            return Err(self.error_at(
                start,
                format!("layouts nest deeper than {MAX_LAYOUT_DEPTH} levels"),
            ));
        }
        self.nodes += 1;
        if self.nodes > MAX_LAYOUT_NODES {
            return Err(self.error_at(start, format!("more than {MAX_LAYOUT_NODES} layout nodes")));
        }
        let name = self.name("a type name")?;
        let size = self.uvar("a size")?;
        let align = self.uvar("an alignment")?;
        let tag_at = self.pos;
        let kind = match self.byte("a kind tag")? {
            KIND_PRIMITIVE => LayoutDescKind::Primitive,
            tag @ (KIND_STRUCT | KIND_TRANSPARENT) => {
                let n = self.count("fields", MIN_FIELD, MAX_LAYOUT_NODES)?;
                let mut fields = Vec::with_capacity(n);
                for _ in 0..n {
                    let name = self.name("a field name")?;
                    let offset = self.uvar("a field offset")?;
                    let ty = self.node(depth + 1, inside)?;
                    fields.push(FieldDesc { name, offset, ty });
                }
                LayoutDescKind::Struct {
                    transparent: tag == KIND_TRANSPARENT,
                    fields,
                }
            }
            KIND_ENUM => {
                let repr = Box::new(self.node(depth + 1, inside)?);
                let n = self.count("variants", MIN_VARIANT, MAX_LAYOUT_VARIANTS)?;
                let mut variants = Vec::with_capacity(n);
                for _ in 0..n {
                    let at = self.pos;
                    self.variants += 1;
                    if self.variants > MAX_LAYOUT_VARIANTS {
                        return Err(self.error_at(
                            at,
                            format!("more than {MAX_LAYOUT_VARIANTS} enum variants"),
                        ));
                    }
                    let name = self.name("a variant name")?;
                    let discriminant = self.ivar("a discriminant")?;
                    variants.push(VariantDesc { name, discriminant });
                }
                LayoutDescKind::Enum { repr, variants }
            }
            KIND_ARRAY => {
                let len = self.uvar("an array length")?;
                let elem = Box::new(self.node(depth + 1, inside)?);
                LayoutDescKind::Array { elem, len }
            }
            KIND_OPAQUE => {
                let n = self.count("type parameters", MIN_NODE, MAX_LAYOUT_NODES)?;
                let mut params = Vec::with_capacity(n);
                for _ in 0..n {
                    params.push(self.node(depth + 1, inside)?);
                }
                LayoutDescKind::Opaque { params }
            }
            KIND_CONTAINER => {
                let n = self.count("container parameters", MIN_NODE, MAX_LAYOUT_NODES)?;
                let mut params = Vec::with_capacity(n);
                for _ in 0..n {
                    params.push(self.node(depth + 1, inside + 1)?);
                }
                LayoutDescKind::Container { params }
            }
            KIND_BACKREF => {
                let at = self.pos;
                let back = self.uvar("a back reference")?;
                if back >= inside {
                    return Err(self.error_at(
                        at,
                        format!(
                            "a back reference {back} levels up, inside only {inside} container \
                             parameters"
                        ),
                    ));
                }
                LayoutDescKind::BackRef { depth: back }
            }
            other => return Err(self.error_at(tag_at, format!("unknown kind tag {other}"))),
        };
        Ok(LayoutDesc {
            name,
            size,
            align,
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{zoo, ShmSafe};
    use super::*;
    use crate::arena::tests::Rng;

    fn primitive(name: &str, size: u64) -> LayoutDesc {
        LayoutDesc {
            name: name.into(),
            size,
            align: size.max(1),
            kind: LayoutDescKind::Primitive,
        }
    }

    fn strukt(name: &str, fields: Vec<FieldDesc>) -> LayoutDesc {
        LayoutDesc {
            name: name.into(),
            size: 0,
            align: 1,
            kind: LayoutDescKind::Struct {
                transparent: false,
                fields,
            },
        }
    }

    fn array_of(elem: LayoutDesc, len: u64) -> LayoutDesc {
        LayoutDesc {
            name: "array".into(),
            size: elem.size * len,
            align: elem.align,
            kind: LayoutDescKind::Array {
                elem: Box::new(elem),
                len,
            },
        }
    }

    /// `depth` nested arrays around a `u8` (`depth + 1` levels).
    fn nested_arrays(depth: usize) -> LayoutDesc {
        (0..depth).fold(primitive("u8", 1), |d, _| array_of(d, 1))
    }

    fn enum_of(variants: usize) -> LayoutDesc {
        LayoutDesc {
            name: "E".into(),
            size: 4,
            align: 4,
            kind: LayoutDescKind::Enum {
                repr: Box::new(primitive("u32", 4)),
                variants: (0..variants)
                    .map(|i| VariantDesc {
                        name: "V".into(),
                        discriminant: i as i128,
                    })
                    .collect(),
            },
        }
    }

    fn err(bytes: &[u8]) -> LayoutDecodeError {
        match decode_layout(bytes) {
            Ok(d) => panic!("{bytes:02x?} decoded to {d:?}"),
            Err(e) => {
                assert!(e.offset() <= bytes.len(), "{e}");
                e
            }
        }
    }

    fn assert_refused(bytes: &[u8], part: &str) {
        let e = err(bytes);
        assert!(e.message().contains(part), "{part:?} not in {e}");
    }

    #[test]
    fn every_zoo_layout_round_trips_with_its_fingerprint() {
        for layout in zoo::all() {
            let bytes = encode_layout(layout).unwrap();
            assert_eq!(bytes[0], LAYOUT_FORMAT_VERSION);
            let desc = decode_layout(&bytes).unwrap();
            assert_eq!(desc, layout.to_desc());
            assert_eq!(desc.fingerprint(), layout.fingerprint());
            assert_eq!(desc.to_string(), layout.to_string());
            assert_eq!(desc.encode().unwrap(), bytes, "one writer, one encoding");
        }
    }

    #[test]
    fn a_small_array_is_encoded_as_the_module_docs_show() {
        let bytes = encode_layout(<[u16; 2]>::LAYOUT).unwrap();
        let mut expected = vec![1, 5];
        expected.extend_from_slice(b"array");
        expected.extend_from_slice(&[4, 2, 5, 2, 3]);
        expected.extend_from_slice(b"u16");
        expected.extend_from_slice(&[2, 2, 1]);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn extreme_integers_round_trip() {
        let mut d = enum_of(0);
        d.size = u64::MAX;
        d.align = 1 << 63;
        if let LayoutDescKind::Enum { variants, .. } = &mut d.kind {
            for discriminant in [i128::MIN, i128::MIN + 1, -1, 0, 1, 63, -64, 64, i128::MAX] {
                variants.push(VariantDesc {
                    name: String::new(),
                    discriminant,
                });
            }
        }
        let bytes = d.encode().unwrap();
        assert_eq!(decode_layout(&bytes).unwrap(), d);
        let a = array_of(primitive("", 0), u64::MAX);
        assert_eq!(decode_layout(&a.encode().unwrap()).unwrap(), a);
    }

    #[test]
    fn truncation_at_every_byte_is_an_error() {
        let zoo = zoo::all();
        let layouts = if cfg!(miri) {
            &zoo[zoo.len() - 3..]
        } else {
            &zoo[..]
        };
        for layout in layouts {
            let bytes = encode_layout(layout).unwrap();
            for cut in 0..bytes.len() {
                // Either the input ends in an item, or a count is found to
                // need more than the bytes left.
                let e = err(&bytes[..cut]);
                assert!(
                    e.message().starts_with("the input ends") || e.message().contains("cannot fit"),
                    "{cut}: {e}"
                );
            }
        }
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = encode_layout(u64::LAYOUT).unwrap();
        bytes.push(0);
        let e = err(&bytes);
        assert_eq!(e.offset(), bytes.len() - 1);
        assert!(e.message().contains("1 bytes follow"), "{e}");
    }

    #[test]
    fn unknown_versions_and_kind_tags_are_refused() {
        let good = encode_layout(u64::LAYOUT).unwrap();
        for version in [0u8, 2, 0x81, 0xff] {
            let mut b = good.clone();
            b[0] = version;
            assert_refused(&b, "format version");
        }
        // 01 | 03 "u64" 08 08 <tag>
        let tag_at = good.len() - 1;
        assert_eq!(good[tag_at], KIND_PRIMITIVE);
        for tag in [0u8, 9, 0x80, 0xff] {
            let mut b = good.clone();
            b[tag_at] = tag;
            let e = err(&b);
            assert_eq!(e.offset(), tag_at);
            assert!(e.message().contains("unknown kind tag"), "{e}");
        }
    }

    #[test]
    fn huge_counts_are_refused_before_anything_is_allocated_for_them() {
        let head = |tag: u8| {
            let mut b = vec![LAYOUT_FORMAT_VERSION, 1, b'S', 0, 1, tag];
            b.shrink_to_fit();
            b
        };
        for tag in [KIND_STRUCT, KIND_TRANSPARENT, KIND_OPAQUE] {
            // u64::MAX, over the node limit, and more than the input holds.
            let mut b = head(tag);
            b.extend_from_slice(&[0xff; 9]);
            b.push(0x01);
            assert_refused(&b, "exceed the limit");
            let mut b = head(tag);
            put_uvar(&mut b, MAX_LAYOUT_NODES as u64 + 1);
            assert_refused(&b, "exceed the limit");
            let mut b = head(tag);
            put_uvar(&mut b, 100);
            b.extend_from_slice(&[0; 50]);
            assert_refused(&b, "cannot fit");
        }
        let mut b = head(KIND_ENUM);
        b.extend_from_slice(&encode_layout(u8::LAYOUT).unwrap()[1..]);
        let variants_at = b.len();
        put_uvar(&mut b, MAX_LAYOUT_VARIANTS as u64 + 1);
        assert_refused(&b, "exceed the limit");
        b.truncate(variants_at);
        put_uvar(&mut b, 1000);
        b.extend_from_slice(&[0; 1000]);
        assert_refused(&b, "cannot fit");
        // An array length is not a count: nothing is allocated for it.
        let a = array_of(primitive("u8", 1), u64::MAX);
        assert_eq!(decode_layout(&a.encode().unwrap()).unwrap(), a);
    }

    #[test]
    fn long_names_are_refused_by_both_sides() {
        let at_limit = primitive(&"n".repeat(MAX_LAYOUT_NAME_LEN), 1);
        let bytes = at_limit.encode().unwrap();
        assert_eq!(decode_layout(&bytes).unwrap(), at_limit);
        let over = primitive(&"n".repeat(MAX_LAYOUT_NAME_LEN + 1), 1);
        assert!(over.encode().unwrap_err().message().contains("longer than"));
        // The same bytes, written by hand: refused at the length, before
        // the name is read.
        let mut b = vec![LAYOUT_FORMAT_VERSION];
        put_uvar(&mut b, MAX_LAYOUT_NAME_LEN as u64 + 1);
        b.extend_from_slice(over.name.as_bytes());
        b.extend_from_slice(&[1, 1, KIND_PRIMITIVE]);
        let e = err(&b);
        assert_eq!(e.offset(), 1);
        assert!(e.message().contains("longer than"), "{e}");
        let mut b = vec![LAYOUT_FORMAT_VERSION];
        b.extend_from_slice(&[0xff; 9]);
        b.push(0x01);
        assert_refused(&b, "longer than");
    }

    #[test]
    fn names_that_are_not_utf8_are_refused() {
        for bad in [
            &[0xff][..],
            &[b'a', 0x80],
            &[0xc3],             // a two-byte sequence cut short
            &[0xed, 0xa0, 0x80], // a UTF-16 surrogate
            &[0xf4, 0x90, 0x80, 0x80],
            &[0xc0, 0x80], // an overlong NUL
        ] {
            let mut b = vec![LAYOUT_FORMAT_VERSION, bad.len() as u8];
            b.extend_from_slice(bad);
            b.extend_from_slice(&[1, 1, KIND_PRIMITIVE]);
            assert_refused(&b, "not valid UTF-8");
            // In a field name and a variant name too.
            let mut s = vec![LAYOUT_FORMAT_VERSION, 1, b'S', 0, 1, KIND_STRUCT, 1];
            s.push(bad.len() as u8);
            s.extend_from_slice(bad);
            s.extend_from_slice(&encode_layout(u8::LAYOUT).unwrap()[1..]);
            assert_refused(&s, "field name is not valid UTF-8");
        }
        let unicode = primitive("Größe→📏", 1);
        assert_eq!(decode_layout(&unicode.encode().unwrap()).unwrap(), unicode);
    }

    #[test]
    fn integers_must_be_in_their_shortest_form_and_fit() {
        // `01 | 00 <size> 01 01`: an unnamed primitive of size <size>.
        let with_size = |size: &[u8]| {
            let mut b = vec![LAYOUT_FORMAT_VERSION, 0];
            b.extend_from_slice(size);
            b.extend_from_slice(&[1, KIND_PRIMITIVE]);
            b
        };
        assert_eq!(decode_layout(&with_size(&[0x7f])).unwrap().size, 127);
        assert_eq!(decode_layout(&with_size(&[0x80, 0x01])).unwrap().size, 128);
        let mut max = vec![0xff; 9];
        max.push(0x01);
        assert_eq!(decode_layout(&with_size(&max)).unwrap().size, u64::MAX);
        assert_refused(&with_size(&[0x80, 0x00]), "shortest form");
        assert_refused(&with_size(&[0xff, 0x80, 0x00]), "shortest form");
        let mut over = vec![0xff; 9];
        over.push(0x02);
        assert_refused(&with_size(&over), "overflows 64 bits");
        let mut long = vec![0x80; 10];
        long.push(0x00);
        assert_refused(&with_size(&long), "overflows 64 bits");
        // Discriminants: 19 bytes at most, 2 bits in the last.
        let mut e = vec![LAYOUT_FORMAT_VERSION, 1, b'E', 1, 1, KIND_ENUM];
        e.extend_from_slice(&encode_layout(u8::LAYOUT).unwrap()[1..]);
        e.extend_from_slice(&[1, 0]); // one variant, unnamed
        let with_discriminant = |d: &[u8]| {
            let mut b = e.clone();
            b.extend_from_slice(d);
            b
        };
        let mut top = vec![0xff; 18];
        top.push(0x03);
        let desc = decode_layout(&with_discriminant(&top)).unwrap();
        match desc.kind {
            LayoutDescKind::Enum { variants, .. } => {
                assert_eq!(variants[0].discriminant, i128::MIN)
            }
            other => panic!("{other:?}"),
        }
        let mut over = vec![0xff; 18];
        over.push(0x04);
        assert_refused(&with_discriminant(&over), "overflows 128 bits");
        assert_refused(&with_discriminant(&[0x81, 0x00]), "shortest form");
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_refused_by_both_sides() {
        let at_limit = nested_arrays(MAX_LAYOUT_DEPTH - 1);
        let bytes = at_limit.encode().unwrap();
        assert_eq!(decode_layout(&bytes).unwrap(), at_limit);
        let over = nested_arrays(MAX_LAYOUT_DEPTH);
        let e = over.encode().unwrap_err();
        assert!(e.message().contains("deeper"), "{e}");
        // Written by hand, far deeper than any stack would take if decoding
        // recursed without a bound: each level is `00 00 01 05 01`
        // (unnamed, size 0, align 1, an array of 1).
        let levels = if cfg!(miri) { 1000 } else { 1_000_000 };
        let mut b = vec![LAYOUT_FORMAT_VERSION];
        for _ in 0..levels {
            b.extend_from_slice(&[0, 0, 1, KIND_ARRAY, 1]);
        }
        b.extend_from_slice(&[0, 0, 1, KIND_PRIMITIVE]);
        let e = err(&b);
        assert!(e.message().contains("deeper than 32"), "{e}");
        assert_eq!(e.offset(), 1 + 5 * MAX_LAYOUT_DEPTH);
        // Through every kind that nests: struct fields, enum reprs, opaque
        // parameters.
        let mut d = primitive("u8", 1);
        for i in 0..MAX_LAYOUT_DEPTH {
            d = match i % 3 {
                0 => strukt(
                    "S",
                    vec![FieldDesc {
                        name: "f".into(),
                        offset: 0,
                        ty: d,
                    }],
                ),
                1 => LayoutDesc {
                    name: "O".into(),
                    size: 0,
                    align: 1,
                    kind: LayoutDescKind::Opaque { params: vec![d] },
                },
                _ => LayoutDesc {
                    name: "E".into(),
                    size: 1,
                    align: 1,
                    kind: LayoutDescKind::Enum {
                        repr: Box::new(d),
                        variants: vec![],
                    },
                },
            };
        }
        assert!(d.encode().unwrap_err().message().contains("deeper"));
        if let LayoutDescKind::Enum { repr, .. } = d.kind {
            let ok = *repr;
            assert_eq!(decode_layout(&ok.encode().unwrap()).unwrap(), ok);
        }
    }

    #[test]
    fn more_nodes_than_the_limit_are_refused_by_both_sides() {
        if cfg!(miri) {
            return; // 4096 nodes, several times: too slow under Miri.
        }
        let fields = |n: usize| {
            strukt(
                "Wide",
                (0..n)
                    .map(|i| FieldDesc {
                        name: String::new(),
                        offset: i as u64,
                        ty: primitive("u8", 1),
                    })
                    .collect(),
            )
        };
        let at_limit = fields(MAX_LAYOUT_NODES - 1);
        let bytes = at_limit.encode().unwrap();
        assert_eq!(decode_layout(&bytes).unwrap(), at_limit);
        let e = fields(MAX_LAYOUT_NODES).encode().unwrap_err();
        assert!(e.message().contains("more than 4096 nodes"), "{e}");
        // Spread over several structs (each count is under the limit), and
        // written by hand.
        let two = strukt(
            "Two",
            (0..2)
                .map(|_| FieldDesc {
                    name: String::new(),
                    offset: 0,
                    ty: fields(MAX_LAYOUT_NODES / 2),
                })
                .collect(),
        );
        assert!(two.encode().is_err());
        let mut b = vec![
            LAYOUT_FORMAT_VERSION,
            3,
            b'T',
            b'w',
            b'o',
            0,
            1,
            KIND_STRUCT,
            2,
        ];
        for _ in 0..2 {
            b.extend_from_slice(&[0, 0]); // unnamed field at offset 0
            b.extend_from_slice(&fields(MAX_LAYOUT_NODES / 2).encode().unwrap()[1..]);
        }
        assert_refused(&b, "more than 4096 layout nodes");
    }

    #[test]
    fn more_variants_than_the_limit_are_refused_by_both_sides() {
        if cfg!(miri) {
            return; // 65,536 variants: too slow under Miri.
        }
        let e = enum_of(MAX_LAYOUT_VARIANTS + 1).encode().unwrap_err();
        assert!(e.message().contains("enum variants"), "{e}");
        let at_limit = enum_of(MAX_LAYOUT_VARIANTS);
        assert_eq!(
            decode_layout(&at_limit.encode().unwrap()).unwrap(),
            at_limit
        );
        // Two enums, each under the limit, over it together.
        let half = MAX_LAYOUT_VARIANTS / 2 + 1;
        let two = LayoutDesc {
            name: "Pair".into(),
            size: 8,
            align: 4,
            kind: LayoutDescKind::Opaque {
                params: vec![enum_of(half), enum_of(half)],
            },
        };
        assert!(two.encode().is_err());
        let mut b = vec![LAYOUT_FORMAT_VERSION, 0, 8, 4, KIND_OPAQUE, 2];
        for _ in 0..2 {
            b.extend_from_slice(&enum_of(half).encode().unwrap()[1..]);
        }
        assert_refused(&b, "more than 65536 enum variants");
    }

    /// Mutates `bytes` in one of several ways, some structure-aware.
    fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
        let len = bytes.len().max(1);
        let at = (rng.next() % len as u64) as usize;
        match rng.next() % 8 {
            0 => {
                if let Some(b) = bytes.get_mut(at) {
                    *b ^= 1 << (rng.next() % 8);
                }
            }
            1 => {
                if let Some(b) = bytes.get_mut(at) {
                    *b = rng.next() as u8;
                }
            }
            // Small numbers are counts, lengths and tags: the interesting
            // values for the decoder.
            2 => {
                if let Some(b) = bytes.get_mut(at) {
                    *b = (rng.next() % 8) as u8;
                }
            }
            3 => bytes.insert(at.min(bytes.len()), rng.next() as u8),
            4 => {
                if at < bytes.len() {
                    bytes.remove(at);
                }
            }
            5 => bytes.truncate(at),
            6 => {
                // Duplicate a run (a repeated field or node).
                let end = (at + 1 + (rng.next() % 16) as usize).min(bytes.len());
                let run = bytes[at.min(end)..end].to_vec();
                let to = (rng.next() % (bytes.len() as u64 + 1)) as usize;
                bytes.splice(to..to, run);
            }
            _ => {
                if let Some(b) = bytes.get_mut(at) {
                    *b = 0x80 | rng.next() as u8; // a continuation byte
                }
            }
        }
    }

    /// Decoding never panics; whatever decodes is canonical (it re-encodes
    /// to the same bytes) and can be fingerprinted and rendered.
    #[test]
    fn mutated_encodings_are_errors_or_canonical_layouts() {
        let seeds: Vec<Vec<u8>> = zoo::all()
            .into_iter()
            .map(|l| encode_layout(l).unwrap())
            .collect();
        let mut rng = Rng(0x5eed_1a70_u64);
        let rounds = if cfg!(miri) { 200 } else { 20_000 };
        let (mut decoded, mut refused) = (0, 0);
        for _ in 0..rounds {
            let mut b = seeds[(rng.next() % seeds.len() as u64) as usize].clone();
            for _ in 0..1 + rng.next() % 4 {
                mutate(&mut rng, &mut b);
            }
            match decode_layout(&b) {
                Ok(d) => {
                    decoded += 1;
                    assert_eq!(d.encode().as_deref(), Ok(&b[..]), "{d:?}");
                    let _ = (d.fingerprint(), d.to_string(), d.type_expr());
                }
                Err(e) => {
                    refused += 1;
                    assert!(e.offset() <= b.len(), "{e}");
                }
            }
        }
        // Both outcomes are exercised.
        assert!(
            decoded > 0 && refused > 0,
            "{decoded} decoded, {refused} refused"
        );
    }

    #[test]
    fn random_bytes_are_errors_or_canonical_layouts() {
        let mut rng = Rng(0x000b_17e5_u64);
        let rounds = if cfg!(miri) { 200 } else { 20_000 };
        for i in 0..rounds {
            let len = (rng.next() % 40) as usize;
            let mut b: Vec<u8> = (0..len).map(|_| (rng.next() % 10) as u8).collect();
            if i % 2 == 0 {
                if let Some(v) = b.first_mut() {
                    *v = LAYOUT_FORMAT_VERSION;
                }
            }
            if let Ok(d) = decode_layout(&b) {
                assert_eq!(d.encode().as_deref(), Ok(&b[..]), "{d:?}");
            }
        }
    }
}
