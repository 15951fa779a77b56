//! Looking at stores without changing them: what `shmstore ls`, `info`,
//! `objects`, `dump` and `check` show, as data.
//!
//! - [`Store::list`](crate::Store::list) describes every segment in
//!   `/dev/shm` ([`SegmentInfo`]): stores of this format with their size,
//!   processes and header-lock state, stores being created, stores of
//!   another format, and other programs' segments;
//! - [`segment`] describes one;
//! - [`Store::inspect`](crate::Store::inspect) opens one store for a
//!   closer look ([`Inspection`]): its objects with their layouts and
//!   holders, any value printed through its recorded layout ([`Value`]),
//!   and the full consistency check.
//!
//! # Read-only
//!
//! Nothing here but [`Store::remove_unused`](crate::Store::remove_unused)
//! writes to a segment, takes its header lock or joins its process table.
//! A segment is opened read-only (a read permission suffices), without
//! following a symlink or blocking on a FIFO, and read with `pread` into
//! private memory; nothing of it is mapped (a mapping of a file its owner
//! can shrink at any time could fault). The header lock's state is
//! *observed* from its bytes, never taken (taking a robust lock whose owner
//! died and releasing it without marking it consistent would make it
//! unrecoverable for everyone). Liveness of the processes a store records
//! is asked of the OS (`kill(pid, 0)`, `/proc`), and dead ones are
//! reported, not released.
//!
//! A copy is made while no live process holds the header lock (waiting a
//! little for one that does), and checked not to have changed while it was
//! made ([`SegmentInfo`] and [`Inspection`] say whether it did). So the
//! figures are those of one moment, and a store another process is busy
//! changing is reported as such rather than as corrupted. When the lock's
//! holder died mid-operation, [`Inspection`] shows the store as its next
//! user will find it: the dead holder's journal is rolled back — in the
//! private copy.
//!
//! The cost: [`Store::list`](crate::Store::list) copies a few pages of each
//! store (the header and the process table: at most
//! [`SUMMARY_MAX_BYTES`], whatever the header's words say);
//! [`Store::inspect`](crate::Store::inspect) copies every page the store
//! has committed (its used size, not its capacity).
//!
//! # Names are not text to print raw
//!
//! Store, object, type, field and variant names come from the segment,
//! which whoever created the store chose: they may hold escape sequences
//! and newlines. [`printable`] escapes them for a terminal; the `Display`
//! forms here ([`Value`], layouts) do so themselves.
//!
//! ```
//! use shmstore::inspect::{Status, Value};
//! use shmstore::{ShmString, ShmSafe, Store};
//!
//! #[derive(ShmSafe)]
//! #[repr(C)]
//! struct Sensor {
//!     id: u32,
//!     label: ShmString,
//! }
//!
//! # fn main() -> shmstore::Result<()> {
//! # let name = format!("doc-inspect-{}", std::process::id());
//! let store = Store::create(&name, 1 << 20)?;
//! store.insert("s", Sensor { id: 7, label: ShmString::from_str_in(&store, "boiler")? })?;
//!
//! let info = shmstore::inspect::segment(&name)?;
//! assert_eq!(info.status, Status::InUse); // this process has it open
//!
//! let look = Store::inspect(&name)?;
//! let value = look.value("s", &Default::default())?;
//! assert_eq!(value.to_string(), "Sensor { id: 7, label: \"boiler\" }");
//! match value {
//!     Value::Struct { fields, .. } => assert_eq!(fields[1].1, Value::Str("boiler".into())),
//!     other => panic!("{other:?}"),
//! }
//! assert!(look.check().is_ok());
//! # Store::unlink(&name)?;
//! # Ok(())
//! # }
//! ```

mod snapshot;
mod value;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::arena::dir::hash_name;
use crate::arena::header::*;
use crate::arena::walk::Locks;
use crate::arena::Arena;
use crate::layout::LayoutDesc;
use crate::region::SegmentName;
use crate::sys::proc::{self as sysproc, StartTime};
use crate::sys::pthread::Observed;
use crate::sys::shm;
use crate::{CheckReport, Entry, Error, Result};

use snapshot::{no_commit, word32_at, word_at, Extent, Segment, Snapshot};

pub use snapshot::SUMMARY_MAX_BYTES;
pub use value::{DumpLimits, Value, MAX_DEPTH};

/// `s` with every control character (and every invisible character that
/// reorders or hides text: bidirectional overrides, zero-width ones)
/// escaped as Rust escapes them in a `{:?}` string (`\n`, `\u{1b}`), so
/// that a name read from a segment can be printed on a terminal without
/// sending it escape sequences or forging lines. Other characters,
/// non-ASCII ones included, are kept; a name without such characters is
/// returned as it is.
///
/// ```
/// assert_eq!(shmstore::inspect::printable("plain"), "plain");
/// assert_eq!(shmstore::inspect::printable("a\nb\u{1b}[2J"), "a\\nb\\u{1b}[2J");
/// assert_eq!(shmstore::inspect::printable("café"), "café");
/// ```
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    let hidden = |c: char| {
        c.is_control()
            || matches!(
                c,
                '\u{200b}'..='\u{200f}'
                    | '\u{202a}'..='\u{202e}'
                    | '\u{2060}'..='\u{2069}'
                    | '\u{feff}'
            )
    };
    if !s.chars().any(hidden) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if hidden(c) => {
                use std::fmt::Write as _;
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// How long a look waits for a moment when no live process holds a
/// store's header lock, before it copies the store anyway (and says the
/// copy may be inconsistent).
pub const PATIENCE: Duration = Duration::from_secs(2);

/// Whether a process a store records is still running (see the
/// liveness rules of the crate: only a definite answer is "dead").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Liveness {
    /// It runs (its pid exists with the recorded start time).
    Alive,
    /// It is gone: no process has its pid, or the one that has it started
    /// at another time.
    Dead,
    /// This process cannot tell (another pid namespace, an unreadable
    /// `/proc`, an unknown start time while the pid exists): counted as
    /// alive.
    Unknown,
}

