//! Every blocking call of the synchronisation primitives has a timed form
//! that gives up at its timeout — as a value, not an error — while another
//! process holds what it waits for, and succeeds once that process lets go.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use shmstore::{ShmCondvar, ShmEvent, ShmMutex, ShmQueue, ShmRwLock, ShmSemaphore, Store};
use shmstore_tests::{role, spawn_role, wait_until, StoreGuard, PATIENCE};

#[path = "sync_support.rs"]
mod support;
use support::{timed, within, WATCHDOG};

/// The timeout every call is given while the child holds everything.
const SHORT: Duration = Duration::from_millis(100);
/// How late a timed call may return on a busy machine.
const LATE: Duration = Duration::from_secs(5);

/// Child part: takes everything, says so, waits for `go`, lets go, and
/// publishes `released`.
fn hold_everything(name: &str) {
    let store = Store::open(name).unwrap();
    let mutex = store.get::<ShmMutex<u64>>("mutex").unwrap();
    let rw = store.get::<ShmRwLock<u64>>("rw").unwrap();
    let rw_read = store.get::<ShmRwLock<u64>>("rw-read").unwrap();
    let sem = store.get::<ShmSemaphore>("sem").unwrap();
    let go = store.get::<ShmEvent>("go").unwrap();
    let holding = store.get::<AtomicU32>("holding").unwrap();
    let seen = go.generation();
    let m = mutex.lock().unwrap();
    let w = rw.write().unwrap();
    let r = rw_read.read().unwrap();
    sem.acquire().unwrap();
    holding.store(std::process::id(), Ordering::Release);
    let changed = go.wait_for_change(seen, PATIENCE).unwrap();
    assert!(changed.is_some(), "the parent never said go");
    drop((m, w, r));
    sem.release().unwrap();
    store.insert("released", 1u32).unwrap();
}

#[test]
fn every_blocking_call_gives_up_at_its_timeout_and_succeeds_once_the_holder_lets_go() {
    const TEST: &str =
        "every_blocking_call_gives_up_at_its_timeout_and_succeeds_once_the_holder_lets_go";
    if let Some((_, name)) = role() {
        return hold_everything(&name);
    }
    let guard = StoreGuard::unique("timeouts");
    let store = Store::create(guard.name(), 1 << 20).unwrap();
    let mutex = store
        .get_or_insert_with("mutex", || ShmMutex::new(0u64))
        .unwrap();
    let rw = store
        .get_or_insert_with("rw", || ShmRwLock::new(0u64))
        .unwrap();
    let rw_read = store
        .get_or_insert_with("rw-read", || ShmRwLock::new(0u64))
        .unwrap();
    let sem = store
        .get_or_insert_with("sem", || ShmSemaphore::with_owners(1))
        .unwrap();
    let full = store
        .get_or_insert_with("full", ShmQueue::<u64, 4>::new)
        .unwrap();
    let empty = store
        .get_or_insert_with("empty", ShmQueue::<u64, 4>::new)
        .unwrap();
    let event = store.get_or_insert_with("event", ShmEvent::new).unwrap();
    let go = store.get_or_insert_with("go", ShmEvent::new).unwrap();
    let cv = store.get_or_insert_with("cv", ShmCondvar::new).unwrap();
    let cv_mutex = store
        .get_or_insert_with("cv-mutex", || ShmMutex::new(0u32))
        .unwrap();
    let holding = store
        .get_or_insert_with("holding", || AtomicU32::new(0))
        .unwrap();
    for i in 0..4 {
        full.push(i).unwrap();
    }

    let child = spawn_role(TEST, "holder", guard.name());
    let pid = child.pid();
    wait_until("the child holds everything", PATIENCE, || {
        holding.load(Ordering::Acquire) == pid
    });

    within("the timed calls", WATCHDOG, move || {
        let check = |what: &str, gave_up: bool, took: Duration| {
            assert!(gave_up, "{what}: did not give up while held");
            assert!(took >= SHORT, "{what}: gave up early, after {took:?}");
            assert!(took < SHORT + LATE, "{what}: gave up late, after {took:?}");
        };
        let (r, t) = timed(|| mutex.try_lock_for(SHORT).unwrap().is_none());
        check("ShmMutex::try_lock_for", r, t);
        let (r, t) = timed(|| mutex.try_lock_recover_for(SHORT).unwrap().is_none());
        check("ShmMutex::try_lock_recover_for", r, t);
        let (r, t) = timed(|| rw.try_read_for(SHORT).unwrap().is_none());
        check("ShmRwLock::try_read_for (writer holds)", r, t);
        let (r, t) = timed(|| rw.try_write_for(SHORT).unwrap().is_none());
        check("ShmRwLock::try_write_for (writer holds)", r, t);
        let (r, t) = timed(|| rw_read.try_write_for(SHORT).unwrap().is_none());
        check("ShmRwLock::try_write_for (reader holds)", r, t);
        // The withdrawn claim lets readers in again, at once.
        assert!(rw_read.try_read().unwrap().is_some());
        let (r, t) = timed(|| !sem.try_acquire_for(SHORT).unwrap());
        check("ShmSemaphore::try_acquire_for", r, t);
        let (r, t) = timed(|| full.try_push_for(7, SHORT).unwrap() == Err(7));
        check("ShmQueue::try_push_for", r, t);
        let (r, t) = timed(|| empty.try_pop_for(SHORT).unwrap().is_none());
        check("ShmQueue::try_pop_for", r, t);
        let (r, t) = timed(|| empty.try_pop_with_for(SHORT, |_| ()).unwrap().is_none());
        check("ShmQueue::try_pop_with_for", r, t);
        let seen = event.generation();
        let (r, t) = timed(|| event.wait_for_change(seen, SHORT).unwrap().is_none());
        check("ShmEvent::wait_for_change", r, t);
        let (r, t) = timed(|| {
            let g = cv_mutex.lock().unwrap();
            cv.wait_timeout_while(g, SHORT, |v| *v == 0)
                .unwrap()
                .1
                .timed_out()
        });
        check("ShmCondvar::wait_timeout_while", r, t);
        let (r, t) = timed(|| store.wait_for::<u32>("released", SHORT).unwrap().is_none());
        check("Store::wait_for", r, t);

        go.notify();
        let released = store.wait_for::<u32>("released", PATIENCE).unwrap();
        assert_eq!(released.map(|h| *h), Some(1));
        assert!(mutex.try_lock_for(PATIENCE).unwrap().is_some());
        assert!(rw.try_write_for(PATIENCE).unwrap().is_some());
        assert!(rw_read.try_write_for(PATIENCE).unwrap().is_some());
        assert!(sem.try_acquire_for(PATIENCE).unwrap());
        sem.release().unwrap();
        assert_eq!(full.try_pop_for(PATIENCE).unwrap(), Some(0));
        assert_eq!(full.try_push_for(7, PATIENCE).unwrap(), Ok(()));
        empty.push(9).unwrap();
        assert_eq!(empty.try_pop_for(PATIENCE).unwrap(), Some(9));
    });
    child.wait_success();
}
