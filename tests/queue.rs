//! `ShmQueue` across processes, with exact accounting: several producers
//! and consumers, some killed at random, lose and duplicate nothing that a
//! push reported; a crash at every step of a push or a pop does neither.
//!
//! Accounting. A producer pushes `id << 32 | seq` for seq = 0, 1, … and
//! after each `Ok` stores seq + 1 in its log: every value below its log
//! was pushed; the value at its log may have been (killed between the push
//! and the log). A consumer pops with `pop_with`, whose closure writes the
//! value into its log's next entry *before* the slot is given back, then
//! counts the entry once `pop_with` returned. Entries below the count were
//! popped by it. The entry at the count ("tentative") of a killed consumer
//! was either popped by it (killed after the slot was given back, before
//! counting) or put back into the queue (killed before): it counts as its
//! pop exactly when the value turns up nowhere else — in no other log and
//! not left in the queue. So every value has exactly one place, and the
//! test checks that each one has.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use shmstore::{Handle, ShmEvent, ShmQueue, SliceHandle, Store};
use shmstore_tests::{
    role, role_arg, spawn_role_with_arg, wait_until, Child, Finished, StoreGuard, PATIENCE,
};

#[path = "sync_support.rs"]
mod support;
use support::{ended, no_core_dumps, within, Ended, Rng, WATCHDOG};

/// Small, so that producers wait for room and go round the ring often.
type Q = ShmQueue<u64, 8>;

/// An unwritten log entry.
const UNSET: u64 = u64::MAX;
/// Entries in a consumer's log: more than all producers may push in a run
/// (see [`BUDGET_FIRST`]), so that no log can fill up however the scheduler
/// shares the CPUs out.
const LOG_CAP: usize = 65_536;
/// Values the producers may push before the first kill, and more after
/// each: the run pushes at most `BUDGET_FIRST + KILLS * BUDGET_STEP`
/// values, well below [`LOG_CAP`], and each step is more than the progress
/// the parent waits for between kills.
const BUDGET_FIRST: u64 = 3_000;
const BUDGET_STEP: u64 = 1_500;
const KILLS: usize = 12;
const _: () = assert!(BUDGET_FIRST + KILLS as u64 * BUDGET_STEP < LOG_CAP as u64);

fn value(id: u64, seq: u64) -> u64 {
    id << 32 | seq
}

struct Shared {
    _store: Store,
    q: Handle<Q>,
    /// Moves when producers are to stop.
    stop: Handle<ShmEvent>,
    /// Moves when consumers are to stop once the queue is empty.
    done: Handle<ShmEvent>,
}

fn open(name: &str) -> Shared {
    let store = Store::open(name).unwrap();
    Shared {
        q: store.get::<Q>("queue").unwrap(),
        stop: store.get::<ShmEvent>("stop").unwrap(),
        done: store.get::<ShmEvent>("done").unwrap(),
        _store: store,
    }
}

fn producer_log(store: &Store, id: u64) -> Handle<AtomicU64> {
    store
        .get_or_insert_with(&format!("plog{id}"), || AtomicU64::new(0))
        .unwrap()
}

/// `[count, entry 0, entry 1, …]`.
fn consumer_log(store: &Store, id: u64) -> SliceHandle<AtomicU64> {
    store
        .get_or_insert_slice_with(&format!("clog{id}"), || {
            (0..=LOG_CAP).map(|i| AtomicU64::new(if i == 0 { 0 } else { UNSET }))
        })
        .unwrap()
}

/// Child part: pushes values as producer `id` until the `stop` event
/// moves, each under a ticket of the shared budget (waiting for the
/// parent to raise it when it runs out).
fn produce(name: &str, id: u64) {
    let s = open(name);
    let store = Store::open(name).unwrap();
    let log = producer_log(&store, id);
    let budget = store.get::<AtomicU64>("budget").unwrap();
    let issued = store.get::<AtomicU64>("issued").unwrap();
    let more = store.get::<ShmEvent>("more").unwrap();
    let mut seq = 0;
    while s.stop.generation() == 0 {
        let seen = more.generation();
        if issued.fetch_add(1, Ordering::AcqRel) >= budget.load(Ordering::Acquire) {
            issued.fetch_sub(1, Ordering::AcqRel);
            more.wait_for_change(seen, Duration::from_millis(100))
                .unwrap();
            continue;
        }
        s.q.push(value(id, seq)).unwrap();
        seq += 1;
        log.store(seq, Ordering::Release);
    }
}

/// Child part: pops as consumer `id` until the `done` event has moved and
/// the queue stays empty for a while.
fn consume(name: &str, id: u64) {
    let s = open(name);
    let store = Store::open(name).unwrap();
    let log = consumer_log(&store, id);
    let mut n = log[0].load(Ordering::Acquire) as usize;
    loop {
        assert!(n < LOG_CAP, "consumer {id}'s log is full");
        let got =
            s.q.try_pop_with_for(Duration::from_millis(100), |v| {
                log[n + 1].store(*v, Ordering::Release)
            })
            .unwrap();
        match got {
            Some(_) => {
                n += 1;
                log[0].store(n as u64, Ordering::Release);
            }
            None if s.done.generation() > 0 => return,
            None => {}
        }
    }
}

