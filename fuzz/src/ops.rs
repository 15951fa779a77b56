//! Operation sequences for `arena_ops` and `arena_ops_crash`: every kind of
//! insert (objects, structs with invalid bit patterns, small and large
//! slices, values holding containers), get with the right and a wrong type,
//! remove, replace, get-or-insert, handles held across other operations,
//! directory growth (fillers), container operations through a
//! `ShmMutex` guard, and `collect`; each checked against a plain model,
//! with `check()` passing after every step.
//!
//! The crash variant takes an image of the store at a step of one
//! operation as a process that died there would leave it
//! (`shmstore::fuzzing::image_at_step`), recovers from it, and checks that
//! the store is as the model was before the operation or as it is after
//! it, then goes on with the recovered store.

use std::collections::{BTreeMap, BTreeSet};

use arbitrary::Arbitrary;
use shmstore::fuzzing;
use shmstore::{Error, FixedString, Handle, RelPtr, ShmMap, ShmString, ShmVec, SliceHandle, Store};

use crate::objects::{Config, Job, LockedMap, LockedRel, LockedVec, Mode};

/// The capacity of the stores the sequences run in.
pub const CAPACITY: u64 = 256 << 10;
/// How many distinct object names the sequences use.
const NAMES: u8 = 8;
/// Elements of a large slice: over the 64 KiB that are copied under the
/// header lock, so that the reserve / copy / publish path runs.
const LARGE: usize = 16_400;

/// A value to store, as the fuzzer picks it.
#[derive(Arbitrary, Debug, Clone)]
pub enum Val {
    U64(u64),
    Config {
        version: u32,
        enabled: bool,
        mode: u8,
        ratio: u16,
    },
    Bytes([u8; 12]),
    Slice {
        len: u8,
        first: u32,
        large: bool,
    },
    Job {
        id: u16,
        name: String,
        tags: Vec<u16>,
        next: Option<u32>,
    },
    Vec(Vec<u32>),
    Map(Vec<(u8, u8)>),
    Rel(Option<u64>),
}

/// One operation.
#[derive(Arbitrary, Debug, Clone)]
pub enum Op {
    Insert { name: u8, val: Val },
    Replace { name: u8, val: Val },
    GetOrInsert { name: u8, val: Val },
    Get { name: u8, wrong: u8 },
    Remove { name: u8 },
    Hold { name: u8 },
    Release { idx: u8 },
    Fill { n: u8 },
    Drain { n: u8 },
    Push { name: u8, v: u32 },
    Pop { name: u8 },
    VecInsert { name: u8, at: u8, v: u32 },
    VecRemove { name: u8, at: u8 },
    MapInsert { name: u8, key: u8, len: u8 },
    MapRemove { name: u8, key: u8 },
    RelSet { name: u8, v: u64 },
    RelTake { name: u8 },
    Collect,
}

/// A value as the model holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum MVal {
    U64(u64),
    Config(Config),
    Bytes([u8; 12]),
    Slice(Vec<u32>),
    Job {
        id: u64,
        name: String,
        tags: Vec<u16>,
        next: Option<Config>,
        label: String,
    },
    Vec(Vec<u32>),
    Map(BTreeMap<u16, String>),
    Rel(Option<u64>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    U64,
    Config,
    Bytes,
    Slice,
    Job,
    Vec,
    Map,
    Rel,
}

const KINDS: [Kind; 8] = [
    Kind::U64,
    Kind::Config,
    Kind::Bytes,
    Kind::Slice,
    Kind::Job,
    Kind::Vec,
    Kind::Map,
    Kind::Rel,
];

impl MVal {
    fn kind(&self) -> Kind {
        match self {
            MVal::U64(_) => Kind::U64,
            MVal::Config(_) => Kind::Config,
            MVal::Bytes(_) => Kind::Bytes,
            MVal::Slice(_) => Kind::Slice,
            MVal::Job { .. } => Kind::Job,
            MVal::Vec(_) => Kind::Vec,
            MVal::Map(_) => Kind::Map,
            MVal::Rel(_) => Kind::Rel,
        }
    }
}

fn mode(m: u8) -> Mode {
    match m % 3 {
        0 => Mode::Idle,
        1 => Mode::Busy,
        _ => Mode::Gone,
    }
}

fn config(version: u32, enabled: bool, m: u8, ratio: u16) -> Config {
    Config {
        version,
        enabled,
        mode: mode(m),
        ratio: f64::from(ratio) / 8.0,
    }
}

