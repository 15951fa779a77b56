//! The objects of the seed stores, and the walk `segment_open` runs over a
//! store: every read the public API offers, each result checked for what
//! it promises when it is `Ok`.

use shmstore::{Error, FixedString, RelPtr, ShmMap, ShmMutex, ShmSafe, ShmString, ShmVec, Store};

/// A struct with invalid bit patterns (`bool`, an enum).
#[derive(ShmSafe, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct Config {
    pub version: u32,
    pub enabled: bool,
    pub mode: Mode,
    pub ratio: f64,
}

#[derive(ShmSafe, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Idle = 0,
    Busy = 2,
    Gone = 9,
}

/// A value holding containers, read through a plain handle.
#[derive(ShmSafe)]
#[repr(C)]
pub struct Job {
    pub id: u64,
    pub name: ShmString,
    pub tags: ShmVec<u16>,
    pub next: RelPtr<Config>,
    pub label: FixedString<8>,
}

/// A `ShmMutex` around a vector (mutated in place through its guard).
pub type LockedVec = ShmMutex<ShmVec<u32>>;
/// A `ShmMutex` around a map with string values.
pub type LockedMap = ShmMutex<ShmMap<u16, ShmString>>;
/// A `ShmMutex` around an owning pointer.
pub type LockedRel = ShmMutex<RelPtr<u64>>;

/// Names the seed stores use, with the type of each (see
/// [`walk_store`]).
pub const SEED_NAMES: &[&str] = &[
    "counter", "config", "samples", "job", "jobs", "index", "boxed", "lock", "bytes", "gone",
];

/// An `Ok` read of a `Config` must hold a valid one (its byte check ran).
fn check_config(c: &Config) {
    // SAFETY: `c` is a reference to a `Config`; its first byte of `enabled`
    // and `mode` are readable as `u8` (plain bytes, no padding).
    let (enabled, mode) = unsafe {
        (
            *(core::ptr::addr_of!(c.enabled) as *const u8),
            *(core::ptr::addr_of!(c.mode) as *const u8),
        )
    };
    assert!(enabled <= 1, "a Config read Ok with enabled = {enabled}");
    assert!(
        matches!(mode, 0 | 2 | 9),
        "a Config read Ok with mode = {mode}"
    );
}

/// The errors a read of a damaged store may give.
pub fn allowed_read_error(e: &Error) -> bool {
    matches!(
        e,
        Error::Corrupted { .. }
            | Error::NotFound { .. }
            | Error::TypeMismatch { .. }
            | Error::OwnerDied { .. }
            | Error::ForeignContainer { .. }
    )
}

/// The errors a write to a damaged store may give.
pub fn allowed_write_error(e: &Error) -> bool {
    allowed_read_error(e)
        || matches!(
            e,
            Error::AlreadyExists { .. } | Error::OutOfMemory { .. } | Error::NoSpace { .. }
        )
}

/// `r` is `Ok` or an error a damaged store may give.
#[track_caller]
fn read<T>(what: &str, r: shmstore::Result<T>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            assert!(allowed_read_error(&e), "{what}: unexpected error {e:?}");
            None
        }
    }
}

#[track_caller]
fn write<T>(what: &str, r: shmstore::Result<T>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            assert!(allowed_write_error(&e), "{what}: unexpected error {e:?}");
            None
        }
    }
}

/// Reads every container of a `Job`, checking what comes back.
fn read_job(job: &Job) {
    if let Some(s) = read("job name", job.name.as_str()) {
        assert!(core::str::from_utf8(s.as_bytes()).is_ok());
    }
    let _ = read("job name length", job.name.len());
    if let Some(tags) = read("job tags", job.tags.as_slice()) {
        let _ = tags.iter().map(|&t| u64::from(t)).sum::<u64>();
    }
    let _ = read("job tag 3", job.tags.get(3));
    if let Some(Some(c)) = read("job next", job.next.get()) {
        check_config(&c);
    }
    assert!(job.label.len() <= 8);
    assert!(core::str::from_utf8(job.label.as_str().as_bytes()).is_ok());
}

