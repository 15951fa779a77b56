//! Helpers shared by the tests that run the `shmstore` binary.
// Each test crate uses its own subset.
#![allow(dead_code)]

use std::process::{Command, Output};

use serde_json::Value as Json;
use shmstore_tests::Child;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_shmstore");

/// Runs `cmd` (a bounded wait: see [`Child::wait`]), returning its output.
pub fn run(cmd: Command) -> Output {
    let done = Child::spawn(cmd).wait();
    Output {
        status: done.status,
        stdout: done.stdout.into_bytes(),
        stderr: done.stderr.into_bytes(),
    }
}

/// Runs `shmstore args`.
pub fn shmstore(args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    run(cmd)
}

/// The standard output, as text.
pub fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Everything about a run, for an assertion's message.
pub fn show(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        text(o),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Checks the exit code of a `--json` run and parses its document, which
/// must carry the schema version.
pub fn json_of(o: &Output, code: i32) -> Json {
    assert_eq!(o.status.code(), Some(code), "{}", show(o));
    let doc: Json =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}\n{}", show(o)));
    assert_eq!(doc["schema"], 1, "{doc}");
    doc
}

/// Runs `shmstore --json args`, checks the exit code, parses the document.
pub fn json(args: &[&str], code: i32) -> Json {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    json_of(&shmstore(&all), code)
}

/// The `ls --all --json` entry of `name`, if listed.
pub fn listed(name: &str) -> Option<Json> {
    let doc = json(&["ls", "--all"], 0);
    doc["segments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == format!("/{name}"))
        .cloned()
}
