//! Tries to read `shape_a`'s values with a changed `Shape` (test helper for
//! type_fingerprints.rs).
//!
//! Usage: `shape_changed <store>`. Expects `Error::TypeMismatch` for both the
//! object and the slice and prints each error's message; exits 0 only then,
//! nonzero if a read succeeded or failed with another error.

use shmstore::{Error, ShmSafe, Store};

/// `shape_a`'s `Shape` with `scale` moved after `tags` and narrowed to f32.
#[derive(ShmSafe, Debug)]
#[repr(C)]
struct Shape {
    id: u32,
    tags: [u16; 4],
    scale: f32,
}

fn expect_mismatch<T>(what: &str, result: shmstore::Result<T>) -> bool {
    match result {
        Err(e @ Error::TypeMismatch { .. }) => {
            println!("--- {what} ---\n{e}\n--- end ---");
            true
        }
        Err(e) => {
            eprintln!("shape_changed: {what}: expected TypeMismatch, got {e:?}");
            false
        }
        Ok(_) => {
            eprintln!("shape_changed: {what}: read succeeded with a changed type");
            false
        }
    }
}

fn main() {
    let name = std::env::args()
        .nth(1)
        .expect("usage: shape_changed <store>");
    let store = match Store::open(&name) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("shape_changed: {e}");
            std::process::exit(1);
        }
    };
    println!("fingerprint {:#018x}", Shape::FINGERPRINT);
    let object = expect_mismatch("object", store.get::<Shape>("shape"));
    let slice = expect_mismatch("slice", store.get_slice::<Shape>("shapes"));
    // Inserting under a new name still works: the store registers a second
    // type that happens to share the name.
    let insert = store
        .insert(
            "changed",
            Shape {
                id: 1,
                tags: [9; 4],
                scale: 0.5,
            },
        )
        .map_err(|e| eprintln!("shape_changed: insert: {e}"))
        .is_ok();
    if !(object && slice && insert) {
        std::process::exit(1);
    }
}
