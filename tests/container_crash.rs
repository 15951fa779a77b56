//! Container operations killed at every step.
//!
//! For each operation and k = 1, 2, 3, ...: the parent builds a store with
//! known contents (containers behind a `ShmMutex`), a child opens it and
//! aborts (SIGABRT, through the `crash-points` feature) at the k-th step of
//! the operation while holding the mutex, and the parent then checks:
//!
//! - the mutex reports the child's death (`Error::OwnerDied`), and after
//!   `lock_recover` the containers read back exactly as before the
//!   operation or exactly as after it (never a torn state), and keep
//!   working (one more push, insert and read);
//! - `check()` passes; it may report unreachable blocks (what a crash costs),
//!   and `collect()` frees them, after which the space in use is exactly
//!   that of the state before or of the state after (nothing leaks, nothing
//!   committed is lost).
//!
//! The loop ends at the first k where the child finishes: k - 1 is the
//! number of crash points of that operation (printed, not asserted: it
//! depends on how many allocator steps the growth takes).

use std::os::unix::process::ExitStatusExt;

use shmstore::{Error, RelPtr, ShmMap, ShmMutex, ShmSafe, ShmString, ShmVec, Store};
use shmstore_tests::{report, role, role_arg, role_command_with_arg, Child, StoreGuard};

const MAX_STEPS: u64 = 5_000;
/// More space than the largest buffer any operation here grows into.
const GROWTH: u64 = 4096;

#[derive(ShmSafe)]
#[repr(C)]
struct Job {
    id: u64,
    name: ShmString,
    tags: ShmVec<u32>,
}

/// What the tests keep behind one mutex.
#[derive(ShmSafe)]
#[repr(C)]
struct State {
    jobs: ShmVec<Job>,
    index: ShmMap<ShmString, u64>,
    ids: ShmMap<u64, u64>,
    head: RelPtr<Job>,
}

type Shared = ShmMutex<State>;

/// A plain copy of the state, for comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    jobs: Vec<(u64, String, Vec<u32>)>,
    index: Vec<(String, u64)>,
    ids: Vec<(u64, u64)>,
    head: Option<(u64, String)>,
}

fn job(store: &Store, id: u64, tags: usize) -> Job {
    Job {
        id,
        name: ShmString::from_str_in(store, &format!("job-{id}")).unwrap(),
        tags: ShmVec::from_iter_in(store, (0..tags as u32).map(|t| t + id as u32)).unwrap(),
    }
}

fn snapshot(state: &State) -> Snapshot {
    let jobs = state
        .jobs
        .as_slice()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j.id,
                j.name.as_str().unwrap().to_string(),
                j.tags.to_vec().unwrap(),
            )
        })
        .collect();
    let mut index = Vec::new();
    state
        .index
        .for_each(|k, v| index.push((k.as_str().unwrap().to_string(), *v)))
        .unwrap();
    index.sort();
    let mut ids = state.ids.to_vec().unwrap();
    ids.sort();
    let head = state
        .head
        .get()
        .unwrap()
        .map(|j| (j.id, j.name.as_str().unwrap().to_string()));
    Snapshot {
        jobs,
        index,
        ids,
        head,
    }
}

/// The starting state: three jobs (vector at capacity 4 after the third
/// push... grown as pushes need), a few index entries, a head job.
fn build(store: &Store) {
    let shared = store
        .get_or_insert_with("state", || {
            ShmMutex::new(State {
                jobs: ShmVec::new(),
                index: ShmMap::new(),
                ids: ShmMap::new(),
                head: RelPtr::null(),
            })
        })
        .unwrap();
    let mut g = shared.lock().unwrap();
    for id in 1..=3 {
        g.jobs.push(job(store, id, id as usize)).unwrap();
        g.index.insert(&format!("job-{id}"), id).unwrap();
        g.ids.insert(&id, id * 10).unwrap();
    }
    g.head.set(job(store, 100, 2)).unwrap();
}