impl Liveness {
    /// `true` unless known dead.
    pub fn counts_as_alive(self) -> bool {
        self != Liveness::Dead
    }

    fn of(l: sysproc::Liveness) -> Liveness {
        match l {
            sysproc::Liveness::Alive => Liveness::Alive,
            sysproc::Liveness::Dead => Liveness::Dead,
            sysproc::Liveness::Unknown => Liveness::Unknown,
        }
    }

    /// `"alive"`, `"dead"` or `"unknown"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Liveness::Alive => "alive",
            Liveness::Dead => "dead",
            Liveness::Unknown => "unknown",
        }
    }
}

/// A process registered in a store's process table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Its pid (in the pid namespace it attached from).
    pub pid: u32,
    /// Whether it still runs.
    pub liveness: Liveness,
    /// Pins it holds on objects (handles), counted in its pin table;
    /// `None` when not read (a summary).
    pub pins: Option<u64>,
}

/// The state of a lock, observed from its bytes without taking it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockState {
    /// No one holds it.
    Free,
    /// A thread holds it.
    Held {
        /// The thread's id.
        tid: u32,
        /// Its process, if this process can tell.
        pid: Option<u32>,
    },
    /// Its holder died holding it; the next locker recovers (for the
    /// header lock: rolls the holder's operation back).
    OwnerDied,
    /// A locker that found its holder dead holds it, recovering.
    Recovering {
        /// The thread's id.
        tid: u32,
        /// Its process, if this process can tell.
        pid: Option<u32>,
    },
    /// Released without being marked consistent after its holder died:
    /// every lock of it fails.
    Unrecoverable,
    /// Bytes this build cannot interpret (a C library other than glibc).
    Unknown,
}

impl LockState {
    pub(crate) fn of(o: Observed) -> LockState {
        match o {
            Observed::Free => LockState::Free,
            Observed::Held { tid } => LockState::Held {
                tid,
                pid: sysproc::thread_group(tid),
            },
            Observed::OwnerDied => LockState::OwnerDied,
            Observed::Recovering { tid } => LockState::Recovering {
                tid,
                pid: sysproc::thread_group(tid),
            },
            Observed::Unrecoverable => LockState::Unrecoverable,
            Observed::Unknown => LockState::Unknown,
        }
    }
}

impl std::fmt::Display for LockState {
    /// `free`, `held by pid 42`, `owner died`, ...
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let who = |tid: &u32, pid: &Option<u32>| match pid {
            Some(pid) => format!("pid {pid}"),
            None => format!("thread {tid}"),
        };
        match self {
            LockState::Free => f.write_str("free"),
            LockState::Held { tid, pid } => write!(f, "held by {}", who(tid, pid)),
            LockState::OwnerDied => f.write_str("owner died"),
            LockState::Recovering { tid, pid } => {
                write!(f, "being recovered by {}", who(tid, pid))
            }
            LockState::Unrecoverable => f.write_str("unrecoverable"),
            LockState::Unknown => f.write_str("unknown"),
        }
    }
}

/// A store of this format, as its header and process table describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSummary {
    /// Bytes reserved (the segment's length).
    pub capacity: u64,
    /// Bytes committed in `/dev/shm`, as the header counts them.
    pub committed: u64,
    /// Bytes in allocated blocks, metadata included.
    pub used: u64,
    /// Named objects.
    pub objects: u64,
    /// Times the header lock was recovered from a dead holder.
    pub recoveries: u64,
    /// The store's id (containers record it).
    pub store_id: u64,
    /// The pid of the process that created it.
    pub creator: u32,
    /// Made to be removed when unused
    /// ([`StoreOptions::remove_when_unused`](crate::StoreOptions::remove_when_unused)).
    pub remove_when_unused: bool,
    /// Its last user marked it removed (its name should be gone).
    pub removed: bool,
    /// Every process its process table registers.
    pub processes: Vec<ProcessInfo>,
    /// The header lock.
    pub header_lock: LockState,
    /// Entries in the intent journal: non-zero when the lock's holder
    /// died mid-operation (the next locker rolls them back).
    pub journal_entries: u64,
    /// The header and process table were read at a moment when no live
    /// process held the header lock, and did not change meanwhile.
    pub consistent: bool,
    /// What is wrong with the header or the process table (empty when
    /// nothing is). `shmstore check` looks further.
    pub problems: Vec<String>,
}

