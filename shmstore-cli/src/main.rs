//! `shmstore`: list, inspect, dump, check and clean up shmstore stores.
//!
//! Every command but `check --repair`, `rm` and `gc` is read-only: it
//! reads a private copy of the store (see `shmstore::inspect`), never
//! writes to the segment, never takes its header lock and never joins its
//! process table. `--json` prints one JSON document (schema in
//! `shmstore help json`).

mod human;
mod json;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use serde_json::json;
use shmstore::inspect::{
    self, DumpLimits, LockState, Removal, RemoveIf, SegmentInfo, SegmentKind, Status,
};
use shmstore::{Error, Store};

use human::esc;

/// The longest `--wait` taken (a day); a larger one is taken as this.
const MAX_WAIT_SECS: u64 = 86_400;

/// How long `rm` and `gc` wait for a store's header lock (held by a live
/// process) before they give up on that store.
const REMOVE_WAIT: Duration = Duration::from_secs(5);

const ABOUT: &str = "List, inspect, dump, check and clean up shmstore stores in /dev/shm";

const LONG_ABOUT: &str = "\
List, inspect, dump, check and clean up the shmstore stores of this machine.

A store is a POSIX shared-memory segment (/dev/shm/NAME) laid out by the \
shmstore library. This command finds them by their header (other programs' \
segments are shown as foreign with `ls --all`, and never removed by `gc`), \
shows what they hold through the type layouts each store records (no Rust \
type needed), and removes the ones nobody uses any more.

`ls`, `info`, `objects`, `dump` and `check` (without --repair) only read: \
they open the segment read-only, copy its used pages into private memory, \
and report the header lock's state by reading its bytes, never by taking \
it. They need only read permission, and change nothing, even in a store \
whose lock holder died.";

const AFTER_LONG_HELP: &str = "\
STATUS (ls, info, gc)
    in-use      a live process uses it: registered in its process table, or \
seen mapping it in /proc/PID/maps
    idle        meant to persist, and no live process uses it: removed only \
by `gc --idle` (and `rm`)
    creating    its creator is still initialising it (or runs in another pid \
namespace, where this command cannot tell whether it still does)
    abandoned   no live process uses it, and it was made to be removed when \
unused (or was marked removed), or its creator died half-way: removed by `gc`
    damaged     a store of this format whose header or process table is \
damaged; no live process is registered, but its objects may still read: never \
removed by `gc`; look at it (`info`, `objects`, `dump`, `check`), then \
`rm --force` it if it is to go
    unknown     whether a process uses it cannot be told from here: \
processes this command cannot see (of another pid namespace, or whose \
mappings this user may not read) may map it; never removed by `gc`
    foreign     not a shmstore segment (shown with `ls --all`; never removed \
by `gc`)
    unreadable  this user may not read it

REMOVAL
    `gc` and `rm` remove a store under its header lock: they take the lock \
(waiting at most 5 s for a live holder), judge the store again from its \
process table, mark it removed and unlink its name before they let go. A \
process opening the store at that moment either registered first (the \
store is kept, in use) or finds the mark and opens the name anew; a new \
store made under the name meanwhile is never removed.

EXIT STATUS
    0   success; for `check`, the store is consistent
    1   `check` found problems; `rm` or `gc` refused or failed to remove a \
store (`rm` reports every name it was given and goes on past one it cannot \
remove or find)
    2   the command could not run: bad usage, no such store, permission \
denied, not a store

JSON
    --json (any command) prints one JSON document on stdout; see \
`shmstore help json` for its schema. Errors, bad usage included, are \
{\"schema\":1,\"command\":\"error\",\"error\":{\"kind\":...,\"message\":...}}.

NAMES
    Names read from /dev/shm and from stores (store, object, type, field \
and variant names) are printed with control characters escaped as in Rust \
strings (\\n, \\u{1b}); --json prints them as they are, JSON-escaped.

EXAMPLES
    shmstore ls                    the stores of this machine
    shmstore info demo             one store in detail
    shmstore objects demo          its objects, their types and layouts
    shmstore dump demo config      one value, field by field
    shmstore check demo || shmstore check --repair demo
    shmstore gc --dry-run          what `gc` would remove
    shmstore completions bash > /etc/bash_completion.d/shmstore";

const JSON_HELP: &str = "\
Every document is one JSON object with \"schema\": 1 and \"command\". Fields \
may be added in later versions; none changes meaning without a new schema \
number. Sizes are bytes; fingerprints and store ids are \"0x\"-prefixed hex \
strings; modes are octal strings (\"0600\").

segment (ls, info, gc):
  {name, path, kind: store|creating|incompatible|foreign|unreadable,
   status: in-use|idle|creating|abandoned|damaged|unknown|foreign|unreadable,
   reason, owner (uid), owner_name, mode, size, allocated (bytes of memory
   held), users [pid], mapped_by [pid], mappers_complete (mapped_by names
   every process that maps it: this command could read every process's
   mappings, from the initial pid namespace),
   store: null | {capacity, committed, used, objects, recoveries, store_id,
     creator, remove_when_unused, removed,
     processes [{pid, liveness: alive|dead|unknown, pins}],
     live_processes, dead_processes,
     header_lock {state: free|held|owner-died|recovering|unrecoverable|unknown,
       pid, tid},
     journal_entries, consistent, problems [string]},
   creating: null | {pid, liveness}}

ls      {segments [segment], hidden (segments not shown without --all)}
info    {segment, view, types, processes [{pid, liveness, pins}]}
objects {store, view, objects [{name, type, size, len (null: not a slice),
          fingerprint, pins, holders [{pid, liveness, pins}], layout}],
         problems [string]}
        layout: {name, type, size, align, kind: primitive|struct|enum|array|
          opaque|container|backref, fields [{name, offset, layout}],
          transparent, repr, variants [{name, discriminant}], elem, len,
          params [layout], depth}
dump    {store, key, type, len, view, value}
        value: numbers, booleans, strings (chars, ShmString, FixedString);
          a struct is an object of its fields; an array, slice or vector an
          array, or {len, items} when cut at --limit; a map an array of
          [key, value] pairs, or {len, entries} when cut; an enum its
          variant's name; a RelPtr its target or null; a ShmMutex
          {lock, owner_died, data}; floats JSON cannot spell are \"NaN\",
          \"inf\", \"-inf\"; integers beyond 64 bits are strings;
          {invalid: why} for bytes that are not a valid value or a container
          that cannot be followed, {elided: true} past --depth,
          {bytes: hex} for bytes with no layout
check   {store, ok, view, repair: null | {actions [string], collected_blocks,
          collected_bytes, removed}, report {ok, objects, types, processes,
          used_blocks, used_bytes, free_blocks, free_bytes, nested_blocks,
          unreachable_blocks, unreachable_bytes, unaccounted_blocks,
          untraced [name], problems [string]}}
        when the repair removed the store (made to be removed when unused,
        every user dead): repair.removed is true, and view and report are
        null (there is nothing left to look at)
rm      {removed [name], refused [{name, reason, status, users [pid]}],
         failed [{name, error {kind, message}}]} (every name given appears
         in one of the three)
gc      {dry_run, removed [{name, status, reason}], kept [{name, status,
          reason}], failed [{name, error}]}

view: {consistent (copied while no live process held the header lock, and
  unchanged meanwhile), copied_bytes, rolled_back: null | {entries} |
  {error} (a dead lock holder's journal, undone in the copy only)}";

#[derive(Parser)]
#[command(
    name = "shmstore",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_long_help = AFTER_LONG_HELP,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    /// Print one JSON document instead of text (see `shmstore help json`).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the stores in /dev/shm: size, processes, header lock, status.
    #[command(long_about = "\
List the shmstore stores in /dev/shm, one a line: name, status, owner, mode, \
capacity (reserved, sparse), committed (memory allocated), used (by the \
store's blocks), objects, live processes (registered and running, or seen \
mapping it), dead processes (registered, gone: released by the next opener), \
and the header lock's state (free, held by a pid, owner died).

Reads a few pages of each store; changes nothing.")]
    Ls {
        /// Also show segments that are not stores of this format (other
        /// programs', other versions', unreadable ones).
        #[arg(short, long)]
        all: bool,
    },
    /// Describe one store: sizes, lifecycle, processes, header lock.
    Info {
        /// The store's name (`demo` or `/demo`).
        name: String,
    },
    /// List a store's objects: type, layout, size, length, fingerprint, holders.
    #[command(long_about = "\
List a store's objects: name, type, size, slice length, fingerprint, pins \
and the processes holding them (handles), then each type's layout as the \
store recorded it: fields with their offsets, sizes and types.")]
    Objects {
        /// The store's name.
        name: String,
    },
    /// Print one value through the layout the store recorded for it.
    #[command(long_about = "\
Print one object's value field by field, through the layout the store \
recorded for its type: numbers, booleans, chars, enums by variant name, \
arrays, nested structs, and what containers hold (ShmString, ShmVec, \
ShmMap, RelPtr targets, FixedString, FixedVec). The reader needs no Rust \
type. Invalid bytes are shown as invalid, never trusted. A ShmMutex's data \
is read without taking the lock (its state is shown).")]
    Dump {
        /// The store's name.
        name: String,
        /// The object's name.
        key: String,
        /// Elements of a list or map shown at most (the rest is counted).
        #[arg(long, default_value_t = 1000)]
        limit: u64,
        /// Levels of nesting shown at most (at most 256, whatever is
        /// asked: deeper values are shown as elided).
        #[arg(long, default_value_t = 64)]
        depth: u32,
    },
    /// Check a store's consistency; exit 0 if consistent, 1 if not.
    #[command(long_about = "\
Check a store's consistency: every heap block, free list, directory slot, \
record, registered type, process-table slot and container buffer. Exit 0 if \
consistent, 1 if problems were found, 2 if the check could not run.

Without --repair it reads a private copy and changes nothing: dead \
processes are reported, not released; a header lock whose holder died is \
shown as it will be after its rollback.

--repair opens the store and does what the store can do safely: roll back \
the operation of a header-lock holder that died (on the first lock), \
release what dead processes held, free container buffers no object reaches \
(`Store::collect`), then checks again. Each time it takes the header lock \
it waits at most --wait for a live holder to let go, and gives up (exit 2, \
nothing done by that step) past it. A store made to be removed when \
unused whose users are all dead is removed by the repair.")]
    Check {
        /// The store's name.
        name: String,
        /// Repair what can be repaired safely (opens the store read-write).
        #[arg(long)]
        repair: bool,
        /// With --repair: seconds to wait for a live holder of the header
        /// lock, each time the repair takes it (at most 86400: a larger
        /// value is taken as 86400).
        #[arg(long, default_value_t = 10)]
        wait: u64,
    },
    /// Remove a store (refuses one in use, naming its processes).
    #[command(long_about = "\
Remove a store's name from /dev/shm. Processes that have it open keep using \
it until they close it; its memory is freed then.

Refuses (exit 1) a store in use — a live registered process, a live creator, \
or a process seen mapping it — naming the processes, a damaged store, one \
whose use cannot be told, and a segment that is not a shmstore store or \
cannot be read; --force removes it all the same. A store is judged again, \
and removed, under its header lock (see REMOVAL in `shmstore --help`). \
Every name is reported (removed, refused, or failed: not found, say); exit \
1 if any was not removed.")]
    Rm {
        /// The stores' names.
        #[arg(required = true)]
        names: Vec<String>,
        /// Remove even a store in use, or a segment that is not a store.
        #[arg(short, long)]
        force: bool,
    },
    /// Remove every abandoned store (and idle ones with --idle).
    #[command(long_about = "\
Remove every abandoned store: no live process uses it (none registered and \
running, none seen mapping it), and it was made to be removed when unused, \
or its creator died before finishing it. With --idle, also stores meant to \
persist that no live process uses. Stores in use, being created, damaged \
ones (a person decides: `rm --force`), ones whose use cannot be told, other \
programs' segments and unreadable ones are never removed.

Each store is judged again, and removed, under its header lock (see \
REMOVAL in `shmstore --help`).")]
    Gc {
        /// Also remove idle stores (meant to persist, unused now).
        #[arg(long)]
        idle: bool,
        /// Show what would be removed; remove nothing.
        #[arg(short = 'n', long)]
        dry_run: bool,
    },
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the JSON schema of --json.
    #[command(name = "json-schema", hide = true)]
    JsonSchema,
}

/// A command's failure: exit 2 with this error.
struct Failure(Error);

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure(e)
    }
}

type Outcome = Result<ExitCode, Failure>;

fn main() -> ExitCode {
    // `shmstore help json`: the schema (clap's `help` knows only commands).
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 3 && args[1] == "help" && args[2] == "json" {
        println!("{JSON_HELP}");
        return ExitCode::SUCCESS;
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e, &args),
    };
    let json = cli.json;
    let result = match cli.command {
        Command::Ls { all } => ls(all, json),
        Command::Info { name } => info(&name, json),
        Command::Objects { name } => objects(&name, json),
        Command::Dump {
            name,
            key,
            limit,
            depth,
        } => dump(&name, &key, limit, depth, json),
        Command::Check { name, repair, wait } => check(
            &name,
            repair,
            Duration::from_secs(wait.min(MAX_WAIT_SECS)),
            json,
        ),
        Command::Rm { names, force } => rm(&names, force, json),
        Command::Gc { idle, dry_run } => gc(idle, dry_run, json),
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "shmstore", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::JsonSchema => {
            println!("{JSON_HELP}");
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(Failure(e)) => {
            if json {
                print_json(&json::document(
                    "error",
                    json!({ "error": { "kind": error_kind(&e), "message": e.to_string() } }),
                ));
            } else {
                eprintln!("shmstore: {}", esc(&e.to_string()));
            }
            ExitCode::from(2)
        }
    }
}

/// Bad usage (or `--help`, `--version`): clap's text and exit status; under
/// `--json` (anywhere before a `--`), bad usage is a JSON error document
/// on stdout instead, of kind `"usage"`, with exit status 2.
fn usage_error(e: clap::Error, args: &[String]) -> ExitCode {
    use clap::error::ErrorKind;
    let json = args
        .iter()
        .skip(1)
        .take_while(|a| a.as_str() != "--")
        .any(|a| a == "--json");
    if !json || matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        e.exit();
    }
    let message = e.render().to_string();
    print_json(&json::document(
        "error",
        json!({ "error": { "kind": "usage", "message": message.trim_end() } }),
    ));
    ExitCode::from(2)
}

fn error_kind(e: &Error) -> &'static str {
    match e {
        Error::NotFound { .. } => "not-found",
        Error::PermissionDenied { .. } => "permission-denied",
        Error::NotAStore { .. } => "not-a-store",
        Error::Incompatible { .. } => "incompatible",
        Error::Corrupted { .. } => "corrupted",
        Error::InvalidName { .. } => "invalid-name",
        Error::InvalidArgument { .. } => "invalid-argument",
        Error::NoSpace { .. } => "no-space",
        Error::OwnerDied { .. } => "owner-died",
        Error::Io { .. } => "io",
        Error::TimedOut { .. } => "timed-out",
        _ => "other",
    }
}

