use shmstore::ShmSafe;

#[derive(ShmSafe)]
#[repr(u8)]
enum State {
    Idle,
    Busy,
}

impl Drop for State {
    fn drop(&mut self) {}
}

fn main() {}
