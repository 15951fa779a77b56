//! In-process tests of the containers: vectors, strings, maps, relative
//! pointers, fixed containers; building values outside a store; moves
//! through guards; drops.

mod common;
use common::Temp;
use shmstore::{
    Error, FixedString, FixedVec, RelPtr, ShmMap, ShmMutex, ShmSafe, ShmString, ShmVec, Store,
};

#[derive(ShmSafe)]
#[repr(C)]
struct Job {
    id: u64,
    name: ShmString,
    tags: ShmVec<u32>,
    next: RelPtr<Job>,
}

#[test]
fn a_vector_behind_a_mutex_grows_and_shrinks_in_place() {
    let t = Temp::new("vec");
    let s = &t.store;
    let v = s
        .get_or_insert_with("v", || ShmMutex::new(ShmVec::<u64>::new()))
        .unwrap();
    let used0 = s.stats().unwrap().used;
    {
        let mut g = v.lock().unwrap();
        for i in 0..1000 {
            g.push(i).unwrap();
        }
        assert_eq!(g.len().unwrap(), 1000);
        assert_eq!(g.as_slice().unwrap().iter().sum::<u64>(), 499_500);
        assert_eq!(g.pop().unwrap(), Some(999));
        g.insert(0, 42).unwrap();
        assert_eq!(*g.get(0).unwrap().unwrap(), 42);
        assert_eq!(g.remove(0).unwrap(), 42);
        assert_eq!(g.swap_remove(0).unwrap(), 0);
        assert_eq!(*g.get(0).unwrap().unwrap(), 998);
        g.as_mut_slice().unwrap()[1] = 7;
        assert_eq!(g.as_slice().unwrap()[1], 7);
        g.truncate(10).unwrap();
        assert_eq!(g.len().unwrap(), 10);
    }
    // Another handle (as another process would) sees the same elements.
    let again = s.get::<ShmMutex<ShmVec<u64>>>("v").unwrap();
    assert_eq!(again.lock().unwrap().len().unwrap(), 10);
    // Replacing the vector through the guard frees its buffer.
    *v.lock().unwrap() = ShmVec::new();
    assert_eq!(s.stats().unwrap().used, used0);
    assert!(s.check().unwrap().is_ok());
}

#[test]
fn a_value_with_containers_is_built_outside_the_store_and_published() {
    let t = Temp::new("build");
    let s = &t.store;
    let used0 = s.stats().unwrap().used;
    let tail = RelPtr::new_in(
        s,
        Job {
            id: 2,
            name: ShmString::from_str_in(s, "link").unwrap(),
            tags: ShmVec::new(),
            next: RelPtr::null(),
        },
    )
    .unwrap();
    let job = Job {
        id: 1,
        name: ShmString::from_str_in(s, "compile").unwrap(),
        tags: ShmVec::from_slice_in(s, &[7, 9]).unwrap(),
        next: tail,
    };
    // Readable before it is published.
    assert_eq!(job.name.as_str().unwrap(), "compile");
    s.insert("job", job).unwrap();
    let h = s.get::<Job>("job").unwrap();
    assert_eq!(h.id, 1);
    assert_eq!(h.name.as_str().unwrap(), "compile");
    assert_eq!(h.tags.as_slice().unwrap(), &[7, 9][..]);
    let next = h.next.get().unwrap().unwrap();
    assert_eq!(next.name.as_str().unwrap(), "link");
    assert!(next.next.is_null());
    drop(next);
    drop(h);
    // A value that cannot be inserted frees what it holds.
    let dup = Job {
        id: 3,
        name: ShmString::from_str_in(s, "duplicate").unwrap(),
        tags: ShmVec::from_slice_in(s, &[1, 2, 3]).unwrap(),
        next: RelPtr::null(),
    };
    let before = s.stats().unwrap().used;
    assert!(matches!(
        s.insert("job", dup),
        Err(Error::AlreadyExists { .. })
    ));
    assert!(s.stats().unwrap().used < before);
    let _ = used0;
}

