//! The one-line fuzz target for a type of your own, as `fuzz/README.md`
//! shows it: `shmstore::fuzzing::check_type::<T>` checks `T`'s byte check
//! against its layout on arbitrary bytes, its layout's encoding, and a
//! store round trip of the values it accepts.
//!
//! `Reading` stands for the user's type (in a real project it would come
//! from the user's crate: `use my_crate::Reading;`).
#![no_main]

use shmstore::ShmSafe;

#[derive(ShmSafe)]
#[repr(C)]
pub struct Reading {
    pub sensor: u16,
    pub valid: bool,
    pub unit: Unit,
    pub value: f64,
    pub history: [Unit; 3],
}

#[derive(ShmSafe, Clone, Copy)]
#[repr(u8)]
pub enum Unit {
    Celsius = 1,
    Kelvin = 2,
    Fahrenheit = 4,
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| shmstore::fuzzing::check_type::<Reading>(data));
