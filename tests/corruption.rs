//! A store whose metadata bytes were flipped anywhere never makes a process
//! crash, hang or panic: every operation returns `Ok` or an `Error`.
//!
//! The parent re-executes this test binary as a child that builds a small
//! pristine store and sweeps (byte, flip pattern) cases over its metadata
//! (see [`cases`] for which, and `SHMSTORE_FULL_SWEEP`): for each, it writes
//! the pristine bytes with one byte flipped into a fresh segment and runs a
//! fixed script of store operations over it, catching panics so that every
//! failing case is collected. A signal (`SIGSEGV`, `SIGBUS`, an abort) or a
//! hang kills the child; the parent then reports the case it was running
//! and starts a new child at the next case, so that one crash does not hide
//! the others.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use shmstore::{Error, ShmMutex, ShmSafe, Store};
use shmstore_tests::{report, role, role_arg, spawn_role_with_arg, unique_name, StoreGuard};

const TEST: &str = "flipping_any_metadata_byte_gives_errors_never_a_crash";
const CAPACITY: u64 = 256 << 10;
/// The header page; the header lock inside it belongs to the OS and is
/// not flipped.
const HEADER_PAGE: usize = 4096;
const LOCK: std::ops::Range<usize> = 192..256;
/// `top` in the header: the end of the heap, hence of all metadata.
const OFF_TOP: usize = 48;
/// A state word flipped to "creating" makes `open` wait this long.
const OPEN_TIMEOUT: Duration = Duration::from_millis(20);
/// A case running longer than this is reported as a hang (the child exits).
const HANG: Duration = Duration::from_secs(10);
/// A case running longer than this (but finishing) is reported as slow.
const SLOW: Duration = Duration::from_secs(1);
/// Children the parent starts at most (one more per crash or hang).
const MAX_CHILDREN: usize = 40;

/// How a flip pattern changes a byte.
type Flip = fn(u8) -> u8;

/// Flip patterns: (name, how a byte changes). Besides the low and high
/// bits and all-ones, the allocator's flag bits (`INUSE`, `PREV_INUSE`,
/// `FAST`: bits 0..3 of a block header) and small size changes (8, 16
/// bytes), and zero.
const PATTERNS: [(&str, Flip); 8] = [
    ("xor01", |b| b ^ 0x01),
    ("xor02", |b| b ^ 0x02),
    ("xor04", |b| b ^ 0x04),
    ("xor08", |b| b ^ 0x08),
    ("xor10", |b| b ^ 0x10),
    ("xor80", |b| b ^ 0x80),
    ("set00", |_| 0x00),
    ("setff", |_| 0xff),
];

#[derive(ShmSafe, Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    Off = 0,
    Slow = 1,
    Fast = 2,
}

#[derive(ShmSafe, Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
struct Config {
    enabled: bool,
    mode: Mode,
    level: u32,
}

/// Filler objects: with the 9 live objects and 3 tombstones, 47 of the
/// directory's 64 slots are taken; the script's fourth insert grows it.
const FILLERS: u64 = 35;

/// Names the script touches (live, removed and never present).
const NAMES: [&str; 9] = [
    "counter",
    "config",
    "samples",
    "lock",
    "tail",
    "gone_small",
    "gone_big",
    "gone_cfg",
    "absent",
];

