//! Objects written by one process are read, updated and removed by another.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use shmstore::{Error, ShmSafe, Store};
use shmstore_tests::{report, role, spawn_role, wait_until, StoreGuard, PATIENCE};

#[derive(ShmSafe, Debug, Clone, Copy, PartialEq)]
#[repr(C)]
struct Reading {
    id: u32,
    channel: u16,
    valid: bool,
    level: u8,
    value: f64,
    history: [i32; 3],
}

const PARENT_READING: Reading = Reading {
    id: 7,
    channel: 3,
    valid: true,
    level: 200,
    value: -12.75,
    history: [-1, 0, i32::MAX],
};

const CHILD_READING: Reading = Reading {
    id: 99,
    channel: 65535,
    valid: false,
    level: 1,
    value: 1e300,
    history: [4, 5, 6],
};

fn parent_samples() -> Vec<f32> {
    (0..1024).map(|i| i as f32 * 0.5 - 100.0).collect()
}

fn child_samples() -> Vec<u64> {
    (0..300u64).map(|i| i * i + 1).collect()
}

#[test]
fn objects_written_by_one_process_are_read_updated_and_removed_by_another() {
    const TEST: &str = "objects_written_by_one_process_are_read_updated_and_removed_by_another";
    if let Some((role, name)) = role() {
        let store = Store::open(&name).expect("child opens the parent's store");
        match role.as_str() {
            "writer" => {
                // What the parent wrote, read with the same types.
                assert_eq!(
                    *store.get::<Reading>("parent-reading").unwrap(),
                    PARENT_READING
                );
                assert_eq!(
                    &*store.get_slice::<f32>("parent-samples").unwrap(),
                    &parent_samples()[..]
                );
                let counter = store.get::<AtomicU64>("counter").unwrap();
                assert_eq!(counter.load(Ordering::SeqCst), 5);
                // Our own writes.
                counter.fetch_add(100, Ordering::SeqCst);
                store.insert("child-reading", CHILD_READING).unwrap();
                store
                    .insert_slice("child-samples", &child_samples())
                    .unwrap();
                store
                    .insert("child-flag", AtomicU32::new(0xC0FFEE))
                    .unwrap();
                store.remove("doomed").unwrap();
                assert!(!store.contains("doomed").unwrap());
                report("pid", std::process::id());
            }
            "after-remove" => {
                assert!(!store.contains("child-reading").unwrap());
                assert!(matches!(
                    store.get::<Reading>("child-reading"),
                    Err(Error::NotFound { .. })
                ));
                assert!(store.contains("child-samples").unwrap());
                report("entries", store.entries().unwrap().len());
            }
            other => panic!("unknown role {other}"),
        }
        return;
    }

    let guard = StoreGuard::unique("objects");
    let store = Store::create(guard.name(), 1 << 20).unwrap();
    store.insert("parent-reading", PARENT_READING).unwrap();
    store
        .insert_slice("parent-samples", &parent_samples())
        .unwrap();
    store.insert("counter", AtomicU64::new(5)).unwrap();
    store.insert("doomed", 0xDEAD_u64).unwrap();
    // A handle taken before the child runs sees the child's update in place.
    let counter = store.get::<AtomicU64>("counter").unwrap();

    let child = spawn_role(TEST, "writer", guard.name()).wait_success();
    assert_ne!(child.report("pid"), std::process::id().to_string());

    assert_eq!(counter.load(Ordering::SeqCst), 105);
    assert_eq!(
        *store.get::<Reading>("child-reading").unwrap(),
        CHILD_READING
    );
    assert_eq!(
        &*store.get_slice::<u64>("child-samples").unwrap(),
        &child_samples()[..]
    );
    assert_eq!(
        store
            .get::<AtomicU32>("child-flag")
            .unwrap()
            .load(Ordering::SeqCst),
        0xC0FFEE
    );
    assert!(!store.contains("doomed").unwrap());
    assert!(matches!(
        store.get::<u64>("doomed"),
        Err(Error::NotFound { .. })
    ));

    // entries() and stats() agree with each other and with what was written.
    let entries: BTreeMap<String, _> = store
        .entries()
        .unwrap()
        .into_iter()
        .map(|e| (e.name.clone(), e))
        .collect();
    let names: Vec<&str> = entries.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "child-flag",
            "child-reading",
            "child-samples",
            "counter",
            "parent-reading",
            "parent-samples"
        ]
    );
    let stats = store.stats().unwrap();
    assert_eq!(stats.objects, entries.len() as u64);
    assert_eq!(stats.capacity, 1 << 20);
    assert!(stats.used + stats.free <= stats.capacity, "{stats:?}");
    assert!(stats.committed <= stats.capacity, "{stats:?}");
    assert!(
        stats.used >= entries.values().map(|e| e.size).sum::<u64>(),
        "{stats:?}"
    );

    let samples = &entries["parent-samples"];
    assert_eq!(
        (samples.type_name.as_str(), samples.len, samples.size),
        ("f32", Some(1024), 4096)
    );
    assert_eq!(samples.fingerprint, <f32 as ShmSafe>::FINGERPRINT);
    let child_samples = &entries["child-samples"];
    assert_eq!(
        (
            child_samples.type_name.as_str(),
            child_samples.len,
            child_samples.size
        ),
        ("u64", Some(300), 2400)
    );
    let reading = &entries["child-reading"];
    assert_eq!(reading.type_name, "Reading");
    assert_eq!(reading.fingerprint, Reading::FINGERPRINT);
    assert_eq!(
        (reading.len, reading.size),
        (None, core::mem::size_of::<Reading>() as u64)
    );
    assert_eq!(entries["parent-reading"].fingerprint, reading.fingerprint);
    assert_eq!(
        entries["counter"].fingerprint,
        <AtomicU64 as ShmSafe>::FINGERPRINT
    );

    let check = store.check().unwrap();
    assert!(check.is_ok(), "{check}");
    assert_eq!(check.objects, 6);

    // A removal by the parent is seen by a new child.
    store.remove("child-reading").unwrap();
    let child = spawn_role(TEST, "after-remove", guard.name()).wait_success();
    assert_eq!(child.report("entries"), "5");
    assert_eq!(store.stats().unwrap().objects, 5);
}

