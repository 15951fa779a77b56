//! Crash recovery at every step of every metadata operation.
//!
//! For each operation, for k = 1, 2, 3, ...: the parent builds a fresh
//! store with known contents, a child aborts (SIGABRT, through the
//! `crash-points` feature) at the k-th step of the operation, and the
//! parent checks the store: `check()` is clean, every committed object
//! reads back exactly, and the store is entirely as before the operation or
//! entirely as after it — the objects it touches, `used`, `objects`, the
//! number of types and of attached processes, and the space still used once
//! every object is removed (a pin left behind keeps its object allocated).
//! "Before" and "after" are learnt from two reference children on stores of
//! their own: one that stops where the operation would begin, one that runs
//! it without a crash. One more insert, get and remove shows the store keeps
//! working. The loop ends at the first k where the child finishes the
//! operation: k - 1 is the number of crash points of that operation, which
//! must be the one in [`CRASH_POINTS`]. Recovery never goes back: once a
//! crash point leaves the state after, every later one does too; and every
//! state is reached by some crash point.
//!
//! The parent opens the store again after its child died, and opening
//! releases what the dead child held (its pins, its unfinished large
//! insert) through the process table before anything is checked.
//!
//! Operations on pins and process slots change no object's value: they
//! change what a process holds. For those the parent keeps the store open
//! while the child runs ("watches" it), so that once the child died it sees
//! the child's slot before releasing it: it removes the objects whose pins
//! the operation takes or drops (a removed object that is still pinned
//! stays allocated) and reads `stats()`, which releases nothing and whose
//! `used` also counts the child's pin table and reservations. That state
//! too must be the one before or the one after — or, for an operation made
//! of several committed steps (detaching with the last handle, releasing a
//! dead process's slot), one of the states between, in order. Then
//! `check()` releases the dead child's slot and everything is compared as
//! above.
//!
//! `CRASH_POINTS_TRACE=1` prints the outcome of every crash point.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::sync::OnceLock;
use std::time::Instant;

use shmstore::{Error, Handle, ShmSafe, Store};
use shmstore_tests::{report, role, role_arg, role_command_with_arg, Child, Finished, StoreGuard};

/// Crash points of each operation (its test, and how many), asserted
/// exactly: a change to the journal or to an operation that adds or
/// removes a step fails its test here, and this table is then updated on
/// purpose — with the README, which quotes the number of operations and the
/// total (checked by `the_readme_quotes_the_asserted_crash_point_counts`).
const CRASH_POINTS: &[(&str, u64)] = &[
    ("an_insert_of_a_new_type_survives_a_crash_at_every_step", 39),
    ("an_insert_of_a_known_type_survives_a_crash_at_every_step", 10),
    (
        "an_insert_that_grows_the_directory_survives_a_crash_at_every_step",
        29,
    ),
    (
        "an_insert_that_grows_the_type_registry_survives_a_crash_at_every_step",
        54,
    ),
    ("an_insert_of_a_small_slice_survives_a_crash_at_every_step", 18),
    ("get_or_insert_with_of_a_new_name_survives_a_crash_at_every_step", 19),
    ("a_remove_of_an_unpinned_object_survives_a_crash_at_every_step", 12),
    (
        "a_remove_of_a_pinned_object_then_its_last_unpin_survive_a_crash_at_every_step",
        18,
    ),
    (
        "an_insert_that_needs_consolidation_survives_a_crash_at_every_step",
        476,
    ),
    (
        "an_insert_of_a_large_slice_survives_a_crash_at_every_step_leaking_not_even_its_reservation",
        13,
    ),
    ("a_get_survives_a_crash_at_every_step_of_its_pin", 6),
    (
        "a_get_that_grows_the_pin_table_survives_a_crash_at_every_step",
        25,
    ),
    ("a_handle_dropped_on_its_own_survives_a_crash_at_every_step", 6),
    ("attaching_to_the_process_table_survives_a_crash_at_every_step", 31),
    (
        "detaching_with_the_last_handle_survives_a_crash_at_every_step",
        17,
    ),
    (
        "releasing_a_dead_process_slot_survives_a_crash_at_every_step",
        61,
    ),
    (CREATION_TEST, 23),
];