/// Builds the pristine store: objects of several types, some removed (so
/// that there are parked blocks, binned free blocks and tombstones), and
/// exactly 8 registered types (the registry's first table is full, so a new
/// type grows it).
fn build_pristine(name: &str) {
    let store = Store::create(name, CAPACITY).unwrap();
    store.insert("counter", 42u64).unwrap();
    store.insert("gone_small", 1u64).unwrap();
    let config = Config {
        enabled: true,
        mode: Mode::Fast,
        level: 3,
    };
    store.insert("config", config).unwrap();
    store.insert_slice("gone_big", &[2.5f32; 400]).unwrap();
    store.insert_slice("samples", &[1.5f32; 100]).unwrap();
    store.insert("gone_cfg", config).unwrap();
    store.insert("lock", ShmMutex::new(5u64)).unwrap();
    store.insert("small_u32", 9u32).unwrap();
    store.insert("small_i16", -2i16).unwrap();
    store.insert("bytes", [1u8, 2, 3, 4]).unwrap();
    store.insert("float", 0.25f64).unwrap();
    store.insert("tail", 77u64).unwrap();
    // Fill the directory to just below its growth threshold (3/4 of 64
    // slots, tombstones included), so that the script's inserts rehash it.
    for i in 0..FILLERS {
        store.insert(&format!("fill{i}"), i).unwrap();
    }
    for gone in ["gone_small", "gone_big", "gone_cfg"] {
        store.remove(gone).unwrap();
    }
    let check = store.check().unwrap();
    assert!(check.is_ok(), "pristine store fails its check: {check}");
    assert_eq!(store.entries().unwrap().len(), 9 + FILLERS as usize);
}

/// Environment variable: set to `1` to flip every heap byte with every
/// pattern (about 4x the default sweep's time).
const FULL_SWEEP_VAR: &str = "SHMSTORE_FULL_SWEEP";

/// Every (offset, pattern) case, offset-major: all of the header page
/// (except the lock) and all of the heap up to `top` (block headers, free
/// lists, the directory and registry tables, records, type descriptions,
/// the journal and process table, and values, which include the
/// `ShmMutex`'s pthread mutex).
///
/// Sampling, to keep a debug run well under a minute: every pattern for
/// each byte of the header page and for the first 32 bytes of each heap
/// block (its header word, then a record's count, type, pins, name length,
/// flags and value offset, or a free block's list links), found by walking
/// the blocks as `alloc.rs` documents them (size in bits 3..64 of the
/// header word). Every other heap byte gets two of the patterns, rotating
/// with the word (byte `i` of word `w` gets patterns `(i + w) % 8` and
/// `(i + w + 4) % 8`), so that each byte position of a word meets every
/// pattern across consecutive words. `SHMSTORE_FULL_SWEEP=1` flips every
/// byte with every pattern (about 3x the time).
fn cases(image: &[u8]) -> Vec<(usize, usize)> {
    let word = |off: usize| u64::from_le_bytes(image[off..off + 8].try_into().unwrap()) as usize;
    let top = word(OFF_TOP);
    assert!(
        (HEADER_PAGE..=image.len()).contains(&top),
        "pristine top {top}"
    );
    let mut block_heads = vec![false; top];
    let mut blk = HEADER_PAGE;
    while blk < top {
        block_heads[blk..(blk + 32).min(top)].fill(true);
        let size = word(blk) & !7;
        assert!(size >= 32, "pristine block {blk:#x} of {size} bytes");
        blk += size;
    }
    let full = std::env::var(FULL_SWEEP_VAR).is_ok_and(|v| v == "1");
    let n = PATTERNS.len();
    (0..top)
        .filter(|off| !LOCK.contains(off))
        .flat_map(|off| {
            let every = full || off < HEADER_PAGE || block_heads[off];
            let rot = (off % 8 + off / 8) % n;
            (0..n)
                .filter(move |&p| every || p == rot || p == (rot + n / 2) % n)
                .map(move |p| (off, p))
        })
        .collect()
}

// ---- child: the sweep ------------------------------------------------------

/// The step of the script being run (for hang and panic reports).
static STEP: Mutex<&str> = Mutex::new("");
/// The case being run, plus one (0: none yet).
static CASE: AtomicUsize = AtomicUsize::new(0);
/// Milliseconds since `EPOCH` when the current case started.
static CASE_START_MS: AtomicU64 = AtomicU64::new(0);
/// Log every step to stderr (only in a child replaying one case: logging
/// every step of the whole sweep would cost millions of writes).
static VERBOSE: AtomicBool = AtomicBool::new(false);
/// Where and why the last panic happened, recorded by the panic hook.
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

