use shmstore::ShmSafe;

#[derive(ShmSafe)]
#[repr(C)]
struct Counter {
    value: u64,
}

impl Drop for Counter {
    fn drop(&mut self) {
        println!("dropped {}", self.value);
    }
}

fn main() {}