/// One operation under test, run with the mutex held.
struct Op {
    test: &'static str,
    /// Extra preparation after `build`.
    prepare: fn(&Store, &mut State),
    run: fn(&Store, &mut State),
}

/// No core files: thousands of aborts must stay cheap.
fn no_core_dumps() {
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the struct we pass; no other preconditions.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) };
}

fn fresh(op: &Op, guard: &StoreGuard) -> Store {
    let store = Store::create(guard.name(), 4 << 20).unwrap();
    build(&store);
    let shared = store.get::<Shared>("state").unwrap();
    (op.prepare)(&store, &mut shared.lock().unwrap());
    drop(shared);
    store
}

/// Collects, checks and returns the space in use.
fn settled_used(store: &Store) -> u64 {
    let collected = store.collect().expect("collect");
    if std::env::var_os("CC_TRACE").is_some() {
        eprintln!("collect: {collected:?}");
    }
    assert!(collected.busy.is_empty(), "{collected:?}");
    let report = store.check().expect("check");
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.unreachable_blocks, 0, "{report}");
    assert_eq!(report.unaccounted_blocks, 0, "{report}");
    store.stats().unwrap().used
}

fn crash_every_step(op: &Op) {
    if let Some((r, name)) = role() {
        assert_eq!(r, "crash");
        no_core_dumps();
        let k: u64 = role_arg().parse().unwrap();
        let store = Store::open(&name).unwrap();
        let shared = store.get::<Shared>("state").unwrap();
        let mut g = shared.lock().unwrap();
        shmstore::crash_after_steps(k);
        (op.run)(&store, &mut g);
        shmstore::crash_after_steps(0);
        drop(g);
        report("done", k);
        return;
    }
    // Before and after, from runs without a crash.
    let (before, after, used_before, used_after) = {
        let guard = StoreGuard::unique("cc-ref");
        let store = fresh(op, &guard);
        let shared = store.get::<Shared>("state").unwrap();
        let before = snapshot(&shared.lock().unwrap());
        let used_before = settled_used(&store);
        (op.run)(&store, &mut shared.lock().unwrap());
        let after = snapshot(&shared.lock().unwrap());
        drop(shared);
        let used_after = settled_used(&store);
        assert_ne!(before, after, "{}: the operation changes nothing", op.test);
        (before, after, used_before, used_after)
    };
    let mut outcomes = (0, 0);
    let mut k = 1;
    loop {
        assert!(k <= MAX_STEPS, "{}: more than {MAX_STEPS} steps", op.test);
        let guard = StoreGuard::unique("cc");
        drop(fresh(op, &guard));
        let mut cmd = role_command_with_arg(op.test, "crash", guard.name(), &k.to_string());
        cmd.arg("--include-ignored");
        let done = Child::spawn(cmd).wait();
        let store = Store::open(guard.name()).unwrap();
        let shared = store.get::<Shared>("state").unwrap();
        if done.status.success() {
            assert_eq!(done.reports("done"), [k.to_string()], "{done}");
            let now = snapshot(&shared.lock().unwrap());
            assert_eq!(now, after, "k={k}: a finished operation");
            break;
        }
        assert_eq!(
            done.status.signal(),
            Some(libc::SIGABRT),
            "k={k}: the child should abort at its crash point\n{done}"
        );
        // The child died holding the lock: the next locker is told.
        assert!(
            matches!(shared.lock(), Err(Error::OwnerDied { .. })),
            "k={k}: owner death not reported"
        );
        let mut g = shared.lock_recover().unwrap();
        let now = snapshot(&g);
        let is_after = if now == before {
            false
        } else if now == after {
            true
        } else {
            panic!(
                "k={k}: {}: torn state\n{now:?}\nbefore {before:?}\nafter {after:?}",
                op.test
            )
        };
        g.mark_consistent();
        drop(g);
        // Nothing leaks: after `collect`, every allocated block is
        // accounted for — metadata, an object, or a buffer an object's
        // container reaches (`settled_used` asserts it). (The space in use
        // need not equal a clean run's: a crash after a growth switched
        // buffers leaves the contents as before in the larger buffer.)
        let used = settled_used(&store);
        assert!(
            used <= used_before.max(used_after) + GROWTH,
            "k={k}: {}: after collect, {used} bytes in use; before {used_before}, after {used_after}",
            op.test
        );
        // Still usable.
        let mut g = shared.lock().unwrap();
        g.jobs.push(job(&store, 999, 1)).unwrap();
        g.index.insert("probe", 999).unwrap();
        assert_eq!(g.jobs.last().unwrap().unwrap().id, 999);
        g.jobs.pop().unwrap();
        g.index.remove("probe").unwrap();
        drop(g);
        drop(shared);
        let report = store.check().unwrap();
        assert!(report.is_ok(), "k={k}: after the probe: {report}");
        if is_after {
            outcomes.1 += 1;
        } else {
            outcomes.0 += 1;
        }
        k += 1;
    }
    eprintln!(
        "CONTAINER CRASH POINTS {}: {} (as before {}, as after {})",
        op.test,
        k - 1,
        outcomes.0,
        outcomes.1
    );
    assert!(k > 1, "{}: no crash point", op.test);
}