fn step(s: &'static str) {
    *STEP.lock().unwrap_or_else(|e| e.into_inner()) = s;
    if VERBOSE.load(Ordering::Relaxed) {
        let _ = writeln!(std::io::stderr(), "  step {s}");
    }
}

fn current_step() -> &'static str {
    *STEP.lock().unwrap_or_else(|e| e.into_inner())
}

fn kind(e: &Error) -> String {
    let dbg = format!("{e:?}");
    dbg.split([' ', '{', '(']).next().unwrap_or("?").to_string()
}

/// Runs the script over the store `name`; returns how `open` ended.
fn script(name: &str) -> String {
    step("open");
    let store = match Store::options().open_timeout(OPEN_TIMEOUT).open(name) {
        Ok(s) => s,
        Err(e) => return format!("open:{}", kind(&e)),
    };
    step("get u64");
    if let Ok(h) = store.get::<u64>("counter") {
        std::hint::black_box(*h);
    }
    step("get Config");
    if let Ok(h) = store.get::<Config>("config") {
        std::hint::black_box(format!("{:?}", *h));
    }
    step("get_slice f32");
    if let Ok(s) = store.get_slice::<f32>("samples") {
        std::hint::black_box(s.iter().sum::<f32>());
    }
    step("get wrong type");
    let _ = std::hint::black_box(store.get::<u32>("counter").map(|_| ()));
    step("get removed");
    let _ = std::hint::black_box(store.get::<u64>("gone_small").map(|_| ()));
    step("contains");
    for n in NAMES {
        let _ = std::hint::black_box(store.contains(n));
    }
    step("entries");
    let _ = std::hint::black_box(store.entries());
    step("stats");
    let _ = std::hint::black_box(store.stats());
    step("check");
    let _ = std::hint::black_box(store.check());
    step("try_lock mutex");
    if let Ok(m) = store.get::<ShmMutex<u64>>("lock") {
        if let Ok(Some(mut g)) = m.try_lock() {
            *g += 1;
        }
    }
    // Before anything grows the directory: a re-inserted name takes the
    // tombstone its removal left.
    step("re-insert removed names (reuses tombstones)");
    let _ = store.insert("gone_small", 3u64);
    let _ = store.insert(
        "gone_cfg",
        Config {
            enabled: false,
            mode: Mode::Slow,
            level: 1,
        },
    );
    step("insert u64");
    let _ = store.insert("new", 7u64);
    step("insert_slice f32 (grows the directory, consolidates parked blocks)");
    let _ = store.insert_slice("new_slice", &[0.5f32; 300]);
    step("insert new type (grows the registry)");
    let _ = store.insert("new_type", [7u16; 3]);
    step("remove");
    let _ = store.remove("counter");
    step("remove a pinned object");
    let pinned = store.get::<u64>("tail");
    let _ = store.remove("tail");
    step("drop the last pin of a removed object");
    drop(pinned);
    step("remove a slice");
    let _ = store.remove("samples");
    step("get_or_insert_with");
    let _ = store
        .get_or_insert_with("hits", || std::sync::atomic::AtomicU32::new(0))
        .map(|h| h.fetch_add(1, Ordering::Relaxed));
    let _ = store
        .get_or_insert_with("config", || Config {
            enabled: true,
            mode: Mode::Off,
            level: 0,
        })
        .map(|h| std::hint::black_box(h.level));
    step("check again");
    let _ = std::hint::black_box(store.check());
    // Not in the script: a slice over 64 KiB (copied outside the header
    // lock). A debug build initialises each element in place, one call each,
    // which made every case several times slower.
    step("drop");
    drop(store);
    "open:Ok".to_string()
}

