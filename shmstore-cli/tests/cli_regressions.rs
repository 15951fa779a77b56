//! Regression tests for review 10's findings against the `shmstore`
//! command (and the read-only look and the removal it is built on). Each
//! test names the finding it guards, what went wrong before, and asserts
//! the fixed behaviour.
//!
//! Tests that create odd files, truncate, race or run `gc` do it inside a
//! mount namespace with a private tmpfs over `/dev/shm` (root + `unshare`),
//! so they never see or touch anyone else's segments. They print why they
//! skip otherwise (not root, no `unshare`, no `strace`). `strace -e
//! inject=…:delay_enter` holds one system call back to make a race window
//! certain; the tests wait for the traced process to sit in that call
//! (`/proc/PID/syscall`), never for a fixed time.

use std::io::Write as _;
use std::os::unix::fs::FileExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{json, listed, run, shmstore, show, BIN};
use serde_json::Value as Json;
use shmstore::{RelPtr, ShmSafe, Store};
use shmstore_tests::{
    find_program, is_root, role, role_command, unique_name, Child, StoreGuard, PATIENCE,
};

// ---------------------------------------------------------------------------
// helpers

/// Like `run`, but keeps stdout as raw bytes (control characters and all).
fn run_raw(args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdin(Stdio::null());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(cmd.output().unwrap());
    });
    rx.recv_timeout(PATIENCE)
        .unwrap_or_else(|_| panic!("{args:?} did not finish within {PATIENCE:?}"))
}

fn write_at(path: &str, off: u64, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, off).unwrap();
}

/// Runs this test again inside a private `/dev/shm` (role `private-shm`),
/// and asserts it passed there. Returns `false` if it cannot (then the
/// caller returns: skipped).
fn in_private_shm(test: &str) -> bool {
    let (Some(unshare), true) = (find_program("unshare"), is_root()) else {
        eprintln!("needs root and unshare (a private /dev/shm); skipped");
        return false;
    };
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(unshare);
    cmd.args(["-m", "--propagation", "private", "--", "sh", "-c"])
        .arg("mount -t tmpfs -o size=1g shmstore-regressions /dev/shm && exec \"$0\" \"$@\"")
        .arg(exe)
        .args(shmstore_tests::test_args(test))
        .env(shmstore_tests::ROLE_VAR, "private-shm")
        .env("RUST_BACKTRACE", "1");
    let done = Child::spawn(cmd).wait_timeout(Duration::from_secs(300));
    assert!(
        done.status.success() && done.stdout.contains("SCENARIO DONE"),
        "the scenario failed inside the private /dev/shm:\n{done}"
    );
    true
}

fn is_private_shm() -> bool {
    role().is_some_and(|(r, _)| r == "private-shm")
}

/// A child that opens (or creates) `name` as a store removed when unused,
/// makes sure it holds `"counter"`, prints `READY <pid> <inode>` and waits.
fn ephemeral_holder(name: &str) -> ! {
    let store = Store::options()
        .capacity(1 << 20)
        .remove_when_unused(true)
        .open_or_create(name)
        .unwrap();
    let _c = store.get_or_insert_with("counter", || 7u32).unwrap();
    let ino = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/dev/shm/{name}")).unwrap().ino()
    };
    println!("READY {} {ino}", std::process::id());
    loop {
        std::thread::park();
    }
}

/// The pids whose parent is `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let ppid: u32 = rest.split(' ').nth(1).unwrap().parse().unwrap();
        if ppid == parent {
            out.push(pid);
        }
    }
    out
}

/// Waits until some child of `tracer` (a `strace` running the command) is
/// stopped in `unlink`/`unlinkat` (syscall 87 / 263 on x86_64); returns its
/// pid.
fn wait_in_unlink(tracer: u32) -> u32 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        for pid in children_of(tracer) {
            if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/syscall")) {
                let nr = s.split(' ').next().unwrap_or("");
                if nr == "87" || nr == "263" {
                    return pid;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "the traced command never unlinked"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// If process `pid` sits in `open` (2) or `openat` (257) of `path` —
/// x86_64 numbers; the path is read from its memory at the call's
/// argument — its access mode (`flags & O_ACCMODE`).
fn in_open_of(pid: u32, path: &str) -> Option<u64> {
    let sys = std::fs::read_to_string(format!("/proc/{pid}/syscall")).ok()?;
    let f: Vec<&str> = sys.split_whitespace().collect();
    let (at, flags) = match *f.first()? {
        "2" => (f.get(1)?, f.get(2)?),
        "257" => (f.get(2)?, f.get(3)?),
        _ => return None,
    };
    let hex = |w: &str| u64::from_str_radix(w.trim_start_matches("0x"), 16).ok();
    let (at, flags) = (hex(at)?, hex(flags)?);
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).ok()?;
    let mut buf = vec![0u8; path.len() + 1];
    mem.read_exact_at(&mut buf, at).ok()?;
    (buf[..path.len()] == *path.as_bytes() && buf[path.len()] == 0)
        .then_some(flags & libc::O_ACCMODE as u64)
}

fn strace() -> Option<std::path::PathBuf> {
    if !cfg!(target_arch = "x86_64") {
        eprintln!("the syscall numbers below are x86_64's; skipped");
        return None;
    }
    let s = find_program("strace");
    if s.is_none() {
        eprintln!("strace not found (apt-get install strace); skipped");
    }
    s
}

// ---------------------------------------------------------------------------
// Finding 1 (review: F1): gc unlinked, by name, whatever was under the name
// when it got there

const GC_RACE: &str = "gc_never_removes_a_store_that_a_live_process_made_after_gc_looked";

/// The inode in a `READY <pid> <inode>` line of [`ephemeral_holder`].
fn ready_inode(line: &str) -> u64 {
    line.split("READY ")
        .nth(1)
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Before: `gc` looked at the name, then called `shm_unlink(name)`, with
/// no lock and no check that the name was still the file it judged. An
/// opener that found the old store's users dead removed it itself and
/// created a new one in between; gc's pending unlink then removed the
/// *new* store, in use by a live process.
///
/// Now `gc` removes a store under its header lock (`Store::remove_unused`):
/// it judges again under the lock, marks the store removed and unlinks the
/// name before it lets go. The opener that comes while gc sits in its
/// unlink (held back 3 s by `strace`) waits for the lock, finds the mark,
/// and makes a new store once the name is free; gc never sees that store.
/// Asserted: gc reports the old store removed, and the name now names the
/// opener's new store (another inode), which the opener uses.
#[test]
fn gc_never_removes_a_store_that_a_live_process_made_after_gc_looked() {
    if let Some((role, name)) = role() {
        match role.as_str() {
            "private-shm" => {}
            "ephemeral" => ephemeral_holder(&name),
            other => panic!("role {other}"),
        }
    } else {
        if strace().is_none() {
            return;
        }
        in_private_shm(GC_RACE);
        return;
    }
    let strace = strace().unwrap();
    let name = unique_name("gc-race");
    // An abandoned store: remove when unused, its only user killed.
    let mut a = Child::spawn(role_command(GC_RACE, "ephemeral", &name));
    let a_ino = ready_inode(&a.wait_for_line(PATIENCE, |l| l.contains("READY ")));
    a.kill9();
    let _ = a.wait();
    assert_eq!(listed(&name).unwrap()["status"], "abandoned");

    // gc, its unlink held back 3 s (under the header lock).
    let mut cmd = Command::new(&strace);
    cmd.args([
        "-f",
        "-qq",
        "-o",
        "/dev/null",
        "-e",
        "trace=unlink,unlinkat",
        "-e",
        "inject=unlink,unlinkat:delay_enter=3000000",
        BIN,
        "--json",
        "gc",
    ]);
    let gc = Child::spawn(cmd);
    wait_in_unlink(gc.pid());

    // Meanwhile a process opens the name.
    let mut b = Child::spawn(role_command(GC_RACE, "ephemeral", &name));
    let b_ino = ready_inode(&b.wait_for_line(PATIENCE, |l| l.contains("READY ")));
    assert_ne!(b_ino, a_ino, "B made a new store (the old one was removed)");

    let done = gc.wait();
    assert!(done.status.success(), "gc: {done}");
    let doc: Json = serde_json::from_str(&done.stdout).unwrap_or_else(|e| panic!("{e}: {done}"));
    assert_eq!(doc["removed"][0]["name"], format!("/{name}"), "{doc}");
    assert_eq!(doc["removed"].as_array().unwrap().len(), 1, "{doc}");
    use std::os::unix::fs::MetadataExt;
    let now = std::fs::metadata(format!("/dev/shm/{name}")).map(|m| m.ino());
    assert_eq!(
        now.ok(),
        Some(b_ino),
        "the name must still name B's store (pid {}); gc said {doc}",
        b.pid()
    );
    let listed_now = listed(&name).expect("B's store is listed");
    assert_eq!(listed_now["status"], "in-use", "{listed_now}");
    assert_eq!(listed_now["users"], serde_json::json!([b.pid()]));
    drop(b);
    println!("SCENARIO DONE");
}

// ---------------------------------------------------------------------------
// Finding 3 (review: F2): a segment truncated while it was looked at killed
// `ls` with SIGBUS

const SIGBUS: &str = "ls_survives_a_segment_truncated_while_it_looks";

/// Whether process `pid` has `path` open and its main thread sleeps
/// (`nanosleep` 35 / `clock_nanosleep` 230 on x86_64): for `ls`, waiting
/// in its look for a header lock that a live process holds.
fn sleeping_with_open(pid: u32, path: &str) -> bool {
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == path));
    let sys = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
    open && matches!(sys.split(' ').next(), Some("35" | "230"))
}

