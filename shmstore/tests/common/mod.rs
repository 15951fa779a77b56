//! Helpers shared by the integration tests of this crate.
// Each test crate uses its own subset.
#![allow(dead_code)]

use shmstore::Store;

/// A store with a name unique to this test binary, tag and process,
/// unlinked on drop (even when a test fails).
pub struct Temp {
    pub store: Store,
}

impl Temp {
    /// An 8 MiB store.
    pub fn new(tag: &str) -> Temp {
        Temp::with_capacity(tag, 8 << 20)
    }

    pub fn with_capacity(tag: &str, capacity: u64) -> Temp {
        let name = format!(
            "shmstore-{}-{tag}-{}",
            env!("CARGO_CRATE_NAME"),
            std::process::id()
        );
        let _ = Store::unlink(&name);
        Temp {
            store: Store::create(&name, capacity).expect("create store"),
        }
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = Store::unlink(self.store.name());
    }
}