/// Runs cases `range` (of [`cases`]): builds the pristine store
/// `<base>-p` (the same layout in every child), reads its bytes and unlinks
/// it, then runs each case over the segment `<base>-t`.
fn sweep(base: &str, range: std::ops::Range<usize>) {
    let target = StoreGuard::new(format!("{base}-t"));
    let image = {
        let pristine = StoreGuard::new(format!("{base}-p"));
        build_pristine(pristine.name());
        std::fs::read(pristine.path()).unwrap()
    };
    let cases = cases(&image);
    if range.start == 0 {
        report(
            "cases",
            format!(
                "{} cases over {} bytes ({} patterns; {})",
                cases.len(),
                cases.last().map_or(0, |c| c.0 + 1),
                PATTERNS.len(),
                if std::env::var(FULL_SWEEP_VAR).is_ok_and(|v| v == "1") {
                    "full sweep"
                } else {
                    "sampled: every pattern on the header page and block heads, 2 elsewhere"
                }
            ),
        );
    }
    // The target segment: a plain file in /dev/shm of exactly the image's
    // length, rewritten in place for each case (no store is open on it then).
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(target.path())
        .unwrap();
    file.set_len(image.len() as u64).unwrap();
    let epoch = Instant::now();

    std::panic::set_hook(Box::new(|info| {
        let msg = if let Some(s) = info.payload().downcast_ref::<&str>() {
            (*s).to_string()
        } else if let Some(s) = info.payload().downcast_ref::<String>() {
            s.clone()
        } else {
            "(non-string payload)".to_string()
        };
        let at = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("{at} {msg}"));
    }));

    // Watchdog: a case that runs too long is a hang; report it and exit so
    // that the parent can go on at the next case.
    let cases_for_dog = cases.clone();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(100));
        let case = CASE.load(Ordering::Acquire);
        if case == 0 {
            continue;
        }
        let started = CASE_START_MS.load(Ordering::Acquire);
        let now = epoch.elapsed().as_millis() as u64;
        if now.saturating_sub(started) > HANG.as_millis() as u64
            && CASE.load(Ordering::Acquire) == case
        {
            let (off, p) = cases_for_dog[case - 1];
            report(
                "hang",
                format!(
                    "case={} offset={off} pattern={} step={:?}",
                    case - 1,
                    PATTERNS[p].0,
                    current_step()
                ),
            );
            std::process::exit(3);
        }
    });

    let mut outcomes: std::collections::BTreeMap<String, u64> = Default::default();
    let end = range.end.min(cases.len());
    for (i, &(off, p)) in cases.iter().enumerate().take(end).skip(range.start) {
        let _ = writeln!(
            std::io::stderr(),
            "case {i} offset {off} pattern {}",
            PATTERNS[p].0
        );
        let mut img = image.clone();
        img[off] = PATTERNS[p].1(img[off]);
        file.write_all_at(&img, 0).unwrap();
        CASE_START_MS.store(epoch.elapsed().as_millis() as u64, Ordering::Release);
        CASE.store(i + 1, Ordering::Release);
        let t0 = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| script(target.name())));
        let took = t0.elapsed();
        match result {
            Ok(outcome) => *outcomes.entry(outcome).or_default() += 1,
            Err(_) => {
                let why = LAST_PANIC
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take()
                    .unwrap_or_default();
                report(
                    "panic",
                    format!(
                        "case={i} offset={off} pattern={} step={:?} at={why}",
                        PATTERNS[p].0,
                        current_step()
                    ),
                );
                *outcomes.entry("panic".into()).or_default() += 1;
            }
        }
        if took > SLOW {
            report(
                "slow",
                format!(
                    "case={i} offset={off} pattern={} took={took:?}",
                    PATTERNS[p].0
                ),
            );
        }
    }
    CASE.store(0, Ordering::Release);
    let _ = std::panic::take_hook();
    for (outcome, n) in outcomes {
        report("outcome", format!("{outcome} {n}"));
    }
    report("done", cases.len());
}

// ---- parent ------------------------------------------------------------------

