//! Arbitrary bytes, and structure-aware mutations of real segment images
//! (the seeds in `fuzz/seeds/segment_open`, made by `make_seeds`: small
//! stores with objects, slices, containers, a held lock, a journal
//! mid-operation), opened as a store in heap memory and walked with every
//! read of the public API and a few writes (`shmstore_fuzz::objects::
//! walk_store`): every operation must end in `Ok` (with a valid value) or
//! in an error a damaged store may give, and never panic, hang, read or
//! write outside the segment (AddressSanitizer sees the heap segment; the
//! pages past what the header says is committed are poisoned, so touching
//! one is reported too), or allocate without bound (libFuzzer's
//! `-rss_limit_mb`/`-malloc_limit_mb`). The segment's identity words
//! (magic, version, ABI tag, capacity) are never written.
//!
//! Input: one byte of flags (bit 0: the header lock's owner died, so the
//! first operation rolls the journal back; bit 1: also run the writes),
//! then the segment's bytes (zeros after them, up to the capacity the
//! header records).
#![no_main]

use libfuzzer_sys::{fuzz_mutator, fuzz_target};
use shmstore::fuzzing::{self, HeaderLock};
use shmstore_fuzz::image::{self, Rng};
use shmstore_fuzz::objects::walk_store;

fuzz_target!(|data: &[u8]| {
    shmstore_fuzz::ops::install_page_hooks();
    let Some((&flags, img)) = data.split_first() else {
        return;
    };
    let len = image::segment_len(img);
    let lock = if flags & 1 != 0 {
        HeaderLock::OwnerDied
    } else {
        HeaderLock::Unlocked
    };
    let Ok(store) = fuzzing::open_image(img, len, lock) else {
        return;
    };
    walk_store(&store, flags & 2 != 0);
    let after = fuzzing::image(&store).expect("an image of an open store");
    for (off, what) in [
        (0, "magic"),
        (8, "version"),
        (16, "ABI tag"),
        (32, "capacity"),
    ] {
        assert_eq!(
            image::word(&after, off),
            image::word(img, off),
            "the {what} word was written"
        );
    }
});

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    let mut rng = Rng(u64::from(seed) | 1 << 40);
    // Half of the time libFuzzer's own mutations (byte flips, CMP-guided
    // values, insertions, crossover); otherwise whole metadata words.
    if size < 2 || rng.below(2) == 0 {
        return libfuzzer_sys::fuzzer_mutate(data, size, max_size);
    }
    let size = size.min(max_size);
    if rng.below(16) == 0 {
        data[0] = rng.next_u64() as u8;
    }
    image::mutate_image(&mut data[1..size], &mut rng);
    size
});
