use super::*;
use crate::{FixedString, FixedVec, RelPtr, ShmMap, ShmMutex, ShmString, ShmVec, Store};

/// A unique store name, unlinked when dropped (even if the test fails).
struct Name(String);

impl Name {
    fn new(tag: &str) -> Name {
        use core::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Name(format!("shmstore-ut-{}-{tag}-{n}", std::process::id()))
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = Store::unlink(&self.0);
    }
}

fn segment_bytes(name: &str) -> Vec<u8> {
    std::fs::read(format!("/dev/shm/{name}")).expect("the segment's bytes")
}

#[derive(crate::ShmSafe, Clone, Copy, PartialEq, Eq, Debug)]
#[shm(crate = "crate")]
#[repr(u8)]
enum Mode {
    Off = 0,
    Fast = 2,
}

#[derive(crate::ShmSafe)]
#[shm(crate = "crate")]
#[repr(C)]
struct Point(i16, f32);

#[derive(crate::ShmSafe)]
#[shm(crate = "crate")]
#[repr(C)]
struct Node {
    value: u32,
    next: RelPtr<Node>,
}

#[derive(crate::ShmSafe)]
#[shm(crate = "crate")]
#[repr(C)]
struct Config {
    name: ShmString,
    samples: ShmVec<u32>,
    labels: ShmMap<u32, ShmString>,
    mode: Mode,
    on: bool,
    letter: char,
    at: Point,
    small: [u16; 3],
    tag: FixedString<8>,
    few: FixedVec<u8, 4>,
    list: RelPtr<Node>,
    counter: ShmMutex<u64>,
}

fn config(store: &Store) -> Config {
    let mut labels = ShmMap::new_in(store);
    labels
        .insert(&7, ShmString::from_str_in(store, "seven").unwrap())
        .unwrap();
    let mut few = FixedVec::new();
    few.push(9).unwrap();
    let tail = RelPtr::new_in(
        store,
        Node {
            value: 2,
            next: RelPtr::null(),
        },
    )
    .unwrap();
    Config {
        name: ShmString::from_str_in(store, "boiler \"A\"").unwrap(),
        samples: ShmVec::from_slice_in(store, &[1, 2, 3]).unwrap(),
        labels,
        mode: Mode::Fast,
        on: true,
        letter: 'é',
        at: Point(-3, 1.5),
        small: [4, 5, 6],
        tag: FixedString::from_str("hot").unwrap(),
        few,
        list: RelPtr::new_in(
            store,
            Node {
                value: 1,
                next: tail,
            },
        )
        .unwrap(),
        counter: ShmMutex::new(41),
    }
}

const CONFIG: &str = "Config { name: \"boiler \\\"A\\\"\", samples: [1, 2, 3], \
    labels: {7: \"seven\"}, mode: Fast, on: true, letter: 'é', at: Point(-3, 1.5), \
    small: [4, 5, 6], tag: \"hot\", few: [9], \
    list: &Node { value: 1, next: &Node { value: 2, next: null } }, \
    counter: ShmMutex<free>(41) }";

#[test]
fn a_value_prints_through_its_recorded_layout() {
    let name = Name::new("dump");
    let store = Store::create(&name.0, 1 << 20).unwrap();
    store.insert("config", config(&store)).unwrap();
    store.insert_slice("slice", &[1.25f64, -2.0]).unwrap();
    store.insert("off", Mode::Off).unwrap();
    let look = Store::inspect(&name.0).unwrap();
    assert!(look.is_consistent());
    let limits = DumpLimits::default();
    assert_eq!(look.value("config", &limits).unwrap().to_string(), CONFIG);
    assert_eq!(
        look.value("slice", &limits).unwrap().to_string(),
        "[1.25, -2.0]"
    );
    assert_eq!(
        look.value("off", &limits).unwrap(),
        Value::Enum {
            ty: "Mode".into(),
            variant: "Off".into(),
            discriminant: 0
        }
    );
    assert!(matches!(
        look.value("absent", &limits),
        Err(Error::NotFound { .. })
    ));
    // Limits cut lists and elide depth, and say so.
    let cut = DumpLimits {
        max_items: 2,
        max_depth: 3,
    };
    let shown = look.value("config", &cut).unwrap().to_string();
    assert!(shown.contains("samples: [1, 2, … 1 more]"), "{shown}");
    assert!(
        shown.contains("list: &Node { value: 1, next: &… }"),
        "{shown}"
    );
    // The pretty form has the same content, one item a line.
    let pretty = format!("{:#}", look.value("slice", &limits).unwrap());
    assert_eq!(pretty, "[\n    1.25,\n    -2.0,\n]");
    // Nested values that fit on a line stay on one.
    let pretty = format!("{:#}", look.value("config", &limits).unwrap());
    let expected = r#"Config {
    name: "boiler \"A\"",
    samples: [1, 2, 3],
    labels: {7: "seven"},
    mode: Fast,
    on: true,
    letter: 'é',
    at: Point(-3, 1.5),
    small: [4, 5, 6],
    tag: "hot",
    few: [9],
    list: &Node { value: 1, next: &Node { value: 2, next: null } },
    counter: ShmMutex<free>(41),
}"#;
    assert_eq!(pretty, expected);
}

