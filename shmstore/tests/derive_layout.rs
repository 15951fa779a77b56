//! Layouts produced by `#[derive(ShmSafe)]`: names, sizes, offsets, kinds.

use core::marker::PhantomData;
use core::mem::{align_of, offset_of, size_of};
use core::sync::atomic::AtomicU32;

use shmstore::{FieldLayout, LayoutKind, ShmSafe, TypeLayout, VariantLayout};

#[derive(ShmSafe)]
#[repr(C)]
struct Point {
    x: f64,
    y: f64,
}

#[derive(ShmSafe)]
#[repr(C)]
struct Mixed {
    a: u8,
    b: u32,
    c: u16,
    d: [u8; 3],
    e: AtomicU32,
}

#[derive(ShmSafe)]
#[repr(C)]
struct Tuple(u16, u64, i8);

#[derive(ShmSafe)]
#[repr(C)]
struct Unit;

#[derive(ShmSafe)]
#[repr(C)]
struct Empty {}

#[derive(ShmSafe)]
#[repr(transparent)]
struct Meters(f64);

#[derive(ShmSafe)]
#[repr(transparent)]
struct Tagged<T> {
    value: u32,
    _marker: PhantomData<T>,
}

#[derive(ShmSafe)]
#[repr(C, align(64))]
struct CacheLine {
    counter: u64,
}

#[derive(ShmSafe)]
#[repr(C)]
struct Line {
    from: Point,
    to: Point,
    color: [u8; 4],
}

#[derive(ShmSafe)]
#[repr(C)]
struct Pair<A, B> {
    first: A,
    second: B,
}

#[derive(ShmSafe)]
#[repr(C)]
struct Buffer<T, const N: usize> {
    len: u32,
    items: [T; N],
}

#[derive(ShmSafe)]
#[repr(C)]
struct Wrapper<T>
where
    T: Copy,
{
    inner: Pair<T, u8>,
}

#[allow(non_camel_case_types)]
#[derive(ShmSafe)]
#[repr(C)]
struct r#type {
    r#match: u8,
}

fn fields(layout: &TypeLayout) -> &'static [FieldLayout] {
    match layout.kind {
        LayoutKind::Struct { fields, .. } => fields,
        other => panic!("not a struct: {other:?}"),
    }
}

fn is_transparent(layout: &TypeLayout) -> bool {
    match layout.kind {
        LayoutKind::Struct { transparent, .. } => transparent,
        other => panic!("not a struct: {other:?}"),
    }
}

/// `(name, offset, field type name)` of every field.
fn summary(layout: &TypeLayout) -> Vec<(&'static str, usize, String)> {
    fields(layout)
        .iter()
        .map(|f| (f.name, f.offset, f.ty.type_expr()))
        .collect()
}

#[test]
fn named_struct_records_name_size_align_and_fields() {
    let layout = Point::LAYOUT;
    assert_eq!(layout.name, "Point");
    assert_eq!(layout.size, 16);
    assert_eq!(layout.align, 8);
    assert!(!is_transparent(layout));
    assert_eq!(
        summary(layout),
        vec![("x", 0, "f64".to_string()), ("y", 8, "f64".to_string())]
    );
    assert_eq!(fields(layout)[0].ty, f64::LAYOUT);
    const { assert!(!Point::HAS_INVALID_BIT_PATTERNS) };
}

#[test]
fn offsets_follow_repr_c_padding() {
    let layout = Mixed::LAYOUT;
    assert_eq!(layout.size, size_of::<Mixed>());
    assert_eq!(layout.size, 20);
    assert_eq!(layout.align, 4);
    assert_eq!(
        summary(layout),
        vec![
            ("a", 0, "u8".to_string()),
            ("b", 4, "u32".to_string()),
            ("c", 8, "u16".to_string()),
            ("d", 10, "[u8; 3]".to_string()),
            ("e", 16, "AtomicU32".to_string()),
        ]
    );
    assert_eq!(fields(layout)[1].offset, offset_of!(Mixed, b));
    assert_eq!(fields(layout)[4].offset, offset_of!(Mixed, e));
    match fields(layout)[3].ty.kind {
        LayoutKind::Array { elem, len } => {
            assert_eq!(elem, u8::LAYOUT);
            assert_eq!(len, 3);
        }
        other => panic!("not an array: {other:?}"),
    }
}

