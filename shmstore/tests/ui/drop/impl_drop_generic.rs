use shmstore::ShmSafe;

#[derive(ShmSafe)]
#[repr(C)]
struct Slot<T> {
    value: T,
}

impl<T> Drop for Slot<T> {
    fn drop(&mut self) {}
}

fn main() {}
