//! Process identity and liveness: a pid plus the process's start time, so
//! that a pid the kernel reused is not mistaken for the process that had it.
//!
//! # Liveness is a three-way answer
//!
//! Whether a recorded process `(pid, start time)` still runs is
//! [`Liveness::Alive`], [`Liveness::Dead`] or [`Liveness::Unknown`], and
//! only `Dead` may release what the process holds (its pins, its
//! reservations): `Unknown` counts as alive everywhere. The answer is
//! `Dead` only when it is definite:
//!
//! | `kill(pid, 0)`  | start time in `/proc/<pid>/stat`          | answer    |
//! |-----------------|-------------------------------------------|-----------|
//! | `ESRCH`         | —                                         | `Dead`    |
//! | `0` or `EPERM`  | the recorded one                          | `Alive`   |
//! | `0` or `EPERM`  | another one (the pid was reused)          | `Dead`    |
//! | `0` or `EPERM`  | unreadable, and the pid is still there    | `Unknown` |
//! | `0` or `EPERM`  | not asked: recorded [`StartTime::Unknown`] | `Unknown` |
//! | any other error | —                                         | `Unknown` |
//!
//! `/proc` is not asked whether a pid exists: it can fail for reasons that
//! say nothing about the process (no file descriptor left, `/proc` mounted
//! with `hidepid` and the process belongs to another user, no `/proc` at
//! all), and `hidepid` even answers `ENOENT` for a process that runs. Only
//! `kill(pid, 0)` answers that, and only `ESRCH` means "no such process".
//! (`EPERM` means it exists but belongs to another user.)
//!
//! A zombie still exists: it counts as alive until its parent reaps it,
//! which errs on the side of not reclaiming.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::io;
use std::sync::OnceLock;

use nix::errno::Errno;

/// A process's start time: field 22 of `/proc/<pid>/stat`, clock ticks
/// after boot — or `Unknown`, for a process that could not read its own
/// when it recorded itself.
///
/// It is an enum rather than a bare `u64` so that the "unknown" sentinel of
/// the segment's words can never be compared with a real start time by
/// accident: the words are decoded with [`StartTime::from_word`] /
/// [`StartTime::from_low32_word`] and only [`liveness`] compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartTime {
    /// Read from `/proc`.
    Known(u64),
    /// Could not be read. A process recorded with it is "alive while its
    /// pid exists": a reused pid cannot be told from it.
    Unknown,
}

impl StartTime {
    /// How a 64-bit start-time word (the process table's) says "unknown".
    /// No real start time comes near it (2^64 clock ticks are billions of
    /// years); if one did, it would only be taken for unknown, which errs
    /// on the side of "alive".
    pub(crate) const UNKNOWN_WORD: u64 = u64::MAX;
    /// How a 32-bit start-time word (the header's creator field, which
    /// keeps the low 32 bits) says "unknown". A real start time whose low
    /// 32 bits are all ones reads back as unknown: "alive while the pid
    /// exists", which again errs on the side of "alive".
    pub(crate) const UNKNOWN_LOW32_WORD: u32 = u32::MAX;

    /// Decodes a 64-bit start-time word.
    pub(crate) fn from_word(word: u64) -> StartTime {
        if word == Self::UNKNOWN_WORD {
            StartTime::Unknown
        } else {
            StartTime::Known(word)
        }
    }

    /// The 64-bit word that stores this start time.
    pub(crate) fn word(self) -> u64 {
        match self {
            StartTime::Known(t) => t,
            StartTime::Unknown => Self::UNKNOWN_WORD,
        }
    }

    /// Decodes a 32-bit start-time word (low 32 bits of the start time).
    /// Compare the result with [`liveness_low32`], never [`liveness`].
    pub(crate) fn from_low32_word(word: u32) -> StartTime {
        if word == Self::UNKNOWN_LOW32_WORD {
            StartTime::Unknown
        } else {
            StartTime::Known(word as u64)
        }
    }

    /// The 32-bit word that stores the low 32 bits of this start time.
    pub(crate) fn low32_word(self) -> u32 {
        match self {
            StartTime::Known(t) => t as u32,
            StartTime::Unknown => Self::UNKNOWN_LOW32_WORD,
        }
    }
}