#[test]
fn a_map_keyed_by_strings_and_by_integers() {
    let t = Temp::new("map");
    let s = &t.store;
    let m = s
        .get_or_insert_with("m", || ShmMutex::new(ShmMap::<ShmString, u64>::new()))
        .unwrap();
    let mut g = m.lock().unwrap();
    for i in 0..500u64 {
        assert_eq!(g.insert(&format!("key{i}"), i).unwrap(), None);
    }
    assert_eq!(g.len().unwrap(), 500);
    for i in 0..500u64 {
        assert_eq!(*g.get(&format!("key{i}")).unwrap().unwrap(), i);
    }
    assert!(g.get("absent").unwrap().is_none());
    assert_eq!(g.insert("key7", 70).unwrap(), Some(7));
    for i in (0..500u64).step_by(2) {
        assert!(g.remove(&format!("key{i}")).unwrap().is_some());
    }
    assert_eq!(g.len().unwrap(), 250);
    *g.get_mut("key1").unwrap().unwrap() += 100;
    assert_eq!(*g.get("key1").unwrap().unwrap(), 101);
    drop(g);

    let ints = s
        .get_or_insert_with("ints", || ShmMutex::new(ShmMap::<u64, u64>::new()))
        .unwrap();
    let mut g = ints.lock().unwrap();
    for i in 0..10_000u64 {
        g.insert(&(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)), i)
            .unwrap();
    }
    for i in 0..10_000u64 {
        assert_eq!(
            *g.get(&(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
                .unwrap()
                .unwrap(),
            i
        );
    }
    drop(g);
    assert!(s.check().unwrap().is_ok());
}

#[test]
fn fixed_containers_need_no_store() {
    let t = Temp::new("fixed");
    let s = &t.store;
    let mut v = FixedVec::<u16, 3>::new();
    v.push(1).unwrap();
    v.push(2).unwrap();
    let mut name = FixedString::<8>::new();
    name.push_str("abc").unwrap();
    s.insert("v", v).unwrap();
    s.insert("name", name).unwrap();
    assert_eq!(s.get::<FixedVec<u16, 3>>("v").unwrap().as_slice(), &[1, 2]);
    assert_eq!(s.get::<FixedString<8>>("name").unwrap().as_str(), "abc");
    assert!(matches!(
        s.get::<FixedString<9>>("name"),
        Err(Error::TypeMismatch { .. })
    ));
}

#[test]
fn a_container_swapped_into_another_store_refuses_and_swapping_back_restores_it() {
    let a = Temp::new("swap-a");
    let b = Temp::new("swap-b");
    let va = a
        .store
        .get_or_insert_with("v", || ShmMutex::new(ShmVec::<u64>::new()))
        .unwrap();
    let vb = b
        .store
        .get_or_insert_with("v", || ShmMutex::new(ShmVec::<u64>::new()))
        .unwrap();
    va.lock().unwrap().extend(0..10).unwrap();
    vb.lock().unwrap().extend(100..103).unwrap();
    {
        let (mut ga, mut gb) = (va.lock().unwrap(), vb.lock().unwrap());
        std::mem::swap(&mut *ga, &mut *gb);
        assert!(matches!(ga.len(), Err(Error::ForeignContainer { .. })));
        assert!(matches!(gb.push(1), Err(Error::ForeignContainer { .. })));
        std::mem::swap(&mut *ga, &mut *gb);
    }
    assert_eq!(va.lock().unwrap().len().unwrap(), 10);
    assert_eq!(vb.lock().unwrap().as_slice().unwrap(), &[100, 101, 102][..]);
    assert!(a.store.check().unwrap().is_ok());
    assert!(b.store.check().unwrap().is_ok());
}

#[test]
fn a_container_moved_out_onto_the_stack_works_there_and_back() {
    let t = Temp::new("take");
    let s = &t.store;
    let v = s
        .get_or_insert_with("v", || ShmMutex::new(ShmVec::<u64>::new()))
        .unwrap();
    v.lock().unwrap().extend(0..5).unwrap();
    let mut out = std::mem::take(&mut *v.lock().unwrap());
    out.push(5).unwrap();
    assert_eq!(out.len().unwrap(), 6);
    *v.lock().unwrap() = out;
    assert_eq!(
        v.lock().unwrap().as_slice().unwrap(),
        &[0, 1, 2, 3, 4, 5][..]
    );
    // Dropping a taken vector frees its buffer.
    let used = s.stats().unwrap().used;
    drop(std::mem::take(&mut *v.lock().unwrap()));
    assert!(s.stats().unwrap().used < used);
}

#[test]
fn removing_or_replacing_an_object_frees_what_its_containers_hold() {
    let t = Temp::new("free-nested");
    let s = &t.store;
    s.insert("seed", 0u64).unwrap(); // registers u64, allocates tables
    let base = s.stats().unwrap().used;
    let make = |id: u64| Job {
        id,
        name: ShmString::from_str_in(s, &"x".repeat(100)).unwrap(),
        tags: ShmVec::from_iter_in(s, 0..50).unwrap(),
        next: RelPtr::new_in(
            s,
            Job {
                id: id + 1,
                name: ShmString::from_str_in(s, "inner").unwrap(),
                tags: ShmVec::new(),
                next: RelPtr::null(),
            },
        )
        .unwrap(),
    };
    s.insert("job", make(1)).unwrap();
    let with_one = s.stats().unwrap().used;
    assert!(with_one > base + 500);
    // Replacing it frees the old value's buffers (no handle pins it).
    s.replace("job", make(10)).unwrap();
    assert_eq!(s.stats().unwrap().used, with_one);
    // A handle keeps them until it is dropped.
    let h = s.get::<Job>("job").unwrap();
    s.remove("job").unwrap();
    assert_eq!(
        h.next.get().unwrap().unwrap().name.as_str().unwrap(),
        "inner"
    );
    drop(h);
    let report = s.check().unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.unreachable_blocks, 0, "{report}");
    assert_eq!(report.unaccounted_blocks, 0, "{report}");
    assert_eq!(report.nested_blocks, 0, "{report}");
    // Back to the start, up to registered types and directory growth.
    assert!(
        s.stats().unwrap().used <= base + 256,
        "{}",
        s.stats().unwrap().used
    );
}

