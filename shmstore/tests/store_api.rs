//! In-process tests of the store's public API: pins and removal, the large
//! copy path, entries/stats/check, alignment, slices of mutexes, threads.

mod common;
use common::Temp;
use std::io::{Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use shmstore::{Error, ShmMutex, ShmSafe, Store};

#[derive(ShmSafe, Debug, PartialEq, Clone, Copy)]
#[repr(C)]
struct Sample {
    id: u32,
    ok: bool,
    value: f64,
}

#[derive(ShmSafe)]
#[repr(C, align(64))]
struct CacheLine {
    words: [u64; 8],
}

#[test]
fn a_removed_object_stays_readable_through_its_handle_until_dropped() {
    let t = Temp::with_capacity("pin", 1 << 20);
    let s = &t.store;
    let fill = |on: bool| {
        for i in 0..200 {
            let name = format!("filler{i}");
            if on {
                s.insert_slice(&name, &[0xffu64; 64]).unwrap();
            } else {
                s.remove(&name).unwrap();
            }
        }
    };
    // Once first, so that the type registry, the directory and this
    // process's pin table have grown.
    fill(true);
    drop(s.get_slice::<u64>("filler0").unwrap());
    fill(false);
    let used_before = s.stats().unwrap().used;
    s.insert_slice("data", &[7u64; 512]).unwrap();
    let held = s.get_slice::<u64>("data").unwrap();
    s.remove("data").unwrap();
    assert!(!s.contains("data").unwrap());
    assert!(matches!(
        s.get_slice::<u64>("data"),
        Err(Error::NotFound { .. })
    ));
    // Fill the arena with other objects: none may land on the pinned slice.
    fill(true);
    assert!(held.iter().all(|&v| v == 7));
    fill(false);
    drop(held);
    assert_eq!(
        s.stats().unwrap().used,
        used_before,
        "space reclaimed after the last handle"
    );
    assert!(s.check().unwrap().is_ok());
}

#[test]
fn get_or_insert_with_returns_the_existing_value_without_running_init() {
    let t = Temp::with_capacity("goiw", 1 << 20);
    let s = &t.store;
    let first = s.get_or_insert_with("n", || AtomicU64::new(41)).unwrap();
    first.fetch_add(1, Ordering::SeqCst);
    let second = s
        .get_or_insert_with("n", || -> AtomicU64 {
            panic!("init must not run for an existing object")
        })
        .unwrap();
    assert_eq!(second.load(Ordering::SeqCst), 42);
    let err = s.get_or_insert_with("n", || 0u32).unwrap_err();
    assert!(matches!(err, Error::TypeMismatch { .. }), "{err}");
}

#[test]
fn large_slices_round_trip_and_a_taken_name_leaks_nothing() {
    let t = Temp::with_capacity("large", 16 << 20);
    let s = &t.store;
    let items: Vec<u32> = (0..1_000_000).collect();
    s.insert_slice("big", &items).unwrap();
    let used = s.stats().unwrap().used;
    let err = s.insert_slice("big", &items).unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
    assert_eq!(s.stats().unwrap().used, used);
    let got = s.get_slice::<u32>("big").unwrap();
    assert_eq!(&got[..], &items[..]);
}

#[test]
fn entries_stats_and_check_describe_the_store() {
    let t = Temp::with_capacity("entries", 1 << 20);
    let s = &t.store;
    s.insert(
        "one",
        Sample {
            id: 1,
            ok: true,
            value: 1.5,
        },
    )
    .unwrap();
    s.insert_slice("many", &[1u16, 2, 3]).unwrap();
    let mut entries = s.entries().unwrap();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].name, "many");
    assert_eq!(entries[0].type_name, "u16");
    assert_eq!((entries[0].size, entries[0].len), (6, Some(3)));
    assert_eq!(entries[1].name, "one");
    assert_eq!(entries[1].type_name, "Sample");
    assert_eq!(entries[1].fingerprint, Sample::FINGERPRINT);
    assert_eq!(entries[1].len, None);
    let stats = s.stats().unwrap();
    assert_eq!(stats.objects, 2);
    assert_eq!(stats.capacity, 1 << 20);
    assert!(stats.committed <= stats.capacity && stats.used > 0);
    assert_eq!(stats.free + stats.used + 4096, stats.capacity);
    let report = s.check().unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!((report.objects, report.types), (2, 2));
    assert_eq!(
        *s.get::<Sample>("one").unwrap(),
        Sample {
            id: 1,
            ok: true,
            value: 1.5
        }
    );
}