/// Whether a recorded process still runs. Only `Dead` is definite enough
/// to release what the process holds; `Unknown` counts as alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// The pid exists and has the recorded start time.
    Alive,
    /// No process has the pid, or the one that has it started at another
    /// time (the pid was reused).
    Dead,
    /// The pid exists (or may) but this process cannot tell whether it is
    /// the recorded one: treat it as alive.
    Unknown,
}

/// Whether a process with id `pid` exists, from `kill(pid, 0)`, which
/// checks without sending anything: `Ok(true)` on success or `EPERM` (it
/// exists but belongs to another user), `Ok(false)` on `ESRCH`, and the
/// errno of any other failure.
///
/// `0` and ids above `i32::MAX` are never passed to `kill` (they would
/// address a process group): no process has them, so they are `Ok(false)`.
pub(crate) fn pid_exists(pid: u32) -> Result<bool, Errno> {
    let Ok(id) = libc::pid_t::try_from(pid) else {
        return Ok(false);
    };
    if id <= 0 {
        return Ok(false);
    }
    // SAFETY: kill(2) has no memory-safety preconditions; signal 0 sends
    // nothing (it only checks that `id`, a positive pid, exists and may be
    // signalled).
    let rc = unsafe { libc::kill(id, 0) };
    if rc == 0 {
        return Ok(true);
    }
    match Errno::last() {
        Errno::EPERM => Ok(true),
        Errno::ESRCH => Ok(false),
        other => Err(other),
    }
}

/// Reads the start time of process `pid` (field 22 of `/proc/<pid>/stat`,
/// clock ticks after boot). Every failure, including "no such file", is an
/// error: it says nothing definite about the process (see the module doc).
///
/// A `/proc` mounted for another pid namespace (a process started with
/// `unshare --pid --fork` but without a `/proc` of its own) would answer
/// for another process of the same number: that is an error too.
pub(crate) fn start_time(pid: u32) -> io::Result<u64> {
    if !proc_is_ours() {
        return Err(io::Error::other(
            "/proc belongs to another pid namespace than this process",
        ));
    }
    parse_start_time(&std::fs::read_to_string(format!("/proc/{pid}/stat"))?)
}

/// Whether `/proc` numbers processes as this process's pid namespace does:
/// `/proc/self` names our own pid (it names our pid in the namespace
/// `/proc` was mounted for, and is missing if we are not in it). Read once:
/// `readlink` needs no file descriptor, and `/proc` is not remounted under
/// a running store.
pub(crate) fn proc_is_ours() -> bool {
    static OURS: OnceLock<bool> = OnceLock::new();
    *OURS.get_or_init(|| {
        std::fs::read_link("/proc/self")
            .is_ok_and(|target| target.as_os_str() == std::process::id().to_string().as_str())
    })
}

fn parse_start_time(stat: &str) -> io::Result<u64> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc stat format");
    // The command name (field 2) is in parentheses and may hold spaces or
    // parentheses itself: count fields after the last ')'.
    let rest = &stat[stat.rfind(')').ok_or_else(bad)? + 1..];
    // `rest` starts with field 3 (state); field 22 is the 20th after it.
    rest.split_whitespace()
        .nth(19)
        .ok_or_else(bad)?
        .parse()
        .map_err(|_| bad())
}

/// Whether the process recorded as `(pid, start)` still runs.
pub(crate) fn liveness(pid: u32, start: StartTime) -> Liveness {
    judge(pid, start, u64::MAX, pid_exists, start_time)
}

/// [`liveness`] for a start time of which only the low 32 bits were
/// recorded ([`StartTime::from_low32_word`]).
pub(crate) fn liveness_low32(pid: u32, start: StartTime) -> Liveness {
    judge(pid, start, u32::MAX as u64, pid_exists, start_time)
}

