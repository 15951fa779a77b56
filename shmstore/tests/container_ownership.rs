//! Who owns a container's buffers, and when the store may free them: the
//! regression tests of a review that tried to break the containers (its
//! findings F1–F11, each fixed; `held_*` tests are attacks that held up).
//!
//! - F1: `collect` must not free what a container reaches when that
//!   container lives inside a buffer a live process holds (a value
//!   being built, a vector moved out and used), in this process or
//!   another.
//! - F2: zero-sized elements hold no containers: no walk, no budget spent.
//! - F3: a value built through one of two mappings stays held by the
//!   process when that mapping closes.
//! - F4: dropping a long `RelPtr` list frees it in a loop (no recursion).
//! - F5: a stale container (taken out unused, its buffer collected, put
//!   back) is named by `collect` and `check`, refused by `insert`, and
//!   replacing it lets `collect` work again.
//! - F6: `ShmMutex::reset` frees the old value's buffers.
//! - F7: an over-aligned element is `InvalidArgument`, nothing leaked.
//! - F8: `collect` keeps what a removed object pinned by an uncounted
//!   handle reaches.
//! - F9: memory holding a locked `ShmMutex` (guard forgotten) is never
//!   freed, so the C library's robust-list writes never land in
//!   another object.
//! - F10: a vacated slot keeps no copy of a container's words: a corrupted
//!   length exposes a null container, never a second owner.
//! - F11: a byte copy of an open store cannot be opened beside it.
//!
//! Each section's banner below describes what the review found; its tests
//! check the behaviour since the fix.

mod common;
use common::Temp;
use shmstore::{Error, RelPtr, ShmMap, ShmMutex, ShmSafe, ShmString, ShmVec, Store};

// ---------------------------------------------------------------------------
// F1: a container that lives inside the buffer of a container *outside* the
// store (a value being built on the stack) is "in the segment", so its
// buffers are never marked pending -- and they are unreachable from every
// object. `Store::collect` frees them while this process is using them.
// ---------------------------------------------------------------------------

/// the inner vector's buffer is kept (its holder, this process,
/// is alive and is building the value), as the collect docs promise for
/// "buffers of a value it is building".
#[test]
fn f1_collect_keeps_inner_buffers_of_a_value_being_built() {
    let t = Temp::new("f1");
    let s = &t.store;
    let mut outer = ShmVec::<ShmVec<u64>>::new_in(s);
    outer.push(ShmVec::new()).unwrap();
    // The inner vector lives in outer's buffer (in the segment): it binds
    // to the store and allocates there, "linked" at once.
    outer
        .get_mut(0)
        .unwrap()
        .unwrap()
        .extend([1, 2, 3])
        .unwrap();
    assert_eq!(
        outer.get(0).unwrap().unwrap().as_slice().unwrap(),
        &[1, 2, 3][..]
    );
    let report = s.collect().unwrap();
    // Expected: nothing freed (everything unreachable is held by us).
    let inner = outer.get(0).unwrap().unwrap();
    let got = inner.as_slice().map(|s| s.to_vec());
    assert_eq!(
        (report.freed_blocks, got.ok()),
        (0, Some(vec![1, 2, 3])),
        "collect freed the inner buffer of a value being built: {report:?}"
    );
}

/// Same hole, with a live borrow: a `Ref<[u64]>` into the inner buffer
/// survives `collect`, the memory is reused by another object, and the
/// `&[u64]` now reads that object's bytes. Undefined behaviour from safe
/// code (a shared reference whose memory is freed and rewritten).
///
/// the slice keeps reading 1, 2, 3 (the buffer is not freed).
#[test]
fn f1_a_live_ref_into_an_inner_buffer_survives_collect() {
    let t = Temp::new("f1-ref");
    let s = &t.store;
    s.insert_slice("seed", &[0u64; 1]).unwrap(); // registers u64 slices
    let mut outer = ShmVec::<ShmVec<u64>>::new_in(s);
    outer.push(ShmVec::new()).unwrap();
    outer
        .get_mut(0)
        .unwrap()
        .unwrap()
        .extend([1, 2, 3, 4])
        .unwrap();
    let inner = outer.get(0).unwrap().unwrap();
    let slice = inner.as_slice().unwrap(); // &[u64] into the segment
    assert_eq!(&*slice, &[1, 2, 3, 4][..]);
    let report = s.collect().unwrap();
    // Reuse the freed memory for an unrelated object: a buffer of the same
    // size (same size class), published as another object.
    s.insert(
        "victim",
        ShmVec::<u64>::from_slice_in(s, &[0xdead_beef; 4]).unwrap(),
    )
    .unwrap();
    let now: Vec<u64> = slice.to_vec();
    assert_eq!(
        now,
        vec![1, 2, 3, 4],
        "a live &[u64] now reads memory freed by collect and reused: {report:?}"
    );
}