#[test]
fn invalid_bytes_are_shown_as_invalid_not_trusted() {
    let name = Name::new("invalid");
    let store = Store::create(&name.0, 1 << 20).unwrap();
    store.insert("flag", true).unwrap();
    store.insert("mode", Mode::Fast).unwrap();
    let look = Store::inspect(&name.0).unwrap();
    // Change the copy only: the bytes of the values.
    let (objects, _) = look.objects().unwrap();
    assert_eq!(objects.len(), 2);
    let a = look.arena();
    for (obj, byte) in [("flag", 7u8), ("mode", 5u8)] {
        let f = a
            .lookup(obj.as_bytes(), hash_name(obj.as_bytes()))
            .unwrap()
            .unwrap();
        let r = a.record(f.rec).unwrap();
        a.mem.write_bytes(r.value, &[byte]).unwrap();
    }
    let limits = DumpLimits::default();
    assert_eq!(
        look.value("flag", &limits).unwrap(),
        Value::Invalid("bool: 0x07 is not 0 or 1".into())
    );
    assert_eq!(
        look.value("mode", &limits).unwrap(),
        Value::Invalid("Mode: 5 is not a variant".into())
    );
}

#[test]
fn looking_never_writes_to_the_segment() {
    let name = Name::new("readonly");
    let store = Store::create(&name.0, 1 << 20).unwrap();
    store.insert("config", config(&store)).unwrap();
    let counter = store.get::<ShmMutex<u64>>("c").err();
    assert!(counter.is_some());
    let before = segment_bytes(&name.0);
    let info = segment(&name.0).unwrap();
    assert_eq!(info.status, Status::InUse);
    let listed = Store::list().unwrap();
    assert!(listed.iter().any(|s| s.name == format!("/{}", name.0)));
    let look = Store::inspect(&name.0).unwrap();
    look.objects().unwrap();
    look.value("config", &DumpLimits::default()).unwrap();
    assert!(look.check().is_ok(), "{}", look.check());
    assert_eq!(segment_bytes(&name.0), before, "the segment changed");
}

#[test]
fn a_summary_describes_the_store_and_its_processes() {
    let name = Name::new("summary");
    let store = Store::options()
        .capacity(2 << 20)
        .mode(0o640)
        .create(&name.0)
        .unwrap();
    store.insert("a", 1u64).unwrap();
    let held = store.get::<u64>("a").unwrap();
    let info = segment(&name.0).unwrap();
    assert_eq!(info.name, format!("/{}", name.0));
    assert_eq!(info.mode, 0o640);
    assert_eq!(info.size, 2 << 20);
    assert!(info.is_store());
    assert_eq!(info.mapped_by, [std::process::id()]);
    assert_eq!(info.users(), [std::process::id()]);
    let s = info.store().expect("a store");
    assert_eq!((s.capacity, s.objects), (2 << 20, 1));
    assert_eq!(s.committed, store.stats().unwrap().committed);
    assert_eq!(s.used, store.stats().unwrap().used);
    assert_eq!(s.header_lock, LockState::Free);
    assert!(s.consistent && s.problems.is_empty(), "{s:?}");
    assert!(!s.remove_when_unused);
    assert_eq!(
        s.processes,
        [ProcessInfo {
            pid: std::process::id(),
            liveness: Liveness::Alive,
            pins: None
        }]
    );
    // Objects and their holders.
    let look = Store::inspect(&name.0).unwrap();
    let (objects, problems) = look.objects().unwrap();
    assert!(problems.is_empty());
    assert_eq!(objects.len(), 1);
    let o = &objects[0];
    assert!(o.entry.is::<u64>());
    assert_eq!(o.pins, 1);
    assert_eq!(
        o.holders,
        [Holder {
            pid: std::process::id(),
            liveness: Liveness::Alive,
            pins: 1
        }]
    );
    drop(held);
    let look = Store::inspect(&name.0).unwrap();
    assert!(look.objects().unwrap().0[0].holders.is_empty());
    // A read-only check agrees with the store's own.
    let (mine, theirs) = (look.check(), store.check().unwrap());
    assert_eq!(
        (mine.objects, mine.types, mine.used_blocks, mine.free_blocks),
        (
            theirs.objects,
            theirs.types,
            theirs.used_blocks,
            theirs.free_blocks
        )
    );
    assert!(mine.is_ok() && theirs.is_ok());
}

