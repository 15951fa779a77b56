// A `ShmQueue`'s values cannot hold containers: the store cannot see what
// they own while they sit in the queue.
fn main() {
    let _queue = shmstore::ShmQueue::<shmstore::ShmVec<u8>, 4>::new();
}
