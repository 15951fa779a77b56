//! Crash recovery at every step of every metadata operation.
//!
//! For each operation, for k = 1, 2, 3, ...: the parent builds a fresh
//! store with known contents, a child opens it and aborts (SIGABRT, through
//! the `crash-points` feature) at the k-th step of the operation, and the
//! parent opens the store again and checks it: `check()` is clean, every
//! committed object reads back exactly, the objects the operation touches
//! are entirely as before or entirely as after, and `used`, `objects` and
//! the number of types are those of the state before or of the state after
//! (learnt from a run of the operation without a crash). One more insert,
//! get and remove shows the store keeps working. The loop ends at the first
//! k where the child finishes the operation: k - 1 is the number of crash
//! points of that operation. Recovery never goes back: once a crash point
//! leaves the state after, every later one does too.
//!
//! The parent reopens the store after its child died, so the store releases
//! what the dead child held (its pins, its unfinished large insert) through
//! the process table before anything is checked.
//!
//! `CRASH_POINTS_TRACE=1` prints the outcome of every crash point.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::sync::OnceLock;
use std::time::Instant;

use shmstore::{Error, ShmSafe, Store};
use shmstore_tests::{report, role, role_arg, role_command_with_arg, Child, StoreGuard};

/// A generous bound on the steps of one operation (the consolidation
/// merges dozens of blocks, a dozen steps each).
const MAX_STEPS: u64 = 10_000;

/// A struct of the kind users store.
#[derive(ShmSafe, Debug, Clone, Copy, PartialEq)]
#[repr(C)]
struct Point {
    x: f64,
    y: f64,
    id: u32,
    tag: u32,
}

/// A struct type no store has seen before operation 1.
#[derive(ShmSafe, Debug, Clone, Copy, PartialEq)]
#[repr(C)]
struct Reading {
    sensor: u32,
    flags: u32,
    value: f64,
}

/// A value in a store, with its type.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    U64(u64),
    U32(u32),
    Point(Point),
    Reading(Reading),
    Label([u8; 16]),
    /// A `[u8; N]` of these bytes (N = its length, 1..=9).
    Array(Vec<u8>),
    F32s(Vec<f32>),
    U32s(Vec<u32>),
    U64s(Vec<u64>),
    U8s(Vec<u8>),
}

/// Runs `$body` with `$n` (1..=9) as the constant `$N`.
macro_rules! with_array_len {
    ($n:expr, $N:ident => $body:expr) => {
        match $n {
            1 => {
                const $N: usize = 1;
                $body
            }
            2 => {
                const $N: usize = 2;
                $body
            }
            3 => {
                const $N: usize = 3;
                $body
            }
            4 => {
                const $N: usize = 4;
                $body
            }
            5 => {
                const $N: usize = 5;
                $body
            }
            6 => {
                const $N: usize = 6;
                $body
            }
            7 => {
                const $N: usize = 7;
                $body
            }
            8 => {
                const $N: usize = 8;
                $body
            }
            9 => {
                const $N: usize = 9;
                $body
            }
            other => panic!("no array type of length {other}"),
        }
    };
}

impl Value {
    fn put(&self, store: &Store, name: &str) -> shmstore::Result<()> {
        match self {
            Value::U64(v) => store.insert(name, *v),
            Value::U32(v) => store.insert(name, *v),
            Value::Point(v) => store.insert(name, *v),
            Value::Reading(v) => store.insert(name, *v),
            Value::Label(v) => store.insert(name, *v),
            Value::Array(v) => with_array_len!(v.len(), N => {
                let mut a = [0u8; N];
                a.copy_from_slice(v);
                store.insert(name, a)
            }),
            Value::F32s(v) => store.insert_slice(name, v),
            Value::U32s(v) => store.insert_slice(name, v),
            Value::U64s(v) => store.insert_slice(name, v),
            Value::U8s(v) => store.insert_slice(name, v),
        }
    }

