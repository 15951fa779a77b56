//! A mutex held by a process that is killed is recovered, with its data,
//! by the next process that locks it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use shmstore::{Error, Handle, ShmMutex, ShmSafe, Store};
use shmstore_tests::{role, spawn_role, wait_until, Child, StoreGuard, PATIENCE};

/// How long a lock may take before the test declares a hang.
const WATCHDOG: Duration = Duration::from_secs(30);

/// Data guarded by the mutex; the child leaves it half-updated.
#[derive(ShmSafe, Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
struct Account {
    balance: u64,
    updates: u32,
    step: u32,
}

/// Runs `f` on another thread and fails the test if it does not finish
/// within [`WATCHDOG`].
fn within_watchdog<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(WATCHDOG) {
        Ok(r) => r,
        Err(e) => panic!("{what} did not return within {WATCHDOG:?} ({e}): it hangs"),
    }
}

/// Child part: lock `account`, write a recognisable half-update, tell the
/// parent through `holding`, then wait to be killed (bounded, so an orphan
/// never lingers).
fn hold_until_killed(name: &str) {
    let store = Store::open(name).unwrap();
    let account = store.get::<ShmMutex<Account>>("account").unwrap();
    let holding = store.get::<AtomicU32>("holding").unwrap();
    let mut guard = account.lock().expect("the child locks first");
    guard.balance = 1_000_042;
    guard.updates += 1;
    guard.step = 1; // "half-way": a real update would set it back to 0
    holding.store(std::process::id(), Ordering::Release);
    std::thread::sleep(PATIENCE * 2);
    panic!("the parent never killed this child");
}

fn setup(
    tag: &str,
) -> (
    StoreGuard,
    Store,
    Handle<ShmMutex<Account>>,
    Handle<AtomicU32>,
) {
    let guard = StoreGuard::unique(tag);
    let store = Store::create(guard.name(), 1 << 20).unwrap();
    store
        .insert(
            "account",
            ShmMutex::new(Account {
                balance: 7,
                updates: 0,
                step: 0,
            }),
        )
        .unwrap();
    store.insert("holding", AtomicU32::new(0)).unwrap();
    let account = store.get::<ShmMutex<Account>>("account").unwrap();
    let holding = store.get::<AtomicU32>("holding").unwrap();
    (guard, store, account, holding)
}

fn kill_holder(mut child: Child, holding: &AtomicU32) {
    let pid = child.pid();
    wait_until("the child holds the mutex", PATIENCE, || {
        holding.load(Ordering::Acquire) == pid
    });
    child.kill9();
    let done = child.wait();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(done.status.signal(), Some(libc::SIGKILL), "{done}");
}

/// Checks that the owner's death is reported (by `lock`, until someone
/// repairs the data), recovers the guard and repairs the data; then the
/// mutex must lock normally.
fn recover(account: Handle<ShmMutex<Account>>) {
    within_watchdog("lock() after the owner died", move || {
        match account.lock() {
            Err(Error::OwnerDied { what }) => {
                assert!(
                    what.contains("object \"account\""),
                    "the error names the object: {what}"
                );
            }
            Err(e) => panic!("lock failed instead of reporting owner death: {e}"),
            Ok(guard) => panic!("owner death not reported; data {:?}", *guard),
        }
        match account.lock_recover() {
            Ok(mut guard) if guard.owner_died() => {
                assert_eq!(
                    *guard,
                    Account {
                        balance: 1_000_042,
                        updates: 1,
                        step: 1
                    },
                    "the guard must carry what the dead owner wrote"
                );
                guard.step = 0;
                guard.updates += 1;
                guard.mark_consistent();
            }
            Ok(guard) => panic!("owner death not reported; data {:?}", *guard),
            Err(e) => panic!("lock_recover failed: {e}"),
        }
        // Recovered: locks normally now, with the repaired data.
        let guard = account
            .lock()
            .expect("the mutex works again after recovery");
        assert_eq!(
            *guard,
            Account {
                balance: 1_000_042,
                updates: 2,
                step: 0
            }
        );
        drop(guard);
        let guard = account
            .try_lock()
            .expect("try_lock")
            .expect("the mutex is free");
        assert_eq!(guard.updates, 2);
    });
}

