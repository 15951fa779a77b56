use std::marker::PhantomData;

use shmstore::ShmSafe;

// The parameter of a `PhantomData` is part of the layout (so that typed
// offsets to different types fingerprint differently): it must be ShmSafe.
#[derive(ShmSafe)]
#[repr(C)]
struct Tagged {
    offset: u64,
    _to: PhantomData<String>,
}

fn main() {}
