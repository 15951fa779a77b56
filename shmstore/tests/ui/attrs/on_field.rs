use shmstore::ShmSafe;

#[derive(ShmSafe)]
#[repr(C)]
struct Point {
    #[shm(name = "horizontal")]
    x: f64,
    y: f64,
}

fn main() {}
