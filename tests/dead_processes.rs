//! What a process that died still held is released by the survivors: its
//! pins (so a removed object it was reading is freed) — and until then its
//! data stays intact for it.

use std::sync::atomic::{AtomicU32, Ordering};

use shmstore::Store;
use shmstore_tests::{role, spawn_role, wait_until, StoreGuard, PATIENCE};

const TEST: &str = "a_killed_reader_keeps_its_slice_intact_and_its_space_is_reclaimed";
const LEN: usize = 16 << 10;

/// Child: pin the slice, check it, tell the parent, then check it again
/// each time the parent asks (through `round`), until killed.
fn reader(name: &str) {
    let store = Store::open(name).unwrap();
    let data = store.get_slice::<u64>("data").unwrap();
    let ready = store.get::<AtomicU32>("ready").unwrap();
    let round = store.get::<AtomicU32>("round").unwrap();
    let seen = store.get::<AtomicU32>("seen").unwrap();
    assert!(data.iter().enumerate().all(|(i, &v)| v == i as u64 * 7));
    ready.store(1, Ordering::Release);
    loop {
        let r = round.load(Ordering::Acquire);
        if r > seen.load(Ordering::Acquire) {
            // The slice was removed and the arena refilled: our view must
            // still hold the original data.
            let intact = data.iter().enumerate().all(|(i, &v)| v == i as u64 * 7);
            seen.store(if intact { r } else { u32::MAX }, Ordering::Release);
        }
        std::thread::yield_now();
    }
}

#[test]
fn a_killed_reader_keeps_its_slice_intact_and_its_space_is_reclaimed() {
    if let Some((role, name)) = role() {
        assert_eq!(role, "reader");
        return reader(&name);
    }
    let guard = StoreGuard::unique("dead-reader");
    let store = Store::create(guard.name(), 1 << 20).unwrap();
    let data: Vec<u64> = (0..LEN as u64).map(|i| i * 7).collect();
    store.insert_slice("data", &data).unwrap();
    for flag in ["ready", "round", "seen"] {
        store.insert(flag, AtomicU32::new(0)).unwrap();
    }
    let ready = store.get::<AtomicU32>("ready").unwrap();
    let round = store.get::<AtomicU32>("round").unwrap();
    let seen = store.get::<AtomicU32>("seen").unwrap();

    let mut child = spawn_role(TEST, "reader", guard.name());
    wait_until("the reader pins the slice", PATIENCE, || {
        ready.load(Ordering::Acquire) == 1
    });
    let with_slice = store.stats().unwrap().used;
    store.remove("data").unwrap();
    // Fill the arena: nothing may land on the pinned slice.
    let mut fillers = 0;
    while store
        .insert_slice(&format!("f{fillers}"), &[u64::MAX; 512])
        .is_ok()
    {
        fillers += 1;
    }
    assert!(fillers > 10);
    round.store(1, Ordering::Release);
    wait_until("the reader checks its slice", PATIENCE, || {
        seen.load(Ordering::Acquire) != 0
    });
    assert_eq!(
        seen.load(Ordering::Acquire),
        1,
        "the reader saw its slice overwritten"
    );
    for i in 0..fillers {
        store.remove(&format!("f{i}")).unwrap();
    }
    // Still pinned by the live reader: check() releases nothing, and the
    // removed slice is still allocated.
    assert!(store.check().unwrap().is_ok());
    let before_kill = store.stats().unwrap().used;
    assert!(before_kill >= with_slice, "{before_kill} < {with_slice}");

    child.kill9();
    let _ = child.wait_timeout(PATIENCE);
    // The reader is dead: check() releases its pins, and the removed
    // slice's block is freed.
    let report = store.check().unwrap();
    assert!(report.is_ok(), "{report}");
    let used = store.stats().unwrap().used;
    assert!(
        used + (LEN as u64) * 8 <= before_kill,
        "the dead reader's slice was not reclaimed: used {used}, before the kill {before_kill}"
    );
    // And the space is usable again.
    store.insert_slice("again", &data).unwrap();
    assert_eq!(
        store.get_slice::<u64>("again").unwrap()[LEN - 1],
        (LEN as u64 - 1) * 7
    );
}