/// The same through `RelPtr` on the stack: the target is in the segment,
/// so the target's own containers are never marked.
#[test]
fn f1_collect_keeps_buffers_inside_a_relptr_target_on_the_stack() {
    #[derive(ShmSafe)]
    #[repr(C)]
    struct Doc {
        title: ShmString,
    }
    let t = Temp::new("f1-rel");
    let s = &t.store;
    let mut p = RelPtr::new_in(
        s,
        Doc {
            title: ShmString::new(),
        },
    )
    .unwrap();
    p.get_mut()
        .unwrap()
        .unwrap()
        .title
        .push_str("draft")
        .unwrap();
    let report = s.collect().unwrap();
    let title = p.get().unwrap().unwrap().title.to_string_lossy();
    assert_eq!(
        (report.freed_blocks, title.ok()),
        (0, Some("draft".to_string())),
        "collect freed a buffer of a value being built: {report:?}"
    );
}

/// The documented caveat covers a container moved out and *not used*. A
/// container moved out and used is said to be kept; but only the outer
/// buffer gets marked: its elements' buffers are freed by `collect`.
///
/// kept (the docs: "has moved a container out through a guard and
/// used it there, marks the blocks it uses").
#[test]
fn f1_a_used_moved_out_vector_keeps_its_strings_through_collect() {
    let t = Temp::new("f1-take");
    let s = &t.store;
    // Published with its strings: `insert` links every buffer (clears
    // this process's pending marks).
    let names = ShmVec::from_iter_in(
        s,
        ["ada", "alan", "grace"].map(|n| ShmString::from_str_in(s, n).unwrap()),
    )
    .unwrap();
    s.insert("names", ShmMutex::new(names)).unwrap();
    let h = s.get::<ShmMutex<ShmVec<ShmString>>>("names").unwrap();
    let out = std::mem::take(&mut *h.lock().unwrap());
    // Used here: this marks the outer buffer as held by this process.
    assert_eq!(out.len().unwrap(), 3);
    assert_eq!(out.get(0).unwrap().unwrap().as_str().unwrap(), "ada");
    let report = s.collect().unwrap();
    let names: Result<Vec<String>, Error> = out
        .as_slice()
        .unwrap()
        .iter()
        .map(|n| n.to_string_lossy())
        .collect();
    assert_eq!(
        (report.freed_blocks, names.ok()),
        (0, Some(vec!["ada".into(), "alan".into(), "grace".into()])),
        "{report:?}"
    );
}

/// F1, write side: a `RefMut<[u64]>` into an inner buffer survives
/// `collect`; the memory goes to another, published object; writing through
/// the `RefMut` changes that object under a live `Handle` (a shared `&`
/// reference aliased by a `&mut`: undefined behaviour, and silent
/// corruption of an unrelated object).
///
/// the victim keeps its value.
#[test]
fn f1_a_live_refmut_into_an_inner_buffer_survives_collect() {
    let t = Temp::new("f1-mut");
    let s = &t.store;
    let mut outer = ShmVec::<ShmVec<u64>>::new_in(s);
    outer.push(ShmVec::new()).unwrap();
    let mut inner = outer.get_mut(0).unwrap().unwrap();
    inner.extend([1, 2, 3, 4]).unwrap();
    let mut elems = inner.as_mut_slice().unwrap(); // &mut [u64]
    s.collect().unwrap();
    s.insert(
        "victim",
        ShmVec::<u64>::from_slice_in(s, &[10, 20, 30, 40]).unwrap(),
    )
    .unwrap();
    let victim = s.get::<ShmVec<u64>>("victim").unwrap();
    let before = victim.as_slice().unwrap().to_vec();
    elems.fill(7);
    let after = victim.as_slice().unwrap().to_vec();
    assert_eq!(
        before, after,
        "a write through a live RefMut changed another object"
    );
}

// ---------------------------------------------------------------------------
// F2: zero-sized elements that "hold containers" (by layout) cost a walk
// step each but no byte: the walk budget (2 x heap top) is exceeded, so
// `insert` fails with Corrupted, and a store holding such a value can never
// be collected again (and `check` calls it corrupted).
// ---------------------------------------------------------------------------

/// a vector of 200_000 zero-sized values inserts fine (it is a
/// legal `ShmSafe` value of 80 bytes of segment).
#[test]
fn f2_a_vector_of_zero_sized_elements_with_a_container_layout_is_inserted() {
    let t = Temp::new("f2-ins");
    let s = &t.store;
    type Zst = [ShmVec<u8>; 0];
    let v = ShmVec::<Zst>::from_iter_in(s, (0..200_000).map(|_| [])).unwrap();
    let r = s.insert("zst", v);
    assert!(r.is_ok(), "{r:?}");
}