/// Fails, quoting its row of [`CRASH_POINTS`], unless `test` has `points`
/// crash points.
fn assert_crash_points(test: &str, points: u64) {
    match CRASH_POINTS.iter().find(|(t, _)| *t == test) {
        Some(&(_, n)) => assert_eq!(
            points, n,
            "{test} has {points} crash points, but CRASH_POINTS says\n    (\"{test}\", {n}),\n\
             if the change of steps is intended, update the table and the README's total"
        ),
        None => panic!("{test} has {points} crash points and no row in CRASH_POINTS"),
    }
}

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

/// The point every store starts with.
fn point() -> Point {
    Point {
        x: 1.5,
        y: -2.25,
        id: 7,
        tag: 0xdead,
    }
}

/// The contents every test starts from: objects of several types (a
/// derived struct, a slice, scalars, an array) and removed objects, so
/// that the allocator has parked small blocks and a binned large one.
fn base(store: &Store) -> Model {
    let mut m = Model::new();
    put(store, &mut m, "point", Value::Point(point()));
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

/// The accounting a crash must leave as it was before or after, once the
/// dead child's slot is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Snap {
    used: u64,
    objects: u64,
    types: u64,
    /// Attached processes: only the parent's store is left.
    processes: u64,
}

/// Checks the store (which first releases what dead processes held) and
/// reads its accounting.
fn snap(store: &Store) -> Snap {
    let report = store.check().expect("check");
    assert!(report.is_ok(), "check() found problems:\n{report}");
    let stats = store.stats().expect("stats");
    Snap {
        used: stats.used,
        objects: stats.objects,
        types: report.types,
        processes: report.processes,
    }
}

/// What `stats()` shows, which releases nothing: before the slots of dead
/// processes are released, `used` counts their pin tables, their
/// reservations and the removed objects they pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    used: u64,
    objects: u64,
}

fn held(store: &Store) -> Held {
    let stats = store.stats().expect("stats");
    Held {
        used: stats.used,
        objects: stats.objects,
    }
}

/// Everything the parent compares after a run, in the order it looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    /// A watched operation: the dead child's state, before its slot is
    /// released (after the parent removed [`Op::pinned`]).
    held: Option<Held>,
    /// Once it is released.
    snap: Snap,
    /// `used` once the probe ran and every object is removed: a pin left
    /// behind on any object keeps it allocated.
    drained: u64,
}

impl Seen {
    fn held(&self) -> Held {
        self.held
            .expect("the state before the release (a watched operation)")
    }
}

/// The reference runs of an operation, and the state they start from.
struct Refs {
    /// The state the parent builds, before any child runs.
    built: Held,
    /// A child that stops where the operation would begin.
    before: Seen,
    /// A child that runs the operation without a crash.
    after: Seen,
}

/// Which side of the operation the touched objects' values are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Before,
    After,
}

/// `true` if `CRASH_POINTS_TRACE` is set.
fn tracing() -> bool {
    std::env::var_os("CRASH_POINTS_TRACE").is_some()
}

/// What a child is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Stop where the operation would begin (at [`Hooks::arm`]), as if
    /// killed right then: the reference state before.
    Before,
    /// Run the operation without a crash: the reference state after.
    After,
    /// Abort at the k-th step of the operation.
    Crash(u64),
}

impl Mode {
    fn arg(self) -> String {
        match self {
            Mode::Before => "before".into(),
            Mode::After => "after".into(),
            Mode::Crash(k) => k.to_string(),
        }
    }

    fn parse(arg: &str) -> Mode {
        match arg {
            "before" => Mode::Before,
            "after" => Mode::After,
            k => Mode::Crash(k.parse().expect("k")),
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mode::Before => write!(f, "reference before"),
            Mode::After => write!(f, "reference after"),
            Mode::Crash(k) => write!(f, "k={k}"),
        }
    }
}

/// The child's side of a run: arms the crash at the right moment.
struct Hooks {
    mode: Mode,
}

impl Hooks {
    /// Marks where the operation begins: arms the crash, or ends the child
    /// right here for the reference state before.
    fn arm(&self) {
        match self.mode {
            Mode::Crash(k) => shmstore::crash_after_steps(k),
            Mode::Before => self.vanish(),
            Mode::After => {}
        }
    }