#[test]
fn a_read_only_check_finds_a_damaged_copy() {
    let name = Name::new("damaged");
    let store = Store::create(&name.0, 1 << 20).unwrap();
    store.insert("a", 1u64).unwrap();
    let look = Store::inspect(&name.0).unwrap();
    assert!(look.check().is_ok());
    // The header's object count, in the copy.
    look.snap.mem.set_u64(OFF_OBJECTS, 5).unwrap();
    let report = look.check();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("header counts 5 objects")),
        "{report}"
    );
    assert!(store.check().unwrap().is_ok(), "the store itself is intact");
}

#[test]
fn a_held_header_lock_is_observed_and_a_copy_made_anyway_is_marked() {
    let name = Name::new("held");
    let store = Store::create(&name.0, 1 << 20).unwrap();
    let guard = store.test_hold_header_lock().unwrap();
    let info = segment(&name.0).unwrap();
    let s = info.store().unwrap();
    assert_eq!(
        s.header_lock,
        LockState::Held {
            // SAFETY: gettid has no preconditions.
            tid: unsafe { libc::gettid() } as u32,
            pid: Some(std::process::id())
        }
    );
    assert!(!s.consistent, "copied while a live holder held the lock");
    drop(guard);
    assert!(segment(&name.0).unwrap().store().unwrap().consistent);
}

#[test]
fn a_dead_holder_of_the_header_lock_is_shown_rolled_back_in_the_copy_only() {
    let name = Name::new("dead-holder");
    let store = Store::create(&name.0, 1 << 20).unwrap();
    store.insert("a", 1u64).unwrap();
    // A thread takes the lock, journals a change and exits holding it:
    // the kernel marks the owner dead.
    let inner = store.clone();
    std::thread::spawn(move || inner.test_die_mid_operation(99).unwrap())
        .join()
        .unwrap();
    let before = segment_bytes(&name.0);
    let info = segment(&name.0).unwrap();
    let s = info.store().unwrap();
    assert_eq!(s.header_lock, LockState::OwnerDied);
    assert!(s.consistent, "a dead holder writes nothing more");
    assert_eq!(
        (s.objects, s.journal_entries),
        (99, 1),
        "as the holder left it"
    );
    let look = Store::inspect(&name.0).unwrap();
    assert_eq!(look.rolled_back(), Some(&Ok(1)));
    assert!(look.check().is_ok(), "{}", look.check());
    assert_eq!(segment_bytes(&name.0), before, "the store itself untouched");
    // The store recovers on its next operation.
    assert_eq!(store.stats().unwrap().objects, 1);
    assert_eq!(
        segment(&name.0).unwrap().store().unwrap().header_lock,
        LockState::Free
    );
}

#[test]
fn a_store_made_to_be_removed_goes_with_its_last_user_and_comes_back_empty() {
    let name = Name::new("ephemeral");
    let opts = Store::options().capacity(1 << 20).remove_when_unused(true);
    let first = opts.create(&name.0).unwrap();
    first.insert("x", 1u64).unwrap();
    let second = Store::open(&name.0).unwrap();
    let handle = second.get::<u64>("x").unwrap();
    let info = segment(&name.0).unwrap();
    assert!(info.store().unwrap().remove_when_unused);
    drop(first);
    drop(second);
    // A handle keeps its store open.
    assert!(Store::open(&name.0).is_ok(), "still used by the handle");
    drop(handle);
    assert!(matches!(Store::open(&name.0), Err(Error::NotFound { .. })));
    let again = opts.open_or_create(&name.0).unwrap();
    assert!(!again.contains("x").unwrap(), "a new, empty store");
}

