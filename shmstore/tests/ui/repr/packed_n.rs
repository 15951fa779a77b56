use shmstore::ShmSafe;

#[derive(ShmSafe)]
#[repr(C)]
#[repr(packed(2))]
struct Header {
    tag: u8,
    len: u32,
}

fn main() {}
