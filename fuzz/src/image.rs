//! Segment images for `segment_open`: how an input becomes the bytes of a
//! segment, and structure-aware mutations that know the documented layout
//! of a store (the header's words, `shmstore/src/arena/header.rs`; the
//! allocator's blocks from the heap start, `arena/alloc.rs`) well enough to
//! change whole metadata words to values that mean something: offsets of
//! other blocks, the capacity, `top`, word extremes.

/// The header page: the heap starts here.
pub const HEAP_START: usize = 4096;
/// Header words (see the header's layout table).
pub const OFF_CAPACITY: usize = 32;
pub const OFF_COMMITTED: usize = 40;
pub const OFF_TOP: usize = 48;
pub const OFF_TOP_CHECK: usize = 2664;
/// The header lock's bytes, which the target replaces with a valid lock.
pub const OFF_LOCK: usize = 192;
pub const LOCK_END: usize = 256;
/// The largest segment a target builds (its inputs are the committed
/// prefix; the rest reads as zeros).
pub const MAX_LEN: usize = 1 << 20;

/// The `u64` at `off`, if the image holds it.
pub fn word(image: &[u8], off: usize) -> Option<u64> {
    let b = image.get(off..off.checked_add(8)?)?;
    Some(u64::from_ne_bytes(b.try_into().ok()?))
}

fn set_word(image: &mut [u8], off: usize, v: u64) {
    if let Some(b) = image.get_mut(off..off + 8) {
        b.copy_from_slice(&v.to_ne_bytes());
    }
}

/// How long a segment `image` stands for: the capacity its header
/// records when that is at least the image and at most [`MAX_LEN`], else
/// the image rounded up to a page (a header that lies about the capacity
/// is then refused by the store, as it must be).
pub fn segment_len(image: &[u8]) -> usize {
    let rounded = image.len().next_multiple_of(4096).max(4096);
    match word(image, OFF_CAPACITY) {
        Some(cap) if cap as usize >= rounded && cap as usize <= MAX_LEN => cap as usize,
        _ => rounded,
    }
}

/// The image's committed prefix with trailing zeros dropped: what a seed
/// file holds (the target zero-extends it again).
pub fn trim(mut image: Vec<u8>) -> Vec<u8> {
    let committed = word(&image, OFF_COMMITTED).unwrap_or(0) as usize;
    image.truncate(committed.clamp(HEAP_START, image.len().max(HEAP_START)));
    while image.len() > HEAP_START && image.last() == Some(&0) {
        image.pop();
    }
    image
}

/// Offsets of the metadata words of `image` worth changing whole: the
/// header's words (not the lock), the free-list heads, the top check, every
/// heap block's header word and the first words of its payload (record
/// fields, table entries, free-list links, container words).
pub fn metadata_words(image: &[u8]) -> Vec<usize> {
    let mut out: Vec<usize> = (0..OFF_LOCK).step_by(8).collect();
    out.extend(
        (LOCK_END..OFF_TOP_CHECK + 8)
            .step_by(8)
            .filter(|&o| o < image.len()),
    );
    let top = word(image, OFF_TOP).map_or(image.len(), |t| (t as usize).min(image.len()));
    let mut blk = HEAP_START;
    let mut blocks = 0;
    while blk.checked_add(8).is_some_and(|end| end <= top) && blocks < 4096 {
        let head = word(image, blk).unwrap_or(0);
        out.push(blk);
        out.extend((blk + 8..blk + 72).step_by(8).filter(|&o| o + 8 <= top));
        let size = (head & !7) as usize;
        if size < 32 {
            break;
        }
        blk = blk.saturating_add(size);
        blocks += 1;
    }
    out.retain(|&o| o + 8 <= image.len());
    out
}

/// Values worth writing into a metadata word of `image`.
pub fn interesting_values(image: &[u8]) -> Vec<u64> {
    let mut out = vec![
        0,
        1,
        2,
        7,
        8,
        16,
        32,
        64,
        u64::MAX,
        u64::MAX - 7,
        1 << 32,
        1 << 63,
    ];
    for off in [OFF_CAPACITY, OFF_COMMITTED, OFF_TOP] {
        if let Some(v) = word(image, off) {
            out.extend([v, v.wrapping_sub(8), v.wrapping_add(8), !v]);
        }
    }
    // Every block's payload offset (where tables and records begin), and
    // the header's table words.
    let top = word(image, OFF_TOP).map_or(image.len(), |t| (t as usize).min(image.len()));
    let mut blk = HEAP_START;
    let mut blocks = 0;
    while blk.checked_add(8).is_some_and(|end| end <= top) && blocks < 4096 {
        out.push(blk as u64 + 8);
        let size = (word(image, blk).unwrap_or(0) & !7) as usize;
        if size < 32 {
            break;
        }
        blk = blk.saturating_add(size);
        blocks += 1;
    }
    out.extend((72..OFF_LOCK).step_by(8).filter_map(|o| word(image, o)));
    out
}

/// A small deterministic generator for the mutator.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

/// One to four structure-aware changes to `image` (in place, same
/// length): a metadata word set to an interesting value, to another
/// word's value, moved by a small delta, or one of its bits flipped; or a
/// run of bytes copied from elsewhere in the image.
pub fn mutate_image(image: &mut [u8], rng: &mut Rng) {
    let words = metadata_words(image);
    if words.is_empty() {
        return;
    }
    let values = interesting_values(image);
    for _ in 0..1 + rng.below(4) {
        let at = words[rng.below(words.len())];
        let old = word(image, at).unwrap_or(0);
        let new = match rng.below(6) {
            0 | 1 => values[rng.below(values.len())],
            2 => word(image, words[rng.below(words.len())]).unwrap_or(0),
            3 => old.wrapping_add([8, 16, 24, 32, 4096][rng.below(5)]),
            4 => old.wrapping_sub([1, 8, 16, 32, 4096][rng.below(5)]),
            _ => old ^ 1 << rng.below(64),
        };
        if rng.below(8) == 0 {
            // A run copied over: duplicated records, entries, names.
            let len = 8 * (1 + rng.below(8));
            let from = words[rng.below(words.len())];
            if from.max(at) + len <= image.len() {
                image.copy_within(from..from + len, at);
                continue;
            }
        }
        set_word(image, at, new);
    }
    // Keep `top` and its check word in step half of the time, so that the
    // store looks further than its first validation.
    if rng.below(2) == 0 {
        if let Some(top) = word(image, OFF_TOP) {
            set_word(image, OFF_TOP_CHECK, !top);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::segment_len;
    use shmstore::fuzzing::{self, HeaderLock};

    /// The committed `segment_open` seeds are stores of the current
    /// format: a format change makes them `Incompatible`, and the target
    /// then stops at the version word (regenerate them with `make_seeds`).
    #[test]
    fn every_committed_segment_seed_opens_as_a_store() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/seeds/segment_open");
        let mut opened = 0;
        for entry in std::fs::read_dir(dir).expect("the seed directory") {
            let path = entry.expect("a seed").path();
            let bytes = std::fs::read(&path).expect("a seed");
            let (flags, img) = bytes.split_first().expect("a non-empty seed");
            let lock = if flags & 1 != 0 {
                HeaderLock::OwnerDied
            } else {
                HeaderLock::Unlocked
            };
            if let Err(e) = fuzzing::open_image(img, segment_len(img), lock) {
                panic!("{} does not open: {e} (run make_seeds)", path.display());
            }
            opened += 1;
        }
        assert!(opened >= 5, "only {opened} seeds");
    }
}
