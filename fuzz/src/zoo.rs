//! The zoo of `layout_check`: derived types of every shape, each with a
//! reference decoder written by hand from the type's definition — field
//! offsets from `offset_of!`, the valid values of each scalar spelled out —
//! independent of what the derive generates.

use core::marker::PhantomData;
use core::mem::{offset_of, size_of};
use core::sync::atomic::{AtomicBool, AtomicU32};

use shmstore::{
    FixedString, FixedVec, RelPtr, ShmMap, ShmMutex, ShmSafe, ShmString, ShmVec, TypeLayout,
};

#[derive(ShmSafe, Clone, Copy)]
#[repr(C)]
pub struct Point {
    pub x: f64,
    pub y: f64,
}

#[derive(ShmSafe, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Gappy {
    Low = -5,
    Zero = 0,
    Seven = 7,
    Big = 1000,
}

#[derive(ShmSafe, Clone, Copy)]
#[repr(u8)]
pub enum Small {
    A = 1,
    B = 3,
    C = 254,
}

#[derive(ShmSafe, Clone, Copy)]
#[repr(i64)]
pub enum Extremes {
    Min = i64::MIN,
    MinusOne = -1,
    Max = i64::MAX,
}

#[derive(ShmSafe, Clone, Copy)]
#[repr(u16)]
pub enum Implicit {
    First,
    Second,
    Jump = 600,
    AfterJump,
}

#[derive(ShmSafe, Clone, Copy)]
#[repr(i8)]
pub enum Negative {
    Low = -128,
    Minus = -2,
    High = 127,
}

#[derive(ShmSafe, Clone, Copy)]
#[repr(u64)]
pub enum Wide {
    Zero = 0,
    Top = u64::MAX,
}

#[derive(ShmSafe)]
#[repr(C)]
pub struct Mixed {
    pub a: u8,
    pub flag: bool,
    pub b: u32,
    pub letter: char,
    pub c: u16,
    pub small: Small,
    pub d: [u8; 3],
    pub e: AtomicU32,
    pub on: AtomicBool,
}

#[derive(ShmSafe)]
#[repr(C)]
pub struct Tuple(pub u16, pub bool, pub i8, pub char);

#[derive(ShmSafe)]
#[repr(transparent)]
pub struct Flag(pub bool);

#[derive(ShmSafe)]
#[repr(C)]
pub struct Unit;

#[derive(ShmSafe)]
#[repr(C)]
pub struct Inner {
    pub grid: [[bool; 2]; 3],
    pub small: Small,
    pub gap: Gappy,
}

#[derive(ShmSafe)]
#[repr(C)]
pub struct Nested {
    pub origin: Point,
    pub inner: Inner,
    pub pair: [Inner; 2],
    pub flags: [bool; 5],
    pub letters: [char; 2],
    pub wide: Wide,
}

#[derive(ShmSafe)]
#[repr(C)]
pub struct Generic<T, const N: usize> {
    pub value: T,
    pub items: [T; N],
    pub tag: u8,
}

#[derive(ShmSafe)]
#[repr(C, align(64))]
pub struct Aligned {
    pub flag: bool,
    pub counter: u64,
}

#[derive(ShmSafe)]
#[repr(C)]
pub struct WithContainers {
    pub id: u32,
    pub name: ShmString,
    pub flag: bool,
    pub tags: ShmVec<u16>,
    pub next: RelPtr<WithContainers>,
    pub index: ShmMap<u32, ShmString>,
    pub mode: Gappy,
}

#[derive(ShmSafe)]
#[repr(C)]
pub struct Inline {
    pub label: FixedString<5>,
    pub flag: bool,
    pub modes: FixedVec<Small, 3>,
    pub marker: PhantomData<Gappy>,
}

#[derive(ShmSafe)]
#[repr(C)]
pub struct Locked {
    pub flag: bool,
    pub state: ShmMutex<Inner>,
    pub plain: ShmMutex<u64>,
}

fn bool_ok(b: &[u8], at: usize) -> bool {
    b[at] <= 1
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
}

fn char_ok(b: &[u8], at: usize) -> bool {
    let v = u32_at(b, at);
    v < 0xD800 || (0xE000..=0x10FFFF).contains(&v)
}

fn gappy_ok(b: &[u8], at: usize) -> bool {
    matches!(u32_at(b, at) as i32, -5 | 0 | 7 | 1000)
}

fn small_ok(b: &[u8], at: usize) -> bool {
    matches!(b[at], 1 | 3 | 254)
}

