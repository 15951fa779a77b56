//! `ShmCondvar` with `ShmMutex` across processes: a ping-pong counts every
//! turn; a waiter or a notifier killed at every step of its call leaves no
//! other waiter asleep and the mutex working.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use shmstore::{Handle, ShmCondvar, ShmMutex, ShmSafe, Store};
use shmstore_tests::{
    report, role, role_arg, spawn_role, spawn_role_with_arg, wait_until, StoreGuard, PATIENCE,
};

#[path = "sync_support.rs"]
mod support;
use support::{assert_killed, ended, no_core_dumps, timed, within, Ended, RECOVERY, WATCHDOG};

/// The state the mutex guards: whose turn it is (0 parent, 1 child, 2
/// quit) and how many turns the child took.
#[derive(ShmSafe, Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
struct Turn {
    turn: u32,
    child_turns: u32,
}

#[derive(ShmSafe)]
#[repr(C)]
struct Table {
    state: ShmMutex<Turn>,
    changed: ShmCondvar,
}

fn setup(tag: &str) -> (StoreGuard, Store, Handle<Table>, Handle<AtomicU32>) {
    let guard = StoreGuard::unique(tag);
    let store = Store::create(guard.name(), 1 << 20).unwrap();
    let table = store
        .get_or_insert_with("table", || Table {
            state: ShmMutex::new(Turn {
                turn: 0,
                child_turns: 0,
            }),
            changed: ShmCondvar::new(),
        })
        .unwrap();
    let waiting = store
        .get_or_insert_with("waiting", || AtomicU32::new(0))
        .unwrap();
    (guard, store, table, waiting)
}

fn open(name: &str) -> (Store, Handle<Table>, Handle<AtomicU32>) {
    let store = Store::open(name).unwrap();
    let table = store.get::<Table>("table").unwrap();
    let waiting = store.get::<AtomicU32>("waiting").unwrap();
    (store, table, waiting)
}

const TRIPS: u32 = 2000;

#[test]
fn a_ping_pong_between_processes_counts_every_turn() {
    const TEST: &str = "a_ping_pong_between_processes_counts_every_turn";
    if let Some((_, name)) = role() {
        let (_store, t, _) = open(&name);
        let mut g = t.state.lock().unwrap();
        loop {
            g = t.changed.wait_while(g, |s| s.turn == 0).unwrap();
            if g.turn == 2 {
                return;
            }
            g.turn = 0;
            g.child_turns += 1;
            t.changed.notify_one();
        }
    }
    let (guard, _store, t, _) = setup("cv-pingpong");
    let child = spawn_role(TEST, "child", guard.name());
    within("the ping-pong", WATCHDOG, move || {
        for _ in 0..TRIPS {
            let mut g = t.state.lock().unwrap();
            g.turn = 1;
            t.changed.notify_one();
            let g = t.changed.wait_while(g, |s| s.turn != 0).unwrap();
            drop(g);
        }
        let mut g = t.state.lock().unwrap();
        assert_eq!(g.child_turns, TRIPS);
        g.turn = 2;
        t.changed.notify_all();
    });
    child.wait_success();
}

/// Child part: waits on the condition variable with the crash armed at
/// step `k` (one bounded wait), then exits.
fn wait_with_crash(name: &str) {
    no_core_dumps();
    let (_store, t, waiting) = open(name);
    let k: u64 = role_arg().parse().unwrap();
    let g = t.state.lock().unwrap();
    waiting.fetch_add(1, Ordering::AcqRel);
    shmstore::crash_after_steps(k);
    let (g, _) = t
        .changed
        .wait_timeout(g, Duration::from_millis(50))
        .unwrap();
    shmstore::crash_after_steps(0);
    drop(g);
}

