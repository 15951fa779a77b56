use shmstore::ShmSafe;

#[derive(ShmSafe)]
#[repr(Rust)]
struct Point {
    x: f64,
    y: f64,
}

fn main() {}