/// [`liveness`] of a process recorded with its pid namespace: a process of
/// another namespace (or of one that could not be read, recorded as 0) is
/// not visible to this one's `kill` and `/proc`, so it is `Unknown` — never
/// released from here (a process of its own namespace will release it).
pub(crate) fn liveness_in(pid: u32, pidns: u32, start: StartTime) -> Liveness {
    if pidns == 0 || pidns != own_pid_namespace() {
        return Liveness::Unknown;
    }
    liveness(pid, start)
}

/// [`liveness_low32`] of a process recorded with its pid namespace (the
/// creator of a store): `Unknown` unless it is this process's namespace, as
/// for [`liveness_in`].
pub(crate) fn liveness_low32_in(pid: u32, pidns: u32, start: StartTime) -> Liveness {
    if pidns == 0 || pidns != own_pid_namespace() {
        return Liveness::Unknown;
    }
    liveness_low32(pid, start)
}

/// The decision of the module doc's table, with the two OS calls passed in
/// (so that every row can be tested). `mask` selects the bits of the start
/// time that were recorded.
fn judge(
    pid: u32,
    start: StartTime,
    mask: u64,
    exists: impl Fn(u32) -> Result<bool, Errno>,
    read_start: impl FnOnce(u32) -> io::Result<u64>,
) -> Liveness {
    match exists(pid) {
        Ok(true) => {}
        Ok(false) => return Liveness::Dead,
        Err(_) => return Liveness::Unknown,
    }
    let StartTime::Known(recorded) = start else {
        // Alive while the pid exists, which it does.
        return Liveness::Unknown;
    };
    match read_start(pid) {
        Ok(now) if now & mask == recorded & mask => Liveness::Alive,
        // The pid exists (we asked before reading) with another start
        // time: it was reused, and the recorded process is gone for good.
        Ok(_) => Liveness::Dead,
        // The process may have exited between the two calls: then the pid
        // no longer exists. Anything else leaves us not knowing.
        Err(_) => match exists(pid) {
            Ok(false) => Liveness::Dead,
            Ok(true) | Err(_) => Liveness::Unknown,
        },
    }
}

/// This process's start time, read once (from `/proc/self/stat`).
///
/// A process's identity in a store's process table must not change while
/// it is attached, so the first answer is kept, [`StartTime::Unknown`] too
/// (which only means that a process that gets this pid after this one
/// exits cannot be told from it: what this one held is then kept until
/// that pid is free again).
pub(crate) fn own_start_time() -> StartTime {
    static START: OnceLock<StartTime> = OnceLock::new();
    *START.get_or_init(|| {
        std::fs::read_to_string("/proc/self/stat")
            .and_then(|stat| parse_start_time(&stat))
            .map_or(StartTime::Unknown, StartTime::from_word)
    })
}

/// This process as the synchronisation primitives record their holders:
/// its pid and start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Me {
    /// `getpid()`.
    pub(crate) pid: u32,
    /// Read from `/proc/self/stat`, or [`StartTime::Unknown`].
    pub(crate) start: StartTime,
}

/// [`me`]'s cache: the pid (0 until known, and again in a forked child)
/// and the start-time word.
static ME_PID: AtomicU32 = AtomicU32::new(0);
static ME_START: AtomicU64 = AtomicU64::new(StartTime::UNKNOWN_WORD);

/// Forgets [`me`]'s cache in a child made by `fork`: it has another pid
/// and start time than the process that cached them. Async-signal-safe
/// (one atomic store), as an atfork child handler must be.
extern "C" fn forget_me_after_fork() {
    ME_PID.store(0, Ordering::Relaxed);
}

/// This process's identity, cached after the first call: two relaxed
/// loads. Unlike [`own_start_time`] it is read again in a child made by
/// `fork` (an atfork handler clears the cache there), so a forked child
/// never records its parent's identity as its own.
#[inline]
pub(crate) fn me() -> Me {
    let pid = ME_PID.load(Ordering::Acquire);
    if pid != 0 {
        return Me {
            pid,
            start: StartTime::from_word(ME_START.load(Ordering::Relaxed)),
        };
    }
    me_slow()
}