/// `collect` still frees what a crash leaked elsewhere in the
/// store.
#[test]
fn f2_a_vector_of_zero_sized_elements_leaves_collect_working() {
    let t = Temp::new("f2-collect");
    let s = &t.store;
    type Zst = std::marker::PhantomData<ShmVec<u8>>;
    let h = s
        .get_or_insert_with("zst", || ShmMutex::new(ShmVec::<Zst>::new()))
        .unwrap();
    h.lock()
        .unwrap()
        .extend((0..200_000).map(|_| std::marker::PhantomData))
        .unwrap();
    // A lost buffer, as a crash would leave: published with its value
    // (the store's, held by no process), then lost without its `Drop`.
    s.insert(
        "lost",
        ShmMutex::new(ShmVec::<u64>::from_iter_in(s, 0..100).unwrap()),
    )
    .unwrap();
    let lost = s.get::<ShmMutex<ShmVec<u64>>>("lost").unwrap();
    std::mem::forget(std::mem::take(&mut *lost.lock().unwrap()));
    let report = s.collect().unwrap();
    let check = s.check().unwrap();
    assert_eq!(
        (report.freed_blocks, report.broken.len(), check.is_ok()),
        (1, 0, true),
        "{report:?}\n{check}"
    );
}

// ---------------------------------------------------------------------------
// F3: pending marks name the *mapping's* process slot, not the process:
// with the store opened twice, a value built through one mapping loses its
// buffers to `collect` once that mapping is closed, although the process
// still has the store open and still holds the value.
// ---------------------------------------------------------------------------

/// kept (the holder process is alive and has the store open).
#[test]
fn f3_closing_one_of_two_mappings_keeps_a_value_being_built_held() {
    let name = format!("shmstore-rv7-f3-{}", std::process::id());
    let _ = Store::unlink(&name);
    // Mapping 1: registered first, so a container bound by id finds it.
    let one = Store::create(&name, 8 << 20).unwrap();
    let two = Store::open(&name).unwrap();
    let mut v = ShmVec::<u64>::new_in(&two);
    v.extend([1, 2, 3]).unwrap(); // marked with mapping 1's process slot
    drop(one); // its slot is released; the process still has `two`
    let report = two.collect().unwrap();
    let got = v.as_slice().map(|s| s.to_vec());
    let _ = Store::unlink(&name);
    assert_eq!(
        (report.freed_blocks, got.ok()),
        (0, Some(vec![1, 2, 3])),
        "{report:?}"
    );
}

// ---------------------------------------------------------------------------
// F4: dropping a long `RelPtr` list recurses once per node (RelPtr::drop ->
// RawBuf::release -> drop_in_place(T) -> RelPtr::drop ...). The store walks
// such lists in a loop (its docs speak of "a linked list of a million
// nodes"), but clearing one from safe code overflows the stack: the process
// dies with SIGSEGV while holding the list's ShmMutex, mid-way through the
// frees.
// ---------------------------------------------------------------------------

#[derive(ShmSafe)]
#[repr(C)]
struct Node {
    id: u64,
    next: RelPtr<Node>,
}

/// Runs this test binary's test `name` in a child process with `env` set,
/// and returns its exit status.
fn run_child(name: &str, env: &str) -> (std::process::ExitStatus, String) {
    let store = format!("shmstore-rv7-{name:.8}-{}", std::process::id());
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(env, &store)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    let _ = Store::unlink(&store);
    (status, store)
}

/// `*guard = RelPtr::null()` frees a 100_000-node list (as
/// `Store::remove` of the same list does).
#[test]
fn f4_clearing_a_long_relptr_list_through_a_guard_frees_it_in_a_loop() {
    const CHILD: &str = "SHMSTORE_RV7_F4_CHILD";
    if let Ok(name) = std::env::var(CHILD) {
        let s = &Store::create(&name, 64 << 20).unwrap();
        let mut next = RelPtr::null();
        let n: u64 = std::env::var("SHMSTORE_RV7_F4_N").map_or(100_000, |n| n.parse().unwrap());
        for id in 0..n {
            next = RelPtr::new_in(s, Node { id, next }).unwrap();
        }
        let h = s
            .get_or_insert_with("list", || ShmMutex::new(RelPtr::<Node>::null()))
            .unwrap();
        *h.lock().unwrap() = next;
        // Clear the list.
        *h.lock().unwrap() = RelPtr::null();
        assert!(s.check().unwrap().is_ok());
        return;
    }
    let (status, _) = run_child(
        "f4_clearing_a_long_relptr_list_through_a_guard_frees_it_in_a_loop",
        CHILD,
    );
    assert!(status.success(), "child: {status:?}");
}

// ---------------------------------------------------------------------------
// F5: one stale container anywhere (the documented `mem::take` caveat, or
// F1) disables `collect` for the whole store, and `insert` accepts a value
// holding one.
// ---------------------------------------------------------------------------

