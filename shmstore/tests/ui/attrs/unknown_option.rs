use shmstore::ShmSafe;

#[derive(ShmSafe)]
#[repr(C)]
#[shm(rename = "Point2")]
struct Point {
    x: f64,
    y: f64,
}

fn main() {}
