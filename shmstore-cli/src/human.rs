//! Text for people: aligned tables, sizes in KiB/MiB/GiB.
//!
//! Every name and every message that may hold one (store, object, type,
//! field and variant names come from segments, which any local user can
//! make) goes through [`esc`] before it reaches the terminal: control
//! characters are escaped, so a name can neither send escape sequences
//! nor forge lines.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write;

use shmstore::inspect::{Inspection, ObjectInfo, ProcessInfo, SegmentInfo, SegmentKind, Status};
use shmstore::CheckReport;

/// `s` safe to print: control characters (and text-reordering ones)
/// escaped (see `shmstore::inspect::printable`).
pub fn esc(s: &str) -> Cow<'_, str> {
    shmstore::inspect::printable(s)
}

/// A store's name for people: without its leading slash, escaped.
fn short(name: &str) -> Cow<'_, str> {
    esc(name.trim_start_matches('/'))
}

/// User names by uid, from `/etc/passwd` (empty if it cannot be read).
pub struct Users(HashMap<u32, String>);

impl Users {
    pub fn load() -> Users {
        let text = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        Users(
            text.lines()
                .filter_map(|l| {
                    let mut f = l.split(':');
                    let name = f.next()?;
                    let uid = f.nth(1)?.parse().ok()?;
                    Some((uid, name.to_string()))
                })
                .collect(),
        )
    }

    pub fn name(&self, uid: u32) -> Option<String> {
        self.0.get(&uid).cloned()
    }

    fn show(&self, uid: u32) -> String {
        self.name(uid).unwrap_or_else(|| uid.to_string())
    }
}

/// `512 B`, `4 KiB`, `1.5 MiB`, `64 GiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if v >= 100.0 || v.fract() < 0.05 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A table: a header row and rows, columns padded to their widest cell;
/// columns listed in `right` are right-aligned (numbers).
struct Table {
    rows: Vec<Vec<String>>,
    right: Vec<usize>,
}