impl StoreSummary {
    /// Registered processes that count as alive (alive, or of unknown
    /// liveness).
    pub fn live_processes(&self) -> impl Iterator<Item = &ProcessInfo> {
        self.processes
            .iter()
            .filter(|p| p.liveness.counts_as_alive())
    }

    /// Registered processes known to be dead (their handles' pins are
    /// released by the next process that opens the store).
    pub fn dead_processes(&self) -> impl Iterator<Item = &ProcessInfo> {
        self.processes
            .iter()
            .filter(|p| !p.liveness.counts_as_alive())
    }
}

/// What a segment in `/dev/shm` is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SegmentKind {
    /// A store of this format and ABI, initialised (perhaps damaged: see
    /// [`StoreSummary::problems`]).
    Ready(StoreSummary),
    /// A store whose creator has not finished initialising it.
    Creating {
        /// The creating process.
        creator: u32,
        /// Whether it still runs: a dead creator left it half-created.
        creator_liveness: Liveness,
    },
    /// A shmstore store of another format version or ABI.
    Incompatible {
        /// What differs.
        reason: String,
    },
    /// Not a shmstore segment (another program's, or one whose creator
    /// died before writing anything).
    Foreign {
        /// What was found instead.
        reason: String,
    },
    /// This user may not read it.
    Unreadable {
        /// Why.
        reason: String,
    },
}

/// The lifecycle verdict on a segment: what `shmstore gc` does with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// A live process uses it (registered, or seen mapping it).
    InUse,
    /// A store meant to persist that no live process uses (or a store of
    /// another format that no process maps): kept, removed only by
    /// `shmstore gc --idle`.
    Idle,
    /// Being created by a process that runs, or that this process cannot
    /// tell dead (of another pid namespace).
    Creating,
    /// No live process uses it, and it was made to be removed when unused
    /// (or was marked removed), or was left half-created by a creator that
    /// died: `shmstore gc` removes it.
    Abandoned,
    /// A store of this format that no live process is known to use, whose
    /// header or process table is damaged (see
    /// [`StoreSummary::problems`]): its objects may still read. Never
    /// removed by `gc`; `shmstore rm --force` removes it, for a person who
    /// has looked.
    Damaged,
    /// Whether a process uses it cannot be told from here: processes that
    /// this one cannot see (of another pid namespace, or whose mappings
    /// this user may not read) may map it, and nothing else says whether
    /// one does. Never removed by `gc`.
    Unknown,
    /// Not a shmstore segment: never removed by `gc`.
    Foreign,
    /// Cannot be read by this user: never removed by `gc`.
    Unreadable,
}

impl Status {
    /// `"in-use"`, `"idle"`, `"creating"`, `"abandoned"`, `"damaged"`,
    /// `"unknown"`, `"foreign"`, `"unreadable"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::InUse => "in-use",
            Status::Idle => "idle",
            Status::Creating => "creating",
            Status::Abandoned => "abandoned",
            Status::Damaged => "damaged",
            Status::Unknown => "unknown",
            Status::Foreign => "foreign",
            Status::Unreadable => "unreadable",
        }
    }
}

/// One segment in `/dev/shm`: what [`Store::list`](crate::Store::list)
/// returns for each, and `shmstore ls` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The name, with its leading slash (`"/demo"`).
    pub name: String,
    /// The owner's uid.
    pub owner: u32,
    /// Permission bits (`0o600`).
    pub mode: u32,
    /// The segment's length in bytes.
    pub size: u64,
    /// Bytes of memory it holds (its allocated pages).
    pub allocated: u64,
    /// What it is.
    pub kind: SegmentKind,
    /// Processes seen mapping it writable, as its users do (through
    /// `/proc/<pid>/maps`; only those of this pid namespace whose maps this
    /// user may read; a read-only look like this one maps nothing).
    pub mapped_by: Vec<u32>,
    /// `mapped_by` lists every process that maps it: this process could
    /// read the maps of every process of the machine (it runs in the
    /// initial pid namespace, and as a user who may read them all). When
    /// `false`, a process this one cannot see may map it: a verdict that
    /// rests on "no process maps it" is [`Status::Unknown`].
    pub mappers_complete: bool,
    /// The lifecycle verdict.
    pub status: Status,
    /// Why: a sentence for people.
    pub reason: String,
}

impl SegmentInfo {
    /// `true` for a shmstore store of any format, state or damage.
    pub fn is_store(&self) -> bool {
        matches!(
            self.kind,
            SegmentKind::Ready(_) | SegmentKind::Creating { .. } | SegmentKind::Incompatible { .. }
        )
    }

    /// The store's summary, if it is a store of this format.
    pub fn store(&self) -> Option<&StoreSummary> {
        match &self.kind {
            SegmentKind::Ready(s) => Some(s),
            _ => None,
        }
    }