    /// Reads `name` as the type of `self`: `None` if it is absent.
    fn read_like(&self, store: &Store, name: &str) -> Option<Value> {
        let got = match self {
            Value::U64(_) => store.get::<u64>(name).map(|h| Value::U64(*h)),
            Value::U32(_) => store.get::<u32>(name).map(|h| Value::U32(*h)),
            Value::Point(_) => store.get::<Point>(name).map(|h| Value::Point(*h)),
            Value::Reading(_) => store.get::<Reading>(name).map(|h| Value::Reading(*h)),
            Value::Label(_) => store.get::<[u8; 16]>(name).map(|h| Value::Label(*h)),
            Value::Array(v) => with_array_len!(v.len(), N => {
                store.get::<[u8; N]>(name).map(|h| Value::Array(h.to_vec()))
            }),
            Value::F32s(_) => store
                .get_slice::<f32>(name)
                .map(|h| Value::F32s(h.to_vec())),
            Value::U32s(_) => store
                .get_slice::<u32>(name)
                .map(|h| Value::U32s(h.to_vec())),
            Value::U64s(_) => store
                .get_slice::<u64>(name)
                .map(|h| Value::U64s(h.to_vec())),
            Value::U8s(_) => store.get_slice::<u8>(name).map(|h| Value::U8s(h.to_vec())),
        };
        match got {
            Ok(v) => Some(v),
            Err(Error::NotFound { .. }) => None,
            Err(e) => panic!("reading {name:?}: {e}"),
        }
    }
}

/// Committed objects: name → value.
type Model = BTreeMap<String, Value>;

fn put(store: &Store, model: &mut Model, name: &str, value: Value) {
    value
        .put(store, name)
        .unwrap_or_else(|e| panic!("inserting {name:?}: {e}"));
    model.insert(name.to_string(), value);
}

fn remove(store: &Store, model: &mut Model, name: &str) {
    store
        .remove(name)
        .unwrap_or_else(|e| panic!("removing {name:?}: {e}"));
    model.remove(name);
}

/// The contents every test starts from: objects of several types (a
/// derived struct, a slice, scalars, an array) and removed objects, so
/// that the allocator has parked small blocks and a binned large one.
fn base(store: &Store) -> Model {
    let mut m = Model::new();
    let point = Point {
        x: 1.5,
        y: -2.25,
        id: 7,
        tag: 0xdead,
    };
    put(store, &mut m, "point", Value::Point(point));
    put(store, &mut m, "count", Value::U64(42));
    for i in 0..4 {
        put(store, &mut m, &format!("gone-{i}"), Value::U64(i));
    }
    put(store, &mut m, "small", Value::U32(7));
    put(store, &mut m, "label", Value::Label(*b"shmstore-label!!"));
    put(store, &mut m, "gone-big", Value::U64s((0..300).collect()));
    put(
        store,
        &mut m,
        "samples",
        Value::F32s((0..10).map(|i| i as f32 * 0.5).collect()),
    );
    put(store, &mut m, "tail", Value::U32(99));
    for name in ["gone-0", "gone-2", "gone-big", "gone-3", "gone-1"] {
        remove(store, &mut m, name);
    }
    m
}

/// The accounting a crash must leave as it was before or after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Snap {
    used: u64,
    objects: u64,
    types: u64,
}

fn snap(store: &Store) -> Snap {
    let stats = store.stats().expect("stats");
    let report = store.check().expect("check");
    assert!(report.is_ok(), "check() found problems:\n{report}");
    Snap {
        used: stats.used,
        objects: stats.objects,
        types: report.types,
    }
}

/// `true` if `CRASH_POINTS_TRACE` is set.
fn tracing() -> bool {
    std::env::var_os("CRASH_POINTS_TRACE").is_some()
}

/// The child's side of a run: arms the crash at the right moment.
struct Hooks {
    crash_after: Option<u64>,
}

impl Hooks {
    /// Arms the crash (in a child; a no-op in the parent's reference run).
    fn arm(&self) {
        if let Some(k) = self.crash_after {
            shmstore::crash_after_steps(k);
        }
    }

    /// Tells the parent how many steps were left at a point of the
    /// operation (only a child that survives gets to print all marks).
    fn mark(&self, label: &str) {
        if self.crash_after.is_some() {
            report("mark", format!("{label} {}", shmstore::steps_left()));
        }
    }
}