/// The documented caveat: a container taken out of the store through a
/// guard and not used before `collect` runs loses its buffer (if no
/// process holds it: here a published one). Put back, it is stale: `check`
/// and `collect` name the object, `collect` frees nothing meanwhile,
/// `insert` refuses a value holding it, and replacing it lets `collect`
/// work again.
#[test]
fn f5_a_stale_container_is_named_refused_and_replaceable() {
    let t = Temp::new("f5");
    let s = &t.store;
    s.insert(
        "a",
        ShmMutex::new(ShmVec::<u64>::from_iter_in(s, 0..10).unwrap()),
    )
    .unwrap();
    let a = s.get::<ShmMutex<ShmVec<u64>>>("a").unwrap();
    // The caveat: taken out and not used before a collect: freed.
    let out = std::mem::take(&mut *a.lock().unwrap());
    assert_eq!(s.collect().unwrap().freed_blocks, 1);
    // Put back (safe code): stale, an error to use, never memory.
    *a.lock().unwrap() = out;
    assert!(matches!(
        a.lock().unwrap().len(),
        Err(Error::Corrupted { .. })
    ));
    // Elsewhere, a published buffer is lost (as a crash would lose it).
    s.insert(
        "b",
        ShmMutex::new(ShmVec::<u64>::from_iter_in(s, 0..100).unwrap()),
    )
    .unwrap();
    let b = s.get::<ShmMutex<ShmVec<u64>>>("b").unwrap();
    std::mem::forget(std::mem::take(&mut *b.lock().unwrap()));
    // While the stale container is there, collect frees nothing and says
    // which object holds it.
    let report = s.collect().unwrap();
    assert_eq!(report.freed_blocks, 0, "{report:?}");
    assert!(
        report.broken.iter().any(|b| b.contains("\"a\"")),
        "{report:?}"
    );
    assert!(!s.check().unwrap().is_ok());
    // A value holding a stale container is refused.
    let stale = std::mem::take(&mut *a.lock().unwrap());
    match s.insert("c", ShmMutex::new(stale)) {
        Err(Error::InvalidArgument { reason }) => {
            assert!(reason.contains("cannot be used"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // With the stale container gone, collect works again.
    let report = s.collect().unwrap();
    assert_eq!(report.freed_blocks, 1, "{report:?}");
    let check = s.check().unwrap();
    assert!(check.is_ok(), "{check}");
    assert_eq!(check.unreachable_blocks, 0, "{check}");
}

// ---------------------------------------------------------------------------
// F6: `ShmMutex::reset` overwrites the data without dropping it: the old
// value's containers leak (until a `collect`).
// ---------------------------------------------------------------------------

/// `reset` frees what the old value held, as `*guard = value`
/// does (or documents that it does not).
#[test]
fn f6_reset_frees_the_old_values_buffers() {
    let t = Temp::new("f6");
    let s = &t.store;
    let m = s
        .get_or_insert_with("m", || ShmMutex::new(ShmVec::<u64>::new()))
        .unwrap();
    let used0 = s.stats().unwrap().used;
    m.lock().unwrap().extend(0..1000).unwrap();
    m.reset(ShmVec::new()).unwrap();
    let report = s.check().unwrap();
    assert_eq!(
        (s.stats().unwrap().used, report.unreachable_blocks),
        (used0, 0),
        "{report}"
    );
}

// ---------------------------------------------------------------------------
// F7: elements aligned above a page (possible through `Pod<T>`, whose docs
// say such an alignment "is refused by the store at run time"): a push
// allocates the buffer, then refuses it as *corrupted* and leaks it,
// marked as held by this process (so not even `collect` takes it while
// the process lives).
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(8192))]
struct Huge([u8; 4096], [u8; 4096]);

/// Err(InvalidArgument) (as `Store::insert` answers for the same
/// type), and no memory used.
#[test]
fn f7_an_over_aligned_element_is_an_invalid_argument_and_leaks_nothing() {
    use shmstore::Pod;
    let t = Temp::new("f7");
    let s = &t.store;
    let insert = s.insert("huge", Pod(Huge([0; 4096], [0; 4096])));
    assert!(
        matches!(insert, Err(Error::InvalidArgument { .. })),
        "{insert:?}"
    );
    let used0 = s.stats().unwrap().used;
    let mut v = ShmVec::<Pod<Huge>>::new_in(s);
    let mut errors = Vec::new();
    for _ in 0..4 {
        errors.push(v.push(Pod(Huge([1; 4096], [1; 4096]))));
    }
    let report = s.collect().unwrap();
    let used = s.stats().unwrap().used;
    let all_invalid = errors
        .iter()
        .all(|e| matches!(e, Err(Error::InvalidArgument { .. })));
    assert_eq!(
        (all_invalid, used),
        (true, used0),
        "errors: {errors:?}\ncollect: {report:?}"
    );
}

// ---------------------------------------------------------------------------
// Held up: capacity arithmetic near the limits never panics and answers
// InvalidArgument (overflow) or OutOfMemory (too big for the store).
// ---------------------------------------------------------------------------

#[test]
fn held_huge_capacities_are_errors_not_panics() {
    let t = Temp::new("huge");
    let s = &t.store;
    let caps = [
        usize::MAX,
        usize::MAX - 1,
        usize::MAX - 55,
        usize::MAX - 56,
        usize::MAX - 57,
        usize::MAX - 4096,
        usize::MAX / 2,
        usize::MAX / 2 + 1,
        usize::MAX / 8,
        usize::MAX / 8 - 7,
        (usize::MAX - 56) / 8,
        1 << 40,
        (8 << 20) + 1,
    ];
    for cap in caps {
        for r in [
            ShmVec::<u8>::with_capacity_in(s, cap).map(drop),
            ShmVec::<u64>::with_capacity_in(s, cap).map(drop),
            ShmVec::<[u64; 512]>::with_capacity_in(s, cap).map(drop),
        ] {
            assert!(
                matches!(
                    r,
                    Err(Error::InvalidArgument { .. }) | Err(Error::OutOfMemory { .. })
                ),
                "{cap}: {r:?}"
            );
        }
        let mut v = ShmVec::<u64>::from_slice_in(s, &[1, 2, 3]).unwrap();
        let r = v.reserve(cap);
        assert!(
            matches!(
                r,
                Err(Error::InvalidArgument { .. }) | Err(Error::OutOfMemory { .. })
            ),
            "reserve {cap}: {r:?}"
        );
        assert_eq!(v.as_slice().unwrap(), &[1, 2, 3][..]);
    }
    // Zero-sized elements: any capacity, in a few bytes.
    let mut z = ShmVec::<()>::with_capacity_in(s, usize::MAX).unwrap();
    z.push(()).unwrap();
    assert_eq!(z.len().unwrap(), 1);
    assert_eq!(z.capacity().unwrap(), usize::MAX);
    drop(z);
    let report = s.check().unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.unreachable_blocks, 0, "{report}");
}

// ---------------------------------------------------------------------------
// F8: `collect` treats removed objects as reachable only through *counted*
// pins. A handle whose pin is not counted (a process with no slot in the
// process table -- the table has 128 slots and each `Store::open` takes
// one -- or a pin table that could not grow in a full store) does not stop
// `collect` from freeing the removed object's buffers while the handle
// still reads them.
// ---------------------------------------------------------------------------

/// the handle keeps reading [1, 2, 3] (the docs: "Memory of a
/// removed object is not reused while any live process still holds a
/// handle to it").
#[test]
fn f8_collect_keeps_buffers_of_a_removed_object_pinned_by_an_uncounted_handle() {
    let t = Temp::new("f8");
    let s = &t.store;
    s.insert("x", ShmVec::<u64>::from_slice_in(s, &[1, 2, 3]).unwrap())
        .unwrap();
    // Use up the process table (one slot per mapping).
    let mut mappings = Vec::new();
    for _ in 0..200 {
        mappings.push(Store::open(s.name()).unwrap());
    }
    let last = mappings.last().unwrap();
    let h = last.get::<ShmVec<u64>>("x").unwrap();
    let slice = h.as_slice().unwrap();
    assert_eq!(&*slice, &[1, 2, 3][..]);
    s.remove("x").unwrap();
    let report = s.collect().unwrap();
    s.insert(
        "victim",
        ShmVec::<u64>::from_slice_in(s, &[9, 9, 9]).unwrap(),
    )
    .unwrap();
    let now = slice.to_vec();
    drop(slice);
    let again = h.as_slice().map(|s| s.to_vec());
    assert_eq!(
        (report.freed_blocks, now, again.ok()),
        (0, vec![1, 2, 3], Some(vec![1, 2, 3])),
        "{report:?}"
    );
}

// ---------------------------------------------------------------------------
// F9: a container frees a block that holds a robust mutex this thread still
// holds (its guard `mem::forget`-ten: safe code). glibc keeps the thread's
// robust list *inside* the held mutexes, so the next robust lock this
// thread takes writes a list pointer into the freed block -- by then
// another object's memory. `sync/held.rs` guards against this for
// unmapping a region, not for freeing a block inside one.
// ---------------------------------------------------------------------------

/// the victim object's bytes never change (the block is not
/// reused while a lock in it is held, or the drop refuses).
#[test]
fn f9_dropping_a_relptr_to_a_held_mutex_frees_nothing_another_object_could_reuse() {
    let t = Temp::new("f9");
    let s = &t.store;
    let other = s
        .get_or_insert_with("other", || ShmMutex::new(0u64))
        .unwrap();
    s.insert("seed", ShmVec::<u64>::from_slice_in(s, &[0]).unwrap())
        .unwrap();
    let p = RelPtr::new_in(s, ShmMutex::new(0u64)).unwrap();
    let mutex_at = &*p.get().unwrap().unwrap() as *const ShmMutex<u64> as usize;
    std::mem::forget(p.get().unwrap().unwrap().lock().unwrap());
    drop(p); // frees the block of the mutex this thread holds
             // Same payload size (56 + 56 + 64 = 15 * 8 + 56): same size class.
    const MARK: u64 = 0x4141_4141_4141_4141;
    s.insert(
        "victim",
        ShmVec::<u64>::from_slice_in(s, &[MARK; 15]).unwrap(),
    )
    .unwrap();
    let victim = s.get::<ShmVec<u64>>("victim").unwrap();
    let before = victim.as_slice().unwrap().to_vec();
    let victim_at = victim.as_slice().unwrap().as_ptr() as usize;
    *other.lock().unwrap() += 1;
    let after = victim.as_slice().unwrap().to_vec();
    assert_eq!(
        (before.as_slice(), after.as_slice()),
        (&[MARK; 15][..], &[MARK; 15][..]),
        "another object's bytes changed (mutex at {mutex_at:#x}, victim at {victim_at:#x})"
    );
}

/// F9 without containers: a removed object whose mutex this thread holds
/// (guard forgotten) is not freed at its last unpin, so no later object
/// reuses the lock's bytes, which glibc's robust list writes to.
#[test]
fn f9_an_object_whose_mutex_is_held_is_not_freed_when_removed() {
    let t = Temp::new("f9-obj");
    let s = &t.store;
    s.insert_slice("seed", &[0u64]).unwrap();
    let h = s.get_or_insert_with("m", || ShmMutex::new(0u64)).unwrap();
    let mutex_at = &*h as *const ShmMutex<u64> as usize;
    std::mem::forget(h.lock().unwrap());
    s.remove("m").unwrap();
    drop(h); // last unpin: the record must stay
    const MARK: u64 = 0x4242_4242_4242_4242;
    for i in 0..64 {
        let name = format!("v{i}");
        s.insert_slice(&name, &vec![MARK; i + 1]).unwrap();
        let v = s.get_slice::<u64>(&name).unwrap();
        let range = v.as_ptr() as usize..v.as_ptr() as usize + 8 * v.len();
        assert!(
            !range.contains(&mutex_at),
            "object {name} reuses the held mutex's bytes"
        );
        let _ = s.contains("anything"); // one more robust lock
        assert!(v.iter().all(|&w| w == MARK), "object {name} changed");
    }
    // Reported as a block no name reaches; collect leaves it (still held).
    let report = s.collect().unwrap();
    assert_eq!(report.freed_records, 0, "{report:?}");
    assert_eq!(s.check().unwrap().unaccounted_blocks, 1);
}

// ---------------------------------------------------------------------------
// F10: one corrupted length word (which no check covers) makes two
// containers share one buffer. `pop` leaves the popped container's words in
// the slot past the new length; raising the length brings that stale copy
// back while the popped container lives on elsewhere. Container operations
// never check that a buffer has one owner (only `check`/`collect`'s walk
// does), so one owner frees the buffer under the other's live `&[u64]`.
// ---------------------------------------------------------------------------

/// Start address of this process's (only) mapping of `name`.
fn mapping_base(name: &str) -> usize {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let line = maps
        .lines()
        .find(|l| l.ends_with(&format!("/dev/shm/{}", name.trim_start_matches('/'))))
        .unwrap();
    usize::from_str_radix(line.split('-').next().unwrap(), 16).unwrap()
}

/// A corrupted length word over a vacated slot: the slot was zeroed when
/// its element left, so the length exposes a null container — never a
/// second owner of the element's buffer.
#[test]
fn f10_a_flipped_length_over_a_vacated_slot_exposes_a_null_container() {
    use std::os::unix::fs::FileExt;
    let t = Temp::new("f10");
    let s = &t.store;
    let a = s
        .get_or_insert_with("a", || ShmMutex::new(ShmVec::<ShmVec<u64>>::new()))
        .unwrap();
    let b = s
        .get_or_insert_with("b", || ShmMutex::new(ShmVec::<u64>::new()))
        .unwrap();
    a.lock()
        .unwrap()
        .push(ShmVec::from_slice_in(s, &[1, 2, 3, 4]).unwrap())
        .unwrap();
    // Where a's slot 0 is (its length word is just before the elements).
    let slot0 = a.lock().unwrap().as_slice().unwrap().as_ptr() as usize - mapping_base(s.name());
    // Move the inner vector from `a` to `b` (safe code).
    let x = a.lock().unwrap().pop().unwrap().unwrap();
    *b.lock().unwrap() = x;
    let path = format!("/dev/shm/{}", s.name().trim_start_matches('/'));
    let img = std::fs::read(&path).unwrap();
    assert!(
        img[slot0..slot0 + 24].iter().all(|&x| x == 0),
        "the vacated slot still holds container words"
    );
    // Another process flips a's length word from 0 to 1.
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&1u64.to_le_bytes(), slot0 as u64 - 8)
        .unwrap();
    let gb = b.lock().unwrap();
    let view = gb.as_slice().unwrap();
    {
        let mut ga = a.lock().unwrap();
        let mut first = ga.get_mut(0).unwrap().unwrap();
        assert_eq!(first.len().unwrap(), 0, "a null container");
        // Growing it allocates a buffer of its own.
        first.reserve(100).unwrap();
    }
    s.insert(
        "victim",
        ShmVec::<u64>::from_slice_in(s, &[0xdead; 4]).unwrap(),
    )
    .unwrap();
    assert_eq!(view.to_vec(), vec![1, 2, 3, 4]);
}