/// Runs every read of the public API over `store`, and a few writes, as
/// `segment_open` does: the names of the seed stores with their types and
/// with wrong ones, every name `entries` lists, `stats`, `check`, container
/// reads, `ShmMutex::try_lock` (never `lock`, which waits), an insert, a
/// replacement, a removal and `collect`. Panics only if an operation
/// returns something it must not (a wrong error kind, an invalid value).
pub fn walk_store(store: &Store, mutate: bool) {
    let _ = read("stats", store.stats());
    let mut names: Vec<String> = SEED_NAMES.iter().map(|s| s.to_string()).collect();
    if let Some(entries) = read("entries", store.entries()) {
        for e in entries.iter().take(32) {
            let _ = (e.layout.type_expr(), e.layout.to_string());
            if !names.contains(&e.name) {
                names.push(e.name.clone());
            }
        }
    }
    for name in &names {
        let _ = read("contains", store.contains(name));
        if let Some(h) = read("get u64", store.get::<u64>(name)) {
            let _ = *h;
        }
        let _ = read("get u32", store.get::<u32>(name));
        if let Some(c) = read("get Config", store.get::<Config>(name)) {
            check_config(&c);
        }
        if let Some(s) = read("get_slice f32", store.get_slice::<f32>(name)) {
            let _ = s.iter().copied().sum::<f32>();
        }
        if let Some(s) = read("get_slice Config", store.get_slice::<Config>(name)) {
            s.iter().for_each(check_config);
        }
        if let Some(s) = read("get_slice u8", store.get_slice::<u8>(name)) {
            let _ = s.iter().map(|&b| u64::from(b)).sum::<u64>();
        }
        if let Some(job) = read("get Job", store.get::<Job>(name)) {
            read_job(&job);
        }
        if let Some(jobs) = read("get_slice Job", store.get_slice::<Job>(name)) {
            jobs.iter().take(4).for_each(read_job);
        }
        if let Some(v) = read("get LockedVec", store.get::<LockedVec>(name)) {
            if let Some(Some(mut g)) = read("try_lock vec", v.try_lock_recover()) {
                let _ = read("vec len", g.len());
                if let Some(s) = read("vec slice", g.as_slice()) {
                    let _ = s.iter().map(|&x| u64::from(x)).sum::<u64>();
                }
                if mutate {
                    let _ = write("vec push", g.push(7));
                    let _ = write("vec pop", g.pop());
                }
                g.mark_consistent();
            }
        }
        if let Some(m) = read("get LockedMap", store.get::<LockedMap>(name)) {
            if let Some(Some(mut g)) = read("try_lock map", m.try_lock_recover()) {
                let _ = read("map len", g.len());
                if let Some(Some(v)) = read("map get", g.get(&1)) {
                    if let Some(s) = read("map value", v.as_str()) {
                        assert!(core::str::from_utf8(s.as_bytes()).is_ok());
                    }
                }
                let _ = read(
                    "map for_each",
                    g.for_each(|k, v| {
                        let _ = (k, v.len());
                    }),
                );
                if mutate {
                    let _ = write("map insert", g.insert(&40, ShmString::new()));
                    let _ = write("map remove", g.remove(&2));
                }
                g.mark_consistent();
            }
        }
        if let Some(r) = read("get LockedRel", store.get::<LockedRel>(name)) {
            if let Some(Some(mut g)) = read("try_lock rel", r.try_lock_recover()) {
                let _ = read("rel get", g.get().map(|v| v.map(|v| *v)));
                if mutate {
                    let _ = write("rel set", g.set(99));
                }
                g.mark_consistent();
            }
        }
        if let Some(m) = read("get ShmMutex<u64>", store.get::<ShmMutex<u64>>(name)) {
            if let Some(Some(mut g)) = read("try_lock u64", m.try_lock_recover()) {
                *g += 1;
                g.mark_consistent();
            }
        }
    }
    if let Some(report) = read("check", store.check()) {
        let _ = report.to_string();
    }
    if !mutate {
        return;
    }
    let _ = write("insert", store.insert("fuzz-new", 42u64));
    let _ = write(
        "insert_slice",
        store.insert_slice("fuzz-slice", &[1.5f32; 40]),
    );
    let _ = write(
        "get_or_insert_with",
        store.get_or_insert_with("fuzz-config", || Config {
            version: 1,
            enabled: true,
            mode: Mode::Busy,
            ratio: 0.5,
        }),
    );
    let _ = write("replace", store.replace("counter", 7u32));
    for name in ["fuzz-new", "config", "job", "gone"] {
        let _ = write("remove", store.remove(name));
    }
    if let Some(r) = write("collect", store.collect()) {
        let _ = r;
    }
    if let Some(report) = read("check again", store.check()) {
        let _ = report.to_string();
    }
}