#[test]
fn collect_frees_what_no_one_reaches_or_holds_and_keeps_what_a_live_process_holds() {
    let t = Temp::new("collect");
    let s = &t.store;
    let v = s
        .get_or_insert_with("v", || ShmMutex::new(ShmVec::<u64>::new()))
        .unwrap();
    v.lock().unwrap().extend(0..100).unwrap();
    // A buffer lost without its `Drop` by this (live) process, which
    // allocated it: this process may still be using it, as far as the
    // store can tell, so it is kept until this process has gone.
    std::mem::forget(std::mem::take(&mut *v.lock().unwrap()));
    // A value being built outside the store is this process's: kept.
    let building = ShmVec::<u32>::from_slice_in(s, &[1, 2, 3]).unwrap();
    // A buffer published with its value (so the store's, held by no
    // process), then lost: no one reaches or holds it.
    s.insert(
        "w",
        ShmMutex::new(ShmVec::from_slice_in(s, &[7u8; 64]).unwrap()),
    )
    .unwrap();
    let w = s.get::<ShmMutex<ShmVec<u8>>>("w").unwrap();
    std::mem::forget(std::mem::take(&mut *w.lock().unwrap()));
    let report = s.check().unwrap();
    assert_eq!(report.unreachable_blocks, 3, "{report}");
    // While a mutex is held, nothing can be collected.
    let g = v.lock().unwrap();
    let busy = s.collect().unwrap();
    assert_eq!(busy.freed_blocks, 0);
    assert_eq!(busy.busy, vec!["v".to_string()]);
    drop(g);
    let done = s.collect().unwrap();
    assert_eq!((done.freed_blocks, done.kept_held), (1, 2), "{done:?}");
    assert_eq!(building.as_slice().unwrap(), &[1, 2, 3][..]);
    drop(building);
    let report = s.check().unwrap();
    assert_eq!(report.unreachable_blocks, 1, "{report}");
    assert_eq!(report.unaccounted_blocks, 0, "{report}");
}

#[test]
fn a_published_value_stops_being_held_by_its_builder() {
    let t = Temp::new("linked");
    let s = &t.store;
    let job = Job {
        id: 1,
        name: ShmString::from_str_in(s, "built on the stack").unwrap(),
        tags: ShmVec::from_slice_in(s, &[1, 2]).unwrap(),
        next: RelPtr::null(),
    };
    s.insert("job", ShmMutex::new(job)).unwrap();
    let h = s.get::<ShmMutex<Job>>("job").unwrap();
    // Lose the name's buffer without its `Drop`: it was linked when the
    // value was published, so no process holds it any more and `collect`
    // takes it at once (it does not wait for this process to exit).
    std::mem::forget(std::mem::take(&mut h.lock().unwrap().name));
    let done = s.collect().unwrap();
    assert_eq!((done.freed_blocks, done.kept_held), (1, 0), "{done:?}");
    assert_eq!(h.lock().unwrap().tags.as_slice().unwrap(), &[1, 2][..]);
    let report = s.check().unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.unreachable_blocks, 0, "{report}");
}