fn inner_ok(b: &[u8], at: usize) -> bool {
    (0..6).all(|i| bool_ok(b, at + offset_of!(Inner, grid) + i))
        && small_ok(b, at + offset_of!(Inner, small))
        && gappy_ok(b, at + offset_of!(Inner, gap))
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    i64::from_ne_bytes(b[at..at + 8].try_into().unwrap())
}

/// One zoo type: its layout, its byte check, its hand-written reference,
/// and the user helper on it.
pub struct Entry {
    pub name: &'static str,
    pub size: usize,
    pub layout: &'static TypeLayout,
    /// `T::check_bytes` on `size` bytes (copied to an aligned buffer).
    pub check: fn(&[u8]) -> Result<(), usize>,
    /// The hand-written reference.
    pub reference: fn(&[u8]) -> bool,
    /// `shmstore::fuzzing::check_type::<T>`.
    pub helper: fn(&[u8]),
    /// [`registry_round_trip::<T>`].
    pub registry: fn(),
}

/// Registers `T` in a store (an empty slice of it) and reads its layout
/// back from the store's type registry: equal to `T`'s, with its
/// fingerprints, and the same through `entries`.
pub fn registry_round_trip<T: ShmSafe>() {
    let store = shmstore::fuzzing::create_in_heap(shmstore::MIN_CAPACITY).expect("a heap store");
    let what = T::LAYOUT.type_expr();
    store
        .insert_slice_from_iter::<T>("t", core::iter::empty())
        .unwrap_or_else(|e| panic!("registering {what}: {e}"));
    let fp = shmstore::layout::graph_fingerprint_of::<T>();
    let desc = store
        .registered_layout(fp)
        .unwrap_or_else(|e| panic!("{what}: {e}"))
        .unwrap_or_else(|| panic!("{what} is not registered"));
    assert_eq!(desc, T::LAYOUT.to_desc(), "{what}");
    assert_eq!(desc.fingerprint(), T::FINGERPRINT, "{what}");
    assert_eq!(desc.graph_fingerprint(), fp, "{what}");
    assert_eq!(desc.to_string(), T::LAYOUT.to_string(), "{what}");
    let entries = store.entries().expect("entries");
    assert_eq!(entries.len(), 1);
    assert_eq!(*entries[0].layout, desc, "{what}");
    assert_eq!(entries[0].fingerprint, fp, "{what}");
    let report = store.check().expect("check");
    assert!(report.is_ok(), "{report}");
}

/// Runs `T::check_bytes` on a copy of `bytes` aligned for `T`.
pub fn check_bytes_of<T: ShmSafe>(bytes: &[u8]) -> Result<(), usize> {
    assert_eq!(bytes.len(), size_of::<T>());
    let layout = std::alloc::Layout::from_size_align(size_of::<T>().max(1), align_of::<T>())
        .expect("a type's layout");
    // SAFETY: the layout has a non-zero size.
    let p = unsafe { std::alloc::alloc(layout) };
    assert!(!p.is_null());
    // SAFETY: `p` is a fresh allocation of at least `bytes.len()` bytes.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len()) };
    // SAFETY: `p` is aligned for `T` and holds `size_of::<T>()` initialised
    // bytes that no one else can reach.
    let r = unsafe { T::check_bytes(p.cast::<T>()) };
    // SAFETY: allocated above with this layout.
    unsafe { std::alloc::dealloc(p, layout) };
    match r {
        Ok(()) => Ok(()),
        Err(e) => {
            assert!(
                e.offset < size_of::<T>().max(1),
                "{}: error at offset {} of {} bytes",
                T::LAYOUT.type_expr(),
                e.offset,
                size_of::<T>()
            );
            Err(e.offset)
        }
    }
}

macro_rules! entry {
    ($t:ty, $reference:expr) => {
        Entry {
            name: stringify!($t),
            size: size_of::<$t>(),
            layout: <$t as ShmSafe>::LAYOUT,
            check: check_bytes_of::<$t>,
            reference: $reference,
            helper: shmstore::fuzzing::check_type::<$t>,
            registry: registry_round_trip::<$t>,
        }
    };
}