/// Before: the look mapped the header page `PROT_READ` and polled the lock
/// words through the mapping; the file's owner truncated it, and the next
/// read raised `SIGBUS` (exit by signal 7).
///
/// Now the look maps nothing: the lock's words are read with `pread`,
/// which reads a shrunk file as shorter. The header lock is made to look
/// held by a live process (pid 1), so that `ls` polls it for its whole
/// patience; the test truncates the file once `ls` has it open and sleeps
/// between two polls. Asserted: `ls` exits 0 with a JSON document that
/// lists the segment, and never had it mapped.
#[test]
fn ls_survives_a_segment_truncated_while_it_looks() {
    if !is_private_shm() {
        if cfg!(target_arch = "x86_64") {
            in_private_shm(SIGBUS);
        } else {
            eprintln!("the syscall numbers below are x86_64's; skipped");
        }
        return;
    }
    let name = unique_name("trunc");
    let path = format!("/dev/shm/{name}");
    let store = Store::create(&name, 1 << 20).unwrap();
    store.insert("n", 1u64).unwrap();
    drop(store);
    // The header lock "held" by pid 1 (alive): the look waits for it.
    write_at(&path, 192, &1u32.to_le_bytes());
    let mut cmd = Command::new(BIN);
    cmd.args(["--json", "ls", "--all"]);
    let ls = Child::spawn(cmd);
    let deadline = Instant::now() + PATIENCE;
    while !sleeping_with_open(ls.pid(), &path) {
        assert!(
            Instant::now() < deadline,
            "ls never sat in its look with the segment open"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", ls.pid())).unwrap();
    assert!(!maps.contains(&path), "ls maps the segment:\n{maps}");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    let done = ls.wait();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        done.status.code(),
        Some(0),
        "`shmstore ls` ended with {:?} (signal {:?}; 7 = SIGBUS) when the owner of one \
         segment truncated it: {done}",
        done.status,
        done.status.signal()
    );
    let doc: Json = serde_json::from_str(&done.stdout).unwrap_or_else(|e| panic!("{e}: {done}"));
    assert!(
        doc["segments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == format!("/{name}")),
        "{doc}"
    );
    println!("SCENARIO DONE");
}

// ---------------------------------------------------------------------------
// Finding 4 (review: F3): a name swapped for a FIFO between lstat and
// open hung `ls`

const FIFO: &str = "ls_never_blocks_on_a_name_swapped_for_a_fifo";

/// Before: `probe` `lstat`ed the name, saw a regular file, then opened it
/// `O_RDONLY` without `O_NONBLOCK`: a FIFO swapped in meanwhile blocked the
/// open until a writer came, for ever. Any local user can keep swapping a
/// FIFO and a file under one name.
///
/// Now a segment is opened `O_NONBLOCK | O_NOFOLLOW` and `fstat`ed;
/// anything but a regular file is foreign ("not a regular file"). This
/// guard swaps the two under one name in a loop while `ls --all` runs 300
/// times, each bounded to 5 s; the deterministic test below places the
/// swap exactly.
#[test]
fn ls_never_blocks_on_a_name_swapped_for_a_fifo() {
    if !is_private_shm() {
        in_private_shm(FIFO);
        return;
    }
    let dir = "/dev/shm";
    let fifo = std::ffi::CString::new(format!("{dir}/r10.fifo")).unwrap();
    // SAFETY: a valid C string; mkfifo has no other precondition.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    std::fs::write(format!("{dir}/r10.reg"), b"not a store").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flipper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let tmp = format!("{dir}/r10.tmp");
            let x = format!("{dir}/x");
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for src in ["r10.reg", "r10.fifo"] {
                    let _ = std::fs::hard_link(format!("{dir}/{src}"), &tmp);
                    let _ = std::fs::rename(&tmp, &x);
                }
            }
        })
    };
    let mut hung = None;
    for attempt in 1..=300 {
        let mut child = Command::new(BIN)
            .args(["ls", "--all"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let stack = std::fs::read_to_string(format!("/proc/{}/stack", child.id()))
                    .unwrap_or_default();
                hung = Some((attempt, stack));
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if hung.is_some() {
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flipper.join().unwrap();
    if let Some((attempt, stack)) = hung {
        panic!(
            "`shmstore ls --all` blocked for more than 5 s (attempt {attempt}) while another \
             user swapped a FIFO and a file under one name; kernel stack:\n{stack}"
        );
    }
    println!("SCENARIO DONE");
}

const SWAP: &str = "ls_never_blocks_on_a_fifo_or_symlink_swapped_in_between_its_stat_and_its_open";

/// Finding 4, placed exactly: `strace` holds `ls`'s open of `/dev/shm/x`
/// back (after its `lstat` saw a regular file), and the test renames a
/// FIFO, then (second run) a symlink to a store, over the name meanwhile.
/// Asserted: `ls` exits 0 at once, listing `x` as foreign, "not a regular
/// file" (before: blocked for ever on the FIFO).
#[test]
fn ls_never_blocks_on_a_fifo_or_symlink_swapped_in_between_its_stat_and_its_open() {
    if !is_private_shm() {
        if strace().is_some() {
            in_private_shm(SWAP);
        }
        return;
    }
    let strace = strace().unwrap();
    let d = "/dev/shm";
    let target = Store::create("a-store", 1 << 20).unwrap();
    drop(target);
    for kind in ["fifo", "symlink"] {
        std::fs::write(format!("{d}/x"), b"not a store").unwrap();
        let odd = format!("{d}/x.{kind}");
        if kind == "fifo" {
            let c = std::ffi::CString::new(odd.clone()).unwrap();
            // SAFETY: a valid C string; mkfifo has no other precondition.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        } else {
            std::os::unix::fs::symlink(format!("{d}/a-store"), &odd).unwrap();
        }
        let mut cmd = Command::new(&strace);
        cmd.args([
            "-f",
            "-qq",
            "-o",
            "/dev/null",
            "-P",
            "/dev/shm/x",
            "-e",
            "trace=open,openat",
            "-e",
            "inject=open,openat:delay_enter=2000000",
            BIN,
            "--json",
            "ls",
            "--all",
        ]);
        let ls = Child::spawn(cmd);
        // Wait for `ls` to sit in its (held back) open of x (2: open,
        // 257: openat).
        let deadline = Instant::now() + PATIENCE;
        while !children_of(ls.pid())
            .into_iter()
            .any(|pid| in_open_of(pid, "/dev/shm/x").is_some())
        {
            assert!(Instant::now() < deadline, "ls never opened x");
            std::thread::sleep(Duration::from_millis(1));
        }
        std::fs::rename(&odd, format!("{d}/x")).unwrap();
        let done = ls.wait_timeout(PATIENCE);
        assert_eq!(done.status.code(), Some(0), "{kind}: {done}");
        let doc: Json =
            serde_json::from_str(&done.stdout).unwrap_or_else(|e| panic!("{e}: {done}"));
        let x = doc["segments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "/x")
            .unwrap_or_else(|| panic!("{kind}: x not listed: {doc}"))
            .clone();
        assert_eq!(x["kind"], "foreign", "{kind}: {x}");
        assert_eq!(x["reason"], "not a regular file", "{kind}: {x}");
        std::fs::remove_file(format!("{d}/x")).unwrap();
    }
    println!("SCENARIO DONE");
}

// ---------------------------------------------------------------------------
// Finding 8 (review: F4): control characters from names were printed raw

/// Before: `ls`, `info`, `objects` and `check` printed store and object
/// names raw: an escape sequence in a name (any local user can make a
/// store) reached the terminal of whoever ran the command, and a newline
/// forged lines in the table.
///
/// Now every name and message from a segment goes through
/// `shmstore::inspect::printable` in human output (JSON escapes by
/// itself). Asserted: no ESC or BEL byte on stdout or stderr of `ls`,
/// `info`, `objects`, `check`, `dump` (an error naming the object), `rm`
/// (a refusal naming the store); the escaped form is shown; no line starts
/// with the forged text; and `--json` still carries the name as it is.
#[test]
fn human_output_escapes_control_characters_in_names() {
    if role().is_some() {
        return;
    }
    let evil = "\u{1b}]0;pwned\u{7}\u{1b}[2J";
    let guard = StoreGuard::new(format!("{}{evil}", unique_name("esc")));
    let store = Store::create(guard.name(), 1 << 20).unwrap();
    let object = format!("obj{evil}\nforged-object  u64");
    store.insert(&object, 1u64).unwrap();
    let missing = format!("missing{evil}");
    let mut leaks = Vec::new();
    for args in [
        vec!["ls"],
        vec!["info", guard.name()],
        vec!["objects", guard.name()],
        vec!["check", guard.name()],
        vec!["dump", guard.name(), &missing],
        vec!["rm", guard.name()],
    ] {
        let o = run_raw(&args);
        let expected = match args[0] {
            "dump" => 2,
            "rm" => 1, // in use by this process
            _ => 0,
        };
        assert_eq!(o.status.code(), Some(expected), "{args:?}: {}", show(&o));
        if o.stdout
            .iter()
            .chain(&o.stderr)
            .any(|&b| b == 0x1b || b == 0x07)
        {
            leaks.push(args[0]);
        }
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            !out.lines().any(|l| l.starts_with("forged-object")),
            "{args:?}: a name forged a line:\n{out}"
        );
        if matches!(args[0], "ls" | "info" | "objects" | "check") {
            assert!(
                out.contains("\\u{1b}"),
                "{args:?}: the escaped name is shown:\n{out}"
            );
        }
    }
    assert!(
        leaks.is_empty(),
        "raw ESC/BEL bytes from a store's or object's name reached the output of: {leaks:?}"
    );
    let doc = json(&["objects", guard.name()], 0);
    assert_eq!(doc["objects"][0]["name"], object.as_str(), "{doc}");
    drop(store);
}

// ---------------------------------------------------------------------------
// Finding 9 (review: F5): dump --depth walked and printed by recursion

#[derive(ShmSafe)]
#[repr(C)]
struct Node {
    id: u64,
    next: RelPtr<Node>,
}

/// Before: a 50,000-link `RelPtr` list dumped with `--depth 1000000`
/// overflowed the main thread's stack (the reader, the printer, the JSON
/// conversion and the drop of the value all recurse once per level), and
/// the pretty printer re-rendered every subtree at every level.
///
/// Now the depth is clamped to `shmstore::inspect::MAX_DEPTH` (256,
/// documented in `--help`), the one-line form is tried on at most 60
/// characters, and indentation stops growing after 16 levels. Asserted:
/// both forms exit 0, show the cut (`…` / `{"elided": true}`) and reach
/// about `MAX_DEPTH / 2` links (two levels a link), no line is longer than
/// the capped indentation allows, and the whole output stays small.
#[test]
fn dump_of_a_long_list_with_a_large_depth_ends_with_an_exit_status() {
    if role().is_some() {
        return;
    }
    const N: u64 = 50_000;
    let guard = StoreGuard::unique("deep");
    let store = Store::create(guard.name(), 16 << 20).unwrap();
    let mut next = RelPtr::null();
    for id in 0..N {
        next = RelPtr::new_in(&store, Node { id, next }).unwrap();
    }
    store.insert("list", Node { id: N, next }).unwrap();
    let links = u64::from(shmstore::inspect::MAX_DEPTH / 2);
    for args in [
        vec!["dump", "--depth", "1000000", guard.name(), "list"],
        vec!["--json", "dump", "--depth", "1000000", guard.name(), "list"],
    ] {
        let started = Instant::now();
        let o = run_raw(&args);
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            o.status.code(),
            Some(0),
            "{args:?}: {:?} (signal {:?}) after {:?}; stderr: {}",
            o.status,
            o.status.signal(),
            started.elapsed(),
            String::from_utf8_lossy(&o.stderr)
        );
        let out = String::from_utf8(o.stdout).unwrap();
        assert!(
            out.len() < 4 << 20,
            "{args:?}: {} bytes of output",
            out.len()
        );
        // The deepest id shown: the list holds N, N-1, ... from the head.
        let deepest = N - links + 1;
        let shown = |id: u64| {
            out.contains(&format!("id: {id},")) || out.contains(&format!("\"id\": {id},"))
        };
        assert!(
            shown(deepest),
            "{args:?}: link {links} (id {deepest}) is shown"
        );
        assert!(
            !shown(deepest - 2),
            "{args:?}: nothing past the clamp is shown"
        );
        if args[0] == "--json" {
            assert!(out.contains("\"elided\": true"), "{args:?}");
        } else {
            assert!(out.contains('…'), "{args:?}");
            let widest = out.lines().map(|l| l.chars().count()).max().unwrap();
            assert!(
                widest <= 16 * 4 + 80,
                "{args:?}: a line of {widest} characters"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Finding 11 (review: F6): small contract breaks of the command

/// Before: `check --repair --wait 18446744073709551615` panicked
/// (`Instant + Duration` overflow): exit 101.
///
/// Now `--wait` is clamped to a day (documented in `--help`). Asserted:
/// the repair of a healthy store runs and exits 0, saying so.
#[test]
fn check_repair_with_a_huge_wait_is_clamped_not_a_panic() {
    if role().is_some() {
        return;
    }
    let guard = StoreGuard::unique("wait");
    let store = Store::create(guard.name(), 1 << 20).unwrap();
    drop(store);
    let o = shmstore(&[
        "check",
        "--repair",
        "--wait",
        "18446744073709551615",
        guard.name(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("repair: nothing to repair"), "{}", show(&o));
    assert!(out.contains("consistent"), "{}", show(&o));
}

/// Before: `rm A B C` with B missing removed A, then stopped at B with
/// exit 2 and an error document only: A's removal was reported nowhere,
/// C was silently left.
///
/// Now every name is reported: removed, refused or failed (with its
/// error's kind), and `rm` goes on. Asserted: A and C are removed and
/// listed as such, B is in `failed` as not-found, exit 1; the text form
/// says the same, line by line.
#[test]
fn rm_with_a_missing_name_reports_what_it_removed() {
    if role().is_some() {
        return;
    }
    let a = StoreGuard::unique("rm-a");
    let c = StoreGuard::unique("rm-c");
    drop(Store::create(a.name(), 1 << 20).unwrap());
    drop(Store::create(c.name(), 1 << 20).unwrap());
    let missing = unique_name("rm-missing");
    let o = shmstore(&["--json", "rm", a.name(), &missing, c.name()]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let doc: Json = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        doc["removed"],
        serde_json::json!([format!("/{}", a.name()), format!("/{}", c.name())]),
        "{doc}"
    );
    assert_eq!(doc["refused"], serde_json::json!([]), "{doc}");
    assert_eq!(doc["failed"][0]["name"], missing.as_str(), "{doc}");
    assert_eq!(doc["failed"][0]["error"]["kind"], "not-found", "{doc}");
    assert!(!std::path::Path::new(&a.path()).exists());
    assert!(!std::path::Path::new(&c.path()).exists());
    // The same in text: one line per name, exit 1.
    drop(Store::create(a.name(), 1 << 20).unwrap());
    let o = shmstore(&["rm", &missing, a.name()]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!("removed /{}", a.name())),
        "{}",
        show(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!("cannot remove {missing}")),
        "{}",
        show(&o)
    );
}

/// Before: when `check --repair` removed a remove-when-unused store whose
/// users were all dead, its document was `{store, ok, removed, message}`
/// (the store without its leading `/`, no `view`, `repair` or `report`).
///
/// Now it has the documented fields: `store` with its `/`, `ok`, `view`
/// and `report` null (nothing left to look at), and `repair` with
/// `removed: true` (documented in `shmstore help json`). Asserted, and
/// that the store is gone.
#[test]
fn check_repair_json_matches_the_documented_schema_when_it_removes_the_store() {
    if let Some((role, name)) = role() {
        if role == "ephemeral" {
            ephemeral_holder(&name);
        }
        return;
    }
    const TEST: &str = "check_repair_json_matches_the_documented_schema_when_it_removes_the_store";
    let guard = StoreGuard::unique("repair-rm");
    let mut a = Child::spawn(role_command(TEST, "ephemeral", guard.name()));
    a.wait_for_line(PATIENCE, |l| l.contains("READY "));
    a.kill9();
    let _ = a.wait();
    let doc = json(&["check", "--repair", guard.name()], 0);
    assert_eq!(doc["command"], "check", "{doc}");
    assert_eq!(doc["store"], format!("/{}", guard.name()), "{doc}");
    assert_eq!(doc["ok"], true, "{doc}");
    assert_eq!(doc["view"], Json::Null, "{doc}");
    assert_eq!(doc["report"], Json::Null, "{doc}");
    assert_eq!(doc["repair"]["removed"], true, "{doc}");
    assert!(doc["repair"]["actions"][0]
        .as_str()
        .unwrap()
        .contains("removed it"));
    assert!(!std::path::Path::new(&guard.path()).exists());
    let schema = String::from_utf8(shmstore(&["help", "json"]).stdout).unwrap();
    assert!(schema.contains("repair.removed is true"), "{schema}");
    // A repair that keeps the store says `removed: false`.
    let kept = StoreGuard::unique("repair-kept");
    drop(Store::create(kept.name(), 1 << 20).unwrap());
    let doc = json(&["check", "--repair", kept.name()], 0);
    assert_eq!(doc["repair"]["removed"], false, "{doc}");
    assert_eq!(doc["report"]["ok"], true, "{doc}");
}

/// Before: bad usage under `--json` printed clap's usage text on stderr
/// and nothing on stdout.
///
/// Now it is a JSON error document on stdout, of kind `usage`, exit 2;
/// `--help` and `--version` still print their text. Asserted.
#[test]
fn json_flag_gives_a_json_document_for_bad_usage_too() {
    if role().is_some() {
        return;
    }
    for args in [
        vec!["--json", "dump", "only-one-argument"],
        vec!["--json", "frobnicate"],
        vec!["ls", "--json", "--no-such-flag"],
        vec!["--json", "check", "--wait", "soon", "x"],
    ] {
        let o = shmstore(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", show(&o));
        let doc: Json = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", show(&o)));
        assert_eq!(doc["schema"], 1, "{doc}");
        assert_eq!(doc["command"], "error", "{doc}");
        assert_eq!(doc["error"]["kind"], "usage", "{doc}");
        assert!(!doc["error"]["message"].as_str().unwrap().is_empty());
    }
    let help = shmstore(&["--json", "--help"]);
    assert_eq!(help.status.code(), Some(0), "{}", show(&help));
    assert!(String::from_utf8_lossy(&help.stdout).contains("Usage"));
    // Without --json, clap's text and exit 2 as before.
    let o = shmstore(&["dump", "only-one-argument"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty(), "{}", show(&o));
}

// ---------------------------------------------------------------------------
// Finding 10 (review: F7): what `ls` copied was sized by an unchecked
// header word

const LS_MEMORY: &str = "ls_copies_a_few_pages_of_a_store_whatever_its_process_table_word_says";

/// Before: the summary copy's extent came from the raw process-table word
/// (offset 168); a damaged word near the end of the committed bytes made
/// `ls` copy the whole store (~256 MiB resident here).
///
/// Now the summary copy never exceeds `inspect::SUMMARY_MAX_BYTES` (the
/// header, journal and process table of a healthy store, and a page).
/// Asserted: `ls`'s peak resident memory with the damaged word stays
/// within 16 MiB of a healthy run, and the store is reported damaged, its
/// process table beyond what was read.
#[test]
fn ls_copies_a_few_pages_of_a_store_whatever_its_process_table_word_says() {
    if let Some((role, _)) = role() {
        match role.as_str() {
            "private-shm" => {}
            "measure" => {
                // Run `ls` and report its peak resident memory.
                let o = Command::new(BIN).args(["--json", "ls"]).output().unwrap();
                assert!(o.status.success());
                // SAFETY: `rusage` is plain integers, for which all zeros is
                // a valid value.
                let mut ru: libc::rusage = unsafe { core::mem::zeroed() };
                // SAFETY: getrusage writes into the struct it is given, a
                // valid, exclusive `&mut` for the call's duration.
                let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
                assert_eq!(rc, 0);
                println!("MAXRSS_KIB {}", ru.ru_maxrss);
                let _ = std::io::stdout().flush();
                return;
            }
            other => panic!("role {other}"),
        }
    } else {
        in_private_shm(LS_MEMORY);
        return;
    }
    let measure = || -> u64 {
        let done = Child::spawn(role_command(LS_MEMORY, "measure", "")).wait_success();
        let line = done
            .stdout
            .lines()
            .find_map(|l| l.split("MAXRSS_KIB ").nth(1))
            .unwrap()
            .trim()
            .to_string();
        line.parse().unwrap()
    };
    let name = unique_name("big");
    let store = Store::create(&name, 512 << 20).unwrap();
    store
        .insert_slice("blob", &vec![0xabu8; 256 << 20])
        .unwrap();
    let committed = store.stats().unwrap().committed;
    drop(store);
    let healthy = measure();
    // The process-table word now claims a table ending near the end of
    // what is committed (slots stay 128).
    write_at(
        &format!("/dev/shm/{name}"),
        168,
        &(committed - 128 * 64 - 4096).to_le_bytes(),
    );
    let damaged = measure();
    eprintln!("ls peak RSS: healthy {healthy} KiB, damaged word {damaged} KiB");
    let s = listed(&name).unwrap();
    assert_eq!(s["status"], "damaged", "{s}");
    assert!(
        s["store"]["problems"].to_string().contains("process table"),
        "{s}"
    );
    assert!(
        damaged < healthy + 16 * 1024,
        "one damaged header word made `ls` use {damaged} KiB instead of {healthy} KiB \
         (it copied the store's {committed} committed bytes)"
    );
    println!("SCENARIO DONE");
}

// ---------------------------------------------------------------------------
// Finding 1 (review: F1b): gc --idle (and rm) and a process that opened
// the store after gc looked

const GC_IDLE_RACE: &str = "gc_idle_never_removes_a_store_a_process_opened_after_gc_looked";

/// Whether process `pid` maps `path` (a store's user maps it whole).
fn maps_path(pid: u32, path: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/maps")).is_ok_and(|m| m.contains(path))
}

/// Before: `gc --idle` (and `rm`) took no lock and set no mark: a process
/// that opened the store between gc's last look and its `shm_unlink`
/// joined a store whose name then disappeared; its writes were lost to
/// everyone else.
///
/// Now the remover holds the store's header lock from its judgement to
/// its unlink, and marks the store removed first. The test holds the
/// remover's unlink back 10 s (`strace`) and starts a process that opens
/// the store then: it maps the segment (the name is still there), waits
/// for the header lock to join, finds the mark, and its open is
/// `NotFound` — it never uses a store whose name is gone. Asserted for
/// `gc --idle` and for `rm`: the remover reports the store removed, the
/// opener got `NotFound` after mapping the segment, and the name is gone.
/// And the other order: a process that opened the store first keeps it
/// (`gc --idle` reports it in use), and what it writes is seen by the next
/// opener.
#[test]
fn gc_idle_never_removes_a_store_a_process_opened_after_gc_looked() {
    if let Some((role, name)) = role() {
        match role.as_str() {
            "private-shm" => {}
            "user" => {
                match Store::open(&name) {
                    Ok(store) => {
                        store.insert("written-by-the-user", 1u64).unwrap();
                        println!("RESULT opened {}", std::process::id());
                        loop {
                            std::thread::park();
                        }
                    }
                    Err(shmstore::Error::NotFound { .. }) => println!("RESULT not-found"),
                    Err(e) => println!("RESULT error {e}"),
                }
                return;
            }
            other => panic!("role {other}"),
        }
    } else {
        if strace().is_none() {
            return;
        }
        in_private_shm(GC_IDLE_RACE);
        return;
    }
    let strace = strace().unwrap();
    for (i, remover) in [vec!["gc", "--idle"], vec!["rm"]].into_iter().enumerate() {
        let name = unique_name(&format!("idle-race-{i}"));
        let path = format!("/dev/shm/{name}");
        let store = Store::create(&name, 1 << 20).unwrap();
        store.insert("data", 5u64).unwrap();
        drop(store);
        assert_eq!(listed(&name).unwrap()["status"], "idle");
        let mut cmd = Command::new(&strace);
        cmd.args([
            "-f",
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            "trace=unlink,unlinkat",
            "-e",
            "inject=unlink,unlinkat:delay_enter=10000000",
            BIN,
            "--json",
        ])
        .args(&remover);
        if remover[0] == "rm" {
            cmd.arg(&name);
        }
        let gc = Child::spawn(cmd);
        wait_in_unlink(gc.pid());
        let mut user = Child::spawn(role_command(GC_IDLE_RACE, "user", &name));
        // The user maps the segment while the remover sits in its unlink:
        // a watcher looks at its maps until it has said what it got.
        let said = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watcher = {
            let (said, pid, path) = (said.clone(), user.pid(), path.clone());
            std::thread::spawn(move || {
                let mut mapped = false;
                while !said.load(std::sync::atomic::Ordering::Relaxed) {
                    mapped |= maps_path(pid, &path);
                    std::thread::sleep(Duration::from_millis(1));
                }
                mapped
            })
        };
        let result = user.wait_for_line(PATIENCE, |l| l.contains("RESULT "));
        said.store(true, std::sync::atomic::Ordering::Relaxed);
        let mapped = watcher.join().unwrap();
        assert!(
            result.contains("RESULT not-found"),
            "{remover:?}: a process that opened the store while it was being removed must \
             find it gone: {result}"
        );
        assert!(
            mapped,
            "{remover:?}: the user had the segment mapped before it was unlinked"
        );
        let done = gc.wait();
        assert!(done.status.success(), "{remover:?}: {done}");
        let doc: Json = serde_json::from_str(&done.stdout).unwrap();
        let removed = if remover[0] == "rm" {
            doc["removed"][0].clone()
        } else {
            doc["removed"][0]["name"].clone()
        };
        assert_eq!(removed, format!("/{name}"), "{remover:?}: {doc}");
        assert!(!std::path::Path::new(&path).exists());
        assert!(matches!(
            Store::open(&name),
            Err(shmstore::Error::NotFound { .. })
        ));
    }

    // The other order: the user first, then gc --idle.
    let name = unique_name("idle-first");
    drop(Store::create(&name, 1 << 20).unwrap());
    let mut user = Child::spawn(role_command(GC_IDLE_RACE, "user", &name));
    let said = user.wait_for_line(PATIENCE, |l| l.contains("RESULT "));
    assert!(said.contains("RESULT opened"), "{said}");
    let gc = json(&["gc", "--idle"], 0);
    assert!(gc["removed"].as_array().unwrap().is_empty(), "{gc}");
    assert_eq!(gc["kept"][0]["status"], "in-use", "{gc}");
    let later = Store::open(&name).unwrap();
    assert!(later.contains("written-by-the-user").unwrap());
    drop(user);
    println!("SCENARIO DONE");
}

// ---------------------------------------------------------------------------
// Finding 5 (review: F8): plain `gc` deleted a persistent store whose data
// was intact

const GC_DAMAGED: &str = "gc_without_idle_keeps_a_persistent_store_whose_objects_still_read";

/// Before: one flipped bit in the lifecycle flags word (offset 2672), or
/// in the top check word, made `judge` call the store abandoned ("not a
/// readable store"), and plain `gc` deleted it with its objects, although
/// `dump` read them a moment before.
///
/// Now such a store is *damaged*: never removed by `gc` or `gc --idle`,
/// refused by `rm` without `--force`; `rm --force` removes it (a person
/// has decided). Asserted for a flipped flags bit (the object still
/// reads) and a damaged top check word: the status, `gc` and `gc --idle`
/// keep it (and say why), `rm` refuses it, and `rm --force` removes it.
#[test]
fn gc_without_idle_keeps_a_persistent_store_whose_objects_still_read() {
    if !is_private_shm() {
        in_private_shm(GC_DAMAGED);
        return;
    }
    for (off, what) in [(2672u64, "lifecycle"), (2664, "top")] {
        let name = unique_name("damaged");
        let store = Store::create(&name, 1 << 20).unwrap();
        store.insert("precious", 41u64).unwrap();
        drop(store);
        // One bit of the word's high half.
        let path = format!("/dev/shm/{name}");
        let mut word = [0u8; 8];
        std::fs::File::open(&path)
            .unwrap()
            .read_exact_at(&mut word, off)
            .unwrap();
        word[7] ^= 0x01;
        write_at(&path, off, &word);
        if what == "lifecycle" {
            let value = json(&["dump", &name, "precious"], 0);
            assert_eq!(value["value"], 41, "the data still reads: {value}");
        }
        let s = listed(&name).unwrap();
        assert_eq!(s["status"], "damaged", "{what}: {s}");
        assert!(s["store"]["problems"].to_string().contains(what), "{s}");
        for args in [vec!["gc"], vec!["gc", "--idle"]] {
            let gc = json(&args, 0);
            assert!(
                std::path::Path::new(&path).exists(),
                "{what}: {args:?} deleted a persistent store whose object `dump` had just read \
                 (41): {gc}"
            );
            assert_eq!(gc["kept"][0]["status"], "damaged", "{what} {args:?}: {gc}");
            assert!(gc["removed"].as_array().unwrap().is_empty(), "{gc}");
        }
        let text = String::from_utf8(shmstore(&["gc"]).stdout).unwrap();
        assert!(text.contains(&format!("kept {name} (damaged")), "{text}");
        let rm = json(&["rm", &name], 1);
        assert_eq!(rm["refused"][0]["status"], "damaged", "{what}: {rm}");
        assert!(std::path::Path::new(&path).exists());
        let rm = json(&["rm", "--force", &name], 0);
        assert_eq!(rm["removed"][0], format!("/{name}"), "{what}: {rm}");
        assert!(!std::path::Path::new(&path).exists());
    }
    println!("SCENARIO DONE");
}

// ---------------------------------------------------------------------------
// Finding 7 (review: F9): `check --repair --wait` did not bound the repair

const REPAIR_WAIT: &str =
    "check_repair_gives_up_after_wait_even_if_the_lock_is_taken_after_it_looked";

/// Whether every thread of `pid` is traced (by `strace -f -p`).
fn all_threads_traced(pid: u32) -> bool {
    let tasks: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .collect();
    !tasks.is_empty()
        && tasks.iter().all(|t| {
            std::fs::read_to_string(t.path().join("status"))
                .unwrap_or_default()
                .lines()
                .any(|l| l.starts_with("TracerPid:") && l.split_whitespace().nth(1) != Some("0"))
        })
}

/// Before: `run_repair` watched the lock word only *before* opening; the
/// open (`join` → an untimed `pthread_mutex_lock`) and `collect` waited
/// without bound: a holder that took the lock just after the look and
/// stalled kept `check --repair --wait 1` waiting ~28 s.
///
/// Now the repair opens the store with `StoreOptions::lock_timeout(wait)`
/// (and `open_timeout(wait)`): every take of the header lock, by the open,
/// `collect` and the last goodbye, waits at most `--wait`, and a timeout
/// is `Error::TimedOut` (exit 2, "not repairing"). `strace` delays the
/// repair's read-write open (placing the look before the holder comes)
/// and the holder's `fallocate` under the header lock (making it stall
/// 30 s). Asserted: the repair ends within 8 s, with exit 2 and a
/// `timed-out` error that says it did not repair.
#[test]
fn check_repair_gives_up_after_wait_even_if_the_lock_is_taken_after_it_looked() {
    if let Some((role, name)) = role() {
        match role.as_str() {
            "private-shm" => {}
            "holder" => {
                let store = Store::open(&name).unwrap();
                println!("READY {}", std::process::id());
                let go = format!("/dev/shm/{name}.go");
                while !std::path::Path::new(&go).exists() {
                    std::thread::sleep(Duration::from_millis(2));
                }
                // Grows the heap: `fallocate` under the header lock.
                store.insert_slice("big", &vec![1u8; 2 << 20]).unwrap();
                println!("INSERTED");
                return;
            }
            other => panic!("role {other}"),
        }
    } else {
        if strace().is_none() {
            return;
        }
        in_private_shm(REPAIR_WAIT);
        return;
    }
    let strace = strace().unwrap();
    let name = unique_name("repair-wait");
    let path = format!("/dev/shm/{name}");
    let store = Store::create(&name, 16 << 20).unwrap();
    store.insert("n", 1u64).unwrap();
    drop(store);
    let mut holder = Child::spawn(role_command(REPAIR_WAIT, "holder", &name));
    let ready = holder.wait_for_line(PATIENCE, |l| l.contains("READY "));
    let holder_pid: u32 = ready
        .split("READY ")
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Make its next fallocate stall for 30 s.
    let mut tracer = Command::new(&strace);
    tracer.args([
        "-f",
        "-qq",
        "-o",
        "/dev/null",
        "-e",
        "trace=fallocate",
        "-e",
        "inject=fallocate:delay_enter=30000000",
        "-p",
        &holder_pid.to_string(),
    ]);
    let _tracer = Child::spawn(tracer);
    let deadline = Instant::now() + PATIENCE;
    while !all_threads_traced(holder_pid) {
        assert!(Instant::now() < deadline, "strace never attached");
        std::thread::sleep(Duration::from_millis(2));
    }
    // The repair: its read-write open of the store (its 2nd open of the
    // path) held back 2 s, after its look at the lock.
    let mut cmd = Command::new(&strace);
    cmd.args([
        "-f",
        "-qq",
        "-o",
        "/dev/null",
        "-P",
        &path,
        "-e",
        "trace=openat",
        "-e",
        "inject=openat:delay_enter=2000000:when=2",
        BIN,
        "--json",
        "check",
        "--repair",
        "--wait",
        "1",
        &name,
    ]);
    let repair = Child::spawn(cmd);
    // Wait until the repair sits in its delayed openat (257).
    let deadline = Instant::now() + PATIENCE;
    while !children_of(repair.pid())
        .into_iter()
        .any(|pid| in_open_of(pid, &path) == Some(libc::O_RDWR as u64))
    {
        assert!(
            Instant::now() < deadline,
            "the repair never opened the store read-write"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    // Now the holder takes the header lock and stalls with it.
    std::fs::write(format!("{path}.go"), b"").unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let s = listed(&name).unwrap();
        if s["store"]["header_lock"]["state"] == "held" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the holder never held the lock: {s}"
        );
    }
    let started = Instant::now();
    let done = repair.wait();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "`check --repair --wait 1` took {took:?} (the header lock was taken after its look, by \
         a holder that stalled 30 s); exit {:?}\n{}",
        done.status.code(),
        done.stdout
    );
    assert_eq!(done.status.code(), Some(2), "{done}");
    let doc: Json = serde_json::from_str(&done.stdout).unwrap_or_else(|e| panic!("{e}: {done}"));
    assert_eq!(doc["error"]["kind"], "timed-out", "{doc}");
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not repairing"),
        "{doc}"
    );
    drop(holder);
    println!("SCENARIO DONE");
}

// ---------------------------------------------------------------------------
/// Whether this process runs in the initial pid namespace and may read
/// every process's `/proc/PID/maps` (what `mappers_complete` says).
fn sees_every_process() -> bool {
    let initial = std::fs::read_link("/proc/self/ns/pid")
        .is_ok_and(|l| l.to_string_lossy() == "pid:[4026531836]");
    initial
        && std::fs::read_dir("/proc").unwrap().flatten().all(|e| {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                return true;
            };
            match std::fs::read_to_string(format!("/proc/{pid}/maps")) {
                Ok(_) => true,
                // Gone meanwhile.
                Err(e) => {
                    !std::path::Path::new(&format!("/proc/{pid}")).exists()
                        || e.raw_os_error() == Some(libc::ESRCH)
                }
            }
        })
}

// Finding 6 (review: F10): a store being created, seen from another pid
// namespace, was "abandoned"

const PIDNS: &str = "gc_in_another_pid_namespace_never_removes_a_store_being_created";

/// Before: the header recorded the creator's pid and start time but not
/// its pid namespace, and `probe` judged it in *this* namespace: from a
/// new pid namespace sharing `/dev/shm` the creator "died", the store was
/// "half-created", and plain `gc` removed it while its creator was still
/// writing it. Likewise a store of another format, kept only by processes
/// seen mapping it, was idle to a `gc --idle` that could not see them.
///
/// Now the creator's pid namespace is recorded (header offset 284, format
/// version 5): a creator of another namespace is of unknown liveness,
/// counted as alive ("creating"). And `Mappers` says whether it saw every
/// process (initial pid namespace, every process's maps readable): a store
/// of another format that no *seen* process maps is "unknown", not idle,
/// when it did not. `strace` stalls the creator in its second `fallocate`,
/// after the header says "creating". Asserted: from another pid namespace
/// `gc` keeps the store, reporting it as being created; a store of another
/// format is kept as unknown by `gc --idle` from another pid namespace and
/// is unknown to a user who cannot read every process's maps, and (from the
/// initial namespace, as root) it is idle and `gc --idle` removes it.
#[test]
fn gc_in_another_pid_namespace_never_removes_a_store_being_created() {
    if let Some((role, name)) = role() {
        match role.as_str() {
            "private-shm" => {}
            "creator" => {
                let _ = Store::create(&name, 1 << 20);
                return;
            }
            other => panic!("role {other}"),
        }
    } else {
        if strace().is_none() {
            return;
        }
        in_private_shm(PIDNS);
        return;
    }
    let strace = strace().unwrap();
    let unshare = find_program("unshare").unwrap();
    let name = unique_name("creating");
    let inner = role_command(PIDNS, "creator", &name);
    let mut cmd = Command::new(&strace);
    cmd.args([
        "-f",
        "-qq",
        "-o",
        "/dev/null",
        "-e",
        "trace=fallocate",
        "-e",
        "inject=fallocate:delay_enter=20000000:when=2",
    ])
    .arg(inner.get_program())
    .args(inner.get_args())
    .envs(inner.get_envs().filter_map(|(k, v)| Some((k, v?))));
    let creator = Child::spawn(cmd);
    let deadline = Instant::now() + PATIENCE;
    let here = loop {
        if let Some(s) = listed(&name) {
            if s["kind"] == "creating" {
                break s;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the store never showed as being created"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(
        here["status"], "creating",
        "from the creator's namespace: {here}"
    );

    // The same /dev/shm, from a new pid namespace.
    let mut gc = Command::new(&unshare);
    gc.args(["-p", "-f", "--mount-proc", BIN, "--json", "gc"]);
    let o = run(gc);
    let doc: Json =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&o)));
    let exists = std::path::Path::new(&format!("/dev/shm/{name}")).exists();
    assert!(
        exists,
        "gc run in another pid namespace removed a store whose creator (run by strace, pid {}) \
         is alive and still creating it: {doc}",
        creator.pid()
    );
    let kept = doc["kept"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == format!("/{name}"))
        .unwrap_or_else(|| panic!("{doc}"))
        .clone();
    assert_eq!(kept["status"], "creating", "{kept}");
    assert!(
        kept["reason"]
            .as_str()
            .unwrap()
            .contains("another pid namespace"),
        "{kept}"
    );
    drop(creator);

    // A store of another format (its version word changed), readable by
    // everyone, which no process maps.
    let old = unique_name("incompatible");
    drop(
        Store::options()
            .capacity(1 << 20)
            .mode(0o644)
            .create(&old)
            .unwrap(),
    );
    let old_path = format!("/dev/shm/{old}");
    write_at(&old_path, 8, &4u32.to_le_bytes());
    let find = |doc: &Json, list: &str| -> Json {
        doc[list]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["name"] == format!("/{old}"))
            .cloned()
            .unwrap_or(Json::Null)
    };
    let mut gc = Command::new(&unshare);
    gc.args(["-p", "-f", "--mount-proc", BIN, "--json", "gc", "--idle"]);
    let o = run(gc);
    let doc: Json =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&o)));
    assert_eq!(find(&doc, "kept")["status"], "unknown", "{doc}");
    assert!(std::path::Path::new(&old_path).exists());
    if let Some(setpriv) = find_program("setpriv") {
        let mut ls = Command::new(setpriv);
        ls.args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            BIN,
        ])
        .args(["--json", "ls", "--all"]);
        let o = run(ls);
        let doc: Json =
            serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&o)));
        let s = find(&doc, "segments");
        assert_eq!(s["status"], "unknown", "as nobody: {s}");
        assert_eq!(s["mappers_complete"], false, "as nobody: {s}");
    } else {
        eprintln!("setpriv not found: the unreadable-maps case is skipped");
    }
    // From here: every process seen only if this is the initial pid
    // namespace and every process's maps can be read (some sandboxes
    // keep even root from reading their init's).
    let s = listed(&old).unwrap();
    if sees_every_process() {
        assert_eq!(s["mappers_complete"], true, "{s}");
        assert_eq!(s["status"], "idle", "{s}");
        let doc = json(&["gc", "--idle"], 0);
        assert_eq!(find(&doc, "removed")["status"], "idle", "{doc}");
        assert!(!std::path::Path::new(&old_path).exists());
    } else {
        eprintln!("this process cannot see every process: the complete view is not checked");
        assert_eq!(s["mappers_complete"], false, "{s}");
        assert_eq!(s["status"], "unknown", "{s}");
        let doc = json(&["gc", "--idle"], 0);
        assert_eq!(find(&doc, "kept")["status"], "unknown", "{doc}");
        assert!(std::path::Path::new(&old_path).exists());
    }
    println!("SCENARIO DONE");
}

