//! A struct holding a `ShmString`, a `ShmVec` and a `RelPtr` is built and
//! published by one process, and read, grown, replaced and removed by
//! another that maps the store at another address.

use shmstore::{RelPtr, ShmMap, ShmMutex, ShmSafe, ShmString, ShmVec, Store};
use shmstore_tests::{report, role, role_arg, spawn_role_with_arg, StoreGuard};

#[derive(ShmSafe)]
#[repr(C)]
struct Job {
    id: u64,
    name: ShmString,
    tags: ShmVec<u32>,
    next: RelPtr<Job>,
}

type Index = ShmMutex<ShmMap<u64, ShmString>>;

fn job(store: &Store, id: u64, name: &str, tags: &[u32], next: Option<Job>) -> Job {
    Job {
        id,
        name: ShmString::from_str_in(store, name).unwrap(),
        tags: ShmVec::from_slice_in(store, tags).unwrap(),
        next: match next {
            Some(n) => RelPtr::new_in(store, n).unwrap(),
            None => RelPtr::null(),
        },
    }
}

const TEST: &str = "containers_built_by_one_process_are_read_grown_replaced_and_removed_by_another";

/// The child: finds the objects at a mapping address other than the
/// parent's (`role_arg`), checks what the parent built, and changes it.
fn child(name: &str) {
    let parent_addr: usize = role_arg().parse().unwrap();
    // Two mappings of the store in this process are at two addresses: at
    // least one of them differs from the parent's.
    let first = Store::open(name).unwrap();
    let second = Store::open(name).unwrap();
    let (store, jobs) = [&first, &second]
        .into_iter()
        .map(|s| (s, s.get::<ShmMutex<Job>>("job").unwrap()))
        .find(|(_, h)| &**h as *const _ as usize != parent_addr)
        .unwrap();
    report("addr", &*jobs as *const _ as usize);
    {
        let mut g = jobs.lock().unwrap();
        assert_eq!(g.id, 1);
        assert_eq!(g.name.as_str().unwrap(), "compile");
        assert_eq!(g.tags.as_slice().unwrap(), &[7, 9][..]);
        let next = g.next.get().unwrap().unwrap();
        assert_eq!((next.id, &*next.name.as_str().unwrap()), (2, "link"));
        drop(next);
        // Grown: past the first buffer's capacity (a new block each).
        g.name.push_str(" all the crates").unwrap();
        g.tags.extend(100..1100).unwrap();
        // Replaced: the old target and its string are freed.
        g.next
            .set(job(
                store,
                3,
                "package",
                &[1],
                Some(job(store, 4, "ship", &[], None)),
            ))
            .unwrap();
    }
    let index = store.get::<Index>("index").unwrap();
    {
        let mut g = index.lock().unwrap();
        assert_eq!(g.get(&1).unwrap().unwrap().as_str().unwrap(), "compile");
        for id in 3..=4 {
            g.insert(
                &id,
                ShmString::from_str_in(store, &format!("job {id}")).unwrap(),
            )
            .unwrap();
        }
        g.remove(&2).unwrap();
    }
    // A whole object replaced, and one removed.
    store
        .replace("spare", job(store, 10, "spare, replaced", &[10], None))
        .unwrap();
    store.remove("doomed").unwrap();
}

#[test]
fn containers_built_by_one_process_are_read_grown_replaced_and_removed_by_another() {
    if let Some((_, name)) = role() {
        return child(&name);
    }
    let guard = StoreGuard::unique("xcont");
    let store = Store::create(guard.name(), 4 << 20).unwrap();
    store
        .insert(
            "job",
            ShmMutex::new(job(
                &store,
                1,
                "compile",
                &[7, 9],
                Some(job(&store, 2, "link", &[], None)),
            )),
        )
        .unwrap();
    let mut index = ShmMap::<u64, ShmString>::new_in(&store);
    for (id, n) in [(1, "compile"), (2, "link")] {
        index
            .insert(&id, ShmString::from_str_in(&store, n).unwrap())
            .unwrap();
    }
    store.insert("index", ShmMutex::new(index)).unwrap();
    store
        .insert("spare", job(&store, 9, "spare", &[9; 40], None))
        .unwrap();
    store
        .insert("doomed", job(&store, 8, "doomed", &[8; 40], None))
        .unwrap();
    let jobs = store.get::<ShmMutex<Job>>("job").unwrap();
    let addr = &*jobs as *const _ as usize;

    let done = spawn_role_with_arg(TEST, "child", guard.name(), &addr.to_string()).wait_success();
    assert_ne!(done.report("addr"), addr.to_string());

    {
        let g = jobs.lock().unwrap();
        assert_eq!(g.name.as_str().unwrap(), "compile all the crates");
        let tags = g.tags.as_slice().unwrap();
        assert_eq!(tags.len(), 1002);
        assert!(tags[2..].iter().copied().eq(100..1100));
        let next = g.next.get().unwrap().unwrap();
        assert_eq!((next.id, &*next.name.as_str().unwrap()), (3, "package"));
        let last = next.next.get().unwrap().unwrap();
        assert_eq!((last.id, &*last.name.as_str().unwrap()), (4, "ship"));
        assert!(last.next.is_null());
    }
    let index = store.get::<Index>("index").unwrap();
    let mut names = Vec::new();
    index
        .lock()
        .unwrap()
        .for_each(|k, v| names.push((*k, v.as_str().unwrap().to_string())))
        .unwrap();
    names.sort();
    assert_eq!(
        names,
        [
            (1, "compile".to_string()),
            (3, "job 3".into()),
            (4, "job 4".into())
        ]
    );
    let spare = store.get::<Job>("spare").unwrap();
    assert_eq!(spare.name.as_str().unwrap(), "spare, replaced");
    assert!(store.get::<Job>("doomed").is_err());
    let report = store.check().unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.unreachable_blocks, 0, "{report}");
    assert_eq!(report.unaccounted_blocks, 0, "{report}");
    // What the child replaced and removed was freed with its containers:
    // a buffer left behind would be one of the unreachable blocks counted
    // above.
}
