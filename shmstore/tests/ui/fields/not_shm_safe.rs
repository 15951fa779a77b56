use shmstore::ShmSafe;

#[repr(C)]
struct Plain {
    x: u32,
}

#[derive(ShmSafe)]
#[repr(C)]
struct Record {
    id: u64,
    plain: Plain,
}

fn main() {}
