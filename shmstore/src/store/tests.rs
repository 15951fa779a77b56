use super::*;

/// Runs `f` on a thread and fails the test if it does not finish in
/// 60 s, instead of hanging the test run.
fn with_watchdog(f: impl FnOnce() + Send + 'static) {
    let (done, wait) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        f();
        let _ = done.send(());
    });
    match wait.recv_timeout(Duration::from_secs(60)) {
        Ok(()) => worker.join().unwrap(),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(worker.join().unwrap_err())
        }
        Err(e) => panic!("watchdog: the test did not finish: {e}"),
    }
}

#[test]
fn a_slot_whose_pid_was_reused_is_released_and_ours_is_kept() {
    let name = format!("shmstore-unit-reuse-{}", std::process::id());
    let _ = Store::unlink(&name);
    let store = Store::create(&name, 1 << 20).unwrap();
    let _ = Store::unlink(&name);
    store.insert_slice("x", &[1u64; 1024]).unwrap();
    // A process that had our pid before us (same pid, another start
    // time) pinned "x" and died.
    let StartTime::Known(start) = proc::own_start_time() else {
        panic!("this test needs a readable /proc/self/stat");
    };
    let ghost = Owner {
        start: StartTime::Known(start + 1),
        ..own_identity()
    };
    store
        .with_arena(|a| {
            let slot = a.attach(ghost)?.expect("a free slot");
            let f = a.lookup(b"x", hash_name(b"x"))?.expect("x");
            a.pin(f.rec)?;
            assert!(a.count_pin(slot, f.rec, 1)?);
            Ok(())
        })
        .unwrap();
    store.remove("x").unwrap();
    let pinned = store.stats().unwrap().used;
    let report = store.check().unwrap();
    assert!(report.is_ok(), "{report}");
    assert!(store.stats().unwrap().used + 8 * 1024 <= pinned, "x freed");
    let owners: Vec<Owner> = store
        .with_arena(|a| a.attached())
        .unwrap()
        .into_iter()
        .map(|(_, o)| o)
        .collect();
    assert_eq!(owners, vec![own_identity()]);
}

#[test]
fn a_slot_of_another_pid_namespace_is_never_released_from_here() {
    let name = format!("shmstore-unit-pidns-{}", std::process::id());
    let _ = Store::unlink(&name);
    let store = Store::create(&name, 1 << 20).unwrap();
    let _ = Store::unlink(&name);
    store.insert_slice("x", &[1u64; 1024]).unwrap();
    // A process this namespace cannot see (its pid does not exist
    // here) pins "x", which is then removed.
    let stranger = Owner {
        pid: u32::MAX - 1,
        pidns: proc::own_pid_namespace().wrapping_add(1),
        start: StartTime::Known(1),
    };
    store
        .with_arena(|a| {
            let slot = a.attach(stranger)?.expect("a free slot");
            let f = a.lookup(b"x", hash_name(b"x"))?.expect("x");
            a.pin(f.rec)?;
            assert!(a.count_pin(slot, f.rec, 1)?);
            Ok(())
        })
        .unwrap();
    store.remove("x").unwrap();
    let pinned = store.stats().unwrap().used;
    let report = store.check().unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.processes, 2, "the stranger's slot is kept");
    assert_eq!(store.stats().unwrap().used, pinned, "x is still pinned");
}

#[test]
fn a_creator_is_taken_for_dead_only_when_it_is_known_to_be_gone() {
    struct Unlink(String);
    impl Drop for Unlink {
        fn drop(&mut self) {
            let _ = Store::unlink(&self.0);
        }
    }
    let name = format!("shmstore-unit-creator-{}", std::process::id());
    let _ = Store::unlink(&name);
    let store = Store::create(&name, 1 << 20).unwrap();
    let _unlink = Unlink(name.clone());
    let StartTime::Known(start) = proc::own_start_time() else {
        panic!("this test needs a readable /proc/self/stat");
    };
    let mem = store.inner.mem;
    // The header as a creator leaves it before it is ready: `(pid, low 32
    // bits of its start time)`.
    let creating = |pid: u32, started: u32| {
        mem.set_u32(OFF_CREATOR, pid).unwrap();
        mem.set_u32(OFF_CREATOR_START, started).unwrap();
        mem.atomic_u32(OFF_STATE)
            .unwrap()
            .store(STATE_CREATING, Ordering::Release);
        match Store::options()
            .open_timeout(Duration::from_millis(50))
            .open(&name)
        {
            Err(e @ Error::Corrupted { .. }) => e.to_string(),
            other => panic!("expected Corrupted, got {other:?}"),
        }
    };
    let me = std::process::id();
    let waited = "still being initialised";
    let died = "which died";
    // Alive: waited for until the open timeout.
    assert!(creating(me, start as u32).contains(waited));
    // Start time unknown (the sentinel): alive while the pid exists.
    let unknown = StartTime::Unknown.low32_word();
    assert!(creating(me, unknown).contains(waited));
    // The pid now belongs to a process that started at another time.
    assert!(creating(me, start as u32 ^ 1).contains(died));
    // No process has the pid.
    assert!(creating(i32::MAX as u32, start as u32).contains(died));
    assert!(creating(i32::MAX as u32, unknown).contains(died));
    mem.atomic_u32(OFF_STATE)
        .unwrap()
        .store(STATE_READY, Ordering::Release);
}

#[test]
fn check_reports_pins_a_process_counts_but_the_record_does_not_have() {
    let name = format!("shmstore-unit-pins-{}", std::process::id());
    let _ = Store::unlink(&name);
    let store = Store::create(&name, 1 << 20).unwrap();
    let _ = Store::unlink(&name);
    store.insert("x", 5u64).unwrap();
    assert!(store.check().unwrap().is_ok());
    // A second slot of this (live) process claims a pin that the
    // record's pin word never got.
    store
        .with_arena(|a| {
            let slot = a.attach(own_identity())?.expect("a free slot");
            let f = a.lookup(b"x", hash_name(b"x"))?.expect("x");
            assert!(a.count_pin(slot, f.rec, 1)?);
            Ok(())
        })
        .unwrap();
    let report = store.check().unwrap();
    assert_eq!(report.processes, 2);
    assert_eq!(report.problems.len(), 1, "{report}");
    assert!(
        report.problems[0].contains("processes count 1 pins"),
        "{report}"
    );
}

#[test]
fn a_header_lock_whose_owner_died_is_recovered_not_waited_on() {
    // Regression: formatting the header once zeroed the initialised lock,
    // leaving a plain process-private mutex that hung here.
    with_watchdog(header_lock_owner_death);
}

fn header_lock_owner_death() {
    let name = format!("shmstore-unit-hdr-{}", std::process::id());
    struct Unlink(String);
    impl Drop for Unlink {
        fn drop(&mut self) {
            let _ = Store::unlink(&self.0);
        }
    }
    let _ = Store::unlink(&name);
    let _cleanup = Unlink(name.clone());
    let store = Store::create(&name, 1 << 20).unwrap();
    store.insert("kept", 7u64).unwrap();
    let s2 = store.clone();
    // A thread that dies holding the header lock, as a killed process
    // would: robust mutexes report the death when the thread exits.
    std::thread::spawn(move || core::mem::forget(s2.inner.lock().unwrap()))
        .join()
        .unwrap();
    assert_eq!(*store.get::<u64>("kept").unwrap(), 7);
    store.insert("after", 8u64).unwrap();
    assert_eq!(store.with_arena(|a| Header(a).recoveries()).unwrap(), 1);
    assert!(store.check().unwrap().is_ok());
}
