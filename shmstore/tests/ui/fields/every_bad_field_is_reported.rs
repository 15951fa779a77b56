// The one file with several errors: the derive reports every bad field in
// one compile, not only the first.
use shmstore::ShmSafe;

#[derive(ShmSafe)]
#[repr(C)]
struct Session {
    id: u64,
    user: String,
    peers: Vec<u32>,
    count: usize,
    parent: &'static Session,
}

fn main() {}
