//! Every way of misusing a store, or meeting a bad segment, is a clear
//! `Error` of the right kind.

use std::ffi::CString;
use std::io::{Seek, SeekFrom, Write};
use std::time::{Duration, Instant};

use shmstore::{Error, ShmSafe, Store, MAX_OBJECT_NAME, MIN_CAPACITY};
use shmstore_tests::{
    find_program, is_root, report, role, role_command, test_args, Child, StoreGuard,
};

#[derive(ShmSafe, Debug, Clone, Copy, PartialEq)]
#[repr(C)]
struct Point {
    x: f64,
    y: f64,
}

#[derive(ShmSafe, Debug, Clone, Copy, PartialEq)]
#[repr(C)]
struct Pixel {
    x: u16,
    y: u16,
    rgb: [u8; 3],
}

fn fresh(tag: &str, capacity: u64) -> (StoreGuard, Store) {
    let guard = StoreGuard::unique(tag);
    let store = Store::create(guard.name(), capacity).unwrap();
    (guard, store)
}

#[test]
fn reading_an_object_as_another_type_shows_both_layouts() {
    let (_guard, store) = fresh("mismatch", 1 << 20);
    store.insert("p", Point { x: 1.0, y: -2.0 }).unwrap();
    let err = store.get::<Pixel>("p").unwrap_err();
    let Error::TypeMismatch {
        name,
        expected,
        found,
    } = &err
    else {
        panic!("expected TypeMismatch, got {err:?}");
    };
    assert_eq!(name, "p");
    assert!(
        expected.contains("Pixel") && expected.contains("rgb: [u8; 3] (offset 4"),
        "{expected}"
    );
    assert!(
        found.contains("Point") && found.contains("y: f64 (offset 8"),
        "{found}"
    );
    let shown = err.to_string();
    for part in [
        "object \"p\"",
        "expected:",
        "found:",
        "Pixel (size 8, align 2",
        "x: u16 (offset 0, size 2, align 2)",
        "y: u16 (offset 2, size 2, align 2)",
        "rgb: [u8; 3] (offset 4, size 3, align 1)",
        "Point (size 16, align 8",
        "x: f64 (offset 0, size 8, align 8)",
        "y: f64 (offset 8, size 8, align 8)",
    ] {
        assert!(shown.contains(part), "{part:?} missing from:\n{shown}");
    }
    // A primitive of the same size is just as wrong.
    assert!(matches!(
        store.get::<[u64; 2]>("p"),
        Err(Error::TypeMismatch { .. })
    ));
    // The object is untouched.
    assert_eq!(*store.get::<Point>("p").unwrap(), Point { x: 1.0, y: -2.0 });
}

#[test]
fn a_slice_read_as_an_object_and_an_object_read_as_a_slice_are_type_mismatches() {
    let (_guard, store) = fresh("slice-vs-object", 1 << 20);
    store.insert_slice("many", &[1u64, 2, 3]).unwrap();
    store.insert("one", 5u64).unwrap();
    match store.get::<u64>("many") {
        Err(e @ Error::TypeMismatch { .. }) => {
            assert!(e.to_string().contains("a slice of"), "{e}");
        }
        other => panic!("expected TypeMismatch, got {other:?}"),
    }
    match store.get_slice::<u64>("one") {
        Err(e @ Error::TypeMismatch { .. }) => {
            assert!(e.to_string().contains("a slice of"), "{e}");
        }
        other => panic!("expected TypeMismatch, got {other:?}"),
    }
    assert_eq!(&*store.get_slice::<u64>("many").unwrap(), &[1, 2, 3]);
    assert_eq!(*store.get::<u64>("one").unwrap(), 5);
}

