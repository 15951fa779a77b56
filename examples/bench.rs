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
