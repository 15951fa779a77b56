use shmstore::ShmSafe;

#[derive(ShmSafe)]
#[repr(C)]
enum State {
    Idle,
    Busy,
}

fn main() {}
