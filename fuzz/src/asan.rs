//! AddressSanitizer's manual poisoning, for the page hooks of heap stores
//! (see `ops::install_page_hooks`). Only under cargo-fuzz (`cfg(fuzzing)`,
//! a nightly build), and a no-op without the address sanitizer.

use shmstore::fuzzing;

#[cfg(sanitize = "address")]
pub fn install() {
    extern "C" {
        fn __asan_poison_memory_region(addr: *const u8, size: usize);
        fn __asan_unpoison_memory_region(addr: *const u8, size: usize);
    }
    fn poison(p: *const u8, n: usize) {
        // SAFETY: `p..p + n` is the memory of a heap store, allocated and
        // owned by it; poisoning only marks it in ASan's shadow memory.
        unsafe { __asan_poison_memory_region(p, n) }
    }
    fn unpoison(p: *const u8, n: usize) {
        // SAFETY: as above; unpoisoning only clears the shadow.
        unsafe { __asan_unpoison_memory_region(p, n) }
    }
    fuzzing::set_page_hooks(fuzzing::PageHooks {
        reserve: poison,
        commit: unpoison,
        release: unpoison,
    });
}

#[cfg(not(sanitize = "address"))]
pub fn install() {
    let _ = fuzzing::set_page_hooks;
}
