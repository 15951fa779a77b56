use shmstore::ShmSafe;

#[derive(ShmSafe)]
#[repr(u8, align(4))]
enum State {
    Idle,
    Busy,
}

fn main() {}
