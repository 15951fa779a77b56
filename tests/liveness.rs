//! A process whose liveness cannot be determined counts as alive: a reaper
//! that cannot read `/proc/<pid>/stat` (out of file descriptors, or `/proc`
//! mounted with `hidepid`) releases nothing a live process holds, nor does
//! any reaper release a live process that could not read its own start
//! time when it attached; and that process's handle keeps reading its own
//! bytes.
//!
//! In each test a live child (the *holder*) pins a slice that the parent
//! then removes, so only the holder's pin keeps the slice's memory from
//! reuse. A reaping call that cannot tell whether the holder is the
//! process it recorded runs; afterwards the slice must still be allocated,
//! and, once the parent has filled the store with other data, the holder
//! must still read its values intact.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use shmstore::Store;
use shmstore_tests::{
    find_program, is_root, report, role, role_arg, role_command_with_arg, spawn_role, test_args,
    wait_until, Child, StoreGuard, PATIENCE,
};

const LEN: usize = 16 << 10;

/// The fd test lowers this process's `RLIMIT_NOFILE`, which would make any
/// test running beside it fail to spawn or open: the tests of this file run
/// one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn value(i: usize) -> u64 {
    (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1
}

fn intact(data: &[u64]) -> bool {
    data.len() == LEN && data.iter().enumerate().all(|(i, &v)| v == value(i))
}

/// Creates the objects both tests use: the slice the holder pins and the
/// flags parent and holder talk through.
fn populate(store: &Store) {
    let data: Vec<u64> = (0..LEN).map(value).collect();
    store.insert_slice("data", &data).unwrap();
    for flag in ["round", "seen", "done"] {
        store.insert(flag, AtomicU32::new(0)).unwrap();
    }
}

/// Child: pins the slice, says so (`REPORT pinned`), then checks the slice again
/// each time the parent raises `round` (answering in `seen`: the round, or
/// `u32::MAX` if the slice was overwritten), until the parent sets `done`.
fn holder(store: Store) {
    let data = store.get_slice::<u64>("data").unwrap();
    let flag = |f: &str| store.get::<AtomicU32>(f).unwrap();
    let (round, seen, done) = (flag("round"), flag("seen"), flag("done"));
    assert!(intact(&data));
    report("pinned", std::process::id());
    wait_until("the parent is done", PATIENCE * 2, || {
        let r = round.load(Ordering::Acquire);
        if r > seen.load(Ordering::Acquire) && seen.load(Ordering::Acquire) != u32::MAX {
            let answer = if intact(&data) { r } else { u32::MAX };
            seen.store(answer, Ordering::Release);
        }
        done.load(Ordering::Acquire) == 1
    });
}

/// Parent side: the holder pins "data", then the parent removes it.
/// Returns the store's `used` bytes with the removed slice still pinned.
fn pin_then_remove(store: &Store, holder: &mut Child) -> u64 {
    // Fails at once, with the holder's output, if the holder exits first.
    holder.wait_for_line(PATIENCE, |l| l.contains("REPORT pinned "));
    let with_slice = store.stats().unwrap().used;
    store.remove("data").unwrap();
    let pinned = store.stats().unwrap().used;
    assert_eq!(pinned, with_slice, "the removed slice is still pinned");
    pinned
}

/// Parent side, after the reaping call: fills the store so that a freed
/// slice would be overwritten, asks the holder whether its slice is
/// intact, and removes the fillers. Returns the store's `used` bytes then,
/// with the slice still pinned (the directory may have grown since the
/// slice was removed).
fn holder_still_reads_its_slice(store: &Store) -> u64 {
    let mut fillers = 0;
    while store
        .insert_slice(&format!("f{fillers}"), &[u64::MAX; 512])
        .is_ok()
    {
        fillers += 1;
    }
    assert!(fillers > 10, "only {fillers} fillers fit");
    let round = store.get::<AtomicU32>("round").unwrap();
    let seen = store.get::<AtomicU32>("seen").unwrap();
    round.store(1, Ordering::Release);
    wait_until("the holder checks its slice", PATIENCE, || {
        seen.load(Ordering::Acquire) != 0
    });
    assert_eq!(
        seen.load(Ordering::Acquire),
        1,
        "the live holder's slice was freed and overwritten"
    );
    for i in 0..fillers {
        store.remove(&format!("f{i}")).unwrap();
    }
    store.stats().unwrap().used
}

/// Lets the holder finish, and waits for it to exit normally.
fn let_the_holder_finish(store: &Store, holder: Child) {
    store
        .get::<AtomicU32>("done")
        .unwrap()
        .store(1, Ordering::Release);
    holder.wait_success();
}

