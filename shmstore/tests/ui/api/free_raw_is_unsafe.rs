// Freeing raw allocator memory could free a live object's memory: it is an
// `unsafe fn`.
fn main() -> shmstore::Result<()> {
    let store = shmstore::Store::open_or_create("ui-free-raw", 1 << 20)?;
    let off = store.alloc_raw(64)?;
    store.free_raw(off)?;
    Ok(())
}
