// Several threads and processes hold `&T` to one stored value at once: a
// `ShmSafe` type must be `Sync`.
use std::cell::Cell;

use shmstore::{ShmSafe, TypeLayout};

#[repr(C)]
struct Counter(Cell<u64>);

unsafe impl ShmSafe for Counter {
    const LAYOUT: &'static TypeLayout = &TypeLayout::primitive::<Counter>("Counter");
}

fn main() {}
