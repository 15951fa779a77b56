use shmstore::ShmSafe;

// A mapping is only page-aligned: an alignment above 4096 could not hold in
// every process.
#[derive(ShmSafe)]
#[repr(C, align(8192))]
struct Huge {
    x: u64,
}

fn main() {}