    /// Tells the parent how many steps were left at a point of the
    /// operation (only a child that survives gets to print all marks).
    fn mark(&self, label: &str) {
        if let Mode::Crash(_) = self.mode {
            report("mark", format!("{label} {}", shmstore::steps_left()));
        }
    }

    /// Disarms the crash and says the child got through.
    fn finish(&self) {
        shmstore::crash_after_steps(0);
        report("done", self.mode.arg());
    }

    /// Ends the child here as if it were killed: no destructor runs, so the
    /// handles it holds and its slot in the process table stay behind for
    /// the parent to see, and to release.
    fn vanish(&self) -> ! {
        self.finish();
        std::process::exit(0)
    }
}

/// How a child runs an operation.
#[derive(Clone, Copy)]
enum Run {
    /// On a store the child opened before, and closes (disarmed) after.
    Store(fn(&Store, &Hooks)),
    /// On the store's name: the operation opens or closes stores itself.
    Name(fn(&str, &Hooks)),
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
    run: Run,
    /// The objects it touches, with their values after it.
    touched: fn() -> Vec<(&'static str, Option<Value>)>,
    /// The parent keeps the store open while the child runs, and looks at
    /// the dead child's slot before releasing it (operations on pins and
    /// process slots).
    watch: bool,
    /// Objects the operation pins or unpins: a watching parent removes them
    /// before the dead child's slot is released, and those still pinned
    /// stay allocated.
    pinned: &'static [&'static str],
    /// `used` of the committed states between before and after, in order,
    /// for an operation of several committed steps (watched).
    between: fn(&Refs) -> Vec<u64>,
    /// What the reference runs must show for the test to test what it says.
    shows: fn(&Refs),
}

/// Builds the operation's starting store under `guard`.
fn build(op: &Op, guard: &StoreGuard) -> (Store, Model) {
    let store = Store::create(guard.name(), op.capacity).expect("create");
    let mut model = base(&store);
    (op.prepare)(&store, &mut model);
    (store, model)
}

/// Checks that every committed object is intact and says on which side of
/// the operation the objects it touches are (`None` if none of them
/// differs between before and after).
fn values(op: &Op, store: &Store, model: &Model, at: Mode) -> Option<Side> {
    let touched = (op.touched)();
    for (name, value) in model {
        if touched.iter().any(|(t, _)| t == name) {
            continue;
        }
        assert_eq!(
            value.read_like(store, name).as_ref(),
            Some(value),
            "{at}: committed object {name:?} is not intact"
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
            Side::After
        } else if found == before_v {
            Side::Before
        } else {
            panic!("{at}: {name:?} is half-done: {found:?}, neither {before_v:?} nor {after_v:?}");
        };
        if let Some(s) = side {
            assert_eq!(s, this, "{at}: touched objects disagree ({name:?})");
        }
        side = Some(this);
    }
    side
}

/// One more insert, get and remove: the store keeps working. (Its space
/// need not come back exactly: the insert may grow the directory.)
fn probe(store: &Store, at: Mode) {
    let k = match at {
        Mode::Crash(k) => k,
        _ => 0,
    };
    let was = store.stats().expect("stats");
    store.insert("probe", 0x5eed_u64 + k).expect("probe insert");
    assert_eq!(*store.get::<u64>("probe").expect("probe get"), 0x5eed + k);
    assert_eq!(store.stats().expect("stats").objects, was.objects + 1);
    store.remove("probe").expect("probe remove");
    assert_eq!(store.stats().expect("stats").objects, was.objects);
    let report = store.check().expect("check");
    assert!(report.is_ok(), "{at}: after the probe:\n{report}");
}

