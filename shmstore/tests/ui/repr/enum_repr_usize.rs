use shmstore::ShmSafe;

#[derive(ShmSafe)]
#[repr(usize)]
enum State {
    Idle,
    Busy,
}

fn main() {}
