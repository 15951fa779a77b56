//! A zoo of layouts for the tests of this module: every kind, nested,
//! generic, with gaps and negative discriminants, opaque types with
//! parameters of every kind.

#![allow(dead_code)]

use core::marker::PhantomData;
use core::sync::atomic::{AtomicBool, AtomicI64, AtomicU32};

use crate::layout::{ShmSafe, TypeLayout};
use crate::ShmMutex;

#[derive(crate::ShmSafe)]
#[shm(crate = "crate")]
#[repr(C)]
pub(super) struct Point {
    x: f64,
    y: f64,
}

#[derive(crate::ShmSafe)]
#[shm(crate = "crate")]
#[repr(C)]
pub(super) struct Mixed {
    a: u8,
    b: u32,
    c: u16,
    d: [u8; 3],
    e: AtomicU32,
    f: bool,
    g: char,
    h: AtomicBool,
    i: AtomicI64,
}

#[derive(crate::ShmSafe)]
#[shm(crate = "crate")]
#[repr(C)]
pub(super) struct Tuple(u16, u64, i8);

#[derive(crate::ShmSafe)]
#[shm(crate = "crate")]
#[repr(C)]
pub(super) struct Unit;

#[derive(crate::ShmSafe)]
#[shm(crate = "crate")]
#[repr(C)]
pub(super) struct Empty {}

#[derive(crate::ShmSafe)]
#[shm(crate = "crate")]
#[repr(transparent)]
pub(super) struct Meters(f64);

#[derive(crate::ShmSafe)]
#[shm(crate = "crate")]
#[repr(transparent)]
pub(super) struct Tagged<T> {
    value: u32,
    _marker: PhantomData<T>,
}

#[derive(crate::ShmSafe, Clone, Copy)]
#[shm(crate = "crate")]
#[repr(i32)]
pub(super) enum Gappy {
    Low = -5,
    Zero = 0,
    Seven = 7,
    Big = 1000,
}

#[derive(crate::ShmSafe, Clone, Copy)]
#[shm(crate = "crate")]
#[repr(i64)]
pub(super) enum Extremes {
    Min = i64::MIN,
    MinusOne = -1,
    Max = i64::MAX,
}

#[derive(crate::ShmSafe, Clone, Copy)]
#[shm(crate = "crate")]
#[repr(u64)]
pub(super) enum Wide {
    Zero = 0,
    Top = u64::MAX,
}

#[derive(crate::ShmSafe, Clone, Copy)]
#[shm(crate = "crate", name = "app::Mode")]
#[repr(u8)]
pub(super) enum Mode {
    Off,
    On,
}

#[derive(crate::ShmSafe)]
#[shm(crate = "crate")]
#[repr(C)]
pub(super) struct Inner {
    grid: [[u8; 2]; 3],
    mode: Mode,
}

#[derive(crate::ShmSafe)]
#[shm(crate = "crate")]
#[repr(C)]
pub(super) struct Nested {
    origin: Point,
    path: [Point; 3],
    inner: Inner,
    gap: Gappy,
    flags: [bool; 5],
}

#[derive(crate::ShmSafe)]
#[shm(crate = "crate")]
#[repr(C)]
pub(super) struct Generic<T, const N: usize> {
    value: T,
    items: [T; N],
    tag: u8,
}

#[derive(crate::ShmSafe)]
#[shm(crate = "crate", name = "app::Renamed")]
#[repr(C, align(64))]
pub(super) struct Renamed {
    counter: u64,
}

#[derive(crate::ShmSafe)]
#[shm(crate = "crate")]
#[repr(C)]
pub(super) struct Locked {
    id: u32,
    state: ShmMutex<Nested>,
    modes: ShmMutex<Gappy>,
    marker: PhantomData<Generic<Point, 2>>,
}

/// Every layout of the zoo.
pub(super) fn all() -> Vec<&'static TypeLayout> {
    vec![
        u8::LAYOUT,
        u16::LAYOUT,
        u32::LAYOUT,
        u64::LAYOUT,
        u128::LAYOUT,
        i8::LAYOUT,
        i16::LAYOUT,
        i32::LAYOUT,
        i64::LAYOUT,
        i128::LAYOUT,
        f32::LAYOUT,
        f64::LAYOUT,
        bool::LAYOUT,
        char::LAYOUT,
        <()>::LAYOUT,
        AtomicBool::LAYOUT,
        AtomicU32::LAYOUT,
        <[u8; 0]>::LAYOUT,
        <[u16; 4]>::LAYOUT,
        <[[char; 2]; 3]>::LAYOUT,
        Point::LAYOUT,
        Mixed::LAYOUT,
        Tuple::LAYOUT,
        Unit::LAYOUT,
        Empty::LAYOUT,
        Meters::LAYOUT,
        <Tagged<u64>>::LAYOUT,
        <Tagged<Point>>::LAYOUT,
        Gappy::LAYOUT,
        Extremes::LAYOUT,
        Wide::LAYOUT,
        Mode::LAYOUT,
        Inner::LAYOUT,
        Nested::LAYOUT,
        <[Nested; 2]>::LAYOUT,
        <Generic<u32, 3>>::LAYOUT,
        <Generic<Point, 0>>::LAYOUT,
        <Generic<Generic<Gappy, 1>, 2>>::LAYOUT,
        Renamed::LAYOUT,
        <ShmMutex<u64>>::LAYOUT,
        <ShmMutex<Point>>::LAYOUT,
        <ShmMutex<Gappy>>::LAYOUT,
        <ShmMutex<[Point; 2]>>::LAYOUT,
        <[ShmMutex<u8>; 2]>::LAYOUT,
        <PhantomData<Point>>::LAYOUT,
        <PhantomData<Gappy>>::LAYOUT,
        <PhantomData<ShmMutex<Tuple>>>::LAYOUT,
        Locked::LAYOUT,
    ]
}