/// Removes every object and returns the space still used.
fn drain(store: &Store, at: Mode) -> u64 {
    for entry in store.entries().expect("entries") {
        store
            .remove(&entry.name)
            .unwrap_or_else(|e| panic!("{at}: removing {:?}: {e}", entry.name));
    }
    let report = store.check().expect("check");
    assert!(
        report.is_ok() && report.objects == 0,
        "{at}: after removing every object:\n{report}"
    );
    store.stats().expect("stats").used
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

/// The child: runs the operation in the mode its argument says.
fn child(op: &Op, name: &str) {
    no_core_dumps();
    let hooks = Hooks {
        mode: Mode::parse(&role_arg()),
    };
    match op.run {
        Run::Store(run) => {
            let store = Store::open(name).expect("child open");
            run(&store, &hooks);
            hooks.finish();
        }
        Run::Name(run) => {
            run(name, &hooks);
            hooks.finish();
        }
    }
}

/// One run of `op` by a child in `mode`, on a store of its own.
struct Attempt {
    /// How the child ended.
    done: Finished,
    /// The state the parent built for it.
    built: Held,
    /// For an unwatched operation, the built state's full accounting.
    built_snap: Option<Snap>,
    /// What the child left.
    seen: Seen,
    /// Where the touched objects' values are.
    side: Option<Side>,
}

fn attempt(op: &Op, mode: Mode) -> Attempt {
    let guard = StoreGuard::unique(if let Mode::Crash(_) = mode {
        "cp"
    } else {
        "cp-ref"
    });
    let (store, mut model) = build(op, &guard);
    let built = held(&store);
    // `check()` releases dead processes' slots: a watched store may hold a
    // dead victim's slot, which is part of the operation.
    let built_snap = (!op.watch).then(|| snap(&store));
    let watcher = if op.watch {
        Some(store)
    } else {
        drop(store);
        None
    };
    // `--include-ignored`: the child must run its test even when the
    // parent was run with `--ignored`.
    let mut cmd = role_command_with_arg(op.test, "crash", guard.name(), &mode.arg());
    cmd.arg("--include-ignored");
    let done = Child::spawn(cmd).wait();
    if done.status.success() {
        assert_eq!(done.reports("done"), [mode.arg()], "{mode}\n{done}");
    } else {
        assert!(
            matches!(mode, Mode::Crash(_)) && done.status.signal() == Some(libc::SIGABRT),
            "{mode}: the child should abort at its crash point\n{done}"
        );
    }
    let store = watcher.unwrap_or_else(|| {
        Store::open(guard.name()).unwrap_or_else(|e| {
            panic!("{mode}: cannot open the store after the child:\n{e}\n{done}")
        })
    });
    let held = op.watch.then(|| {
        for name in op.pinned {
            remove(&store, &mut model, name);
        }
        held(&store)
    });
    let snap = snap(&store);
    let side = values(op, &store, &model, mode);
    probe(&store, mode);
    let drained = drain(&store, mode);
    Attempt {
        done,
        built,
        built_snap,
        seen: Seen {
            held,
            snap,
            drained,
        },
        side,
    }
}

/// The states a watched operation may leave before the dead child's slot
/// is released, in order: before, those between, after.
fn stages(op: &Op, refs: &Refs) -> Vec<Held> {
    let (before, after) = (refs.before.held(), refs.after.held());
    // What a process does with pins and slots, it holds: once its slot is
    // released, nothing of it may remain (a pin left behind would keep a
    // removed object allocated, a slot its pin table).
    assert_eq!(
        (refs.before.snap, refs.before.drained),
        (refs.after.snap, refs.after.drained),
        "{}: once the dead child's slot is released, before and after must be the same store",
        op.test
    );
    let between = (op.between)(refs);
    if !between.is_empty() {
        assert_eq!(before.objects, after.objects, "{}", op.test);
    }
    let mut all = vec![before];
    all.extend(between.into_iter().map(|used| Held {
        used,
        objects: before.objects,
    }));
    all.push(after);
    for (i, s) in all.iter().enumerate() {
        assert!(
            !all[..i].contains(s),
            "{}: two states look the same, so a crash could not be told apart: {all:?}",
            op.test
        );
    }
    all
}

/// Which state (index into `stages`; for an unwatched operation 0 before,
/// 1 after) a run left, checking that everything agrees with it exactly.
fn classify(op: &Op, refs: &Refs, stages: &[Held], run: &Attempt, at: Mode) -> usize {
    let last = if op.watch { stages.len() - 1 } else { 1 };
    let by_held = run.seen.held.map(|h| {
        stages.iter().position(|s| *s == h).unwrap_or_else(|| {
            panic!(
                "{at}: before its slot was released, the dead child left {h:?}, none of the \
                 committed states {stages:?}: a leak, a lost block or a half-done step"
            )
        })
    });
    let by_values = run.side.map(|s| match s {
        Side::Before => 0,
        Side::After => last,
    });
    let stage = match (by_values, by_held) {
        (Some(v), Some(h)) => {
            assert_eq!(v, h, "{at}: touched objects and held state disagree");
            h
        }
        (Some(s), None) | (None, Some(s)) => s,
        (None, None) => panic!("{}: nothing tells before from after", op.test),
    };
    let (name, expected) = if stage == 0 {
        ("before", &refs.before)
    } else {
        ("after", &refs.after)
    };
    assert_eq!(
        run.seen.snap, expected.snap,
        "{at}: the operation is in state {stage} of 0..={last}, but once released the accounting \
         is not that of the reference {name}: a leak or a lost block"
    );
    assert_eq!(
        run.seen.drained, expected.drained,
        "{at}: with every object removed, the space used is not that of the reference {name}: \
         a pin or a block left behind"
    );
    stage
}

/// The parent: every crash point of `op`, in order.
fn crash_every_step(op: &Op) {
    if let Some((r, name)) = role() {
        assert_eq!(r, "crash");
        return child(op, &name);
    }
    let start = Instant::now();
    let (before, after) = (attempt(op, Mode::Before), attempt(op, Mode::After));
    assert_eq!(
        before.built, after.built,
        "the starting state is deterministic"
    );
    if let Some(built) = before.built_snap {
        assert_eq!(
            built, before.seen.snap,
            "a child that stops before the operation leaves the store as it was built"
        );
    }
    if !op.watch {
        assert_eq!(before.side, Some(Side::Before), "{}", op.test);
        assert_eq!(after.side, Some(Side::After), "{}", op.test);
    }
    let refs = Refs {
        built: before.built,
        before: before.seen,
        after: after.seen,
    };
    let stages = if op.watch {
        stages(op, &refs)
    } else {
        Vec::new()
    };
    if tracing() {
        eprintln!("{}: {:?}, states {stages:?}", op.test, refs.built);
        eprintln!("{} before: {:?}", op.test, refs.before);
        eprintln!("{} after: {:?}", op.test, refs.after);
    }
    assert_eq!(classify(op, &refs, &stages, &before, Mode::Before), 0);
    let last = if op.watch { stages.len() - 1 } else { 1 };
    assert_eq!(classify(op, &refs, &stages, &after, Mode::After), last);
    (op.shows)(&refs);

    let mut outcomes = Vec::new();
    let mut k = 1;
    let marks = loop {
        assert!(k <= MAX_STEPS, "{}: more than {MAX_STEPS} steps", op.test);
        let at = Mode::Crash(k);
        let run = attempt(op, at);
        assert_eq!(
            run.built, refs.built,
            "{at}: the starting state is deterministic"
        );
        if let Some(built) = run.built_snap {
            assert_eq!(
                built, refs.before.snap,
                "{at}: the starting state is deterministic"
            );
        }
        let outcome = classify(op, &refs, &stages, &run, at);
        if run.done.status.success() {
            assert_eq!(outcome, last, "{at}: the operation finished");
            break run.done.reports("mark");
        }
        if let Some(&was) = outcomes.last() {
            assert!(
                outcome >= was,
                "{at}: state {outcome} after state {was}: recovery went back in time"
            );
        }
        if tracing() {
            eprintln!("{} {at}: state {outcome} {:?}", op.test, run.seen);
        }
        outcomes.push(outcome);
        k += 1;
    };
    let points = k - 1;
    let count = |o| outcomes.iter().filter(|&&x| x == o).count();
    for state in 0..=last {
        assert!(
            count(state) > 0,
            "{}: no crash point leaves state {state} of 0..={last}: {outcomes:?}",
            op.test
        );
    }
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
    let used = |s: &Seen| s.held.map_or(s.snap.used, |h| h.used);
    eprintln!(
        "CRASH POINTS {}: {points} (rolled back {}, between {}, completed {}){}; used {} -> {}; {:.1?}",
        op.test,
        count(0),
        points as usize - count(0) - count(last),
        count(last),
        if marks.is_empty() {
            String::new()
        } else {
            format!("; {}", marks.join(", "))
        },
        used(&refs.before),
        used(&refs.after),
        start.elapsed()
    );
    assert_crash_points(op.test, points);
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
    run: Run::Store(|_, _| unreachable!()),
    touched: Vec::new,
    watch: false,
    pinned: &[],
    between: |_| Vec::new(),
    shows: |_| {},
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
        run: Run::Store(|s, h| {
            h.arm();
            s.insert("reading", reading()).unwrap();
        }),
        touched: || vec![("reading", Some(Value::Reading(reading())))],
        ..DEFAULT
    }
);

