//! Soak: several processes do random operations on one store while the
//! parent kills and restarts them at random; afterwards the store passes
//! `check()`, every object agrees with what the workers reported as
//! committed, the mutex-guarded ledger adds up, and no space leaked.
//!
//! How "committed" is known: a worker prints `REPORT b <seq> <op> <key>
//! <arg>` before each operation and `REPORT k <seq>` once it returned `Ok`
//! (`REPORT f <seq>` if the store was full). The parent reads a worker's
//! output after it ended. An operation with a `k` line is committed; one
//! with only a `b` line was in flight when the worker was killed and may or
//! may not have happened. The next incarnation of that worker first reads
//! the state of its keys and its ledger count from the store and prints it
//! (`REPORT state ...`); the parent checks that this state is either the
//! committed one or the in-flight operation's result, and from then on
//! knows the exact state again. So at the end every expectation is exact.
//!
//! Operation codes: `I` insert / insert_slice, `O` get_or_insert_with, `R`
//! remove, `G` get and check, `C` contains, `E` insert over an existing
//! name (must fail), `H` get and keep the handle (held handles are checked
//! again later, also after their object was removed), `L` ledger update.
//!
//! The run proves recovery only if recovery happened, so it asserts
//! minimums, scaled with its length: per 3 s, 20 random kills with an
//! operation in flight, one owner-died recovery of the ledger's mutex and
//! one recovery of the header lock. Random kills alone did not reach them
//! reliably on the 2-core machine (a kill every 1–60 ms: 0 to 5 header-lock
//! recoveries in 3 s, 2 to 7 of the ledger's; and with another build
//! running, as few as 23 kills, 17 of them in flight; a worker spends about
//! as long writing its report lines as inside operations, so only about
//! two kills in three land in one), so the schedule aims:
//! - a kill every 1–40 ms, three in four once the worker has read its state
//!   and started operating (the others land at any moment, often while it
//!   opens the store);
//! - some incarnations are planned to die on their own at a chosen point:
//!   at a random step of the metadata operations they run (through the
//!   `crash-points` feature; a step is taken holding the header lock, but
//!   for the copy of a large insert) or half-way through their first ledger
//!   update (`SIGKILL` to itself, holding the ledger's mutex);
//! - should the minimums still not be met when the time is up (a very busy
//!   machine), the parent goes on killing until they are, for at most
//!   [`PATIENCE`] more.
//!
//! `SHMSTORE_SOAK_SECS` sets how long the parent kills (default 3 s);
//! `SHMSTORE_SOAK_SEED` its random seed.

use std::collections::{HashMap, VecDeque};
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{compiler_fence, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use shmstore::{Error, Handle, ShmMutex, ShmMutexGuard, ShmSafe, SliceHandle, Store};
use shmstore_tests::{report, role, role_arg, spawn_role_with_arg, Child, StoreGuard, PATIENCE};

const TEST: &str =
    "several_processes_doing_random_operations_and_random_kills_leave_a_consistent_store";
/// Worker processes.
const W: usize = 4;
/// Keys per worker: `w{w}-k{i}`. Keys with `i % 4 == 3` hold `u64` slices,
/// the others a [`Val`].
const KEYS: usize = 64;
const CAPACITY: u64 = 8 << 20;
/// Handles a worker keeps at most (to read objects it then removes).
const HELD: usize = 6;

/// A value whose consistency can be checked on its own.
#[derive(ShmSafe, Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
struct Val {
    key: u32,
    _pad: u32,
    version: u64,
    check: u64,
}

/// Guarded by a `ShmMutex`. An update first writes a redo record
/// (`redo_*`), then sets `dirty`, applies the record, clears `dirty`; a
/// locker that finds the owner died with `dirty == 1` applies the record
/// again (idempotent), so the counts are exact whenever the lock is free.
#[derive(ShmSafe, Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
struct Ledger {
    total: u64,
    updates: u64,
    per_worker: [u64; W],
    last_writer: u32,
    dirty: u32,
    redo_total: u64,
    redo_updates: u64,
    redo_count: u64,
    redo_worker: u32,
    _pad: u32,
}

const LEDGER0: Ledger = Ledger {
    total: 0,
    updates: 0,
    per_worker: [0; W],
    last_writer: u32::MAX,
    dirty: 0,
    redo_total: 0,
    redo_updates: 0,
    redo_count: 0,
    redo_worker: 0,
    _pad: 0,
};

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// splitmix64: small, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn key_id(w: usize, i: usize) -> u32 {
    (w * KEYS + i) as u32
}