// ---------------------------------------------------------------------------
// F11: a byte copy of a store (`cp /dev/shm/a /dev/shm/b`: a backup, a
// snapshot) has the same store id. A container swapped between the twin
// stores is then not refused as foreign: it finds, in the other store, the
// copy of its own buffer -- which that store's copy of the container owns
// too. Two owners of one buffer again (see F10).
// ---------------------------------------------------------------------------

/// `ForeignContainer` (as for any two stores), or the copy
/// refused/re-keyed when opened.
#[test]
fn f11_a_byte_copy_of_an_open_store_is_refused() {
    let t = Temp::new("f11");
    let a = &t.store;
    a.insert(
        "x",
        ShmMutex::new(ShmVec::<u64>::from_slice_in(a, &[1, 2, 3, 4]).unwrap()),
    )
    .unwrap();
    a.insert("y", ShmMutex::new(ShmVec::<u64>::new())).unwrap();
    let copy_name = format!("{}-copy", a.name().trim_start_matches('/'));
    let _ = Store::unlink(&copy_name);
    std::fs::copy(
        format!("/dev/shm/{}", a.name().trim_start_matches('/')),
        format!("/dev/shm/{copy_name}"),
    )
    .unwrap();
    struct Unlink(String);
    impl Drop for Unlink {
        fn drop(&mut self) {
            let _ = Store::unlink(&self.0);
        }
    }
    let _unlink = Unlink(copy_name.clone());
    // Refused while the original is open here (containers tell stores
    // apart by their id, which the copy shares).
    match Store::open(&copy_name) {
        Err(Error::InvalidArgument { reason }) => assert!(reason.contains("byte copy"), "{reason}"),
        other => panic!("{:?}", other.map(|s| s.name().to_string())),
    }
}