crash_test!(
    an_insert_of_a_known_type_survives_a_crash_at_every_step,
    Op {
        run: Run::Store(|s, h| {
            h.arm();
            s.insert("another", 0x1234_u64).unwrap();
        }),
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
        run: Run::Store(|s, h| {
            h.arm();
            s.insert("grows-dir", 7u64).unwrap();
        }),
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
        run: Run::Store(|s, h| {
            h.arm();
            s.insert("ninth-type", [9u8; 9]).unwrap();
        }),
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
        run: Run::Store(|s, h| {
            h.arm();
            s.insert_slice("small-slice", &small_slice()).unwrap();
        }),
        touched: || vec![("small-slice", Some(Value::U32s(small_slice())))],
        ..DEFAULT
    }
);

crash_test!(
    get_or_insert_with_of_a_new_name_survives_a_crash_at_every_step,
    Op {
        run: Run::Store(|s, h| {
            h.arm();
            let got = s.get_or_insert_with("lazy", || 77u64).unwrap();
            assert_eq!(*got, 77);
        }),
        touched: || vec![("lazy", Some(Value::U64(77)))],
        ..DEFAULT
    }
);

crash_test!(
    a_remove_of_an_unpinned_object_survives_a_crash_at_every_step,
    Op {
        run: Run::Store(|s, h| {
            h.arm();
            s.remove("point").unwrap();
        }),
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
        run: Run::Store(|s, h| {
            let pinned = s.get_slice::<f32>("samples").unwrap();
            h.arm();
            s.remove("samples").unwrap();
            h.mark("removed");
            assert_eq!(pinned[3], 1.5);
            drop(pinned); // the last pin: the record is freed here
        }),
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
        run: Run::Store(|s, h| {
            h.arm();
            s.insert_slice("consolidated", &consolidated_slice())
                .unwrap();
        }),
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
        run: Run::Store(|s, h| {
            h.arm();
            s.insert_slice("large", &large_slice()).unwrap();
        }),
        touched: || vec![("large", Some(Value::U64s(large_slice())))],
        ..DEFAULT
    }
);

