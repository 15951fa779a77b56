//! `ShmRwLock` across processes: a killed writer is reported to the next
//! reader and writer until someone repairs the data; a killed reader holds
//! writers up only for the detection delay; a crash at any step of reading
//! or writing leaves a lock that works; readers and writers killed at
//! random never see a torn update unreported.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use shmstore::{Error, Handle, ShmRwLock, ShmSafe, Store};
use shmstore_tests::{
    report, role, role_arg, spawn_role, spawn_role_with_arg, wait_until, Child, StoreGuard,
    PATIENCE,
};

#[path = "sync_support.rs"]
mod support;
use support::{assert_killed, ended, no_core_dumps, timed, within, Ended, Rng, RECOVERY, WATCHDOG};

/// Two words a writer keeps equal; a torn update leaves them apart.
#[derive(ShmSafe, Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
struct Pair {
    a: u64,
    b: u64,
}

type Lock = ShmRwLock<Pair>;

fn setup(tag: &str) -> (StoreGuard, Store, Handle<Lock>, Handle<AtomicU32>) {
    let guard = StoreGuard::unique(tag);
    let store = Store::create(guard.name(), 1 << 20).unwrap();
    let lock = store
        .get_or_insert_with("pair", || ShmRwLock::new(Pair { a: 0, b: 0 }))
        .unwrap();
    let holding = store
        .get_or_insert_with("holding", || AtomicU32::new(0))
        .unwrap();
    (guard, store, lock, holding)
}

fn open(name: &str) -> (Store, Handle<Lock>, Handle<AtomicU32>) {
    let store = Store::open(name).unwrap();
    let lock = store.get::<Lock>("pair").unwrap();
    let holding = store.get::<AtomicU32>("holding").unwrap();
    (store, lock, holding)
}

/// Child part: takes the lock as `role` says, tears the pair if writing,
/// says so, and waits to be killed.
fn hold_until_killed(role: &str, name: &str) {
    let (_store, lock, holding) = open(name);
    match role {
        "writer" => {
            let mut g = lock.write().unwrap();
            g.a += 1; // torn: b is not updated
            std::mem::forget(g);
        }
        "reader" => std::mem::forget(lock.read().unwrap()),
        "waiting-writer" => {
            // The parent holds a read lock: this claims the writer word
            // and waits for it.
            holding.store(std::process::id(), Ordering::Release);
            let _ = lock.write();
            panic!("the writer got the lock while the parent read");
        }
        other => panic!("unknown role {other}"),
    }
    holding.store(std::process::id(), Ordering::Release);
    std::thread::sleep(PATIENCE * 2);
    panic!("the parent never killed this child");
}

fn kill_holder(mut child: Child, holding: &AtomicU32) {
    let pid = child.pid();
    wait_until("the child holds the lock", PATIENCE, || {
        holding.load(Ordering::Acquire) == pid
    });
    child.kill9();
    assert_killed(&child.wait());
}

#[test]
fn a_writer_killed_while_writing_is_reported_to_the_next_reader_and_writer() {
    const TEST: &str = "a_writer_killed_while_writing_is_reported_to_the_next_reader_and_writer";
    if let Some((role, name)) = role() {
        return hold_until_killed(&role, &name);
    }
    let (guard, _store, lock, holding) = setup("rw-writer-death");
    kill_holder(spawn_role(TEST, "writer", guard.name()), &holding);
    within("recovery from a dead writer", WATCHDOG, move || {
        let (r, took) = timed(|| lock.read().map(|g| *g));
        match r {
            Err(Error::OwnerDied { what }) => {
                assert!(what.contains("ShmRwLock<Pair>"), "{what}");
                assert!(what.contains("object \"pair\""), "{what}");
            }
            other => panic!("a dead writer was not reported: {other:?}"),
        }
        assert!(took < RECOVERY, "found the dead writer after {took:?}");
        assert!(matches!(
            lock.write().map(|_| ()),
            Err(Error::OwnerDied { .. })
        ));
        assert!(matches!(
            lock.try_read().map(|_| ()),
            Err(Error::OwnerDied { .. })
        ));
        let r = lock.read_recover().unwrap();
        assert!(r.owner_died());
        assert_eq!(
            *r,
            Pair { a: 1, b: 0 },
            "the reader sees what the writer left"
        );
        drop(r);
        let mut w = lock.write_recover().unwrap();
        assert!(w.owner_died());
        w.b = w.a;
        w.mark_consistent();
        drop(w);
        assert_eq!(*lock.read().unwrap(), Pair { a: 1, b: 1 });
        *lock.write().unwrap() = Pair { a: 2, b: 2 };
        assert!(!lock.owner_died());
    });
}