#[test]
fn values_are_aligned_for_their_type() {
    let t = Temp::with_capacity("align", 1 << 20);
    let s = &t.store;
    for i in 0..10 {
        let name = "x".repeat(i + 1);
        s.insert(
            &name,
            CacheLine {
                words: [i as u64; 8],
            },
        )
        .unwrap();
        let h = s.get::<CacheLine>(&name).unwrap();
        assert_eq!(&*h as *const CacheLine as usize % 64, 0);
        assert_eq!(h.words[7], i as u64);
    }
}

#[test]
fn a_slice_of_mutexes_gets_working_locks() {
    let t = Temp::with_capacity("mutexes", 1 << 20);
    let s = &t.store;
    s.insert_slice_from_iter("locks", (0..16u64).map(ShmMutex::new))
        .unwrap();
    let locks = s.get_slice::<ShmMutex<u64>>("locks").unwrap();
    for (i, m) in locks.iter().enumerate() {
        let mut g = m.lock().unwrap();
        assert_eq!(*g, i as u64);
        *g += 100;
    }
    assert_eq!(*locks[3].lock().unwrap(), 103);
}

#[test]
fn relocking_a_held_mutex_on_the_same_thread_is_an_error_not_a_hang() {
    let t = Temp::with_capacity("relock", 1 << 20);
    let m = t
        .store
        .get_or_insert_with("m", || ShmMutex::new(1u8))
        .unwrap();
    let _held = m.lock().unwrap();
    let outcome = match m.lock() {
        Err(Error::InvalidArgument { .. }) => "refused",
        Err(Error::OwnerDied { .. }) => "owner died",
        Err(_) => "other error",
        Ok(_) => "second guard",
    };
    assert_eq!(outcome, "refused");
}