/// Every type of the zoo.
pub fn all() -> Vec<Entry> {
    vec![
        entry!(u64, |_| true),
        entry!(bool, |b| bool_ok(b, 0)),
        entry!(char, |b| char_ok(b, 0)),
        entry!(AtomicBool, |b| bool_ok(b, 0)),
        entry!(Gappy, |b| gappy_ok(b, 0)),
        entry!(Small, |b| small_ok(b, 0)),
        entry!(Extremes, |b| matches!(
            i64_at(b, 0),
            i64::MIN | -1 | i64::MAX
        )),
        entry!(Implicit, |b| matches!(
            u16::from_ne_bytes([b[0], b[1]]),
            0 | 1 | 600 | 601
        )),
        entry!(Negative, |b| matches!(b[0] as i8, -128 | -2 | 127)),
        entry!(Wide, |b| matches!(i64_at(b, 0) as u64, 0 | u64::MAX)),
        entry!(Point, |_| true),
        entry!(Mixed, |b| bool_ok(b, offset_of!(Mixed, flag))
            && char_ok(b, offset_of!(Mixed, letter))
            && small_ok(b, offset_of!(Mixed, small))
            && bool_ok(b, offset_of!(Mixed, on))),
        entry!(Tuple, |b| bool_ok(b, offset_of!(Tuple, 1))
            && char_ok(b, offset_of!(Tuple, 3))),
        entry!(Flag, |b| bool_ok(b, 0)),
        entry!(Unit, |_| true),
        entry!([bool; 0], |_| true),
        entry!([bool; 7], |b| (0..7).all(|i| bool_ok(b, i))),
        entry!([[char; 2]; 3], |b| (0..6).all(|i| char_ok(b, 4 * i))),
        entry!([Gappy; 3], |b| (0..3).all(|i| gappy_ok(b, 4 * i))),
        entry!(Inner, |b| inner_ok(b, 0)),
        entry!(Nested, |b| {
            let pair = offset_of!(Nested, pair);
            let stride = size_of::<Inner>();
            inner_ok(b, offset_of!(Nested, inner))
                && inner_ok(b, pair)
                && inner_ok(b, pair + stride)
                && (0..5).all(|i| bool_ok(b, offset_of!(Nested, flags) + i))
                && (0..2).all(|i| char_ok(b, offset_of!(Nested, letters) + 4 * i))
                && matches!(i64_at(b, offset_of!(Nested, wide)) as u64, 0 | u64::MAX)
        }),
        entry!(Generic<bool, 3>, |b| {
            type G = Generic<bool, 3>;
            bool_ok(b, offset_of!(G, value)) && (0..3).all(|i| bool_ok(b, offset_of!(G, items) + i))
        }),
        entry!(Generic<Gappy, 0>, |b| gappy_ok(
            b,
            offset_of!(Generic<Gappy, 0>, value)
        )),
        entry!(Generic<Generic<char, 1>, 2>, |b| {
            type In = Generic<char, 1>;
            type Out = Generic<In, 2>;
            let inner = |at: usize| {
                char_ok(b, at + offset_of!(In, value)) && char_ok(b, at + offset_of!(In, items))
            };
            inner(offset_of!(Out, value))
                && (0..2).all(|i| inner(offset_of!(Out, items) + i * size_of::<In>()))
        }),
        entry!(Generic<u32, 4>, |_| true),
        entry!(Aligned, |b| bool_ok(b, offset_of!(Aligned, flag))),
        entry!(RelPtr<Point>, |_| true),
        entry!(RelPtr<Gappy>, |_| true),
        entry!(ShmVec<bool>, |_| true),
        entry!(ShmString, |_| true),
        entry!(ShmMap<u16, Gappy>, |_| true),
        entry!(WithContainers, |b| bool_ok(
            b,
            offset_of!(WithContainers, flag)
        ) && gappy_ok(
            b,
            offset_of!(WithContainers, mode)
        )),
        entry!(FixedString<5>, |b| fixed_string_ok(b, 0, 5)),
        entry!(FixedVec<Small, 3>, |b| fixed_vec_small_ok(b, 0)),
        entry!(Inline, |b| fixed_string_ok(b, offset_of!(Inline, label), 5)
            && bool_ok(b, offset_of!(Inline, flag))
            && fixed_vec_small_ok(b, offset_of!(Inline, modes))),
        entry!(ShmMutex<Gappy>, |_| true),
        entry!(Locked, |b| bool_ok(b, offset_of!(Locked, flag))),
        entry!(PhantomData<Gappy>, |_| true),
    ]
}

/// `FixedString<N>` at `at`: a `u32` length (first field) at most `N`, then
/// that many bytes of UTF-8 (the second field, 4 bytes in).
fn fixed_string_ok(b: &[u8], at: usize, n: usize) -> bool {
    let len = u32_at(b, at) as usize;
    len <= n && core::str::from_utf8(&b[at + 4..at + 4 + len]).is_ok()
}

/// `FixedVec<Small, 3>` at `at`: a `u64` length at most 3, then three
/// `Small`s, every one of which must be valid (the array is initialised
/// whole).
fn fixed_vec_small_ok(b: &[u8], at: usize) -> bool {
    let len = u64::from_ne_bytes(b[at..at + 8].try_into().unwrap());
    len <= 3 && (0..3).all(|i| small_ok(b, at + 8 + i))
}