/// When the holder has exited (closing its store, or killed), its pin is
/// gone and the removed slice is freed.
fn slice_is_freed_once_the_holder_is_gone(store: &Store, pinned: u64) {
    let report = store.check().unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.processes, 1, "only the parent is attached\n{report}");
    let used = store.stats().unwrap().used;
    assert!(
        used + (LEN as u64) * 8 <= pinned,
        "the slice was not freed after its holder exited: used {used}, before {pinned}"
    );
}

/// The lowest file descriptor number that is not open: the one the next
/// `open` would get.
fn lowest_free_fd() -> libc::c_int {
    (0..)
        .find(|&fd| {
            // SAFETY: F_GETFD only reads the descriptor's flags; on a
            // number that is not open it fails with EBADF and has no other
            // effect.
            let rc = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            rc == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::EBADF)
        })
        .expect("some descriptor number is free")
}

/// Lowers this process's soft `RLIMIT_NOFILE` to `soft` until dropped
/// (also during a panic), then restores it.
struct FdLimit {
    old: libc::rlimit,
}

impl FdLimit {
    fn lower_to(soft: libc::c_int) -> FdLimit {
        let mut old = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit into `old`, a valid, writable
        // local of that type.
        let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut old) };
        assert_eq!(rc, 0, "getrlimit: {}", io::Error::last_os_error());
        let low = libc::rlimit {
            rlim_cur: soft as libc::rlim_t,
            rlim_max: old.rlim_max,
        };
        // SAFETY: setrlimit reads the rlimit we pass; lowering the soft
        // limit is always permitted.
        let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) };
        assert_eq!(rc, 0, "setrlimit: {}", io::Error::last_os_error());
        FdLimit { old }
    }
}

impl Drop for FdLimit {
    fn drop(&mut self) {
        // SAFETY: setrlimit reads the rlimit we pass; raising the soft
        // limit back up to the unchanged hard limit is permitted.
        let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &self.old) };
        if rc != 0 {
            eprintln!(
                "could not restore RLIMIT_NOFILE: {}",
                io::Error::last_os_error()
            );
        }
    }
}

/// Panics unless opening a file fails with `EMFILE` right now: proof that
/// the reaping call beside it could not open `/proc/<pid>/stat` either.
fn assert_out_of_fds(when: &str) {
    match File::open("/proc/self/stat") {
        Err(e) if e.raw_os_error() == Some(libc::EMFILE) => {}
        other => panic!("{when}: expected EMFILE opening a file, got {other:?}"),
    }
}

#[test]
fn a_reaper_out_of_file_descriptors_keeps_a_live_holders_pin() {
    const TEST: &str = "a_reaper_out_of_file_descriptors_keeps_a_live_holders_pin";
    if let Some((role, name)) = role() {
        assert_eq!(role, "holder");
        return holder(Store::open(&name).unwrap());
    }
    let _serial = serial();
    let guard = StoreGuard::unique("live-fd");
    let store = Store::create(guard.name(), 1 << 20).unwrap();
    populate(&store);
    let mut child = spawn_role(TEST, "holder", guard.name());
    let pinned = pin_then_remove(&store, &mut child);

    // 1. check() reaps, with not one descriptor to spare: reading the
    //    holder's /proc/<pid>/stat fails with EMFILE.
    let report = {
        let _limit = FdLimit::lower_to(lowest_free_fd());
        assert_out_of_fds("before check()");
        let report = store.check();
        assert_out_of_fds("after check()");
        report
    };
    let report = report.expect("check() with no descriptor to spare");
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.processes, 2, "both slots are kept\n{report}");
    assert_eq!(
        store.stats().unwrap().used,
        pinned,
        "check() released the live holder's pin when /proc could not be read"
    );

    // 2. Opening the store again reaps too, with exactly one descriptor to
    //    spare: the segment takes it, so /proc cannot be read while the
    //    new store joins the process table and reaps.
    let second = {
        let _limit = FdLimit::lower_to(lowest_free_fd() + 1);
        let second = Store::open(guard.name());
        assert_out_of_fds("after opening the store again");
        second
    };
    let second = second.expect("opening the store with one descriptor to spare");
    drop(second);
    assert_eq!(
        store.stats().unwrap().used,
        pinned,
        "opening the store released the live holder's pin when /proc could not be read"
    );

    let still_pinned = holder_still_reads_its_slice(&store);
    let_the_holder_finish(&store, child);
    slice_is_freed_once_the_holder_is_gone(&store, still_pinned);
}

/// Reaper (uid 65534, behind `hidepid=2`): opens the store and runs
/// `check()`, reporting whether the holder's `/proc` entry was hidden and
/// what the check found.
fn hidden_reaper(name: &str) {
    let holder_pid = role_arg();
    let hidden = match std::fs::metadata(format!("/proc/{holder_pid}/stat")) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => true,
        Err(e) => panic!("unexpected error looking up /proc/{holder_pid}: {e}"),
        Ok(_) => false,
    };
    report("hidden", hidden);
    let store = Store::open(name).expect("a 0o666 store opens for anyone");
    let check = store.check().unwrap();
    report("check_ok", check.is_ok());
    report("processes", check.processes);
    report("check", &check);
}

