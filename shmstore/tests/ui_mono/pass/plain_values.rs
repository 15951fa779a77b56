// A `ShmRwLock` and a `ShmQueue` of plain values (no containers) build and
// work.
fn main() {
    let lock = shmstore::ShmRwLock::new([1u64; 4]);
    assert_eq!(lock.read().unwrap()[2], 1);
    let queue = shmstore::ShmQueue::<u64, 4>::new();
    queue.push(7).unwrap();
    assert_eq!(queue.pop().unwrap(), 7);
}