#[test]
fn a_reader_killed_while_reading_holds_a_writer_up_only_for_the_detection_delay() {
    const TEST: &str =
        "a_reader_killed_while_reading_holds_a_writer_up_only_for_the_detection_delay";
    if let Some((role, name)) = role() {
        return hold_until_killed(&role, &name);
    }
    let (guard, _store, lock, holding) = setup("rw-reader-death");
    kill_holder(spawn_role(TEST, "reader", guard.name()), &holding);
    within("a write after a reader died", WATCHDOG, move || {
        assert!(
            lock.try_write().unwrap().is_none(),
            "the dead reader still counts"
        );
        let (g, took) = timed(|| lock.write().unwrap());
        assert!(!g.owner_died(), "a dead reader is not a dead writer");
        assert!(
            took < RECOVERY,
            "the dead reader held the writer for {took:?}"
        );
        drop(g);
        // And readers are fine too.
        assert_eq!(*lock.read().unwrap(), Pair { a: 0, b: 0 });
    });
}

#[test]
fn a_writer_killed_while_waiting_for_readers_is_not_reported_and_readers_go_on() {
    const TEST: &str =
        "a_writer_killed_while_waiting_for_readers_is_not_reported_and_readers_go_on";
    if let Some((role, name)) = role() {
        return hold_until_killed(&role, &name);
    }
    let (guard, _store, lock, holding) = setup("rw-waiting-writer");
    let read = lock.read().unwrap();
    let mut child = spawn_role(TEST, "waiting-writer", guard.name());
    let pid = child.pid();
    wait_until("the child waits to write", PATIENCE, || {
        holding.load(Ordering::Acquire) == pid
    });
    // Make sure it has claimed the writer word: a new reader (another
    // thread, not a recursive read) then has to wait.
    let l = lock.clone();
    wait_until("the child claims the writer word", PATIENCE, move || {
        std::thread::scope(|s| s.spawn(|| l.try_read().unwrap().is_none()).join().unwrap())
    });
    child.kill9();
    assert_killed(&child.wait());
    drop(read);
    within(
        "a read after the waiting writer died",
        WATCHDOG,
        move || {
            let (g, took) = timed(|| lock.read().unwrap());
            assert!(!g.owner_died(), "the dead writer never had access");
            assert!(took < RECOVERY, "took {took:?}");
            drop(g);
            assert!(lock.try_write().unwrap().is_some());
        },
    );
}

/// Child part of the crash-point test: with the crash armed at step `k`,
/// reads, writes (a torn-then-mended pair), and reads again.
fn read_write_read(name: &str) {
    no_core_dumps();
    let (_store, lock, _) = open(name);
    let k: u64 = role_arg().parse().unwrap();
    shmstore::crash_after_steps(k);
    let r = lock.read().unwrap();
    let seen = *r;
    drop(r);
    let mut w = lock.write().unwrap();
    w.a = seen.a + 1;
    std::hint::black_box(&mut *w);
    w.b = seen.a + 1;
    drop(w);
    assert_eq!(lock.read().unwrap().a, seen.a + 1);
    shmstore::crash_after_steps(0);
    report("steps", "done");
}