#[test]
fn a_store_made_to_be_removed_whose_users_all_died_is_removed_by_the_next_opener() {
    let name = Name::new("ephemeral-dead");
    let store = Store::options()
        .capacity(1 << 20)
        .remove_when_unused(true)
        .create(&name.0)
        .unwrap();
    store.insert("x", 1u64).unwrap();
    // Our slot taken over by a process that died: record a dead owner
    // in place of ours.
    let StartTime::Known(start) = sysproc::own_start_time() else {
        panic!("this test needs a readable /proc/self/stat");
    };
    store
        .with_arena(|a| {
            let slot = a.attached()?[0].0;
            let dead = crate::arena::procs::Owner {
                start: StartTime::Known(start + 1),
                ..crate::store::own_identity()
            };
            while a.release_step(slot, crate::store::own_identity())? {}
            a.attach(dead)?;
            Ok(())
        })
        .unwrap();
    store.test_forget_slot();
    let info = segment(&name.0).unwrap();
    // This process still maps it: in use, not abandoned.
    assert_eq!(info.status, Status::InUse);
    let s = info.store().unwrap();
    assert_eq!(s.dead_processes().count(), 1);
    assert!(matches!(Store::open(&name.0), Err(Error::NotFound { .. })));
    assert!(segment(&name.0).is_err(), "unlinked");
}

#[test]
fn open_or_create_with_another_capacity_says_so() {
    let name = Name::new("capacity");
    let _store = Store::create(&name.0, 1 << 20).unwrap();
    match Store::open_or_create(&name.0, 2 << 20) {
        Err(Error::CapacityMismatch {
            name: n,
            requested,
            existing,
        }) => {
            assert_eq!(n, format!("/{}", name.0));
            assert_eq!((requested, existing), (2 << 20, 1 << 20));
        }
        other => panic!("{other:?}"),
    }
    // The same capacity, rounded as a new store's would be, is fine.
    assert!(Store::open_or_create(&name.0, (1 << 20) - 100).is_ok());
    assert!(Store::open(&name.0).is_ok());
}

