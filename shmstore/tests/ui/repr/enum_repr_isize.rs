use shmstore::ShmSafe;

#[derive(ShmSafe)]
#[repr(isize)]
enum Delta {
    Down = -1,
    Up = 1,
}

fn main() {}
