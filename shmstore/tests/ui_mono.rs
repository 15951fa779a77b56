//! Compile-fail tests of checks that only run when code is generated: a
//! `ShmRwLock` or a `ShmQueue` refuses, at compile time, a value type that
//! holds containers (the store cannot follow a container into them, so
//! `collect` would free its buffer while it is in use: review 8, finding
//! 1). The refusal is a `const` assertion evaluated when `new` is
//! instantiated for that type — after type checking, so `cargo check`
//! (which trybuild uses for compile-fail tests alone) does not see it.
//! The `pass` case here makes trybuild build instead (`cargo build`), which
//! does; it is a test of its own too: the same calls with plain values
//! compile and run.
//!
//! The expected messages (the `.stderr` files) quote the assertions'
//! source in `src/sync/rwlock.rs` and `src/sync/queue.rs` (trybuild drops
//! their line numbers): regenerate them after changing those with
//! `TRYBUILD=overwrite cargo test -p shmstore --test ui_mono`, and read
//! every changed file.

#[test]
fn ui_mono() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui_mono/pass/*.rs");
    t.compile_fail("tests/ui_mono/fail/*.rs");
}