impl Val {
    /// The value the model expects the store to hold once this is stored.
    fn model(&self) -> MVal {
        match self {
            Val::U64(v) => MVal::U64(*v),
            Val::Config {
                version,
                enabled,
                mode,
                ratio,
            } => MVal::Config(config(*version, *enabled, *mode, *ratio)),
            Val::Bytes(b) => MVal::Bytes(*b),
            Val::Slice { len, first, large } => {
                let n = *len as usize + if *large { LARGE } else { 0 };
                MVal::Slice((0..n as u32).map(|i| first.wrapping_add(i)).collect())
            }
            Val::Job {
                id,
                name,
                tags,
                next,
            } => {
                let name: String = name.chars().take(24).collect();
                MVal::Job {
                    id: u64::from(*id),
                    label: name.chars().take(2).collect(),
                    name,
                    tags: tags.iter().take(24).copied().collect(),
                    next: next.map(|v| config(v, v % 2 == 0, v as u8, v as u16)),
                }
            }
            Val::Vec(v) => MVal::Vec(v.iter().take(32).copied().collect()),
            Val::Map(entries) => MVal::Map(
                entries
                    .iter()
                    .take(16)
                    .map(|&(k, len)| (u16::from(k), text(len)))
                    .collect(),
            ),
            Val::Rel(v) => MVal::Rel(*v),
        }
    }
}

/// A string of `len % 40` characters.
fn text(len: u8) -> String {
    (0..len % 40).map(|i| (b'a' + i % 26) as char).collect()
}

/// The names of the fillers that grow the directory.
fn filler(i: usize) -> String {
    format!("filler-{i}")
}

fn name_of(n: u8) -> String {
    format!("o{}", n % NAMES)
}

/// What a sequence works on, with its model.
pub struct Run {
    pub store: Store,
    pub model: BTreeMap<String, MVal>,
    pub fillers: BTreeSet<usize>,
    held: Vec<(Held, MVal)>,
    next_filler: usize,
}

/// A handle kept across operations, with the value it must keep reading.
enum Held {
    U64(Handle<u64>),
    Config(Handle<Config>),
    Bytes(Handle<[u8; 12]>),
    Slice(SliceHandle<u32>),
    Job(Handle<Job>),
}

/// Errors an operation may give in a healthy store that is full.
fn full(e: &Error) -> bool {
    matches!(e, Error::OutOfMemory { .. })
}

