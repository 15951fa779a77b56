//! jobs: processes sharing a growable job list, one of them killed in the
//! middle of an update.
//!
//! ```sh
//! cargo run --release --example jobs
//! ```
//!
//! The store holds one object, `"board"`: a [`ShmMutex`] over a [`Board`],
//! which holds a [`ShmVec`] of jobs (each with a [`ShmString`] name and a
//! `ShmVec` of tags) and a [`ShmMap`] from job name to the job's position.
//! Everything is allocated inside the store and found by offsets, so every
//! process reads it in place, wherever it maps the segment.
//!
//! 1. [`WORKERS`] worker processes (`jobs worker N STORE`) each add
//!    [`JOBS_PER_WORKER`] jobs, taking the mutex for each.
//! 2. A victim process (`jobs victim STORE`) takes the mutex, adds one job,
//!    then builds another — its name and tags are allocated in the store
//!    but not yet in the list — and is killed (SIGKILL) by the parent
//!    right there, holding the mutex.
//! 3. The parent, as the survivor, gets [`Error::OwnerDied`] from `lock`,
//!    recovers the mutex, checks that the list and the index agree (every
//!    job that was added is there, whole, and nothing else), and marks the
//!    state consistent.
//! 4. `check()` reports the blocks the victim allocated and never linked
//!    (unreachable: no object reaches them), and `collect()` frees them,
//!    since the process that held them is dead. The store is then exactly
//!    as full as its contents need.

use std::process::{Child, Command, ExitCode};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use shmstore::{Error, ShmMap, ShmMutex, ShmSafe, ShmString, ShmVec, Store};

/// Worker processes adding jobs at the same time.
const WORKERS: usize = 3;
/// Jobs each worker adds.
const JOBS_PER_WORKER: u32 = 200;
/// How long the parent waits for any child before giving up.
const PATIENCE: Duration = Duration::from_secs(60);

/// One job. Its name and tags live in the store, in blocks of their own
/// that the job owns: removing the job (or the whole board) frees them.
#[derive(ShmSafe)]
#[repr(C)]
struct Job {
    /// `worker * 1000 + n`; the victim's jobs are 9000 and up.
    id: u32,
    /// Set when a worker finishes the job (here: never; see `done_jobs`).
    done: u32,
    name: ShmString,
    tags: ShmVec<u32>,
}

/// The shared state, behind one mutex.
#[derive(ShmSafe)]
#[repr(C)]
struct Board {
    jobs: ShmVec<Job>,
    /// Job name -> position in `jobs`.
    by_name: ShmMap<ShmString, u64>,
}

type Shared = ShmMutex<Board>;

fn job_name(id: u32) -> String {
    format!("job-{id:05}")
}

/// Adds a job to the board: the job is built outside the lock (its name
/// and tags allocated in the store, held by this process until they are
/// linked), then pushed and indexed under it.
fn add_job(store: &Store, board: &Shared, id: u32) -> shmstore::Result<()> {
    let job = Job {
        id,
        done: 0,
        name: ShmString::from_str_in(store, &job_name(id))?,
        tags: ShmVec::from_iter_in(store, (0..id % 7).map(|t| id + t))?,
    };
    let mut b = board.lock()?;
    let at = b.jobs.len()? as u64;
    b.jobs.push(job)?;
    // The map allocates its own copy of the key.
    b.by_name.insert(&job_name(id), at)?;
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let outcome = match (args.get(1).map(String::as_str), args.get(2), args.get(3)) {
        (Some("worker"), Some(n), Some(store)) => match n.parse() {
            Ok(n) => worker(n, store).map_err(Into::into),
            Err(_) => Err("usage: jobs worker N STORE".into()),
        },
        (Some("victim"), Some(store), None) => victim(store).map_err(Into::into),
        (None, _, _) => parent(),
        _ => Err("run without arguments".into()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jobs: {e}");
            ExitCode::FAILURE
        }
    }
}

fn worker(n: u32, store_name: &str) -> shmstore::Result<()> {
    let store = Store::open(store_name)?;
    let board = store.get::<Shared>("board")?;
    for i in 0..JOBS_PER_WORKER {
        add_job(&store, &board, n * 1000 + i)?;
    }
    Ok(())
}

/// Adds one job, then starts another and waits, holding the mutex, to be
/// killed.
fn victim(store_name: &str) -> shmstore::Result<()> {
    let store = Store::open(store_name)?;
    let board = store.get::<Shared>("board")?;
    let ready = store.get::<AtomicU32>("victim-ready")?;
    add_job(&store, &board, 9000)?;
    let _held = board.lock()?;
    // Allocated in the store, reachable from no object: what the kill
    // orphans.
    let _half_built = Job {
        id: 9001,
        done: 0,
        name: ShmString::from_str_in(&store, &"never linked ".repeat(40))?,
        tags: ShmVec::from_iter_in(&store, 0..500)?,
    };
    ready.store(1, Ordering::Release);
    // The parent kills us now. Not forever, if it does not.
    std::thread::sleep(PATIENCE);
    Err(Error::InvalidArgument {
        reason: "the victim was not killed".into(),
    })
}

