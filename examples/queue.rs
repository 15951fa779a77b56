//! queue: producer and consumer processes passing typed jobs through a
//! `ShmQueue`; one producer is killed mid-stream, and the consumer's count
//! is still exact for every job whose push was committed.
//!
//! ```sh
//! cargo run --release --example queue
//! ```
//!
//! The program starts two producers and a consumer (itself, re-executed
//! with a role argument). Each producer pushes numbered jobs and, after each
//! `push` returns `Ok`, stores the count it has committed in the store. The
//! parent kills producer 1 with `SIGKILL` part-way, lets producer 0
//! finish, then tells the consumer (through a `ShmEvent`) to stop once the
//! queue is empty. The consumer checks each job's checksum and that every
//! producer's jobs arrive in order, and counts them.
//!
//! The result: for every producer, the consumer received exactly the jobs
//! the producer committed — plus, for the killed one, possibly the job it
//! was pushing when it died (its push may have completed without the
//! producer living to record it). Nothing is lost, nothing duplicated, and
//! the killed producer's half-written slot, if any, does not stall the
//! queue: it is skipped.

use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shmstore::{ShmEvent, ShmQueue, ShmSafe, Store};

type AnyResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// A job: who made it, its number, and a checksum of both.
#[derive(ShmSafe, Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
struct Job {
    producer: u32,
    seq: u32,
    checksum: u64,
}

impl Job {
    fn new(producer: u32, seq: u32) -> Job {
        Job {
            producer,
            seq,
            checksum: checksum(producer, seq),
        }
    }
}

fn checksum(producer: u32, seq: u32) -> u64 {
    ((producer as u64) << 32 | seq as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5eed
}

type Jobs = ShmQueue<Job, 64>;

const PRODUCERS: u32 = 2;
/// Jobs each producer means to push.
const JOBS: u32 = 200_000;
/// The producer that is killed, and after how many committed jobs.
const VICTIM: u32 = 1;
const KILL_AFTER: u64 = 50_000;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["producer", id, store] => producer(id.parse().unwrap_or(0), store),
        ["consumer", store] => consumer(store),
        [] => parent(),
        _ => Err("usage: queue [producer ID STORE | consumer STORE]".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("queue: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Pushes `JOBS` jobs, recording after each one that it was committed.
fn producer(id: u32, name: &str) -> AnyResult {
    let store = Store::open(name)?;
    let jobs = store.get::<Jobs>("jobs")?;
    let committed = store.get::<AtomicU64>(&format!("committed-{id}"))?;
    for seq in 0..JOBS {
        jobs.push(Job::new(id, seq))?;
        committed.store(seq as u64 + 1, Ordering::Release);
    }
    Ok(())
}

/// Pops until told to stop and the queue is empty; prints, per producer,
/// how many jobs it received.
fn consumer(name: &str) -> AnyResult {
    let store = Store::open(name)?;
    let jobs = store.get::<Jobs>("jobs")?;
    let done = store.get::<ShmEvent>("done")?;
    let mut received = vec![0u64; PRODUCERS as usize];
    loop {
        let Some(job) = jobs.try_pop_for(Duration::from_millis(100))? else {
            if done.generation() > 0 {
                break;
            }
            continue;
        };
        let p = job.producer as usize;
        if p >= received.len() || job.checksum != checksum(job.producer, job.seq) {
            return Err(format!("a damaged job: {job:?}").into());
        }
        if job.seq as u64 != received[p] {
            return Err(format!(
                "producer {p}'s job {} arrived after {} of its jobs: out of order or lost",
                job.seq, received[p]
            )
            .into());
        }
        received[p] += 1;
    }
    for (p, n) in received.iter().enumerate() {
        println!("{p} {n}");
    }
    Ok(())
}

fn spawn(args: &[&str]) -> AnyResult<std::process::Child> {
    Ok(Command::new(std::env::current_exe()?)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()?)
}

/// Kills and reaps, on every path out, the children still running (an
/// early error must not leave a consumer waiting for ever).
struct Children(Vec<std::process::Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Removes the store on every path out.
struct Unlink(String);

impl Drop for Unlink {
    fn drop(&mut self) {
        let _ = Store::unlink(&self.0);
    }
}

fn parent() -> AnyResult {
    let name = format!("shmstore-example-queue-{}", std::process::id());
    let store = Store::create(&name, 1 << 20)?;
    let _unlink = Unlink(name.clone());
    store.insert("jobs", Jobs::new())?;
    let done = store.get_or_insert_with("done", ShmEvent::new)?;
    let committed: Vec<_> = (0..PRODUCERS)
        .map(|id| store.get_or_insert_with(&format!("committed-{id}"), || AtomicU64::new(0)))
        .collect::<Result<_, _>>()?;

    let mut consumer = Children(vec![spawn(&["consumer", &name])?]);
    let mut producers = Children(Vec::new());
    for id in 0..PRODUCERS {
        producers
            .0
            .push(spawn(&["producer", &id.to_string(), &name])?);
    }
    let producers = &mut producers.0;
    println!("2 producers push {JOBS} jobs each; producer {VICTIM} is killed after {KILL_AFTER}.");

    // Kill the victim mid-stream.
    let deadline = Instant::now() + Duration::from_secs(120);
    while committed[VICTIM as usize].load(Ordering::Acquire) < KILL_AFTER {
        if Instant::now() > deadline {
            return Err("the producer made no progress".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    producers[VICTIM as usize].kill()?;
    producers[VICTIM as usize].wait()?;
    let at_death = committed[VICTIM as usize].load(Ordering::Acquire);
    println!("killed producer {VICTIM} (SIGKILL) after {at_death} committed jobs");

    // The others finish; then the consumer drains the queue and stops.
    for (id, p) in producers.iter_mut().enumerate() {
        if id as u32 != VICTIM && !p.wait()?.success() {
            return Err(format!("producer {id} failed").into());
        }
    }
    done.notify();
    let out = consumer.0.remove(0).wait_with_output()?;
    if !out.status.success() {
        return Err("the consumer failed".into());
    }
    let mut exact = true;
    for line in String::from_utf8(out.stdout)?.lines() {
        let mut w = line.split_whitespace().map(str::parse::<u64>);
        let (Some(Ok(p)), Some(Ok(received))) = (w.next(), w.next()) else {
            return Err(format!("unexpected consumer output {line:?}").into());
        };
        let pushed = committed[p as usize].load(Ordering::Acquire);
        let verdict = if received == pushed {
            "exact".to_string()
        } else if p as u32 == VICTIM && received == pushed + 1 {
            "exact, plus the job in flight when it died (pushed, not yet recorded)".to_string()
        } else {
            exact = false;
            format!("WRONG: expected {pushed}")
        };
        println!("producer {p}: committed {pushed}, consumer received {received}: {verdict}");
    }
    if !exact {
        return Err("the counts do not match".into());
    }
    println!("every committed job was received exactly once, in order per producer");
    Ok(())
}
