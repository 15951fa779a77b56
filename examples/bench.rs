//! bench: the benchmark contract of shmstore.
//!
//! ```sh
//! cargo run --release --example bench               # every workload
//! cargo run --release --example bench -- lookup     # one workload
//! ```
//!
//! Prints exactly one JSON line per workload on stdout:
//!
//! ```text
//! {"impl":"shmstore","workload":"insert","n":1000000,"ns_per_op":123.4,"ok":true,"committed_bytes":67108864}
//! ```
//!
//! `gb_per_s` (10^9 bytes per second) is added for bandwidth workloads (their
//! `n` counts `u64` elements, `ns_per_op` is per element), `ok` wherever a
//! total is checked, and `committed_bytes` (from `Store::stats`) for
//! `insert`. Diagnostics go to stderr. Each workload uses its own store,
//! named after the workload and the pid, unlinked at the end on every path.
//! Nothing here asserts on timings.
//!
//! Workloads that need a second process re-execute this binary as
//! `bench --child KIND STORE`.

use std::hint::black_box;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use shmstore::{ShmMap, ShmMutex, ShmVec, Store};

type AnyResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

const WORKLOADS: &[&str] = &[
    "insert",
    "lookup",
    "alloc_free",
    "lock_uncontended",
    "counter_2proc",
    "read_bandwidth",
    "read_bandwidth_local",
    "vec_push",
    "map_insert",
    "map_lookup",
    "pingpong_2proc",
    "queue_2proc",
    "rwlock_read_uncontended",
    "semaphore_2proc",
];

/// Elements pushed in `vec_push`; entries in `map_insert`/`map_lookup`.
const CONTAINER_OPS: u64 = 1_000_000;
/// Map keys: `i * 2^64/phi` (odd, so distinct), as the Boost peer does.
const KEY_MUL: u64 = 0x9E37_79B9_7F4A_7C15;