#[test]
fn segments_that_are_not_stores_are_described() {
    let name = Name::new("foreign");
    std::fs::write(format!("/dev/shm/{}", name.0), b"hello, not a store").unwrap();
    let info = segment(&name.0).unwrap();
    assert_eq!(info.status, Status::Foreign);
    assert!(!info.is_store());
    assert!(
        info.reason.contains("not the shmstore magic"),
        "{}",
        info.reason
    );
    assert!(matches!(
        Store::inspect(&name.0),
        Err(Error::NotAStore { .. })
    ));
    let empty = Name::new("empty");
    std::fs::write(format!("/dev/shm/{}", empty.0), b"").unwrap();
    assert_eq!(segment(&empty.0).unwrap().reason, "empty (0 bytes)");
    assert!(matches!(
        segment(&Name::new("absent").0),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn a_damaged_lifecycle_word_is_corrupted_and_never_removes_the_store() {
    use std::os::unix::fs::FileExt;
    let name = Name::new("flags");
    let store = Store::create(&name.0, 1 << 20).unwrap();
    store.insert("x", 1u64).unwrap();
    drop(store);
    let path = format!("/dev/shm/{}", name.0);
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    // "Removed" without its check half; one flipped bit of the check half;
    // one flipped bit of "removed" in a valid word; ones.
    for word in [
        FLAG_REMOVED,
        flags_word(0) ^ 1 << 40,
        flags_word(0) ^ FLAG_REMOVED,
        u64::MAX,
    ] {
        file.write_all_at(&word.to_le_bytes(), OFF_FLAGS).unwrap();
        match Store::open(&name.0) {
            Err(Error::Corrupted { reason }) => assert!(reason.contains("lifecycle"), "{reason}"),
            other => panic!("{word:#x}: {other:?}"),
        }
        assert!(std::path::Path::new(&path).exists(), "{word:#x}: removed");
        let info = segment(&name.0).unwrap();
        assert!(
            info.store().unwrap().problems[0].contains("lifecycle"),
            "{info:?}"
        );
        assert_eq!(info.status, Status::Damaged, "{word:#x}: {info:?}");
        // Neither rule of `remove_unused` takes a damaged store.
        for rule in [RemoveIf::Abandoned, RemoveIf::Unused] {
            match Store::remove_unused(&name.0, rule, Duration::from_secs(1)).unwrap() {
                Removal::Kept(kept) => assert_eq!(kept.status, Status::Damaged),
                other => panic!("{word:#x} {rule:?}: {other:?}"),
            }
            assert!(std::path::Path::new(&path).exists());
        }
    }
    file.write_all_at(&flags_word(0).to_le_bytes(), OFF_FLAGS)
        .unwrap();
    assert!(Store::open(&name.0).unwrap().contains("x").unwrap());
}

/// A remover that marked a persistent store removed and died before it
/// unlinked the name (`gc`, `rm`): the mark is valid, and the next opener
/// finishes the removal under the lock; `gc` would too.
#[test]
fn a_persistent_store_marked_removed_is_removed_by_its_next_opener() {
    use std::os::unix::fs::FileExt;
    let name = Name::new("marked");
    let store = Store::create(&name.0, 1 << 20).unwrap();
    store.insert("x", 1u64).unwrap();
    drop(store);
    let path = format!("/dev/shm/{}", name.0);
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&flags_word(FLAG_REMOVED).to_le_bytes(), OFF_FLAGS)
        .unwrap();
    let info = segment(&name.0).unwrap();
    assert_eq!(info.status, Status::Abandoned, "{info:?}");
    assert!(info.store().unwrap().removed);
    assert!(matches!(Store::open(&name.0), Err(Error::NotFound { .. })));
    assert!(!std::path::Path::new(&path).exists(), "unlinked");
}

/// `remove_unused` judges under the header lock: a store that a process
/// has open (registered) is kept, an idle one goes with `Unused` but not
/// with `Abandoned`, and one made to be removed when unused whose users
/// are all dead goes with `Abandoned`.
#[test]
fn remove_unused_removes_only_what_its_rule_allows() {
    let wait = Duration::from_secs(5);
    let name = Name::new("rm-idle");
    let store = Store::create(&name.0, 1 << 20).unwrap();
    store.insert("x", 1u64).unwrap();
    for rule in [RemoveIf::Abandoned, RemoveIf::Unused] {
        match Store::remove_unused(&name.0, rule, wait).unwrap() {
            Removal::Kept(s) => assert_eq!(s.status, Status::InUse, "{rule:?}"),
            other => panic!("{rule:?}: {other:?}"),
        }
    }
    drop(store);
    match Store::remove_unused(&name.0, RemoveIf::Abandoned, wait).unwrap() {
        Removal::Kept(s) => assert_eq!(s.status, Status::Idle),
        other => panic!("{other:?}"),
    }
    match Store::remove_unused(&name.0, RemoveIf::Unused, wait).unwrap() {
        Removal::Removed(s) => {
            assert_eq!(s.status, Status::Idle);
            assert_eq!(s.name, format!("/{}", name.0));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(Store::open(&name.0), Err(Error::NotFound { .. })));
    assert!(matches!(
        Store::remove_unused(&name.0, RemoveIf::Any, wait),
        Err(Error::NotFound { .. })
    ));
}

/// A live holder of the header lock makes `remove_unused` give up after
/// its wait, with nothing done.
#[test]
fn remove_unused_waits_for_the_header_lock_at_most_its_wait() {
    let name = Name::new("rm-busy");
    let store = Store::create(&name.0, 1 << 20).unwrap();
    store.insert("x", 1u64).unwrap();
    let other = store.clone();
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let guard = other.test_hold_header_lock().unwrap();
        held_tx.send(()).unwrap();
        let _ = go_rx.recv_timeout(Duration::from_secs(60));
        drop(guard);
    });
    held_rx.recv_timeout(Duration::from_secs(60)).unwrap();
    // Registered by this process: in use already at the look; `Any` goes
    // to the lock.
    let started = std::time::Instant::now();
    match Store::remove_unused(&name.0, RemoveIf::Any, Duration::from_millis(200)) {
        // `Any` falls back to a plain unlink when the lock cannot be had.
        Ok(Removal::Removed(_)) => {}
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(30));
    go_tx.send(()).unwrap();
    holder.join().unwrap();
    assert!(matches!(Store::open(&name.0), Err(Error::NotFound { .. })));
}

/// Finding 9: the depth of a value is clamped to `MAX_DEPTH` whatever is
/// asked, the pretty form's indentation stops growing, and reading,
/// printing and dropping a value that deep fits on a spawned thread's
/// 2 MiB stack (the reader and printer recurse once per level).
#[test]
fn a_deep_value_is_cut_at_max_depth_and_printed_with_capped_indentation() {
    let name = Name::new("deep");
    let store = Store::create(&name.0, 4 << 20).unwrap();
    let mut next = RelPtr::null();
    for value in 0..3000u32 {
        next = RelPtr::new_in(&store, Node { value, next }).unwrap();
    }
    store.insert("list", Node { value: 3000, next }).unwrap();
    let look = Store::inspect(&name.0).unwrap();
    let name2 = name.0.clone();
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let limits = DumpLimits {
                max_items: 10,
                max_depth: u32::MAX,
            };
            let v = look.value("list", &limits).unwrap();
            // Two levels a link: the node, then its pointer's target.
            let mut links = 0;
            let mut at = &v;
            loop {
                match at {
                    Value::Struct { fields, .. } => match &fields[1].1 {
                        Value::Ptr(Some(next)) => {
                            links += 1;
                            at = next;
                        }
                        Value::Elided => break,
                        other => panic!("{other:?}"),
                    },
                    Value::Elided => break,
                    other => panic!("{other:?}"),
                }
            }
            assert_eq!(links, MAX_DEPTH / 2, "{name2}");
            let pretty = format!("{v:#}");
            let widest = pretty.lines().map(|l| l.chars().count()).max().unwrap();
            assert!(widest <= 16 * 4 + 80, "a line of {widest} characters");
            assert!(pretty.len() < 1 << 20, "{} bytes", pretty.len());
            assert!(pretty.contains('…'));
            drop(v);
        })
        .unwrap()
        .join()
        .unwrap();
}

