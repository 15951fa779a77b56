//! Writes `Shape` values into a store (test helper for type_fingerprints.rs).
//!
//! Usage: `shape_a <store>`. Opens the store (creating it if needed) and
//! inserts the object `shape` and the slice `shapes`; prints the
//! fingerprint of its `Shape`. Exits nonzero on any error.

use shmstore::{ShmSafe, Store};

/// The shared definition; `shape_b` has an identical, separately compiled
/// copy.
#[derive(ShmSafe, Debug, Clone, Copy)]
#[repr(C)]
struct Shape {
    id: u32,
    scale: f64,
    tags: [u16; 4],
}

fn main() {
    let name = std::env::args().nth(1).expect("usage: shape_a <store>");
    let run = || -> shmstore::Result<()> {
        let store = Store::open_or_create(&name, 1 << 20)?;
        store.insert(
            "shape",
            Shape {
                id: 42,
                scale: 2.5,
                tags: [1, 2, 3, 65535],
            },
        )?;
        let many: Vec<Shape> = (0..3u16)
            .map(|i| Shape {
                id: 100 + i as u32,
                scale: -(i as f64) / 4.0,
                tags: [i; 4],
            })
            .collect();
        store.insert_slice("shapes", &many)?;
        Ok(())
    };
    if let Err(e) = run() {
        eprintln!("shape_a: {e}");
        std::process::exit(1);
    }
    println!("fingerprint {:#018x}", Shape::FINGERPRINT);
}