#[test]
fn held_mutex_is_recovered_with_its_data_after_owner_is_killed() {
    const TEST: &str = "held_mutex_is_recovered_with_its_data_after_owner_is_killed";
    if let Some((_, name)) = role() {
        return hold_until_killed(&name);
    }
    let (guard, store, account, holding) = setup("owner-death");
    let child = spawn_role(TEST, "holder", guard.name());
    kill_holder(child, &holding);
    recover(account);

    // Another process also finds an ordinary, working mutex.
    let check = store.check().unwrap();
    assert!(check.is_ok(), "{check}");
}

#[test]
fn waiter_blocked_on_a_mutex_gets_owner_died_when_the_holder_is_killed() {
    const TEST: &str = "waiter_blocked_on_a_mutex_gets_owner_died_when_the_holder_is_killed";
    if let Some((_, name)) = role() {
        return hold_until_killed(&name);
    }
    let (guard, _store, account, holding) = setup("owner-death-waiter");
    let mut child = spawn_role(TEST, "holder", guard.name());
    let pid = child.pid();
    wait_until("the child holds the mutex", PATIENCE, || {
        holding.load(Ordering::Acquire) == pid
    });
    // A thread of ours blocks in lock() (or is about to) while the holder
    // is killed; either way it must come back with the dead owner's data.
    let (started_tx, started_rx) = mpsc::channel();
    let waiter_account = account.clone();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        started_tx.send(()).unwrap();
        let outcome = match waiter_account.lock_recover() {
            Ok(guard) if guard.owner_died() => Ok(*guard),
            Ok(guard) => Err(format!("no owner death reported: {:?}", *guard)),
            Err(e) => Err(format!("failed: {e}")),
        };
        let _ = tx.send(outcome);
    });
    started_rx.recv().unwrap();
    assert!(
        rx.try_recv().is_err(),
        "the waiter got the lock while the child still held it"
    );
    child.kill9();
    let done = child.wait();
    assert!(!done.status.success());
    let seen = rx
        .recv_timeout(WATCHDOG)
        .unwrap_or_else(|e| panic!("the blocked waiter did not return within {WATCHDOG:?}: {e}"))
        .unwrap();
    assert_eq!(seen.balance, 1_000_042);
    assert_eq!(seen.step, 1);
    // The waiter dropped its guard without repairing: the mutex works, but
    // every `lock` still reports the death until someone repairs the data.
    within_watchdog("lock() after recovery", move || {
        assert!(matches!(account.lock(), Err(Error::OwnerDied { .. })));
        let mut g = account
            .lock_recover()
            .expect("the mutex works again after recovery");
        assert!(g.owner_died());
        assert_eq!(g.step, 1);
        g.step = 0;
        g.mark_consistent();
        drop(g);
        assert_eq!(account.lock().expect("repaired").step, 0);
    });
}

#[test]
fn a_mutex_survives_several_owners_killed_in_turn() {
    const TEST: &str = "a_mutex_survives_several_owners_killed_in_turn";
    if let Some((_, name)) = role() {
        return hold_until_killed(&name);
    }
    let (guard, _store, account, holding) = setup("owner-death-repeat");
    for round in 0..3 {
        holding.store(0, Ordering::Release);
        // Reset to what the child expects to find (it adds one update).
        within_watchdog("lock() before a new holder", {
            let account = account.clone();
            move || {
                let mut g = account.lock_recover().unwrap();
                g.updates = 0;
                g.step = 0;
                g.mark_consistent();
            }
        });
        let child = spawn_role(TEST, "holder", guard.name());
        kill_holder(child, &holding);
        let a = account.clone();
        let died = within_watchdog("lock() after the owner died", move || {
            matches!(a.lock(), Err(Error::OwnerDied { .. }))
        });
        assert!(died, "round {round}: owner death not reported");
    }
}
