//! The `shmstore` command run against real stores: healthy, with a dead
//! attached process, with a header lock whose owner died, half-created,
//! corrupted, foreign, another user's; after `kill -9` of every user, `ls`
//! shows a store abandoned and `gc` removes it.
//!
//! Tests that run `gc` (which looks at every segment of the machine) run
//! inside a mount namespace with a private tmpfs over `/dev/shm` (as root,
//! with `unshare`), so that they never see, nor remove, anything of other
//! tests or programs; they print why they skip otherwise.

use std::process::Command;
use std::time::Duration;

mod common;
use common::{json, json_of, listed, run, shmstore, show, text, BIN};
use serde_json::Value as Json;
use shmstore::{ShmSafe, ShmString, ShmVec, Store};
use shmstore_tests::{
    find_program, is_root, role, role_arg, role_command, role_command_with_arg, unique_name, Child,
    StoreGuard, PATIENCE,
};

#[derive(ShmSafe, Clone, Copy)]
#[repr(u8)]
enum Mode {
    #[allow(dead_code)]
    Off = 0,
    Fast = 2,
}

#[derive(ShmSafe)]
#[repr(C)]
struct Inner {
    x: f64,
    tag: char,
}

#[derive(ShmSafe)]
#[repr(C)]
struct Config {
    name: ShmString,
    samples: ShmVec<u32>,
    mode: Mode,
    on: bool,
    inner: Inner,
    small: [i16; 3],
    words: ShmVec<ShmString>,
}

fn config(store: &Store) -> Config {
    Config {
        name: ShmString::from_str_in(store, "boiler").unwrap(),
        samples: ShmVec::from_slice_in(store, &[10, 20, 30]).unwrap(),
        mode: Mode::Fast,
        on: true,
        inner: Inner { x: 1.5, tag: 'z' },
        small: [-1, 0, 1],
        words: ShmVec::from_iter_in(
            store,
            ["alpha", "beta"].map(|w| ShmString::from_str_in(store, w).unwrap()),
        )
        .unwrap(),
    }
}

/// What `shmstore dump NAME config` prints.
const CONFIG_DUMP: &str = r#"Config {
    name: "boiler",
    samples: [10, 20, 30],
    mode: Fast,
    on: true,
    inner: Inner { x: 1.5, tag: 'z' },
    small: [-1, 0, 1],
    words: ["alpha", "beta"],
}
"#;

fn segment_bytes(guard: &StoreGuard) -> Vec<u8> {
    std::fs::read(guard.path()).unwrap()
}

/// Fails, naming the first changed offset, unless the segment still
/// holds `before`.
fn same_bytes(guard: &StoreGuard, before: &[u8]) {
    let now = segment_bytes(guard);
    if let Some(at) = now.iter().zip(before).position(|(a, b)| a != b) {
        panic!(
            "a read-only command wrote: byte {at:#x} was {:#04x}, is {:#04x}",
            before[at], now[at]
        );
    }
    assert_eq!(now.len(), before.len(), "the segment's length changed");
}

/// A child that opens the store, holds a handle on `"config"`, says
/// `READY` and waits to be killed.
fn holder(name: &str) {
    let store = Store::open(name).unwrap();
    let _handle = store.get::<u32>("counter").unwrap();
    println!("READY {}", std::process::id());
    loop {
        std::thread::park();
    }
}

fn spawn_holder(test: &str, name: &str) -> Child {
    let mut child = Child::spawn(role_command(test, "holder", name));
    child.wait_for_line(PATIENCE, |l| l.contains("READY"));
    child
}

fn kill(mut child: Child) {
    child.kill9();
    let done = child.wait();
    assert!(!done.status.success());
}