// ---------------------------------------------------------------------------
// Held up: odd entries in /dev/shm (a passing test, kept as a guard)

const ODD: &str = "odd_entries_are_listed_and_gc_removes_none_of_them";

/// A directory, a symlink to a live store, a FIFO (stable, not swapped), a
/// 0-byte file, a page of zeros, names with spaces/newlines and a
/// non-UTF-8 name: `ls --all --json` parses, `gc` and `gc --idle` remove
/// none of them, `rm` without --force refuses the odd ones, nothing hangs.
#[test]
fn odd_entries_are_listed_and_gc_removes_none_of_them() {
    if !is_private_shm() {
        in_private_shm(ODD);
        return;
    }
    use std::os::unix::ffi::OsStrExt;
    let d = "/dev/shm";
    let store = Store::create("real", 1 << 20).unwrap();
    store.insert("n", 1u64).unwrap();
    std::fs::create_dir(format!("{d}/a-dir")).unwrap();
    std::os::unix::fs::symlink(format!("{d}/real"), format!("{d}/a-link")).unwrap();
    let fifo = std::ffi::CString::new(format!("{d}/a-fifo")).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    std::fs::write(format!("{d}/empty"), b"").unwrap();
    std::fs::write(format!("{d}/zeros"), [0u8; 4096]).unwrap();
    std::fs::write(format!("{d}/with space\nand newline"), b"x").unwrap();
    let raw = std::ffi::OsStr::from_bytes(b"/dev/shm/bad-\xff-utf8");
    std::fs::write(raw, b"x").unwrap();
    let all = json(&["ls", "--all"], 0);
    assert!(all["segments"].as_array().unwrap().len() >= 7, "{all}");
    let before: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    json(&["gc"], 0);
    json(&["gc", "--idle"], 0); // "real" is in use by this process
    let after: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        before.len(),
        after.len(),
        "gc removed something: {before:?} -> {after:?}"
    );
    for odd in ["a-dir", "a-link", "a-fifo", "zeros"] {
        let o = shmstore(&["rm", odd]);
        assert_eq!(o.status.code(), Some(1), "{odd}: {}", show(&o));
    }
    drop(store);
    println!("SCENARIO DONE");
}