// ---------------------------------------------------------------------------
// Held up: running out of arena space mid-growth is OutOfMemory, leaves
// every container as it was, and leaks nothing.
// ---------------------------------------------------------------------------

#[test]
fn held_out_of_memory_mid_growth_is_an_error_and_changes_nothing() {
    let t = Temp::with_capacity("oom", 256 << 10);
    let s = &t.store;
    let v = s
        .get_or_insert_with("v", || ShmMutex::new(ShmVec::<u64>::new()))
        .unwrap();
    let m = s
        .get_or_insert_with("m", || ShmMutex::new(ShmMap::<u64, ShmString>::new()))
        .unwrap();
    let mut n = 0u64;
    let err = loop {
        match v.lock().unwrap().push(n) {
            Ok(()) => n += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, Error::OutOfMemory { .. }), "{err:?}");
    assert!(v
        .lock()
        .unwrap()
        .as_slice()
        .unwrap()
        .iter()
        .copied()
        .eq(0..n));
    // Halve the vector's room, then fill the map until it cannot grow.
    v.lock().unwrap().truncate(0).unwrap();
    *v.lock().unwrap() = ShmVec::new();
    let mut k = 0u64;
    let err = loop {
        let mut g = m.lock().unwrap();
        let r = ShmString::from_str_in(s, &format!("value {k}")).and_then(|val| g.insert(&k, val));
        match r {
            Ok(_) => k += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, Error::OutOfMemory { .. }), "{err:?}");
    {
        let g = m.lock().unwrap();
        assert_eq!(g.len().unwrap() as u64, k);
        for i in (0..k).step_by(97) {
            assert_eq!(
                &*g.get(&i).unwrap().unwrap().as_str().unwrap(),
                format!("value {i}")
            );
        }
    }
    let report = s.check().unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.unreachable_blocks, 0, "{report}");
}