fn no_prepare(_: &Store, _: &mut State) {}

macro_rules! crash_test {
    ($name:ident, $prepare:expr, $run:expr) => {
        #[test]
        fn $name() {
            crash_every_step(&Op {
                test: stringify!($name),
                prepare: $prepare,
                run: $run,
            });
        }
    };
}

crash_test!(
    a_push_without_growth_survives_a_crash_at_every_step,
    no_prepare,
    |s, st| st.jobs.push(job(s, 4, 2)).unwrap()
);

crash_test!(
    a_push_that_grows_the_buffer_survives_a_crash_at_every_step,
    |s, st| st.jobs.push(job(s, 4, 1)).unwrap(),
    |s, st| st.jobs.push(job(s, 5, 3)).unwrap()
);

crash_test!(a_pop_survives_a_crash_at_every_step, no_prepare, |_, st| {
    drop(st.jobs.pop().unwrap())
});

crash_test!(
    a_removal_from_the_middle_survives_a_crash_at_every_step,
    no_prepare,
    |_, st| drop(st.jobs.remove(1).unwrap())
);

crash_test!(
    an_insert_into_a_map_survives_a_crash_at_every_step,
    no_prepare,
    |_, st| {
        st.index.insert("new-key", 42).unwrap();
    }
);

crash_test!(
    an_insert_that_grows_a_map_survives_a_crash_at_every_step,
    |_, st| {
        // Fill the integer map to just below its growth threshold (3/4 of
        // its 8 slots).
        for id in 4..=6 {
            st.ids.insert(&id, id * 10).unwrap();
        }
        assert_eq!(st.ids.capacity().unwrap(), 8);
    },
    |_, st| {
        st.ids.insert(&7, 70).unwrap();
        assert_eq!(st.ids.capacity().unwrap(), 16, "the insert grows the table");
    }
);

crash_test!(
    a_removal_from_a_map_survives_a_crash_at_every_step,
    no_prepare,
    |_, st| {
        st.index.remove("job-2").unwrap();
    }
);

crash_test!(
    replacing_a_relative_pointer_survives_a_crash_at_every_step,
    no_prepare,
    |s, st| st.head.set(job(s, 200, 3)).unwrap()
);

crash_test!(
    a_string_growing_in_place_survives_a_crash_at_every_step,
    no_prepare,
    |_, st| {
        let mut first = st.jobs.get_mut(0).unwrap().unwrap();
        first.name.push_str("-renamed-with-a-longer-name").unwrap();
    }
);