#[test]
fn a_value_holding_another_stores_container_is_refused() {
    let a = Temp::new("foreign-a");
    let b = Temp::new("foreign-b");
    a.store.insert("seed", 0u64).unwrap();
    let used = a.store.stats().unwrap().used;
    let job = Job {
        id: 1,
        name: ShmString::from_str_in(&a.store, "made in a").unwrap(),
        tags: ShmVec::new(),
        next: RelPtr::null(),
    };
    assert!(a.store.stats().unwrap().used > used);
    match b.store.insert("job", job) {
        Err(Error::ForeignContainer { store, .. }) => assert!(store.contains("foreign-b")),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        b.store.get::<Job>("job"),
        Err(Error::NotFound { .. })
    ));
    // The refused value was dropped: its buffer in `a` is freed.
    assert_eq!(a.store.stats().unwrap().used, used);
    for s in [&a.store, &b.store] {
        let report = s.check().unwrap();
        assert!(report.is_ok(), "{report}");
        assert_eq!(report.unreachable_blocks, 0, "{report}");
    }
}

/// The words at 8-aligned offsets of the segment's file.
fn segment_words(s: &Store) -> (std::fs::File, Vec<u64>) {
    use std::io::Read;
    let path = format!("/dev/shm/{}", s.name().trim_start_matches('/'));
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).unwrap();
    let words = bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (f, words)
}

#[test]
fn a_buffer_of_another_element_type_is_a_type_mismatch_not_a_reinterpretation() {
    use std::os::unix::fs::FileExt;
    let t = Temp::new("elem-type");
    let s = &t.store;
    s.insert("x", ShmVec::<u32>::from_slice_in(s, &[1, 2, 3]).unwrap())
        .unwrap();
    s.insert(
        "y",
        ShmVec::<u64>::from_slice_in(s, &[4, 5, 6, 7, 8]).unwrap(),
    )
    .unwrap();
    s.insert("p", RelPtr::<u32>::new_in(s, 9).unwrap()).unwrap();
    s.insert("q", RelPtr::<i64>::new_in(s, -9).unwrap())
        .unwrap();
    // Make x and p point at y's and q's buffers, tokens and all, as a stray
    // write of their three words would (the store id is header word 23).
    let (file, words) = segment_words(s);
    let store_id = words[23];
    let containers: Vec<usize> = (512..words.len() - 3)
        .filter(|&i| words[i] == store_id && words[i + 1] != 0 && words[i + 2] % 8 == 0)
        .collect();
    // Told apart by their buffers' length word and first element.
    let buf = |i: usize| (words[i + 2] / 8) as usize;
    let find = |len: u64, first: u64| {
        *containers
            .iter()
            .find(|&&i| words[buf(i) + 6] == len && words[buf(i) + 7] & 0xffff_ffff == first)
            .unwrap()
    };
    let (x, y) = (find(3, 1), find(5, 4));
    let (p, q) = (find(1, 9), find(1, (-9i64) as u64 & 0xffff_ffff));
    for (to, from) in [(x, y), (p, q)] {
        let bytes: Vec<u8> = words[from..from + 3]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        file.write_all_at(&bytes, to as u64 * 8).unwrap();
    }
    let hx = s.get::<ShmVec<u32>>("x").unwrap();
    match hx.as_slice() {
        Err(Error::TypeMismatch {
            expected, found, ..
        }) => {
            assert!(expected.contains("u32"), "{expected}");
            assert!(found.contains("fingerprint"), "{found}");
        }
        other => panic!("{:?}", other.map(|s| s.to_vec())),
    }
    assert!(matches!(hx.len(), Err(Error::TypeMismatch { .. })));
    let hp = s.get::<RelPtr<u32>>("p").unwrap();
    let got = hp.get().map(|v| v.map(|v| *v));
    assert!(matches!(got, Err(Error::TypeMismatch { .. })), "{got:?}");
    // The owners still read their own.
    assert_eq!(
        s.get::<ShmVec<u64>>("y").unwrap().as_slice().unwrap(),
        &[4, 5, 6, 7, 8][..]
    );
    assert_eq!(
        *s.get::<RelPtr<i64>>("q").unwrap().get().unwrap().unwrap(),
        -9
    );
}

