//! A full `/dev/shm` is `Error::NoSpace`, never a `SIGBUS`.
//!
//! The child runs in its own mount namespace (`unshare -m`) with a 4 MiB
//! tmpfs over `/dev/shm`, so filling it up touches nothing else.

use std::process::Command;

use shmstore::{Error, Store};
use shmstore_tests::{find_program, is_root, report, role, role_command, test_args, Child};

const TMPFS: u64 = 4 << 20;
const CAPACITY: u64 = 64 << 20;
const SLICE: usize = 64 << 10;

fn pattern(i: usize) -> Vec<u32> {
    (0..SLICE / 4)
        .map(|j| (i as u32) << 20 ^ j as u32)
        .collect()
}

/// Child part, inside the namespace with the tiny tmpfs.
fn fill_tiny_tmpfs(name: &str) {
    let df = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        df.lines()
            .any(|l| l.contains(" /dev/shm ") && l.contains("size=4096k")),
        "not running over the 4 MiB tmpfs"
    );
    let store = Store::create(name, CAPACITY).expect("a sparse store larger than the tmpfs");
    let mut stored = 0;
    let err = loop {
        match store.insert_slice(&format!("slice-{stored}"), &pattern(stored)) {
            Ok(()) => stored += 1,
            Err(e) => break e,
        }
        assert!(
            (stored as u64) * (SLICE as u64) <= TMPFS,
            "wrote more than the tmpfs holds"
        );
    };
    assert!(
        matches!(err, Error::NoSpace { .. }),
        "expected NoSpace, got {err:?}"
    );
    assert!(
        err.to_string().contains("no space left in /dev/shm"),
        "{err}"
    );
    report("stored", stored);
    report("error", &err);
    for i in 0..stored {
        let got = store.get_slice::<u32>(&format!("slice-{i}")).unwrap();
        assert!(*got == pattern(i)[..], "slice-{i} was damaged");
    }
    let stats = store.stats().unwrap();
    assert_eq!(stats.objects, stored as u64);
    assert!(stats.committed <= TMPFS, "{stats:?}");
    assert_eq!(stats.capacity, CAPACITY);
    let check = store.check().unwrap();
    assert!(check.is_ok(), "{check}");

    // Small objects and bigger slices fail the same way, or fit in what is
    // already committed; nothing is damaged either way.
    match store.insert_slice("big", &vec![7u8; 1 << 20]) {
        Err(Error::NoSpace { .. }) => {}
        other => panic!("a 1 MiB slice into a full tmpfs: expected NoSpace, got {other:?}"),
    }
    // Memory freed below the committed mark is reused without committing.
    store.remove("slice-0").unwrap();
    store.insert_slice("again", &pattern(1000)).unwrap();
    assert!(*store.get_slice::<u32>("again").unwrap() == pattern(1000)[..]);
    for i in 1..stored {
        let got = store.get_slice::<u32>(&format!("slice-{i}")).unwrap();
        assert!(*got == pattern(i)[..], "slice-{i} was damaged");
    }
    let check = store.check().unwrap();
    assert!(check.is_ok(), "{check}");
    drop(store);
    Store::unlink(name).unwrap();
}

#[test]
fn filling_a_tiny_dev_shm_is_no_space_not_sigbus() {
    const TEST: &str = "filling_a_tiny_dev_shm_is_no_space_not_sigbus";
    if let Some((_, name)) = role() {
        return fill_tiny_tmpfs(&name);
    }
    if !is_root() {
        println!("note: skipped, needs root to mount a tmpfs");
        return;
    }
    let Some(unshare) = find_program("unshare") else {
        println!("note: skipped, unshare is not installed");
        return;
    };
    // The store lives only in the child's private tmpfs; the name is still
    // unique, so a leak would be attributable.
    let name = shmstore_tests::unique_name("nospace");
    let inner = role_command(TEST, "filler", &name);
    let mut cmd = Command::new(unshare);
    cmd.args([
        "-m",
        "sh",
        "-c",
        "mount -t tmpfs -o size=4m tmpfs /dev/shm && exec \"$0\" \"$@\"",
    ])
    .arg(inner.get_program())
    .args(test_args(TEST));
    for (k, v) in inner.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    let done = Child::spawn(cmd).wait();
    if !done.status.success() && done.stderr.contains("mount") && done.stdout.is_empty() {
        println!("note: skipped, cannot mount a tmpfs in a new mount namespace\n{done}");
        return;
    }
    assert!(
        done.status.success(),
        "the filler must exit normally\n{done}"
    );
    let stored: u64 = done.report("stored").parse().unwrap();
    // 4 MiB holds at most 64 slices of 64 KiB, minus header and metadata.
    assert!((32..64).contains(&stored), "{stored} slices fit\n{done}");
    println!(
        "{stored} slices of 64 KiB fit in the 4 MiB tmpfs, then: {}",
        done.report("error")
    );
    assert!(shmstore_tests::segments_with_prefix(&name).is_empty());
}
