//! Brokered leases against real `crabbox coordinator serve` processes and the `local`
//! provider's real sshd: a claim is only acted on through the coordinator that created it,
//! `status`/`list` read the coordinator, a failed release after `run` is exit 7 with a
//! `crabbox stop` hint, and coordinator errors carry the contract's exit codes and hints.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use crabbox_test_support::{Sandbox, code, curl, git_repo, stderr, stdout};
use serde_json::Value;

use crate::coordinator::{ADMIN, SHARED, json, serve, wait_until};
use crate::sandbox;

/// `crabbox <args>` in `dir`, brokered by the coordinator at `url` with the shared token.
fn at(sb: &Sandbox, dir: &Path, url: &str, args: &[&str]) -> Output {
    sb.crabbox(dir, args)
        .env("CRABBOX_COORDINATOR", url)
        .env("CRABBOX_COORDINATOR_TOKEN", SHARED)
        .output()
        .expect("crabbox runs")
}

/// An HTTP call with `curl`: `(status, JSON body)`.
fn http(
    method: &str,
    url: &str,
    token: &str,
    headers: &[&str],
    body: Option<&Value>,
) -> (u16, Value) {
    let mut cmd = curl();
    cmd.args(["-X", method, "-w", "\n%{http_code}", "-H"])
        .arg(format!("authorization: Bearer {token}"));
    for h in headers {
        cmd.args(["-H", h]);
    }
    if let Some(b) = body {
        cmd.args(["-H", "content-type: application/json", "--data"])
            .arg(b.to_string());
    }
    let out = cmd.arg(url).output().expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        status.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

/// The coordinator's record of a lease, as the shared-token user sees it.
fn coordinator_lease(url: &str, id: &str) -> Value {
    let (status, body) = http("GET", &format!("{url}/v1/leases/{id}"), SHARED, &[], None);
    assert_eq!(status, 200, "{body}");
    body["lease"].clone()
}

fn warm(sb: &Sandbox, dir: &Path, url: &str, extra: &[&str]) -> Value {
    let mut args = vec!["warmup", "--json"];
    args.extend(extra);
    let out = at(sb, dir, url, &args);
    assert_eq!(code(&out), 0, "warmup failed: {}", stderr(&out));
    json(&out)["lease"].clone()
}

fn claim_path(sb: &Sandbox, id: &str) -> PathBuf {
    sb.path().join(format!("state/crabbox/claims/{id}.json"))
}

fn key_dir(sb: &Sandbox, id: &str) -> PathBuf {
    sb.path().join(format!("config/crabbox/testboxes/{id}"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn repo(sb: &Sandbox) -> PathBuf {
    let repo = sb.work().join("repo");
    git_repo(&repo, &[("hello.txt", "hi\n")]);
    repo
}

#[test]
fn a_claim_is_only_released_through_the_coordinator_that_created_it() {
    let sb = sandbox();
    let a = serve(&sb, &sb.path().join("coord-a"), &[], &[]);
    let b = serve(&sb, &sb.path().join("coord-b"), &[], &[]);
    let repo = repo(&sb);
    let id = warm(&sb, &repo, &a.url, &[])["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Logged in to B, every command on A's lease is refused (exit 2) and keeps the claim.
    for args in [
        vec!["stop", id.as_str()],
        vec!["status", id.as_str()],
        vec!["run", "--id", id.as_str(), "--", "true"],
    ] {
        let out = at(&sb, &repo, &b.url, &args);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("created through coordinator {}", a.url))
                && err.contains(&format!("the configured coordinator is {}", b.url))
                && err.contains(&format!("crabbox login --url {}", a.url)),
            "{args:?}: {err}"
        );
        assert!(!err.contains("deleted lease="), "{err}");
    }
    assert!(claim_path(&sb, &id).is_file(), "the claim is kept");
    assert!(
        key_dir(&sb, &id).join("id_ed25519").is_file(),
        "the key is kept"
    );
    assert_eq!(coordinator_lease(&a.url, &id)["state"], "active");

    // B's list does not call A's lease stopped: it cannot know, and says so.
    let out = at(&sb, &repo, &b.url, &["list", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let listed = json(&out);
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(row["state"], "unknown", "{row}");
    assert!(
        stderr(&out).contains(&format!("belongs to coordinator {}", a.url)),
        "{}",
        stderr(&out)
    );

    // A 404 from the lease's own coordinator: the lease is gone for this caller, so the claim
    // is forgotten with a note. (A claim for a lease A never had stands in for a pruned one.)
    let ghost = "cbx_0000deadbeef";
    let text = std::fs::read_to_string(claim_path(&sb, &id)).unwrap();
    std::fs::write(claim_path(&sb, ghost), text.replace(&id, ghost)).unwrap();
    let out = at(&sb, &repo, &a.url, &["stop", ghost]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "coordinator {} no longer has lease {ghost}",
            a.url
        )) && stderr(&out).contains(&format!("forgot lease={ghost}")),
        "{}",
        stderr(&out)
    );
    assert!(!claim_path(&sb, ghost).exists());

    // Back on A, stop releases it there and forgets the claim and key.
    let out = at(&sb, &repo, &a.url, &["stop", &id]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("released lease={id} server=")),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("deleted lease="), "{}", stderr(&out));
    assert!(!claim_path(&sb, &id).exists() && !key_dir(&sb, &id).exists());
    assert_eq!(coordinator_lease(&a.url, &id)["state"], "released");
}

#[test]
fn brokered_status_and_list_show_the_coordinator_record() {
    let sb = sandbox();
    let server = serve(&sb, &sb.path().join("coord"), &[], &[]);
    let url = server.url.as_str();
    let repo = repo(&sb);
    let warm_view = warm(&sb, &repo, url, &["--idle-timeout", "10m"]);
    let id = warm_view["id"].as_str().unwrap().to_owned();

    // Another process heartbeats with telemetry: the coordinator's expiry moves, the local
    // claim does not know.
    std::thread::sleep(Duration::from_millis(1100));
    let telemetry = serde_json::json!({"telemetry": {"source": "ssh-linux", "load1": 0.5,
        "memoryUsedBytes": 536_870_912_u64, "memoryTotalBytes": 2_147_483_648_u64,
        "diskUsedBytes": 1_073_741_824_u64, "diskTotalBytes": 4_294_967_296_u64,
        "uptimeSeconds": 90}});
    let (status, beat) = http(
        "POST",
        &format!("{url}/v1/leases/{id}/heartbeat"),
        SHARED,
        &[],
        Some(&telemetry),
    );
    assert_eq!(status, 200, "{beat}");
    let expires = beat["lease"]["expiresAt"].as_str().unwrap().to_owned();
    assert_ne!(warm_view["expiresAt"], expires.as_str());

    let out = at(&sb, &repo, url, &["status", &id, "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let st = json(&out);
    assert_eq!(
        (&st["state"], &st["expiresAt"], &st["ready"]),
        (
            &Value::from("active"),
            &Value::from(expires.as_str()),
            &Value::from(true)
        ),
        "{st}"
    );
    assert_eq!(st["telemetry"]["load1"], 0.5, "{st}");
    assert!(
        !st["telemetryHistory"].as_array().unwrap().is_empty(),
        "{st}"
    );
    let out = at(&sb, &repo, url, &["status", &id]);
    let line = stdout(&out);
    for want in [
        "state=active".to_owned(),
        format!("expires={expires}"),
        "load=0.50".to_owned(),
        "mem=512.0MiB/2.0GiB".to_owned(),
        "disk=1.0GiB/4.0GiB".to_owned(),
        "uptime=1m30s".to_owned(),
    ] {
        assert!(line.contains(&want), "{want} missing: {line}");
    }

    // list --json: the coordinator's lease objects.
    let listed = json(&at(&sb, &repo, url, &["list", "--json"]));
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(
        (&row["state"], &row["expiresAt"], &row["owner"]),
        (
            &Value::from("active"),
            &Value::from(expires.as_str()),
            &Value::from("dev@example.com")
        ),
        "{row}"
    );
    assert_eq!(row["telemetry"]["load1"], 0.5, "{row}");

    // A lease the coordinator expires: status and list say expired (not the claim's ready,
    // nor stopped), `run --id` is exit 4, and stop still forgets it.
    let short = warm(&sb, &repo, url, &["--idle-timeout", "3s"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_until(
        "the coordinator to expire it",
        Duration::from_secs(30),
        || coordinator_lease(url, &short)["state"] == "expired",
    );
    let out = at(&sb, &repo, url, &["status", &short]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("state=expired"), "{}", stdout(&out));
    let listed = json(&at(&sb, &repo, url, &["list", "--json"]));
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["id"] == short.as_str() && l["state"] == "expired"),
        "{listed}"
    );
    let out = at(&sb, &repo, url, &["run", "--id", &short, "--", "true"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is gone") && stderr(&out).contains("reports it expired"),
        "{}",
        stderr(&out)
    );
    assert!(claim_path(&sb, &short).is_file());
    for lease in [&short, &id] {
        let out = at(&sb, &repo, url, &["stop", lease]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert!(!claim_path(&sb, lease).exists());
    }
}

#[test]
fn a_failed_release_after_a_brokered_run_exits_7_unless_the_command_failed() {
    let sb = sandbox();
    let state = sb.path().join("coord");
    let listen = format!("127.0.0.1:{}", free_port());
    let start = || serve(&sb, &state, &["--listen", listen.as_str()], &[]);
    let repo = repo(&sb);
    let started = sb.path().join("started");
    let go = sb.path().join("go");
    let mut leases = Vec::new();
    for want in [7, 3] {
        let server = start();
        let url = server.url.clone();
        let _ = std::fs::remove_file(&started);
        let _ = std::fs::remove_file(&go);
        // The command waits until the test has stopped the coordinator, so the release after
        // it fails.
        let script = format!(
            "touch {s}; while [ ! -e {g} ]; do sleep 0.1; done; exit {code}",
            s = started.display(),
            g = go.display(),
            code = if want == 7 { 0 } else { want }
        );
        let child = sb
            .crabbox(&repo, &["run", "--", "sh", "-c", &script])
            .env("CRABBOX_COORDINATOR", &url)
            .env("CRABBOX_COORDINATOR_TOKEN", SHARED)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        wait_until("the command to start", Duration::from_mins(1), || {
            started.exists()
        });
        drop(server);
        std::fs::write(&go, "").unwrap();
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        assert_eq!(code(&out), want, "{err}");
        let id = err
            .split("crabbox stop ")
            .nth(1)
            .and_then(|rest| rest.split('`').next())
            .unwrap_or_else(|| panic!("no stop hint: {err}"))
            .to_owned();
        assert!(
            err.contains(&format!("could not release lease {id}")),
            "{err}"
        );
        assert!(
            err.contains(&format!(
                "the lease is still held; release it with `crabbox stop {id}`"
            )),
            "{err}"
        );
        assert!(claim_path(&sb, &id).is_file(), "the claim is kept: {err}");
        leases.push(id);
    }
    // The hint works once the coordinator is back.
    let server = start();
    for id in &leases {
        let out = at(&sb, &repo, &server.url, &["stop", id]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert_eq!(coordinator_lease(&server.url, id)["state"], "released");
    }
}

#[test]
fn coordinator_errors_keep_their_exit_codes_and_hints() {
    let sb = sandbox();
    let server = serve(
        &sb,
        &sb.path().join("coord"),
        &[],
        &[("CRABBOX_MAX_ACTIVE_LEASES_PER_OWNER", "1")],
    );
    let url = server.url.clone();
    let repo = repo(&sb);
    let id = warm(&sb, &repo, &url, &[])["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The owner's active-lease cap: 429 with a hint to release one.
    let out = at(&sb, &repo, &url, &["warmup"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cost_limit_exceeded")
            && stderr(&out).contains("hint: release a lease"),
        "{}",
        stderr(&out)
    );
    // A provider the coordinator does not offer: 424, exit 2, with a hint.
    let out = at(&sb, &repo, &url, &["warmup", "--provider", "ssh"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("provider_not_configured")
            && stderr(&out).contains("hint: pick a provider this coordinator offers"),
        "{}",
        stderr(&out)
    );

    // Another user's lease is invisible: exit 4 with a hint, not a bare 404.
    let key = std::fs::read_to_string(key_dir(&sb, &id).join("id_ed25519.pub")).unwrap();
    let (status, other) = http(
        "POST",
        &format!("{url}/v1/leases"),
        ADMIN,
        &["x-crabbox-owner: other@example.com"],
        Some(&serde_json::json!({"provider": "local", "sshPublicKey": key.trim()})),
    );
    assert_eq!(status, 201, "{other}");
    let theirs = other["lease"]["id"].as_str().unwrap().to_owned();
    let out = at(&sb, &repo, &url, &["stop", &theirs]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not found on coordinator")
            && stderr(&out).contains("other users' leases are not visible to you"),
        "{}",
        stderr(&out)
    );
    let (status, _) = http(
        "POST",
        &format!("{url}/v1/admin/leases/{theirs}/release"),
        ADMIN,
        &[],
        Some(&serde_json::json!({"delete": true})),
    );
    assert_eq!(status, 200);

    // Logged in, then out: the coordinator's 401 is exit 3 with a login hint, and stop keeps
    // the claim (it was exit 7, and status showed the stale claim as ready).
    let out = crate::output_with_stdin(
        &mut sb.crabbox(&repo, &["login", "--url", &url, "--token-stdin"]),
        SHARED,
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = sb.run(&repo, &["logout"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    for args in [["stop", id.as_str()], ["status", id.as_str()]] {
        let out = sb.run(&repo, &args);
        assert_eq!(code(&out), 3, "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("hint: run `crabbox login --url {url}`")),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(!stdout(&out).contains("state=ready"), "{}", stdout(&out));
    }
    assert!(claim_path(&sb, &id).is_file());

    // The coordinator down: lookups say unreachable (not "not found"), and warmup gives up
    // within seconds, saying so while it retries, with a hint naming the coordinator.
    drop(server);
    let out = at(&sb, &repo, &url, &["status", "foo"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        !err.contains("not found")
            && err.contains(&format!(
                "could not look up lease \"foo\" on coordinator {url}"
            ))
            && err.contains(&format!("hint: is the coordinator at {url} running"))
            && err.contains("crabbox whoami"),
        "{err}"
    );
    let began = std::time::Instant::now();
    let out = at(&sb, &repo, &url, &["warmup"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("retrying the same create")
            && err.contains(&format!("hint: is the coordinator at {url} running"))
            && err.contains("crabbox doctor"),
        "{err}"
    );
    assert!(
        began.elapsed() < Duration::from_secs(45),
        "gave up after {:?}",
        began.elapsed()
    );
    // Clean up the first lease on a coordinator started on the same state.
    let server = serve(&sb, &sb.path().join("coord"), &[], &[]);
    let (status, _) = http(
        "POST",
        &format!("{}/v1/admin/leases/{id}/release", server.url),
        ADMIN,
        &[],
        Some(&serde_json::json!({"delete": true})),
    );
    assert_eq!(status, 200);
}

/// Releases a lease on the coordinator itself (as an admin, an expiry or another shell
/// would), and waits until it has deleted the runner.
fn release_on_coordinator(url: &str, id: &str) {
    let (status, body) = http(
        "POST",
        &format!("{url}/v1/leases/{id}/release"),
        SHARED,
        &[],
        Some(&serde_json::json!({"delete": true})),
    );
    assert_eq!(status, 200, "{body}");
    wait_until("the runner's cleanup", Duration::from_secs(20), || {
        let lease = coordinator_lease(url, id);
        lease["cleanupStartedAt"].is_null() && lease["state"] == "released"
    });
}

#[test]
fn no_ssh_master_outlives_a_brokered_lease() {
    let sb = sandbox();
    let server = serve(&sb, &sb.path().join("coord"), &[], &[]);
    let repo = sb.work().join("repo");
    git_repo(&repo, &[("a", "a\n")]);

    // A fresh lease: heartbeats and telemetry sample the runner over its master while the
    // command runs (every 5 s and 1 s here); once the lease is released none is left.
    let out = sb
        .crabbox(&repo, &["run", "--idle-timeout", "15s", "--", "sleep", "6"])
        .env("CRABBOX_COORDINATOR", &server.url)
        .env("CRABBOX_COORDINATOR_TOKEN", SHARED)
        .env("CRABBOX_RUN_TELEMETRY_INTERVAL", "1s")
        .output()
        .expect("crabbox runs");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(sb.ssh_masters(), Vec::<u32>::new(), "after a brokered run");

    // A kept lease, used by a run, keeps its master until `stop` ends it.
    let in_use = || {
        let lease = warm(&sb, &repo, &server.url, &[]);
        let id = lease["id"].as_str().unwrap().to_owned();
        let run = at(&sb, &repo, &server.url, &["run", "--id", &id, "--", "true"]);
        assert_eq!(code(&run), 0, "{}", stderr(&run));
        assert!(
            !sb.ssh_masters().is_empty(),
            "a warm lease keeps its master"
        );
        id
    };
    let id = in_use();
    let stop = at(&sb, &repo, &server.url, &["stop", &id]);
    assert_eq!(code(&stop), 0, "{}", stderr(&stop));
    assert_eq!(sb.ssh_masters(), Vec::<u32>::new(), "after stop");

    // A lease the coordinator releases itself (here: through its API, as an admin or an
    // expiry would): deleting the runner ends its connections, and the master with them.
    let id = in_use();
    release_on_coordinator(&server.url, &id);
    assert_eq!(
        sb.ssh_masters(),
        Vec::<u32>::new(),
        "after the coordinator deleted the runner"
    );
}

#[test]
fn list_refresh_forgets_claims_of_leases_the_coordinator_ended() {
    let sb = sandbox();
    let server = serve(&sb, &sb.path().join("coord"), &[], &[]);
    let repo = sb.work().join("repo");
    git_repo(&repo, &[("a", "a\n")]);
    let kept = warm(&sb, &repo, &server.url, &[]);
    let ended = warm(&sb, &repo, &server.url, &[]);
    let (kept, ended) = (kept["id"].as_str().unwrap(), ended["id"].as_str().unwrap());
    release_on_coordinator(&server.url, ended);

    // Plain `list` shows the ended lease from its claim, as the coordinator reports it.
    let plain = at(&sb, &repo, &server.url, &["list"]);
    assert!(
        stdout(&plain).contains(&format!("lease={ended}")),
        "{}",
        stdout(&plain)
    );
    let out = at(&sb, &repo, &server.url, &["list", "--refresh"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("forgot stale lease id={ended}"))
            && stderr(&out).contains("reason=released"),
        "{}",
        stderr(&out)
    );
    assert!(
        !stdout(&out).contains(&format!("lease={ended}")),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains(&format!("lease={kept}")),
        "{}",
        stdout(&out)
    );
    assert!(!claim_path(&sb, ended).exists() && !key_dir(&sb, ended).exists());
    assert!(claim_path(&sb, kept).exists());
}
