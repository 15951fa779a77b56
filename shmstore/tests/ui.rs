//! Compile-fail tests of `#[derive(ShmSafe)]`: every rejected input, with
//! the exact message the user sees, pinned in the `.stderr` files.
//!
//! Regenerate after a deliberate message change with
//! `TRYBUILD=overwrite cargo test -p shmstore --test ui`, then read every
//! changed `.stderr`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*/*.rs");
}