impl Table {
    fn new(header: &[&str], right: &[usize]) -> Table {
        Table {
            rows: vec![header.iter().map(|h| h.to_string()).collect()],
            right: right.to_vec(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self, indent: &str) -> String {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..cols)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for r in &self.rows {
            let mut line = String::from(indent);
            for (c, cell) in r.iter().enumerate() {
                let pad = widths[c].saturating_sub(cell.chars().count());
                if c > 0 {
                    line.push_str("  ");
                }
                if self.right.contains(&c) {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    if c + 1 < r.len() {
                        line.push_str(&" ".repeat(pad));
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

fn lock_cell(s: &SegmentInfo) -> String {
    match &s.kind {
        SegmentKind::Ready(st) => st.header_lock.to_string(),
        _ => "-".into(),
    }
}

pub fn ls(shown: &[SegmentInfo], hidden: &[SegmentInfo], users: &Users) -> String {
    let mut out = String::new();
    if shown.is_empty() {
        out.push_str("no shmstore stores in /dev/shm\n");
    } else {
        let mut t = Table::new(
            &[
                "NAME",
                "STATUS",
                "OWNER",
                "MODE",
                "CAPACITY",
                "COMMITTED",
                "USED",
                "OBJECTS",
                "LIVE",
                "DEAD",
                "LOCK",
            ],
            &[4, 5, 6, 7, 8, 9],
        );
        for s in shown {
            let (cap, committed, used, objects, live, dead) = match &s.kind {
                SegmentKind::Ready(st) => (
                    size(st.capacity),
                    size(st.committed),
                    size(st.used),
                    st.objects.to_string(),
                    s.users().len().to_string(),
                    st.dead_processes().count().to_string(),
                ),
                _ => (
                    size(s.size),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    s.users().len().to_string(),
                    "-".into(),
                ),
            };
            t.row(vec![
                short(&s.name).into_owned(),
                s.status.as_str().to_string(),
                users.show(s.owner),
                format!("{:04o}", s.mode),
                cap,
                committed,
                used,
                objects,
                live,
                dead,
                lock_cell(s),
            ]);
        }
        out.push_str(&t.render(""));
        // Why, for every store that is not simply in use or idle.
        let notes: Vec<&SegmentInfo> = shown
            .iter()
            .filter(|s| {
                !matches!(s.status, Status::InUse | Status::Idle)
                    || s.store().is_some_and(|st| !st.problems.is_empty())
                    || !s.is_store()
            })
            .collect();
        if !notes.is_empty() {
            out.push('\n');
            for s in notes {
                let _ = writeln!(out, "{}: {}", short(&s.name), esc(&s.reason));
                if let Some(st) = s.store() {
                    for p in &st.problems {
                        let _ = writeln!(out, "  problem: {}", esc(p));
                    }
                }
            }
        }
    }
    if !hidden.is_empty() {
        let _ = writeln!(
            out,
            "({} other segment(s) in /dev/shm not shown: other programs', other formats', \
             unreadable; see --all)",
            hidden.len()
        );
    }
    out
}

fn processes_table(procs: &[ProcessInfo]) -> String {
    let mut t = Table::new(&["PID", "LIVENESS", "PINS"], &[0, 2]);
    for p in procs {
        t.row(vec![
            p.pid.to_string(),
            p.liveness.as_str().to_string(),
            p.pins.map_or("-".into(), |n| n.to_string()),
        ]);
    }
    t.render("    ")
}

pub fn info(
    s: &SegmentInfo,
    look: Option<&Inspection>,
    types: Option<u64>,
    procs: Option<&[ProcessInfo]>,
    users: &Users,
) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| {
        let _ = writeln!(out, "  {k:<12} {v}");
    };
    let head = format!("{} (/dev/shm/{})\n", short(&s.name), short(&s.name));
    line(
        "status",
        format!("{}: {}", s.status.as_str(), esc(&s.reason)),
    );
    line(
        "owner",
        format!(
            "{} (uid {}), mode {:04o}",
            users.show(s.owner),
            s.owner,
            s.mode
        ),
    );
    line(
        "segment",
        format!("{} long, {} of memory", size(s.size), size(s.allocated)),
    );
    if !s.mapped_by.is_empty() {
        let pids: Vec<String> = s.mapped_by.iter().map(|p| p.to_string()).collect();
        line("mapped by", format!("pid {}", pids.join(", ")));
    }
    match &s.kind {
        SegmentKind::Ready(st) => {
            line(
                "capacity",
                format!("{} (reserved, sparse)", size(st.capacity)),
            );
            line("committed", size(st.committed));
            line(
                "used",
                format!(
                    "{} ({:.1}% of capacity)",
                    size(st.used),
                    st.used as f64 * 100.0 / st.capacity.max(1) as f64
                ),
            );
            line(
                "objects",
                match types {
                    Some(t) => format!("{} ({t} types)", st.objects),
                    None => st.objects.to_string(),
                },
            );
            line(
                "lifecycle",
                if st.removed {
                    "removed by its last user".into()
                } else if st.remove_when_unused {
                    "removed when its last user leaves".into()
                } else {
                    "persistent (until removed)".into()
                },
            );
            line("header lock", st.header_lock.to_string());
            line(
                "journal",
                match (st.journal_entries, look.and_then(|l| l.rolled_back())) {
                    (0, _) => "empty".into(),
                    (n, Some(Ok(_))) => format!(
                        "{n} entries left by a holder that died (rolled back by its next user; \
                         shown rolled back here)"
                    ),
                    (n, Some(Err(e))) => {
                        format!("{n} entries that cannot be rolled back: {}", esc(e))
                    }
                    (n, None) => format!("{n} entries"),
                },
            );
            line("recoveries", st.recoveries.to_string());
            line("store id", format!("{:#018x}", st.store_id));
            line("creator", format!("pid {}", st.creator));
            let consistent = look.map_or(st.consistent, |l| l.is_consistent());
            line(
                "view",
                if consistent {
                    "consistent (no live process held the header lock)".into()
                } else {
                    "copied while the store changed: figures may mix two moments".into()
                },
            );
            let procs = procs.unwrap_or(&st.processes);
            line(
                "processes",
                format!(
                    "{} registered: {} live, {} dead",
                    procs.len(),
                    procs
                        .iter()
                        .filter(|p| p.liveness.counts_as_alive())
                        .count(),
                    procs
                        .iter()
                        .filter(|p| !p.liveness.counts_as_alive())
                        .count()
                ),
            );
            for p in &st.problems {
                line("problem", esc(p).into_owned());
            }
            let mut text = head + &out;
            if !procs.is_empty() {
                text.push_str(&processes_table(procs));
            }
            return text;
        }
        SegmentKind::Creating {
            creator,
            creator_liveness,
        } => line(
            "creator",
            format!("pid {creator} ({})", creator_liveness.as_str()),
        ),
        _ => {}
    }
    head + &out
}

pub fn objects(look: &Inspection, objects: &[ObjectInfo], problems: &[String]) -> String {
    let mut out = String::new();
    if !look.is_consistent() {
        out.push_str("note: the store changed while it was read; the list may mix two moments\n");
    }
    if objects.is_empty() {
        out.push_str("no objects\n");
    } else {
        let mut t = Table::new(
            &[
                "NAME",
                "TYPE",
                "SIZE",
                "LEN",
                "FINGERPRINT",
                "PINS",
                "HOLDERS",
            ],
            &[2, 3, 5],
        );
        for o in objects {
            let holders: Vec<String> = o
                .holders
                .iter()
                .map(|h| {
                    let dead = if h.liveness.counts_as_alive() {
                        ""
                    } else {
                        ", dead"
                    };
                    format!("{} ({}{dead})", h.pid, h.pins)
                })
                .collect();
            t.row(vec![
                esc(&o.entry.name).into_owned(),
                match o.entry.len {
                    Some(_) => format!("[{}]", esc(&o.entry.type_name)),
                    None => esc(&o.entry.type_name).into_owned(),
                },
                size(o.entry.size),
                o.entry.len.map_or("-".into(), |n| n.to_string()),
                format!("{:#018x}", o.entry.fingerprint),
                o.pins.to_string(),
                if holders.is_empty() {
                    "-".into()
                } else {
                    holders.join(", ")
                },
            ]);
        }
        out.push_str(&t.render(""));
        // Each type's layout, once.
        let mut seen = std::collections::BTreeMap::new();
        for o in objects {
            seen.entry(o.entry.type_name.clone())
                .or_insert_with(|| o.entry.layout.clone());
        }
        out.push_str("\nlayouts:\n");
        for layout in seen.values() {
            // A layout's `Display` escapes the names it shows itself.
            for l in layout.to_string().lines() {
                let _ = writeln!(out, "  {}", esc(l));
            }
        }
    }
    for p in problems {
        let _ = writeln!(out, "problem: {}", esc(p));
    }
    out
}

pub fn check(look: &Inspection, r: &CheckReport) -> String {
    let mut out = String::new();
    let name = short(&look.info().name);
    if !look.is_consistent() {
        out.push_str(
            "note: the store changed while it was read (a live process held its header lock); \
             a problem may be a change in progress: check again\n",
        );
    }
    if let Some(Ok(n)) = look.rolled_back() {
        let _ = writeln!(
            out,
            "note: its header lock's holder died mid-operation; checked as its next user will \
             find it ({n} journal entries rolled back, in a copy)"
        );
    }
    let _ = writeln!(
        out,
        "{name}: {} objects, {} types, {} processes registered",
        r.objects, r.types, r.processes
    );
    let _ = writeln!(
        out,
        "  heap: {} blocks used ({}), {} free ({})",
        r.used_blocks,
        size(r.used_bytes),
        r.free_blocks,
        size(r.free_bytes)
    );
    let _ = writeln!(
        out,
        "  containers: {} buffers reached, {} unreachable ({}), {} blocks unaccounted for",
        r.nested_blocks,
        r.unreachable_blocks,
        size(r.unreachable_bytes),
        r.unaccounted_blocks
    );
    if !r.untraced.is_empty() {
        let untraced: Vec<Cow<'_, str>> = r.untraced.iter().map(|n| esc(n)).collect();
        let _ = writeln!(
            out,
            "  not traced (a ShmMutex was held): {}",
            untraced.join(", ")
        );
    }
    if r.unreachable_blocks > 0 {
        out.push_str(
            "  (unreachable buffers are what crashes cost; `check --repair` frees them)\n",
        );
    }
    if r.is_ok() {
        out.push_str("consistent\n");
    } else {
        for p in &r.problems {
            let _ = writeln!(out, "problem: {}", esc(p));
        }
        let _ = writeln!(out, "{} problem(s) found", r.problems.len());
    }
    out
}

pub fn gc(
    removed: &[SegmentInfo],
    kept: &[SegmentInfo],
    failed: &[(SegmentInfo, String)],
    dry_run: bool,
    idle: bool,
) -> String {
    let mut out = String::new();
    let verb = if dry_run { "would remove" } else { "removed" };
    for s in removed {
        let _ = writeln!(out, "{verb} {} ({})", short(&s.name), esc(&s.reason));
    }
    for (s, e) in failed {
        let _ = writeln!(out, "could not remove {}: {}", short(&s.name), esc(e));
    }
    // Kept for a reason a person may want to act on.
    for s in kept {
        if matches!(s.status, Status::Damaged | Status::Unknown)
            || s.reason.starts_with("not removed:")
        {
            let _ = writeln!(out, "kept {} ({})", short(&s.name), esc(&s.reason));
        }
    }
    let count = |st: Status| kept.iter().filter(|s| s.status == st).count();
    let _ = write!(
        out,
        "{verb} {} store(s); kept {} in use, {} being created, {} idle, {} damaged, {} unknown",
        removed.len(),
        count(Status::InUse),
        count(Status::Creating),
        count(Status::Idle),
        count(Status::Damaged),
        count(Status::Unknown)
    );
    if !idle && count(Status::Idle) > 0 {
        out.push_str(" (--idle removes idle ones)");
    }
    out.push('\n');
    out
}
