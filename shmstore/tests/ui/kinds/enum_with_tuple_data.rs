use shmstore::ShmSafe;

#[derive(ShmSafe)]
#[repr(u8)]
enum Message {
    Quit,
    Move(i32, i32),
}

fn main() {}
