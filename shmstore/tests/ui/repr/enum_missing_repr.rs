use shmstore::ShmSafe;

#[derive(ShmSafe)]
enum State {
    Idle,
    Busy,
}

fn main() {}
