//! The header lock, which guards a store's metadata, works across processes
//! and survives a process killed while holding it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, OnceLock};
use std::time::Duration;

use shmstore::{Error, Handle, ShmSafe, Store, TypeLayout};
use shmstore_tests::{
    barrier, role, role_arg, spawn_role_with_arg, wait_until, Child, StoreGuard, PATIENCE,
};

/// How long a store operation may take before the test declares a hang.
const WATCHDOG: Duration = Duration::from_secs(30);

/// Runs `f` on another thread and fails the test if it does not finish
/// within [`WATCHDOG`].
fn within_watchdog<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(WATCHDOG)
        .unwrap_or_else(|e| panic!("{what} did not return within {WATCHDOG:?} ({e}): it hangs"))
}

#[cfg(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64"))]
#[test]
fn the_header_lock_is_initialised_process_shared_and_robust() {
    // glibc x86_64 `pthread_mutex_t`: `__kind` is the int at byte 16. Its
    // bits: 16 = robust, 128 = process-shared (nptl's pthread_mutex_init).
    const OFF_LOCK: usize = 192; // arena/header.rs
    const KIND: usize = OFF_LOCK + 16;
    let guard = StoreGuard::unique("hdr-kind");
    let store = Store::create(guard.name(), 1 << 20).unwrap();
    store.insert("x", 1u32).unwrap();
    let bytes = std::fs::read(guard.path()).unwrap();
    let kind = u32::from_le_bytes(bytes[KIND..KIND + 4].try_into().unwrap());
    assert!(
        kind & 16 != 0 && kind & 128 != 0,
        "the header lock's mutex kind is {kind:#x}: not robust and process-shared \
         (its bytes {:02x?} look like PTHREAD_MUTEX_INITIALIZER)",
        &bytes[OFF_LOCK..OFF_LOCK + 40]
    );
}

#[test]
fn metadata_operations_from_several_processes_at_once_never_hang() {
    const TEST: &str = "metadata_operations_from_several_processes_at_once_never_hang";
    const PROCESSES: u32 = 3;
    const OPS: u32 = 2000;
    if let Some((_, name)) = role() {
        let me = role_arg();
        let store = Store::open(&name).unwrap();
        barrier(&store, "start", PROCESSES);
        let shared = store
            .get_or_insert_with("shared", || AtomicU32::new(0))
            .unwrap();
        for i in 0..OPS {
            let key = format!("{me}-{i}");
            store.insert(&key, i).unwrap();
            assert_eq!(*store.get::<u32>(&key).unwrap(), i);
            if i % 2 == 0 {
                store.remove(&key).unwrap();
            }
            shared.fetch_add(1, Ordering::Relaxed);
        }
        return;
    }

    let guard = StoreGuard::unique("hdr-contention");
    let store = Store::create(guard.name(), 4 << 20).unwrap();
    let children: Vec<_> = (0..PROCESSES)
        .map(|i| spawn_role_with_arg(TEST, "worker", guard.name(), &format!("p{i}")))
        .collect();
    Child::wait_all_success(children);
    let shared = store.get::<AtomicU32>("shared").unwrap();
    assert_eq!(shared.load(Ordering::SeqCst), PROCESSES * OPS);
    // start + shared + the odd keys each process kept.
    assert_eq!(
        store.stats().unwrap().objects,
        2 + (PROCESSES * OPS / 2) as u64
    );
    let check = store.check().unwrap();
    assert!(check.is_ok(), "{check}");
}

/// Set in a child: where [`Stall::init_in_place`] announces that it runs.
static STALLING: OnceLock<Handle<AtomicU32>> = OnceLock::new();

/// A value whose in-place initialisation (which the store runs after
/// allocating and before publishing) announces itself and then never
/// returns: the child is killed right there.
#[repr(C)]
struct Stall(u64);