#[test]
fn bad_store_names_are_invalid_names() {
    let long = "x".repeat(300);
    let just_too_long = "y".repeat(255); // 256 bytes with the leading '/'
    for bad in [
        "",
        "/",
        "a/b",
        "/a/b",
        "a\0b",
        ".",
        "..",
        &long,
        &just_too_long,
    ] {
        for result in [
            Store::create(bad, 1 << 20).map(drop),
            Store::open(bad).map(drop),
            Store::open_or_create(bad, 1 << 20).map(drop),
            Store::unlink(bad),
        ] {
            match result {
                Err(Error::InvalidName { name, .. }) => assert_eq!(name, bad),
                other => panic!("store name {bad:?}: expected InvalidName, got {other:?}"),
            }
        }
    }
    // The longest valid name works, with or without the leading slash.
    let base = shmstore_tests::unique_name("long");
    let longest = format!("{base}{}", "z".repeat(254 - base.len()));
    let _guard = StoreGuard::new(longest.clone());
    let store = Store::create(&longest, MIN_CAPACITY).unwrap();
    assert_eq!(store.name(), format!("/{longest}"));
    Store::open(&format!("/{longest}")).unwrap();
}

#[test]
fn bad_object_names_are_invalid_names() {
    let (_guard, store) = fresh("object-names", 1 << 20);
    let too_long = "n".repeat(MAX_OBJECT_NAME + 1);
    for bad in ["", too_long.as_str(), "nul\0inside"] {
        for result in [
            store.insert(bad, 1u32).map(drop),
            store.insert_slice(bad, &[1u32]).map(drop),
            store.get::<u32>(bad).map(drop),
            store.get_slice::<u32>(bad).map(drop),
            store.get_or_insert_with(bad, || 1u32).map(drop),
            store.contains(bad).map(drop),
            store.remove(bad),
        ] {
            match result {
                Err(Error::InvalidName { name, .. }) => assert_eq!(name, bad),
                other => panic!("object name {bad:?}: expected InvalidName, got {other:?}"),
            }
        }
    }
    // 255 bytes is fine, as is any UTF-8.
    let longest = "m".repeat(MAX_OBJECT_NAME);
    store.insert(&longest, 9u32).unwrap();
    store.insert("ünïcödé/ name", 10u32).unwrap();
    assert_eq!(*store.get::<u32>(&longest).unwrap(), 9);
    assert_eq!(*store.get::<u32>("ünïcödé/ name").unwrap(), 10);
    assert_eq!(store.stats().unwrap().objects, 2);
}