#[test]
fn a_waiter_killed_at_every_step_of_its_wait_leaves_the_next_waiter_wakeable() {
    const TEST: &str = "a_waiter_killed_at_every_step_of_its_wait_leaves_the_next_waiter_wakeable";
    if let Some((_, name)) = role() {
        return wait_with_crash(&name);
    }
    let (guard, _store, t, _) = setup("cv-waiter-crash");
    let mut steps = None;
    for k in 1..50u64 {
        let done = spawn_role_with_arg(TEST, "waiter", guard.name(), &k.to_string()).wait();
        let outcome = ended(&done);
        let t = t.clone();
        within("a wait and a notify after the crash", WATCHDOG, move || {
            // The mutex is free (no step is inside it) and not poisoned.
            let mut g = t
                .state
                .try_lock_for(RECOVERY)
                .unwrap()
                .expect("the mutex is free");
            g.turn = 0;
            drop(g);
            std::thread::scope(|s| {
                let waiter = s.spawn(|| {
                    let g = t.state.lock().unwrap();
                    let (r, took) =
                        timed(|| t.changed.wait_timeout_while(g, PATIENCE, |s| s.turn == 0));
                    let (g, res) = r.unwrap();
                    (!res.timed_out() && g.turn == 1, took)
                });
                t.state.lock().unwrap().turn = 1;
                t.changed.notify_one();
                let (woken, took) = waiter.join().unwrap();
                assert!(woken, "step {k}");
                assert!(took < RECOVERY, "step {k}: the waiter took {took:?}");
            });
        });
        if outcome == Ended::Finished {
            steps = Some(k - 1);
            break;
        }
    }
    let steps = steps.expect("the child never finished");
    assert!(steps >= 2, "only {steps} crash points in a wait");
}

/// Child part: sets the turn and notifies (`one` or `all`) with the crash
/// armed at step `k`; `none` sets the turn and dies before notifying.
fn notify_with_crash(name: &str) {
    no_core_dumps();
    let (_store, t, _) = open(name);
    let arg = role_arg();
    let (how, k) = arg.split_once(':').unwrap();
    let k: u64 = k.parse().unwrap();
    t.state.lock().unwrap().turn = 1;
    shmstore::crash_after_steps(k);
    match how {
        "one" => t.changed.notify_one(),
        "all" => t.changed.notify_all(),
        "none" => std::process::abort(),
        other => panic!("{other}"),
    }
    shmstore::crash_after_steps(0);
}

#[test]
fn a_notifier_killed_at_every_step_leaves_no_waiter_asleep() {
    const TEST: &str = "a_notifier_killed_at_every_step_leaves_no_waiter_asleep";
    if let Some((_, name)) = role() {
        return notify_with_crash(&name);
    }
    let (guard, _store, t, waiting) = setup("cv-notifier-crash");
    for how in ["none", "one", "all"] {
        for k in 1..20u64 {
            t.state.lock().unwrap().turn = 0;
            waiting.store(0, Ordering::Release);
            // Two waiters in this process, asleep or about to be.
            let waiters: Vec<_> = (0..2)
                .map(|_| {
                    let t = t.clone();
                    let waiting = waiting.clone();
                    std::thread::spawn(move || {
                        let g = t.state.lock().unwrap();
                        waiting.fetch_add(1, Ordering::AcqRel);
                        timed(|| t.changed.wait_timeout_while(g, PATIENCE, |s| s.turn == 0)).1
                    })
                })
                .collect();
            wait_until("both waiters wait", PATIENCE, || {
                waiting.load(Ordering::Acquire) == 2
            });
            let arg = format!("{how}:{k}");
            let done = spawn_role_with_arg(TEST, "notifier", guard.name(), &arg).wait();
            let outcome = ended(&done);
            for w in waiters {
                let took = w.join().unwrap();
                assert!(took < RECOVERY, "{arg}: a waiter slept {took:?}");
            }
            if how == "none" || outcome == Ended::Finished {
                break;
            }
        }
    }
}

#[test]
fn a_waiter_killed_while_asleep_does_not_take_the_notification_of_another() {
    const TEST: &str = "a_waiter_killed_while_asleep_does_not_take_the_notification_of_another";
    if let Some((_, name)) = role() {
        let (_store, t, waiting) = open(&name);
        let g = t.state.lock().unwrap();
        waiting.fetch_add(1, Ordering::AcqRel);
        let g = t.changed.wait_while(g, |s| s.turn == 0).unwrap();
        report("turn", g.turn);
        return;
    }
    let (guard, _store, t, waiting) = setup("cv-killed-waiter");
    let mut doomed = spawn_role(TEST, "waiter", guard.name());
    let survivor = spawn_role(TEST, "waiter", guard.name());
    wait_until("both waiters wait", PATIENCE, || {
        waiting.load(Ordering::Acquire) == 2
    });
    doomed.kill9();
    assert_killed(&doomed.wait());
    // One notify_one: it must reach the survivor, not the dead waiter.
    t.state.lock().unwrap().turn = 1;
    t.changed.notify_one();
    let (done, took) = timed(|| survivor.wait());
    assert!(done.status.success(), "{done}");
    assert_eq!(done.report("turn"), "1");
    assert!(took < RECOVERY, "the survivor took {took:?}");
}