#[test]
fn a_reaper_that_hidepid_keeps_from_seeing_a_holder_keeps_its_pin() {
    const TEST: &str = "a_reaper_that_hidepid_keeps_from_seeing_a_holder_keeps_its_pin";
    if let Some((role, name)) = role() {
        return match role.as_str() {
            "holder" => holder(Store::open(&name).unwrap()),
            "reaper" => hidden_reaper(&name),
            other => panic!("unknown role {other}"),
        };
    }
    if !is_root() {
        println!("note: skipped, needs root to mount /proc in a new mount namespace and run a reaper as another user");
        return;
    }
    let (Some(unshare), Some(setpriv)) = (find_program("unshare"), find_program("setpriv")) else {
        println!("note: skipped, needs both unshare and setpriv installed");
        return;
    };
    let _serial = serial();
    let guard = StoreGuard::unique("live-hidepid");
    let store = Store::options()
        .capacity(1 << 20)
        .mode(0o666)
        .create(guard.name())
        .unwrap();
    populate(&store);
    let mut child = spawn_role(TEST, "holder", guard.name());
    let pinned = pin_then_remove(&store, &mut child);

    // The reaper gets a private /proc with hidepid=2, in its own mount
    // namespace only (the machine's /proc is never remounted), and runs as
    // nobody: root would see through hidepid.
    let inner = role_command_with_arg(TEST, "reaper", guard.name(), &child.pid().to_string());
    let mut cmd = std::process::Command::new(unshare);
    cmd.args([
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        "mount -t proc -o hidepid=2 proc /proc && exec \"$0\" --reuid 65534 --regid 65534 --clear-groups \"$@\"",
    ])
    .arg(setpriv)
    .arg(inner.get_program())
    .args(test_args(TEST));
    for (k, v) in inner.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    let done = Child::spawn(cmd).wait();
    if !done.status.success() && done.stderr.contains("mount") && done.stdout.is_empty() {
        println!("note: skipped, cannot mount /proc in a new mount namespace\n{done}");
        return;
    }
    assert!(done.status.success(), "the reaper failed\n{done}");
    assert_eq!(
        done.report("hidden"),
        "true",
        "hidepid=2 did not hide the holder from the reaper, so this tests nothing\n{done}"
    );
    assert_eq!(done.report("check_ok"), "true", "{done}");
    assert_eq!(
        done.report("processes"),
        "3",
        "the reaper sees the parent's, the holder's and its own slot\n{done}"
    );
    assert_eq!(
        store.stats().unwrap().used,
        pinned,
        "a reaper that could not see the holder released its pin\n{done}"
    );

    let still_pinned = holder_still_reads_its_slice(&store);
    let_the_holder_finish(&store, child);
    slice_is_freed_once_the_holder_is_gone(&store, still_pinned);
}

/// Child: opens the store with exactly one file descriptor to spare, so
/// that the segment takes it and this process cannot read its own start
/// time when it joins the process table; then holds the slice like
/// [`holder`].
fn blind_holder(name: &str) {
    let store = {
        let _limit = FdLimit::lower_to(lowest_free_fd() + 1);
        let store = Store::open(name);
        assert_out_of_fds("after opening the store");
        store
    };
    holder(store.expect("opening the store with one descriptor to spare"));
}

#[test]
fn a_holder_that_cannot_read_its_own_start_time_keeps_its_pin_until_it_dies() {
    const TEST: &str = "a_holder_that_cannot_read_its_own_start_time_keeps_its_pin_until_it_dies";
    if let Some((role, name)) = role() {
        assert_eq!(role, "blind-holder");
        return blind_holder(&name);
    }
    let _serial = serial();
    let guard = StoreGuard::unique("live-blind");
    let store = Store::create(guard.name(), 1 << 20).unwrap();
    populate(&store);
    let mut child = spawn_role(TEST, "blind-holder", guard.name());
    let pinned = pin_then_remove(&store, &mut child);

    // The holder recorded "start time unknown": it is alive while its pid
    // exists, whatever start time that pid has now.
    let report = store.check().unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.processes, 2, "both slots are kept\n{report}");
    assert_eq!(
        store.stats().unwrap().used,
        pinned,
        "check() released the pin of a live holder whose start time is unknown"
    );
    let still_pinned = holder_still_reads_its_slice(&store);

    // Killed, so its slot is not given back on exit: once its pid is gone
    // the reaper releases it.
    child.kill9();
    let _ = child.wait_timeout(PATIENCE);
    slice_is_freed_once_the_holder_is_gone(&store, still_pinned);
}