fn key_name(w: usize, i: usize) -> String {
    format!("w{w}-k{i}")
}

fn is_slice_key(i: usize) -> bool {
    i % 4 == 3
}

fn val_of(key: u32, version: u64) -> Val {
    Val {
        key,
        _pad: 0,
        version,
        check: mix(((key as u64) << 48) ^ version ^ 0x5eed),
    }
}

/// Slices of some keys are sometimes larger than 64 KiB, so that their
/// insert copies outside the header lock.
fn slice_len(i: usize, key: u32, version: u64) -> usize {
    let h = mix(version ^ ((key as u64) << 40));
    if i % 16 == 3 && h % 3 == 1 {
        8200 + (h >> 8) as usize % 12000
    } else {
        1 + (h >> 8) as usize % 64
    }
}

fn slice_of(i: usize, key: u32, version: u64) -> Vec<u64> {
    let len = slice_len(i, key, version);
    (0..len as u64)
        .map(|j| {
            if j == 0 {
                version
            } else {
                mix(version ^ ((key as u64) << 40) ^ (j << 20))
            }
        })
        .collect()
}

/// Checks a value against itself and returns its version.
fn verify_val(w: usize, i: usize, v: &Val) -> u64 {
    assert_eq!(
        *v,
        val_of(key_id(w, i), v.version),
        "{}: inconsistent value",
        key_name(w, i)
    );
    v.version
}

fn verify_slice(w: usize, i: usize, s: &[u64]) -> u64 {
    let version = *s
        .first()
        .unwrap_or_else(|| panic!("{}: empty slice", key_name(w, i)));
    let want = slice_of(i, key_id(w, i), version);
    assert!(
        s == &want[..],
        "{}: inconsistent slice (len {}, expected {} for version {version:#x})",
        key_name(w, i),
        s.len(),
        want.len()
    );
    version
}

/// The version stored under worker `w`'s key `i`, checked; `None` if absent.
fn read_key(store: &Store, w: usize, i: usize) -> Option<u64> {
    let name = key_name(w, i);
    if is_slice_key(i) {
        match store.get_slice::<u64>(&name) {
            Ok(s) => Some(verify_slice(w, i, &s)),
            Err(Error::NotFound { .. }) => None,
            Err(e) => panic!("get_slice {name}: {e}"),
        }
    } else {
        match store.get::<Val>(&name) {
            Ok(v) => Some(verify_val(w, i, &v)),
            Err(Error::NotFound { .. }) => None,
            Err(e) => panic!("get {name}: {e}"),
        }
    }
}

/// Locks the ledger; after an owner's death, finishes its update from the
/// redo record. Checks the ledger's invariant either way. Returns the
/// guard and whether the owner had died (and if so, whether it was dirty).
fn lock_ledger(ledger: &ShmMutex<Ledger>) -> (ShmMutexGuard<'_, Ledger>, Option<bool>) {
    let mut g = match ledger.lock_recover() {
        Ok(g) => g,
        Err(e) => panic!("locking the ledger: {e}"),
    };
    let died = if !g.owner_died() {
        None
    } else {
        {
            let dirty = g.dirty == 1;
            if dirty {
                let w = g.redo_worker as usize;
                assert!(w < W, "ledger redo record names worker {w}");
                g.total = g.redo_total;
                g.updates = g.redo_updates;
                g.per_worker[w] = g.redo_count;
                g.last_writer = w as u32;
                compiler_fence(Ordering::SeqCst);
                g.dirty = 0;
            }
            g.mark_consistent();
            Some(dirty)
        }
    };
    assert_eq!(g.dirty, 0, "ledger left dirty: {:?}", *g);
    assert_eq!(
        g.updates,
        g.per_worker.iter().sum::<u64>(),
        "ledger counts disagree: {:?}",
        *g
    );
    (g, died)
}