// ---------------------------------------------------------------------------
// Pins and process slots: watched operations.

crash_test!(
    // The pin word and the process's pin-table entry change in one
    // operation: a crash leaves the object either unpinned or pinned and
    // counted (so that releasing the dead child's slot unpins it).
    a_get_survives_a_crash_at_every_step_of_its_pin,
    Op {
        run: Run::Store(|s, h| {
            h.arm();
            let p = s.get::<Point>("point").unwrap();
            assert_eq!(*p, point());
            h.vanish()
        }),
        watch: true,
        pinned: &["point"],
        ..DEFAULT
    }
);

/// Objects pinned by the pin-table growth test: a process's pin table
/// starts with 16 entries and grows when a new entry would fill more than
/// three quarters of it, so the 13th distinct pin grows it.
const PIN_OBJECTS: [&str; 13] = [
    "pin-00", "pin-01", "pin-02", "pin-03", "pin-04", "pin-05", "pin-06", "pin-07", "pin-08",
    "pin-09", "pin-10", "pin-11", "pin-12",
];

crash_test!(
    a_get_that_grows_the_pin_table_survives_a_crash_at_every_step,
    Op {
        prepare: |s, m| {
            for (i, name) in PIN_OBJECTS.iter().enumerate() {
                put(s, m, name, Value::U64(500 + i as u64));
            }
        },
        run: Run::Store(|s, h| {
            let (last, first) = PIN_OBJECTS.split_last().unwrap();
            let pins: Vec<Handle<u64>> = first.iter().map(|n| s.get::<u64>(n).unwrap()).collect();
            h.arm();
            let grows = s.get::<u64>(last).unwrap();
            assert_eq!(*grows, 512);
            assert_eq!(pins.len(), 12);
            h.vanish()
        }),
        watch: true,
        pinned: &PIN_OBJECTS,
        shows: |r| {
            // Released, the 13 removed objects are freed: one record each.
            let freed = r.built.used - r.after.snap.used;
            assert_eq!(freed % 13, 0, "13 records of one size: {freed} bytes");
            // Before the release, the reference after holds one record
            // more than the reference before, and a bigger pin table.
            let grown = r.after.held().used - r.before.held().used - freed / 13;
            assert!(grown >= 256, "the pin table grew by only {grown} bytes");
        },
        ..DEFAULT
    }
);