/// Finding 8: names from a segment are escaped wherever a value or a
/// layout is displayed; the data keeps them as they are.
#[test]
fn names_are_printable_in_values() {
    let evil = "a\u{1b}[2J\nb\u{202e}c";
    assert_eq!(printable(evil), "a\\u{1b}[2J\\nb\\u{202e}c");
    assert_eq!(printable("Config"), "Config");
    let v = Value::Struct {
        ty: evil.into(),
        fields: vec![(
            evil.into(),
            Value::Enum {
                ty: "E".into(),
                variant: evil.into(),
                discriminant: 0,
            },
        )],
    };
    for shown in [v.to_string(), format!("{v:#}")] {
        assert!(
            !shown.contains('\u{1b}') && !shown.contains('\u{202e}'),
            "{shown:?}"
        );
        assert!(!shown.contains("\nb"), "{shown:?}");
    }
    assert!(Value::Invalid(evil.into()).to_string().contains("\\u{1b}"));
}

/// Finding 10: the summary copy (`Store::list`, `segment`) is at most
/// `SUMMARY_MAX_BYTES`, whatever the process-table word says, and a
/// healthy store's table lies within it.
#[test]
fn a_summary_copies_at_most_summary_max_bytes() {
    use std::os::unix::fs::FileExt;
    let name = Name::new("summary-cap");
    let store = Store::create(&name.0, 8 << 20).unwrap();
    store.insert_slice("blob", &vec![7u8; 4 << 20]).unwrap();
    let committed = store.stats().unwrap().committed;
    let parsed = SegmentName::parse(&name.0).unwrap();
    let (_, _, copied) = probe(&parsed, Extent::Summary).unwrap();
    let (_, snap) = copied.unwrap();
    assert!(snap.copied() <= SUMMARY_MAX_BYTES, "{}", snap.copied());
    let info = segment(&name.0).unwrap();
    assert_eq!(info.store().unwrap().processes.len(), 1, "{info:?}");
    drop(store);
    // The table placed near the end of what is committed.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/{}", name.0))
        .unwrap();
    file.write_all_at(&(committed - 128 * 64 - 4096).to_le_bytes(), OFF_PROCS)
        .unwrap();
    let (_, _, copied) = probe(&parsed, Extent::Summary).unwrap();
    let (_, snap) = copied.unwrap();
    assert!(snap.copied() <= SUMMARY_MAX_BYTES, "{}", snap.copied());
    let info = segment(&name.0).unwrap();
    assert_eq!(info.status, Status::Damaged, "{info:?}");
    assert!(
        info.store().unwrap().problems[0].contains("process table"),
        "{info:?}"
    );
}

