use shmstore::ShmSafe;

#[derive(ShmSafe)]
#[repr(C)]
#[shm(crate = "not a path")]
struct Point {
    x: f64,
    y: f64,
}

fn main() {}