fn print_json(doc: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer_pretty(&mut out, doc);
    let _ = writeln!(out);
}

fn ls(all: bool, json: bool) -> Outcome {
    let segments = Store::list()?;
    let (shown, hidden): (Vec<_>, Vec<_>) = segments.into_iter().partition(|s| {
        all || matches!(s.kind, SegmentKind::Ready(_) | SegmentKind::Creating { .. })
    });
    let users = human::Users::load();
    if json {
        let list: Vec<_> = shown
            .iter()
            .map(|s| json::segment(s, users.name(s.owner)))
            .collect();
        print_json(&json::document(
            "ls",
            json!({ "segments": list, "hidden": hidden.len() }),
        ));
    } else {
        print!("{}", human::ls(&shown, &hidden, &users));
    }
    Ok(ExitCode::SUCCESS)
}

fn info(name: &str, json: bool) -> Outcome {
    let segment = inspect::segment(name)?;
    let users = human::Users::load();
    // A store of this format: look closer (types, pins per process).
    let look = match segment.kind {
        SegmentKind::Ready(_) => Store::inspect(name).ok(),
        _ => None,
    };
    let types = look.as_ref().and_then(|l| l.type_count().ok());
    let processes = look.as_ref().and_then(|l| l.processes().ok());
    if json {
        print_json(&json::document(
            "info",
            json!({
                "segment": json::segment(&segment, users.name(segment.owner)),
                "view": look.as_ref().map(json::view),
                "types": types,
                "processes": processes.as_ref().map(|p| p.iter().map(json::process).collect::<Vec<_>>()),
            }),
        ));
    } else {
        print!(
            "{}",
            human::info(&segment, look.as_ref(), types, processes.as_deref(), &users)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn objects(name: &str, json: bool) -> Outcome {
    let look = Store::inspect(name)?;
    let (objects, problems) = look.objects()?;
    if json {
        print_json(&json::document(
            "objects",
            json!({
                "store": look.info().name,
                "view": json::view(&look),
                "objects": objects.iter().map(json::object).collect::<Vec<_>>(),
                "problems": problems,
            }),
        ));
    } else {
        print!("{}", human::objects(&look, &objects, &problems));
    }
    Ok(ExitCode::SUCCESS)
}

fn dump(name: &str, key: &str, limit: u64, depth: u32, json: bool) -> Outcome {
    let look = Store::inspect(name)?;
    let limits = DumpLimits {
        max_items: limit,
        max_depth: depth,
    };
    let value = look.value(key, &limits)?;
    let (objects, _) = look.objects()?;
    let entry = objects.iter().find(|o| o.entry.name == key);
    if json {
        print_json(&json::document(
            "dump",
            json!({
                "store": look.info().name,
                "key": key,
                "type": entry.map(|o| o.entry.type_name.clone()),
                "len": entry.and_then(|o| o.entry.len),
                "view": json::view(&look),
                "value": json::value(&value),
            }),
        ));
    } else {
        if !look.is_consistent() {
            eprintln!("shmstore: note: the store changed while it was read; the value may mix two moments");
        }
        println!("{value:#}");
    }
    Ok(ExitCode::SUCCESS)
}

/// What `check --repair` did.
#[derive(Default)]
struct Repair {
    actions: Vec<String>,
    collected_blocks: u64,
    collected_bytes: u64,
}

/// The outcome of `check --repair`'s repair.
enum Repaired {
    /// The store was repaired (or needed nothing).
    Done(Repair),
    /// The store was removed (made to be removed when unused, every user
    /// dead): its name, with its leading slash.
    Removed(String),
}

fn check(name: &str, repair: bool, wait: Duration, json: bool) -> Outcome {
    let mut repaired = None;
    if repair {
        match run_repair(name, wait)? {
            Repaired::Done(r) => repaired = Some(r),
            Repaired::Removed(store) => {
                let msg = format!(
                    "store \"{store}\" was made to be removed when unused and every process that \
                     used it was dead: the repair removed it"
                );
                if json {
                    print_json(&json::document(
                        "check",
                        json!({
                            "store": store,
                            "ok": true,
                            "view": null,
                            "repair": {
                                "actions": [msg],
                                "collected_blocks": 0,
                                "collected_bytes": 0,
                                "removed": true,
                            },
                            "report": null,
                        }),
                    ));
                } else {
                    println!("repair: {}", esc(&msg));
                }
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
    let look = Store::inspect(name)?;
    let report = look.check();
    if json {
        print_json(&json::document(
            "check",
            json!({
                "store": look.info().name,
                "ok": report.is_ok(),
                "view": json::view(&look),
                "repair": repaired.as_ref().map(|r| json!({
                    "actions": r.actions,
                    "collected_blocks": r.collected_blocks,
                    "collected_bytes": r.collected_bytes,
                    "removed": false,
                })),
                "report": json::check_report(&report),
            }),
        ));
    } else {
        if let Some(r) = &repaired {
            for a in &r.actions {
                println!("repair: {}", esc(a));
            }
        }
        print!("{}", human::check(&look, &report));
    }
    Ok(if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Opens the store read-write and repairs it: the open recovers a dead
/// lock holder's operation and releases dead processes; `collect` frees
/// unreachable buffers. Every take of the header lock (by the open, the
/// release, `collect`, and the last user's goodbye) waits at most `wait`
/// for a live holder ([`Error::TimedOut`] then: exit 2). The open removes a
/// store made to be removed when unused whose users are all dead.
fn run_repair(name: &str, wait: Duration) -> Result<Repaired, Failure> {
    let before = inspect::segment(name)?;
    let Some(summary) = before.store() else {
        return Err(Failure(Store::inspect(name).err().unwrap_or_else(|| {
            Error::NotAStore {
                name: before.name.clone(),
                reason: "not a store of this format".into(),
            }
        })));
    };
    let not_repairing = |e: Error| match e {
        Error::TimedOut { what } => Failure(Error::TimedOut {
            what: format!("{what}; not repairing (try again, or raise --wait)"),
        }),
        e => Failure(e),
    };
    let mut r = Repair::default();
    let dead = summary.dead_processes().count();
    let store = match Store::options()
        .open_timeout(wait)
        .lock_timeout(wait)
        .open(name)
    {
        Ok(store) => store,
        Err(Error::NotFound { .. }) if summary.remove_when_unused => {
            return Ok(Repaired::Removed(before.name.clone()))
        }
        Err(e) => return Err(not_repairing(e)),
    };
    if summary.header_lock == LockState::OwnerDied {
        r.actions.push(format!(
            "recovered the header lock from its dead holder ({} journal entries rolled back)",
            summary.journal_entries
        ));
    }
    if dead > 0 {
        r.actions.push(format!(
            "released what {dead} dead process(es) held (their pins and unfinished inserts)"
        ));
    }
    let collected = store.collect().map_err(not_repairing)?;
    r.collected_blocks = collected.freed_blocks;
    r.collected_bytes = collected.freed_bytes;
    if collected.freed_blocks > 0 {
        r.actions.push(format!(
            "freed {} unreachable container buffer(s) ({})",
            collected.freed_blocks,
            human::size(collected.freed_bytes)
        ));
    }
    if !collected.busy.is_empty() {
        r.actions.push(format!(
            "collected nothing: a ShmMutex was held in {} (try again)",
            collected.busy.join(", ")
        ));
    }
    if !collected.broken.is_empty() {
        r.actions.push(format!(
            "collected nothing: {} broken container(s)",
            collected.broken.len()
        ));
    }
    if r.actions.is_empty() {
        r.actions.push("nothing to repair".into());
    }
    drop(store);
    Ok(Repaired::Done(r))
}

/// Why `rm` kept `s` (judged again under its header lock when it is a
/// store of this format), and the pids to name.
fn refusal(s: &SegmentInfo) -> (String, Vec<u32>) {
    let users = s.users();
    match s.status {
        Status::Foreign => (format!("not a shmstore store ({})", s.reason), Vec::new()),
        Status::Unreadable => (
            format!("cannot tell whether it is in use: {}", s.reason),
            Vec::new(),
        ),
        _ if !users.is_empty() => {
            let pids: Vec<String> = users.iter().map(|p| p.to_string()).collect();
            (format!("in use by pid {}", pids.join(", ")), users)
        }
        _ => (s.reason.clone(), users),
    }
}

fn rm(names: &[String], force: bool, json: bool) -> Outcome {
    let rule = if force {
        RemoveIf::Any
    } else {
        RemoveIf::Unused
    };
    let mut removed = Vec::new();
    let mut refused = Vec::new();
    let mut failed = Vec::new();
    for name in names {
        match Store::remove_unused(name, rule, REMOVE_WAIT) {
            Ok(Removal::Removed(s)) => {
                if !json {
                    println!("removed {}", esc(&s.name));
                }
                removed.push(s.name);
            }
            Ok(Removal::Kept(s)) => {
                let (reason, pids) = refusal(&s);
                if !json {
                    eprintln!(
                        "shmstore: not removing {}: {} (use --force to remove it anyway)",
                        esc(&s.name),
                        esc(&reason)
                    );
                }
                refused.push(json!({
                    "name": s.name,
                    "reason": reason,
                    "status": s.status.as_str(),
                    "users": pids,
                }));
            }
            Ok(other) => {
                failed.push(json!({
                    "name": name,
                    "error": { "kind": "other", "message": format!("{other:?}") },
                }));
            }
            Err(e) => {
                if !json {
                    eprintln!(
                        "shmstore: cannot remove {}: {}",
                        esc(name),
                        esc(&e.to_string())
                    );
                }
                failed.push(json!({
                    "name": name,
                    "error": { "kind": error_kind(&e), "message": e.to_string() },
                }));
            }
        }
    }
    if json {
        print_json(&json::document(
            "rm",
            json!({ "removed": removed, "refused": refused, "failed": failed }),
        ));
    }
    Ok(if refused.is_empty() && failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn gc(idle: bool, dry_run: bool, json: bool) -> Outcome {
    let rule = if idle {
        RemoveIf::Unused
    } else {
        RemoveIf::Abandoned
    };
    let mut removed = Vec::new();
    let mut kept = Vec::new();
    let mut failed = Vec::new();
    for s in Store::list()? {
        if !s.is_store() && s.status != Status::Abandoned {
            continue; // other programs' segments are none of our business
        }
        if !rule.accepts(s.status) {
            kept.push(s);
            continue;
        }
        if dry_run {
            removed.push(s);
            continue;
        }
        // Judged again, and removed, under the store's header lock.
        match Store::remove_unused(&s.name, rule, REMOVE_WAIT) {
            Ok(Removal::Removed(now)) => removed.push(now),
            Ok(Removal::Kept(now)) => kept.push(now),
            Ok(other) => failed.push((s, format!("{other:?}"))),
            Err(Error::NotFound { .. }) => {} // gone meanwhile
            Err(e) => failed.push((s, e.to_string())),
        }
    }
    if json {
        let brief = |s: &SegmentInfo| json!({ "name": s.name, "status": s.status.as_str(), "reason": s.reason });
        print_json(&json::document(
            "gc",
            json!({
                "dry_run": dry_run,
                "removed": removed.iter().map(brief).collect::<Vec<_>>(),
                "kept": kept.iter().map(brief).collect::<Vec<_>>(),
                "failed": failed.iter().map(|(s, e)| json!({ "name": s.name, "error": e })).collect::<Vec<_>>(),
            }),
        ));
    } else {
        print!("{}", human::gc(&removed, &kept, &failed, dry_run, idle));
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