    /// The processes that use it, as far as this process can tell:
    /// registered ones that count as alive, a live creator, and those seen
    /// mapping it; ascending, without repeats.
    pub fn users(&self) -> Vec<u32> {
        let mut pids = self.mapped_by.clone();
        match &self.kind {
            SegmentKind::Ready(s) => pids.extend(s.live_processes().map(|p| p.pid)),
            SegmentKind::Creating {
                creator,
                creator_liveness,
            } if creator_liveness.counts_as_alive() => pids.push(*creator),
            _ => {}
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Decides [`status`](SegmentInfo::status) and
    /// [`reason`](SegmentInfo::reason) from the rest.
    ///
    /// Only what is known counts as "unused": a creator of another pid
    /// namespace counts as alive (its pid namespace is recorded); a store
    /// of another format, whose only sign of use is a mapping, is unknown
    /// unless every process's mappings could be read; a store of this
    /// format is judged by its process table, where every user registers
    /// (one that found the table's 128 slots full does not, so a full
    /// table whose overflow cannot be seen is unknown too); and a store
    /// whose header or process table is damaged is never abandoned.
    fn judge(&mut self) {
        let users = self.users();
        let in_use = |users: &[u32]| {
            let list: Vec<String> = users.iter().map(|p| p.to_string()).collect();
            format!("used by pid {}", list.join(", "))
        };
        let unseen = "processes this one cannot see (of another pid namespace, or whose \
                      mappings this user may not read) may map it";
        (self.status, self.reason) = match &self.kind {
            SegmentKind::Foreign { reason } => (Status::Foreign, reason.clone()),
            SegmentKind::Unreadable { reason } => (Status::Unreadable, reason.clone()),
            SegmentKind::Creating {
                creator,
                creator_liveness,
            } => match creator_liveness {
                Liveness::Alive => (Status::Creating, format!("being created by pid {creator}")),
                Liveness::Unknown => (
                    Status::Creating,
                    format!(
                        "being created by pid {creator}, of another pid namespace or whose \
                         liveness cannot be told from here"
                    ),
                ),
                // A half-created store is of no use to anyone (openers
                // give up on it): a mapping only says someone is looking.
                Liveness::Dead if !users.is_empty() => (Status::InUse, in_use(&users)),
                Liveness::Dead => (
                    Status::Abandoned,
                    format!("half-created: its creator (pid {creator}) died"),
                ),
            },
            SegmentKind::Incompatible { reason } => {
                if !users.is_empty() {
                    (Status::InUse, format!("{reason}; {}", in_use(&users)))
                } else if !self.mappers_complete {
                    (
                        Status::Unknown,
                        format!("{reason}; no process is seen mapping it, but {unseen}"),
                    )
                } else {
                    (
                        Status::Idle,
                        format!("{reason}; no process is seen mapping it"),
                    )
                }
            }
            SegmentKind::Ready(s) => {
                if !users.is_empty() {
                    (Status::InUse, in_use(&users))
                } else if s.removed {
                    (
                        Status::Abandoned,
                        "marked removed by whoever removed it, which did not unlink it".to_string(),
                    )
                } else if let Some(problem) = s.problems.first() {
                    (
                        Status::Damaged,
                        format!(
                            "damaged ({problem}); no live process is registered; only `rm \
                             --force` removes it"
                        ),
                    )
                } else if s.processes.len() as u64 >= crate::arena::procs::PROC_SLOTS
                    && !self.mappers_complete
                {
                    (
                        Status::Unknown,
                        format!(
                            "its process table is full, so users may run unregistered, and \
                             {unseen}"
                        ),
                    )
                } else if s.remove_when_unused {
                    let why = if s.processes.is_empty() {
                        "made to be removed when unused; no process uses it".to_string()
                    } else {
                        "made to be removed when unused; every registered process is dead"
                            .to_string()
                    };
                    (Status::Abandoned, why)
                } else if s.processes.is_empty() {
                    (Status::Idle, "no process has it open".to_string())
                } else {
                    (
                        Status::Idle,
                        "every registered process is dead (meant to persist)".to_string(),
                    )
                }
            }
        };
    }
}

/// Describes the segment `name` (`"demo"` or `"/demo"`), as
/// [`Store::list`](crate::Store::list) does each. [`Error::NotFound`] if
/// there is none; a segment that cannot be read is described, not an
/// error.
pub fn segment(name: &str) -> Result<SegmentInfo> {
    Ok(segment_and_file(&SegmentName::parse(name)?)?.0)
}

/// [`segment`], and the file it describes (`st_dev`, `st_ino`).
fn segment_and_file(name: &SegmentName) -> Result<(SegmentInfo, Option<(u64, u64)>)> {
    let (mut info, stat, _) = probe(name, Extent::Summary)?;
    let file = stat.map(|s| (s.dev, s.ino));
    let found = sysproc::mappers(file.as_slice());
    if let Some(file) = file {
        info.mapped_by = found.by_file.get(&file).cloned().unwrap_or_default();
    }
    info.mappers_complete = found.complete();
    info.judge();
    Ok((info, file))
}

/// Every segment in `/dev/shm`, sorted by name (see
/// [`Store::list`](crate::Store::list)).
pub(crate) fn list() -> Result<Vec<SegmentInfo>> {
    let mut names = shm::list_segments()?;
    names.sort();
    let mut out = Vec::new();
    let mut files = Vec::new();
    for name in names {
        let Ok(parsed) = SegmentName::parse(&name) else {
            continue;
        };
        match probe(&parsed, Extent::Summary) {
            Ok((info, stat, _)) => {
                files.push(stat.map(|s| (s.dev, s.ino)));
                out.push(info);
            }
            // Removed since the directory was read.
            Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let wanted: Vec<(u64, u64)> = files.iter().flatten().copied().collect();
    let found = sysproc::mappers(&wanted);
    for (info, file) in out.iter_mut().zip(files) {
        if let Some(file) = file {
            info.mapped_by = found.by_file.get(&file).cloned().unwrap_or_default();
        }
        info.mappers_complete = found.complete();
        info.judge();
    }
    Ok(out)
}

/// Which segments [`Store::remove_unused`](crate::Store::remove_unused)
/// removes, by their [`Status`] (judged again under the store's header
/// lock for a store of this format).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemoveIf {
    /// [`Status::Abandoned`] only (`shmstore gc`).
    Abandoned,
    /// [`Status::Abandoned`] or [`Status::Idle`]: no live process uses it
    /// (`shmstore gc --idle`, `shmstore rm`).
    Unused,
    /// Whatever it is (`shmstore rm --force`).
    Any,
}

impl RemoveIf {
    /// Whether this rule removes a segment judged `status`.
    pub fn accepts(self, status: Status) -> bool {
        match self {
            RemoveIf::Abandoned => status == Status::Abandoned,
            RemoveIf::Unused => matches!(status, Status::Abandoned | Status::Idle),
            RemoveIf::Any => true,
        }
    }
}

/// What [`Store::remove_unused`](crate::Store::remove_unused) did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Removal {
    /// Removed (its name unlinked), as judged last.
    Removed(SegmentInfo),
    /// Kept: the rule does not remove it as judged last (its
    /// [`reason`](SegmentInfo::reason) says why), or it changed while it
    /// was looked at (the reason says so).
    Kept(SegmentInfo),
}

/// [`Store::remove_unused`](crate::Store::remove_unused).
pub(crate) fn remove(name: &str, rule: RemoveIf, wait: Duration) -> Result<Removal> {
    let parsed = SegmentName::parse(name)?;
    let (mut look, file) = segment_and_file(&parsed)?;
    if !rule.accepts(look.status) {
        return Ok(Removal::Kept(look));
    }
    let Some(file) = file else {
        return Ok(Removal::Kept(look));
    };
    let lockable =
        matches!(&look.kind, SegmentKind::Ready(s) if s.problems.is_empty() || s.removed);
    if !lockable {
        // No usable header lock: half-created, another format, damaged,
        // foreign (the last two only for `Any`).
        return Ok(if crate::store::unlink_unlocked(&parsed, file)? {
            Removal::Removed(look)
        } else {
            look.reason = format!(
                "not removed: it changed while it was looked at ({})",
                look.reason
            );
            Removal::Kept(look)
        });
    }
    let judged = crate::store::remove_locked(&parsed, file, wait, |a| {
        let mut now = look.clone();
        now.kind = SegmentKind::Ready(summarise(a.mem, Observed::Free, true));
        now.judge();
        Ok((rule.accepts(now.status), now))
    });
    match judged {
        Ok(crate::store::Locked::Decided {
            removed: true,
            unlinked,
            mut judged,
        }) => {
            if !unlinked {
                judged.reason = format!(
                    "{}; its name was already gone, or names another segment now",
                    judged.reason
                );
            }
            Ok(Removal::Removed(judged))
        }
        Ok(crate::store::Locked::Decided { judged, .. }) => Ok(Removal::Kept(judged)),
        Ok(crate::store::Locked::Changed(why)) => {
            look.reason = format!("not removed: {why}");
            Ok(Removal::Kept(look))
        }
        Err(Error::NotFound { .. }) => Err(not_found(&parsed)),
        // `Any` removes even a store whose lock cannot be had.
        Err(_) if rule == RemoveIf::Any => {
            crate::region::unlink(&parsed)?;
            Ok(Removal::Removed(look))
        }
        Err(e) => Err(e),
    }
}

fn not_found(name: &SegmentName) -> Error {
    Error::NotFound {
        what: format!("store \"{}\"", name.as_str()),
    }
}

/// What [`probe`] finds: the description (not yet judged: no mappers), the
/// file's identity, and for a store of this format the open segment and
/// its copy.
type Probed = (
    SegmentInfo,
    Option<shm::FileStat>,
    Option<(Segment, Snapshot)>,
);

/// Opens and classifies one segment; for a store of this format, also
/// copies `extent` of it.
fn probe(name: &SegmentName, extent: Extent) -> Result<Probed> {
    let Some(stat) = shm::stat_segment(name.as_str())? else {
        return Err(not_found(name));
    };
    let mut info = SegmentInfo {
        name: name.as_str().to_string(),
        owner: stat.uid,
        mode: stat.mode,
        size: stat.size,
        allocated: stat.allocated,
        kind: SegmentKind::Foreign {
            reason: String::new(),
        },
        mapped_by: Vec::new(),
        mappers_complete: false,
        status: Status::Foreign,
        reason: String::new(),
    };
    let foreign = |reason: String| SegmentKind::Foreign { reason };
    if !stat.regular {
        info.kind = foreign("not a regular file".into());
        return Ok((info, Some(stat), None));
    }
    let seg = match Segment::open(name) {
        Ok(seg) => seg,
        Err(Error::NotFound { .. }) => return Err(not_found(name)),
        // Swapped for a symlink, a FIFO or a socket since the `lstat`
        // (opened without following or blocking: see `Segment::open`).
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENXIO)) => {
            info.kind = foreign("not a regular file".into());
            return Ok((info, Some(stat), None));
        }
        Err(e @ Error::PermissionDenied { .. }) => {
            let _ = e;
            info.kind = SegmentKind::Unreadable {
                reason: "permission denied: it belongs to another user or its mode does not \
                         allow reading"
                    .into(),
            };
            return Ok((info, Some(stat), None));
        }
        Err(e) => {
            info.kind = SegmentKind::Unreadable {
                reason: e.to_string(),
            };
            return Ok((info, Some(stat), None));
        }
    };
    // The open file is the one described from here on.
    let stat = seg.stat;
    (info.owner, info.mode, info.size, info.allocated) =
        (stat.uid, stat.mode, stat.size, stat.allocated);
    if !stat.regular {
        info.kind = foreign("not a regular file".into());
        return Ok((info, Some(stat), None));
    }
    let page = seg.header_page()?;
    let magic = word_at(&page, OFF_MAGIC);
    if page.len() < 8 || magic.to_le_bytes() != MAGIC {
        info.kind = foreign(if stat.size == 0 {
            "empty (0 bytes)".into()
        } else if page.iter().all(|&b| b == 0) {
            "its first page is zeros: no shmstore header".into()
        } else {
            format!(
                "its first bytes are {:02x?}, not the shmstore magic",
                &page[..page.len().min(8)]
            )
        });
        return Ok((info, Some(stat), None));
    }
    let version = word32_at(&page, OFF_VERSION);
    if version != VERSION {
        info.kind = SegmentKind::Incompatible {
            reason: format!("format version {version}, this build reads version {VERSION}"),
        };
        return Ok((info, Some(stat), None));
    }
    let ours = abi_tag(crate::sys::pthread::PTHREAD_MUTEX_SIZE);
    let abi = word_at(&page, OFF_ABI);
    if abi != ours {
        info.kind = SegmentKind::Incompatible {
            reason: format!("made by a {} process", describe_abi(abi)),
        };
        return Ok((info, Some(stat), None));
    }
    if word32_at(&page, OFF_STATE) == STATE_CREATING {
        let creator = word32_at(&page, OFF_CREATOR);
        let pidns = word32_at(&page, OFF_PIDNS);
        let started = StartTime::from_low32_word(word32_at(&page, OFF_CREATOR_START));
        info.kind = SegmentKind::Creating {
            creator,
            creator_liveness: Liveness::of(sysproc::liveness_low32_in(creator, pidns, started)),
        };
        return Ok((info, Some(stat), None));
    }
    if stat.size < HEAP_START * 2 || page.len() < HEAP_START as usize {
        info.kind = SegmentKind::Ready(broken_summary(
            &page,
            format!(
                "the segment is only {} bytes, smaller than any store",
                stat.size
            ),
        ));
        return Ok((info, Some(stat), None));
    }
    let snap = Snapshot::take(&seg, extent, PATIENCE)?;
    info.kind = SegmentKind::Ready(summarise(snap.mem, snap.lock, snap.consistent));
    Ok((info, Some(stat), Some((seg, snap))))
}

