// `mem::swap` through two guards could move a held nested lock.
use shmstore::ShmMutex;

fn main() -> shmstore::Result<()> {
    let store = shmstore::Store::open_or_create("ui-swap", 1 << 20)?;
    let a = store.get_or_insert_with("a", || ShmMutex::new([ShmMutex::new(1u8)]))?;
    let b = store.get_or_insert_with("b", || ShmMutex::new([ShmMutex::new(2u8)]))?;
    let (mut ga, mut gb) = (a.lock()?, b.lock()?);
    std::mem::swap(&mut *ga, &mut *gb);
    Ok(())
}