crash_test!(
    // The last unpin of an object that is not removed: the pin word and
    // the pin-table entry (deleted, with its probe run moved back) change
    // together.
    a_handle_dropped_on_its_own_survives_a_crash_at_every_step,
    Op {
        run: Run::Store(|s, h| {
            let p = s.get::<Point>("point").unwrap();
            h.arm();
            drop(p);
            h.vanish()
        }),
        watch: true,
        pinned: &["point"],
        ..DEFAULT
    }
);

crash_test!(
    // `Store::open` validates the store, takes a slot in the process table
    // (with a pin table) and looks for dead processes to release: a crash
    // leaves the slot either untaken or taken whole.
    attaching_to_the_process_table_survives_a_crash_at_every_step,
    Op {
        run: Run::Name(|name, h| {
            h.arm();
            let _store = Store::open(name).unwrap();
            h.vanish()
        }),
        watch: true,
        shows: |r| {
            assert!(
                r.after.held().used > r.before.held().used,
                "an attached process has a pin table: {:?} -> {:?}",
                r.before.held,
                r.after.held
            );
        },
        ..DEFAULT
    }
);

crash_test!(
    // Dropping the last handle (the store itself was dropped before) gives
    // its pin back, then the process's slot: two operations, so a crash
    // may also leave the object unpinned and the slot still taken.
    detaching_with_the_last_handle_survives_a_crash_at_every_step,
    Op {
        run: Run::Name(|name, h| {
            let store = Store::open(name).unwrap();
            let p = store.get::<Point>("point").unwrap();
            drop(store);
            h.arm();
            drop(p);
        }),
        watch: true,
        pinned: &["point"],
        between: |r| {
            // Unpinned, "point" (removed by the parent) is freed; its record
            // is what releasing everything frees of the built store.
            let point = r.built.used - r.before.snap.used;
            vec![r.before.held().used - point]
        },
        ..DEFAULT
    }
);

const REAP_TEST: &str = "releasing_a_dead_process_slot_survives_a_crash_at_every_step";

/// The process that dies holding things (in [`prepare_victim`]): it pins
/// "point" and "samples", removes "samples" (which its pin keeps
/// allocated), and dies at step `n` of a large insert, with the record it
/// reserved still unpublished.
fn victim(name: &str) {
    no_core_dumps();
    let n: u64 = role_arg().parse().expect("n");
    let store = Store::open(name).expect("victim open");
    report("attached", store.stats().unwrap().used);
    let point = store.get::<Point>("point").unwrap();
    let samples = store.get_slice::<f32>("samples").unwrap();
    store.remove("samples").unwrap();
    report("holding", store.stats().unwrap().used);
    shmstore::crash_after_steps(n);
    store.insert_slice("large", &large_slice()).unwrap();
    shmstore::crash_after_steps(0);
    report("done", n);
    drop((point, samples));
}

fn run_victim(name: &str, n: u64) -> Finished {
    let mut cmd = role_command_with_arg(REAP_TEST, "victim", name, &n.to_string());
    cmd.arg("--include-ignored");
    Child::spawn(cmd).wait()
}

