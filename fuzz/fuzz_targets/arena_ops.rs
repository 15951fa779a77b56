//! Sequences of store operations (`shmstore_fuzz::ops::Op`: inserts of
//! every kind, gets with the right and a wrong type, removes,
//! replacements, get-or-insert, handles held across operations, directory
//! growth, container operations through a `ShmMutex` guard, `collect`) on a
//! store in heap memory, checked after each step against a model, with
//! `check()` passing throughout.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmstore_fuzz::ops::{install_page_hooks, Op, Run};

fuzz_target!(|ops: Vec<Op>| {
    install_page_hooks();
    let mut run = Run::new();
    for op in ops.iter().take(64) {
        run.apply(op);
        run.verify();
    }
});
