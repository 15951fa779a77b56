//! `ShmEvent` across processes: waiters in other processes see every
//! change; a notifier killed between bumping the generation and waking, or
//! a waiter killed while asleep, leaves no one asleep and nothing wrong.

use std::sync::atomic::{AtomicU32, Ordering};

use shmstore::{Handle, ShmEvent, Store};
use shmstore_tests::{
    report, role, role_arg, spawn_role_with_arg, wait_until, Child, StoreGuard, PATIENCE,
};

#[path = "sync_support.rs"]
mod support;
use support::{assert_killed, ended, no_core_dumps, timed, within, Ended, RECOVERY, WATCHDOG};

fn setup(tag: &str) -> (StoreGuard, Store, Handle<ShmEvent>, Handle<AtomicU32>) {
    let guard = StoreGuard::unique(tag);
    let store = Store::create(guard.name(), 1 << 20).unwrap();
    let event = store.get_or_insert_with("event", ShmEvent::new).unwrap();
    let waiting = store
        .get_or_insert_with("waiting", || AtomicU32::new(0))
        .unwrap();
    (guard, store, event, waiting)
}

/// Child part: waits for the generation to move past the one in the
/// argument, and reports the one it saw.
fn wait_for_change(name: &str) {
    let store = Store::open(name).unwrap();
    let event = store.get::<ShmEvent>("event").unwrap();
    let waiting = store.get::<AtomicU32>("waiting").unwrap();
    let seen: u64 = role_arg().parse().unwrap();
    waiting.fetch_add(1, Ordering::AcqRel);
    let now = event.wait_for_change(seen, PATIENCE).unwrap();
    report("generation", now.expect("no change within the patience"));
}

#[test]
fn waiters_in_other_processes_see_a_change() {
    const TEST: &str = "waiters_in_other_processes_see_a_change";
    if let Some((_, name)) = role() {
        return wait_for_change(&name);
    }
    let (guard, _store, event, waiting) = setup("event-waiters");
    for round in 0..3u64 {
        waiting.store(0, Ordering::Release);
        let seen = event.generation();
        assert_eq!(seen, round);
        let children: Vec<Child> = (0..2)
            .map(|_| spawn_role_with_arg(TEST, "waiter", guard.name(), &seen.to_string()))
            .collect();
        wait_until("the waiters wait", PATIENCE, || {
            waiting.load(Ordering::Acquire) == 2
        });
        assert_eq!(event.notify(), round + 1);
        for done in Child::wait_all_success(children) {
            assert_eq!(done.report("generation"), (round + 1).to_string());
        }
    }
}

#[test]
fn a_notifier_killed_between_bumping_and_waking_leaves_no_waiter_asleep() {
    const TEST: &str = "a_notifier_killed_between_bumping_and_waking_leaves_no_waiter_asleep";
    if let Some((_, name)) = role() {
        no_core_dumps();
        let store = Store::open(&name).unwrap();
        let event = store.get::<ShmEvent>("event").unwrap();
        let k: u64 = role_arg().parse().unwrap();
        shmstore::crash_after_steps(k);
        event.notify();
        shmstore::crash_after_steps(0);
        return;
    }
    let (guard, _store, event, _) = setup("event-notifier-crash");
    let mut finished = false;
    for k in 1..10u64 {
        let seen = event.generation();
        let e = event.clone();
        let waiter = std::thread::spawn(move || timed(|| e.wait_for_change(seen, PATIENCE)));
        // Let it go to sleep (or not: either way it must see the change).
        std::thread::yield_now();
        let done = spawn_role_with_arg(TEST, "notifier", guard.name(), &k.to_string()).wait();
        let outcome = ended(&done);
        let (r, took) = within("the waiter", WATCHDOG, move || waiter.join().unwrap());
        assert_eq!(r.unwrap(), Some(seen + 1), "step {k}");
        assert!(took < RECOVERY, "step {k}: the waiter slept {took:?}");
        if outcome == Ended::Finished {
            assert!(k >= 2, "the step between bumping and waking was not hit");
            finished = true;
            break;
        }
    }
    assert!(finished);
}

#[test]
fn a_waiter_killed_while_asleep_leaves_the_event_working() {
    const TEST: &str = "a_waiter_killed_while_asleep_leaves_the_event_working";
    if let Some((_, name)) = role() {
        return wait_for_change(&name);
    }
    let (guard, _store, event, waiting) = setup("event-killed-waiter");
    let mut doomed = spawn_role_with_arg(TEST, "waiter", guard.name(), "0");
    wait_until("the waiter waits", PATIENCE, || {
        waiting.load(Ordering::Acquire) == 1
    });
    doomed.kill9();
    assert_killed(&doomed.wait());
    within("the event after a waiter died", WATCHDOG, move || {
        assert_eq!(event.notify(), 1);
        let e = event.clone();
        let w = std::thread::spawn(move || e.wait_for_change(1, PATIENCE));
        std::thread::yield_now();
        assert_eq!(event.notify(), 2);
        assert_eq!(w.join().unwrap().unwrap(), Some(2));
        assert_eq!(event.generation(), 2);
    });
}

#[test]
fn a_notification_before_the_wait_is_not_lost() {
    let (_guard, _store, event, _) = setup("event-early");
    let seen = event.generation();
    event.notify();
    let (r, took) = timed(|| event.wait_for_change(seen, PATIENCE).unwrap());
    assert_eq!(r, Some(seen + 1));
    assert!(took < RECOVERY);
}
