//! Processes racing to create the same object, or the same store, agree on
//! one winner.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};

use shmstore::{ShmSafe, Store};
use shmstore_tests::{
    barrier, report, role, role_arg, spawn_role, spawn_role_with_arg, Child, StoreGuard,
};

const PROCESSES: u32 = 4;
const ROUNDS: u32 = 40;

/// What an initialiser stores: who made it, for which round.
#[derive(ShmSafe, Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
struct Claim {
    pid: u32,
    round: u32,
    token: u64,
}

fn claim(round: u32) -> Claim {
    let pid = std::process::id();
    Claim {
        pid,
        round,
        token: (pid as u64) << 32 | round as u64,
    }
}

#[test]
fn racing_get_or_insert_with_publishes_exactly_one_value_seen_by_all() {
    const TEST: &str = "racing_get_or_insert_with_publishes_exactly_one_value_seen_by_all";
    if let Some((_, name)) = role() {
        let store = Store::open(&name).unwrap();
        let inits = store.get::<AtomicU32>("inits").unwrap();
        for round in 0..ROUNDS {
            // Everyone starts each round together.
            barrier(&store, &format!("start-{round}"), PROCESSES);
            let seen = store
                .get_or_insert_with(&format!("claim-{round}"), || {
                    inits.fetch_add(1, Ordering::Relaxed);
                    claim(round)
                })
                .unwrap();
            assert_eq!(seen.round, round);
            assert_eq!(seen.token, (seen.pid as u64) << 32 | round as u64);
            report("saw", format!("{round} {}", seen.token));
        }
        report("mine", std::process::id());
        return;
    }

    let guard = StoreGuard::unique("goi-race");
    let store = Store::create(guard.name(), 1 << 20).unwrap();
    store.insert("inits", AtomicU32::new(0)).unwrap();
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| spawn_role(TEST, "racer", guard.name()))
        .collect();
    let results = Child::wait_all_success(children);
    let pids: BTreeSet<u64> = results
        .iter()
        .map(|r| r.report("mine").parse().unwrap())
        .collect();
    assert_eq!(pids.len(), PROCESSES as usize);

    let mut winners = BTreeSet::new();
    for round in 0..ROUNDS {
        let seen: BTreeSet<u64> = results
            .iter()
            .map(|r| {
                let all = r.reports("saw");
                let line = &all[round as usize];
                let (r, token) = line.split_once(' ').unwrap();
                assert_eq!(r, round.to_string());
                token.parse().unwrap()
            })
            .collect();
        // Every process saw the same value...
        assert_eq!(
            seen.len(),
            1,
            "round {round}: processes saw different values {seen:?}"
        );
        let token = *seen.iter().next().unwrap();
        // ...made by exactly one of them, and it is what the store holds.
        assert!(
            pids.contains(&(token >> 32)),
            "round {round}: {token:#x} is nobody's"
        );
        let stored = store.get::<Claim>(&format!("claim-{round}")).unwrap();
        assert_eq!(stored.token, token);
        winners.insert(token >> 32);
    }
    let inits = store
        .get::<AtomicU32>("inits")
        .unwrap()
        .load(Ordering::SeqCst);
    assert!(
        (ROUNDS..=ROUNDS * PROCESSES).contains(&inits),
        "{inits} initialisers ran"
    );
    println!(
        "{} distinct winners over {ROUNDS} rounds, {inits} initialisers ran",
        winners.len()
    );

    let stats = store.stats().unwrap();
    // inits + ROUNDS claims + ROUNDS barrier counters.
    assert_eq!(stats.objects, 1 + 2 * ROUNDS as u64);
    let check = store.check().unwrap();
    assert!(check.is_ok(), "{check}");
}

#[test]
fn racing_open_or_create_yields_one_initialised_store() {
    const TEST: &str = "racing_open_or_create_yields_one_initialised_store";
    const STORES: u32 = 6;
    if let Some((_, control)) = role() {
        let me: u32 = role_arg().parse().unwrap();
        let control = Store::open(&control).unwrap();
        let base = control.get::<[u8; 64]>("base").unwrap();
        let base = std::str::from_utf8(&base[..])
            .unwrap()
            .trim_end_matches('\0')
            .to_string();
        for round in 0..STORES {
            barrier(&control, &format!("start-{round}"), PROCESSES);
            let store = Store::open_or_create(&format!("{base}-{round}"), 1 << 20).unwrap();
            store
                .get_or_insert_with("attached", || AtomicU32::new(0))
                .unwrap()
                .fetch_add(1, Ordering::AcqRel);
            store
                .insert(&format!("process-{me}"), std::process::id())
                .unwrap();
        }
        return;
    }

    let control_guard = StoreGuard::unique("ooc-control");
    let base = shmstore_tests::unique_name("ooc");
    let guards: Vec<_> = (0..STORES)
        .map(|r| StoreGuard::new(format!("{base}-{r}")))
        .collect();
    let control = Store::create(control_guard.name(), 1 << 20).unwrap();
    let mut base_bytes = [0u8; 64];
    base_bytes[..base.len()].copy_from_slice(base.as_bytes());
    control.insert("base", base_bytes).unwrap();

    let children: Vec<_> = (0..PROCESSES)
        .map(|i| spawn_role_with_arg(TEST, "opener", control_guard.name(), &i.to_string()))
        .collect();
    let results = Child::wait_all_success(children);
    assert_eq!(results.len(), PROCESSES as usize);

    for guard in &guards {
        let store = Store::open(guard.name()).unwrap();
        let attached = store.get::<AtomicU32>("attached").unwrap();
        assert_eq!(
            attached.load(Ordering::SeqCst),
            PROCESSES,
            "{}",
            guard.name()
        );
        for i in 0..PROCESSES {
            assert!(
                store.contains(&format!("process-{i}")).unwrap(),
                "{}: process-{i} missing",
                guard.name()
            );
        }
        assert_eq!(store.stats().unwrap().objects, 1 + PROCESSES as u64);
        let check = store.check().unwrap();
        assert!(check.is_ok(), "{}: {check}", guard.name());
    }
}