/// Busy-waits a few microseconds while holding the ledger lock, so that
/// some of the parent's random kills land in the middle of an update.
fn linger() {
    let until = Instant::now() + Duration::from_micros(15);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// One ledger update by worker `w`, adding `x`: redo record, `dirty`,
/// apply, clear (see [`Ledger`]). With `die_half_way`, the worker kills
/// itself once the update is half applied, holding the lock.
fn update_ledger(g: &mut Ledger, w: usize, x: u64, die_half_way: bool) {
    g.redo_total = g.total + x;
    g.redo_updates = g.updates + 1;
    g.redo_worker = w as u32;
    g.redo_count = g.per_worker[w] + 1;
    compiler_fence(Ordering::SeqCst);
    g.dirty = 1;
    compiler_fence(Ordering::SeqCst);
    linger();
    g.total = g.redo_total;
    compiler_fence(Ordering::SeqCst);
    if die_half_way {
        die();
    }
    linger();
    g.updates = g.redo_updates;
    compiler_fence(Ordering::SeqCst);
    linger();
    g.per_worker[w] = g.redo_count;
    g.last_writer = w as u32;
    compiler_fence(Ordering::SeqCst);
    g.dirty = 0;
}

/// `SIGKILL` to this process: it dies as if the parent had killed it.
fn die() -> ! {
    // SAFETY: raise has no memory-safety preconditions.
    unsafe { libc::raise(libc::SIGKILL) };
    unreachable!("SIGKILL returned")
}

/// No core files for the planned aborts.
fn no_core_dumps() {
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the struct we pass; no other preconditions.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) };
}

/// How an incarnation ends when the parent does not kill it at random.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// It runs until it is killed or stopped.
    Run,
    /// It aborts (`SIGABRT`) at the k-th step of the metadata operations it
    /// runs once it has read its state: inside an operation, holding the
    /// header lock (unless the step is a large insert's copy).
    Step(u64),
    /// It kills itself half-way through its first ledger update.
    Ledger,
}

impl Plan {
    fn arg(self) -> String {
        match self {
            Plan::Run => "run".into(),
            Plan::Step(k) => format!("step={k}"),
            Plan::Ledger => "ledger".into(),
        }
    }

    fn parse(s: &str) -> Plan {
        match s {
            "run" => Plan::Run,
            "ledger" => Plan::Ledger,
            _ => Plan::Step(
                s.strip_prefix("step=")
                    .and_then(|k| k.parse().ok())
                    .unwrap_or_else(|| panic!("plan {s:?}")),
            ),
        }
    }

    /// The signal it dies of.
    fn signal(self) -> i32 {
        match self {
            Plan::Run | Plan::Ledger => libc::SIGKILL,
            Plan::Step(_) => libc::SIGABRT,
        }
    }
}

enum Held {
    Val(usize, u64, Handle<Val>),
    Slice(usize, u64, SliceHandle<u64>),
}

/// A held handle still shows the value it was taken for, even if that
/// object was removed (and its key reused) since.
fn verify_held(w: usize, held: &VecDeque<Held>) {
    for h in held {
        match h {
            Held::Val(i, v, handle) => assert_eq!(verify_val(w, *i, handle), *v),
            Held::Slice(i, v, handle) => assert_eq!(verify_slice(w, *i, handle), *v),
        }
    }
}

