//! `arena_ops` with a crash: at the `step`-th step of operation `at`, an
//! image of the store is taken as a process that died there would leave it
//! (locks it held marked as left by a dead owner, its process slot gone);
//! the operation finishes, the store is dropped, and the sequence goes on
//! with the store recovered from the image, which must hold what the model
//! held before the operation or what it holds after it, pass `check()`,
//! and lose nothing once `collect()` has run.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmstore_fuzz::ops::{install_page_hooks, Op, Run};

fuzz_target!(|input: (u8, u16, Vec<Op>)| {
    install_page_hooks();
    let (at, step, ops) = input;
    let ops = &ops[..ops.len().min(48)];
    if ops.is_empty() {
        return;
    }
    let at = at as usize % ops.len();
    // Most operations take a few dozen steps; an insert that consolidates
    // the allocator's free lists takes hundreds.
    let step = 1 + if step & 0x8000 == 0 {
        u64::from(step % 96)
    } else {
        u64::from(step % 1024)
    };
    let mut run = Run::new();
    for (i, op) in ops.iter().enumerate() {
        if i == at {
            run.apply_crashing(op, step);
        } else {
            run.apply(op);
        }
        run.verify();
    }
});