/// [`me`] the first time (and in a forked child): reads and caches it.
#[cold]
fn me_slow() -> Me {
    static ATFORK: std::sync::Once = std::sync::Once::new();
    ATFORK.call_once(|| {
        // SAFETY: registers a handler that only stores to an atomic; no
        // memory-safety preconditions. A failure (ENOMEM) leaves a forked
        // child with its parent's identity, which only errs on the side of
        // "alive" while the parent lives; there is no one to report it to.
        let _ = unsafe { libc::pthread_atfork(None, None, Some(forget_me_after_fork)) };
    });
    // SAFETY: getpid has no preconditions and cannot fail.
    let pid = unsafe { libc::getpid() } as u32;
    let start = std::fs::read_to_string("/proc/self/stat")
        .and_then(|stat| parse_start_time(&stat))
        .map_or(StartTime::Unknown, StartTime::from_word);
    ME_START.store(start.word(), Ordering::Relaxed);
    ME_PID.store(pid, Ordering::Release);
    Me { pid, start }
}

impl StartTime {
    /// How a 16-bit start-time field says "unknown" (see
    /// [`StartTime::UNKNOWN_LOW32_WORD`]; the same caveat applies, with one
    /// real start time in 65,536 reading as unknown, which errs on the side
    /// of "alive").
    pub(crate) const UNKNOWN_LOW16_WORD: u16 = u16::MAX;

    /// Decodes a 16-bit start-time field (low 16 bits of the start time).
    /// Compare the result with [`liveness_low_bits`] of 16 bits (a pid
    /// reused by a process whose start time agrees in those bits, one in
    /// 65,536 reuses, is taken for the recorded process: "alive", the safe
    /// side).
    pub(crate) fn from_low16_word(word: u16) -> StartTime {
        if word == Self::UNKNOWN_LOW16_WORD {
            StartTime::Unknown
        } else {
            StartTime::Known(word as u64)
        }
    }

    /// The 16-bit field that stores the low 16 bits of this start time.
    pub(crate) fn low16_word(self) -> u16 {
        match self {
            StartTime::Known(t) => t as u16,
            StartTime::Unknown => Self::UNKNOWN_LOW16_WORD,
        }
    }
}

impl StartTime {
    /// Decodes a start-time field of `bits` bits (1 to 64): the low `bits`
    /// bits of the start time, all ones for unknown (with the caveat of
    /// [`StartTime::UNKNOWN_LOW16_WORD`]: one real start time in `2^bits`
    /// reads as unknown, the safe side). Compare the result with
    /// [`liveness_low_bits`] and the same `bits`.
    pub(crate) fn from_low_bits(field: u64, bits: u32) -> StartTime {
        let mask = low_mask(bits);
        if field & mask == mask {
            StartTime::Unknown
        } else {
            StartTime::Known(field & mask)
        }
    }

    /// The field of `bits` bits that stores the low `bits` bits of this
    /// start time (all ones for unknown).
    pub(crate) fn low_bits(self, bits: u32) -> u64 {
        match self {
            StartTime::Known(t) => t & low_mask(bits),
            StartTime::Unknown => low_mask(bits),
        }
    }
}

/// The low `bits` bits set (`bits` is clamped to 1..=64).
fn low_mask(bits: u32) -> u64 {
    u64::MAX >> (64 - bits.clamp(1, 64))
}

/// [`liveness`] for a start time of which only the low `bits` bits were
/// recorded ([`StartTime::from_low_bits`]).
pub(crate) fn liveness_low_bits(pid: u32, start: StartTime, bits: u32) -> Liveness {
    judge(pid, start, low_mask(bits), pid_exists, start_time)
}

/// Whether this process can tell at all whether another process of its
/// pid namespace is dead: its `/proc` is its own namespace's, and it could
/// read which namespace that is. A process that cannot judges no one dead
/// (see the liveness rules of [`crate::sync`]).
pub(crate) fn can_judge() -> bool {
    proc_is_ours() && own_pid_namespace() != 0
}

