// A `ShmRwLock` cannot hold a container: the store walks what containers
// own only under a `ShmMutex`.
fn main() {
    let _lock = shmstore::ShmRwLock::new(shmstore::ShmVec::<u8>::new());
}