/// Finding 6 and 5: the verdicts that rest on what this process cannot
/// see. A segment description is judged as `Store::list` judges it.
#[test]
fn what_cannot_be_seen_is_never_judged_unused() {
    let base = SegmentInfo {
        name: "/x".into(),
        owner: 0,
        mode: 0o600,
        size: 1 << 20,
        allocated: 1 << 20,
        kind: SegmentKind::Incompatible {
            reason: "format version 4".into(),
        },
        mapped_by: Vec::new(),
        mappers_complete: true,
        status: Status::Foreign,
        reason: String::new(),
    };
    let judged = |f: &dyn Fn(&mut SegmentInfo)| {
        let mut s = base.clone();
        f(&mut s);
        s.judge();
        s.status
    };
    // Another format: idle only if every process could be seen.
    assert_eq!(judged(&|_| {}), Status::Idle);
    assert_eq!(judged(&|s| s.mappers_complete = false), Status::Unknown);
    assert_eq!(judged(&|s| s.mapped_by = vec![7]), Status::InUse);
    // A creator of unknown liveness (another pid namespace) is creating;
    // one known dead left it half-created.
    let creating = |l: Liveness| SegmentKind::Creating {
        creator: 7,
        creator_liveness: l,
    };
    assert_eq!(
        judged(&|s| s.kind = creating(Liveness::Unknown)),
        Status::Creating
    );
    assert_eq!(
        judged(&|s| s.kind = creating(Liveness::Dead)),
        Status::Abandoned
    );
    // A store of this format: its process table decides.
    let summary = StoreSummary {
        capacity: 1 << 20,
        committed: 1 << 16,
        used: 1 << 12,
        objects: 1,
        recoveries: 0,
        store_id: 1,
        creator: 7,
        remove_when_unused: false,
        removed: false,
        processes: Vec::new(),
        header_lock: LockState::Free,
        journal_entries: 0,
        consistent: true,
        problems: Vec::new(),
    };
    let ready = |f: &dyn Fn(&mut StoreSummary)| {
        let mut st = summary.clone();
        f(&mut st);
        SegmentKind::Ready(st)
    };
    assert_eq!(judged(&|s| s.kind = ready(&|_| {})), Status::Idle);
    // The table authoritative: unseen processes do not change it...
    assert_eq!(
        judged(&|s| {
            s.kind = ready(&|_| {});
            s.mappers_complete = false;
        }),
        Status::Idle
    );
    assert_eq!(
        judged(&|s| s.kind = ready(&|st| st.remove_when_unused = true)),
        Status::Abandoned
    );
    // ...unless it is full (users beyond it run unregistered).
    let dead = ProcessInfo {
        pid: 9,
        liveness: Liveness::Dead,
        pins: None,
    };
    let full = |st: &mut StoreSummary| {
        st.remove_when_unused = true;
        st.processes = vec![dead.clone(); crate::arena::procs::PROC_SLOTS as usize];
    };
    assert_eq!(judged(&|s| s.kind = ready(&full)), Status::Abandoned);
    assert_eq!(
        judged(&|s| {
            s.kind = ready(&full);
            s.mappers_complete = false;
        }),
        Status::Unknown
    );
    // Damaged: never abandoned, even if made to be removed when unused.
    let damaged = |st: &mut StoreSummary| {
        st.remove_when_unused = true;
        st.problems = vec!["the heap top disagrees".into()];
    };
    assert_eq!(judged(&|s| s.kind = ready(&damaged)), Status::Damaged);
    // A live user makes it in use, damaged or not.
    assert_eq!(
        judged(&|s| {
            s.kind = ready(&damaged);
            s.mapped_by = vec![7];
        }),
        Status::InUse
    );
    for rule in [RemoveIf::Abandoned, RemoveIf::Unused] {
        assert!(!rule.accepts(Status::Damaged) && !rule.accepts(Status::Unknown));
        assert!(!rule.accepts(Status::InUse) && !rule.accepts(Status::Creating));
    }
    assert!(RemoveIf::Unused.accepts(Status::Idle) && !RemoveIf::Abandoned.accepts(Status::Idle));
}