#[test]
fn a_handle_sees_another_processes_updates_without_reopening() {
    const TEST: &str = "a_handle_sees_another_processes_updates_without_reopening";
    const ROUNDS: u64 = 200;
    if let Some((_, name)) = role() {
        let store = Store::open(&name).unwrap();
        let ping = store.get::<AtomicU64>("ping").unwrap();
        let pong = store.get::<AtomicU64>("pong").unwrap();
        // Answer each ping with the same number on pong.
        for round in 1..=ROUNDS {
            wait_until(&format!("ping {round}"), PATIENCE, || {
                ping.load(Ordering::Acquire) == round
            });
            pong.store(round, Ordering::Release);
        }
        return;
    }

    let guard = StoreGuard::unique("pingpong");
    let store = Store::create(guard.name(), 1 << 20).unwrap();
    let ping = store
        .get_or_insert_with("ping", || AtomicU64::new(0))
        .unwrap();
    let pong = store
        .get_or_insert_with("pong", || AtomicU64::new(0))
        .unwrap();
    let child = spawn_role(TEST, "ponger", guard.name());
    for round in 1..=ROUNDS {
        ping.store(round, Ordering::Release);
        wait_until(&format!("pong {round}"), PATIENCE, || {
            pong.load(Ordering::Acquire) == round
        });
    }
    child.wait_success();
}

#[test]
fn a_removed_object_stays_intact_for_a_process_that_holds_a_handle() {
    const TEST: &str = "a_removed_object_stays_intact_for_a_process_that_holds_a_handle";
    let expected: Vec<u32> = (0..4096u32)
        .map(|i| i.wrapping_mul(2_654_435_761))
        .collect();
    if let Some((_, name)) = role() {
        let store = Store::open(&name).unwrap();
        let held = store.get_slice::<u32>("data").unwrap();
        let step = store.get::<AtomicU32>("step").unwrap();
        step.store(1, Ordering::Release); // holding the handle
        wait_until("the parent removed and reallocated", PATIENCE, || {
            step.load(Ordering::Acquire) == 2
        });
        assert!(!store.contains("data").unwrap());
        assert_eq!(
            &*held,
            &expected[..],
            "a pinned, removed slice was overwritten"
        );
        return;
    }

    let guard = StoreGuard::unique("pinned");
    let store = Store::create(guard.name(), 1 << 20).unwrap();
    store.insert_slice("data", &expected).unwrap();
    let step = store
        .get_or_insert_with("step", || AtomicU32::new(0))
        .unwrap();
    let child = spawn_role(TEST, "holder", guard.name());
    wait_until("the child holds its handle", PATIENCE, || {
        step.load(Ordering::Acquire) == 1
    });
    store.remove("data").unwrap();
    // Allocate as much as the removed slice and more, in pieces that would
    // fit its block, filled with another pattern.
    for i in 0..8 {
        store
            .insert_slice(&format!("filler-{i}"), &[0xFFFF_FFFFu32; 2048])
            .unwrap();
    }
    step.store(2, Ordering::Release);
    child.wait_success();
    let check = store.check().unwrap();
    assert!(check.is_ok(), "{check}");
}
