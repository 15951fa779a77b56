//! Corrupted container metadata: every byte of every nested block's header
//! and of every container's three words, flipped (two bits each, one case
//! per flip), in a store holding a struct with a string, a vector and a
//! relative pointer, a vector behind a mutex and a map behind a mutex.
//!
//! For each case the store is opened and used: every read gives the data
//! that was stored or an error (a flipped length word, which no check
//! covers, may give other elements of the same buffer — never bytes outside
//! it); pushes and inserts succeed or fail with an error; `check()`,
//! `collect()` and `remove` return; nothing panics or crashes. And
//! `collect()` frees nothing (the store held no unreachable block), even
//! when a container's words were flipped: after it, everything reads back
//! as before. The exception is a flipped length word: a shorter length
//! hides elements from their own container, and then also what they
//! reach, which `collect` may free.
//!
//! The nested blocks are found by their magic word in the segment's bytes,
//! the containers by their token (which both a container and its block's
//! header hold), so the test knows nothing of the store's internal layout.

use std::os::unix::fs::FileExt;

use shmstore::{RelPtr, ShmMap, ShmMutex, ShmSafe, ShmString, ShmVec, Store};
use shmstore_tests::StoreGuard;

/// `arena::nested::NESTED_MAGIC`: the first word of every nested block.
const NESTED_MAGIC: u64 = 0xF5E5_7ED0_0000_0000;
/// Bytes of a nested block's header; its length word is the last.
const NESTED_HEADER: usize = 56;
const LEN_WORD: usize = 48;
/// A container's words: store id, token, buffer offset.
const CONTAINER: usize = 24;

#[derive(ShmSafe)]
#[repr(C)]
struct Job {
    id: u64,
    name: ShmString,
    tags: ShmVec<u32>,
    next: RelPtr<Job>,
}

fn build(store: &Store) -> shmstore::Result<()> {
    let link = Job {
        id: 2,
        name: ShmString::from_str_in(store, "link")?,
        tags: ShmVec::new(),
        next: RelPtr::null(),
    };
    store.insert(
        "job",
        Job {
            id: 1,
            name: ShmString::from_str_in(store, "compile")?,
            tags: ShmVec::from_slice_in(store, &[7, 9])?,
            next: RelPtr::new_in(store, link)?,
        },
    )?;
    let v = store.get_or_insert_with("v", || ShmMutex::new(ShmVec::<u64>::new()))?;
    v.lock()?.extend(0..20)?;
    let m = store.get_or_insert_with("m", || ShmMutex::new(ShmMap::<u64, u64>::new()))?;
    let mut g = m.lock()?;
    for i in 0..10 {
        g.insert(&i, i * 3)?;
    }
    Ok(())
}

fn word(img: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(img[at..at + 8].try_into().unwrap())
}

/// Reads everything back, then pushes and inserts: what was wrong, and
/// how many operations gave an error.
fn use_store(store: &Store, lenient: bool, wrong: &mut Vec<String>) -> usize {
    let mut errors = 0;
    let mut expect = |what: &str, ok: bool| {
        if !ok && !lenient {
            wrong.push(what.to_string());
        }
    };
    let mut seen = |r: bool| errors += usize::from(!r);
    match store.get::<Job>("job") {
        Ok(job) => {
            expect("job id", job.id == 1);
            let name = job.name.as_str();
            seen(name.is_ok());
            if let Ok(name) = name {
                expect("job name", &*name == "compile");
            }
            let tags = job.tags.as_slice();
            seen(tags.is_ok());
            if let Ok(tags) = tags {
                expect("job tags", *tags == [7, 9]);
            }
            match job.next.get() {
                Ok(Some(next)) => {
                    expect("next id", next.id == 2);
                    let name = next.name.as_str();
                    seen(name.is_ok());
                    if let Ok(name) = name {
                        expect("next name", &*name == "link");
                    }
                }
                Ok(None) => expect("next is set", false),
                Err(_) => seen(false),
            }
        }
        Err(_) => seen(false),
    }
    match store.get::<ShmMutex<ShmVec<u64>>>("v").and_then(|v| {
        let mut g = v.lock()?;
        let before: Vec<u64> = g.to_vec()?;
        g.push(1000)?;
        let after = g.to_vec()?;
        g.pop()?;
        Ok((before, after))
    }) {
        Ok((before, after)) => {
            expect("v", before.iter().copied().eq(0..20));
            expect(
                "v after a push",
                after.iter().copied().eq((0..20).chain([1000])),
            );
        }
        Err(_) => seen(false),
    }
    match store.get::<ShmMutex<ShmMap<u64, u64>>>("m").and_then(|m| {
        let mut g = m.lock()?;
        let five = g.get(&5)?.map(|v| *v);
        g.insert(&100, 1)?;
        g.remove(&100)?;
        Ok(five)
    }) {
        Ok(five) => expect("m[5]", five == Some(15)),
        Err(_) => seen(false),
    }
    errors
}