/// Child: one incarnation of worker `w`.
fn worker(name: &str) {
    no_core_dumps();
    let arg = role_arg();
    let mut it = arg.split_whitespace();
    let mut number = || it.next().unwrap().parse::<u64>().unwrap();
    let (w, inc) = (number() as usize, number());
    let plan = Plan::parse(it.next().unwrap());
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    let store = Store::open(name).unwrap();
    let ledger = store.get::<ShmMutex<Ledger>>("ledger").unwrap();
    let stop = store.get::<AtomicU32>("stop").unwrap();

    // Learn what the previous incarnations left.
    let mut state: Vec<Option<u64>> = (0..KEYS).map(|i| read_key(&store, w, i)).collect();
    let count = {
        let (g, died) = lock_ledger(&ledger);
        if let Some(dirty) = died {
            report("died", dirty as u8);
        }
        g.per_worker[w]
    };
    let shown: Vec<String> = state
        .iter()
        .map(|s| s.map_or("-".to_string(), |v| format!("{v:x}")))
        .collect();
    report("state", format!("{count} {}", shown.join(" ")));
    if let Plan::Step(k) = plan {
        shmstore::crash_after_steps(k);
    }

    let mut rng = Rng(mix((w as u64) << 32 ^ inc ^ 0xc0ffee));
    let mut held: VecDeque<Held> = VecDeque::new();
    let mut seq: u64 = 0;
    while stop.load(Ordering::Acquire) == 0 {
        // SAFETY: getppid has no preconditions.
        if unsafe { libc::getppid() } != parent {
            return; // orphaned: the parent test is gone
        }
        seq += 1;
        let version = (inc << 32) | seq;
        if rng.below(100) < 6 {
            let x = 1 + rng.below(1000);
            report("b", format!("{seq} L 0 {x}"));
            let (mut g, died) = lock_ledger(&ledger);
            if let Some(dirty) = died {
                report("died", dirty as u8);
            }
            update_ledger(&mut g, w, x, plan == Plan::Ledger);
            drop(g);
            report("k", seq);
            continue;
        }
        let i = rng.below(KEYS as u64) as usize;
        let name = key_name(w, i);
        let key = key_id(w, i);
        let slice = is_slice_key(i);
        let roll = rng.below(100);
        let op = match state[i] {
            None if roll < 10 => 'G',
            None if roll < 65 || slice => 'I',
            None => 'O',
            Some(_) if roll < 35 => 'G',
            Some(_) if roll < 60 => 'R',
            Some(_) if roll < 70 && !slice => 'O',
            Some(_) if roll < 70 => 'G',
            Some(_) if roll < 80 => 'E',
            Some(_) if roll < 85 => 'C',
            Some(_) => 'H',
        };
        report("b", format!("{seq} {op} {i} {version:x}"));
        let mut full = false;
        match op {
            'G' => assert_eq!(read_key(&store, w, i), state[i], "{name}"),
            'C' => assert_eq!(store.contains(&name).unwrap(), state[i].is_some()),
            'I' => {
                let r = if slice {
                    store.insert_slice(&name, &slice_of(i, key, version))
                } else {
                    store.insert(&name, val_of(key, version))
                };
                match r {
                    Ok(()) => state[i] = Some(version),
                    Err(Error::OutOfMemory { .. }) => full = true,
                    Err(e) => panic!("insert {name}: {e}"),
                }
            }
            'O' => match store.get_or_insert_with(&name, || val_of(key, version)) {
                Ok(h) => {
                    let got = verify_val(w, i, &h);
                    assert_eq!(got, state[i].unwrap_or(version), "{name}");
                    state[i] = Some(got);
                }
                Err(Error::OutOfMemory { .. }) => full = true,
                Err(e) => panic!("get_or_insert_with {name}: {e}"),
            },
            'E' => {
                let r = if slice {
                    store.insert_slice(&name, &slice_of(i, key, version))
                } else {
                    store.insert(&name, val_of(key, version))
                };
                assert!(
                    matches!(r, Err(Error::AlreadyExists { .. })),
                    "insert over {name}: {r:?}"
                );
            }
            'R' => {
                store.remove(&name).unwrap();
                state[i] = None;
            }
            'H' => {
                let want = state[i].unwrap();
                let h = if slice {
                    let s = store.get_slice::<u64>(&name).unwrap();
                    assert_eq!(verify_slice(w, i, &s), want);
                    Held::Slice(i, want, s)
                } else {
                    let v = store.get::<Val>(&name).unwrap();
                    assert_eq!(verify_val(w, i, &v), want);
                    Held::Val(i, want, v)
                };
                if held.len() == HELD {
                    held.pop_front();
                }
                held.push_back(h);
            }
            _ => unreachable!(),
        }
        report(if full { "f" } else { "k" }, seq);
        if seq % 16 == 15 {
            verify_held(w, &held);
        }
    }
    verify_held(w, &held);
    report("done", seq);
}

/// One operation as the parent read it from a worker.
#[derive(Debug, Clone)]
struct Op {
    code: char,
    key: usize,
    arg: u64,
}

/// What the parent knows of one worker.
#[derive(Default)]
struct Model {
    keys: Vec<Option<u64>>,
    ledger_count: u64,
    /// The operation a killed incarnation had in flight, until the next
    /// incarnation's state line resolves it.
    pending: Option<Op>,
}

#[derive(Default)]
struct Totals {
    incarnations: u64,
    /// Random kills by the parent, and those with an operation in flight.
    kills: u64,
    in_flight: u64,
    /// Planned deaths (always with an operation in flight).
    planned_step: u64,
    planned_ledger: u64,
    committed: u64,
    mutations: u64,
    ledger_updates: u64,
    full: u64,
    /// Of all deaths with an operation in flight.
    in_flight_happened: u64,
    in_flight_mutating: u64,
    owner_died: u64,
    owner_died_dirty: u64,
    ledger_total: u64,
}

fn parse_hex_version(s: &str) -> Option<u64> {
    if s == "-" {
        None
    } else {
        Some(u64::from_str_radix(s, 16).unwrap())
    }
}

/// How an incarnation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The parent killed it at random.
    Killed,
    /// It died as planned.
    Planned(Plan),
    /// It stopped cleanly when told to.
    Stopped,
}