/// A summary of a store whose header cannot be walked: its words as they
/// are, and the problem.
fn broken_summary(page: &[u8], problem: String) -> StoreSummary {
    let flags = flags_of(word_at(page, OFF_FLAGS)).unwrap_or(0);
    StoreSummary {
        capacity: word_at(page, OFF_CAPACITY),
        committed: word_at(page, OFF_COMMITTED),
        used: word_at(page, OFF_USED),
        objects: word_at(page, OFF_OBJECTS),
        recoveries: word_at(page, OFF_RECOVERIES),
        store_id: word_at(page, OFF_STORE_ID),
        creator: word32_at(page, OFF_CREATOR),
        remove_when_unused: flags & FLAG_REMOVE_WHEN_UNUSED != 0,
        removed: flags & FLAG_REMOVED != 0,
        processes: Vec::new(),
        header_lock: LockState::Unknown,
        journal_entries: word_at(page, OFF_JOURNAL_LEN),
        consistent: false,
        problems: vec![problem],
    }
}

/// The summary of a store: of a copy (its header lock as observed while
/// copying, and whether the copy is consistent), or of the store itself
/// under its header lock (see [`remove`]).
fn summarise(mem: crate::arena::mem::Mem, lock: Observed, consistent: bool) -> StoreSummary {
    let w = |off| mem.u64(off).unwrap_or(0);
    let flags = flags_of(w(OFF_FLAGS));
    let mut s = StoreSummary {
        capacity: w(OFF_CAPACITY),
        committed: w(OFF_COMMITTED),
        used: w(OFF_USED),
        objects: w(OFF_OBJECTS),
        recoveries: w(OFF_RECOVERIES),
        store_id: w(OFF_STORE_ID),
        creator: mem.u32(OFF_CREATOR).unwrap_or(0),
        remove_when_unused: flags
            .as_ref()
            .is_ok_and(|f| f & FLAG_REMOVE_WHEN_UNUSED != 0),
        removed: flags.as_ref().is_ok_and(|f| f & FLAG_REMOVED != 0),
        processes: Vec::new(),
        header_lock: LockState::of(lock),
        journal_entries: w(OFF_JOURNAL_LEN),
        consistent,
        problems: Vec::new(),
    };
    if let Err(e) = &flags {
        s.problems.push(e.to_string());
    }
    let a = Arena::new(mem, &no_commit);
    match mem
        .atomic_u32(OFF_STATE)
        .map(|s| s.load(core::sync::atomic::Ordering::Relaxed))
    {
        Ok(STATE_READY) => {}
        Ok(other) => s.problems.push(format!("unknown init state {other}")),
        Err(e) => s.problems.push(e.to_string()),
    }
    if let Err(e) = a.validate_header_words() {
        s.problems.push(e.to_string());
    }
    if s.store_id == 0 {
        s.problems.push("the store has no store id".into());
    }
    if lock == Observed::Unrecoverable {
        s.problems.push(
            "the header lock is unrecoverable: a process released it without recovering \
             from its dead holder"
                .into(),
        );
    }
    match a.attached() {
        Ok(slots) => {
            s.processes = slots
                .into_iter()
                .map(|(_, o)| ProcessInfo {
                    pid: o.pid,
                    liveness: Liveness::of(sysproc::liveness_in(o.pid, o.pidns, o.start)),
                    pins: None,
                })
                .collect();
        }
        Err(e) => s.problems.push(format!("process table: {e}")),
    }
    s
}