fn child(name: &str) {
    let arg = role_arg();
    let mut words = arg.split(':');
    let kind = words.next().unwrap();
    let id: u64 = words.next().unwrap().parse().unwrap();
    match kind {
        "producer" => produce(name, id),
        "consumer" => consume(name, id),
        other => panic!("{other}"),
    }
}

struct Worker {
    child: Child,
    producer: bool,
    id: u64,
}

#[test]
fn producers_and_consumers_killed_at_random_lose_and_duplicate_nothing() {
    const TEST: &str = "producers_and_consumers_killed_at_random_lose_and_duplicate_nothing";
    if let Some((_, name)) = role() {
        return child(&name);
    }
    let guard = StoreGuard::unique("queue-kills");
    let store = Store::create(guard.name(), 64 << 20).unwrap();
    let q = store.get_or_insert_with("queue", Q::new).unwrap();
    let stop = store.get_or_insert_with("stop", ShmEvent::new).unwrap();
    let done = store.get_or_insert_with("done", ShmEvent::new).unwrap();
    let budget = store
        .get_or_insert_with("budget", || AtomicU64::new(BUDGET_FIRST))
        .unwrap();
    store
        .get_or_insert_with("issued", || AtomicU64::new(0))
        .unwrap();
    let more = store.get_or_insert_with("more", ShmEvent::new).unwrap();
    let mut rng = Rng::from_env_or_clock(TEST);

    let mut next_id = 0u64;
    let mut spawn = |producer: bool| {
        let id = next_id;
        next_id += 1;
        let arg = if producer {
            producer_log(&store, id);
            format!("producer:{id}")
        } else {
            consumer_log(&store, id);
            format!("consumer:{id}")
        };
        Worker {
            child: spawn_role_with_arg(TEST, "worker", guard.name(), &arg),
            producer,
            id,
        }
    };
    let mut live: Vec<Worker> = Vec::new();
    for i in 0..6 {
        live.push(spawn(i % 2 == 0));
    }
    let mut producers = Vec::new();
    let mut consumers = Vec::new();
    // (id, killed) of every producer and consumer, and the outputs.
    let mut outputs: Vec<Finished> = Vec::new();
    let progress = |store: &Store, ids: u64| -> u64 {
        (0..ids)
            .map(|id| {
                let p = store
                    .get::<AtomicU64>(&format!("plog{id}"))
                    .map(|h| h.load(Ordering::Relaxed));
                let c = store
                    .get_slice::<AtomicU64>(&format!("clog{id}"))
                    .map(|h| h[0].load(Ordering::Relaxed));
                p.or(c).unwrap_or(0)
            })
            .sum()
    };
    for _ in 0..KILLS {
        let ids = live.iter().map(|w| w.id).max().unwrap() + 1;
        let target = progress(&store, ids) + 100 + rng.below(1000);
        budget.fetch_add(BUDGET_STEP, Ordering::AcqRel);
        more.notify();
        wait_until("the workers make progress", PATIENCE, || {
            progress(&store, ids) >= target
        });
        let i = rng.below(live.len() as u64) as usize;
        let mut victim = live.swap_remove(i);
        victim.child.kill9();
        let out = victim.child.wait();
        if victim.producer {
            producers.push((victim.id, true));
        } else {
            consumers.push((victim.id, true));
        }
        outputs.push(out);
        live.push(spawn(victim.producer));
    }
    // Stop the producers, then tell the consumers to drain and stop.
    stop.notify();
    let (p, c): (Vec<Worker>, Vec<Worker>) = live.into_iter().partition(|w| w.producer);
    for w in p {
        producers.push((w.id, false));
        outputs.push(w.child.wait_success());
    }
    done.notify();
    for w in &c {
        consumers.push((w.id, false));
    }
    outputs.extend(Child::wait_all_success(
        c.into_iter().map(|w| w.child).collect(),
    ));
    let leftover = within("draining the queue", WATCHDOG, move || {
        let mut left = Vec::new();
        while let Some(v) = q.try_pop_for(Duration::from_millis(500)).unwrap() {
            left.push(v);
        }
        left
    });

    // Where each value went.
    let mut place: HashMap<u64, String> = HashMap::new();
    let mut put = |v: u64, at: String| {
        if let Some(before) = place.insert(v, at.clone()) {
            panic!("value {v:#x} is in two places: {before} and {at}");
        }
    };
    for &v in &leftover {
        put(v, "the queue".into());
    }
    let mut tentative = Vec::new();
    for &(id, killed) in &consumers {
        let log = consumer_log(&store, id);
        let n = log[0].load(Ordering::Acquire) as usize;
        for i in 0..n {
            put(
                log[i + 1].load(Ordering::Acquire),
                format!("consumer {id}'s log"),
            );
        }
        let t = log[n + 1].load(Ordering::Acquire);
        if t != UNSET {
            assert!(
                killed,
                "consumer {id} finished with a tentative entry {t:#x}"
            );
            tentative.push((id, t));
        }
    }
    let (mut popped_by_the_dead, mut put_back) = (0, 0);
    for (id, t) in tentative {
        match place.entry(t) {
            std::collections::hash_map::Entry::Occupied(_) => put_back += 1,
            std::collections::hash_map::Entry::Vacant(e) => {
                popped_by_the_dead += 1;
                e.insert(format!("killed consumer {id} (popped, not counted)"));
            }
        }
    }
    let mut in_flight = 0;
    for &(id, killed) in &producers {
        let logged = producer_log(&store, id).load(Ordering::Acquire);
        for seq in 0..logged {
            assert!(
                place.remove(&value(id, seq)).is_some(),
                "producer {id}'s value {seq} (pushed: its log is {logged}) is nowhere"
            );
        }
        if killed && place.remove(&value(id, logged)).is_some() {
            in_flight += 1;
        }
    }
    assert!(
        place.is_empty(),
        "values no push reported: {:?}",
        place.iter().take(5).collect::<Vec<_>>()
    );
    let total: u64 = producers
        .iter()
        .map(|&(id, _)| producer_log(&store, id).load(Ordering::Acquire))
        .sum();
    eprintln!(
        "{} producers, {} consumers ({} kills); {total} values pushed and accounted for, \
         {in_flight} more in flight when their producer died, {} left in the queue; killed \
         consumers' uncounted entries: {popped_by_the_dead} popped by them, {put_back} put back",
        producers.len(),
        consumers.len(),
        producers.iter().chain(&consumers).filter(|w| w.1).count(),
        leftover.len()
    );
    drop(outputs);
}

