//! The binary encoding of layouts that a store's type registry keeps:
//!
//! - arbitrary bytes through `decode_layout` never panic, and whatever
//!   decodes is canonical: it re-encodes to the same bytes, decodes again
//!   to an equal layout, and can be fingerprinted and rendered;
//! - layouts built from the input (every kind, back references included,
//!   within the limits) encode, decode to an equal layout, and keep their
//!   fingerprint, graph fingerprint and rendering;
//! - the zoo's types registered in a store read back from its registry
//!   equal to their compile-time layouts, with their fingerprints.
//!
//! Input: one byte choosing the part (below 128: raw bytes to decode;
//! below 192: a layout to build; else a zoo type), then its bytes.
#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use shmstore::layout::{decode_layout, FieldDesc, LayoutDesc, LayoutDescKind, VariantDesc};
use shmstore_fuzz::zoo;

fuzz_target!(|data: &[u8]| {
    let Some((&part, rest)) = data.split_first() else {
        return;
    };
    if part < 128 {
        decode_arbitrary(rest);
    } else if part < 192 {
        let mut u = Unstructured::new(rest);
        let mut nodes = 0;
        if let Ok(d) = layout(&mut u, 1, 0, &mut nodes) {
            round_trip(&d);
        }
    } else {
        shmstore_fuzz::ops::install_page_hooks();
        let zoo = zoo::all();
        let t = &zoo[rest.first().copied().unwrap_or(0) as usize % zoo.len()];
        (t.registry)();
    }
});

fn decode_arbitrary(bytes: &[u8]) {
    match decode_layout(bytes) {
        Ok(d) => {
            assert_eq!(d.encode().as_deref(), Ok(bytes), "not canonical: {d:?}");
            assert_eq!(decode_layout(bytes).as_ref(), Ok(&d));
            let _ = (d.fingerprint(), d.graph_fingerprint(), d.has_containers());
            let _ = (d.to_string(), d.type_expr());
        }
        Err(e) => assert!(e.offset() <= bytes.len(), "{e}"),
    }
}

fn round_trip(d: &LayoutDesc) {
    let bytes = match d.encode() {
        Ok(b) => b,
        // Only beyond the limits, which `layout` stays within.
        Err(e) => panic!("{e}: {d:?}"),
    };
    let back = decode_layout(&bytes).unwrap_or_else(|e| panic!("{e}: {d:?}"));
    assert_eq!(&back, d);
    assert_eq!(back.fingerprint(), d.fingerprint());
    assert_eq!(back.graph_fingerprint(), d.graph_fingerprint());
    assert_eq!(back.to_string(), d.to_string());
    assert_eq!(back.type_expr(), d.type_expr());
    assert_eq!(back.encode().as_deref(), Ok(&bytes[..]), "one encoding");
}

fn name(u: &mut Unstructured<'_>) -> Result<String> {
    let n = u.int_in_range(0..=12u8)?;
    let mut s = String::new();
    for _ in 0..n {
        s.push(*u.choose(&['a', 'Z', '_', '0', ':', 'é', '→', '📏', ' '])?);
    }
    Ok(s)
}

/// A layout at `depth` (at most 8), inside `inside` container parameters,
/// of at most 200 nodes in all.
fn layout(
    u: &mut Unstructured<'_>,
    depth: usize,
    inside: u64,
    nodes: &mut usize,
) -> Result<LayoutDesc> {
    *nodes += 1;
    let leaf = depth >= 8 || *nodes >= 200;
    let tag = if leaf { 0 } else { u.int_in_range(0..=6u8)? };
    let kind = match tag {
        0 => LayoutDescKind::Primitive,
        1 => {
            let mut fields = Vec::new();
            for _ in 0..u.int_in_range(0..=4u8)? {
                fields.push(FieldDesc {
                    name: name(u)?,
                    offset: u.arbitrary()?,
                    ty: layout(u, depth + 1, inside, nodes)?,
                });
            }
            LayoutDescKind::Struct {
                transparent: u.arbitrary()?,
                fields,
            }
        }
        2 => {
            let repr = Box::new(layout(u, depth + 1, inside, nodes)?);
            let mut variants = Vec::new();
            for _ in 0..u.int_in_range(0..=6u8)? {
                variants.push(VariantDesc {
                    name: name(u)?,
                    discriminant: u.arbitrary()?,
                });
            }
            LayoutDescKind::Enum { repr, variants }
        }
        3 => LayoutDescKind::Array {
            len: u.arbitrary()?,
            elem: Box::new(layout(u, depth + 1, inside, nodes)?),
        },
        4 => {
            let mut params = Vec::new();
            for _ in 0..u.int_in_range(0..=3u8)? {
                params.push(layout(u, depth + 1, inside, nodes)?);
            }
            LayoutDescKind::Opaque { params }
        }
        5 => {
            let mut params = Vec::new();
            for _ in 0..u.int_in_range(0..=2u8)? {
                params.push(layout(u, depth + 1, inside + 1, nodes)?);
            }
            LayoutDescKind::Container { params }
        }
        _ if inside > 0 => LayoutDescKind::BackRef {
            depth: u.int_in_range(0..=inside - 1)?,
        },
        _ => LayoutDescKind::Primitive,
    };
    Ok(LayoutDesc {
        name: name(u)?,
        size: u.arbitrary()?,
        align: u.arbitrary()?,
        kind,
    })
}