/// Unlinks the store and kills leftover children on every path out.
struct Cleanup {
    name: String,
    children: Vec<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &mut self.children {
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if let Err(e) = Store::unlink(&self.name) {
            eprintln!("jobs: could not unlink store {}: {e}", self.name);
        }
    }
}

type AnyResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

fn wait(child: &mut Child, what: &str) -> AnyResult<std::process::ExitStatus> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if started.elapsed() > PATIENCE {
            return Err(format!("{what} still running after {PATIENCE:?}").into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn parent() -> AnyResult {
    let name = format!("shmstore-jobs-{}", std::process::id());
    let store = Store::create(&name, 8 << 20)?;
    let mut cleanup = Cleanup {
        name: name.clone(),
        children: Vec::new(),
    };
    store.insert(
        "board",
        ShmMutex::new(Board {
            jobs: ShmVec::new(),
            by_name: ShmMap::new(),
        }),
    )?;
    store.insert("victim-ready", AtomicU32::new(0))?;
    let exe = std::env::current_exe()?;

    // 1. Workers add jobs concurrently.
    let started = Instant::now();
    for n in 0..WORKERS {
        let child = Command::new(&exe)
            .args(["worker", &n.to_string(), &name])
            .spawn()?;
        cleanup.children.push(child);
    }
    for (n, child) in cleanup.children.iter_mut().enumerate() {
        let status = wait(child, &format!("worker {n}"))?;
        if !status.success() {
            return Err(format!("worker {n}: {status}").into());
        }
    }
    println!(
        "{WORKERS} workers added {} jobs in {:.1?}",
        WORKERS as u32 * JOBS_PER_WORKER,
        started.elapsed()
    );

    // 2. The victim: killed while it holds the mutex, in the middle of
    //    adding a job.
    let mut victim = Command::new(&exe).args(["victim", &name]).spawn()?;
    let ready = store.get::<AtomicU32>("victim-ready")?;
    let waited = Instant::now();
    while ready.load(Ordering::Acquire) == 0 {
        if let Some(status) = victim.try_wait()? {
            return Err(format!("the victim exited early: {status}").into());
        }
        if waited.elapsed() > PATIENCE {
            return Err("the victim never got ready".into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    victim.kill()?;
    let status = wait(&mut victim, "the victim")?;
    println!(
        "killed the victim (pid {}) mid-update: {status}",
        victim.id()
    );

    let before = store.check()?;
    println!(
        "check: {} unreachable blocks ({} bytes) that no object reaches",
        before.unreachable_blocks, before.unreachable_bytes
    );

    // 3. The survivor: the mutex says its owner died; the data is checked
    //    before it is trusted again.
    let board = store.get::<Shared>("board")?;
    let mut b = match board.lock() {
        Err(Error::OwnerDied { .. }) => {
            println!("lock: the owner died holding it; recovering");
            board.lock_recover()?
        }
        Err(e) => return Err(e.into()),
        Ok(_) => return Err("the victim's death went unnoticed".into()),
    };
    let jobs = b.jobs.len()?;
    let expected = WORKERS * JOBS_PER_WORKER as usize + 1;
    if jobs != expected || b.by_name.len()? != expected {
        return Err(format!(
            "{jobs} jobs and {} index entries, expected {expected}",
            b.by_name.len()?
        )
        .into());
    }
    for (at, job) in b.jobs.as_slice()?.iter().enumerate() {
        let name = job.name.as_str()?;
        if *name != job_name(job.id) || job.tags.len()? != (job.id % 7) as usize {
            return Err(format!("job {at} is torn: {} {name:?}", job.id).into());
        }
        if b.by_name.get(&*name)?.as_deref() != Some(&(at as u64)) {
            return Err(format!("the index disagrees about {name}").into());
        }
    }
    b.mark_consistent();
    drop(b);
    println!("the list and the index agree: {jobs} whole jobs, the victim's last one absent");

    // 4. What the victim orphaned is reclaimed.
    let collected = store.collect()?;
    let after = store.check()?;
    println!(
        "collect: freed {} blocks ({} bytes); check now: {} unreachable, {}",
        collected.freed_blocks,
        collected.freed_bytes,
        after.unreachable_blocks,
        if after.is_ok() { "clean" } else { "PROBLEMS" }
    );
    if before.unreachable_blocks == 0
        || collected.freed_blocks != before.unreachable_blocks
        || after.unreachable_blocks != 0
        || !after.is_ok()
    {
        return Err(format!("reclaiming failed: {after}").into());
    }
    drop((board, ready, store));
    drop(cleanup);
    println!("ok");
    Ok(())
}
