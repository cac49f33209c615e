//! End-to-end tests of the `crabbox` binary against real sshd, rsync and git (local provider).

mod aws;
mod azure;
mod checkpoint_records;
mod checkpoints;
mod command_changes;
mod config;
mod coordinator;
mod coordinator_client;
mod coordinator_commands;
mod coordinator_interrupt;
mod coordinator_leases;
mod coordinator_runs;
mod coordinator_start;
mod desktop;
mod hetzner;
mod lease;
mod run;
mod static_ssh;
mod sync;
mod sync_plan;
mod watch;

use crabbox_test_support::Sandbox;

/// Runs `cmd` with `input` on its stdin and collects its output.
pub fn output_with_stdin(cmd: &mut std::process::Command, input: &str) -> std::process::Output {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("crabbox runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("stdin written");
    child.wait_with_output().expect("crabbox exits")
}

pub fn sandbox() -> Sandbox {
    let sshd = crabbox_remote::sshd::find_sshd().expect("an OpenSSH server (scripts/dev-setup)");
    Sandbox::new(env!("CARGO_BIN_EXE_crabbox"), sshd)
}

/// Warms a lease in `dir` and returns its id.
pub fn warm(sb: &Sandbox, dir: &std::path::Path) -> String {
    let out = sb.run(dir, &["warmup", "--json"]);
    assert_eq!(
        crabbox_test_support::code(&out),
        0,
        "warmup failed: {}",
        crabbox_test_support::stderr(&out)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("warmup --json");
    v["lease"]["id"].as_str().expect("lease id").to_owned()
}

/// The `--timing-json` object a run printed last on stderr.
pub fn timing(out: &std::process::Output) -> serde_json::Value {
    let line = crabbox_test_support::stderr(out)
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .map(str::to_owned)
        .expect("timing json line");
    serde_json::from_str(&line).unwrap()
}
