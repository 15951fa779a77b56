// Assigning through a guard would write a fresh, process-private mutex over
// a nested lock that lives in the segment.
use shmstore::{ShmMutex, ShmSafe};

#[derive(ShmSafe)]
#[repr(C)]
struct Outer {
    count: u64,
    inner: ShmMutex<u32>,
}

fn main() -> shmstore::Result<()> {
    let store = shmstore::Store::open_or_create("ui-nested", 1 << 20)?;
    let m = store.get_or_insert_with("m", || {
        ShmMutex::new(Outer {
            count: 0,
            inner: ShmMutex::new(0),
        })
    })?;
    let mut g = m.lock()?;
    *g = Outer {
        count: 1,
        inner: ShmMutex::new(0),
    };
    Ok(())
}