/// A process holding pins on an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The process.
    pub pid: u32,
    /// Whether it still runs (a dead one's pins are released by the next
    /// process that opens the store).
    pub liveness: Liveness,
    /// Pins it holds (handles, clones included).
    pub pins: u64,
}

/// One object of an [`Inspection`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Name, type, fingerprint, size, slice length and layout, as
    /// [`Store::entries`](crate::Store::entries) gives them.
    pub entry: Entry,
    /// Pins on it, as its record counts them (a process whose table was
    /// full pins without being listed in `holders`).
    pub pins: u32,
    /// The processes that hold it, from their pin tables.
    pub holders: Vec<Holder>,
}

/// A read-only look at one store: a private copy of its committed bytes
/// (see the [module docs](self)).
pub struct Inspection {
    info: SegmentInfo,
    snap: Snapshot,
    /// Journal entries rolled back in the copy (its header lock's holder
    /// died mid-operation), or why they could not be.
    rolled_back: Option<std::result::Result<u64, String>>,
}

impl std::fmt::Debug for Inspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inspection")
            .field("name", &self.info.name)
            .field("copied", &self.snap.copied())
            .field("consistent", &self.snap.consistent)
            .finish()
    }
}

impl Inspection {
    /// Opens `name` read-only and copies it. Errors: [`Error::NotFound`],
    /// [`Error::PermissionDenied`], [`Error::NotAStore`] (another program's
    /// segment), [`Error::Incompatible`], [`Error::Corrupted`] (a store
    /// still being created, or left half-created, or too small to be one).
    pub(crate) fn open(name: &str) -> Result<Inspection> {
        let parsed = SegmentName::parse(name)?;
        let (mut info, stat, copied) = probe(&parsed, Extent::Full)?;
        let name = parsed.as_str().to_string();
        let Some((_seg, snap)) = copied else {
            return Err(match info.kind {
                SegmentKind::Unreadable { .. } => Error::PermissionDenied { name },
                SegmentKind::Foreign { reason } => Error::NotAStore { name, reason },
                SegmentKind::Incompatible { reason } => Error::Incompatible { name, reason },
                SegmentKind::Creating {
                    creator,
                    creator_liveness,
                } => Error::corrupted(if creator_liveness.counts_as_alive() {
                    format!("store \"{name}\" is still being created by pid {creator}")
                } else {
                    format!(
                        "store \"{name}\" was left half-initialised by its creator (pid \
                         {creator}), which died"
                    )
                }),
                SegmentKind::Ready(s) => {
                    Error::corrupted(s.problems.first().cloned().unwrap_or_default())
                }
            });
        };
        if let Some(stat) = stat {
            let found = sysproc::mappers(&[(stat.dev, stat.ino)]);
            info.mapped_by = found
                .by_file
                .get(&(stat.dev, stat.ino))
                .cloned()
                .unwrap_or_default();
        }
        info.judge();
        let mut look = Inspection {
            info,
            snap,
            rolled_back: None,
        };
        look.roll_back_dead_holder();
        Ok(look)
    }

