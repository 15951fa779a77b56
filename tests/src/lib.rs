//! Helpers shared by the cross-process tests.
//!
//! - [`unique_name`]: a store name no other test (or test run) uses.
//! - [`StoreGuard`]: unlinks a store when dropped, even if the test panics.
//! - [`role`] / [`spawn_role`] / [`role_command`]: re-execute the current
//!   test binary as a child that runs one test in a given role. The test
//!   function checks [`role`] first and runs its child part if it is set.
//! - [`Child`]: a spawned process with a bounded wait, its output captured,
//!   killed if dropped while still running.
//! - [`wait_until`] and [`barrier`]: bounded polling, the only way tests
//!   wait for one another (never a fixed sleep).

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shmstore::{Error, Store};

/// Environment variable naming the role a re-executed test binary plays.
pub const ROLE_VAR: &str = "SHMSTORE_TEST_ROLE";
/// Environment variable naming the store a child works on.
pub const STORE_VAR: &str = "SHMSTORE_TEST_STORE";
/// Environment variable with a free-form argument for a child.
pub const ARG_VAR: &str = "SHMSTORE_TEST_ARG";

/// How long any wait for another process may take before the test fails.
/// Generous: the machine may be busy with other builds and tests.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A store name unique to this process, test and call:
/// `shmstore-it-<pid>-<tag>-<n>`.
pub fn unique_name(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("shmstore-it-{}-{tag}-{n}", std::process::id())
}

/// Unlinks the named store when dropped (also during a panic). A store that
/// was never created, or was already unlinked, is fine.
#[derive(Debug)]
pub struct StoreGuard {
    name: String,
}

impl StoreGuard {
    /// Guards `name` (which may not exist yet).
    pub fn new(name: impl Into<String>) -> StoreGuard {
        StoreGuard { name: name.into() }
    }

    /// A guard for a fresh [`unique_name`].
    pub fn unique(tag: &str) -> StoreGuard {
        StoreGuard::new(unique_name(tag))
    }

    /// The guarded name (without a leading slash).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The segment's path under `/dev/shm`.
    pub fn path(&self) -> String {
        format!("/dev/shm/{}", self.name.trim_start_matches('/'))
    }
}

impl Drop for StoreGuard {
    fn drop(&mut self) {
        match Store::unlink(&self.name) {
            Ok(()) | Err(Error::NotFound { .. }) => {}
            Err(e) => eprintln!("could not unlink store {:?}: {e}", self.name),
        }
    }
}

/// The role this process plays, if it was started by [`spawn_role`]:
/// `(role, store name)`.
pub fn role() -> Option<(String, String)> {
    let role = std::env::var(ROLE_VAR).ok()?;
    let store = std::env::var(STORE_VAR).unwrap_or_default();
    Some((role, store))
}

/// The free-form argument passed to a child with [`role_command_with_arg`].
pub fn role_arg() -> String {
    std::env::var(ARG_VAR).unwrap_or_default()
}

/// The arguments that make the test harness run exactly one test, with its
/// output shown and on one thread.
pub fn test_args(test: &str) -> Vec<String> {
    vec![
        "--exact".into(),
        test.into(),
        "--nocapture".into(),
        "--test-threads=1".into(),
    ]
}

/// A command that re-executes the current test binary to run only `test`,
/// in `role`, on `store`. Spawn it with [`Child::spawn`], or wrap it (for
/// example in `setpriv` or `unshare`) first.
pub fn role_command(test: &str, role: &str, store: &str) -> Command {
    role_command_with_arg(test, role, store, "")
}

/// [`role_command`] with an extra argument (read with [`role_arg`]).
pub fn role_command_with_arg(test: &str, role: &str, store: &str, arg: &str) -> Command {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut cmd = Command::new(exe);
    cmd.args(test_args(test))
        .env(ROLE_VAR, role)
        .env(STORE_VAR, store)
        .env(ARG_VAR, arg)
        .env("RUST_BACKTRACE", "1");
    cmd
}

/// Re-executes the current test binary as a child running `test` in `role`.
pub fn spawn_role(test: &str, role: &str, store: &str) -> Child {
    Child::spawn(role_command(test, role, store))
}

/// [`spawn_role`] with an extra argument.
pub fn spawn_role_with_arg(test: &str, role: &str, store: &str, arg: &str) -> Child {
    Child::spawn(role_command_with_arg(test, role, store, arg))
}

/// What a finished child printed, and how it ended.
#[derive(Debug)]
pub struct Finished {
    /// The exit status.
    pub status: ExitStatus,
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
}

impl Finished {
    /// The values of every stdout line `REPORT <key> <value>`, in order.
    pub fn reports(&self, key: &str) -> Vec<String> {
        reports_in(&self.stdout, key)
    }

    /// The one `REPORT <key> <value>` line's value; panics unless there is
    /// exactly one.
    pub fn report(&self, key: &str) -> String {
        let all = self.reports(key);
        assert_eq!(
            all.len(),
            1,
            "expected one REPORT {key} line from the child\n{self}"
        );
        all.into_iter().next().unwrap()
    }
}

impl std::fmt::Display for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "child {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Prints a `REPORT <key> <value>` line for the parent to read. The value
/// must fit on one line (newlines are escaped).
pub fn report(key: &str, value: impl std::fmt::Display) {
    let value = value.to_string().replace('\n', "\\n");
    println!("REPORT {key} {value}");
}

fn reports_in(stdout: &str, key: &str) -> Vec<String> {
    // The harness may have printed "test name ... " on the same line.
    let marker = format!("REPORT {key} ");
    stdout
        .lines()
        .filter_map(|l| l.find(&marker).map(|at| l[at + marker.len()..].to_string()))
        .collect()
}

