//! quickstart: several processes sharing one shmstore.
//!
//! ```sh
//! cargo run --release --example quickstart
//! ```
//!
//! The program plays two roles:
//!
//! - the **parent** (run without arguments) creates a store, starts
//!   [`WORKERS`] copies of itself as worker processes, waits for them, reads
//!   back everything they wrote, checks the totals and removes the store;
//! - a **worker** (run as `quickstart worker N STORE`) opens the store the
//!   parent created and updates shared counters in it, then publishes a named
//!   result object.
//!
//! Everything the processes share lives in the store: plain `#[repr(C)]`
//! structs with `#[derive(ShmSafe)]`, atomics and [`ShmMutex`]es. No value is
//! serialised or copied between processes: each one maps the same bytes.

use std::process::{Child, Command, ExitCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shmstore::{Error, ShmMutex, ShmSafe, Store};

/// How many worker processes the parent starts.
const WORKERS: usize = 4;
/// How many times each worker bumps each shared counter.
const ROUNDS: u64 = 100_000;
/// How long the parent waits for its workers before giving up.
const WORKER_TIMEOUT: Duration = Duration::from_secs(30);
/// Size of the store. It is reserved sparsely: only pages that objects use
/// are committed in /dev/shm.
const CAPACITY: u64 = 4 << 20;

/// Shared bookkeeping, guarded by a `ShmMutex` so that all its fields change
/// together. `#[repr(C)]` fixes the layout; `#[derive(ShmSafe)]` checks that
/// every field may live in shared memory and records the layout, so a process
/// asking for another type gets `Error::TypeMismatch` instead of garbage.
#[derive(ShmSafe, Clone, Copy, Debug, Default)]
#[repr(C)]
struct Tally {
    /// Updates by all workers together.
    updates: u64,
    /// Updates by each worker (indexed by worker number).
    per_worker: [u64; WORKERS],
    /// The worker that made the latest update.
    last_worker: u32,
    /// Its process id.
    last_pid: u32,
}

/// What one worker reports when it is done, published under `result/N`.
#[derive(ShmSafe, Clone, Copy, Debug)]
#[repr(C)]
struct WorkerResult {
    /// The worker's process id.
    pid: u32,
    /// The worker's number, 0..WORKERS.
    worker: u32,
    /// Increments this worker made to each counter.
    increments: u64,
    /// The atomic counter's value right after this worker's last increment.
    hits_seen: u64,
    /// The mutex counter's value right after this worker's last increment.
    total_seen: u64,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let outcome = match args.get(1).map(String::as_str) {
        // `quickstart worker N STORE`: we were started by the parent.
        Some("worker") => match (args.get(2).and_then(|n| n.parse().ok()), args.get(3)) {
            (Some(index), Some(store)) => worker(index, store).map_err(Into::into),
            _ => Err("usage: quickstart worker N STORE".into()),
        },
        None => parent(),
        Some(other) => Err(format!("unknown argument {other:?}; run without arguments").into()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quickstart: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------
// Worker
// ---------------------------------------------------------------------------

/// One worker process: opens the store and updates the shared state.
fn worker(index: usize, store_name: &str) -> shmstore::Result<()> {
    // Open the store the parent created. Opening maps the segment and checks
    // its header; it does not copy anything.
    let store = Store::open(store_name)?;

    // `get_or_insert_with` returns the object if it exists, or stores the
    // initial value if not. However many processes race here, exactly one
    // value is published, and every worker gets a handle to that same one.
    // A `Handle<T>` dereferences to `&T` pointing straight into the segment.
    let hits = store.get_or_insert_with("hits", || AtomicU64::new(0))?;
    let total = store.get_or_insert_with("total", || ShmMutex::new(0u64))?;
    let tally = store.get_or_insert_with("tally", || ShmMutex::new(Tally::default()))?;

    let pid = std::process::id();
    let mut observed = Vec::new();
    let (mut hits_seen, mut total_seen) = (0, 0);
    for round in 0..ROUNDS {
        // 1. A lock-free counter: an atomic in shared memory.
        hits_seen = hits.fetch_add(1, Ordering::Relaxed) + 1;

        // 2. A counter behind a process-shared, robust mutex. `lock()?`
        //    turns "the previous owner died holding the lock" into
        //    `Error::OwnerDied`; the guard unlocks when dropped.
        {
            let mut guard = total.lock()?;
            *guard += 1;
            total_seen = *guard;
        }

        // 3. A whole struct updated under one lock.
        {
            let mut t = tally.lock()?;
            t.updates += 1;
            t.per_worker[index] += 1;
            t.last_worker = index as u32;
            t.last_pid = pid;
        }

        // Worker 0 samples the atomic counter now and then, to publish as a
        // slice below: the jumps show the other processes' increments.
        if index == 0 && round % (ROUNDS / 8) == 0 {
            observed.push(hits_seen);
        }
    }

    // Publish this worker's result under its own name. `insert` copies the
    // value into the segment; it fails with `AlreadyExists` if the name is
    // taken.
    store.insert(
        &format!("result/{index}"),
        WorkerResult {
            pid,
            worker: index as u32,
            increments: ROUNDS,
            hits_seen,
            total_seen,
        },
    )?;
    if index == 0 {
        // Slices of any ShmSafe type can be stored too.
        store.insert_slice("worker0/observed", &observed)?;
    }
    Ok(())
    // Dropping the handles and the store unmaps the segment; the store itself
    // stays until it is unlinked.
}

// ---------------------------------------------------------------------------
// Parent
// ---------------------------------------------------------------------------

/// Unlinks the store when dropped, so that it is removed from /dev/shm on
/// every path out of `parent`: success, error or panic.
struct UnlinkOnDrop(String);

impl Drop for UnlinkOnDrop {
    fn drop(&mut self) {
        if let Err(e) = Store::unlink(&self.0) {
            eprintln!("quickstart: could not unlink store {}: {e}", self.0);
        }
    }
}

/// Kills and reaps worker processes that are still running when dropped
/// (only on an error path: normally every worker has exited by then).
struct Workers(Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

type AnyResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

fn parent() -> AnyResult {
    // A unique name, so that several runs never collide. Store names are
    // POSIX shm names: this one appears as /dev/shm/shmstore-quickstart-<pid>.
    let name = format!("shmstore-quickstart-{}", std::process::id());
    let store = Store::create(&name, CAPACITY)?;
    let _unlink = UnlinkOnDrop(name.clone());
    println!("created store /{name} ({} KiB reserved)", CAPACITY >> 10);

    // Start the workers: this same executable, with arguments telling it
    // which worker it is and which store to open.
    let exe = std::env::current_exe()?;
    let mut workers = Workers(Vec::new());
    for index in 0..WORKERS {
        let child = Command::new(&exe)
            .args(["worker", &index.to_string(), &name])
            .spawn()?;
        workers.0.push(child);
    }
    println!("started {WORKERS} workers, {ROUNDS} rounds each");

    // Wait for all of them, but not forever.
    let started = Instant::now();
    let mut failed = Vec::new();
    for (index, child) in workers.0.iter_mut().enumerate() {
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if started.elapsed() > WORKER_TIMEOUT {
                return Err(
                    format!("worker {index} still running after {WORKER_TIMEOUT:?}").into(),
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        if !status.success() {
            failed.push(format!("worker {index}: {status}"));
        }
    }
    if !failed.is_empty() {
        return Err(format!("workers failed: {}", failed.join(", ")).into());
    }
    println!("all workers done in {:.1?}\n", started.elapsed());

    // Read back what each worker published. `get::<T>` checks that the
    // object was stored as a `T` (same layout fingerprint).
    println!("worker  pid       increments  hits seen at end  total seen at end");
    for index in 0..WORKERS {
        let r = store.get::<WorkerResult>(&format!("result/{index}"))?;
        println!(
            "{:<7} {:<9} {:<11} {:<17} {}",
            r.worker, r.pid, r.increments, r.hits_seen, r.total_seen
        );
    }
    let observed = store.get_slice::<u64>("worker0/observed")?;
    println!(
        "worker 0 sampled the atomic counter at: {:?}",
        &observed[..]
    );

    // The shared counters: every increment of every worker must be there.
    let expected = WORKERS as u64 * ROUNDS;
    let hits = store.get::<AtomicU64>("hits")?.load(Ordering::Relaxed);
    let (total, tally) = read_locked(&store)?;
    println!();
    println!("atomic counter \"hits\":  {hits} (expected {expected})");
    println!("mutex counter \"total\":  {total} (expected {expected})");
    println!(
        "mutex struct \"tally\":   {} updates, per worker {:?}, last by worker {} (pid {})",
        tally.updates, tally.per_worker, tally.last_worker, tally.last_pid
    );
    let per_worker_ok = tally.per_worker.iter().all(|&n| n == ROUNDS);
    let ok = hits == expected && total == expected && tally.updates == expected && per_worker_ok;

    // Asking for the wrong type is an error, not a misread: "hits" holds an
    // AtomicU64, and a u32 has another layout. The message shows both.
    println!();
    match store.get::<u32>("hits") {
        Err(e @ Error::TypeMismatch { .. }) => {
            println!("get::<u32>(\"hits\") fails as it should:\n{e}")
        }
        Err(e) => return Err(format!("expected a TypeMismatch, got: {e}").into()),
        Ok(_) => return Err("get::<u32>(\"hits\") unexpectedly succeeded".into()),
    }

    // Space accounting and a full consistency check of the store.
    let s = store.stats()?;
    println!();
    println!(
        "stats: {} objects; capacity {} KiB, committed {} KiB, used {} B, free {} KiB",
        s.objects,
        s.capacity >> 10,
        s.committed >> 10,
        s.used,
        s.free >> 10
    );
    let report = store.check()?;
    println!("check: {report}");
    for e in store.entries()? {
        println!(
            "  {:<18} {:<22} {:>4} bytes{}",
            e.name,
            e.type_name,
            e.size,
            e.len.map(|n| format!(", {n} elements")).unwrap_or_default()
        );
    }

    if !report.is_ok() {
        return Err("the store's consistency check found problems".into());
    }
    if !ok {
        return Err("counter totals do not match".into());
    }
    println!("\nOK: all counters add up; store /{name} removed");
    Ok(())
    // `_unlink` drops here (and on every early return above): the store's
    // name is removed from /dev/shm.
}

/// Reads the two mutex-guarded objects. A separate function returning
/// `shmstore::Result`, so that `lock()?` converts a lock error into
/// `shmstore::Error`.
fn read_locked(store: &Store) -> shmstore::Result<(u64, Tally)> {
    let total = store.get::<ShmMutex<u64>>("total")?;
    let tally = store.get::<ShmMutex<Tally>>("tally")?;
    let total_value = *total.lock()?;
    let tally_value = *tally.lock()?;
    Ok((total_value, tally_value))
}