/// Builds `val` for `store` and stores it under `name` with `how`.
fn put(store: &Store, name: &str, val: &Val, how: Put) -> Result<Option<MVal>, Error> {
    let m = val.model();
    match &m {
        MVal::U64(v) => put_value(store, name, *v, how, |h| MVal::U64(**h)),
        MVal::Config(c) => put_value(store, name, *c, how, |h| MVal::Config(**h)),
        MVal::Bytes(b) => put_value(store, name, *b, how, |h| MVal::Bytes(**h)),
        MVal::Slice(items) => match how {
            Put::Insert => store.insert_slice(name, items).map(|()| None),
            Put::Replace => store.replace_slice(name, items).map(|()| None),
            Put::GetOrInsert => store
                .get_or_insert_slice_with(name, || items.clone())
                .map(|h| Some(MVal::Slice(h.to_vec()))),
        },
        MVal::Job {
            id,
            name: text,
            tags,
            next,
            label,
        } => {
            let job = Job {
                id: *id,
                name: ShmString::from_str_in(store, text)?,
                tags: ShmVec::from_slice_in(store, tags)?,
                next: match next {
                    Some(c) => RelPtr::new_in(store, *c)?,
                    None => RelPtr::null(),
                },
                label: FixedString::from_str(label)?,
            };
            put_value(store, name, job, how, |h| {
                read_job(h).expect("a job just read")
            })
        }
        MVal::Vec(items) => {
            let v = ShmVec::from_slice_in(store, items)?;
            put_value(store, name, LockedVec::new(v), how, |h| {
                h.snapshot().expect("a vector")
            })
        }
        MVal::Map(entries) => {
            let mut map = ShmMap::<u16, ShmString>::new_in(store);
            for (k, v) in entries {
                map.insert(k, ShmString::from_str_in(store, v)?)?;
            }
            put_value(store, name, LockedMap::new(map), how, |h| {
                h.snapshot().expect("a map")
            })
        }
        MVal::Rel(v) => {
            let p = match v {
                Some(v) => RelPtr::new_in(store, *v)?,
                None => RelPtr::null(),
            };
            put_value(store, name, LockedRel::new(p), how, |h| {
                h.snapshot().expect("a pointer")
            })
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Put {
    Insert,
    Replace,
    GetOrInsert,
}

/// Stores one value; for `GetOrInsert`, returns what the handle reads.
fn put_value<T: shmstore::ShmSafe>(
    store: &Store,
    name: &str,
    v: T,
    how: Put,
    read: impl FnOnce(&Handle<T>) -> MVal,
) -> Result<Option<MVal>, Error> {
    match how {
        Put::Insert => store.insert(name, v).map(|()| None),
        Put::Replace => store.replace(name, v).map(|()| None),
        Put::GetOrInsert => {
            let mut v = Some(v);
            let h = store.get_or_insert_with(name, || v.take().expect("called once"))?;
            Ok(Some(read(&h)))
        }
    }
}

/// The three kinds of mutex-guarded containers, behind one interface.
trait Locked {
    fn snapshot(&self) -> Result<MVal, Error>;
}

macro_rules! locked {
    ($t:ty, $read:expr) => {
        impl Locked for $t {
            fn snapshot(&self) -> Result<MVal, Error> {
                // A previous holder that died leaves the data as before or
                // after its operation: read it, and mark it consistent.
                let mut g = self.lock_recover()?;
                let r = $read(&*g);
                g.mark_consistent();
                r
            }
        }
    };
}

locked!(LockedVec, |v: &ShmVec<u32>| Ok(MVal::Vec(v.to_vec()?)));
locked!(LockedMap, |m: &ShmMap<u16, ShmString>| {
    let mut out = BTreeMap::new();
    let mut err = None;
    m.for_each(|k, v| match v.to_string_lossy() {
        Ok(s) => {
            out.insert(*k, s);
        }
        Err(e) => err = Some(e),
    })?;
    match err {
        Some(e) => Err(e),
        None => Ok(MVal::Map(out)),
    }
});
locked!(LockedRel, |p: &RelPtr<u64>| Ok(MVal::Rel(
    p.get()?.map(|v| *v)
)));

fn read_job(job: &Job) -> Result<MVal, Error> {
    Ok(MVal::Job {
        id: job.id,
        name: job.name.as_str()?.to_string(),
        tags: job.tags.to_vec()?,
        next: job.next.get()?.map(|c| *c),
        label: job.label.as_str().to_string(),
    })
}

/// `name` reads back as `v`.
#[track_caller]
fn expect_value(store: &Store, name: &str, v: &MVal) {
    match read_as(store, name, v.kind()) {
        Ok(got) => assert_eq!(&got, v, "{name}"),
        Err(e) => panic!("{name}: {e:?}, the model holds {v:?}"),
    }
}

/// Reads `name` as `kind`.
fn read_as(store: &Store, name: &str, kind: Kind) -> Result<MVal, Error> {
    match kind {
        Kind::U64 => store.get::<u64>(name).map(|h| MVal::U64(*h)),
        Kind::Config => store.get::<Config>(name).map(|h| MVal::Config(*h)),
        Kind::Bytes => store.get::<[u8; 12]>(name).map(|h| MVal::Bytes(*h)),
        Kind::Slice => store
            .get_slice::<u32>(name)
            .map(|h| MVal::Slice(h.to_vec())),
        Kind::Job => read_job(&*store.get::<Job>(name)?),
        Kind::Vec => store.get::<LockedVec>(name)?.snapshot(),
        Kind::Map => store.get::<LockedMap>(name)?.snapshot(),
        Kind::Rel => store.get::<LockedRel>(name)?.snapshot(),
    }
}

impl Run {
    /// A fresh store in heap memory.
    pub fn new() -> Run {
        Run::over(fuzzing::create_in_heap(CAPACITY).expect("a heap store"))
    }

    fn over(store: Store) -> Run {
        Run {
            store,
            model: BTreeMap::new(),
            fillers: BTreeSet::new(),
            held: Vec::new(),
            next_filler: 0,
        }
    }

    /// Applies `op` to the store and, as its outcome says, to the model.
    pub fn apply(&mut self, op: &Op) {
        let store = self.store.clone();
        match op {
            Op::Insert { name, val } => {
                let name = name_of(*name);
                match put(&store, &name, val, Put::Insert) {
                    Ok(_) => {
                        assert!(!self.model.contains_key(&name), "{name} inserted twice");
                        self.model.insert(name, val.model());
                    }
                    Err(Error::AlreadyExists { .. }) => {
                        assert!(self.model.contains_key(&name), "{name} exists?")
                    }
                    Err(e) => assert!(full(&e), "insert {name}: {e:?}"),
                }
            }
            Op::Replace { name, val } => {
                let name = name_of(*name);
                match put(&store, &name, val, Put::Replace) {
                    Ok(_) => {
                        assert!(self.model.contains_key(&name), "{name} replaced");
                        self.model.insert(name, val.model());
                    }
                    Err(Error::NotFound { .. }) => {
                        assert!(!self.model.contains_key(&name), "{name} not found")
                    }
                    Err(e) => assert!(full(&e), "replace {name}: {e:?}"),
                }
            }
            Op::GetOrInsert { name, val } => {
                let name = name_of(*name);
                let want = val.model();
                match (
                    put(&store, &name, val, Put::GetOrInsert),
                    self.model.get(&name),
                ) {
                    (Ok(got), Some(existing)) => {
                        assert_eq!(existing.kind(), want.kind(), "{name}");
                        assert_eq!(got.as_ref(), Some(existing), "{name}");
                    }
                    (Ok(got), None) => {
                        assert_eq!(got.as_ref(), Some(&want), "{name}");
                        self.model.insert(name, want);
                    }
                    (Err(Error::TypeMismatch { .. }), Some(existing)) => {
                        assert_ne!(existing.kind(), want.kind(), "{name}")
                    }
                    (Err(e), _) => assert!(full(&e), "get_or_insert {name}: {e:?}"),
                }
            }
            Op::Get { name, wrong } => {
                let name = name_of(*name);
                match self.model.get(&name) {
                    Some(v) => {
                        expect_value(&store, &name, v);
                        let other = KINDS[*wrong as usize % KINDS.len()];
                        if other != v.kind() && !same_type(other, v.kind()) {
                            let r = read_as(&store, &name, other);
                            assert!(
                                matches!(r, Err(Error::TypeMismatch { .. })),
                                "{name} read as {other:?}: {r:?}"
                            );
                        }
                    }
                    None => {
                        let r = read_as(&store, &name, KINDS[*wrong as usize % KINDS.len()]);
                        assert!(matches!(r, Err(Error::NotFound { .. })), "{name}: {r:?}");
                    }
                }
            }
            Op::Remove { name } => {
                let name = name_of(*name);
                match store.remove(&name) {
                    Ok(()) => assert!(self.model.remove(&name).is_some(), "{name} removed"),
                    Err(Error::NotFound { .. }) => {
                        assert!(!self.model.contains_key(&name), "{name} not found")
                    }
                    Err(e) => panic!("remove {name}: {e:?}"),
                }
            }
            Op::Hold { name } => {
                let name = name_of(*name);
                let Some(v) = self.model.get(&name).cloned() else {
                    return;
                };
                if self.held.len() >= 8 {
                    return;
                }
                let h = match v.kind() {
                    Kind::U64 => store.get::<u64>(&name).map(Held::U64),
                    Kind::Config => store.get::<Config>(&name).map(Held::Config),
                    Kind::Bytes => store.get::<[u8; 12]>(&name).map(Held::Bytes),
                    Kind::Slice => store.get_slice::<u32>(&name).map(Held::Slice),
                    Kind::Job => store.get::<Job>(&name).map(Held::Job),
                    _ => return,
                };
                match h {
                    Ok(h) => self.held.push((h, v)),
                    // Pinning may need to grow this process's pin table.
                    Err(e) => assert!(full(&e), "hold {name}: {e:?}"),
                }
            }
            Op::Release { idx } => {
                if !self.held.is_empty() {
                    let i = *idx as usize % self.held.len();
                    self.held.swap_remove(i);
                }
            }
            Op::Fill { n } => {
                for _ in 0..*n % 48 {
                    let i = self.next_filler;
                    match store.insert(&filler(i), i as u64) {
                        Ok(()) => {
                            self.fillers.insert(i);
                            self.next_filler += 1;
                        }
                        Err(e) => {
                            assert!(full(&e), "filler {i}: {e:?}");
                            break;
                        }
                    }
                }
            }
            Op::Drain { n } => {
                let victims: Vec<usize> = self.fillers.iter().take(*n as usize).copied().collect();
                for i in victims {
                    store.remove(&filler(i)).expect("a filler");
                    self.fillers.remove(&i);
                }
            }
            Op::Collect => {
                let r = store.collect().expect("collect");
                assert!(r.busy.is_empty() && r.broken.is_empty(), "{r:?}");
                // Nothing is ever lost by a sequence without a crash.
                assert_eq!(r.freed_blocks, 0, "{r:?}");
            }
            Op::Push { .. }
            | Op::Pop { .. }
            | Op::VecInsert { .. }
            | Op::VecRemove { .. }
            | Op::MapInsert { .. }
            | Op::MapRemove { .. }
            | Op::RelSet { .. }
            | Op::RelTake { .. } => self.container_op(op),
        }
    }

    /// A container operation through a `ShmMutex` guard.
    fn container_op(&mut self, op: &Op) {
        let (name, kind) = match op {
            Op::Push { name, .. }
            | Op::Pop { name }
            | Op::VecInsert { name, .. }
            | Op::VecRemove { name, .. } => (*name, Kind::Vec),
            Op::MapInsert { name, .. } | Op::MapRemove { name, .. } => (*name, Kind::Map),
            Op::RelSet { name, .. } | Op::RelTake { name } => (*name, Kind::Rel),
            _ => unreachable!("not a container operation"),
        };
        let name = name_of(name);
        let store = self.store.clone();
        let model = self.model.get_mut(&name);
        let expect_err = |r: Result<(), Error>, model: Option<&mut MVal>| match (r, model) {
            (Err(Error::NotFound { .. }), None) => {}
            (Err(Error::TypeMismatch { .. }), Some(m)) => assert_ne!(m.kind(), kind),
            (r, m) => panic!("{name} as {kind:?}: {r:?}, model {m:?}"),
        };
        match kind {
            Kind::Vec => {
                let h = match store.get::<LockedVec>(&name) {
                    Ok(h) => h,
                    Err(e) => return expect_err(Err(e), model),
                };
                let Some(MVal::Vec(m)) = model else {
                    panic!("{name} is a vector, the model says {model:?}")
                };
                let mut g = h.lock().expect("a free lock");
                match op {
                    Op::Push { v, .. } => match g.push(*v) {
                        Ok(()) => m.push(*v),
                        Err(e) => assert!(full(&e), "{e:?}"),
                    },
                    Op::Pop { .. } => assert_eq!(g.pop().expect("pop"), m.pop()),
                    Op::VecInsert { at, v, .. } => {
                        let at = *at as usize % (m.len() + 1);
                        match g.insert(at, *v) {
                            Ok(()) => m.insert(at, *v),
                            Err(e) => assert!(full(&e), "{e:?}"),
                        }
                    }
                    Op::VecRemove { at, .. } => {
                        if m.is_empty() {
                            assert!(g.remove(0).is_err());
                        } else {
                            let at = *at as usize % m.len();
                            assert_eq!(g.remove(at).expect("remove"), m.remove(at));
                        }
                    }
                    _ => unreachable!(),
                }
            }
            Kind::Map => {
                let h = match store.get::<LockedMap>(&name) {
                    Ok(h) => h,
                    Err(e) => return expect_err(Err(e), model),
                };
                let Some(MVal::Map(m)) = model else {
                    panic!("{name} is a map, the model says {model:?}")
                };
                let mut g = h.lock().expect("a free lock");
                match op {
                    Op::MapInsert { key, len, .. } => {
                        let (k, v) = (u16::from(*key % 24), text(*len));
                        let s = match ShmString::from_str_in(&store, &v) {
                            Ok(s) => s,
                            Err(e) => return assert!(full(&e), "{e:?}"),
                        };
                        match g.insert(&k, s) {
                            Ok(old) => {
                                let old = old.map(|s| s.to_string_lossy().expect("old value"));
                                assert_eq!(old, m.insert(k, v));
                            }
                            Err(e) => assert!(full(&e), "{e:?}"),
                        }
                    }
                    Op::MapRemove { key, .. } => {
                        let k = u16::from(*key % 24);
                        let old = g.remove(&k).expect("map remove");
                        let old = old.map(|s| s.to_string_lossy().expect("old value"));
                        assert_eq!(old, m.remove(&k));
                    }
                    _ => unreachable!(),
                }
            }
            Kind::Rel => {
                let h = match store.get::<LockedRel>(&name) {
                    Ok(h) => h,
                    Err(e) => return expect_err(Err(e), model),
                };
                let Some(MVal::Rel(m)) = model else {
                    panic!("{name} is a pointer, the model says {model:?}")
                };
                let mut g = h.lock().expect("a free lock");
                match op {
                    Op::RelSet { v, .. } => match g.set(*v) {
                        Ok(()) => *m = Some(*v),
                        Err(e) => assert!(full(&e), "{e:?}"),
                    },
                    Op::RelTake { .. } => assert_eq!(g.take().expect("take"), m.take()),
                    _ => unreachable!(),
                }
            }
            _ => unreachable!(),
        }
    }

    /// The store holds what the model says, every held handle reads its
    /// value, and `check()` finds nothing wrong, nothing unreachable and
    /// nothing unaccounted for.
    pub fn verify(&self) {
        for (name, v) in &self.model {
            expect_value(&self.store, name, v);
        }
        for (h, v) in &self.held {
            let got = match h {
                Held::U64(h) => MVal::U64(**h),
                Held::Config(h) => MVal::Config(**h),
                Held::Bytes(h) => MVal::Bytes(**h),
                Held::Slice(h) => MVal::Slice(h.to_vec()),
                Held::Job(h) => read_job(h).expect("a held job"),
            };
            assert_eq!(&got, v, "a held handle");
        }
        let stats = self.store.stats().expect("stats");
        assert_eq!(
            stats.objects,
            (self.model.len() + self.fillers.len()) as u64,
            "objects"
        );
        let report = self.store.check().expect("check");
        assert!(report.is_ok(), "{report}");
        assert!(report.untraced.is_empty(), "{report}");
        assert_eq!(report.unreachable_blocks, 0, "{report}");
        assert_eq!(report.unaccounted_blocks, 0, "{report}");
    }

    /// Runs `op` with a crash simulated at its `step`-th step: if the
    /// operation got that far, the store is replaced by what recovery makes
    /// of the image taken there, checked against the model before and
    /// after the operation, and the model becomes the one it matches.
    /// Returns whether a crash happened.
    pub fn apply_crashing(&mut self, op: &Op, step: u64) -> bool {
        let before = (self.model.clone(), self.fillers.clone());
        let store = self.store.clone();
        let ((), image) = fuzzing::image_at_step(&store, step, || self.apply(op));
        drop(store);
        let Some(image) = image else {
            return false;
        };
        let after = (self.model.clone(), self.fillers.clone());
        // The process "died": its handles and its store go (dropping them
        // runs no operation on the image).
        self.held.clear();
        let old = std::mem::replace(
            &mut self.store,
            fuzzing::create_in_heap(shmstore::MIN_CAPACITY).expect("a placeholder store"),
        );
        drop(old);
        let recovered = fuzzing::open_crash_image(&image, image.len())
            .unwrap_or_else(|e| panic!("recovery after a crash at step {step} of {op:?}: {e}"));
        self.store = recovered;
        let matches = |model: &BTreeMap<String, MVal>| {
            (0..NAMES).map(name_of).all(|name| match model.get(&name) {
                Some(v) => matches!(read_as(&self.store, &name, v.kind()), Ok(got) if got == *v),
                None => matches!(self.store.contains(&name), Ok(false)),
            })
        };
        let (fillers_before, fillers_after) = (before.1.clone(), after.1.clone());
        let model = if matches(&before.0) {
            before.0
        } else if matches(&after.0) {
            after.0
        } else {
            let found: Vec<(String, Result<MVal, Error>)> = (0..NAMES)
                .map(name_of)
                .map(|n| {
                    let kind = before
                        .0
                        .get(&n)
                        .or(after.0.get(&n))
                        .map_or(Kind::U64, MVal::kind);
                    let r = read_as(&self.store, &n, kind);
                    (n, r)
                })
                .collect();
            panic!(
                "after a crash at step {step} of {op:?} the store is neither as before nor as \
                 after: found {found:?}\nbefore {:?}\nafter {:?}",
                before.0, after.0
            );
        };
        // Fillers: each insert or remove of a filler is an operation of its
        // own, so recovery keeps those done before the crash: every filler
        // both states have is there, and no other than theirs.
        let mut fillers = BTreeSet::new();
        for &i in fillers_before.union(&fillers_after) {
            if self.store.contains(&filler(i)).expect("contains") {
                fillers.insert(i);
            } else {
                assert!(
                    !(fillers_before.contains(&i) && fillers_after.contains(&i)),
                    "filler {i} lost"
                );
            }
        }
        self.model = model;
        self.fillers = fillers;
        self.next_filler = self
            .fillers
            .last()
            .map_or(0, |&i| i + 1)
            .max(self.next_filler);
        // A crash may leave unreachable buffers: `collect` frees them all
        // (the process that held them is gone), and then nothing is lost.
        let report = self.store.check().expect("check after recovery");
        assert!(
            report.is_ok(),
            "after a crash at step {step} of {op:?}: {report}"
        );
        let collected = self.store.collect().expect("collect after recovery");
        assert!(
            collected.busy.is_empty() && collected.broken.is_empty() && collected.kept_held == 0,
            "{collected:?}"
        );
        self.verify();
        true
    }
}

impl Default for Run {
    fn default() -> Self {
        Run::new()
    }
}

/// Two kinds that the store cannot tell apart by type (none: every kind is
/// its own Rust type with its own layout).
fn same_type(_: Kind, _: Kind) -> bool {
    false
}

/// Installs the page hooks of heap stores: under AddressSanitizer, a
/// store's memory is poisoned until the store commits it, so that a read or
/// write of a page the store never committed (which on a full `/dev/shm`
/// would be a `SIGBUS`) is reported as a `use-after-poison`.
pub fn install_page_hooks() {
    #[cfg(fuzzing)]
    crate::asan::install();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str) -> Val {
        Val::Job {
            id: 3,
            name: name.into(),
            tags: vec![1, 2, 3],
            next: Some(9),
        }
    }

    /// The operations whose crash points the test walks, each after a
    /// prefix that sets the store up for it.
    fn scenarios() -> Vec<(Vec<Op>, Op)> {
        let vec = |name| Op::Insert {
            name,
            val: Val::Vec((0..8).collect()),
        };
        vec![
            (
                vec![],
                Op::Insert {
                    name: 0,
                    val: job("first"),
                },
            ),
            (
                vec![Op::Insert {
                    name: 0,
                    val: job("old"),
                }],
                Op::Replace {
                    name: 0,
                    val: job("new"),
                },
            ),
            (vec![vec(1)], Op::Push { name: 1, v: 99 }),
            (
                vec![vec(1)],
                Op::VecInsert {
                    name: 1,
                    at: 3,
                    v: 7,
                },
            ),
            (
                vec![Op::Insert {
                    name: 2,
                    val: Val::Map(vec![(1, 3), (2, 5)]),
                }],
                Op::MapInsert {
                    name: 2,
                    key: 9,
                    len: 30,
                },
            ),
            (
                vec![Op::Insert {
                    name: 3,
                    val: Val::Rel(Some(4)),
                }],
                Op::RelSet { name: 3, v: 5 },
            ),
            (
                vec![],
                Op::Insert {
                    name: 4,
                    val: Val::Slice {
                        len: 3,
                        first: 1,
                        large: true,
                    },
                },
            ),
            (
                vec![
                    Op::Insert {
                        name: 5,
                        val: Val::U64(1),
                    },
                    Op::Hold { name: 5 },
                ],
                Op::Remove { name: 5 },
            ),
            (vec![Op::Fill { n: 30 }], Op::Drain { n: 30 }),
        ]
    }

    /// Every crash point of each scenario's operation recovers to the
    /// state before or after it (the property `arena_ops_crash` fuzzes),
    /// and the walk reaches the end of each operation.
    #[test]
    fn a_crash_at_every_step_recovers_to_before_or_after() {
        for (prefix, op) in scenarios() {
            let mut crashes = 0;
            for step in 1..2000 {
                let mut run = Run::new();
                for p in &prefix {
                    run.apply(p);
                }
                run.verify();
                if !run.apply_crashing(&op, step) {
                    break;
                }
                crashes += 1;
                run.verify();
                // The recovered store keeps working.
                run.apply(&Op::Insert {
                    name: 7,
                    val: Val::U64(step),
                });
                run.verify();
            }
            assert!(crashes > 0, "{op:?} took no step");
            assert!(crashes < 1999, "{op:?} never finished");
            eprintln!("{op:?}: {crashes} crash points");
        }
    }
}