/// A spawned child process: its output is collected by reader threads (so
/// it can never block on a full pipe), waits are bounded, and a child still
/// running when this is dropped is killed and reaped.
pub struct Child {
    child: std::process::Child,
    what: String,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    lines: Receiver<String>,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

fn collect(
    pipe: impl Read + Send + 'static,
    into: Arc<Mutex<String>>,
    lines: Option<mpsc::Sender<String>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    into.lock().unwrap().push_str(&line);
                    if let Some(tx) = &lines {
                        let _ = tx.send(line.trim_end().to_string());
                    }
                }
            }
        }
    })
}

impl Child {
    /// Spawns `cmd` with stdout and stderr captured and stdin closed.
    pub fn spawn(mut cmd: Command) -> Child {
        let what = format!("{cmd:?}");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {what}: {e}"));
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = mpsc::channel();
        let readers = vec![
            collect(child.stdout.take().unwrap(), stdout.clone(), Some(tx)),
            collect(child.stderr.take().unwrap(), stderr.clone(), None),
        ];
        Child {
            child,
            what,
            stdout,
            stderr,
            lines,
            readers,
            status: None,
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `SIGKILL`.
    pub fn kill9(&mut self) {
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our
        // own unreaped child, so it cannot have been reused.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGKILL) };
        assert_eq!(rc, 0, "kill failed: {}", std::io::Error::last_os_error());
    }

    /// Waits (up to `timeout`) for a stdout line satisfying `pred` and
    /// returns it. Panics with the child's output if the child exits first
    /// or the time runs out.
    pub fn wait_for_line(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if pred(&line) => return line,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    self.fail(&format!("no expected line within {timeout:?}"))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.fail("child closed its stdout before printing the expected line")
                }
            }
        }
    }

    /// Waits up to `timeout` for the child to exit; kills it and panics
    /// (with its output) if it does not.
    pub fn wait_timeout(mut self, timeout: Duration) -> Finished {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    self.fail(&format!("child did not exit within {timeout:?}"))
                }
                Ok(None) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                Err(e) => panic!("waiting for {}: {e}", self.what),
            }
        };
        self.status = Some(status);
        self.finished(status)
    }

    /// Waits (bounded by [`PATIENCE`]) for the child to exit.
    pub fn wait(self) -> Finished {
        self.wait_timeout(PATIENCE)
    }

    /// Waits for the child and panics with its output unless it exited
    /// successfully.
    pub fn wait_success(self) -> Finished {
        let done = self.wait();
        assert!(done.status.success(), "child failed\n{done}");
        done
    }

    /// Waits (bounded by [`PATIENCE`] in all) for every child, and panics
    /// with all their outputs unless every one exited successfully. Children
    /// still running at the deadline are killed first, so the output of a
    /// hung child sits beside that of the ones it waited for.
    pub fn wait_all_success(mut children: Vec<Child>) -> Vec<Finished> {
        let deadline = Instant::now() + PATIENCE;
        let mut statuses: Vec<Option<ExitStatus>> = vec![None; children.len()];
        while statuses.iter().any(Option::is_none) && Instant::now() < deadline {
            for (child, status) in children.iter_mut().zip(statuses.iter_mut()) {
                if status.is_none() {
                    *status = child.child.try_wait().expect("try_wait");
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut timed_out = false;
        let done: Vec<Finished> = children
            .iter_mut()
            .zip(statuses)
            .map(|(child, status)| {
                let status = status.unwrap_or_else(|| {
                    timed_out = true;
                    let _ = child.child.kill();
                    child.child.wait().expect("reaping a killed child")
                });
                child.status = Some(status);
                child.finished(status)
            })
            .collect();
        if timed_out || done.iter().any(|d| !d.status.success()) {
            let all: Vec<String> = done.iter().map(|d| d.to_string()).collect();
            panic!(
                "{} (of {}):\n{}",
                if timed_out {
                    "children did not all exit within the deadline"
                } else {
                    "a child failed"
                },
                done.len(),
                all.join("\n========\n")
            );
        }
        done
    }

    fn finished(&mut self, status: ExitStatus) -> Finished {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        Finished {
            status,
            stdout: self.stdout.lock().unwrap().clone(),
            stderr: self.stderr.lock().unwrap().clone(),
        }
    }

    fn fail(&mut self, why: &str) -> ! {
        let _ = self.child.kill();
        let status = self.child.wait().expect("reaping a killed child");
        self.status = Some(status);
        let done = self.finished(status);
        panic!("{why}: {}\n{done}", self.what);
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `cond` until it holds; panics with `what` after `timeout`.
/// Spins briefly, then yields, then sleeps a little between polls.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    let mut polls = 0u32;
    while !cond() {
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting until {what}");
        }
        polls = polls.saturating_add(1);
        if polls < 100 {
            std::hint::spin_loop();
        } else if polls < 1000 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

/// A cross-process barrier in `store`: the counter `name` (an `AtomicU32`,
/// created at 0 by whoever comes first) is incremented, then everyone waits
/// until `n` parties have arrived.
pub fn barrier(store: &Store, name: &str, n: u32) {
    let count = store
        .get_or_insert_with(name, || AtomicU32::new(0))
        .expect("barrier counter");
    count.fetch_add(1, Ordering::AcqRel);
    wait_until(
        &format!("{n} parties reach barrier {name}"),
        PATIENCE,
        || count.load(Ordering::Acquire) >= n,
    );
}

/// Segments in `/dev/shm` whose names start with `prefix`.
pub fn segments_with_prefix(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// `true` when running as root (uid 0).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The full path of `program` if it is found on `PATH`.
pub fn find_program(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}
