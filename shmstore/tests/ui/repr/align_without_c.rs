use shmstore::ShmSafe;

#[derive(ShmSafe)]
#[repr(align(8))]
struct Point {
    x: f32,
    y: f32,
}

fn main() {}