#[test]
fn threads_share_a_store_and_its_handles() {
    let t = Temp::with_capacity("threads", 4 << 20);
    let s = t.store.clone();
    let counter = Arc::new(s.get_or_insert_with("c", || AtomicU64::new(0)).unwrap());
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let s = s.clone();
            let counter = Arc::clone(&counter);
            std::thread::spawn(move || {
                for i in 0..500 {
                    s.insert(&format!("t{w}-{i}"), i as u64).unwrap();
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(counter.load(Ordering::Relaxed), 2000);
    assert_eq!(s.stats().unwrap().objects, 2001);
    assert_eq!(*s.get::<u64>("t3-499").unwrap(), 499);
    assert!(s.check().unwrap().is_ok());
}

#[test]
fn invalid_bytes_in_a_stored_value_are_reported_not_read() {
    let t = Temp::with_capacity("bits", 1 << 20);
    let s = &t.store;
    s.insert("flag", true).unwrap();
    // Corrupt the bool from outside, as a foreign writer would.
    let path = format!("/dev/shm{}", s.name());
    let off = value_offset(&std::fs::read(&path).unwrap(), "flag");
    let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.seek(SeekFrom::Start(off as u64)).unwrap();
    f.write_all(&[7]).unwrap();
    let err = s.get::<bool>("flag").unwrap_err();
    assert!(matches!(err, Error::Corrupted { .. }), "{err}");
    assert!(err.to_string().contains("bool"), "{err}");
    // The refused get left no pin behind: removing the object frees it.
    let used = s.stats().unwrap().used;
    s.remove("flag").unwrap();
    assert!(s.stats().unwrap().used < used, "the refused get kept a pin");
}

/// The offset of the 1-byte value stored under `name`: a record holds the
/// name and then the value at the next 8-byte boundary (see the record
/// layout in `arena/dir.rs`).
fn value_offset(bytes: &[u8], name: &str) -> usize {
    let pos = bytes
        .windows(name.len())
        .rposition(|w| w == name.as_bytes())
        .expect("name in segment");
    (pos + name.len()).next_multiple_of(8)
}

#[test]
fn stores_and_handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<Store>();
    send_sync::<shmstore::Handle<AtomicU64>>();
    send_sync::<shmstore::Handle<ShmMutex<u64>>>();
    send_sync::<shmstore::SliceHandle<f32>>();
    // A handle outlives the store value it came from.
    let t = Temp::with_capacity("outlive", 1 << 20);
    let store = Store::open(t.store.name()).unwrap();
    store.insert("v", 5u32).unwrap();
    let h = store.get::<u32>("v").unwrap();
    drop(store);
    assert_eq!(*h, 5);
}

#[test]
fn space_freed_in_small_objects_is_reused_for_a_large_one() {
    let t = Temp::with_capacity("consolidate", 256 << 10);
    let s = &t.store;
    let mut n = 0u64;
    while s.insert(&format!("small{n}"), [n; 4]).is_ok() {
        n += 1;
    }
    assert!(n > 1000, "only {n} small objects fit");
    for i in 0..n {
        s.remove(&format!("small{i}")).unwrap();
    }
    // Every small block is parked on a fast list; the large slice needs
    // them merged, which happens in committed steps before a retry.
    let big = vec![7u8; 128 << 10];
    s.insert_slice("big", &big).unwrap();
    assert_eq!(&s.get_slice::<u8>("big").unwrap()[..], &big[..]);
    let report = s.check().unwrap();
    assert!(report.is_ok(), "{report}");
}

/// Typed offsets whose only use of their parameter is a `PhantomData`.
#[derive(ShmSafe)]
#[repr(C)]
struct Rel<T> {
    offset: u64,
    _to: std::marker::PhantomData<T>,
}

#[derive(ShmSafe)]
#[repr(C)]
struct Apple {
    weight: u32,
}

#[derive(ShmSafe)]
#[repr(C)]
struct Bomb {
    fuse: u32,
}

// Regression (review item 9): `PhantomData<T>` had one layout for every
// `T`, so `Rel<Apple>` and `Rel<Bomb>` fingerprinted the same and a stored
// `Rel<Apple>` was handed out as a `Rel<Bomb>`.
#[test]
fn phantom_typed_wrappers_of_different_types_are_different_types() {
    assert_ne!(<Rel<Apple>>::FINGERPRINT, <Rel<Bomb>>::FINGERPRINT);
    let t = Temp::with_capacity("phantom", 1 << 20);
    let s = &t.store;
    s.insert(
        "to-apple",
        Rel::<Apple> {
            offset: 4096,
            _to: std::marker::PhantomData,
        },
    )
    .unwrap();
    match s.get::<Rel<Bomb>>("to-apple") {
        Err(Error::TypeMismatch {
            expected, found, ..
        }) => {
            assert!(expected.contains("PhantomData<Bomb>"), "{expected}");
            assert!(found.contains("PhantomData<Apple>"), "{found}");
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a Rel<Apple> was read as a Rel<Bomb>"),
    }
    assert_eq!(s.get::<Rel<Apple>>("to-apple").unwrap().offset, 4096);
}

#[derive(ShmSafe)]
#[repr(C)]
struct Account {
    id: u64,
    balance: ShmMutex<i64>,
    history: [ShmMutex<u32>; 2],
}

// Review item 8: a guard of a mutex around a type holding locks gives
// `&T` only (assigning through it is a compile error, see the UI tests
// `api/guard_*_nested_mutex`); the nested locks work through it, and stay
// process-shared and robust.
#[test]
fn nested_mutexes_are_used_through_the_outer_guard() {
    let t = Temp::with_capacity("nested", 1 << 20);
    let s = &t.store;
    let outer = s
        .get_or_insert_with("account", || {
            ShmMutex::new(Account {
                id: 7,
                balance: ShmMutex::new(100),
                history: [ShmMutex::new(0), ShmMutex::new(0)],
            })
        })
        .unwrap();
    {
        let acct = outer.lock().unwrap();
        *acct.balance.lock().unwrap() -= 30;
        *acct.history[1].lock().unwrap() += 1;
        assert_eq!(acct.id, 7);
    }
    // A holder of the nested lock that dies is reported to the next one.
    std::thread::scope(|sc| {
        sc.spawn(|| {
            let acct = outer.lock().unwrap();
            std::mem::forget(acct.balance.lock().unwrap());
        })
        .join()
        .unwrap();
    });
    let acct = outer.lock().unwrap();
    assert!(matches!(acct.balance.lock(), Err(Error::OwnerDied { .. })));
    let mut b = acct.balance.lock_recover().unwrap();
    assert_eq!(*b, 70);
    b.mark_consistent();
    drop(b);
    assert_eq!(*acct.history[1].lock().unwrap(), 1);
}

#[test]
fn replace_publishes_a_new_value_while_old_handles_keep_theirs() {
    let t = Temp::with_capacity("replace", 1 << 20);
    let s = &t.store;
    assert!(matches!(
        s.replace("absent", 1u64),
        Err(Error::NotFound { .. })
    ));
    s.insert("v", 1u64).unwrap();
    let objects = s.stats().unwrap().objects;
    let old = s.get::<u64>("v").unwrap();
    s.replace("v", 2u64).unwrap();
    assert_eq!(*old, 1);
    assert_eq!(*s.get::<u64>("v").unwrap(), 2);
    // Another type under the same name.
    s.replace("v", [7u8; 3]).unwrap();
    assert_eq!(*s.get::<[u8; 3]>("v").unwrap(), [7; 3]);
    assert!(matches!(s.get::<u64>("v"), Err(Error::TypeMismatch { .. })));
    assert_eq!(s.stats().unwrap().objects, objects);
    let pinned = s.stats().unwrap().used;
    drop(old);
    assert!(
        s.stats().unwrap().used < pinned,
        "the old value is freed at its last unpin"
    );
    // Slices, small and large (copied outside the lock).
    s.insert_slice("xs", &[1u32, 2]).unwrap();
    s.replace_slice("xs", &[3u32, 4, 5]).unwrap();
    assert_eq!(&s.get_slice::<u32>("xs").unwrap()[..], &[3, 4, 5]);
    let big: Vec<u64> = (0..20_000).collect();
    s.replace_slice("xs", &big).unwrap();
    assert_eq!(s.get_slice::<u64>("xs").unwrap().len(), 20_000);
    assert!(s.check().unwrap().is_ok());
}

#[test]
fn get_or_insert_slice_with_inserts_once() {
    let t = Temp::with_capacity("slice-with", 1 << 20);
    let s = &t.store;
    let a = s
        .get_or_insert_slice_with("counters", || (0..4).map(|_| AtomicU64::new(0)))
        .unwrap();
    a[2].fetch_add(5, Ordering::Relaxed);
    let b = s
        .get_or_insert_slice_with("counters", || -> Vec<AtomicU64> { panic!("not called") })
        .unwrap();
    assert_eq!(b[2].load(Ordering::Relaxed), 5);
    assert!(matches!(
        s.get_or_insert_slice_with("counters", || vec![0u8; 4]),
        Err(Error::TypeMismatch { .. })
    ));
}