#[test]
fn tuple_struct_fields_are_numbered() {
    let layout = Tuple::LAYOUT;
    assert_eq!(layout.name, "Tuple");
    assert_eq!(layout.size, 24);
    assert_eq!(
        summary(layout),
        vec![
            ("0", 0, "u16".to_string()),
            ("1", 8, "u64".to_string()),
            ("2", 16, "i8".to_string()),
        ]
    );
}

#[test]
fn unit_and_empty_structs_have_no_fields() {
    for (layout, name) in [(Unit::LAYOUT, "Unit"), (Empty::LAYOUT, "Empty")] {
        assert_eq!(layout.name, name);
        assert_eq!(layout.size, 0);
        assert_eq!(layout.align, 1);
        assert!(fields(layout).is_empty());
    }
    const { assert!(!Unit::HAS_INVALID_BIT_PATTERNS) };
    // Same shape, different names: different fingerprints.
    assert_ne!(Unit::FINGERPRINT, Empty::FINGERPRINT);
}

#[test]
fn transparent_structs_are_marked() {
    let layout = Meters::LAYOUT;
    assert!(is_transparent(layout));
    assert_eq!(layout.size, 8);
    assert_eq!(summary(layout), vec![("0", 0, "f64".to_string())]);

    let layout = <Tagged<u64>>::LAYOUT;
    assert!(is_transparent(layout));
    assert_eq!(layout.size, 4);
    assert_eq!(
        summary(layout),
        vec![
            ("value", 0, "u32".to_string()),
            (
                "_marker",
                offset_of!(Tagged<u64>, _marker),
                "PhantomData<u64>".to_string()
            )
        ]
    );
    // Regression: the marker's parameter is part of the layout, so two
    // instances that differ only in it fingerprint differently.
    assert_ne!(<Tagged<u64>>::FINGERPRINT, <Tagged<i64>>::FINGERPRINT);
}

#[test]
fn explicit_alignment_is_recorded() {
    let layout = CacheLine::LAYOUT;
    assert_eq!(layout.align, 64);
    assert_eq!(layout.size, 64);
    assert_eq!(layout.align, align_of::<CacheLine>());
}

#[test]
fn nested_structs_carry_their_layouts() {
    let layout = Line::LAYOUT;
    assert_eq!(layout.size, 36 + 4);
    let f = fields(layout);
    assert_eq!((f[0].name, f[0].offset), ("from", 0));
    assert_eq!((f[1].name, f[1].offset), ("to", 16));
    assert_eq!((f[2].name, f[2].offset), ("color", 32));
    assert!(core::ptr::eq(f[0].ty, Point::LAYOUT) || f[0].ty == Point::LAYOUT);
    assert_eq!(f[1].ty.fingerprint(), Point::FINGERPRINT);
    // The nested layout is part of the outer fingerprint.
    assert_ne!(Line::FINGERPRINT, Point::FINGERPRINT);
}

#[test]
fn generic_structs_record_their_arguments() {
    let a = <Pair<u8, u64>>::LAYOUT;
    assert_eq!(a.name, "Pair");
    assert_eq!(
        summary(a),
        vec![
            ("first", 0, "u8".to_string()),
            ("second", 8, "u64".to_string())
        ]
    );
    let b = <Pair<u64, u8>>::LAYOUT;
    assert_eq!(
        summary(b),
        vec![
            ("first", 0, "u64".to_string()),
            ("second", 8, "u8".to_string())
        ]
    );
    assert_ne!(<Pair<u8, u64>>::FINGERPRINT, <Pair<u64, u8>>::FINGERPRINT);
    assert_eq!(<Pair<u8, u64>>::FINGERPRINT, <Pair<u8, u64>>::FINGERPRINT);

    let nested = <Pair<Point, Pair<u8, u16>>>::LAYOUT;
    assert_eq!(nested.size, 24);
    assert_eq!(fields(nested)[1].ty, <Pair<u8, u16>>::LAYOUT);
    const { assert!(!<Pair<Point, Pair<u8, u16>>>::HAS_INVALID_BIT_PATTERNS) };
    const { assert!(<Pair<u8, bool>>::HAS_INVALID_BIT_PATTERNS) };
}