/// The calling thread's id (`gettid`), cached per thread; asked again in
/// a child made by `fork` (whose thread has another id), which [`me`]'s
/// pid tells.
pub(crate) fn my_tid() -> u32 {
    thread_local! {
        /// (the process's pid, this thread's id) when it was asked.
        static TID: core::cell::Cell<(u32, u32)> = const { core::cell::Cell::new((0, 0)) };
    }
    let pid = me().pid;
    let ask = || {
        // SAFETY: gettid has no preconditions and cannot fail.
        let tid = unsafe { libc::gettid() } as u32;
        (pid, tid)
    };
    TID.try_with(|c| {
        let (p, t) = c.get();
        if p == pid && t != 0 {
            return t;
        }
        let now = ask();
        c.set(now);
        now.1
    })
    .unwrap_or_else(|_| ask().1)
}

/// This process's pid namespace: the inode of `/proc/self/ns/pid`
/// (truncated to 32 bits; 0 if `/proc` cannot tell), read once.
pub(crate) fn own_pid_namespace() -> u32 {
    use std::os::unix::fs::MetadataExt;
    static NS: OnceLock<u32> = OnceLock::new();
    *NS.get_or_init(|| {
        std::fs::metadata("/proc/self/ns/pid")
            .map(|m| m.ino() as u32)
            .unwrap_or(0)
    })
}

