use shmstore::ShmSafe;

#[derive(ShmSafe)]
#[repr(C)]
union Bits {
    int: u32,
    float: f32,
}

fn main() {}
