// `insert_slice` copies from a borrowed slice: another thread could write
// atomics (or lock mutexes) in it during the copy. Values with interior
// mutability go in by value, with `insert_slice_from_iter`.
use std::sync::atomic::AtomicU64;

fn main() -> shmstore::Result<()> {
    let store = shmstore::Store::open_or_create("ui-atomics", 1 << 20)?;
    let counters = [AtomicU64::new(0), AtomicU64::new(1)];
    store.insert_slice("counters", &counters)?;
    Ok(())
}