#[test]
fn opening_a_missing_store_is_not_found() {
    let guard = StoreGuard::unique("missing");
    match Store::open(guard.name()) {
        Err(e @ Error::NotFound { .. }) => assert!(e.to_string().contains(guard.name()), "{e}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(matches!(
        Store::unlink(guard.name()),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn creating_a_store_twice_or_inserting_a_name_twice_is_already_exists() {
    let (guard, store) = fresh("twice", 1 << 20);
    assert!(matches!(
        Store::create(guard.name(), 1 << 20),
        Err(Error::AlreadyExists { .. })
    ));
    store.insert("k", 1u64).unwrap();
    assert!(matches!(
        store.insert("k", 2u64),
        Err(Error::AlreadyExists { .. })
    ));
    assert!(matches!(
        store.insert("k", 2u32),
        Err(Error::AlreadyExists { .. })
    ));
    assert!(matches!(
        store.insert_slice("k", &[2u64]),
        Err(Error::AlreadyExists { .. })
    ));
    assert_eq!(*store.get::<u64>("k").unwrap(), 1);
    // The existing store was not disturbed by the failed create.
    assert_eq!(
        Store::open(guard.name()).unwrap().stats().unwrap().objects,
        1
    );
}

/// Creates a raw shared-memory segment of `len` bytes filled with `bytes`
/// (repeated), as some other program might.
fn foreign_segment(guard: &StoreGuard, len: u64, bytes: &[u8]) {
    let cname = CString::new(format!("/{}", guard.name())).unwrap();
    // SAFETY: a valid NUL-terminated name; the flags and mode are plain
    // integers.
    let fd = unsafe {
        libc::shm_open(
            cname.as_ptr(),
            libc::O_CREAT | libc::O_EXCL | libc::O_RDWR,
            0o600,
        )
    };
    assert!(fd >= 0, "shm_open: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` is the descriptor just opened; ftruncate and close take
    // plain integers.
    unsafe {
        assert_eq!(libc::ftruncate(fd, len as libc::off_t), 0);
        libc::close(fd);
    }
    if !bytes.is_empty() {
        let data: Vec<u8> = bytes.iter().copied().cycle().take(len as usize).collect();
        std::fs::write(guard.path(), data).unwrap();
    }
}

/// Overwrites bytes of an existing segment through its `/dev/shm` file.
fn poke(guard: &StoreGuard, offset: u64, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(guard.path())
        .unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn a_segment_that_is_not_a_store_is_not_a_store() {
    let guard = StoreGuard::unique("garbage");
    foreign_segment(
        &guard,
        1 << 20,
        b"this is certainly not a shmstore header. ",
    );
    let started = Instant::now();
    match Store::open(guard.name()) {
        Err(e @ Error::NotAStore { .. }) => assert!(e.to_string().contains(guard.name()), "{e}"),
        other => panic!("expected NotAStore, got {other:?}"),
    }
    // Garbage is recognised at once, not after the open timeout.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(
        Store::open_or_create(guard.name(), 1 << 20),
        Err(Error::NotAStore { .. })
    ));
    // A small segment of garbage too.
    let small = StoreGuard::unique("garbage-small");
    foreign_segment(&small, 100, b"\xff");
    let opened = Store::options()
        .open_timeout(Duration::from_millis(200))
        .open(small.name());
    assert!(matches!(opened, Err(Error::NotAStore { .. })), "{opened:?}");
}

#[test]
fn an_empty_foreign_segment_is_not_a_store_after_the_open_timeout() {
    let guard = StoreGuard::unique("empty");
    foreign_segment(&guard, 0, b"");
    let timeout = Duration::from_millis(200);
    let started = Instant::now();
    let opened = Store::options().open_timeout(timeout).open(guard.name());
    let waited = started.elapsed();
    assert!(matches!(opened, Err(Error::NotAStore { .. })), "{opened:?}");
    assert!(
        waited >= timeout,
        "gave up after {waited:?}, before the timeout"
    );
    assert!(waited < Duration::from_secs(10), "waited {waited:?}");
    // A zeroed (sized but never initialised) segment likewise.
    let zeroed = StoreGuard::unique("zeroed");
    foreign_segment(&zeroed, 1 << 20, b"");
    let opened = Store::options().open_timeout(timeout).open(zeroed.name());
    assert!(matches!(opened, Err(Error::NotAStore { .. })), "{opened:?}");
}

#[test]
fn a_store_with_another_format_version_is_incompatible() {
    let (guard, store) = fresh("version", 1 << 20);
    store.insert("kept", 1u64).unwrap();
    drop(store);
    let mut version = [0u8; 4];
    std::os::unix::fs::FileExt::read_exact_at(
        &std::fs::File::open(guard.path()).unwrap(),
        &mut version,
        8,
    )
    .unwrap();
    poke(&guard, 8, &999u32.to_le_bytes());
    match Store::open(guard.name()) {
        Err(e @ Error::Incompatible { .. }) => {
            assert!(e.to_string().contains("999"), "{e}");
        }
        other => panic!("expected Incompatible, got {other:?}"),
    }
    // Restoring the word makes it a valid store again, objects intact.
    poke(&guard, 8, &version);
    assert_eq!(
        *Store::open(guard.name())
            .unwrap()
            .get::<u64>("kept")
            .unwrap(),
        1
    );
}

#[test]
fn a_store_with_another_abi_tag_is_incompatible() {
    let (guard, store) = fresh("abi", 1 << 20);
    drop(store);
    // Pointer width 4 bytes instead of 8: a 32-bit process's store.
    poke(&guard, 16, &[4]);
    match Store::open(guard.name()) {
        Err(e @ Error::Incompatible { .. }) => assert!(e.to_string().contains("32-bit"), "{e}"),
        other => panic!("expected Incompatible, got {other:?}"),
    }
}

#[test]
fn a_store_with_a_flipped_magic_byte_is_not_a_store() {
    let (guard, store) = fresh("magic", 1 << 20);
    drop(store);
    poke(&guard, 0, b"X");
    assert!(matches!(
        Store::open(guard.name()),
        Err(Error::NotAStore { .. })
    ));
}

#[test]
fn a_store_whose_header_disagrees_with_its_size_is_corrupted() {
    let (guard, store) = fresh("capacity", 1 << 20);
    drop(store);
    poke(&guard, 32, &(2u64 << 20).to_le_bytes());
    assert!(matches!(
        Store::open(guard.name()),
        Err(Error::Corrupted { .. })
    ));
}

#[test]
fn a_full_arena_is_out_of_memory_and_keeps_everything_inserted_before() {
    let (_guard, store) = fresh("full", MIN_CAPACITY);
    let mut inserted = 0u64;
    let err = loop {
        match store.insert(&format!("key{inserted}"), inserted * 3) {
            Ok(()) => inserted += 1,
            Err(e) => break e,
        }
        assert!(inserted < 100_000, "a 64 KiB store never filled up");
    };
    match &err {
        Error::OutOfMemory { capacity, .. } => assert_eq!(*capacity, MIN_CAPACITY),
        other => panic!("expected OutOfMemory, got {other:?}"),
    }
    assert!(err.to_string().contains("store is full"), "{err}");
    assert!(inserted > 100, "only {inserted} objects fit in 64 KiB");
    for i in 0..inserted {
        assert_eq!(
            *store.get::<u64>(&format!("key{i}")).unwrap(),
            i * 3,
            "key{i}"
        );
    }
    // A slice larger than the store fails the same way, and changes nothing.
    assert!(matches!(
        store.insert_slice("big", &[0u8; 70_000]),
        Err(Error::OutOfMemory { .. })
    ));
    let stats = store.stats().unwrap();
    assert_eq!(stats.objects, inserted);
    let check = store.check().unwrap();
    assert!(check.is_ok(), "{check}");
}

#[test]
fn removing_objects_from_a_full_store_makes_room_for_new_ones() {
    let (_guard, store) = fresh("full-remove", MIN_CAPACITY);
    let mut inserted = 0u64;
    while store.insert(&format!("key{inserted}"), inserted).is_ok() {
        inserted += 1;
        assert!(inserted < 100_000, "a 64 KiB store never filled up");
    }
    for i in 0..10 {
        store.remove(&format!("key{i}")).unwrap();
    }
    // The same names, of the same type and size, fit where they were.
    for i in 0..10u64 {
        store
            .insert(&format!("key{i}"), i + 1000)
            .unwrap_or_else(|e| {
                panic!("re-inserting key{i} after removing 10 of {inserted}: {e:?}")
            });
    }
    for i in 0..inserted {
        let want = if i < 10 { i + 1000 } else { i };
        assert_eq!(*store.get::<u64>(&format!("key{i}")).unwrap(), want);
    }
    let check = store.check().unwrap();
    assert!(check.is_ok(), "{check}");
}

#[test]
fn another_users_store_is_permission_denied() {
    const TEST: &str = "another_users_store_is_permission_denied";
    if let Some((role, name)) = role() {
        match role.as_str() {
            "private" => match Store::open(&name) {
                Err(e @ Error::PermissionDenied { .. }) => report("error", e),
                other => panic!("expected PermissionDenied, got {other:?}"),
            },
            "shared" => {
                let store = Store::open(&name).expect("a 0o666 store opens for anyone");
                report("value", *store.get::<u64>("v").unwrap());
            }
            other => panic!("unknown role {other}"),
        }
        return;
    }
    if !is_root() {
        println!("note: skipped, needs root to run a child as another user");
        return;
    }
    let Some(setpriv) = find_program("setpriv") else {
        println!("note: skipped, setpriv is not installed");
        return;
    };
    let as_nobody = |role: &str, store: &str| {
        let inner = role_command(TEST, role, store);
        let mut cmd = std::process::Command::new(&setpriv);
        cmd.args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(inner.get_program())
            .args(test_args(TEST));
        for (k, v) in inner.get_envs() {
            if let Some(v) = v {
                cmd.env(k, v);
            }
        }
        Child::spawn(cmd).wait_success()
    };

    let (private, store) = fresh("private", 1 << 20);
    store.insert("v", 5u64).unwrap();
    let done = as_nobody("private", private.name());
    assert!(done.report("error").contains("permission denied"), "{done}");

    // Control: the same child can open a store whose mode lets it in.
    let shared = StoreGuard::unique("shared");
    let store = Store::options()
        .capacity(1 << 20)
        .mode(0o666)
        .create(shared.name())
        .unwrap();
    store.insert("v", 6u64).unwrap();
    let done = as_nobody("shared", shared.name());
    assert_eq!(done.report("value"), "6");
}
