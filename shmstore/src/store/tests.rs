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

/// Unlinks a store's name when dropped (even if the test fails).
struct Unlink(String);

impl Drop for Unlink {
    fn drop(&mut self) {
        let _ = Store::unlink(&self.0);
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
    // A creator of another pid namespace (or of an unknown one) cannot be
    // told dead from here: waited for, whatever its pid says here; and a
    // look describes it as being created, never as half-created.
    let ours = mem.u32(OFF_PIDNS).unwrap();
    assert_eq!(ours, proc::own_pid_namespace());
    for other in [ours ^ 1, 0, PIDNS_MIXED] {
        mem.set_u32(OFF_PIDNS, other).unwrap();
        assert!(creating(i32::MAX as u32, start as u32).contains(waited));
        assert!(creating(me, start as u32 ^ 1).contains(waited));
        let info = crate::inspect::segment(&name).unwrap();
        assert_eq!(info.status, crate::inspect::Status::Creating, "{info:?}");
    }
    mem.set_u32(OFF_PIDNS, ours).unwrap();
    mem.atomic_u32(OFF_STATE)
        .unwrap()
        .store(STATE_READY, Ordering::Release);
}

/// `StoreOptions::lock_timeout`: opening (which joins the process table
/// under the header lock) and every operation give up after the timeout
/// while another holder keeps the lock, with `Error::TimedOut` and
/// nothing done; without a timeout they wait, as before.
#[test]
fn a_lock_timeout_bounds_every_wait_for_the_header_lock() {
    let name = format!("shmstore-unit-lock-timeout-{}", std::process::id());
    let _ = Store::unlink(&name);
    let store2 = Store::create(&name, 1 << 20).unwrap();
    let _unlink = Unlink(name.clone());
    let impatient = Store::options()
        .lock_timeout(Duration::from_millis(100))
        .open(&name)
        .unwrap();
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let holder = {
        let store2 = store2.clone();
        std::thread::spawn(move || {
            let guard = store2.inner.lock().unwrap();
            held_tx.send(()).unwrap();
            let _ = go_rx.recv_timeout(Duration::from_secs(60));
            drop(guard);
        })
    };
    held_rx.recv_timeout(Duration::from_secs(60)).unwrap();
    let started = Instant::now();
    match Store::options()
        .lock_timeout(Duration::from_millis(100))
        .open(&name)
    {
        Err(Error::TimedOut { what }) => assert!(what.contains("header lock"), "{what}"),
        other => panic!("{other:?}"),
    }
    match impatient.insert("x", 1u64) {
        Err(Error::TimedOut { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(impatient.collect(), Err(Error::TimedOut { .. })));
    // A wait with a deadline of its own (far later) still waits for the
    // header lock only as long as the lock timeout (merge review).
    match impatient.wait_for::<u64>("y", Duration::from_secs(120)) {
        Err(Error::TimedOut { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(30));
    go_tx.send(()).unwrap();
    holder.join().unwrap();
    assert!(!store2.contains("x").unwrap(), "nothing was done");
    impatient.insert("x", 1u64).unwrap();
    assert!(store2.contains("x").unwrap());
    drop((store2, impatient));
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

/// A fresh store unlinked at once (its mapping lives on), for tests that
/// need no second process.
fn scratch(tag: &str, capacity: u64) -> Store {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!("shmstore-unit-{tag}-{}-{n}", std::process::id());
    let _ = Store::unlink(&name);
    let store = Store::create(&name, capacity).unwrap();
    Store::unlink(&name).unwrap();
    store
}

// Regression (review item 2): a guard forgotten with `mem::forget` leaves
// its mutex on this thread's robust list; dropping the last handle used to
// unmap it, and the next robust lock of this thread wrote through the stale
// entry (a SIGSEGV, or a pointer written into another store's memory). The
// region is now left mapped while a lock in it may be held.
#[test]
fn a_store_whose_mutex_guard_was_forgotten_is_not_unmapped() {
    with_watchdog(|| {
        let base;
        {
            let store = scratch("forget", 1 << 20);
            base = store.inner.region.id();
            let m = store
                .get_or_insert_with("m", || crate::ShmMutex::new(7u64))
                .unwrap();
            core::mem::forget(m.lock().unwrap());
            drop(m);
            drop(store);
        }
        assert!(region::was_leaked(base), "the region stays mapped");
        // This thread's robust list still runs through the forgotten
        // mutex: locking and unlocking other robust mutexes, in a new store
        // likely mapped where the old one might have been, must work and
        // must not write into the new store's zeroed memory.
        let other = scratch("after-forget", 1 << 20);
        other.insert_slice("zeros", &[0u64; 4096]).unwrap();
        let m2 = other
            .get_or_insert_with("m2", || crate::ShmMutex::new(0u64))
            .unwrap();
        for _ in 0..100 {
            *m2.lock().unwrap() += 1;
        }
        assert_eq!(*m2.lock().unwrap(), 100);
        let zeros = other.get_slice::<u64>("zeros").unwrap();
        assert!(zeros.iter().all(|&w| w == 0));
        // A store whose locks are all released is unmapped as usual.
        let other_base = other.inner.region.id();
        drop((zeros, m2, other));
        assert!(!region::was_leaked(other_base));
    });
}

// Regression (review item 2, the header lock): a thread that exits holding
// the header lock leaves it on no list once the kernel has processed its
// exit, but this process cannot tell when that happened: its region is not
// unmapped either.
#[test]
fn a_store_whose_header_lock_a_thread_exited_holding_is_not_unmapped() {
    with_watchdog(|| {
        let store = scratch("hdr-forget", 1 << 20);
        let base = store.inner.region.id();
        let s2 = store.clone();
        std::thread::spawn(move || core::mem::forget(s2.inner.lock().unwrap()))
            .join()
            .unwrap();
        store.insert("x", 1u64).unwrap();
        drop(store);
        assert!(region::was_leaked(base));
    });
}

/// A hand-written `ShmSafe` type aligned to more than a page.
#[repr(C, align(8192))]
struct OverAligned(u64);

// SAFETY: a u64 padded to 8192 bytes (no pointers, no drop glue, every bit
// pattern valid); LAYOUT records its real size and alignment. Its alignment
// breaks the contract on purpose: the store must refuse it.
unsafe impl ShmSafe for OverAligned {
    const LAYOUT: &'static TypeLayout = &TypeLayout {
        name: "OverAligned",
        size: core::mem::size_of::<OverAligned>(),
        align: core::mem::align_of::<OverAligned>(),
        kind: crate::LayoutKind::Primitive,
    };
}

// Regression (review item 1): a value aligned above a page was placed at an
// offset that is a multiple of its alignment, which is not an aligned
// address in a mapping that is only page-aligned (debug builds aborted in
// `copy_nonoverlapping`; release builds handed out a misaligned `&T`). The
// derive refuses such a type (UI test `repr/align_above_page`); a
// hand-written impl is refused by the store.
#[test]
fn a_type_aligned_above_a_page_is_refused() {
    let store = scratch("overaligned", 1 << 20);
    for result in [
        store.insert("big", OverAligned(1)).map(|_| ()),
        store.get::<OverAligned>("big").map(|_| ()),
        store
            .get_or_insert_with("big", || OverAligned(2))
            .map(|_| ()),
    ] {
        match result {
            Err(Error::InvalidArgument { reason }) => {
                assert!(reason.contains("4096"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }
    // Page alignment itself is fine, at an aligned address.
    #[derive(crate::ShmSafe, Clone, Copy)]
    #[shm(crate = "crate")]
    #[repr(C, align(4096))]
    struct Page([u64; 4]);
    store.insert("page", Page([9; 4])).unwrap();
    let p = store.get::<Page>("page").unwrap();
    assert_eq!(&*p as *const Page as usize % 4096, 0);
    assert_eq!(p.0, [9; 4]);
}

// Regression (review item 6): `insert` allocated by the registry's
// recorded size but copied `size_of::<T>()`, so a corrupted size word made
// it overwrite a neighbouring live object and return `Ok`.
#[test]
fn a_corrupted_registry_size_is_an_error_not_a_write_past_the_object() {
    let store = scratch("reg-size", 1 << 20);
    store.insert("first", [1u64; 4]).unwrap();
    store.insert("neighbour", [2u64; 4]).unwrap();
    store
        .with_arena(|a| {
            let idx = a
                .find_type(crate::layout::graph_fingerprint_of::<[u64; 4]>())?
                .expect("registered");
            let e = a.entry(idx)?;
            a.mem.set_u64(e + crate::arena::registry::E_SIZE, 8)
        })
        .unwrap();
    for _ in 0..3 {
        assert!(
            matches!(
                store.insert(&format!("third-{}", 0), [3u64; 4]),
                Err(Error::Corrupted { .. })
            ),
            "insert must refuse a type whose registry entry disagrees"
        );
    }
    assert!(matches!(
        store.get::<[u64; 4]>("neighbour"),
        Err(Error::Corrupted { .. })
    ));
    // Nothing was written: put the size back and everything is intact.
    store
        .with_arena(|a| {
            let idx = a
                .find_type(crate::layout::graph_fingerprint_of::<[u64; 4]>())?
                .expect("registered");
            let e = a.entry(idx)?;
            a.mem.set_u64(e + crate::arena::registry::E_SIZE, 32)
        })
        .unwrap();
    assert_eq!(*store.get::<[u64; 4]>("neighbour").unwrap(), [2; 4]);
    assert_eq!(*store.get::<[u64; 4]>("first").unwrap(), [1; 4]);
    assert!(store.check().unwrap().is_ok());
}

// Regression (smaller points): a slice of zero-sized elements with invalid
// bit patterns was checked once per element, so a corrupted length near
// u64::MAX never finished.
#[test]
fn a_zero_sized_slice_with_a_huge_length_is_read_at_once() {
    with_watchdog(|| {
        let store = scratch("zst", 1 << 20);
        store.insert_slice("empty", &[[false; 0]; 3]).unwrap();
        store
            .with_arena(|a| {
                let f = a.lookup(b"empty", hash_name(b"empty"))?.expect("empty");
                a.mem
                    .set_u64(f.rec + crate::arena::dir::REC_LEN, u64::MAX / 2)
            })
            .unwrap();
        let s = store.get_slice::<[bool; 0]>("empty").unwrap();
        assert_eq!(s.len() as u64, u64::MAX / 2);
    });
}

#[test]
fn entries_carry_recorded_types_that_tools_read_by_fingerprint() {
    use crate::layout::LayoutDesc;
    use crate::ShmMutex;
    let store = scratch("layouts", 1 << 20);
    store.insert("a", 1u64).unwrap();
    store.insert("b", 2u64).unwrap();
    store.insert_slice("s", &[[1u16; 4]; 3]).unwrap();
    store.insert("m", ShmMutex::new([1u8, 2])).unwrap();
    let mut entries = store.entries().unwrap();
    entries.sort_by(|x, y| x.name.cmp(&y.name));
    let expected: [(&str, &TypeLayout); 4] = [
        ("a", u64::LAYOUT),
        ("b", u64::LAYOUT),
        ("m", <ShmMutex<[u8; 2]>>::LAYOUT),
        ("s", <[u16; 4]>::LAYOUT),
    ];
    for (e, (name, layout)) in entries.iter().zip(expected) {
        assert_eq!(e.name, name);
        assert_eq!(*e.layout, layout.to_desc());
        assert_eq!(e.type_name, layout.type_expr());
        assert_eq!(e.fingerprint, layout.fingerprint());
        let registered: Option<LayoutDesc> = store.registered_layout(e.fingerprint).unwrap();
        assert_eq!(registered.as_ref(), Some(&*e.layout));
    }
    assert!(Arc::ptr_eq(&entries[0].layout, &entries[1].layout));
    assert_eq!(store.registered_layout(u32::FINGERPRINT).unwrap(), None);
    // The layout shown by a type mismatch is the registered one, rendered.
    match store.get::<u32>("m") {
        Err(Error::TypeMismatch { found, .. }) => {
            assert_eq!(found, <ShmMutex<[u8; 2]>>::LAYOUT.to_string())
        }
        other => panic!("{other:?}"),
    }
}

/// `$t` in one-element arrays, one array per token after the `;`.
macro_rules! nested_arrays {
    ($t:ty;) => { $t };
    ($t:ty; $head:tt $($rest:tt)*) => { nested_arrays!([$t; 1]; $($rest)*) };
}

#[test]
fn a_type_nested_too_deep_to_record_is_refused() {
    let store = scratch("too-deep", 1 << 20);
    // 32 levels: the most the registry records.
    type Deepest =
        nested_arrays!(u8; x x x x x x x x x x x x x x x x x x x x x x x x x x x x x x x);
    store.insert("deepest", Deepest::default()).unwrap();
    assert_eq!(store.entries().unwrap()[0].layout.size, 1);
    type TooDeep =
        nested_arrays!(u8; x x x x x x x x x x x x x x x x x x x x x x x x x x x x x x x x);
    match store.insert("too-deep", TooDeep::default()) {
        Err(Error::InvalidArgument { reason }) => {
            assert!(reason.contains("deeper than 32"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(!store.contains("too-deep").unwrap());
    assert!(store.check().unwrap().is_ok());
}

#[test]
fn a_recorded_type_that_does_not_decode_is_reported_not_shown() {
    let store = scratch("bad-layout", 1 << 20);
    store.insert("x", 5u64).unwrap();
    // The encoded layout's first byte is its format version.
    let blob = store
        .with_arena(|a| {
            let idx = a.find_type(u64::FINGERPRINT)?.expect("registered");
            a.mem.u64(a.entry(idx)? + crate::arena::registry::E_BLOB)
        })
        .unwrap();
    let set_version = |v: u8| store.with_arena(|a| a.mem.write_bytes(blob, &[v])).unwrap();
    set_version(0xee);
    let report = store.check().unwrap();
    assert!(
        report.problems.len() == 1 && report.problems[0].contains("format version 238"),
        "{report}"
    );
    assert!(matches!(store.entries(), Err(Error::Corrupted { .. })));
    assert!(matches!(
        store.registered_layout(u64::FINGERPRINT),
        Err(Error::Corrupted { .. })
    ));
    // A wrong type cannot be shown what is stored; the right type does not
    // need the layout.
    assert!(matches!(
        store.get::<i64>("x"),
        Err(Error::Corrupted { .. })
    ));
    assert_eq!(*store.get::<u64>("x").unwrap(), 5);
    set_version(crate::layout::LAYOUT_FORMAT_VERSION);
    assert!(store.check().unwrap().is_ok());
    assert_eq!(store.entries().unwrap().len(), 1);
}

/// Review 8, finding 3, in one process: the header records the creator's
/// pid namespace; a process attaching from another one makes the store
/// mixed, for good; and in a mixed store no holder is judged dead — a
/// reader slot, a writer word, a semaphore holder and a queue claim naming
/// processes that do not exist here are all waited for, never taken over.
#[test]
fn a_store_attached_from_another_pid_namespace_judges_no_holder_dead() {
    let name = format!("shmstore-unit-pidns-{}", std::process::id());
    let _ = Store::unlink(&name);
    let store = Store::create(&name, 1 << 20).unwrap();
    let word = || {
        store
            .inner
            .mem
            .atomic_u32(OFF_PIDNS)
            .unwrap()
            .load(Ordering::SeqCst)
    };
    assert_eq!(word(), proc::own_pid_namespace());
    assert!(store.inner.one_pid_namespace());
    let lock = store
        .get_or_insert_with("l", || crate::ShmRwLock::new(0u64))
        .unwrap();
    // Another namespace's process attaches (its namespace in the word, as
    // if it had created the store; then ours attaches again).
    store
        .inner
        .mem
        .atomic_u32(OFF_PIDNS)
        .unwrap()
        .store(proc::own_pid_namespace() ^ 1, Ordering::SeqCst);
    let second = Store::open(&name).unwrap();
    let _ = Store::unlink(&name);
    assert_eq!(word(), PIDNS_MIXED, "marked mixed at attach");
    assert!(!store.inner.one_pid_namespace());
    assert!(!second.inner.one_pid_namespace());
    drop(second);
    assert_eq!(word(), PIDNS_MIXED, "for good");
    // A writer word naming a process that does not exist here (it may be
    // one of the other namespace's): waited for, not repaired.
    let ghost = i32::MAX as u64 | 7 << 32;
    let words = &*lock as *const crate::ShmRwLock<u64> as *const AtomicU64;
    // SAFETY: the writer word, an `AtomicU64` at offset 0 of the lock (its
    // layout table); the handle keeps it mapped.
    let writer = unsafe { &*words };
    writer.store(ghost, Ordering::SeqCst);
    let l = lock.clone();
    with_watchdog(move || {
        assert!(l
            .try_write_recover_for(Duration::from_millis(200))
            .unwrap()
            .is_none());
    });
    assert_eq!(writer.load(Ordering::SeqCst), ghost, "not taken over");
    writer.store(0, Ordering::SeqCst);
    // A semaphore's holder: its permit is not returned.
    let sem = store
        .get_or_insert_with("s", || crate::ShmSemaphore::with_owners(1))
        .unwrap();
    let holders = &*sem as *const crate::ShmSemaphore as *const u8;
    // SAFETY: holder slot 0 (`owner: AtomicU64` at 64, `held: AtomicU32`
    // at 72: the layout table) and the count word at 0.
    let (owner, held, count) = unsafe {
        (
            &*holders.add(64).cast::<AtomicU64>(),
            &*holders.add(72).cast::<AtomicU32>(),
            &*holders.cast::<AtomicU32>(),
        )
    };
    owner.store(ghost, Ordering::SeqCst);
    held.store(1, Ordering::SeqCst);
    count.store(0, Ordering::SeqCst);
    assert!(!sem.try_acquire_for(Duration::from_millis(200)).unwrap());
    assert_eq!(held.load(Ordering::SeqCst), 1, "not reaped");
}

// Regression (fuzzing, segment_open): a record whose name bytes another
// process changed to bytes no insert writes was listed by `entries` under a
// lossily converted name that every lookup refused with `InvalidName`, and
// `check()` found nothing wrong. Now `entries` is `Corrupted` and `check()`
// names the record.
#[test]
fn a_record_whose_name_was_corrupted_is_reported_not_listed() {
    let store = scratch("bad-name", 1 << 20);
    store.insert("abc", 5u64).unwrap();
    store.insert("other", 6u64).unwrap();
    let rec = store
        .with_arena(|a| Ok(a.lookup(b"abc", hash_name(b"abc"))?.expect("abc").rec))
        .unwrap();
    let name_at = rec + crate::arena::dir::REC_NAME;
    store.inner.mem.write_bytes(name_at, b"a\0c").unwrap();
    assert!(matches!(store.entries(), Err(Error::Corrupted { .. })));
    let report = store.check().unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("not an object name")),
        "{report}"
    );
    // The other object is untouched and still read.
    assert_eq!(*store.get::<u64>("other").unwrap(), 6);
    store.inner.mem.write_bytes(name_at, b"abc").unwrap();
    assert_eq!(store.entries().unwrap().len(), 2);
    assert!(store.check().unwrap().is_ok());
}

// Regression (fuzzing, segment_open): the `__kind` word of a `ShmMutex` in
// a segment, changed to one with glibc's lock-elision flag, made
// `try_lock` — and `check()`, which try-locks every mutex guarding
// containers — die of `SIGILL` inside glibc on a processor without TSX.
// Such a mutex is now `Corrupted` for its lockers and a problem for
// `check()`; the other objects are unaffected.
#[test]
fn a_mutex_whose_kind_was_corrupted_is_an_error_for_lockers_and_check() {
    use crate::{ShmMutex, ShmVec};
    let store = scratch("bad-kind", 1 << 20);
    store
        .insert(
            "jobs",
            ShmMutex::new(ShmVec::from_slice_in(&store, &[1u32, 2]).unwrap()),
        )
        .unwrap();
    store.insert("other", 6u64).unwrap();
    let jobs = store.get::<ShmMutex<ShmVec<u32>>>("jobs").unwrap();
    let at = &*jobs as *const ShmMutex<ShmVec<u32>> as usize
        - store.inner.region.base().as_ptr() as usize;
    // glibc's `__kind` word: offset 16 of a 64-bit `pthread_mutex_t`.
    let kind_at = at as u64 + 16;
    let kind = store.inner.mem.u32(kind_at).unwrap();
    store.inner.mem.set_u32(kind_at, kind | 0x100).unwrap();
    assert!(matches!(jobs.try_lock(), Err(Error::Corrupted { .. })));
    assert!(matches!(jobs.lock(), Err(Error::Corrupted { .. })));
    let report = store.check().unwrap();
    assert!(!report.is_ok(), "{report}");
    assert_eq!(*store.get::<u64>("other").unwrap(), 6);
    store.inner.mem.set_u32(kind_at, kind).unwrap();
    assert_eq!(jobs.lock().unwrap().as_slice().unwrap().len(), 2);
    assert!(store.check().unwrap().is_ok());
}

/// Merge review: a process that takes the header lock without attaching
/// (`shmstore gc`/`rm`, through `Store::remove_unused`) marks a store of
/// another pid namespace mixed as soon as it holds the lock, like an
/// attaching process: its thread id in the lock word means nothing in the
/// store's namespace, and a waiter there must not take it for a ghost.
#[test]
fn a_remover_of_another_pid_namespace_marks_the_store_mixed() {
    let name = format!("shmstore-unit-remover-pidns-{}", std::process::id());
    let _ = Store::unlink(&name);
    let store = Store::create(&name, 1 << 20).unwrap();
    let _unlink = Unlink(name.clone());
    let word = store.inner.mem.atomic_u32(OFF_PIDNS).unwrap();
    // The store's processes are of another namespace than this one.
    word.store(proc::own_pid_namespace() ^ 1, Ordering::SeqCst);
    let removal = Store::remove_unused(
        &name,
        crate::inspect::RemoveIf::Any,
        Duration::from_secs(30),
    );
    assert!(removal.is_ok(), "{removal:?}");
    assert_eq!(word.load(Ordering::SeqCst), PIDNS_MIXED);
    assert!(!store.inner.one_pid_namespace());
}

/// Timeouts too far to represent as an `Instant` (`Duration::MAX`) wait as
/// long as it takes instead of panicking.
#[test]
fn huge_timeouts_are_no_timeouts_not_panics() {
    let name = format!("shmstore-unit-huge-timeouts-{}", std::process::id());
    let _ = Store::unlink(&name);
    let _unlink = Unlink(name.clone());
    let opts = Store::options()
        .capacity(1 << 20)
        .open_timeout(Duration::MAX)
        .lock_timeout(Duration::MAX);
    let first = opts.open_or_create(&name).unwrap();
    let second = opts.open_or_create(&name).unwrap();
    second.insert("x", 1u64).unwrap();
    assert_eq!(*first.get::<u64>("x").unwrap(), 1);
    let other = Store::options()
        .open_timeout(Duration::MAX)
        .open(&name)
        .unwrap();
    assert!(other.contains("x").unwrap());
}