#[test]
fn a_healthy_store_is_listed_described_dumped_and_checked_without_a_write() {
    let guard = StoreGuard::unique("cli-healthy");
    let store = Store::create(guard.name(), 1 << 20).unwrap();
    store.insert("config", config(&store)).unwrap();
    store.insert_slice("samples", &[1.5f32, 2.5]).unwrap();
    store.insert("counter", 7u32).unwrap();
    let handle = store.get::<u32>("counter").unwrap();
    // Taken before the bytes: a store operation writes (the lock
    // generation, at least).
    let stats = store.stats().unwrap();
    let before = segment_bytes(&guard);
    let me = std::process::id();

    // ls: the store, its figures, this process, a free lock.
    let s = listed(guard.name()).expect("listed");
    assert_eq!(s["kind"], "store");
    assert_eq!(s["status"], "in-use", "{s}");
    assert_eq!(s["mode"], "0600");
    let st = &s["store"];
    assert_eq!(st["capacity"], 1 << 20);
    assert_eq!(st["objects"], 3);
    assert_eq!(st["used"], stats.used);
    assert_eq!(st["committed"], stats.committed);
    assert_eq!(st["live_processes"], 1);
    assert_eq!(st["dead_processes"], 0);
    assert_eq!(st["processes"][0]["pid"], me);
    assert_eq!(st["header_lock"]["state"], "free");
    assert_eq!(st["consistent"], true);
    assert_eq!(s["users"], serde_json::json!([me]));
    let ls = text(&shmstore(&["ls"]));
    let line = ls
        .lines()
        .find(|l| l.starts_with(guard.name()))
        .unwrap_or_else(|| panic!("{ls}"));
    for cell in ["in-use", "0600", "1 MiB", " 3 ", "free"] {
        assert!(line.contains(cell), "{cell:?} in {line:?}");
    }
    assert!(ls.starts_with("NAME "), "{ls}");

    // info
    let info = json(&["info", guard.name()], 0);
    // Config, f32, u32, and ShmString: the elements of a `ShmVec<ShmString>`
    // (containers register element types that hold containers).
    assert_eq!(info["types"], 4, "{info}");
    assert_eq!(info["processes"][0]["pins"], 1, "{info}");
    let human = text(&shmstore(&["info", guard.name()]));
    assert!(human.contains("header lock  free"), "{human}");

    // objects: types, layouts with fields and offsets, holders.
    let objects = json(&["objects", guard.name()], 0);
    let list = objects["objects"].as_array().unwrap();
    let names: Vec<&str> = list.iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["config", "counter", "samples"]);
    let config_o = &list[0];
    assert_eq!(config_o["type"], "Config");
    assert_eq!(config_o["len"], Json::Null);
    assert_eq!(config_o["size"], core::mem::size_of::<Config>());
    let fields = config_o["layout"]["fields"].as_array().unwrap();
    let field = |n: &str| fields.iter().find(|f| f["name"] == n).unwrap().clone();
    assert_eq!(field("name")["offset"], 0);
    assert_eq!(field("name")["layout"]["type"], "ShmString");
    assert_eq!(field("samples")["layout"]["type"], "ShmVec<u32>");
    assert_eq!(field("inner")["layout"]["fields"][1]["name"], "tag");
    assert_eq!(field("mode")["layout"]["variants"][1]["name"], "Fast");
    assert_eq!(list[2]["type"], "f32");
    assert_eq!(list[2]["len"], 2);
    assert_eq!(
        list[1]["holders"],
        serde_json::json!([{"pid": me, "liveness": "alive", "pins": 1}])
    );
    let human = text(&shmstore(&["objects", guard.name()]));
    assert!(human.contains("Config (size"), "{human}");
    assert!(human.contains("  inner: Inner (offset"), "{human}");

    // dump: a nested struct with strings and vectors, without the type.
    let out = shmstore(&["dump", guard.name(), "config"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(text(&out), CONFIG_DUMP);
    let dumped = json(&["dump", guard.name(), "config"], 0);
    assert_eq!(dumped["type"], "Config");
    let v = &dumped["value"];
    assert_eq!(v["name"], "boiler");
    assert_eq!(v["samples"], serde_json::json!([10, 20, 30]));
    assert_eq!(v["mode"], "Fast");
    assert_eq!(v["inner"], serde_json::json!({"x": 1.5, "tag": "z"}));
    assert_eq!(v["small"], serde_json::json!([-1, 0, 1]));
    assert_eq!(v["words"], serde_json::json!(["alpha", "beta"]));
    assert_eq!(
        json(&["dump", guard.name(), "samples"], 0)["value"],
        serde_json::json!([1.5, 2.5])
    );
    let cut = json(&["dump", "--limit", "1", guard.name(), "config"], 0);
    assert_eq!(
        cut["value"]["samples"],
        serde_json::json!({"len": 3, "items": [10]})
    );
    let missing = json(&["dump", guard.name(), "absent"], 2);
    assert_eq!(missing["error"]["kind"], "not-found");

    // check: consistent, exit 0.
    let out = shmstore(&["check", guard.name()]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(text(&out).ends_with("consistent\n"), "{}", show(&out));
    assert_eq!(json(&["check", guard.name()], 0)["ok"], true);

    // None of it wrote a byte.
    same_bytes(&guard, &before);
    drop(handle);
}

#[test]
fn a_dead_attached_process_is_reported_and_released_only_by_repair() {
    const TEST: &str = "a_dead_attached_process_is_reported_and_released_only_by_repair";
    if let Some((_, name)) = role() {
        return holder(&name);
    }
    let guard = StoreGuard::unique("cli-dead");
    let store = Store::create(guard.name(), 1 << 20).unwrap();
    store.insert("counter", 7u32).unwrap();
    let child = spawn_holder(TEST, guard.name());
    let dead = child.pid();
    kill(child);

    let st = listed(guard.name()).unwrap()["store"].clone();
    assert_eq!(st["dead_processes"], 1, "{st}");
    assert_eq!(st["live_processes"], 1, "{st}");
    let objects = json(&["objects", guard.name()], 0);
    assert_eq!(
        objects["objects"][0]["holders"],
        serde_json::json!([{"pid": dead, "liveness": "dead", "pins": 1}])
    );
    // A read-only check reports and releases nothing.
    let before = segment_bytes(&guard);
    assert_eq!(json(&["check", guard.name()], 0)["ok"], true);
    assert_eq!(listed(guard.name()).unwrap()["store"]["dead_processes"], 1);
    same_bytes(&guard, &before);
    // --repair releases it.
    let repaired = json(&["check", "--repair", guard.name()], 0);
    let actions = repaired["repair"]["actions"].to_string();
    assert!(actions.contains("1 dead process"), "{repaired}");
    let st = listed(guard.name()).unwrap()["store"].clone();
    assert_eq!(st["dead_processes"], 0, "{st}");
    assert_eq!(json(&["objects", guard.name()], 0)["objects"][0]["pins"], 0);
}

#[test]
fn an_owner_died_header_lock_is_reported_without_being_taken_and_repaired() {
    const TEST: &str = "an_owner_died_header_lock_is_reported_without_being_taken_and_repaired";
    if let Some((_, name)) = role() {
        // Die in the middle of an insert, holding the header lock.
        let store = Store::open(&name).unwrap();
        shmstore::crash_after_steps(4);
        let _ = store.insert("doomed", 1u64);
        unreachable!("the insert should have aborted the process");
    }
    let guard = StoreGuard::unique("cli-owner-died");
    let store = Store::create(guard.name(), 1 << 20).unwrap();
    store.insert("kept", 5u64).unwrap();
    drop(store);
    let done = Child::spawn(role_command(TEST, "crasher", guard.name())).wait();
    assert!(!done.status.success(), "{done}");
    let before = segment_bytes(&guard);

    let s = listed(guard.name()).unwrap();
    let st = &s["store"];
    assert_eq!(st["header_lock"]["state"], "owner-died", "{s}");
    assert!(st["journal_entries"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(st["dead_processes"], 1, "{s}");
    let info = text(&shmstore(&["info", guard.name()]));
    assert!(info.contains("header lock  owner died"), "{info}");
    assert!(info.contains("rolled back"), "{info}");
    let check = json(&["check", guard.name()], 0);
    assert_eq!(
        check["view"]["rolled_back"]["entries"], st["journal_entries"],
        "{check}"
    );
    let objects = json(&["objects", guard.name()], 0);
    assert_eq!(objects["objects"].as_array().unwrap().len(), 1, "{objects}");
    assert_eq!(json(&["dump", guard.name(), "kept"], 0)["value"], 5);
    // Nothing was written: not the lock word, not a byte.
    same_bytes(&guard, &before);

    let repaired = json(&["check", "--repair", guard.name()], 0);
    assert!(
        repaired["repair"]["actions"]
            .to_string()
            .contains("recovered the header lock"),
        "{repaired}"
    );
    let st = listed(guard.name()).unwrap()["store"].clone();
    assert_eq!(st["header_lock"]["state"], "free", "{st}");
    assert_eq!(st["journal_entries"], 0);
    assert_eq!(st["recoveries"], 1);
    assert_eq!(st["objects"], 1);
}

#[test]
fn a_half_created_store_is_abandoned_and_rm_removes_it() {
    const TEST: &str = "a_half_created_store_is_abandoned_and_rm_removes_it";
    if let Some((_, name)) = role() {
        // Die after the header says "store", before it is ready.
        shmstore::crash_after_steps(2);
        let _ = Store::create(&name, 1 << 20);
        unreachable!("creation should have aborted the process");
    }
    let guard = StoreGuard::unique("cli-half");
    let done = Child::spawn(role_command(TEST, "creator", guard.name())).wait();
    assert!(!done.status.success(), "{done}");
    let s = listed(guard.name()).expect("listed");
    assert_eq!(s["kind"], "creating", "{s}");
    assert_eq!(s["status"], "abandoned", "{s}");
    assert_eq!(s["creating"]["liveness"], "dead", "{s}");
    let ls = text(&shmstore(&["ls"]));
    assert!(ls.contains("half-created: its creator"), "{ls}");
    let err = json(&["objects", guard.name()], 2);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("half-initialised"),
        "{err}"
    );
    let out = shmstore(&["rm", guard.name()]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(listed(guard.name()).is_none());
}

#[test]
fn a_corrupted_store_is_reported_and_never_crashes_the_command() {
    let guard = StoreGuard::unique("cli-corrupt");
    let store = Store::create(guard.name(), 1 << 20).unwrap();
    store.insert("config", config(&store)).unwrap();
    store.insert("n", 3u64).unwrap();
    drop(store);
    let write = |off: u64, bytes: &[u8]| {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(guard.path())
            .unwrap();
        f.write_all_at(bytes, off).unwrap();
    };
    // The header's object count: only the full check sees it.
    write(64, &99u64.to_le_bytes());
    let check = json(&["check", guard.name()], 1);
    let problems = check["report"]["problems"].to_string();
    assert!(problems.contains("header counts 99 objects"), "{check}");
    let out = shmstore(&["check", guard.name()]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(text(&out).contains("problem(s) found"), "{}", show(&out));
    // The top check word: the header itself is inconsistent. No one uses
    // the store, but its objects may still read: it is damaged, which
    // neither `gc` nor `gc --idle` removes, nor `rm` without --force.
    write(2664, &[0x55; 8]);
    let s = listed(guard.name()).unwrap();
    assert_eq!(s["status"], "damaged", "{s}");
    assert!(s["store"]["problems"].to_string().contains("top"), "{s}");
    let rm = json(&["rm", guard.name()], 1);
    assert_eq!(rm["refused"][0]["status"], "damaged", "{rm}");
    assert!(std::path::Path::new(&guard.path()).exists());
    // Garbage over the heap: every command ends with an exit code, no
    // signal, no hang (bounded by the helper's wait).
    write(4096, &[0xff; 4096 * 3]);
    for args in [
        vec!["ls"],
        vec!["info", guard.name()],
        vec!["objects", guard.name()],
        vec!["dump", guard.name(), "config"],
        vec!["dump", guard.name(), "n"],
        vec!["check", guard.name()],
        vec!["--json", "objects", guard.name()],
        vec!["--json", "check", guard.name()],
    ] {
        let out = shmstore(&args);
        assert!(
            out.status.code().is_some(),
            "{args:?} died of a signal: {}",
            show(&out)
        );
        if args[0] == "--json" {
            serde_json::from_slice::<Json>(&out.stdout)
                .unwrap_or_else(|e| panic!("{args:?}: {e}\n{}", show(&out)));
        }
    }
    assert_eq!(shmstore(&["check", guard.name()]).status.code(), Some(1));
}

#[test]
fn a_foreign_segment_is_hidden_and_never_removed_without_force() {
    let guard = StoreGuard::unique("cli-foreign");
    std::fs::write(guard.path(), b"some other program's bytes").unwrap();
    let doc = json(&["ls"], 0);
    assert!(!doc["segments"].to_string().contains(guard.name()), "{doc}");
    assert!(doc["hidden"].as_u64().unwrap() >= 1);
    let s = listed(guard.name()).unwrap();
    assert_eq!(
        (s["kind"].as_str(), s["status"].as_str()),
        (Some("foreign"), Some("foreign"))
    );
    assert_eq!(
        json(&["objects", guard.name()], 2)["error"]["kind"],
        "not-a-store"
    );
    let out = shmstore(&["rm", guard.name()]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a shmstore store"));
    assert!(std::path::Path::new(&guard.path()).exists());
    assert_eq!(
        json(&["rm", "--force", guard.name()], 0)["removed"][0],
        format!("/{}", guard.name())
    );
    assert!(!std::path::Path::new(&guard.path()).exists());
    assert_eq!(
        json(&["info", guard.name()], 2)["error"]["kind"],
        "not-found"
    );
}

#[test]
fn another_users_store_is_read_only_or_unreadable_as_its_mode_says() {
    let Some(setpriv) = find_program("setpriv") else {
        eprintln!("setpriv not found; skipped");
        return;
    };
    if !is_root() {
        eprintln!("not root: cannot run a command as another user; skipped");
        return;
    }
    let as_nobody = |args: &[&str]| {
        let mut cmd = Command::new(&setpriv);
        cmd.args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            BIN,
            "--json",
        ])
        .args(args);
        run(cmd)
    };
    let private = StoreGuard::unique("cli-private");
    let store = Store::create(private.name(), 1 << 20).unwrap();
    store.insert("n", 1u64).unwrap();
    let doc = json_of(&as_nobody(&["ls", "--all"]), 0);
    let s = doc["segments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == format!("/{}", private.name()))
        .unwrap()
        .clone();
    assert_eq!(s["status"], "unreadable", "{s}");
    assert_eq!(s["owner"], 0);
    let err = json_of(&as_nobody(&["objects", private.name()]), 2);
    assert_eq!(err["error"]["kind"], "permission-denied", "{err}");

    let shared = StoreGuard::unique("cli-shared");
    let store = Store::options()
        .capacity(1 << 20)
        .mode(0o644)
        .create(shared.name())
        .unwrap();
    store.insert("n", 41u64).unwrap();
    let before = segment_bytes(&shared);
    let objects = json_of(&as_nobody(&["objects", shared.name()]), 0);
    assert_eq!(objects["objects"][0]["name"], "n");
    assert_eq!(
        json_of(&as_nobody(&["dump", shared.name(), "n"]), 0)["value"],
        41
    );
    assert_eq!(
        json_of(&as_nobody(&["check", shared.name()]), 0)["ok"],
        true
    );
    same_bytes(&shared, &before);
    // Repairing needs write access; removing, a store not in use.
    let err = json_of(&as_nobody(&["check", "--repair", shared.name()]), 2);
    assert_eq!(err["error"]["kind"], "permission-denied", "{err}");
    let rm = json_of(&as_nobody(&["rm", shared.name()]), 1);
    assert_eq!(
        rm["refused"][0]["users"],
        serde_json::json!([std::process::id()]),
        "{rm}"
    );
}

#[test]
fn help_json_schema_and_completions() {
    let help = text(&shmstore(&["--help"]));
    for section in [
        "EXIT STATUS",
        "STATUS (ls, info, gc)",
        "EXAMPLES",
        "abandoned",
    ] {
        assert!(help.contains(section), "{section}: {help}");
    }
    let schema = text(&shmstore(&["help", "json"]));
    assert!(schema.contains("\"schema\": 1"), "{schema}");
    for shell in ["bash", "zsh", "fish"] {
        let out = shmstore(&["completions", shell]);
        assert!(out.status.success());
        assert!(text(&out).contains("objects"), "{shell}");
    }
    assert_eq!(shmstore(&["frobnicate"]).status.code(), Some(2));
}

/// The private-`/dev/shm` part: a role that runs the scenario inside a
/// mount namespace of its own.
const GC_TEST: &str = "after_kill_9_of_every_user_ls_shows_abandoned_and_gc_removes_it";

#[test]
fn after_kill_9_of_every_user_ls_shows_abandoned_and_gc_removes_it() {
    if let Some((role, name)) = role() {
        match role.as_str() {
            "private-shm" => return gc_scenario(),
            "holder" => return holder(&name),
            "ephemeral" => {
                let store = Store::options()
                    .capacity(1 << 20)
                    .remove_when_unused(true)
                    .open_or_create(&name)
                    .unwrap();
                let _ = store.get_or_insert_with("counter", || 7u32).unwrap();
                println!("READY {}", std::process::id());
                loop {
                    std::thread::park();
                }
            }
            other => panic!("unknown role {other} {}", role_arg()),
        }
    }
    let (Some(unshare), true) = (find_program("unshare"), is_root()) else {
        eprintln!("needs root and unshare (a private /dev/shm); skipped");
        return;
    };
    let test = std::env::current_exe().unwrap();
    let mut cmd = Command::new(unshare);
    cmd.args(["-m", "--propagation", "private", "--", "sh", "-c"])
        .arg("mount -t tmpfs -o size=64m shmstore-cli-test /dev/shm && exec \"$0\" \"$@\"")
        .arg(test)
        .args(shmstore_tests::test_args(GC_TEST))
        .env(shmstore_tests::ROLE_VAR, "private-shm")
        .env("RUST_BACKTRACE", "1");
    let done = Child::spawn(cmd).wait_timeout(Duration::from_secs(300));
    assert!(done.status.success(), "{done}");
    assert!(done.stdout.contains("SCENARIO DONE"), "{done}");
}

/// Inside the private `/dev/shm`: stores whose users are all killed, one
/// still in use; `ls`, `rm`, `gc`, `gc --idle`.
fn gc_scenario() {
    let ephemeral = unique_name("eph");
    let persistent = unique_name("persist");
    let busy = unique_name("busy");
    // The ephemeral store: two users, both killed.
    let a = {
        let mut c = Child::spawn(role_command_with_arg(GC_TEST, "ephemeral", &ephemeral, ""));
        c.wait_for_line(PATIENCE, |l| l.contains("READY"));
        c
    };
    let b = {
        let mut c = Child::spawn(role_command_with_arg(GC_TEST, "ephemeral", &ephemeral, ""));
        c.wait_for_line(PATIENCE, |l| l.contains("READY"));
        c
    };
    // A persistent store: one user, killed.
    let store = Store::create(&persistent, 1 << 20).unwrap();
    store.insert("counter", 1u32).unwrap();
    drop(store);
    let p = spawn_holder(GC_TEST, &persistent);
    // A store in use by a live process.
    let store = Store::create(&busy, 1 << 20).unwrap();
    store.insert("counter", 1u32).unwrap();
    drop(store);
    let live = spawn_holder(GC_TEST, &busy);
    let live_pid = live.pid();

    let s = listed(&ephemeral).unwrap();
    assert_eq!(s["status"], "in-use", "{s}");
    for c in [a, b, p] {
        kill(c);
    }

    let s = listed(&ephemeral).unwrap();
    assert_eq!(s["status"], "abandoned", "{s}");
    assert_eq!(s["store"]["remove_when_unused"], true);
    assert_eq!(s["store"]["live_processes"], 0, "{s}");
    assert_eq!(s["store"]["dead_processes"], 2, "{s}");
    let ls = text(&shmstore(&["ls"]));
    assert!(ls.contains("abandoned"), "{ls}");
    let s = listed(&persistent).unwrap();
    assert_eq!(s["status"], "idle", "{s}");
    assert_eq!(s["store"]["dead_processes"], 1, "{s}");
    let s = listed(&busy).unwrap();
    assert_eq!(s["status"], "in-use", "{s}");

    // rm refuses a store in use, naming its process.
    let out = shmstore(&["rm", &busy]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("in use by pid {live_pid}")),
        "{}",
        show(&out)
    );

    // gc --dry-run removes nothing; gc removes the abandoned store only.
    let dry = json(&["gc", "--dry-run"], 0);
    assert_eq!(dry["removed"][0]["name"], format!("/{ephemeral}"), "{dry}");
    assert!(listed(&ephemeral).is_some());
    let out = shmstore(&["gc"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        text(&out).contains(&format!("removed {ephemeral}")),
        "{}",
        show(&out)
    );
    assert!(listed(&ephemeral).is_none());
    assert!(listed(&persistent).is_some(), "idle stores stay");
    assert!(listed(&busy).is_some());

    // gc --idle removes the idle one too, never the one in use.
    let gc = json(&["gc", "--idle"], 0);
    assert_eq!(gc["removed"][0]["name"], format!("/{persistent}"), "{gc}");
    assert!(listed(&persistent).is_none());
    assert!(listed(&busy).is_some());

    // --force removes a store in use (its user keeps its mapping).
    assert_eq!(
        json(&["rm", "--force", &busy], 0)["removed"][0],
        format!("/{busy}")
    );
    assert!(listed(&busy).is_none());
    kill(live);
    // The ephemeral store's name is free again: a new one is empty.
    let again = Store::options()
        .capacity(1 << 20)
        .remove_when_unused(true)
        .open_or_create(&ephemeral)
        .unwrap();
    assert!(!again.contains("counter").unwrap());
    drop(again);
    assert!(listed(&ephemeral).is_none(), "removed with its last user");
    println!("SCENARIO DONE");
}