// ---------------------------------------------------------------------------
// Held up: a ShmMap with colliding keys (every key in one probe chain),
// removals and reinsertions stays correct and bounded.
// ---------------------------------------------------------------------------

#[test]
fn held_map_with_removed_slots_and_string_keys_stays_consistent() {
    let t = Temp::new("map");
    let s = &t.store;
    let m = s
        .get_or_insert_with(
            "m",
            || ShmMutex::new(ShmMap::<ShmString, ShmVec<u8>>::new()),
        )
        .unwrap();
    let mut g = m.lock().unwrap();
    let mut model = std::collections::BTreeMap::new();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for step in 0..5000u64 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let key = format!("k{}", rng % 300);
        if rng % 3 == 0 {
            let got = g.remove(&key).unwrap().map(|v| v.to_vec().unwrap());
            assert_eq!(got, model.remove(&key), "step {step}");
        } else {
            let val = ShmVec::from_slice_in(s, &step.to_le_bytes()).unwrap();
            let got = g.insert(&key, val).unwrap().map(|v| v.to_vec().unwrap());
            assert_eq!(
                got,
                model.insert(key, step.to_le_bytes().to_vec()),
                "step {step}"
            );
        }
    }
    assert_eq!(g.len().unwrap(), model.len());
    for (k, v) in &model {
        assert_eq!(&g.get(k).unwrap().unwrap().to_vec().unwrap(), v);
    }
    g.clear().unwrap();
    drop(g);
    let report = s.check().unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.unreachable_blocks, 0, "{report}");
}

