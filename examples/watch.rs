//! watch: a process waits for another's update and reacts to it — no
//! polling, no sleep loop.
//!
//! ```sh
//! cargo run --release --example watch
//! ```
//!
//! The parent starts a watcher (itself, re-executed with a role argument)
//! on a fresh store, which first waits with `Store::wait_for` until the
//! `config` object exists, then waits on the `config-changed` `ShmEvent`
//! for each new version and prints it with the time from the update to
//! its reaction. The parent publishes the config, updates it a few times
//! (under the `ShmRwLock` around it), notifying the event after each
//! update, and waits for the watcher to acknowledge each version (through
//! another event) before the next update.

use std::process::{Command, ExitCode};
use std::time::Duration;

use shmstore::{ShmEvent, ShmRwLock, ShmSafe, Store};

type AnyResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

#[derive(ShmSafe, Debug, Clone, Copy)]
#[repr(C)]
struct Config {
    version: u64,
    /// `CLOCK_MONOTONIC` nanoseconds of the update (the same clock in
    /// every process).
    updated_ns: u64,
    threshold: f64,
}

const VERSIONS: u64 = 5;
const PATIENCE: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["watcher", store] => watcher(store),
        [] => parent(),
        _ => Err("usage: watch [watcher STORE]".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("watch: {e}");
            ExitCode::FAILURE
        }
    }
}

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn watcher(name: &str) -> AnyResult {
    let store = Store::open(name)?;
    let changed = store.get_or_insert_with("config-changed", ShmEvent::new)?;
    let acked = store.get_or_insert_with("acked", ShmEvent::new)?;
    println!("watcher: waiting for the config to appear");
    let config = store
        .wait_for::<ShmRwLock<Config>>("config", PATIENCE)?
        .ok_or("the config never appeared")?;
    let mut seen = changed.generation();
    loop {
        let c = *config.read()?;
        let took = now_ns().saturating_sub(c.updated_ns);
        println!(
            "watcher: config version {} (threshold {}), seen {:.1} µs after the update",
            c.version,
            c.threshold,
            took as f64 / 1e3
        );
        acked.notify();
        if c.version == VERSIONS {
            return Ok(());
        }
        seen = changed
            .wait_for_change(seen, PATIENCE)?
            .ok_or("no update within the patience")?;
    }
}

/// Removes the store on every path out.
struct Unlink(String);

impl Drop for Unlink {
    fn drop(&mut self) {
        let _ = Store::unlink(&self.0);
    }
}

fn parent() -> AnyResult {
    let name = format!("shmstore-example-watch-{}", std::process::id());
    let store = Store::create(&name, 1 << 20)?;
    let _unlink = Unlink(name.clone());
    let changed = store.get_or_insert_with("config-changed", ShmEvent::new)?;
    let acked = store.get_or_insert_with("acked", ShmEvent::new)?;
    let mut watcher = Command::new(std::env::current_exe()?)
        .args(["watcher", &name])
        .spawn()?;

    let mut seen_ack = acked.generation();
    store.insert(
        "config",
        ShmRwLock::new(Config {
            version: 1,
            updated_ns: now_ns(),
            threshold: 0.5,
        }),
    )?;
    let config = store.get::<ShmRwLock<Config>>("config")?;
    println!("updater: published config version 1");
    for version in 1..=VERSIONS {
        if version > 1 {
            {
                let mut c = config.write()?;
                c.version = version;
                c.threshold *= 1.5;
                c.updated_ns = now_ns();
            }
            changed.notify();
            println!("updater: config version {version}");
        }
        // Wait until the watcher has seen it (so each version is shown).
        seen_ack = acked
            .wait_for_change(seen_ack, PATIENCE)?
            .ok_or("the watcher did not react")?;
    }
    if !watcher.wait()?.success() {
        return Err("the watcher failed".into());
    }
    println!("done: the watcher reacted to every update without polling");
    Ok(())
}