/// One metadata operation under test.
struct Op {
    /// The test function (re-executed in the child).
    test: &'static str,
    /// Store capacity.
    capacity: u64,
    /// Builds the operation's starting state on top of [`base`].
    prepare: fn(&Store, &mut Model),
    /// The operation; calls `hooks.arm()` right before the measured part.
    run: fn(&Store, &Hooks),
    /// The objects it touches, with their values after it.
    touched: fn() -> Vec<(&'static str, Option<Value>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Before,
    After,
}

/// Builds the operation's starting store under `guard`.
fn build(op: &Op, guard: &StoreGuard) -> (Store, Model) {
    let store = Store::create(guard.name(), op.capacity).expect("create");
    let mut model = base(&store);
    (op.prepare)(&store, &mut model);
    (store, model)
}

/// Checks a store after a crash (or after the operation completed) and
/// says which state it is in.
fn classify(op: &Op, store: &Store, model: &Model, before: Snap, after: Snap, k: u64) -> Outcome {
    let now = snap(store);
    let touched = (op.touched)();
    for (name, value) in model {
        if touched.iter().any(|(t, _)| t == name) {
            continue;
        }
        assert_eq!(
            value.read_like(store, name).as_ref(),
            Some(value),
            "k={k}: committed object {name:?} is not intact"
        );
    }
    let mut side = None;
    for (name, after_v) in &touched {
        let before_v = model.get(*name).cloned();
        let like = after_v.as_ref().or(before_v.as_ref()).expect("a value");
        let found = like.read_like(store, name);
        let this = if found == *after_v && found == before_v {
            continue;
        } else if found == *after_v {
            Outcome::After
        } else if found == before_v {
            Outcome::Before
        } else {
            panic!("k={k}: {name:?} is half-done: {found:?}, neither {before_v:?} nor {after_v:?}");
        };
        if let Some(s) = side {
            assert_eq!(s, this, "k={k}: touched objects disagree ({name:?})");
        }
        side = Some(this);
    }
    let side = side.expect("the operation changes a touched object");
    let expected = match side {
        Outcome::Before => before,
        Outcome::After => after,
    };
    assert_eq!(
        now, expected,
        "k={k}: touched objects are as {side:?}, but the accounting is not \
         (before {before:?}, after {after:?}): a leak or a lost block"
    );
    side
}

/// One more insert, get and remove: the store keeps working. (Its space
/// need not come back exactly: the insert may grow the directory.)
fn probe(store: &Store, k: u64) {
    let was = store.stats().expect("stats");
    store.insert("probe", 0x5eed_u64 + k).expect("probe insert");
    assert_eq!(*store.get::<u64>("probe").expect("probe get"), 0x5eed + k);
    assert_eq!(store.stats().expect("stats").objects, was.objects + 1);
    store.remove("probe").expect("probe remove");
    assert_eq!(store.stats().expect("stats").objects, was.objects);
    let report = store.check().expect("check");
    assert!(report.is_ok(), "k={k}: after the probe:\n{report}");
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

/// The child: open the store, run the operation with a crash armed at its
/// k-th step, and say DONE if it survived.
fn child(op: &Op, name: &str) {
    no_core_dumps();
    let k: u64 = role_arg().parse().expect("k");
    let store = Store::open(name).expect("child open");
    (op.run)(
        &store,
        &Hooks {
            crash_after: Some(k),
        },
    );
    shmstore::crash_after_steps(0);
    report("done", k);
}

/// The parent: every crash point of `op`, in order.
fn crash_every_step(op: &Op) {
    if let Some((r, name)) = role() {
        assert_eq!(r, "crash");
        return child(op, &name);
    }
    let start = Instant::now();
    // The state after the operation, from a run without a crash.
    let (before, after) = {
        let guard = StoreGuard::unique("cp-ref");
        let (store, model) = build(op, &guard);
        let before = snap(&store);
        if tracing() {
            eprintln!("{} before: {}", op.test, store.check().unwrap());
        }
        drop(store);
        // Run it as the child does, on a store of its own: dropping that
        // store gives its process slot (and pin table) back.
        let store = Store::open(guard.name()).expect("open");
        (op.run)(&store, &Hooks { crash_after: None });
        drop(store);
        let store = Store::open(guard.name()).expect("open");
        let after = snap(&store);
        if tracing() {
            eprintln!("{} after: {}", op.test, store.check().unwrap());
        }
        assert_eq!(
            classify(op, &store, &model, before, after, 0),
            Outcome::After
        );
        probe(&store, 0);
        (before, after)
    };
    let mut outcomes = Vec::new();
    let mut k = 1;
    let marks = loop {
        assert!(k <= MAX_STEPS, "{}: more than {MAX_STEPS} steps", op.test);
        let guard = StoreGuard::unique("cp");
        let (store, model) = build(op, &guard);
        assert_eq!(snap(&store), before, "the starting state is deterministic");
        drop(store);
        // `--include-ignored`: the child must run its test even when the
        // parent was run with `--ignored`.
        let mut cmd = role_command_with_arg(op.test, "crash", guard.name(), &k.to_string());
        cmd.arg("--include-ignored");
        let done = Child::spawn(cmd).wait();
        let store = Store::open(guard.name()).unwrap_or_else(|e| {
            panic!("k={k}: cannot open the store after the child:\n{e}\n{done}")
        });
        if done.status.success() {
            assert_eq!(done.reports("done"), [k.to_string()], "{done}");
            assert_eq!(
                classify(op, &store, &model, before, after, k),
                Outcome::After
            );
            probe(&store, k);
            break done.reports("mark");
        }
        assert_eq!(
            done.status.signal(),
            Some(libc::SIGABRT),
            "k={k}: the child should abort at its crash point\n{done}"
        );
        let outcome = classify(op, &store, &model, before, after, k);
        if let Some(&last) = outcomes.last() {
            assert!(
                outcome >= last,
                "k={k}: {outcome:?} after {last:?}: recovery went back in time"
            );
        }
        if tracing() {
            eprintln!("{} k={k}: {outcome:?} {:?}", op.test, snap(&store));
        }
        outcomes.push(outcome);
        probe(&store, k);
        k += 1;
    };
    let points = k - 1;
    assert!(points >= 1, "{}: no crash point", op.test);
    let count = |o| outcomes.iter().filter(|&&x| x == o).count();
    // Where each mark fell: steps consumed = k - steps left.
    let marks: Vec<String> = marks
        .iter()
        .map(|m| {
            let (label, left) = m.rsplit_once(' ').expect("label and steps");
            format!(
                "{label} after step {}",
                k - left.parse::<u64>().expect("steps")
            )
        })
        .collect();
    eprintln!(
        "CRASH POINTS {}: {points} (rolled back {}, completed {}){}; used {} -> {}; {:.1?}",
        op.test,
        count(Outcome::Before),
        count(Outcome::After),
        if marks.is_empty() {
            String::new()
        } else {
            format!("; {}", marks.join(", "))
        },
        before.used,
        after.used,
        start.elapsed()
    );
}

// ---------------------------------------------------------------------------
// The operations.

fn no_prepare(_: &Store, _: &mut Model) {}

macro_rules! crash_test {
    ($(#[$attr:meta])* $name:ident, $op:expr) => {
        #[test]
        $(#[$attr])*
        fn $name() {
            crash_every_step(&Op {
                test: stringify!($name),
                ..$op
            });
        }
    };
}

const MIB: u64 = 1 << 20;

/// An `Op` with defaults for the fields most operations share.
const DEFAULT: Op = Op {
    test: "",
    capacity: MIB,
    prepare: no_prepare,
    run: |_, _| unreachable!(),
    touched: Vec::new,
};

fn reading() -> Reading {
    Reading {
        sensor: 3,
        flags: 0b101,
        value: 21.5,
    }
}

crash_test!(
    an_insert_of_a_new_type_survives_a_crash_at_every_step,
    Op {
        run: |s, h| {
            h.arm();
            s.insert("reading", reading()).unwrap();
        },
        touched: || vec![("reading", Some(Value::Reading(reading())))],
        ..DEFAULT
    }
);

crash_test!(
    an_insert_of_a_known_type_survives_a_crash_at_every_step,
    Op {
        run: |s, h| {
            h.arm();
            s.insert("another", 0x1234_u64).unwrap();
        },
        touched: || vec![("another", Some(Value::U64(0x1234)))],
        ..DEFAULT
    }
);

/// Fillers for the directory test: named `dir-NN` so that every record is
/// the same size.
fn dir_filler(i: usize) -> (String, Value) {
    (format!("dir-{i:02}"), Value::U64(1000 + i as u64))
}

/// How many fillers bring the directory to just below its growth
/// threshold: the smallest n after which inserting `grows-dir` allocates
/// more than its record (a new, bigger table). Found once on scratch
/// stores, since tombstone reuse makes the count depend on probe paths.
fn fillers_below_growth() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| {
        let delta = |n: usize| {
            let guard = StoreGuard::unique("cp-dir-scratch");
            let store = Store::create(guard.name(), MIB).unwrap();
            let mut m = base(&store);
            for i in 0..n {
                let (name, v) = dir_filler(i);
                put(&store, &mut m, &name, v);
            }
            let was = store.stats().unwrap().used;
            store.insert("grows-dir", 7u64).unwrap();
            store.stats().unwrap().used - was
        };
        let record = delta(0);
        let n = (0..64)
            .find(|&n| delta(n) > record)
            .expect("the directory grows within 64 inserts");
        // The rule: growth when live + tombstones + 1 > 48 of 64 slots.
        assert!((30..48).contains(&n), "{n} fillers");
        n
    })
}

crash_test!(
    an_insert_that_grows_the_directory_survives_a_crash_at_every_step,
    Op {
        prepare: |s, m| {
            for i in 0..fillers_below_growth() {
                let (name, v) = dir_filler(i);
                put(s, m, &name, v);
            }
        },
        run: |s, h| {
            h.arm();
            s.insert("grows-dir", 7u64).unwrap();
        },
        touched: || vec![("grows-dir", Some(Value::U64(7)))],
        ..DEFAULT
    }
);

crash_test!(
    an_insert_that_grows_the_type_registry_survives_a_crash_at_every_step,
    Op {
        prepare: |s, m| {
            // The registry starts with 8 entries: fill it with [u8; n].
            let mut n = 1;
            while s.check().unwrap().types < 8 {
                put(s, m, &format!("array-{n}"), Value::Array(vec![n as u8; n]));
                n += 1;
            }
            assert!(n <= 9, "the base has too many types");
        },
        run: |s, h| {
            h.arm();
            s.insert("ninth-type", [9u8; 9]).unwrap();
        },
        touched: || vec![("ninth-type", Some(Value::Array(vec![9; 9])))],
        ..DEFAULT
    }
);

fn small_slice() -> Vec<u32> {
    (1..=20).collect()
}

crash_test!(
    an_insert_of_a_small_slice_survives_a_crash_at_every_step,
    Op {
        run: |s, h| {
            h.arm();
            s.insert_slice("small-slice", &small_slice()).unwrap();
        },
        touched: || vec![("small-slice", Some(Value::U32s(small_slice())))],
        ..DEFAULT
    }
);

crash_test!(
    get_or_insert_with_of_a_new_name_survives_a_crash_at_every_step,
    Op {
        run: |s, h| {
            h.arm();
            let got = s.get_or_insert_with("lazy", || 77u64).unwrap();
            assert_eq!(*got, 77);
        },
        touched: || vec![("lazy", Some(Value::U64(77)))],
        ..DEFAULT
    }
);

crash_test!(
    a_remove_of_an_unpinned_object_survives_a_crash_at_every_step,
    Op {
        run: |s, h| {
            h.arm();
            s.remove("point").unwrap();
        },
        touched: || vec![("point", None)],
        ..DEFAULT
    }
);

crash_test!(
    // Regression: `drop_pins` once journalled the drop before making it,
    // so a crash in between gave back a pin never taken and leaked the
    // removed record; pin words are now plain journalled words.
    a_remove_of_a_pinned_object_then_its_last_unpin_survive_a_crash_at_every_step,
    Op {
        run: |s, h| {
            let pinned = s.get_slice::<f32>("samples").unwrap();
            h.arm();
            s.remove("samples").unwrap();
            h.mark("removed");
            assert_eq!(pinned[3], 1.5);
            drop(pinned); // the last pin: the record is freed here
        },
        touched: || vec![("samples", None)],
        ..DEFAULT
    }
);

/// The slice the consolidation test inserts: larger than any single parked
/// block or free block of its small, full store.
fn consolidated_slice() -> Vec<u8> {
    (0..8000).map(|i| (i % 251) as u8).collect()
}

crash_test!(
    an_insert_that_needs_consolidation_survives_a_crash_at_every_step,
    Op {
        capacity: shmstore::MIN_CAPACITY,
        prepare: |s, m| {
            // Fill the store with small records (blocks of at most 1 KiB,
            // which are parked on fast lists when freed), of three sizes,
            // then remove them, last first: the free space is all there, in
            // pieces of under 1 KiB, and merging them goes through the bins
            // (blocks whose neighbour above is still parked) as well as top.
            let mut names = Vec::new();
            loop {
                let i = names.len();
                let name = format!("fill-{i:02}");
                match s.insert_slice(&name, &vec![i as u8; [900, 700, 500][i % 3]]) {
                    Ok(()) => names.push(name),
                    Err(Error::OutOfMemory { .. }) => break,
                    Err(e) => panic!("filling: {e}"),
                }
            }
            assert!(names.len() >= 30, "only {} fillers", names.len());
            for name in names.iter().rev() {
                s.remove(name).unwrap();
            }
            let free = s.stats().unwrap().free;
            assert!(free > 8000 + 1000, "{free} bytes free");
            let _ = m;
        },
        run: |s, h| {
            h.arm();
            s.insert_slice("consolidated", &consolidated_slice())
                .unwrap();
        },
        touched: || vec![("consolidated", Some(Value::U8s(consolidated_slice())))],
        ..DEFAULT
    }
);

/// Over 64 KiB: copied into the segment without the lock.
fn large_slice() -> Vec<u64> {
    (0..10_000u64).map(|i| i * 3 + 1).collect()
}

// Reserved under the lock (one committed operation), copied without it
// (one step), published under it (another operation). The gap: a crash
// between the two operations leaves a reserved, unpublished block, which
// leaked while nothing recorded whose reservation it was. The process table
// now records it and the parent's reopening releases the dead child's slot,
// so no leak is accepted at any crash point, this window included.
crash_test!(
    an_insert_of_a_large_slice_survives_a_crash_at_every_step_leaking_not_even_its_reservation,
    Op {
        run: |s, h| {
            h.arm();
            s.insert_slice("large", &large_slice()).unwrap();
        },
        touched: || vec![("large", Some(Value::U64s(large_slice())))],
        ..DEFAULT
    }
);

// ---------------------------------------------------------------------------
// Creation.

const CREATION_TEST: &str = "a_creator_killed_at_any_step_of_creation_is_detected_not_waited_on";

/// A creator killed at any step of `Store::create` leaves either no store
/// (nothing written yet, or a segment that never became one) or a complete
/// one. Openers find out within the open timeout — "half-initialised by its
/// creator, which died" (`Corrupted`) or "not a store" — and never hang;
/// after `Store::unlink` the name can be created again.
#[test]
fn a_creator_killed_at_any_step_of_creation_is_detected_not_waited_on() {
    if let Some((r, name)) = role() {
        assert_eq!(r, "create");
        no_core_dumps();
        let k: u64 = role_arg().parse().expect("k");
        shmstore::crash_after_steps(k);
        let store = Store::create(&name, MIB).expect("child create");
        shmstore::crash_after_steps(0);
        store.insert("made", 1u64).expect("insert");
        report("done", k);
        return;
    }
    let timeout = std::time::Duration::from_millis(300);
    let (mut detected, mut complete) = (0, 0);
    let mut k = 1;
    loop {
        assert!(k <= MAX_STEPS, "creation has more than {MAX_STEPS} steps");
        let guard = StoreGuard::unique("cp-create");
        let mut cmd = role_command_with_arg(CREATION_TEST, "create", guard.name(), &k.to_string());
        cmd.arg("--include-ignored");
        let done = Child::spawn(cmd).wait();
        let started = Instant::now();
        let opened = Store::options().open_timeout(timeout).open(guard.name());
        // Bounded: the open timeout, plus slack for a busy machine.
        assert!(
            started.elapsed() < timeout + std::time::Duration::from_secs(10),
            "k={k}: open took {:?}",
            started.elapsed()
        );
        if done.status.success() {
            let store = opened.expect("a completed creation opens");
            assert_eq!(*store.get::<u64>("made").unwrap(), 1);
            break;
        }
        assert_eq!(done.status.signal(), Some(libc::SIGABRT), "k={k}\n{done}");
        match opened {
            // Killed once the store was ready (while joining it): complete.
            Ok(store) => {
                let report = store.check().expect("check");
                assert!(report.is_ok(), "k={k}: {report}");
                complete += 1;
            }
            Err(Error::Corrupted { reason }) => {
                assert!(reason.contains("creator"), "k={k}: {reason}");
                detected += 1;
            }
            Err(Error::NotAStore { .. }) => detected += 1,
            Err(e) => panic!("k={k}: unexpected {e:?}"),
        }
        // Either way the name is usable again.
        let _ = Store::unlink(guard.name());
        let again = Store::create(guard.name(), MIB).expect("create again");
        again.insert("x", 1u32).unwrap();
        k += 1;
    }
    assert!(
        detected >= 4,
        "only {detected} crash points before the store was ready"
    );
    eprintln!(
        "CRASH POINTS creation: {} ({detected} detected as broken, {complete} complete)",
        k - 1
    );
}