// SAFETY: a plain u64 (no pointers, no drop glue, every bit pattern valid);
// LAYOUT is that of a u64 under another name. init_in_place touches nothing
// of the value (it only blocks).
unsafe impl ShmSafe for Stall {
    const LAYOUT: &'static TypeLayout = &TypeLayout::primitive::<u64>("Stall");
    // Its initialisation is not a no-op, so it must say so: the store runs
    // `init_in_place` only for immovable types.
    const IMMOVABLE: bool = true;

    unsafe fn init_in_place(_ptr: *mut Self) -> Result<(), Error> {
        if let Some(flag) = STALLING.get() {
            flag.store(std::process::id(), Ordering::Release);
            std::thread::sleep(PATIENCE * 2);
            panic!("the parent never killed this child");
        }
        Ok(())
    }
}

/// Child part: insert `count` `Stall`s as a slice into `store`, announcing
/// through the flag `stalling` in the control store when it blocks.
fn stall_in_insert(store: &str, count: usize) {
    let control = Store::open(&role_arg()).unwrap();
    let flag = control.get::<AtomicU32>("stalling").unwrap();
    assert!(STALLING.set(flag).is_ok());
    let store = Store::open(store).unwrap();
    let items: Vec<Stall> = (0..count as u64).map(Stall).collect();
    let _ = store.insert_slice_from_iter("stalled", items);
    unreachable!("insert_slice returned");
}

/// Parent part: kill the child once it blocks in `insert_slice("stalled")`,
/// then use the store from several threads of this process, under a
/// watchdog.
fn kill_inserter_and_use_the_store(test: &str) {
    let guard = StoreGuard::unique("hdr-crash");
    let control_guard = StoreGuard::unique("hdr-crash-ctl");
    let store = Store::create(guard.name(), 4 << 20).unwrap();
    store.insert_slice("kept", &[1u64, 2, 3]).unwrap();
    let control = Store::create(control_guard.name(), 1 << 20).unwrap();
    control.insert("stalling", AtomicU32::new(0)).unwrap();
    let stalling = control.get::<AtomicU32>("stalling").unwrap();

    let mut child = spawn_role_with_arg(test, "inserter", guard.name(), control_guard.name());
    let pid = child.pid();
    wait_until("the child blocks inside insert_slice", PATIENCE, || {
        stalling.load(Ordering::Acquire) == pid
    });
    child.kill9();
    let done = child.wait();
    assert!(!done.status.success(), "{done}");

    let s = store.clone();
    within_watchdog(
        "store operations after the inserter was killed",
        move || {
            assert_eq!(&*s.get_slice::<u64>("kept").unwrap(), &[1, 2, 3]);
            assert!(
                !s.contains("stalled").unwrap(),
                "a half-made object was published"
            );
            assert!(matches!(
                s.get_slice::<Stall>("stalled"),
                Err(Error::NotFound { .. })
            ));
            s.insert("after", 42u64).unwrap();
            // The name the dead process was inserting is free.
            s.insert_slice("stalled", &[7u64; 16]).unwrap();
            assert_eq!(s.stats().unwrap().objects, 3);
            let check = s.check().unwrap();
            assert!(check.is_ok(), "{check}");
        },
    );
    // Another process sees the same healthy store.
    let reopened = Store::open(guard.name()).unwrap();
    assert_eq!(*reopened.get::<u64>("after").unwrap(), 42);
}

#[test]
fn a_process_killed_while_holding_the_header_lock_blocks_nobody() {
    const TEST: &str = "a_process_killed_while_holding_the_header_lock_blocks_nobody";
    // 16 elements (128 bytes) are initialised with the header lock held.
    if let Some((_, name)) = role() {
        return stall_in_insert(&name, 16);
    }
    kill_inserter_and_use_the_store(TEST);
}

#[test]
fn a_process_killed_between_reserving_and_publishing_a_large_value_leaves_a_usable_store() {
    const TEST: &str =
        "a_process_killed_between_reserving_and_publishing_a_large_value_leaves_a_usable_store";
    // 16384 elements (128 KiB) are initialised between reserving (under the
    // header lock) and publishing (under it again), without holding it.
    if let Some((_, name)) = role() {
        return stall_in_insert(&name, 16384);
    }
    kill_inserter_and_use_the_store(TEST);
}