/// F1 across processes: the parent builds a value on its stack and holds a
/// `&[u64]` into it; another process runs `collect` and stores an object.
///
/// the parent's slice still reads 1, 2, 3, 4.
#[test]
fn f1_another_processs_collect_keeps_an_inner_buffer_under_a_live_ref() {
    const CHILD: &str = "SHMSTORE_RV7_F1X_CHILD";
    if let Ok(name) = std::env::var(CHILD) {
        let s = Store::open(&name).unwrap();
        let report = s.collect().unwrap();
        assert_eq!(report.freed_blocks, 0, "{report:?}");
        let v = s
            .get_or_insert_with("theirs", || ShmMutex::new(ShmVec::<u64>::new()))
            .unwrap();
        v.lock().unwrap().extend([0xc0ffee; 4]).unwrap();
        return;
    }
    let t = Temp::new("f1x");
    let s = &t.store;
    let mut outer = ShmVec::<ShmVec<u64>>::new_in(s);
    outer.push(ShmVec::new()).unwrap();
    outer
        .get_mut(0)
        .unwrap()
        .unwrap()
        .extend([1, 2, 3, 4])
        .unwrap();
    let inner = outer.get(0).unwrap().unwrap();
    let slice = inner.as_slice().unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "f1_another_processs_collect_keeps_an_inner_buffer_under_a_live_ref",
            "--test-threads=1",
        ])
        .env(CHILD, s.name())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(&*slice, &[1, 2, 3, 4][..], "read another process's object");
}

// ---------------------------------------------------------------------------
// Held up: collect keeps what published objects reach -- containers in
// slices, in map values, nested several levels deep, behind mutexes -- and
// what a removed object pinned by a (counted) handle reaches.
// ---------------------------------------------------------------------------

#[test]
fn held_collect_keeps_everything_objects_and_counted_pins_reach() {
    #[derive(ShmSafe)]
    #[repr(C)]
    struct Deep {
        names: ShmVec<ShmString>,
        index: ShmMap<u32, ShmVec<RelPtr<ShmString>>>,
    }
    let t = Temp::new("reach");
    let s = &t.store;
    let deep = || -> Deep {
        let mut index = ShmMap::new_in(s);
        for k in 0..20u32 {
            let v = ShmVec::from_iter_in(
                s,
                (0..3).map(|i| {
                    RelPtr::new_in(s, ShmString::from_str_in(s, &format!("{k}.{i}")).unwrap())
                        .unwrap()
                }),
            )
            .unwrap();
            index.insert(&k, v).unwrap();
        }
        Deep {
            names: ShmVec::from_iter_in(
                s,
                (0..10).map(|i| ShmString::from_str_in(s, &format!("n{i}")).unwrap()),
            )
            .unwrap(),
            index,
        }
    };
    s.insert_slice_from_iter("slice", (0..3).map(|_| deep()))
        .unwrap();
    s.insert("locked", ShmMutex::new(deep())).unwrap();
    s.insert("pinned", deep()).unwrap();
    let pinned = s.get::<Deep>("pinned").unwrap();
    s.remove("pinned").unwrap();
    let before = s.check().unwrap();
    let report = s.collect().unwrap();
    assert_eq!(report.freed_blocks, 0, "{report:?}");
    assert!(
        report.broken.is_empty() && report.busy.is_empty(),
        "{report:?}"
    );
    let read = |d: &Deep| {
        let v = d.index.get(&7).unwrap().unwrap();
        let p = v.get(2).unwrap().unwrap();
        let s = p.get().unwrap().unwrap().as_str().unwrap().to_string();
        s
    };
    assert_eq!(read(&pinned), "7.2");
    assert_eq!(read(&s.get_slice::<Deep>("slice").unwrap()[2]), "7.2");
    assert_eq!(
        read(&s.get::<ShmMutex<Deep>>("locked").unwrap().lock().unwrap()),
        "7.2"
    );
    drop(pinned);
    let after = s.check().unwrap();
    assert!(after.is_ok(), "{after}");
    assert_eq!(
        (before.unreachable_blocks, after.unreachable_blocks),
        (0, 0),
        "{after}"
    );
}

/// Held up: a container outside the store after its store was unlinked
/// (still works: the mapping stays) and after it was closed (NotFound, and
/// its drop does nothing harmful).
#[test]
fn held_a_container_outlives_its_store_handle_with_errors_not_crashes() {
    let name = format!("shmstore-rv7-closed-{}", std::process::id());
    let _ = Store::unlink(&name);
    let s = Store::create(&name, 1 << 20).unwrap();
    let mut v = ShmVec::<u64>::from_slice_in(&s, &[1, 2]).unwrap();
    Store::unlink(&name).unwrap();
    v.push(3).unwrap();
    assert_eq!(v.as_slice().unwrap(), &[1, 2, 3][..]);
    let r = v.as_slice().unwrap();
    drop(s); // the Ref keeps the store mapped
    assert_eq!(&*r, &[1, 2, 3][..]);
    drop(r);
    assert!(
        matches!(v.len(), Err(Error::NotFound { .. })),
        "{:?}",
        v.len()
    );
    assert!(matches!(v.push(4), Err(Error::NotFound { .. })));
    drop(v);
}
