use shmstore::ShmSafe;

#[derive(ShmSafe)]
#[repr(C)]
#[shm(name = "A")]
#[shm(name = "B")]
struct Point {
    x: f64,
    y: f64,
}

fn main() {}
