//! Reads the `Shape` values `shape_a` wrote (test helper for
//! type_fingerprints.rs).
//!
//! Usage: `shape_b <store>`. Prints the fingerprint of its own `Shape` and
//! every value it read, one per line. Exits nonzero on any error.

use shmstore::{ShmSafe, Store};

/// Identical to `shape_a`'s definition, compiled separately.
#[derive(ShmSafe, Debug)]
#[repr(C)]
struct Shape {
    id: u32,
    scale: f64,
    tags: [u16; 4],
}

fn main() {
    let name = std::env::args().nth(1).expect("usage: shape_b <store>");
    let run = || -> shmstore::Result<()> {
        let store = Store::open(&name)?;
        println!("fingerprint {:#018x}", Shape::FINGERPRINT);
        let one = store.get::<Shape>("shape")?;
        println!(
            "shape id={} scale={} tags={:?}",
            one.id, one.scale, one.tags
        );
        for s in store.get_slice::<Shape>("shapes")?.iter() {
            println!("shapes id={} scale={} tags={:?}", s.id, s.scale, s.tags);
        }
        Ok(())
    };
    if let Err(e) = run() {
        eprintln!("shape_b: {e}");
        std::process::exit(1);
    }
}
