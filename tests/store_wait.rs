//! `Store::wait_for`: a process waits for a named object that another
//! process publishes later, without polling, and a waiter killed while it
//! waits leaves the store's publication word working for the others.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use shmstore::{Error, Store};
use shmstore_tests::{
    report, role, role_arg, spawn_role_with_arg, wait_until, StoreGuard, PATIENCE,
};

#[path = "sync_support.rs"]
mod support;
use support::{assert_killed, timed, within, RECOVERY, WATCHDOG};

/// Child part: `wait:NAME` waits for `NAME` and reports its value;
/// `insert:NAME` inserts it.
fn child(name: &str) {
    let store = Store::open(name).unwrap();
    let arg = role_arg();
    let (kind, object) = arg.split_once(':').unwrap();
    match kind {
        "wait" => {
            let waiting = store.get::<AtomicU32>("waiting").unwrap();
            waiting.fetch_add(1, Ordering::AcqRel);
            let h = store.wait_for::<u64>(object, PATIENCE).unwrap();
            report("value", *h.expect("it never appeared"));
        }
        "insert" => store.insert(object, 42u64).unwrap(),
        other => panic!("{other}"),
    }
}

#[test]
fn a_process_waits_for_an_object_another_process_inserts_later() {
    const TEST: &str = "a_process_waits_for_an_object_another_process_inserts_later";
    if let Some((_, name)) = role() {
        return child(&name);
    }
    let guard = StoreGuard::unique("store-wait");
    let store = Store::create(guard.name(), 1 << 20).unwrap();
    let waiting = store
        .get_or_insert_with("waiting", || AtomicU32::new(0))
        .unwrap();
    // A waiter that will be killed while it waits, and one that will see
    // the object.
    let mut doomed = spawn_role_with_arg(TEST, "child", guard.name(), "wait:never");
    let waiter = spawn_role_with_arg(TEST, "child", guard.name(), "wait:answer");
    wait_until("both wait", PATIENCE, || {
        waiting.load(Ordering::Acquire) == 2
    });
    doomed.kill9();
    assert_killed(&doomed.wait());
    // Unrelated publications wake the waiter, which looks again and waits
    // on.
    for i in 0..3 {
        store.insert(&format!("other{i}"), i as u32).unwrap();
    }
    spawn_role_with_arg(TEST, "child", guard.name(), "insert:answer").wait_success();
    let (done, took) = timed(|| waiter.wait_success());
    assert_eq!(done.report("value"), "42");
    assert!(took < RECOVERY, "the waiter took {took:?} after the insert");
    // The wrong type is an error at once, not a wait.
    within("wait_for of the wrong type", WATCHDOG, move || {
        let (r, took) = timed(|| store.wait_for::<u32>("answer", PATIENCE).map(|_| ()));
        assert!(matches!(r, Err(Error::TypeMismatch { .. })), "{r:?}");
        assert!(took < Duration::from_secs(5));
    });
}
