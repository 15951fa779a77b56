//! Two processes updating the same counters lose no update.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use shmstore::{ShmMutex, Store};
use shmstore_tests::{report, role, spawn_role, wait_until, Child, StoreGuard, PATIENCE};

const N: u64 = 200_000;
const PROCESSES: u32 = 2;

#[test]
fn two_processes_incrementing_an_atomic_and_a_mutex_lose_no_update() {
    const TEST: &str = "two_processes_incrementing_an_atomic_and_a_mutex_lose_no_update";
    if let Some((_, name)) = role() {
        let store = Store::open(&name).unwrap();
        let atomic = store.get::<AtomicU64>("atomic").unwrap();
        let mutex = store.get::<ShmMutex<u64>>("mutex").unwrap();
        let ready = store.get::<AtomicU32>("ready").unwrap();
        let go = store.get::<AtomicU32>("go").unwrap();
        ready.fetch_add(1, Ordering::AcqRel);
        wait_until("the parent says go", PATIENCE, || {
            go.load(Ordering::Acquire) == 1
        });
        // Interleave the two kinds so both are contended at the same time.
        let mut max_seen = 0;
        for _ in 0..N {
            atomic.fetch_add(1, Ordering::Relaxed);
            let mut guard = mutex.lock().expect("lock");
            *guard += 1;
            max_seen = max_seen.max(*guard);
        }
        report("max_seen", max_seen);
        return;
    }

    let guard = StoreGuard::unique("counters");
    let store = Store::create(guard.name(), 1 << 20).unwrap();
    store.insert("atomic", AtomicU64::new(0)).unwrap();
    store.insert("mutex", ShmMutex::new(0u64)).unwrap();
    store.insert("ready", AtomicU32::new(0)).unwrap();
    store.insert("go", AtomicU32::new(0)).unwrap();
    let ready = store.get::<AtomicU32>("ready").unwrap();
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| spawn_role(TEST, "incrementer", guard.name()))
        .collect();
    wait_until("both children are ready", PATIENCE, || {
        ready.load(Ordering::Acquire) == PROCESSES
    });
    store
        .get::<AtomicU32>("go")
        .unwrap()
        .store(1, Ordering::Release);
    let mut overlapped = false;
    for done in Child::wait_all_success(children) {
        let max_seen: u64 = done.report("max_seen").parse().unwrap();
        assert!(max_seen >= N && max_seen <= PROCESSES as u64 * N, "{done}");
        overlapped |= max_seen > N;
    }
    // At least the child that finished last saw the other's increments.
    assert!(overlapped);

    let total = PROCESSES as u64 * N;
    assert_eq!(
        store
            .get::<AtomicU64>("atomic")
            .unwrap()
            .load(Ordering::SeqCst),
        total
    );
    let mutex = store.get::<ShmMutex<u64>>("mutex").unwrap();
    assert_eq!(
        *mutex.lock().expect("lock after both children exited"),
        total
    );
}
