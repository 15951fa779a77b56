use shmstore::ShmSafe;

#[derive(ShmSafe)]
#[repr(u8)]
enum Shape {
    Empty,
    Circle { radius: f64 },
}

fn main() {}
