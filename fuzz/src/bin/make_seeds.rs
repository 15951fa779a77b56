//! Writes the committed seed corpora under `fuzz/seeds/` (run from the
//! repository: `cargo run --manifest-path fuzz/Cargo.toml --bin
//! make_seeds`). The segment images are small stores built with the public
//! API, taken at rest and at steps of operations in the middle of which a
//! process died (a held `ShmMutex`, a header lock whose owner died with its
//! journal mid-operation).

use std::path::{Path, PathBuf};

use shmstore::fuzzing::{self, HeaderLock};
use shmstore::layout::encode_layout;
use shmstore::{FixedString, RelPtr, Result, ShmMap, ShmMutex, ShmString, ShmVec, Store};
use shmstore_fuzz::image::trim;
use shmstore_fuzz::objects::{Config, Job, LockedMap, LockedRel, LockedVec, Mode};
use shmstore_fuzz::zoo;

const CAPACITY: u64 = 128 << 10;

fn seeds_dir(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    std::fs::create_dir_all(&dir).expect("the seeds directory");
    dir
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let path = seeds_dir(target).join(name);
    std::fs::write(&path, bytes).expect("a seed file");
    println!("{} ({} bytes)", path.display(), bytes.len());
}

/// A segment_open seed: flags, then the trimmed image.
fn segment(name: &str, flags: u8, image: Vec<u8>) {
    let mut bytes = vec![flags];
    bytes.extend(trim(image));
    write("segment_open", name, &bytes);
}

/// A store holding one of every kind of object `walk_store` reads.
fn populated() -> Result<Store> {
    let store = fuzzing::create_in_heap(CAPACITY)?;
    store.insert("counter", 41u64)?;
    store.insert(
        "config",
        Config {
            version: 3,
            enabled: true,
            mode: Mode::Gone,
            ratio: 0.25,
        },
    )?;
    store.insert_slice("samples", &[0.5f32, 1.5, 2.5, 3.5])?;
    store.insert_slice("bytes", b"hello, segment")?;
    store.insert("gone", 7u32)?;
    store.remove("gone")?;
    store.insert(
        "job",
        Job {
            id: 9,
            name: ShmString::from_str_in(&store, "compile")?,
            tags: ShmVec::from_slice_in(&store, &[1, 2, 3, 5, 8])?,
            next: RelPtr::new_in(
                &store,
                Config {
                    version: 1,
                    enabled: false,
                    mode: Mode::Busy,
                    ratio: 2.0,
                },
            )?,
            label: FixedString::from_str("build")?,
        },
    )?;
    store.insert(
        "jobs",
        LockedVec::new(ShmVec::from_slice_in(&store, &[10, 20, 30])?),
    )?;
    let mut map = ShmMap::<u16, ShmString>::new_in(&store);
    map.insert(&1, ShmString::from_str_in(&store, "one")?)?;
    map.insert(&2, ShmString::from_str_in(&store, "two")?)?;
    store.insert("index", LockedMap::new(map))?;
    store.insert("boxed", LockedRel::new(RelPtr::new_in(&store, 77u64)?))?;
    store.insert("lock", ShmMutex::new(5u64))?;
    Ok(store)
}

fn main() -> Result<()> {
    // segment_open: a fresh store, a populated one, one with a grown
    // directory, and images taken mid-operation.
    segment(
        "empty",
        0,
        fuzzing::image(&fuzzing::create_in_heap(CAPACITY)?)?,
    );
    let store = populated()?;
    segment("populated", 2, fuzzing::image(&store)?);
    {
        let grown = populated()?;
        for i in 0..70 {
            grown.insert(&format!("k{i}"), i as u64)?;
        }
        for i in (0..70).step_by(3) {
            grown.remove(&format!("k{i}"))?;
        }
        segment("grown-directory", 2, fuzzing::image(&grown)?);
    }
    // A process died holding the `ShmMutex` of "jobs" in the middle of a
    // push that grows its vector (the header lock too, at the steps of
    // the allocation), and in the middle of an insert (journal
    // non-empty).
    let jobs = store.get::<LockedVec>("jobs")?;
    for step in [1, 4, 9] {
        let mut guard = jobs.lock()?;
        let (r, image) =
            fuzzing::image_at_step(&store, step, || guard.extend([1, 2, 3, 4, 5, 6, 7, 8]));
        r?;
        drop(guard);
        if let Some(image) = image {
            segment(&format!("held-lock-step{step}"), 3, image);
        }
    }
    drop(jobs);
    for step in [2, 6] {
        let (r, image) = fuzzing::image_at_step(&store, step, || {
            store.insert(
                "late",
                Config {
                    version: 8,
                    enabled: true,
                    mode: Mode::Idle,
                    ratio: 1.0,
                },
            )
        });
        r?;
        store.remove("late")?;
        if let Some(image) = image {
            segment(&format!("journal-step{step}"), 1, image);
        }
    }
    // A held `ShmMutex` of a live process (this one, when the image was
    // taken).
    {
        let lock = store.get::<ShmMutex<u64>>("lock")?;
        let _guard = lock.lock()?;
        segment("live-lock", 2, fuzzing::image(&store)?);
    }
    // The images open as stores (one at a time: a process may not have
    // two byte copies of one store open, see `Store::open`).
    drop(store);
    for entry in std::fs::read_dir(seeds_dir("segment_open")).expect("seeds") {
        let bytes = std::fs::read(entry.expect("a seed").path()).expect("a seed");
        let img = &bytes[1..];
        let lock = if bytes[0] & 1 != 0 {
            HeaderLock::OwnerDied
        } else {
            HeaderLock::Unlocked
        };
        fuzzing::open_image(img, shmstore_fuzz::image::segment_len(img), lock)?;
    }

    // layout_check: each zoo type with all-zero bytes and all-one bytes.
    for (i, t) in zoo::all().iter().enumerate() {
        let mut zeros = vec![i as u8];
        zeros.resize(1 + t.size, 0);
        write("layout_check", &format!("{i:02}-zeros"), &zeros);
        let mut ones = vec![i as u8];
        ones.resize(1 + t.size, 1);
        write("layout_check", &format!("{i:02}-ones"), &ones);
    }
    // registry_roundtrip: the zoo's encoded layouts to decode, and each
    // zoo type through a registry.
    for (i, t) in zoo::all().iter().enumerate() {
        let mut bytes = vec![0u8];
        bytes.extend(encode_layout(t.layout).expect("a zoo layout encodes"));
        write("registry_roundtrip", &format!("{i:02}-encoded"), &bytes);
        write(
            "registry_roundtrip",
            &format!("{i:02}-registry"),
            &[192, i as u8],
        );
    }
    // arena_ops, arena_ops_crash: bytes that `arbitrary` turns into long
    // operation sequences (libFuzzer would otherwise start from short ones).
    let mut rng = shmstore_fuzz::image::Rng(0x5eed_0a7e);
    for (i, len) in [64usize, 256, 512, 1024, 2048, 4096]
        .into_iter()
        .enumerate()
    {
        let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        write("arena_ops", &format!("random-{i}"), &bytes);
        write("arena_ops_crash", &format!("random-{i}"), &bytes);
    }
    // my_type: a valid `Reading` and one with a bad `bool`.
    let mut reading = vec![0u8; 32];
    reading[3] = 1; // unit: Celsius
    reading[16..19].copy_from_slice(&[1, 2, 4]);
    write("my_type", "valid", &reading);
    reading[2] = 2;
    write("my_type", "bad-bool", &reading);
    Ok(())
}