#[test]
fn one_store_mapped_twice_in_one_process_reads_the_same_containers() {
    let t = Temp::new("twice");
    let a = &t.store;
    let b = Store::open(a.name()).unwrap();
    let link = Job {
        id: 2,
        name: ShmString::from_str_in(a, "link").unwrap(),
        tags: ShmVec::new(),
        next: RelPtr::null(),
    };
    let job = Job {
        id: 1,
        name: ShmString::from_str_in(a, "compile").unwrap(),
        tags: ShmVec::from_slice_in(a, &[7, 9]).unwrap(),
        next: RelPtr::new_in(a, link).unwrap(),
    };
    a.insert("job", ShmMutex::new(job)).unwrap();
    let ha = a.get::<ShmMutex<Job>>("job").unwrap();
    let hb = b.get::<ShmMutex<Job>>("job").unwrap();
    // Two mappings: the same object at two addresses.
    let (pa, pb) = (&*ha as *const _ as usize, &*hb as *const _ as usize);
    assert_ne!(pa, pb);
    // Where a container's targets are, relative to the object, seen
    // through one handle: (name bytes, tags, next).
    let targets = |h: &ShmMutex<Job>, base: usize| {
        let g = h.lock().unwrap();
        let name = g.name.as_str().unwrap().as_ptr() as usize;
        let tags = g.tags.as_slice().unwrap().as_ptr() as usize;
        let next = g.next.get().unwrap().map(|n| {
            assert_eq!(n.name.as_str().unwrap(), "link");
            &*n as *const Job as usize
        });
        (
            name.wrapping_sub(base),
            tags.wrapping_sub(base),
            next.map(|n| n.wrapping_sub(base)),
        )
    };
    // The same targets at both addresses: the containers' offsets are
    // relative to the segment, not to a mapping.
    assert_eq!(targets(&ha, pa), targets(&hb, pb));
    {
        let g = hb.lock().unwrap();
        // One lock in both mappings: this thread holds it already.
        assert!(matches!(ha.try_lock(), Err(Error::InvalidArgument { .. })));
        assert_eq!(g.name.as_str().unwrap(), "compile");
    }
    // Grown through one mapping, read through the other.
    ha.lock().unwrap().tags.extend(0..1000).unwrap();
    ha.lock().unwrap().name.push_str(" and test").unwrap();
    {
        let g = hb.lock().unwrap();
        assert_eq!(g.tags.len().unwrap(), 1002);
        assert_eq!(g.name.as_str().unwrap(), "compile and test");
    }
    assert_eq!(targets(&ha, pa), targets(&hb, pb));
    // Replaced through the second mapping, read through the first.
    let new_next = Job {
        id: 3,
        name: ShmString::from_str_in(&b, "link").unwrap(),
        tags: ShmVec::new(),
        next: RelPtr::null(),
    };
    hb.lock().unwrap().next.set(new_next).unwrap();
    assert_eq!(ha.lock().unwrap().next.get().unwrap().unwrap().id, 3);
    drop((ha, hb, b));
    let report = a.check().unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.unreachable_blocks, 0, "{report}");
}

#[derive(ShmSafe)]
#[repr(C)]
struct Node {
    id: u64,
    next: RelPtr<Node>,
}

#[test]
fn a_long_list_of_relative_pointers_is_walked_in_a_loop_and_freed_whole() {
    // Deep enough that walking it by recursion would overflow a test
    // thread's stack.
    const N: u64 = 50_000;
    let t = Temp::new("list");
    let s = &t.store;
    s.insert("seed", 0u64).unwrap();
    let base = s.stats().unwrap().used;
    let mut next = RelPtr::null();
    for id in 0..N {
        next = RelPtr::new_in(s, Node { id, next }).unwrap();
    }
    s.insert("list", Node { id: N, next }).unwrap();
    let report = s.check().unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.nested_blocks, N, "{report}");
    assert_eq!(report.unreachable_blocks, 0, "{report}");
    {
        let head = s.get::<Node>("list").unwrap();
        let first = head.next.get().unwrap().unwrap();
        let second = first.next.get().unwrap().unwrap();
        assert_eq!((first.id, second.id), (N - 1, N - 2));
    }
    s.remove("list").unwrap();
    let report = s.check().unwrap();
    assert_eq!(report.nested_blocks, 0, "{report}");
    assert_eq!(report.unreachable_blocks, 0, "{report}");
    assert!(s.stats().unwrap().used <= base + 256);
}