#[test]
fn const_generic_arrays() {
    let layout = <Buffer<u16, 5>>::LAYOUT;
    assert_eq!(layout.size, 4 + 10 + 2);
    assert_eq!(
        summary(layout),
        vec![
            ("len", 0, "u32".to_string()),
            ("items", 4, "[u16; 5]".to_string())
        ]
    );
    assert_ne!(<Buffer<u16, 5>>::FINGERPRINT, <Buffer<u16, 6>>::FINGERPRINT);
    assert_ne!(<Buffer<u16, 5>>::FINGERPRINT, <Buffer<i16, 5>>::FINGERPRINT);
}

#[test]
fn existing_where_clauses_are_kept() {
    let layout = <Wrapper<u32>>::LAYOUT;
    assert_eq!(layout.size, 8);
    assert_eq!(fields(layout)[0].ty, <Pair<u32, u8>>::LAYOUT);
}

#[test]
fn raw_identifiers_are_recorded_without_prefix() {
    let layout = r#type::LAYOUT;
    assert_eq!(layout.name, "type");
    assert_eq!(fields(layout)[0].name, "match");
}

#[test]
fn layout_is_usable_in_const_context() {
    const SIZE: usize = Point::LAYOUT.size;
    const FP: u64 = Line::FINGERPRINT;
    assert_eq!(SIZE, 16);
    assert_eq!(FP, Line::LAYOUT.fingerprint());
}

#[derive(ShmSafe, Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Color {
    Red,
    Green = 5,
    Blue,
}

#[derive(ShmSafe)]
#[repr(i16)]
enum Signed {
    Low = -300,
    Zero = 0,
    High = 300,
}

#[test]
fn enums_record_repr_and_discriminants() {
    let layout = Color::LAYOUT;
    assert_eq!(layout.name, "Color");
    assert_eq!(layout.size, 1);
    assert_eq!(layout.align, 1);
    match layout.kind {
        LayoutKind::Enum { repr, variants } => {
            assert_eq!(repr, u8::LAYOUT);
            assert_eq!(
                variants,
                &[
                    VariantLayout {
                        name: "Red",
                        discriminant: 0
                    },
                    VariantLayout {
                        name: "Green",
                        discriminant: 5
                    },
                    VariantLayout {
                        name: "Blue",
                        discriminant: 6
                    },
                ]
            );
        }
        other => panic!("not an enum: {other:?}"),
    }
    const { assert!(Color::HAS_INVALID_BIT_PATTERNS) };

    let layout = Signed::LAYOUT;
    assert_eq!(layout.size, 2);
    match layout.kind {
        LayoutKind::Enum { repr, variants } => {
            assert_eq!(repr, i16::LAYOUT);
            let d: Vec<i128> = variants.iter().map(|v| v.discriminant).collect();
            assert_eq!(d, vec![-300, 0, 300]);
        }
        other => panic!("not an enum: {other:?}"),
    }
}

#[test]
fn enums_as_fields() {
    #[derive(ShmSafe)]
    #[repr(C)]
    struct Pixel {
        x: u16,
        color: Color,
    }
    let layout = Pixel::LAYOUT;
    assert_eq!(
        summary(layout),
        vec![
            ("x", 0, "u16".to_string()),
            ("color", 2, "Color".to_string())
        ]
    );
    assert_eq!(fields(layout)[1].ty, Color::LAYOUT);
    const { assert!(Pixel::HAS_INVALID_BIT_PATTERNS) };
    assert_eq!(Color::Blue, Color::Blue);
    let _ = (
        Color::Red,
        Color::Green,
        Signed::Low,
        Signed::Zero,
        Signed::High,
    );
}

const BASE: u32 = 40;

#[derive(ShmSafe)]
#[repr(u32)]
enum Computed {
    First = BASE + 2,
    Next,
    Shifted = 1 << 20,
}

#[test]
fn computed_discriminants_are_evaluated() {
    let _ = (Computed::First, Computed::Next, Computed::Shifted);
    match Computed::LAYOUT.kind {
        LayoutKind::Enum { variants, .. } => {
            let d: Vec<(&str, i128)> = variants.iter().map(|v| (v.name, v.discriminant)).collect();
            assert_eq!(d, vec![("First", 42), ("Next", 43), ("Shifted", 1 << 20)]);
        }
        other => panic!("not an enum: {other:?}"),
    }
}
