//! Regression tests for review 10's findings against the store lifecycle
//! (`remove_when_unused`): each test names the finding it guards, what
//! went wrong before, and asserts the fixed behaviour.
//!
//! The tests run inside a mount namespace with a private tmpfs over
//! `/dev/shm` (root + `unshare`), and use `strace` to hold one system call
//! back; they print why they skip when they cannot.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shmstore::Store;

const ROLE: &str = "LIFECYCLE_REGRESSION_ROLE";
const NAME: &str = "LIFECYCLE_REGRESSION_NAME";
const PATIENCE: Duration = Duration::from_secs(60);

fn role() -> Option<String> {
    std::env::var(ROLE).ok()
}

fn find_program(p: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(p))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}

/// This test binary, re-run for `test` in `role` on store `name`.
fn me(test: &str, role: &str, name: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(NAME, name)
        .stdin(Stdio::null());
    cmd
}

/// Runs `test` again inside a private `/dev/shm`; asserts it passed there.
fn in_private_shm(test: &str) {
    let (Some(unshare), true) = (find_program("unshare"), is_root()) else {
        eprintln!("needs root and unshare; skipped");
        return;
    };
    let inner = me(test, "private-shm", "");
    let mut cmd = Command::new(unshare);
    cmd.args(["-m", "--propagation", "private", "--", "sh", "-c"])
        .arg("mount -t tmpfs -o size=64m lifecycle-regressions /dev/shm && exec \"$0\" \"$@\"")
        .arg(inner.get_program())
        .args(inner.get_args())
        .env(ROLE, "private-shm")
        .stdin(Stdio::null());
    let out = output_within(cmd, Duration::from_secs(300));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("SCENARIO DONE"),
        "the scenario failed inside the private /dev/shm: {:?}\n--- stdout\n{stdout}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn output_within(mut cmd: Command, limit: Duration) -> std::process::Output {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(cmd.output().unwrap());
    });
    rx.recv_timeout(limit)
        .expect("the command did not finish in time")
}

/// A spawned child whose stdout lines we wait for; killed on drop.
struct Kid {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Kid {
    fn spawn(mut cmd: Command) -> Kid {
        let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        Kid { child, lines }
    }

    fn wait_for(&mut self, marker: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let l = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {marker} line from the child"));
            if let Some(at) = l.find(marker) {
                return l[at + marker.len()..].trim().to_string();
            }
        }
    }

    fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "the child did not exit");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until a child of `tracer` is stopped entering `unlink` (87) or
/// `unlinkat` (263) — x86_64 numbers.
fn wait_in_unlink(tracer: u32) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let rest = &stat[stat.rfind(')').unwrap() + 2..];
            if rest.split(' ').nth(1) != Some(&tracer.to_string()) {
                continue;
            }
            // Any of its threads (the test harness may run the test on one).
            for t in std::fs::read_dir(format!("/proc/{pid}/task"))
                .into_iter()
                .flatten()
                .flatten()
            {
                let sys = std::fs::read_to_string(t.path().join("syscall")).unwrap_or_default();
                if matches!(sys.split(' ').next(), Some("87" | "263")) {
                    return;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "the traced process never unlinked"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn inode(name: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/dev/shm/{name}"))
        .ok()
        .map(|m| m.ino())
}

const LAST_USER: &str =
    "the_last_user_of_a_store_removed_when_unused_never_unlinks_a_new_store_of_that_name";

/// Finding 2. Before: `Inner::remove_if_unused` marked the store removed
/// under the header lock, released the lock, then `unlink_if_same`
/// compared the name's inode with its own and unlinked *by name*. In
/// between, an opener that saw the mark unlinked the old name itself and
/// `open_or_create` made a new store under it; the last user's pending
/// unlink then removed the new store, alive and in use.
///
/// Now the last user unlinks while it still holds the header lock (after
/// committing the mark), and openers act on the mark only under the lock:
/// the newcomer, arriving while the last user sits in its unlink (held back
/// 3 s by `strace`), waits for the lock, sees the mark, and makes its new
/// store once the name is free. Asserted: the newcomer got a new, empty
/// store; after the last user is gone the name still names the newcomer's
/// store (same inode), and a third process sees the newcomer's object.
#[test]
fn the_last_user_of_a_store_removed_when_unused_never_unlinks_a_new_store_of_that_name() {
    let opts = || Store::options().capacity(1 << 20).remove_when_unused(true);
    match role().as_deref() {
        None => {
            if !cfg!(target_arch = "x86_64") || find_program("strace").is_none() {
                eprintln!("needs strace on x86_64; skipped");
                return;
            }
            return in_private_shm(LAST_USER);
        }
        Some("last-user") => {
            // Use the store, then leave it as its last user once told.
            let name = std::env::var(NAME).unwrap();
            let store = opts().open_or_create(&name).unwrap();
            store.insert("old", 1u64).unwrap();
            println!("READY");
            let go = format!("/dev/shm/{name}.go");
            while !std::path::Path::new(&go).exists() {
                std::thread::sleep(Duration::from_millis(2));
            }
            drop(store);
            println!("LEFT");
            return;
        }
        Some("newcomer") => {
            let name = std::env::var(NAME).unwrap();
            let store = opts().open_or_create(&name).unwrap();
            let fresh = !store.contains("old").unwrap();
            store.insert("mine", 2u64).unwrap();
            println!("READY {fresh} {}", inode(&name).unwrap());
            loop {
                std::thread::park();
            }
        }
        Some("private-shm") => {}
        Some(other) => panic!("role {other}"),
    }
    let name = format!("lifecycle-last-{}", std::process::id());
    let strace = find_program("strace").unwrap();
    let inner = me(LAST_USER, "last-user", &name);
    let mut cmd = Command::new(strace);
    cmd.args([
        "-f",
        "-qq",
        "-o",
        "/dev/null",
        "-e",
        "trace=unlink,unlinkat",
        "-e",
        "inject=unlink,unlinkat:delay_enter=3000000",
    ])
    .arg(inner.get_program())
    .args(inner.get_args())
    .env(ROLE, "last-user")
    .env(NAME, &name);
    let mut last = Kid::spawn(cmd);
    last.wait_for("READY");
    std::fs::write(format!("/dev/shm/{name}.go"), b"").unwrap();
    // The last user is now between its stat and its unlink.
    wait_in_unlink(last.child.id());

    let mut newcomer = Kid::spawn(me(LAST_USER, "newcomer", &name));
    let said = newcomer.wait_for("READY ");
    let (fresh, ino) = said.split_once(' ').unwrap();
    assert_eq!(fresh, "true", "the newcomer got a new store");
    let ino: u64 = ino.parse().unwrap();

    last.wait_for("LEFT");
    assert!(last.wait().success());
    // The newcomer is alive and uses its store: its name must still be
    // there, and a third process must see what the newcomer inserted.
    let now = inode(&name);
    let third = opts().open_or_create(&name).unwrap();
    let shared = third.contains("mine").unwrap();
    assert!(
        now == Some(ino) && shared,
        "the last user of the old store unlinked the newcomer's new store (inode {ino}; the \
         name now: {now:?}); a third process opening the name sees the newcomer's object: \
         {shared}"
    );
    println!("SCENARIO DONE");
}