#[test]
fn flipping_any_metadata_byte_gives_errors_never_a_crash() {
    if let Some((role, store)) = role() {
        let arg = role_arg();
        match role.as_str() {
            "sweep" => sweep(&store, arg.parse().unwrap()..usize::MAX),
            "replay" => {
                VERBOSE.store(true, Ordering::Relaxed);
                let case: usize = arg.parse().unwrap();
                sweep(&store, case..case + 1);
            }
            other => panic!("unknown role {other}"),
        }
        return;
    }
    // The children's segments (`<base>-p`, `<base>-t`); a child unlinks
    // them itself, these guards unlink them too if it dies.
    let base = unique_name("flip");
    let _pristine = StoreGuard::new(format!("{base}-p"));
    let _target = StoreGuard::new(format!("{base}-t"));
    let started = Instant::now();
    let mut summary = String::new();

    let mut panics: Vec<String> = Vec::new();
    let mut deaths: Vec<String> = Vec::new();
    let mut slow: Vec<String> = Vec::new();
    let mut outcomes: Vec<String> = Vec::new();
    let mut start = 0usize;
    let mut children = 0;
    loop {
        children += 1;
        let child = spawn_role_with_arg(TEST, "sweep", &base, &start.to_string());
        let done = child.wait_timeout(Duration::from_secs(600));
        if let Some(c) = done.reports("cases").first() {
            summary = c.clone();
        }
        panics.extend(done.reports("panic"));
        slow.extend(done.reports("slow"));
        outcomes.extend(done.reports("outcome"));
        if done.status.success() && !done.reports("done").is_empty() {
            break;
        }
        // The child died or hung: find the case it was running, from its
        // last "case <i> offset <off> pattern <p>" line.
        let Some(last_line) = done
            .stderr
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("case "))
        else {
            panic!("the sweep child failed before its first case\n{done}");
        };
        let last: usize = last_line.split(' ').next().unwrap().parse().unwrap();
        // Replay that case alone, logging every step, to see where it dies.
        let replay = spawn_role_with_arg(TEST, "replay", &base, &last.to_string())
            .wait_timeout(Duration::from_secs(60));
        let last_step = replay
            .stderr
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("  step "))
            .unwrap_or("?")
            .to_string();
        let how = match (done.status.signal(), done.reports("hang").first()) {
            (_, Some(hang)) => format!("hang ({hang})"),
            (Some(sig), _) => format!("killed by signal {sig}"),
            (None, _) => format!("exited with {}", done.status),
        };
        let tail: Vec<&str> = done.stderr.lines().rev().take(6).collect();
        deaths.push(format!(
            "case {last_line} step={last_step}: child {how}; stderr tail (newest first): {tail:?}"
        ));
        start = last + 1;
        if children >= MAX_CHILDREN {
            break;
        }
    }

    // Deduplicate panics by location.
    let mut by_site: std::collections::BTreeMap<String, (usize, String)> = Default::default();
    for p in &panics {
        let site = p
            .split(" at=")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .unwrap_or("?")
            .to_string();
        let e = by_site.entry(site).or_insert((0, p.clone()));
        e.0 += 1;
    }
    eprintln!(
        "swept {summary} in {:?} with {children} child(ren)",
        started.elapsed()
    );
    eprintln!("outcomes (per child): {outcomes:?}");
    for (site, (n, example)) in &by_site {
        eprintln!("PANIC SITE {site}: {n} case(s), e.g. {example}");
    }
    for p in panics.iter().take(100) {
        eprintln!("PANIC {p}");
    }
    for d in &deaths {
        eprintln!("CRASH/HANG {d}");
    }
    for s in &slow {
        eprintln!("SLOW {s}");
    }
    assert!(
        panics.is_empty() && deaths.is_empty(),
        "{} panicking case(s) at {} site(s), {} crash(es)/hang(s) (details above)",
        panics.len(),
        by_site.len(),
        deaths.len()
    );
    std::io::stderr().flush().unwrap();
}