/// Objects in `insert` and `lookup`.
const OBJECTS: u64 = 1_000_000;
/// Allocations per round in `alloc_free`, their size, and the rounds.
const ALLOCS: usize = 1_000_000;
const ALLOC_SIZE: u64 = 64;
const ALLOC_ROUNDS: usize = 3;
/// Lock+unlock pairs in `lock_uncontended`.
const LOCKS: u64 = 10_000_000;
/// Increments per process in `counter_2proc`.
const INCREMENTS: u64 = 5_000_000;
/// Bytes summed in the bandwidth workloads.
const BANDWIDTH_BYTES: usize = 1 << 30;
/// How long a parent waits for a child before giving up.
const CHILD_TIMEOUT: Duration = Duration::from_secs(120);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("--child") => match (args.get(1), args.get(2)) {
            (Some(kind), Some(store)) => child(kind, store),
            _ => Err("usage: bench --child KIND STORE".into()),
        },
        Some(w) => run(w),
        None => WORKLOADS.iter().try_for_each(|w| run(w)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(workload: &str) -> AnyResult {
    match workload {
        "insert" => insert(),
        "lookup" => lookup(),
        "alloc_free" => alloc_free(),
        "lock_uncontended" => lock_uncontended(),
        "counter_2proc" => counter_2proc(),
        "read_bandwidth" => read_bandwidth(),
        "read_bandwidth_local" => read_bandwidth_local(),
        "vec_push" => vec_push(),
        "map_insert" => map_insert(),
        "map_lookup" => map_lookup(),
        "pingpong_2proc" => pingpong_2proc(),
        "queue_2proc" => queue_2proc(),
        "rwlock_read_uncontended" => rwlock_read_uncontended(),
        "semaphore_2proc" => semaphore_2proc(),
        other => Err(format!("unknown workload {other:?}; one of {WORKLOADS:?}").into()),
    }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// One result line. `extra` is appended verbatim (`,"ok":true` ...).
fn report(workload: &str, n: u64, elapsed: Duration, ops: u64, extra: &str) {
    report_impl("shmstore", workload, n, elapsed, ops, extra);
}

/// One result line for implementation `imp` (a baseline measured in the
/// same run, beside shmstore's own line).
fn report_impl(imp: &str, workload: &str, n: u64, elapsed: Duration, ops: u64, extra: &str) {
    let ns_per_op = elapsed.as_nanos() as f64 / ops as f64;
    println!(
        "{{\"impl\":\"{imp}\",\"workload\":\"{workload}\",\"n\":{n},\"ns_per_op\":{ns_per_op:.2}{extra}}}"
    );
}

/// A store that is unlinked when dropped, on every path out of a workload.
struct BenchStore {
    store: Store,
    name: String,
}

impl BenchStore {
    fn create(workload: &str, capacity: u64) -> AnyResult<BenchStore> {
        let name = format!("shmstore-bench-{workload}-{}", std::process::id());
        let store = Store::create(&name, capacity)?;
        Ok(BenchStore { store, name })
    }
}

impl Drop for BenchStore {
    fn drop(&mut self) {
        if let Err(e) = Store::unlink(&self.name) {
            eprintln!("bench: could not unlink {}: {e}", self.name);
        }
    }
}

/// A child process that is killed and reaped if still running when dropped.
struct ChildGuard(Child);

impl ChildGuard {
    fn spawn(kind: &str, store: &str, stdout: Stdio) -> AnyResult<ChildGuard> {
        let child = Command::new(std::env::current_exe()?)
            .args(["--child", kind, store])
            .stdout(stdout)
            .spawn()?;
        Ok(ChildGuard(child))
    }

    /// Waits (bounded) for the child to exit successfully.
    fn wait(&mut self) -> AnyResult {
        let deadline = Instant::now() + CHILD_TIMEOUT;
        loop {
            if let Some(status) = self.0.try_wait()? {
                return if status.success() {
                    Ok(())
                } else {
                    Err(format!("child failed: {status}").into())
                };
            }
            if Instant::now() > deadline {
                return Err(format!("child still running after {CHILD_TIMEOUT:?}").into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// xorshift64*: a tiny deterministic PRNG for shuffling.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Fisher–Yates.
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

fn keys() -> Vec<String> {
    (0..OBJECTS).map(|i| format!("key{i}")).collect()
}

/// Spins (yielding) until `cond` holds, for at most `CHILD_TIMEOUT`.
fn spin_until(what: &str, cond: impl Fn() -> bool) -> AnyResult {
    let deadline = Instant::now() + CHILD_TIMEOUT;
    while !cond() {
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}").into());
        }
        std::thread::yield_now();
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------

fn insert() -> AnyResult {
    let bs = BenchStore::create("insert", 256 << 20)?;
    let keys = keys();
    let start = Instant::now();
    for (i, key) in keys.iter().enumerate() {
        bs.store.insert(key, i as u64)?;
    }
    let elapsed = start.elapsed();
    let stats = bs.store.stats()?;
    let ok = stats.objects == OBJECTS;
    eprintln!("insert: {stats:?}");
    report(
        "insert",
        OBJECTS,
        elapsed,
        OBJECTS,
        &format!(",\"ok\":{ok},\"committed_bytes\":{}", stats.committed),
    );
    Ok(())
}

fn lookup() -> AnyResult {
    let bs = BenchStore::create("lookup", 256 << 20)?;
    let keys = keys();
    for (i, key) in keys.iter().enumerate() {
        bs.store.insert(key, i as u64)?;
    }
    let mut order: Vec<usize> = (0..keys.len()).collect();
    XorShift(0x9e37_79b9_7f4a_7c15).shuffle(&mut order);
    let mut sum = 0u64;
    let start = Instant::now();
    for &i in &order {
        // The handle is dropped at the end of each iteration.
        let h = bs.store.get::<u64>(black_box(&keys[i]))?;
        sum = sum.wrapping_add(*h);
    }
    let elapsed = start.elapsed();
    let ok = black_box(sum) == OBJECTS * (OBJECTS - 1) / 2;
    report(
        "lookup",
        OBJECTS,
        elapsed,
        OBJECTS,
        &format!(",\"ok\":{ok}"),
    );
    Ok(())
}

fn alloc_free() -> AnyResult {
    let bs = BenchStore::create("alloc_free", 256 << 20)?;
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let mut offsets = Vec::with_capacity(ALLOCS);
    let mut elapsed = Duration::ZERO;
    for _ in 0..ALLOC_ROUNDS {
        offsets.clear();
        let start = Instant::now();
        for _ in 0..ALLOCS {
            offsets.push(bs.store.alloc_raw(black_box(ALLOC_SIZE))?);
        }
        elapsed += start.elapsed();
        rng.shuffle(&mut offsets); // not timed
        let start = Instant::now();
        for &off in &offsets {
            // SAFETY: `off` came from `alloc_raw` on this store in this
            // round, is freed once, and nothing refers to it.
            unsafe { bs.store.free_raw(off) }?;
        }
        elapsed += start.elapsed();
    }
    let stats = bs.store.stats()?;
    let check = bs.store.check()?;
    eprintln!("alloc_free: after the rounds {stats:?}; check: {check}");
    let ok = check.is_ok() && stats.objects == 0;
    let pairs = (ALLOCS * ALLOC_ROUNDS) as u64;
    report(
        "alloc_free",
        pairs,
        elapsed,
        pairs,
        &format!(",\"ok\":{ok}"),
    );
    Ok(())
}

fn lock_uncontended() -> AnyResult {
    let bs = BenchStore::create("lock_uncontended", 1 << 20)?;
    bs.store.insert("lock", ShmMutex::new(0u64))?;
    let m = bs.store.get::<ShmMutex<u64>>("lock")?;
    let start = Instant::now();
    for _ in 0..LOCKS {
        let mut guard = m.lock()?;
        *guard += 1;
    }
    let elapsed = start.elapsed();
    let ok = *m.lock()? == LOCKS;
    report(
        "lock_uncontended",
        LOCKS,
        elapsed,
        LOCKS,
        &format!(",\"ok\":{ok}"),
    );
    raw_robust_lock_baseline()
}

/// The same loop over a bare robust, process-shared pthread mutex in a
/// shared anonymous mapping: the baseline the DESIGN's lock target is
/// stated against ("within 1.1x of a raw robust pthread mutex").
fn raw_robust_lock_baseline() -> AnyResult {
    #[repr(C)]
    struct Raw {
        mutex: libc::pthread_mutex_t,
        value: u64,
    }
    let len = std::mem::size_of::<Raw>();
    // SAFETY: an anonymous shared mapping of `len` bytes; the result is
    // checked against MAP_FAILED before use.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error().into());
    }
    let raw = p.cast::<Raw>();
    // SAFETY: `raw` points at `len` zeroed, writable, aligned bytes that
    // only this thread uses; the attribute is initialised before use and
    // destroyed after; the mapping is unmapped once, at the end.
    let (elapsed, ok) = unsafe {
        let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
        libc::pthread_mutexattr_init(&mut attr);
        libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
        libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST);
        let m = std::ptr::addr_of_mut!((*raw).mutex);
        let rc = libc::pthread_mutex_init(m, &attr);
        libc::pthread_mutexattr_destroy(&mut attr);
        if rc != 0 {
            libc::munmap(p, len);
            return Err(std::io::Error::from_raw_os_error(rc).into());
        }
        let value = std::ptr::addr_of_mut!((*raw).value);
        let start = Instant::now();
        for _ in 0..LOCKS {
            libc::pthread_mutex_lock(m);
            value.write(black_box(value.read()) + 1);
            libc::pthread_mutex_unlock(m);
        }
        let elapsed = start.elapsed();
        let ok = value.read() == LOCKS;
        libc::pthread_mutex_destroy(m);
        libc::munmap(p, len);
        (elapsed, ok)
    };
    report_impl(
        "pthread_robust",
        "lock_uncontended",
        LOCKS,
        elapsed,
        LOCKS,
        &format!(",\"ok\":{ok}"),
    );
    Ok(())
}

/// Objects of `counter_2proc`: the counter, a ready count, a start flag and
/// a done count.
fn counter_objects(store: &Store) -> shmstore::Result<CounterObjects> {
    Ok(CounterObjects {
        counter: store.get_or_insert_with("counter", || ShmMutex::new(0u64))?,
        ready: store.get_or_insert_with("ready", || AtomicU32::new(0))?,
        start: store.get_or_insert_with("start", || AtomicU32::new(0))?,
        done: store.get_or_insert_with("done", || AtomicU32::new(0))?,
    })
}

struct CounterObjects {
    counter: shmstore::Handle<ShmMutex<u64>>,
    ready: shmstore::Handle<AtomicU32>,
    start: shmstore::Handle<AtomicU32>,
    done: shmstore::Handle<AtomicU32>,
}

impl CounterObjects {
    fn increment(&self) -> shmstore::Result<()> {
        for _ in 0..INCREMENTS {
            *self.counter.lock()? += 1;
        }
        self.done.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }
}

fn counter_2proc() -> AnyResult {
    let bs = BenchStore::create("counter_2proc", 1 << 20)?;
    let objs = counter_objects(&bs.store)?;
    let mut child = ChildGuard::spawn("counter", &bs.name, Stdio::null())?;
    spin_until("the child to be ready", || {
        objs.ready.load(Ordering::Acquire) == 1
    })?;
    let start = Instant::now();
    objs.start.store(1, Ordering::Release);
    objs.increment()?;
    spin_until("the child to finish", || {
        objs.done.load(Ordering::Acquire) == 2
    })?;
    let elapsed = start.elapsed();
    child.wait()?;
    let total = *objs.counter.lock()?;
    let ok = total == 2 * INCREMENTS;
    if !ok {
        eprintln!("counter_2proc: total {total}, expected {}", 2 * INCREMENTS);
    }
    report(
        "counter_2proc",
        2 * INCREMENTS,
        elapsed,
        2 * INCREMENTS,
        &format!(",\"ok\":{ok}"),
    );
    Ok(())
}

fn bandwidth_line(workload: &str, elapsed: Duration, ok: bool, extra: &str) {
    let n = (BANDWIDTH_BYTES / 8) as u64;
    let gb_per_s = BANDWIDTH_BYTES as f64 / elapsed.as_nanos() as f64;
    report(
        workload,
        n,
        elapsed,
        n,
        &format!(",\"gb_per_s\":{gb_per_s:.3},\"ok\":{ok}{extra}"),
    );
}

/// `0 + 1 + ... + (n - 1)`: the sum of the bandwidth workloads' data.
fn expected_sum() -> u64 {
    let n = (BANDWIDTH_BYTES / 8) as u64;
    n * (n - 1) / 2
}

fn source_vec() -> Vec<u64> {
    (0..(BANDWIDTH_BYTES / 8) as u64).collect()
}

fn sum(items: &[u64]) -> u64 {
    items.iter().fold(0u64, |a, &b| a.wrapping_add(b))
}

fn read_bandwidth() -> AnyResult {
    let bs = BenchStore::create("read_bandwidth", BANDWIDTH_BYTES as u64 + (100 << 20))?;
    {
        let source = source_vec();
        bs.store.insert_slice("data", &source)?;
    } // the local copy is freed before the child runs
    let mut child = ChildGuard::spawn("sum", &bs.name, Stdio::piped())?;
    let stdout = child.0.stdout.take().ok_or("no child stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    child.wait()?;
    // The child prints "FIRST_PASS_NANOS SECOND_PASS_NANOS SUM".
    let mut words = line.split_whitespace().map(str::parse::<u64>);
    let (Some(Ok(cold)), Some(Ok(warm)), Some(Ok(total))) =
        (words.next(), words.next(), words.next())
    else {
        return Err(format!("unexpected child output {line:?}").into());
    };
    // `gb_per_s` is the second pass, over pages this process has already
    // mapped, as the local workload's pages are; the first pass, which also
    // pays one page fault per 4 KiB page of a fresh mapping, is reported
    // beside it.
    let first = BANDWIDTH_BYTES as f64 / cold as f64;
    bandwidth_line(
        "read_bandwidth",
        Duration::from_nanos(warm),
        total == expected_sum(),
        &format!(",\"first_pass_gb_per_s\":{first:.3}"),
    );
    Ok(())
}

fn read_bandwidth_local() -> AnyResult {
    let source = source_vec();
    let start = Instant::now();
    let total = sum(black_box(&source));
    let elapsed = start.elapsed();
    bandwidth_line("read_bandwidth_local", elapsed, total == expected_sum(), "");
    Ok(())
}

// ---------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------

fn child(kind: &str, store_name: &str) -> AnyResult {
    let store = Store::open(store_name)?;
    match kind {
        "counter" => {
            let objs = counter_objects(&store)?;
            objs.ready.fetch_add(1, Ordering::AcqRel);
            spin_until("the start flag", || objs.start.load(Ordering::Acquire) == 1)?;
            objs.increment()?;
        }
        "sum" => {
            let data = store.get_slice::<u64>("data")?;
            // The first pass touches each page of the mapping for the first
            // time in this process (page faults included); the second reads
            // pages already mapped. Both are reported.
            let start = Instant::now();
            let total = sum(black_box(&data));
            let cold = start.elapsed();
            let start = Instant::now();
            let again = sum(black_box(&data));
            let warm = start.elapsed();
            eprintln!(
                "read_bandwidth child: first pass {cold:.2?} ({:.2} GB/s), second pass {warm:.2?} ({:.2} GB/s), sums equal: {}",
                BANDWIDTH_BYTES as f64 / cold.as_nanos() as f64,
                BANDWIDTH_BYTES as f64 / warm.as_nanos() as f64,
                total == again
            );
            let ok = total == again;
            println!(
                "{} {} {}",
                cold.as_nanos(),
                warm.as_nanos(),
                if ok { total } else { 0 }
            );
        }
        "pingpong" => pingpong_child(&store)?,
        "pingpong_event" => pingpong_event_child(&store)?,
        "queue" => queue_child(&store)?,
        "semaphore" => semaphore_child(&store)?,
        other => return Err(format!("unknown child kind {other:?}").into()),
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Containers
// ---------------------------------------------------------------------------

/// `vec_push`: a `ShmVec<u64>` behind a `ShmMutex`, N pushes each under
/// its own lock/unlock, from empty (growth included), as the Boost peer's
/// `bip::vector` behind an `interprocess_mutex`.
fn vec_push() -> AnyResult {
    let bs = BenchStore::create("vec_push", 256 << 20)?;
    let v = bs
        .store
        .get_or_insert_with("vec", || ShmMutex::new(ShmVec::<u64>::new()))?;
    let start = Instant::now();
    for i in 0..CONTAINER_OPS {
        v.lock()?.push(black_box(i))?;
    }
    let elapsed = start.elapsed();
    let g = v.lock()?;
    let ok = g.len()? == CONTAINER_OPS as usize
        && g.as_slice()?.iter().sum::<u64>() == CONTAINER_OPS * (CONTAINER_OPS - 1) / 2;
    drop(g);
    report(
        "vec_push",
        CONTAINER_OPS,
        elapsed,
        CONTAINER_OPS,
        &format!(",\"ok\":{ok}"),
    );
    Ok(())
}

type U64Map = ShmMutex<ShmMap<u64, u64>>;

/// Fills a fresh map with `CONTAINER_OPS` entries, one lock per insert;
/// returns the store, the map and the time it took.
fn filled_map(workload: &str) -> AnyResult<(BenchStore, shmstore::Handle<U64Map>, Duration, bool)> {
    let bs = BenchStore::create(workload, 512 << 20)?;
    let m = bs
        .store
        .get_or_insert_with("map", || ShmMutex::new(ShmMap::<u64, u64>::new()))?;
    let mut all_new = true;
    let start = Instant::now();
    for i in 0..CONTAINER_OPS {
        all_new &= m
            .lock()?
            .insert(&black_box(i.wrapping_mul(KEY_MUL)), i)?
            .is_none();
    }
    let elapsed = start.elapsed();
    Ok((bs, m, elapsed, all_new))
}

/// `map_insert`: N inserts of `i * KEY_MUL -> i` into a `ShmMap<u64, u64>`
/// behind a `ShmMutex`, one lock per insert, from empty.
fn map_insert() -> AnyResult {
    let (_bs, m, elapsed, all_new) = filled_map("map_insert")?;
    let mut sum = 0u64;
    let g = m.lock()?;
    g.for_each(|_, v| sum = sum.wrapping_add(*v))?;
    let ok = all_new
        && g.len()? == CONTAINER_OPS as usize
        && sum == CONTAINER_OPS * (CONTAINER_OPS - 1) / 2;
    drop(g);
    report(
        "map_insert",
        CONTAINER_OPS,
        elapsed,
        CONTAINER_OPS,
        &format!(",\"ok\":{ok}"),
    );
    Ok(())
}

/// `map_lookup`: fills as `map_insert` (untimed), then N lookups in
/// shuffled order, one lock per lookup, summing the values.
fn map_lookup() -> AnyResult {
    let (_bs, m, _, _) = filled_map("map_lookup")?;
    let mut order: Vec<u64> = (0..CONTAINER_OPS).collect();
    XorShift(0x5eed_1234).shuffle(&mut order);
    let mut sum = 0u64;
    let mut found = 0u64;
    let start = Instant::now();
    for &i in &order {
        let g = m.lock()?;
        if let Some(v) = g.get(&black_box(i.wrapping_mul(KEY_MUL)))? {
            sum = sum.wrapping_add(*v);
            found += 1;
        }
    }
    let elapsed = start.elapsed();
    let ok = found == CONTAINER_OPS && sum == CONTAINER_OPS * (CONTAINER_OPS - 1) / 2;
    report(
        "map_lookup",
        CONTAINER_OPS,
        elapsed,
        CONTAINER_OPS,
        &format!(",\"ok\":{ok}"),
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Synchronisation: ping-pong, queue, rwlock, semaphore
// ---------------------------------------------------------------------------

/// Round trips timed in `pingpong_2proc` and `semaphore_2proc`, after
/// `WARM_TRIPS` untimed ones (as the Boost peer).
const TRIPS: u64 = 200_000;
const WARM_TRIPS: u64 = 2_000;
/// Values passed in `queue_2proc`.
const QUEUE_VALUES: u64 = 1_000_000;

/// The ping-pong state: whose turn (0 parent, 1 child, 2 quit) and the
/// child's turns, behind a `ShmMutex`, with a `ShmCondvar` (as Boost's
/// `interprocess_mutex` + `interprocess_condition`).
#[derive(shmstore::ShmSafe)]
#[repr(C)]
struct PingPong {
    state: ShmMutex<[u64; 2]>,
    changed: shmstore::ShmCondvar,
}

fn pingpong_objects(store: &Store) -> shmstore::Result<shmstore::Handle<PingPong>> {
    store.get_or_insert_with("pingpong", || PingPong {
        state: ShmMutex::new([0, 0]),
        changed: shmstore::ShmCondvar::new(),
    })
}

fn pingpong_child(store: &Store) -> AnyResult {
    let pp = pingpong_objects(store)?;
    let mut g = pp.state.lock()?;
    loop {
        g = pp.changed.wait_while(g, |s| s[0] == 0)?;
        if g[0] == 2 {
            return Ok(());
        }
        g[0] = 0;
        g[1] += 1;
        pp.changed.notify_one();
    }
}

/// `pingpong_2proc`: two processes alternate through a `ShmCondvar` and a
/// `ShmMutex`, as the Boost peer does with its condition and mutex: a round
/// trip is {lock; turn = child; notify; wait until it is ours again}.
/// Printed after it, for reference: the same through two `ShmEvent`s
/// (`"impl":"shmstore_event"`).
fn pingpong_2proc() -> AnyResult {
    let bs = BenchStore::create("pingpong_2proc", 1 << 20)?;
    let pp = pingpong_objects(&bs.store)?;
    let mut child = ChildGuard::spawn("pingpong", &bs.name, Stdio::null())?;
    let round_trip = || -> shmstore::Result<()> {
        let mut g = pp.state.lock()?;
        g[0] = 1;
        pp.changed.notify_one();
        drop(pp.changed.wait_while(g, |s| s[0] != 0)?);
        Ok(())
    };
    for _ in 0..WARM_TRIPS {
        round_trip()?;
    }
    let start = Instant::now();
    for _ in 0..TRIPS {
        round_trip()?;
    }
    let elapsed = start.elapsed();
    {
        let mut g = pp.state.lock()?;
        g[0] = 2;
        pp.changed.notify_all();
    }
    child.wait()?;
    let ok = pp.state.lock()?[1] == WARM_TRIPS + TRIPS;
    report(
        "pingpong_2proc",
        TRIPS,
        elapsed,
        TRIPS,
        &format!(",\"ok\":{ok}"),
    );
    pingpong_event()
}

/// Two events, one per direction, and a quit flag.
#[derive(shmstore::ShmSafe)]
#[repr(C)]
struct EventPair {
    to_child: shmstore::ShmEvent,
    to_parent: shmstore::ShmEvent,
    quit: AtomicU32,
}

fn event_pair(store: &Store) -> shmstore::Result<shmstore::Handle<EventPair>> {
    store.get_or_insert_with("events", || EventPair {
        to_child: shmstore::ShmEvent::new(),
        to_parent: shmstore::ShmEvent::new(),
        quit: AtomicU32::new(0),
    })
}

fn pingpong_event_child(store: &Store) -> AnyResult {
    let e = event_pair(store)?;
    let mut seen = 0;
    loop {
        seen = e
            .to_child
            .wait_for_change(seen, CHILD_TIMEOUT)?
            .ok_or("the parent stopped")?;
        if e.quit.load(Ordering::Acquire) != 0 {
            return Ok(());
        }
        e.to_parent.notify();
    }
}

/// The ping-pong through two `ShmEvent`s (no mutex): a reference line.
fn pingpong_event() -> AnyResult {
    let bs = BenchStore::create("pingpong_event", 1 << 20)?;
    let e = event_pair(&bs.store)?;
    let mut child = ChildGuard::spawn("pingpong_event", &bs.name, Stdio::null())?;
    let mut seen = 0;
    let mut round_trip = || -> AnyResult {
        e.to_child.notify();
        seen = e
            .to_parent
            .wait_for_change(seen, CHILD_TIMEOUT)?
            .ok_or("the child stopped")?;
        Ok(())
    };
    for _ in 0..WARM_TRIPS {
        round_trip()?;
    }
    let start = Instant::now();
    for _ in 0..TRIPS {
        round_trip()?;
    }
    let elapsed = start.elapsed();
    e.quit.store(1, Ordering::Release);
    e.to_child.notify();
    child.wait()?;
    let ok = e.to_parent.generation() == WARM_TRIPS + TRIPS;
    report_impl(
        "shmstore_event",
        "pingpong_2proc",
        TRIPS,
        elapsed,
        TRIPS,
        &format!(",\"ok\":{ok}"),
    );
    Ok(())
}

type BenchQueue = shmstore::ShmQueue<u64, 1024>;

fn queue_child(store: &Store) -> AnyResult {
    let q = store.get::<BenchQueue>("queue")?;
    let ready = store.get::<AtomicU32>("ready")?;
    let start = store.get::<AtomicU32>("start")?;
    ready.store(1, Ordering::Release);
    spin_until("the start flag", || start.load(Ordering::Acquire) == 1)?;
    for i in 0..QUEUE_VALUES {
        q.push(i)?;
    }
    Ok(())
}

/// `queue_2proc`: 1,000,000 `u64` through a `ShmQueue<u64, 1024>` from a
/// child to the parent, timed (as the Boost peer's `message_queue` of 1024
/// × 8 bytes) from the start signal to the parent's last pop; the parent
/// checks order and sum.
fn queue_2proc() -> AnyResult {
    let bs = BenchStore::create("queue_2proc", 1 << 20)?;
    let q = bs.store.get_or_insert_with("queue", BenchQueue::new)?;
    let ready = bs.store.get_or_insert_with("ready", || AtomicU32::new(0))?;
    let start_flag = bs.store.get_or_insert_with("start", || AtomicU32::new(0))?;
    let mut child = ChildGuard::spawn("queue", &bs.name, Stdio::null())?;
    spin_until("the child to be ready", || {
        ready.load(Ordering::Acquire) == 1
    })?;
    let mut in_order = true;
    let mut sum = 0u64;
    let start = Instant::now();
    start_flag.store(1, Ordering::Release);
    let mut first_out_of_order = None;
    for k in 0..QUEUE_VALUES {
        let v = q.pop()?;
        if v != k && in_order {
            in_order = false;
            first_out_of_order = Some((k, v));
        }
        sum = sum.wrapping_add(v);
    }
    let elapsed = start.elapsed();
    child.wait()?;
    let left = q.try_pop()?;
    let ok = in_order && sum == QUEUE_VALUES * (QUEUE_VALUES - 1) / 2 && left.is_none();
    if !ok {
        eprintln!(
            "queue_2proc: first value out of order (expected, got): {first_out_of_order:?}; \
             sum {sum}; left in the queue: {left:?}"
        );
    }
    report(
        "queue_2proc",
        QUEUE_VALUES,
        elapsed,
        QUEUE_VALUES,
        &format!(",\"ok\":{ok},\"capacity\":1024,\"value_bytes\":8"),
    );
    Ok(())
}

/// `rwlock_read_uncontended`: read lock + unlock of a `ShmRwLock<u64>` in
/// a store, 10,000,000 times, one process; `ok` if the write lock is free
/// afterwards (no reader leaked).
fn rwlock_read_uncontended() -> AnyResult {
    let bs = BenchStore::create("rwlock_read_uncontended", 1 << 20)?;
    let rw = bs
        .store
        .get_or_insert_with("rw", || shmstore::ShmRwLock::new(1u64))?;
    let mut sum = 0u64;
    let start = Instant::now();
    for _ in 0..LOCKS {
        let g = rw.read()?;
        sum = sum.wrapping_add(*black_box(&*g));
    }
    let elapsed = start.elapsed();
    let ok = black_box(sum) == LOCKS && rw.try_write()?.is_some();
    report(
        "rwlock_read_uncontended",
        LOCKS,
        elapsed,
        LOCKS,
        &format!(",\"ok\":{ok}"),
    );
    Ok(())
}

/// Two semaphores (one per direction), a quit flag, the child's turns.
#[derive(shmstore::ShmSafe)]
#[repr(C)]
struct SemPair {
    to_child: shmstore::ShmSemaphore,
    to_parent: shmstore::ShmSemaphore,
    quit: AtomicU32,
    child_turns: shmstore::ShmMutex<u64>,
}

fn sem_pair(store: &Store) -> shmstore::Result<shmstore::Handle<SemPair>> {
    store.get_or_insert_with("sems", || SemPair {
        to_child: shmstore::ShmSemaphore::new(0),
        to_parent: shmstore::ShmSemaphore::new(0),
        quit: AtomicU32::new(0),
        child_turns: ShmMutex::new(0),
    })
}

fn semaphore_child(store: &Store) -> AnyResult {
    let p = sem_pair(store)?;
    let mut turns = 0u64;
    loop {
        p.to_child.acquire()?;
        if p.quit.load(Ordering::Acquire) != 0 {
            *p.child_turns.lock()? = turns;
            return Ok(());
        }
        turns += 1;
        p.to_parent.release()?;
    }
}

/// `semaphore_2proc`: two processes ping-pong through two plain
/// `ShmSemaphore`s: a round trip is parent release → child acquire +
/// release → parent acquire (as the Boost peer's `interprocess_semaphore`s).
fn semaphore_2proc() -> AnyResult {
    let bs = BenchStore::create("semaphore_2proc", 1 << 20)?;
    let p = sem_pair(&bs.store)?;
    let mut child = ChildGuard::spawn("semaphore", &bs.name, Stdio::null())?;
    let round_trip = || -> shmstore::Result<()> {
        p.to_child.release()?;
        p.to_parent.acquire()
    };
    for _ in 0..WARM_TRIPS {
        round_trip()?;
    }
    let start = Instant::now();
    for _ in 0..TRIPS {
        round_trip()?;
    }
    let elapsed = start.elapsed();
    p.quit.store(1, Ordering::Release);
    p.to_child.release()?;
    child.wait()?;
    let ok = *p.child_turns.lock()? == WARM_TRIPS + TRIPS;
    report(
        "semaphore_2proc",
        TRIPS,
        elapsed,
        TRIPS,
        &format!(",\"ok\":{ok}"),
    );
    Ok(())
}