/// The step of its large insert at which the victim dies: right after the
/// copy, between reserving and publishing, the only step taken without the
/// header lock held (so the next locker has no dead holder to recover
/// from). Found once, on scratch stores built like the test's.
fn victim_death_step() -> u64 {
    static N: OnceLock<u64> = OnceLock::new();
    *N.get_or_init(|| {
        for n in 1..=MAX_STEPS {
            let guard = StoreGuard::unique("cp-victim-scratch");
            let store = Store::create(guard.name(), MIB).unwrap();
            base(&store);
            let was = store.stats().unwrap();
            let done = run_victim(guard.name(), n);
            assert_eq!(
                done.status.signal(),
                Some(libc::SIGABRT),
                "the victim's large insert ended before a step outside the header lock\n{done}"
            );
            let now = store.stats().unwrap();
            if now.recoveries == was.recoveries {
                assert_eq!(now.objects, was.objects - 1, "only \"samples\" removed");
                assert!(
                    now.used >= was.used + 80_000,
                    "the large insert's reservation is held: {} -> {}",
                    was.used,
                    now.used
                );
                return n;
            }
        }
        panic!("the victim never died outside the header lock")
    })
}

/// What the victim leaves: `used` before it attached and once attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct VictimSizes {
    before: u64,
    attached: u64,
}

static VICTIM: OnceLock<VictimSizes> = OnceLock::new();

/// Runs the victim on the store about to be tested.
fn prepare_victim(s: &Store, m: &mut Model) {
    let n = victim_death_step();
    let before = s.stats().unwrap().used;
    let done = run_victim(s.name(), n);
    assert_eq!(done.status.signal(), Some(libc::SIGABRT), "{done}");
    let attached: u64 = done.report("attached").parse().unwrap();
    assert_eq!(
        done.report("holding"),
        attached.to_string(),
        "pins, and removing a pinned object, allocate nothing"
    );
    m.remove("samples");
    let sizes = VictimSizes { before, attached };
    assert_eq!(
        *VICTIM.get_or_init(|| sizes),
        sizes,
        "the victim leaves the same state every time"
    );
}

/// Releasing the victim's slot takes one committed operation per pin-table
/// entry, one per reservation, and one for the pin table and the slot; the
/// reaper attaches first. From the state before, `used` goes up by the
/// reaper's pin table, then down by the "samples" record (its last pin
/// released; releasing the pin on "point" frees nothing), by the
/// reservation, and by the victim's pin table (the state after).
fn reap_between(r: &Refs) -> Vec<u64> {
    let v = VICTIM.get().expect("the victim ran");
    let start = r.before.held().used;
    let reaper_table = r.after.held().used - r.after.snap.used;
    let samples = v.before - r.after.snap.used;
    let reservation = start - v.attached;
    assert!(reservation >= 80_000, "reservation of {reservation} bytes");
    let attached = start + reaper_table;
    vec![
        attached,
        attached - samples,
        attached - samples - reservation,
    ]
}

#[test]
fn releasing_a_dead_process_slot_survives_a_crash_at_every_step() {
    if let Some((r, name)) = role() {
        if r == "victim" {
            return victim(&name);
        }
    }
    crash_every_step(&Op {
        test: REAP_TEST,
        prepare: prepare_victim,
        // Opening releases the slots of dead processes.
        run: Run::Name(|name, h| {
            h.arm();
            let _store = Store::open(name).unwrap();
            h.vanish()
        }),
        watch: true,
        between: reap_between,
        ..DEFAULT
    });
}

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
    assert_crash_points(CREATION_TEST, k - 1);
}

// ---------------------------------------------------------------------------
// The README.

/// The README quotes the number of operations and of crash points: both
/// must be those [`CRASH_POINTS`] asserts.
#[test]
fn the_readme_quotes_the_asserted_crash_point_counts() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let readme = std::fs::read_to_string(path).expect("README.md");
    let text = readme.split_whitespace().collect::<Vec<_>>().join(" ");
    let total: u64 = CRASH_POINTS.iter().map(|&(_, n)| n).sum();
    let quoted = format!(
        "every step of {} operations ({total} crash points",
        CRASH_POINTS.len()
    );
    assert!(
        text.contains(&quoted),
        "README.md should say \"{quoted}\": its figures come from CRASH_POINTS"
    );
}
