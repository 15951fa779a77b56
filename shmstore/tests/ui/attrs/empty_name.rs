use shmstore::ShmSafe;

#[derive(ShmSafe)]
#[repr(C)]
#[shm(name = "")]
struct Point {
    x: f64,
    y: f64,
}

fn main() {}