/// The process (thread group) a thread id belongs to, from the `Tgid:`
/// line of `/proc/<tid>/status` (a thread's directory exists there even
/// though `/proc` does not list it). `None` if it cannot be told: no such
/// thread, an unreadable or foreign `/proc`.
pub(crate) fn thread_group(tid: u32) -> Option<u32> {
    if tid == 0 || !proc_is_ours() {
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Which processes map which files writable: for each `(st_dev, st_ino)`
/// asked about, the pids (in this pid namespace) whose `/proc/<pid>/maps`
/// names it with write permission, in ascending order.
#[derive(Debug, Default)]
pub(crate) struct Mappers {
    /// Pids per file.
    pub(crate) by_file: std::collections::HashMap<(u64, u64), Vec<u32>>,
    /// Processes whose maps could not be read (another user's, without
    /// privilege): they may map any of the files.
    pub(crate) unreadable: u32,
    /// Every process of the machine was scanned: `/proc` is this pid
    /// namespace's and this namespace is the initial one (which sees the
    /// processes of every other). When `false`, processes this one cannot
    /// see (of a parent pid namespace) may map any of the files.
    pub(crate) whole_machine: bool,
}

impl Mappers {
    /// Whether `by_file` names every process that maps the files
    /// writable: all of the machine was scanned and every process's maps
    /// could be read.
    pub(crate) fn complete(&self) -> bool {
        self.whole_machine && self.unreadable == 0
    }
}

/// The inode of the initial pid namespace (`PROC_PID_INIT_INO` of the
/// kernel, the same on every Linux since 3.8), truncated as
/// [`own_pid_namespace`] truncates.
const INITIAL_PID_NAMESPACE: u32 = 0xEFFF_FFFC;

/// Scans `/proc/*/maps` for writable mappings of `files` (`(st_dev,
/// st_ino)` pairs): a store's users map it read-write, while a read-only
/// look (`inspect`) maps nothing and reads with `pread`. Only processes of
/// this pid namespace whose maps this process may read are seen (root sees
/// all); the others are counted in [`Mappers::unreadable`], and
/// [`Mappers::whole_machine`] says whether processes of other namespaces
/// may be missing. A `/proc` of another pid namespace is not scanned at all
/// (its pids would name other processes).
pub(crate) fn mappers(files: &[(u64, u64)]) -> Mappers {
    let mut out = Mappers::default();
    if !proc_is_ours() {
        return out;
    }
    out.whole_machine = own_pid_namespace() == INITIAL_PID_NAMESPACE;
    if files.is_empty() {
        return out;
    }
    // The maps file prints the device as the kernel's major:minor in hex.
    let wanted: std::collections::HashMap<(u32, u32, u64), (u64, u64)> = files
        .iter()
        .map(|&(dev, ino)| {
            (
                (
                    libc::major(dev as libc::dev_t),
                    libc::minor(dev as libc::dev_t),
                    ino,
                ),
                (dev, ino),
            )
        })
        .collect();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        out.whole_machine = false;
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let maps = match std::fs::read_to_string(format!("/proc/{pid}/maps")) {
            Ok(m) => m,
            // Exited meanwhile: it maps nothing.
            Err(e)
                if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH) =>
            {
                continue
            }
            Err(_) => {
                out.unreadable += 1;
                continue;
            }
        };
        let mut seen = std::collections::HashSet::new();
        for line in maps.lines() {
            // start-end perms offset major:minor inode [path]. Only a
            // writable mapping makes a user: a read-only one is an
            // observer's (the `inspect` view maps a header page so).
            let mut fields = line.split_ascii_whitespace().skip(1);
            if !fields.next().is_some_and(|perms| perms.contains('w')) {
                continue;
            }
            let mut fields = fields.skip(1);
            let (Some(dev), Some(ino)) = (fields.next(), fields.next()) else {
                continue;
            };
            let Some((major, minor)) = dev.split_once(':') else {
                continue;
            };
            let (Ok(major), Ok(minor), Ok(ino)) = (
                u32::from_str_radix(major, 16),
                u32::from_str_radix(minor, 16),
                ino.parse::<u64>(),
            ) else {
                continue;
            };
            if let Some(&file) = wanted.get(&(major, minor, ino)) {
                if seen.insert(file) {
                    out.by_file.entry(file).or_default().push(pid);
                }
            }
        }
    }
    for pids in out.by_file.values_mut() {
        pids.sort_unstable();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_start() -> u64 {
        match own_start_time() {
            StartTime::Known(t) => t,
            StartTime::Unknown => panic!("this test needs a readable /proc/self/stat"),
        }
    }

    /// A pid no process has: `i32::MAX` is above every Linux `pid_max`
    /// (at most 2^22), yet a valid positive `pid_t`, so `kill` answers
    /// `ESRCH` itself.
    const NO_SUCH_PID: u32 = i32::MAX as u32;

    #[test]
    fn this_process_is_alive() {
        let me = std::process::id();
        let start = own_start();
        assert_eq!(start_time(me).unwrap(), start);
        assert_eq!(liveness(me, StartTime::Known(start)), Liveness::Alive);
        assert_eq!(
            liveness_low32(me, StartTime::from_low32_word(start as u32)),
            Liveness::Alive
        );
        assert_eq!(pid_exists(me), Ok(true));
        assert!(proc_is_ours());
        // pid 1 always exists; as another user, kill says EPERM.
        assert_eq!(pid_exists(1), Ok(true));
    }

    #[test]
    fn a_pid_that_does_not_exist_is_dead() {
        let start = StartTime::Known(own_start());
        assert_eq!(pid_exists(NO_SUCH_PID), Ok(false));
        assert_eq!(liveness(NO_SUCH_PID, start), Liveness::Dead);
        assert_eq!(liveness(NO_SUCH_PID, StartTime::Unknown), Liveness::Dead);
        // Ids that are not pids (0, or negative as a pid_t) never reach
        // kill, which would take them for process groups.
        for pid in [0, u32::MAX, u32::MAX - 1, i32::MAX as u32 + 1] {
            assert_eq!(pid_exists(pid), Ok(false), "{pid}");
            assert_eq!(liveness(pid, start), Liveness::Dead, "{pid}");
        }
        // A child that exited and was reaped is gone.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert_eq!(liveness(pid, start), Liveness::Dead);
    }

    #[test]
    fn the_same_pid_with_another_start_time_is_dead() {
        let me = std::process::id();
        let start = own_start();
        assert_eq!(liveness(me, StartTime::Known(start + 1)), Liveness::Dead);
        assert_eq!(
            liveness_low32(me, StartTime::from_low32_word(start as u32 ^ 1)),
            Liveness::Dead
        );
    }

    #[test]
    fn an_unknown_start_time_is_alive_while_the_pid_exists() {
        let me = std::process::id();
        assert_eq!(liveness(me, StartTime::Unknown), Liveness::Unknown);
        assert_eq!(liveness_low32(me, StartTime::Unknown), Liveness::Unknown);
        // The sentinel words decode to Unknown, never to a start time.
        assert_eq!(
            StartTime::from_word(StartTime::UNKNOWN_WORD),
            StartTime::Unknown
        );
        assert_eq!(
            StartTime::from_low32_word(StartTime::UNKNOWN_LOW32_WORD),
            StartTime::Unknown
        );
        assert_eq!(StartTime::Unknown.word(), StartTime::UNKNOWN_WORD);
        assert_eq!(StartTime::Unknown.low32_word(), u32::MAX);
        // A real start time round-trips, 0 included: 0 is a start time,
        // not "unknown".
        for t in [0, 1, own_start(), u32::MAX as u64 + 5] {
            assert_eq!(
                StartTime::from_word(StartTime::Known(t).word()),
                StartTime::Known(t)
            );
        }
        assert_eq!(StartTime::from_low32_word(0), StartTime::Known(0));
    }

    #[test]
    fn an_unreadable_start_time_is_unknown_never_dead() {
        let start = StartTime::Known(own_start());
        let exists = |_| Ok(true);
        for err in [
            io::Error::from_raw_os_error(libc::EMFILE),
            io::Error::from_raw_os_error(libc::ENOENT), // hidepid
            io::Error::from_raw_os_error(libc::EACCES),
            io::Error::from(io::ErrorKind::InvalidData),
        ] {
            let kind = err.to_string();
            assert_eq!(
                judge(42, start, u64::MAX, exists, |_| Err(err)),
                Liveness::Unknown,
                "{kind}"
            );
        }
        // kill itself failing oddly is unknown too.
        assert_eq!(
            judge(42, start, u64::MAX, |_| Err(Errno::EINVAL), |_| Ok(1)),
            Liveness::Unknown
        );
        // The pid vanished between kill and the read: dead.
        let calls = std::cell::Cell::new(0);
        let vanishing = |_| {
            calls.set(calls.get() + 1);
            Ok(calls.get() == 1)
        };
        assert_eq!(
            judge(42, start, u64::MAX, vanishing, |_| Err(
                io::Error::from_raw_os_error(libc::ESRCH)
            )),
            Liveness::Dead
        );
    }

    #[test]
    fn another_or_an_unreadable_pid_namespace_is_never_dead() {
        let ns = own_pid_namespace();
        assert_ne!(ns, 0);
        let start = StartTime::Known(own_start());
        assert_eq!(liveness_in(NO_SUCH_PID, ns, start), Liveness::Dead);
        assert_eq!(
            liveness_in(NO_SUCH_PID, ns.wrapping_add(1), start),
            Liveness::Unknown,
            "another namespace"
        );
        assert_eq!(
            liveness_in(NO_SUCH_PID, 0, start),
            Liveness::Unknown,
            "a namespace its process could not read"
        );
    }

    #[test]
    fn me_is_this_process_and_16_bit_start_times_judge_like_the_others() {
        let m = me();
        assert_eq!(m.pid, std::process::id());
        assert_eq!(m.start, own_start_time());
        assert_eq!(me(), m, "cached");
        let start = own_start();
        let low16 = StartTime::from_low16_word(StartTime::Known(start).low16_word());
        assert_eq!(liveness_low_bits(m.pid, low16, 16), Liveness::Alive);
        let other = StartTime::from_low16_word((start as u16) ^ 1);
        assert_eq!(liveness_low_bits(m.pid, other, 16), Liveness::Dead);
        assert_eq!(liveness_low_bits(NO_SUCH_PID, low16, 16), Liveness::Dead);
        assert_eq!(
            StartTime::from_low16_word(StartTime::Unknown.low16_word()),
            StartTime::Unknown
        );
        assert_eq!(
            liveness_low_bits(m.pid, StartTime::Unknown, 16),
            Liveness::Unknown
        );
    }

    #[test]
    fn start_times_of_any_width_round_trip_and_judge_alike() {
        let start = own_start();
        let me = std::process::id();
        for bits in [16, 30, 32, 64] {
            let mine = StartTime::from_low_bits(StartTime::Known(start).low_bits(bits), bits);
            assert_eq!(liveness_low_bits(me, mine, bits), Liveness::Alive, "{bits}");
            let other = StartTime::from_low_bits(StartTime::Known(start ^ 1).low_bits(bits), bits);
            assert_eq!(liveness_low_bits(me, other, bits), Liveness::Dead, "{bits}");
            let unknown = StartTime::from_low_bits(StartTime::Unknown.low_bits(bits), bits);
            assert_eq!(unknown, StartTime::Unknown, "{bits}");
            assert_eq!(liveness_low_bits(me, unknown, bits), Liveness::Unknown);
        }
        // Bits above the width are ignored when decoding.
        assert_eq!(
            StartTime::from_low_bits(1 << 40 | 5, 30),
            StartTime::Known(5)
        );
        assert!(can_judge(), "this test process has its own /proc");
    }

    #[test]
    fn a_thread_id_is_a_live_pid_to_kill_and_is_cached_per_thread() {
        let mine = my_tid();
        // SAFETY: gettid has no preconditions.
        assert_eq!(mine, unsafe { libc::gettid() } as u32);
        let (other, exists) = std::thread::spawn(|| {
            let t = my_tid();
            (t, pid_exists(t))
        })
        .join()
        .unwrap();
        assert_ne!(other, mine);
        // `kill(tid, 0)` answers for a thread that is not its process's
        // main thread (the mutex's owner check relies on it).
        assert_eq!(exists, Ok(true));
    }

    #[test]
    fn a_thread_belongs_to_its_process() {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() } as u32;
        assert_eq!(thread_group(tid), Some(std::process::id()));
        let other = std::thread::spawn(|| {
            // SAFETY: as above.
            unsafe { libc::gettid() as u32 }
        });
        let _ = other.join().unwrap();
        assert_eq!(thread_group(NO_SUCH_PID), None);
        assert_eq!(thread_group(0), None);
    }

    #[test]
    fn this_process_is_seen_mapping_a_file_it_maps() {
        use std::os::fd::AsFd;
        let name = format!("/shmstore-ut-{}-mappers", std::process::id());
        let cname = std::ffi::CString::new(name.clone()).unwrap();
        let fd = crate::sys::shm::shm_open(
            &cname,
            crate::sys::shm::OpenHow::CreateExclusive { mode: 0o600 },
        )
        .unwrap();
        let _unlink = scopeguard_unlink(cname.clone());
        crate::sys::shm::ftruncate(fd.as_fd(), 4096).unwrap();
        let st = crate::sys::shm::fstat(fd.as_fd()).unwrap();
        let file = (st.dev, st.ino);
        assert!(
            !mappers(&[file]).by_file.contains_key(&file),
            "not mapped yet"
        );
        let base = crate::sys::shm::mmap_shared(fd.as_fd(), 4096).unwrap();
        let seen = mappers(&[file]);
        assert_eq!(seen.by_file.get(&file), Some(&vec![std::process::id()]));
        // SAFETY: the mapping made above, unused from here on.
        unsafe { crate::sys::shm::munmap(base, 4096) }.unwrap();
        // A read-only mapping is an observer's, not a user's.
        let ro = crate::sys::shm::mmap_shared_read_only(fd.as_fd(), 4096).unwrap();
        assert!(!mappers(&[file]).by_file.contains_key(&file), "read-only");
        // SAFETY: as above.
        unsafe { crate::sys::shm::munmap(ro, 4096) }.unwrap();
        assert!(!mappers(&[file]).by_file.contains_key(&file), "unmapped");
    }

    /// Unlinks a segment when dropped.
    fn scopeguard_unlink(name: std::ffi::CString) -> impl Drop {
        struct U(std::ffi::CString);
        impl Drop for U {
            fn drop(&mut self) {
                let _ = crate::sys::shm::shm_unlink(&self.0);
            }
        }
        U(name)
    }

    #[test]
    fn start_times_parse_after_the_last_parenthesis() {
        let stat = "7 (a) b) (c) S 1 7 7 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 12345 0 0";
        assert_eq!(parse_start_time(stat).unwrap(), 12345);
        assert!(parse_start_time("7 (x) S 1").is_err());
        assert!(parse_start_time("no parenthesis").is_err());
    }
}