/// Applies one finished incarnation's output to the model of worker `w`.
fn apply(w: usize, model: &mut Model, totals: &mut Totals, stdout: &str, end: End) {
    // Only complete lines: a killed worker may have died mid-line.
    let complete = match stdout.rfind('\n') {
        Some(end) => &stdout[..=end],
        None => "",
    };
    let mut saw_state = false;
    let mut open: Option<(u64, Op)> = None;
    let mut done = false;
    for line in complete.lines() {
        let Some(at) = line.find("REPORT ") else {
            continue;
        };
        let mut f = line[at + 7..].split_whitespace();
        let kind = f.next().unwrap_or("");
        match kind {
            "state" => {
                assert!(
                    !saw_state && open.is_none(),
                    "worker {w}: misplaced state line"
                );
                saw_state = true;
                let count: u64 = f.next().unwrap().parse().unwrap();
                let keys: Vec<Option<u64>> = f.map(parse_hex_version).collect();
                assert_eq!(keys.len(), KEYS, "worker {w}: state line {line:?}");
                let pending = model.pending.take();
                if let Some(p) = &pending {
                    let mut happened = false;
                    if p.code == 'L' {
                        happened = count == model.ledger_count + 1;
                        if happened {
                            totals.ledger_total += p.arg;
                        }
                    }
                    if let Some(after) = effect(p, model.keys[p.key]) {
                        happened = keys[p.key] == after && after != model.keys[p.key];
                        assert!(
                            keys[p.key] == model.keys[p.key] || keys[p.key] == after,
                            "worker {w} key {}: in-flight {p:?} from {:?} left {:?}",
                            p.key,
                            model.keys[p.key],
                            keys[p.key]
                        );
                    }
                    totals.in_flight_happened += happened as u64;
                }
                let ledger_ok = count == model.ledger_count
                    || (count == model.ledger_count + 1
                        && pending.as_ref().is_some_and(|p| p.code == 'L'));
                assert!(
                    ledger_ok,
                    "worker {w}: ledger count {count}, committed {}, in flight {pending:?}",
                    model.ledger_count
                );
                model.ledger_count = count;
                for (i, (got, want)) in keys.iter().zip(&model.keys).enumerate() {
                    let in_flight = pending
                        .as_ref()
                        .is_some_and(|p| p.key == i && p.code != 'L');
                    assert!(
                        in_flight || got == want,
                        "worker {w} key {i}: found {got:?}, committed {want:?}, nothing in flight"
                    );
                }
                model.keys = keys;
            }
            "b" => {
                assert!(
                    saw_state && open.is_none(),
                    "worker {w}: misplaced {line:?}"
                );
                let seq: u64 = f.next().unwrap().parse().unwrap();
                let code = f.next().unwrap().chars().next().unwrap();
                let key: usize = f.next().unwrap().parse().unwrap();
                let a = f.next().unwrap();
                let arg = if code == 'L' {
                    a.parse().unwrap()
                } else {
                    u64::from_str_radix(a, 16).unwrap()
                };
                open = Some((seq, Op { code, key, arg }));
            }
            "k" | "f" => {
                let seq: u64 = f.next().unwrap().parse().unwrap();
                let (s, op) = open.take().expect("an end line without a begin line");
                assert_eq!(s, seq, "worker {w}: end of {seq} after begin of {s}");
                totals.committed += 1;
                if kind == "f" {
                    assert!(matches!(op.code, 'I' | 'O'), "worker {w}: {op:?} failed");
                    totals.full += 1;
                    continue;
                }
                if op.code == 'L' {
                    model.ledger_count += 1;
                    totals.ledger_total += op.arg;
                    totals.ledger_updates += 1;
                    totals.mutations += 1;
                } else if let Some(after) = effect(&op, model.keys[op.key]) {
                    if op.code == 'R' {
                        assert!(
                            model.keys[op.key].is_some(),
                            "worker {w}: removed absent {op:?}"
                        );
                    }
                    if op.code == 'I' {
                        assert!(
                            model.keys[op.key].is_none(),
                            "worker {w}: inserted over {op:?}"
                        );
                    }
                    totals.mutations += (after != model.keys[op.key]) as u64;
                    model.keys[op.key] = after;
                }
            }
            "died" => {
                totals.owner_died += 1;
                totals.owner_died_dirty += (f.next() == Some("1")) as u64;
            }
            "done" => done = true,
            _ => {}
        }
    }
    if end != End::Stopped {
        if let End::Planned(plan) = end {
            // A planned death is in an operation: the plan did what it says.
            let code = open.as_ref().map(|(_, op)| op.code);
            assert!(
                code.is_some() && (plan != Plan::Ledger || code == Some('L')),
                "worker {w}: planned death {plan:?} with {code:?} in flight:\n{stdout}"
            );
            match plan {
                Plan::Step(_) => totals.planned_step += 1,
                Plan::Ledger => totals.planned_ledger += 1,
                Plan::Run => unreachable!(),
            }
        }
        if let Some((_, op)) = open {
            assert!(
                model.pending.is_none(),
                "worker {w}: two operations in flight"
            );
            totals.in_flight += (end == End::Killed) as u64;
            totals.in_flight_mutating += (op.code == 'L' || effect(&op, None).is_some()) as u64;
            model.pending = Some(op);
        }
    } else {
        assert!(
            saw_state && done && open.is_none(),
            "worker {w} did not stop cleanly:\n{stdout}"
        );
    }
}