    /// A holder that died mid-operation left its journal: undo it in the
    /// copy, as the next locker will in the store.
    fn roll_back_dead_holder(&mut self) {
        let a = Arena::new(self.snap.mem, &no_commit);
        if self.snap.lock == Observed::OwnerDied && a.journal_len().unwrap_or(0) > 0 {
            self.rolled_back = Some(a.rollback().map_err(|e| e.to_string()));
        }
    }

    /// The store as [`segment`] describes it.
    pub fn info(&self) -> &SegmentInfo {
        &self.info
    }

    /// `true` if the copy was made while no live process held the header
    /// lock and nothing changed meanwhile. A store that a process keeps
    /// changing may never give such a copy within [`PATIENCE`]: what this
    /// look reports may then mix two moments.
    pub fn is_consistent(&self) -> bool {
        self.snap.consistent
    }

    /// The header lock's holder died mid-operation: how many journal
    /// entries were rolled back in the copy (the store shows as its next
    /// user will find it), or why they could not be.
    pub fn rolled_back(&self) -> Option<&std::result::Result<u64, String>> {
        self.rolled_back.as_ref()
    }

    /// Bytes copied (the store's committed bytes).
    pub fn copied_bytes(&self) -> u64 {
        self.snap.copied()
    }

    fn arena(&self) -> Arena<'static> {
        Arena::new(self.snap.mem, &no_commit)
    }

    fn store_id(&self) -> u64 {
        self.snap.mem.u64(OFF_STORE_ID).unwrap_or(0)
    }

    /// The full consistency check of [`Store::check`](crate::Store::check),
    /// over the copy: nothing is released or repaired, dead processes'
    /// slots are counted as they are, and what a `ShmMutex` that was held
    /// when the copy was made guards is listed in
    /// [`CheckReport::untraced`].
    pub fn check(&self) -> CheckReport {
        let a = self.arena();
        let mut report = match crate::store::check_arena(&a, self.store_id(), Locks::Observe) {
            Ok(r) => r,
            Err(e) => CheckReport {
                problems: vec![e.to_string()],
                ..CheckReport::default()
            },
        };
        if let Some(Err(e)) = &self.rolled_back {
            report.problems.insert(
                0,
                format!("the dead lock holder's journal cannot be rolled back: {e}"),
            );
        }
        if let Some(s) = self.info.store() {
            for p in &s.problems {
                if !report.problems.contains(p) {
                    report.problems.push(p.clone());
                }
            }
        }
        report
    }

    /// Every object, with its pins and holders, sorted by name; records
    /// that cannot be read are skipped and described in the second list.
    pub fn objects(&self) -> Result<(Vec<ObjectInfo>, Vec<String>)> {
        let a = self.arena();
        let mut problems = Vec::new();
        // Holders: every registered process's pin table.
        let mut holders = BTreeMap::<u64, Vec<Holder>>::new();
        for (slot, owner) in a.attached()? {
            let liveness = Liveness::of(sysproc::liveness_in(owner.pid, owner.pidns, owner.start));
            match a.counted_pins(slot) {
                Ok(pins) => {
                    for (rec, n) in pins {
                        holders.entry(rec).or_default().push(Holder {
                            pid: owner.pid,
                            liveness,
                            pins: n,
                        });
                    }
                }
                Err(e) => problems.push(format!("process {}: {e}", owner.pid)),
            }
        }
        let mut types = HashMap::<u32, (String, Arc<LayoutDesc>)>::new();
        let mut out = Vec::new();
        for rec in a.records()? {
            let mut read = || -> Result<ObjectInfo> {
                let r = a.record(rec)?;
                let info = a.type_info(r.type_idx)?;
                let (type_name, layout) = match types.get(&r.type_idx) {
                    Some(t) => t.clone(),
                    None => {
                        let desc = a.type_desc(r.type_idx)?;
                        (desc.type_expr(), Arc::new(desc))
                    }
                };
                types.insert(r.type_idx, (type_name.clone(), layout.clone()));
                Ok(ObjectInfo {
                    entry: Entry {
                        name: a.record_name(rec)?,
                        type_name,
                        fingerprint: info.fingerprint,
                        size: info.size.saturating_mul(r.len),
                        len: r.is_slice().then_some(r.len),
                        layout,
                    },
                    pins: a.pin_count(rec)?,
                    holders: holders.remove(&rec).unwrap_or_default(),
                })
            };
            match read() {
                Ok(o) => out.push(o),
                Err(e) => problems.push(format!("record {rec:#x}: {e}")),
            }
        }
        out.sort_by(|x, y| x.entry.name.cmp(&y.entry.name));
        Ok((out, problems))
    }

    /// Every process of the process table, with the pins it holds.
    pub fn processes(&self) -> Result<Vec<ProcessInfo>> {
        let a = self.arena();
        let mut out = Vec::new();
        for (slot, o) in a.attached()? {
            out.push(ProcessInfo {
                pid: o.pid,
                liveness: Liveness::of(sysproc::liveness_in(o.pid, o.pidns, o.start)),
                pins: a
                    .counted_pins(slot)
                    .ok()
                    .map(|p| p.iter().map(|(_, n)| n).sum()),
            });
        }
        Ok(out)
    }

    /// The number of types the store's registry records.
    pub fn type_count(&self) -> Result<u64> {
        self.arena().type_count()
    }

    /// The value of object `name`, read through the layout the store
    /// recorded for it, within `limits`. [`Error::NotFound`] if there is
    /// no such object; a value or part of one that cannot be read is a
    /// [`Value::Invalid`] inside the result, not an error.
    pub fn value(&self, name: &str, limits: &DumpLimits) -> Result<Value> {
        let key = crate::store::validate_object_name(name)?;
        let a = self.arena();
        let Some(found) = a.lookup(key, hash_name(key))? else {
            return Err(Error::NotFound {
                what: format!("object \"{name}\""),
            });
        };
        let r = a.record(found.rec)?;
        let desc = a.type_desc(r.type_idx)?;
        let mut reader = value::Reader::new(self.snap.mem, self.store_id(), limits);
        Ok(if r.is_slice() {
            reader.slice(r.value, &desc, r.len)
        } else {
            reader.value(r.value, &desc)
        })
    }
}

#[cfg(test)]
mod tests;
