use shmstore::ShmSafe;

#[derive(ShmSafe)]
#[repr(C)]
struct Point {
    x: f64,
    y: f64,
}

#[derive(ShmSafe)]
#[repr(C)]
struct Record {
    id: u64,
    data: *mut Point,
}

fn main() {}