/// One case: use the store, `check` and `collect` it, use it again (what
/// `collect` freed must not be what an object still reaches), remove the
/// job. What was wrong, and how many operations gave an error or a
/// problem.
fn run(store: &Store, lenient: bool) -> (Vec<String>, usize) {
    let mut wrong = Vec::new();
    let mut errors = use_store(store, lenient, &mut wrong);
    errors += usize::from(!store.check().is_ok_and(|r| r.is_ok()));
    // The store held no unreachable block: whatever a flip did, `collect`
    // must not take a block an object reaches (but a flipped length hides
    // elements, and what they reach, from the container itself).
    match store.collect() {
        Ok(r) if r.freed_blocks > 0 && !lenient => wrong.push(format!("collect freed {r:?}")),
        Ok(_) => {}
        Err(_) => errors += 1,
    }
    errors += use_store(store, lenient, &mut wrong);
    errors += usize::from(store.remove("job").is_err());
    errors += usize::from(store.check().is_err());
    (wrong, errors)
}

#[test]
fn flipped_container_words_and_buffer_headers_give_errors_never_a_crash() {
    let guard = StoreGuard::unique("cflip");
    let image = {
        let store = Store::create(guard.name(), 1 << 20).unwrap();
        build(&store).unwrap();
        drop(store);
        std::fs::read(guard.path()).unwrap()
    };
    // The nested blocks, and the containers (by their tokens).
    let blocks: Vec<usize> = (4096..image.len() - 64)
        .step_by(8)
        .filter(|&at| word(&image, at) == NESTED_MAGIC)
        .collect();
    // A container: this store's id, then the token and the offset of one
    // of the blocks.
    let store_id = word(&image, 184);
    let containers: Vec<usize> = (4096..image.len() - 24)
        .step_by(8)
        .filter(|&at| {
            word(&image, at) == store_id
                && blocks.iter().any(|&b| {
                    word(&image, b + 24) == word(&image, at + 8)
                        && word(&image, at + 16) == b as u64
                })
        })
        .collect();
    // job.name, job.tags, job.next, link.name, v, m (link.tags and
    // link.next never allocated).
    assert_eq!(blocks.len(), 6, "nested blocks at {blocks:x?}");
    assert_eq!(containers.len(), 6, "containers at {containers:x?}");

    let mut cases = Vec::new();
    for &b in &blocks {
        for i in 0..NESTED_HEADER {
            cases.push((b + i, i >= LEN_WORD));
        }
    }
    for &c in &containers {
        for i in 0..CONTAINER {
            cases.push((c + i, false));
        }
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(guard.path())
        .unwrap();
    let mut findings = Vec::new();
    let mut errors_seen = 0;
    for &(at, lenient) in &cases {
        for bit in [0x01u8, 0x40] {
            let mut img = image.clone();
            img[at] ^= bit;
            file.write_all_at(&img, 0).unwrap();
            let store = match Store::open(guard.name()) {
                Ok(s) => s,
                Err(e) => {
                    findings.push(format!("byte {at:#x} ^ {bit:#x}: open failed: {e}"));
                    continue;
                }
            };
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&store, lenient)));
            match outcome {
                Ok((wrong, errors)) => {
                    if !wrong.is_empty() {
                        findings.push(format!("byte {at:#x} ^ {bit:#x}: wrong data: {wrong:?}"));
                    }
                    if errors > 0 {
                        errors_seen += 1;
                    }
                }
                Err(_) => findings.push(format!("byte {at:#x} ^ {bit:#x}: panicked")),
            }
        }
    }
    println!(
        "{} cases ({} nested blocks, {} containers); {errors_seen} left an error or a problem",
        cases.len() * 2,
        blocks.len(),
        containers.len()
    );
    assert!(
        findings.is_empty(),
        "{} findings:\n{}",
        findings.len(),
        findings.join("\n")
    );
    // The flips were noticed: most cases end in an error somewhere.
    assert!(
        errors_seen > cases.len(),
        "{errors_seen} of {}",
        cases.len() * 2
    );
}
