//! `ShmSemaphore` across processes: permits pass between processes; in
//! owner mode, the permits of a killed holder come back, and a crash at
//! every step of an acquire or a release keeps the count of permits.

use std::sync::atomic::{AtomicU32, Ordering};

use shmstore::{Handle, ShmSafe, ShmSemaphore, Store};
use shmstore_tests::{
    role, role_arg, spawn_role, spawn_role_with_arg, wait_until, StoreGuard, PATIENCE,
};

#[path = "sync_support.rs"]
mod support;
use support::{assert_killed, ended, no_core_dumps, timed, within, Ended, RECOVERY, WATCHDOG};

#[derive(ShmSafe)]
#[repr(C)]
struct Pair {
    to_child: ShmSemaphore,
    to_parent: ShmSemaphore,
}

const TRIPS: u32 = 2000;

#[test]
fn a_ping_pong_through_two_semaphores_counts_every_turn() {
    const TEST: &str = "a_ping_pong_through_two_semaphores_counts_every_turn";
    if let Some((_, name)) = role() {
        let store = Store::open(&name).unwrap();
        let p = store.get::<Pair>("pair").unwrap();
        for _ in 0..TRIPS {
            p.to_child.acquire().unwrap();
            p.to_parent.release().unwrap();
        }
        return;
    }
    let guard = StoreGuard::unique("sem-pingpong");
    let store = Store::create(guard.name(), 1 << 20).unwrap();
    let p = store
        .get_or_insert_with("pair", || Pair {
            to_child: ShmSemaphore::new(0),
            to_parent: ShmSemaphore::new(0),
        })
        .unwrap();
    let child = spawn_role(TEST, "child", guard.name());
    within("the ping-pong", WATCHDOG, move || {
        for _ in 0..TRIPS {
            p.to_child.release().unwrap();
            p.to_parent.acquire().unwrap();
        }
        assert_eq!((p.to_child.available(), p.to_parent.available()), (0, 0));
    });
    child.wait_success();
}

fn setup(
    tag: &str,
    sem: ShmSemaphore,
) -> (StoreGuard, Store, Handle<ShmSemaphore>, Handle<AtomicU32>) {
    let guard = StoreGuard::unique(tag);
    let store = Store::create(guard.name(), 1 << 20).unwrap();
    let s = store.get_or_insert_with("sem", || sem).unwrap();
    let holding = store
        .get_or_insert_with("holding", || AtomicU32::new(0))
        .unwrap();
    (guard, store, s, holding)
}

fn open(name: &str) -> (Store, Handle<ShmSemaphore>, Handle<AtomicU32>) {
    let store = Store::open(name).unwrap();
    let s = store.get::<ShmSemaphore>("sem").unwrap();
    let holding = store.get::<AtomicU32>("holding").unwrap();
    (store, s, holding)
}

#[test]
fn permits_of_a_killed_holder_come_back_in_owner_mode() {
    const TEST: &str = "permits_of_a_killed_holder_come_back_in_owner_mode";
    if let Some((_, name)) = role() {
        let (_store, s, holding) = open(&name);
        s.acquire().unwrap();
        s.acquire().unwrap();
        assert_eq!(s.held(), 2);
        holding.store(std::process::id(), Ordering::Release);
        std::thread::sleep(PATIENCE * 2);
        panic!("the parent never killed this child");
    }
    let (guard, _store, s, holding) = setup("sem-owner-death", ShmSemaphore::with_owners(3));
    let mut child = spawn_role(TEST, "holder", guard.name());
    let pid = child.pid();
    wait_until("the child holds two permits", PATIENCE, || {
        holding.load(Ordering::Acquire) == pid
    });
    assert_eq!(s.available(), 1);
    child.kill9();
    assert_killed(&child.wait());
    within("taking the dead holder's permits", WATCHDOG, move || {
        assert!(s.try_acquire().unwrap());
        let (got, took) = timed(|| (0..2).all(|_| s.try_acquire_for(RECOVERY).unwrap()));
        assert!(got, "the dead holder's permits did not come back");
        assert!(took < RECOVERY, "they came back after {took:?}");
        assert_eq!((s.available(), s.held()), (0, 3));
        for _ in 0..3 {
            s.release().unwrap();
        }
        assert_eq!(s.available(), 3);
    });
}

#[test]
fn a_waiter_killed_while_asleep_takes_no_permit() {
    const TEST: &str = "a_waiter_killed_while_asleep_takes_no_permit";
    if let Some((_, name)) = role() {
        let (_store, s, holding) = open(&name);
        holding.store(std::process::id(), Ordering::Release);
        s.acquire().unwrap();
        panic!("the parent released nothing");
    }
    let (guard, _store, s, holding) = setup("sem-killed-waiter", ShmSemaphore::new(0));
    let mut child = spawn_role(TEST, "waiter", guard.name());
    let pid = child.pid();
    wait_until("the child waits", PATIENCE, || {
        holding.load(Ordering::Acquire) == pid
    });
    child.kill9();
    assert_killed(&child.wait());
    s.release().unwrap();
    assert_eq!(s.available(), 1);
    assert!(s.try_acquire().unwrap());
    s.release().unwrap();
    s.release().unwrap();
    assert_eq!(s.available(), 2);
}

/// Child part: acquires twice and releases once in owner mode, with the
/// crash armed at step `k`; exits holding one permit (returned once it is
/// found dead, like a crash).
fn acquire_release(name: &str) {
    no_core_dumps();
    let (_store, s, _) = open(name);
    let k: u64 = role_arg().parse().unwrap();
    shmstore::crash_after_steps(k);
    s.acquire().unwrap();
    s.acquire().unwrap();
    s.release().unwrap();
    shmstore::crash_after_steps(0);
    assert_eq!(s.held(), 1);
}

#[test]
fn a_crash_at_every_step_of_owned_acquires_and_releases_keeps_every_permit() {
    const TEST: &str = "a_crash_at_every_step_of_owned_acquires_and_releases_keeps_every_permit";
    if let Some((_, name)) = role() {
        return acquire_release(&name);
    }
    const PERMITS: u32 = 3;
    let (guard, _store, s, _) = setup("sem-crash-points", ShmSemaphore::with_owners(PERMITS));
    let mut steps = None;
    for k in 1..200u64 {
        let done = spawn_role_with_arg(TEST, "child", guard.name(), &k.to_string()).wait();
        let outcome = ended(&done);
        let s = s.clone();
        within("taking every permit after the crash", WATCHDOG, move || {
            let (all, took) = timed(|| (0..PERMITS).all(|_| s.try_acquire_for(RECOVERY).unwrap()));
            assert!(all, "step {k}: a permit was lost");
            assert!(took < RECOVERY * 2, "step {k}: took {took:?}");
            assert_eq!((s.available(), s.held()), (0, PERMITS), "step {k}");
            assert!(!s.try_acquire().unwrap(), "step {k}: a permit too many");
            for _ in 0..PERMITS {
                s.release().unwrap();
            }
            assert_eq!(s.available(), PERMITS, "step {k}");
        });
        if outcome == Ended::Finished {
            steps = Some(k - 1);
            break;
        }
    }
    let steps = steps.expect("the child never finished");
    eprintln!("{steps} crash points in two acquires and a release");
    assert!(
        steps >= 20,
        "only {steps} crash points: are the steps compiled in?"
    );
}