/// The state of the key an operation leaves, starting from `before`;
/// `None` for an operation that changes no key.
fn effect(op: &Op, before: Option<u64>) -> Option<Option<u64>> {
    match op.code {
        'I' => Some(Some(op.arg)),
        'O' => Some(Some(before.unwrap_or(op.arg))),
        'R' => Some(None),
        _ => None,
    }
}

fn soak_secs() -> f64 {
    std::env::var("SHMSTORE_SOAK_SECS")
        .ok()
        .map(|s| {
            s.parse()
                .expect("SHMSTORE_SOAK_SECS is a number of seconds")
        })
        .unwrap_or(3.0)
}

fn spawn_worker(name: &str, w: usize, inc: u64, plan: Plan) -> Child {
    spawn_role_with_arg(TEST, "worker", name, &format!("{w} {inc} {}", plan.arg()))
}

/// The plan of the `n`-th incarnation: one in eight dies at a random step,
/// one in eight half-way through a ledger update.
fn plan_of(n: u64, rng: &mut Rng) -> Plan {
    match n % 8 {
        3 => Plan::Step(1 + rng.below(300)),
        7 => Plan::Ledger,
        _ => Plan::Run,
    }
}

/// Ends worker `w`'s incarnation as `end` says — a random kill, or waiting
/// for its planned death — and applies its output.
fn finish(w: usize, mut child: Child, end: End, model: &mut Model, totals: &mut Totals) {
    let signal = match end {
        End::Killed => {
            child.kill9();
            totals.kills += 1;
            libc::SIGKILL
        }
        End::Planned(plan) => plan.signal(),
        End::Stopped => unreachable!("stopped workers are waited for together"),
    };
    let done = child.wait_timeout(PATIENCE);
    assert!(
        done.status.signal() == Some(signal),
        "worker {w} ({end:?}) should have died of signal {signal}\n{done}"
    );
    apply(w, model, totals, &done.stdout, end);
}

/// The minimums a run of `secs` seconds must reach (see the module docs):
/// in-flight kills, and owner-died recoveries of the ledger and of the
/// header lock.
fn minimums(secs: f64) -> (u64, u64) {
    (
        (20.0 * secs / 3.0).floor() as u64,
        (secs / 3.0).ceil() as u64,
    )
}

/// Stores the key types, the ledger and the flag, as the soak store has.
fn setup(store: &Store) {
    store.insert("ledger", ShmMutex::new(LEDGER0)).unwrap();
    store.insert("stop", AtomicU32::new(0)).unwrap();
}