#[test]
fn a_crash_at_every_step_of_reading_and_writing_leaves_a_working_lock() {
    const TEST: &str = "a_crash_at_every_step_of_reading_and_writing_leaves_a_working_lock";
    if let Some((_, name)) = role() {
        return read_write_read(&name);
    }
    let (guard, _store, lock, _) = setup("rw-crash-points");
    let mut reported = 0;
    let mut steps = None;
    for k in 1..200u64 {
        let done = spawn_role_with_arg(TEST, "child", guard.name(), &k.to_string()).wait();
        let outcome = ended(&done);
        let l = lock.clone();
        let died_writing = within("the lock after a crash", WATCHDOG, move || {
            let (g, took) = timed(|| l.write_recover().unwrap());
            assert!(took < RECOVERY, "step {k}: took {took:?} to write again");
            let died = g.owner_died();
            drop(g);
            let mut g = l.write_recover().unwrap();
            let torn = g.a != g.b;
            // Only a writer that died while writing is reported, and a torn
            // pair is always reported.
            assert!(
                !torn || died,
                "step {k}: a torn pair without a report: {:?}",
                *g
            );
            g.b = g.a;
            g.mark_consistent();
            drop(g);
            assert!(
                l.try_read().unwrap().is_some(),
                "step {k}: readers come back"
            );
            died
        });
        reported += died_writing as u32;
        if outcome == Ended::Finished {
            assert!(
                !died_writing,
                "step {k}: reported though the child finished"
            );
            steps = Some(k - 1);
            break;
        }
    }
    let steps = steps.expect("the child never finished");
    eprintln!("{steps} crash points; {reported} of them left a report of the writer's death");
    // Two for each read (counted, released), three for the write
    // (claimed, exclusive, exclusive given up).
    assert_eq!(
        steps, 7,
        "crash points of a read, a write and a read: were steps added?"
    );
    assert!(reported >= 1, "no crash point fell inside the write");
}

/// Child part of the random-kill test: a loop of reads (checking the pair)
/// and writes (tearing it, then mending it), repairing after a dead writer.
fn churn(name: &str) {
    let (store, lock, _) = open(name);
    let ops = store.get::<AtomicU64>("ops").unwrap();
    let mut rng = Rng::from_env_or_clock("churn");
    loop {
        if rng.below(4) == 0 {
            let mut g = match lock.try_write_for(PATIENCE) {
                Ok(Some(g)) => g,
                Ok(None) => {
                    report("violation", "a write waited a whole minute");
                    return;
                }
                Err(Error::OwnerDied { .. }) => {
                    let mut g = lock.write_recover().unwrap();
                    if g.owner_died() {
                        report("repaired", format!("{:?}", *g));
                    }
                    g.b = g.a;
                    g.mark_consistent();
                    g
                }
                Err(e) => panic!("{e}"),
            };
            g.a += 1;
            for _ in 0..rng.below(200) {
                std::hint::spin_loop();
            }
            g.b = g.a;
        } else {
            match lock.try_read_for(PATIENCE) {
                Ok(Some(g)) => {
                    if g.a != g.b {
                        report("violation", format!("a torn pair, unreported: {:?}", *g));
                    }
                }
                Ok(None) => {
                    report("violation", "a read waited a whole minute");
                    return;
                }
                Err(Error::OwnerDied { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        }
        ops.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn readers_and_writers_killed_at_random_never_see_an_unreported_torn_update() {
    const TEST: &str = "readers_and_writers_killed_at_random_never_see_an_unreported_torn_update";
    if let Some((_, name)) = role() {
        return churn(&name);
    }
    let (guard, store, lock, _) = setup("rw-random-kills");
    let ops = store
        .get_or_insert_with("ops", || AtomicU64::new(0))
        .unwrap();
    let mut rng = Rng::from_env_or_clock(TEST);
    let mut children: Vec<Child> = (0..3)
        .map(|_| spawn_role(TEST, "churn", guard.name()))
        .collect();
    let mut outputs = Vec::new();
    const KILLS: usize = 12;
    for _ in 0..KILLS {
        let target = ops.load(Ordering::Relaxed) + 200 + rng.below(2000);
        wait_until("the children make progress", PATIENCE, || {
            ops.load(Ordering::Relaxed) >= target
        });
        let i = rng.below(children.len() as u64) as usize;
        let mut victim = children.swap_remove(i);
        victim.kill9();
        outputs.push(victim.wait());
        children.push(spawn_role(TEST, "churn", guard.name()));
    }
    let target = ops.load(Ordering::Relaxed) + 500;
    wait_until("the survivors go on", PATIENCE, || {
        ops.load(Ordering::Relaxed) >= target
    });
    for mut c in children {
        c.kill9();
        outputs.push(c.wait());
    }
    let mut repairs = 0;
    for out in &outputs {
        assert!(out.reports("violation").is_empty(), "{out}");
        repairs += out.reports("repaired").len();
    }
    eprintln!(
        "{KILLS} kills, {} operations, {repairs} repairs after a writer's death",
        ops.load(Ordering::Relaxed)
    );
    within("the lock after the kills", WATCHDOG, move || {
        let mut g = lock.write_recover().unwrap();
        g.b = g.a;
        g.mark_consistent();
        drop(g);
        assert!(lock.try_read().unwrap().is_some());
    });
}