/// Child part of the crash-point test: a push of `value`, or a pop into
/// the log `clog0`, with the crash armed at step `k`.
fn push_or_pop_with_crash(name: &str) {
    no_core_dumps();
    let s = open(name);
    let store = Store::open(name).unwrap();
    let log = consumer_log(&store, 0);
    let arg = role_arg();
    let (kind, k) = arg.split_once(':').unwrap();
    let k: u64 = k.parse().unwrap();
    shmstore::crash_after_steps(k);
    match kind {
        "push" => s.q.push(1000 + k).unwrap(),
        "pop" => {
            s.q.pop_with(|v| log[1].store(*v, Ordering::Release))
                .unwrap();
            shmstore::crash_after_steps(0);
            log[0].store(1, Ordering::Release);
        }
        other => panic!("{other}"),
    }
    shmstore::crash_after_steps(0);
}

#[test]
fn a_crash_at_every_step_of_a_push_or_a_pop_loses_and_duplicates_nothing() {
    const TEST: &str = "a_crash_at_every_step_of_a_push_or_a_pop_loses_and_duplicates_nothing";
    if let Some((_, name)) = role() {
        return push_or_pop_with_crash(&name);
    }
    let guard = StoreGuard::unique("queue-crash-points");
    let store = Store::create(guard.name(), 1 << 20).unwrap();
    let q = store.get_or_insert_with("queue", Q::new).unwrap();
    store.get_or_insert_with("stop", ShmEvent::new).unwrap();
    store.get_or_insert_with("done", ShmEvent::new).unwrap();
    let log = consumer_log(&store, 0);
    let drain = |q: &Q| {
        let mut left = Vec::new();
        while let Some(v) = q.try_pop_for(Duration::from_millis(300)).unwrap() {
            left.push(v);
        }
        left
    };
    for kind in ["push", "pop"] {
        let mut steps = None;
        for k in 1..30u64 {
            log[0].store(0, Ordering::Release);
            log[1].store(UNSET, Ordering::Release);
            let v = 1000 + k;
            if kind == "pop" {
                q.push(v).unwrap();
            }
            let arg = format!("{kind}:{k}");
            let outcome = ended(&spawn_role_with_arg(TEST, "child", guard.name(), &arg).wait());
            let left = drain(&q);
            let counted = log[0].load(Ordering::Acquire);
            let tentative = log[1].load(Ordering::Acquire);
            match (kind, outcome) {
                ("push", Ended::Finished) => assert_eq!(left, [v], "{arg}"),
                ("push", Ended::Crashed) => {
                    assert!(left.is_empty() || left == [v], "{arg}: {left:?}")
                }
                ("pop", Ended::Finished) => {
                    assert!(left.is_empty(), "{arg}");
                    assert_eq!((counted, tentative), (1, v), "{arg}");
                }
                _ => {
                    assert_eq!(counted, 0, "{arg}");
                    // Back in the queue, or popped by the dead child after
                    // it gave the slot back: one or the other.
                    let back = left == [v];
                    let taken = left.is_empty() && tentative == v;
                    assert!(
                        back || taken,
                        "{arg}: left {left:?}, tentative {tentative:#x}"
                    );
                }
            }
            // And the queue goes on working.
            q.push(7).unwrap();
            assert_eq!(q.try_pop().unwrap(), Some(7), "{arg}");
            if outcome == Ended::Finished {
                steps = Some(k - 1);
                break;
            }
        }
        let steps = steps.expect("the child never finished");
        eprintln!("{kind}: {steps} crash points");
        assert!(steps >= 3, "{kind}: only {steps} crash points");
    }
}
