//! Ctrl-C while a brokered `warmup` is creating its lease, against a real coordinator whose
//! `local` provider is slowed down by an sshd wrapper: the CLI cancels the create attempt and
//! exits 130, and the coordinator ends the lease and deletes its runner instead of keeping it
//! until the idle timeout.

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use crabbox_test_support::procs::{self, Signal};
use crabbox_test_support::{Sandbox, code, git_repo, stderr};
use serde_json::Value;

use crate::coordinator::{ADMIN, SHARED, Server, http, live_sshds, runner_dirs, serve, wait_until};
use crate::sandbox;

/// A coordinator whose local runners start through an sshd wrapper that runs `before`, then
/// the real sshd with `extra_args` (see `Sandbox::sshd_wrapper`).
fn coordinator(sb: &Sandbox, state: &Path, before: &str, extra_args: &str) -> Server {
    let path = sb.sshd_wrapper("sshd-wrapper", before, extra_args);
    serve(sb, state, &[], &[("CRABBOX_SSHD", path.to_str().unwrap())])
}

/// Every lease on the coordinator, as the admin sees them.
fn leases(url: &str) -> Vec<Value> {
    let (_, body) = http(
        "GET",
        &format!("{url}/v1/admin/leases?limit=50"),
        ADMIN,
        None,
    );
    body["leases"].as_array().cloned().unwrap_or_default()
}

/// `crabbox <args>` brokered by `server`, running in the background.
fn spawn(sb: &Sandbox, repo: &Path, server: &Server, args: &[&str]) -> Child {
    sb.crabbox(repo, args)
        .env("CRABBOX_COORDINATOR", &server.url)
        .env("CRABBOX_COORDINATOR_TOKEN", SHARED)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("crabbox runs")
}

fn interrupt(child: &Child) {
    assert!(procs::signal(child.id(), Signal::INT));
}

/// The CLI's output once it exits (it must, within `timeout`).
fn finished(mut child: Child, timeout: Duration) -> Output {
    wait_until("the CLI to exit", timeout, || {
        child.try_wait().unwrap().is_some()
    });
    child.wait_with_output().unwrap()
}

fn claim_path(sb: &Sandbox, id: &str) -> PathBuf {
    sb.path().join(format!("state/crabbox/claims/{id}.json"))
}

fn key_dir(sb: &Sandbox, id: &str) -> PathBuf {
    sb.path().join(format!("config/crabbox/testboxes/{id}"))
}

/// The lease ended on the coordinator, the runner was deleted, and nothing is left locally.
fn assert_cleaned_up(sb: &Sandbox, state: &Path, url: &str, id: &str) {
    wait_until("the lease to end", Duration::from_secs(5), || {
        leases(url)
            .iter()
            .any(|l| l["id"] == id && matches!(l["state"].as_str(), Some("released" | "failed")))
    });
    // The provider call finishes after the cancel; the coordinator then deletes its runner.
    wait_until("the runner to be deleted", Duration::from_secs(20), || {
        runner_dirs(state).is_empty() && live_sshds(state) == 0
    });
    assert!(!claim_path(sb, id).exists(), "the local claim is gone");
    assert!(!key_dir(sb, id).exists(), "the lease's SSH key is gone");
}

#[test]
fn ctrl_c_during_a_brokered_create_cancels_it_on_the_coordinator() {
    let sb = sandbox();
    let state = sb.path().join("coord");
    let server = coordinator(&sb, &state, "sleep 3", "");
    let repo = sb.work().join("repo");
    git_repo(&repo, &[("a.txt", "a\n")]);

    let cli = spawn(&sb, &repo, &server, &["warmup", "--json"]);
    wait_until(
        "the create to be in flight",
        Duration::from_secs(20),
        || {
            leases(&server.url)
                .iter()
                .any(|l| l["state"] == "provisioning")
        },
    );
    interrupt(&cli);
    let out = finished(cli, Duration::from_secs(10));
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    let id = leases(&server.url)[0]["id"].as_str().unwrap().to_owned();
    let err = stderr(&out);
    assert!(err.contains(&format!("canceled lease={id}")), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert_cleaned_up(&sb, &state, &server.url, &id);
}

#[test]
fn ctrl_c_while_a_brokered_lease_is_not_ready_yet_releases_it() {
    let sb = sandbox();
    let state = sb.path().join("coord");
    // The runner's sshd starts at once but lets nobody in, so the CLI keeps waiting for ssh.
    let server = coordinator(&sb, &state, "", "-o PubkeyAuthentication=no");
    let repo = sb.work().join("repo");
    git_repo(&repo, &[("a.txt", "a\n")]);

    let cli = spawn(&sb, &repo, &server, &["run", "--", "true"]);
    let mut id = String::new();
    wait_until("the CLI to wait for ssh", Duration::from_secs(20), || {
        if let Some(l) = leases(&server.url).iter().find(|l| l["state"] == "active") {
            id = l["id"].as_str().unwrap().to_owned();
        }
        !id.is_empty() && claim_path(&sb, &id).is_file()
    });
    interrupt(&cli);
    let out = finished(cli, Duration::from_secs(10));
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&format!("released lease={id}")), "{err}");
    assert_cleaned_up(&sb, &state, &server.url, &id);
}