#[test]
fn several_processes_doing_random_operations_and_random_kills_leave_a_consistent_store() {
    if let Some((role, name)) = role() {
        assert_eq!(role, "worker");
        return worker(&name);
    }
    let secs = soak_secs();
    let seed: u64 = std::env::var("SHMSTORE_SOAK_SEED")
        .ok()
        .map(|s| s.parse().unwrap())
        .unwrap_or(0x50a4);
    let guard = StoreGuard::unique("soak");
    let store = Store::create(guard.name(), CAPACITY).unwrap();
    setup(&store);

    let start = Instant::now();
    let mut rng = Rng(seed);
    let mut totals = Totals::default();
    let mut models: Vec<Model> = (0..W)
        .map(|_| Model {
            keys: vec![None; KEYS],
            ..Model::default()
        })
        .collect();
    let mut incs = [0u64; W];
    let mut plans = [Plan::Run; W];
    let mut workers: Vec<Option<Child>> = Vec::new();
    for (w, plan) in plans.iter_mut().enumerate() {
        *plan = plan_of(totals.incarnations, &mut rng);
        workers.push(Some(spawn_worker(guard.name(), w, 0, *plan)));
        totals.incarnations += 1;
    }

    let (min_in_flight, min_recoveries) = minimums(secs);
    let recoveries = || store.stats().unwrap().recoveries;
    loop {
        let elapsed = start.elapsed().as_secs_f64();
        if elapsed >= secs {
            let met = totals.in_flight >= min_in_flight
                && totals.owner_died >= min_recoveries
                && recoveries() >= min_recoveries;
            if met || elapsed >= secs + PATIENCE.as_secs_f64() {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(1 + rng.below(40)));
        let w = rng.below(W as u64) as usize;
        let mut child = workers[w].take().unwrap();
        let end = match plans[w] {
            Plan::Run => {
                if rng.below(4) != 0 {
                    child.wait_for_line(PATIENCE, |l| l.contains("REPORT state "));
                }
                End::Killed
            }
            plan => End::Planned(plan),
        };
        finish(w, child, end, &mut models[w], &mut totals);
        incs[w] += 1;
        plans[w] = plan_of(totals.incarnations, &mut rng);
        workers[w] = Some(spawn_worker(guard.name(), w, incs[w], plans[w]));
        totals.incarnations += 1;
    }
    let killing = start.elapsed();

    // Stop every worker cleanly (bounded). One still planned to die is
    // first let die, and replaced by one that runs.
    for w in 0..W {
        if plans[w] != Plan::Run {
            let child = workers[w].take().unwrap();
            finish(
                w,
                child,
                End::Planned(plans[w]),
                &mut models[w],
                &mut totals,
            );
            incs[w] += 1;
            plans[w] = Plan::Run;
            workers[w] = Some(spawn_worker(guard.name(), w, incs[w], Plan::Run));
            totals.incarnations += 1;
        }
    }
    let stop = store.get::<AtomicU32>("stop").unwrap();
    stop.store(1, Ordering::Release);
    let children: Vec<Child> = workers.iter_mut().map(|c| c.take().unwrap()).collect();
    let finished = Child::wait_all_success(children);
    for (w, done) in finished.iter().enumerate() {
        apply(w, &mut models[w], &mut totals, &done.stdout, End::Stopped);
    }
    let duration = start.elapsed();
    for (w, m) in models.iter().enumerate() {
        assert!(
            m.pending.is_none(),
            "worker {w}: unresolved in-flight operation"
        );
    }

    // The store is consistent.
    let report = store.check().unwrap();
    println!("check: {report}");
    assert!(report.is_ok(), "check failed:\n{report}");
    // Every killed incarnation's slot was released; only ours is left.
    assert_eq!(report.processes, 1, "{report}");

    // Every key holds exactly what was committed, and its value checks.
    let mut expected: HashMap<String, (usize, usize, u64)> = HashMap::new();
    for (w, m) in models.iter().enumerate() {
        for i in 0..KEYS {
            assert_eq!(read_key(&store, w, i), m.keys[i], "{}", key_name(w, i));
            if let Some(v) = m.keys[i] {
                expected.insert(key_name(w, i), (w, i, v));
            }
        }
    }
    let entries = store.entries().unwrap();
    let mut names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    names.sort_unstable();
    let mut want: Vec<&str> = expected.keys().map(String::as_str).collect();
    want.extend(["ledger", "stop"]);
    want.sort_unstable();
    assert_eq!(names, want, "entries() lists other objects than committed");
    assert_eq!(store.stats().unwrap().objects, want.len() as u64);

    // The ledger adds up.
    {
        let ledger = store.get::<ShmMutex<Ledger>>("ledger").unwrap();
        let (g, died) = lock_ledger(&ledger);
        if let Some(dirty) = died {
            totals.owner_died += 1;
            totals.owner_died_dirty += dirty as u64;
        }
        let counts: Vec<u64> = models.iter().map(|m| m.ledger_count).collect();
        assert_eq!(&g.per_worker[..], &counts[..], "ledger per-worker counts");
        assert_eq!(g.updates, counts.iter().sum::<u64>());
        assert_eq!(g.total, totals.ledger_total, "ledger total");
        assert!(g.updates == 0 || (g.last_writer as usize) < W);
        println!(
            "ledger: {} updates, total {}, per worker {:?}",
            g.updates, g.total, g.per_worker
        );
    }

    // Space: what the remaining objects take is what the same objects take
    // in a fresh store, and removing them gives it all back.
    drop(stop);
    let used_full = store.stats().unwrap().used;
    let sizes: u64 = entries
        .iter()
        .filter(|e| expected.contains_key(&e.name))
        .map(|e| e.size)
        .sum();
    for name in expected.keys() {
        store.remove(name).unwrap();
    }
    let report = store.check().unwrap();
    assert!(report.is_ok(), "check after removing everything:\n{report}");
    let used_empty = store.stats().unwrap().used;

    let ref_guard = StoreGuard::unique("soak-ref");
    let reference = Store::create(ref_guard.name(), CAPACITY).unwrap();
    setup(&reference);
    // Register the key types.
    reference.insert("t-val", val_of(0, 0)).unwrap();
    reference.insert_slice("t-slice", &[0u64]).unwrap();
    reference.remove("t-val").unwrap();
    reference.remove("t-slice").unwrap();
    let ref_lo = reference.stats().unwrap().used;
    // Grow the directory as far as the soak could have: every key live.
    for n in 0..W * KEYS {
        reference.insert(&format!("z{n}"), val_of(0, 0)).unwrap();
    }
    for n in 0..W * KEYS {
        reference.remove(&format!("z{n}")).unwrap();
    }
    let ref_hi = reference.stats().unwrap().used;
    for (name, &(w, i, v)) in &expected {
        if is_slice_key(i) {
            reference
                .insert_slice(name, &slice_of(i, key_id(w, i), v))
                .unwrap();
        } else {
            reference.insert(name, val_of(key_id(w, i), v)).unwrap();
        }
    }
    let ref_full = reference.stats().unwrap().used;
    // The allocator hands out a whole free block when what would be left is
    // smaller than its smallest block, and counts that slack as used: so in
    // a fragmented heap an object may take up to one smallest block more
    // than in a fresh one. Measure the smallest block.
    let before = reference.stats().unwrap().used;
    let tiny = reference.alloc_raw(1).unwrap();
    let min_block = reference.stats().unwrap().used - before;
    // SAFETY: `tiny` was just allocated from this store and nothing refers
    // to it.
    unsafe { reference.free_raw(tiny) }.unwrap();
    let n = expected.len() as u64;
    let (taken, ref_taken) = (used_full - used_empty, ref_full - ref_hi);
    println!(
        "space: soak used {used_full} with {n} objects ({sizes} value bytes), {used_empty} after removing them; \
         fresh store {ref_lo}..{ref_hi} empty, {ref_full} with the same objects; smallest block {min_block}"
    );
    assert!(
        taken >= sizes,
        "{n} objects of {sizes} bytes take {taken} bytes"
    );
    assert!(
        ref_taken <= taken && taken < ref_taken + n * min_block,
        "the remaining {n} objects take {taken} bytes, in a fresh store {ref_taken}"
    );
    assert!(
        ref_lo <= used_empty && used_empty < ref_hi + min_block,
        "after removing every object, {used_empty} bytes are used; a fresh store uses \
         {ref_lo}..={ref_hi}: leak"
    );
    assert_eq!(store.stats().unwrap().objects, 2);

    let header_recoveries = store.stats().unwrap().recoveries;
    println!(
        "soak summary: processes {W}, incarnations {}, operations committed {} ({} changed state, \
         {} ledger updates, {} refused as full), kills {} ({} with an operation in flight), \
         planned deaths {} at a step and {} in a ledger update; of all deaths in flight {} \
         mutating, {} of those took effect; ledger owner-died recoveries {} ({} mid-update), \
         header-lock recoveries {}; killing for {:.1}s (asked {secs}s), {:.1}s in all (seed {seed})",
        totals.incarnations,
        totals.committed,
        totals.mutations,
        totals.ledger_updates,
        totals.full,
        totals.kills,
        totals.in_flight,
        totals.planned_step,
        totals.planned_ledger,
        totals.in_flight_mutating,
        totals.in_flight_happened,
        totals.owner_died,
        totals.owner_died_dirty,
        header_recoveries,
        killing.as_secs_f64(),
        duration.as_secs_f64()
    );

    // Recovery happened, as often as the run's length promises.
    assert!(
        totals.in_flight >= min_in_flight,
        "{} random kills with an operation in flight, fewer than {min_in_flight}",
        totals.in_flight
    );
    assert!(
        totals.owner_died >= min_recoveries,
        "{} owner-died recoveries of the ledger's mutex, fewer than {min_recoveries}",
        totals.owner_died
    );
    assert!(
        header_recoveries >= min_recoveries,
        "{header_recoveries} recoveries of the header lock, fewer than {min_recoveries}"
    );
}
