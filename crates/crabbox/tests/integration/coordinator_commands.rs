//! `list --all/--provider`, `status --wait`, `stop --provider` and its wait for the runner's
//! cleanup, `heartbeat`, and `cleanup` of ended brokered leases: the real `crabbox` binary
//! against a real `crabbox coordinator serve` process whose `local` provider starts real sshds.

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use crabbox_test_support::procs::{self, Signal};
use crabbox_test_support::{Sandbox, code, git_repo, stderr, stdout};
use serde_json::Value;

use crate::coordinator::{ADMIN, SHARED, Server, http, json, runner_dirs, serve, wait_until};
use crate::sandbox;

/// `crabbox <args>` in `dir`, brokered by `url` with the shared token plus `env`.
fn at(sb: &Sandbox, dir: &Path, url: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    command(sb, dir, url, args, env)
        .output()
        .expect("crabbox runs")
}

fn command(
    sb: &Sandbox,
    dir: &Path,
    url: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Command {
    let mut cmd = sb.crabbox(dir, args);
    cmd.env("CRABBOX_COORDINATOR", url)
        .env("CRABBOX_COORDINATOR_TOKEN", SHARED);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// `crabbox <args>` running in the background.
fn spawn(sb: &Sandbox, dir: &Path, url: &str, args: &[&str]) -> Child {
    command(sb, dir, url, args, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("crabbox runs")
}

fn finished(mut child: Child) -> Output {
    wait_until("the CLI to exit", Duration::from_mins(1), || {
        child.try_wait().unwrap().is_some()
    });
    child.wait_with_output().unwrap()
}

const WITH_ADMIN: &[(&str, &str)] = &[("CRABBOX_COORDINATOR_ADMIN_TOKEN", ADMIN)];

fn repo(sb: &Sandbox) -> PathBuf {
    let repo = sb.work().join("repo");
    git_repo(&repo, &[("hello.txt", "hi\n")]);
    repo
}

/// Warms a lease (with `env` added) and returns its `warmup --json` view.
fn warm(sb: &Sandbox, dir: &Path, url: &str, extra: &[&str], env: &[(&str, &str)]) -> Value {
    let mut args = vec!["warmup", "--json"];
    args.extend(extra);
    let out = at(sb, dir, url, &args, env);
    assert_eq!(code(&out), 0, "warmup failed: {}", stderr(&out));
    json(&out)["lease"].clone()
}

fn id_of(view: &Value) -> String {
    view["id"].as_str().expect("lease id").to_owned()
}

/// The coordinator's record of a lease, as the admin sees it.
fn coordinator_lease(url: &str, id: &str) -> Value {
    let (status, body) = http("GET", &format!("{url}/v1/leases/{id}"), ADMIN, None);
    assert_eq!(status, 200, "{body}");
    body["lease"].clone()
}

fn claim_path(sb: &Sandbox, id: &str) -> PathBuf {
    sb.path().join(format!("state/crabbox/claims/{id}.json"))
}

fn key_dir(sb: &Sandbox, id: &str) -> PathBuf {
    sb.path().join(format!("config/crabbox/testboxes/{id}"))
}

fn ids(listed: &Value) -> Vec<&str> {
    let mut ids: Vec<&str> = listed
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {listed}"))
        .iter()
        .filter_map(|l| l["id"].as_str())
        .collect();
    ids.sort_unstable();
    ids
}

#[test]
fn list_all_shows_every_owners_leases_and_provider_filters_them() {
    let sb = sandbox();
    let server = serve(&sb, &sb.path().join("coord"), &[], &[]);
    let url = server.url.as_str();
    let repo = repo(&sb);
    let mine = id_of(&warm(&sb, &repo, url, &[], &[]));
    // Carol leases from another machine (her own sandbox), through the admin token.
    let carol_sb = sandbox();
    let carol_repo = self::repo(&carol_sb);
    let carol = id_of(&warm(
        &carol_sb,
        &carol_repo,
        url,
        &[],
        &[
            ("CRABBOX_COORDINATOR_TOKEN", ADMIN),
            ("CRABBOX_OWNER", "carol@example.com"),
        ],
    ));

    // The plain list is the caller's own leases.
    let out = at(&sb, &repo, url, &["list", "--json"], WITH_ADMIN);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(ids(&json(&out)), vec![mine.as_str()]);

    // --all: every owner's live leases, each with its runner's health from the pool.
    let out = at(&sb, &repo, url, &["list", "--all", "--json"], WITH_ADMIN);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let all = json(&out);
    let mut want = vec![mine.as_str(), carol.as_str()];
    want.sort_unstable();
    assert_eq!(ids(&all), want, "{all}");
    for row in all.as_array().unwrap() {
        assert_eq!(row["machine"]["status"], "running", "{row}");
    }
    let carols = all
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == carol.as_str())
        .unwrap();
    assert_eq!(carols["owner"], "carol@example.com", "{carols}");
    let out = at(&sb, &repo, url, &["list", "--all"], WITH_ADMIN);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let line = stdout(&out)
        .lines()
        .find(|l| l.contains(&format!("lease={carol}")))
        .map_or_else(|| panic!("{}", stdout(&out)), str::to_owned);
    assert!(
        line.contains("owner=carol@example.com machine=running"),
        "{line}"
    );

    // Without the admin token, --all says why and lists the caller's own leases.
    let out = at(&sb, &repo, url, &["list", "--all", "--json"], &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(ids(&json(&out)), vec![mine.as_str()]);
    assert!(
        stderr(&out).contains("list --all needs the coordinator's admin token"),
        "{}",
        stderr(&out)
    );

    // --provider keeps one provider's leases, on its own and with --all.
    for (args, want) in [
        (
            vec!["list", "--provider", "local", "--json"],
            vec![mine.as_str()],
        ),
        (vec!["list", "--provider", "ssh", "--json"], vec![]),
        (
            vec!["list", "--all", "--provider", "static", "--json"],
            vec![],
        ),
    ] {
        let out = at(&sb, &repo, url, &args, WITH_ADMIN);
        assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
        assert_eq!(ids(&json(&out)), want, "{args:?}");
    }
    let out = at(
        &sb,
        &repo,
        url,
        &["list", "--all", "--provider", "local", "--json"],
        WITH_ADMIN,
    );
    assert_eq!(ids(&json(&out)).len(), 2, "{}", stdout(&out));
    // A provider chosen by the environment (or a config file) selects like --provider.
    for (provider, want) in [("ssh", vec![]), ("local", vec![mine.as_str()])] {
        let out = at(
            &sb,
            &repo,
            url,
            &["list", "--json"],
            &[("CRABBOX_PROVIDER", provider)],
        );
        assert_eq!(code(&out), 0, "{provider}: {}", stderr(&out));
        assert_eq!(ids(&json(&out)), want, "{provider}");
    }
}

#[test]
fn status_wait_waits_for_a_lease_still_provisioning() {
    let sb = sandbox();
    let state = sb.path().join("coord");
    // The coordinator's runners start only once the gate file exists.
    let gate = sb.path().join("gate");
    let wrapper = sb.sshd_wrapper(
        "gated-sshd",
        &format!("while [ ! -e '{}' ]; do sleep 0.1; done", gate.display()),
        "",
    );
    let server: Server = serve(
        &sb,
        &state,
        &[],
        &[("CRABBOX_SSHD", wrapper.to_str().unwrap())],
    );
    let url = server.url.as_str();
    let repo = repo(&sb);

    let bad = at(
        &sb,
        &repo,
        url,
        &["status", "x", "--wait-timeout", "1s"],
        &[],
    );
    assert_eq!(
        code(&bad),
        2,
        "--wait-timeout needs --wait: {}",
        stderr(&bad)
    );
    let bad = at(
        &sb,
        &repo,
        url,
        &["status", "x", "--wait", "--wait-timeout", "soon"],
        &[],
    );
    assert_eq!(code(&bad), 2, "{}", stderr(&bad));

    let warmup = spawn(&sb, &repo, url, &["warmup", "--json"]);
    let mut id = String::new();
    wait_until(
        "the create to be in flight",
        Duration::from_secs(30),
        || {
            let (_, body) = http(
                "GET",
                &format!("{url}/v1/admin/leases?limit=10"),
                ADMIN,
                None,
            );
            if let Some(l) = body["leases"]
                .as_array()
                .and_then(|ls| ls.iter().find(|l| l["state"] == "provisioning"))
            {
                id = l["id"].as_str().unwrap().to_owned();
            }
            !id.is_empty()
        },
    );

    // Not ready within the timeout: exit 5, naming the state.
    let out = at(
        &sb,
        &repo,
        url,
        &["status", "--wait", "--wait-timeout", "1s", &id],
        &[],
    );
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is not ready after 1s (state=provisioning)"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));

    // --provider naming another provider: exit 4 at once, even while waiting.
    let out = at(
        &sb,
        &repo,
        url,
        &["status", "--wait", "--provider", "aws", &id],
        &[],
    );
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is a provider=local lease, not provider=aws"),
        "{}",
        stderr(&out)
    );

    // Waiting: progress on stderr, then the ready lease on stdout once the runner is up.
    let waiting = spawn(
        &sb,
        &repo,
        url,
        &["status", "--wait", "--provider", "local", "--json", &id],
    );
    std::thread::sleep(Duration::from_secs(1));
    std::fs::write(&gate, "").unwrap();
    let out = finished(waiting);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let view = json(&out);
    assert_eq!(
        (&view["id"], &view["state"], &view["ready"]),
        (
            &Value::from(id.as_str()),
            &Value::from("active"),
            &Value::from(true)
        ),
        "{view}"
    );
    assert!(
        stderr(&out).contains(&format!("waiting for lease {id} state=provisioning")),
        "{}",
        stderr(&out)
    );
    let out = finished(warmup);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    // A lease that ended never becomes ready: exit 5 at once.
    let (status, body) = http(
        "POST",
        &format!("{url}/v1/leases/{id}/release"),
        SHARED,
        Some(&serde_json::json!({"delete": true})),
    );
    assert_eq!(status, 200, "{body}");
    let out = at(&sb, &repo, url, &["status", "--wait", &id], &[]);
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is released; it will not become ready"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn stop_waits_until_the_coordinator_has_deleted_the_runner() {
    let sb = sandbox();
    let state = sb.path().join("coord");
    let server = serve(&sb, &state, &[], &[]);
    let url = server.url.as_str();
    let repo = repo(&sb);
    let id = id_of(&warm(&sb, &repo, url, &[], &[]));

    // --provider names another provider: nothing is touched (exit 4).
    let out = at(&sb, &repo, url, &["stop", "--provider", "aws", &id], &[]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is a provider=local lease, not provider=aws"),
        "{}",
        stderr(&out)
    );
    assert_eq!(coordinator_lease(url, &id)["state"], "active");
    assert!(claim_path(&sb, &id).is_file());

    // When stop returns, the runner is already gone, and so are the claim and key.
    let out = at(&sb, &repo, url, &["stop", "--provider", "local", &id], &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("released lease={id} server=")),
        "{}",
        stderr(&out)
    );
    assert!(runner_dirs(&state).is_empty(), "{:?}", runner_dirs(&state));
    assert!(!claim_path(&sb, &id).exists() && !key_dir(&sb, &id).exists());

    // A runner the coordinator cannot delete: its directory is replaced by a file (after
    // stopping its sshd), so the delete fails and is retried in 5 minutes.
    let id = id_of(&warm(&sb, &repo, url, &[], &[]));
    let runner = state.join("local").join(&id);
    let pid = std::fs::read_to_string(runner.join("sshd/sshd.pid")).unwrap();
    assert!(procs::signal(pid.trim().parse().unwrap(), Signal::TERM));
    let aside = state.join("aside");
    std::fs::rename(&runner, &aside).unwrap();
    std::fs::write(&runner, "not a directory").unwrap();
    let out = at(&sb, &repo, url, &["stop", &id], &[]);
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("has not confirmed its cleanup (deleting the runner failed:")
            && err.contains("local claim and SSH artifacts were preserved")
            && err.contains(&format!("crabbox stop {id}")),
        "{err}"
    );
    assert!(!err.contains("released lease="), "{err}");
    assert!(claim_path(&sb, &id).is_file(), "the claim is kept");
    assert!(
        key_dir(&sb, &id).join("id_ed25519").is_file(),
        "the key is kept"
    );

    // Once an admin deleted the runner, stop confirms the cleanup and forgets the lease.
    std::fs::remove_file(&runner).unwrap();
    std::fs::rename(&aside, &runner).unwrap();
    let (status, body) = http(
        "POST",
        &format!("{url}/v1/admin/leases/{id}/delete"),
        ADMIN,
        Some(&serde_json::json!({})),
    );
    assert_eq!(status, 200, "{body}");
    let out = at(&sb, &repo, url, &["stop", &id], &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("released lease={id}")),
        "{}",
        stderr(&out)
    );
    assert!(!claim_path(&sb, &id).exists() && !key_dir(&sb, &id).exists());
}

#[test]
fn heartbeat_touches_the_lease_with_the_runners_telemetry() {
    let sb = sandbox();
    let server = serve(&sb, &sb.path().join("coord"), &[], &[]);
    let url = server.url.as_str();
    let repo = repo(&sb);
    let warmed = warm(&sb, &repo, url, &["--idle-timeout", "10m"], &[]);
    let id = id_of(&warmed);
    let slug = warmed["slug"].as_str().unwrap().to_owned();

    std::thread::sleep(Duration::from_millis(1100));
    let out = at(
        &sb,
        &repo,
        url,
        &["heartbeat", "--idle-timeout", "20m", "--json", &id],
        &[],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let beat = json(&out);
    let lease = coordinator_lease(url, &id);
    assert_eq!(
        (
            &beat["id"],
            &beat["slug"],
            &beat["provider"],
            &beat["state"]
        ),
        (
            &Value::from(id.as_str()),
            &Value::from(slug.as_str()),
            &Value::from("local"),
            &Value::from("active")
        ),
        "{beat}"
    );
    assert_eq!(beat["idleTimeout"], "20m0s", "{beat}");
    assert_eq!(beat["expiresAt"], lease["expiresAt"], "{beat} {lease}");
    assert_ne!(beat["expiresAt"], warmed["expiresAt"], "{beat}");
    assert_eq!(beat["lastTouchedAt"], lease["lastTouchedAt"], "{beat}");
    assert_eq!(lease["idleTimeoutSeconds"], 1200, "{lease}");
    // The telemetry came from the runner over ssh.
    let t = &lease["telemetry"];
    assert_eq!(t["source"], "ssh-linux", "{lease}");
    assert!(t["cpuCount"].as_u64().unwrap() >= 1, "{t}");
    assert!(t["memoryTotalBytes"].as_u64().unwrap() > 0, "{t}");

    // Human output, by slug.
    let out = at(&sb, &repo, url, &["heartbeat", &slug], &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let line = stdout(&out);
    assert!(
        line.starts_with(&format!(
            "heartbeat lease={id} slug={slug} provider=local state=active idle_timeout=20m0s last_touched="
        )) && line.contains(" expires="),
        "{line}"
    );

    // Bad input and another provider change nothing.
    for (args, want) in [
        (vec!["heartbeat", "--idle-timeout", "0", &id], 2),
        (vec!["heartbeat", "--idle-timeout", "soon", &id], 2),
        (vec!["heartbeat", "--provider", "aws", &id], 4),
        (vec!["heartbeat"], 2),
    ] {
        let out = at(&sb, &repo, url, &args, &[]);
        assert_eq!(code(&out), want, "{args:?}: {}", stderr(&out));
    }
    assert_eq!(coordinator_lease(url, &id)["idleTimeoutSeconds"], 1200);
}

#[test]
fn cleanup_forgets_claims_of_leases_the_coordinator_ended() {
    let sb = sandbox();
    let state = sb.path().join("coord");
    let server = serve(&sb, &state, &[], &[]);
    let url = server.url.as_str();
    let repo = repo(&sb);
    let ended = id_of(&warm(&sb, &repo, url, &[], &[]));
    let live = id_of(&warm(&sb, &repo, url, &[], &[]));

    // Released elsewhere (another shell, the portal): the claim here stays behind.
    let (status, body) = http(
        "POST",
        &format!("{url}/v1/leases/{ended}/release"),
        SHARED,
        Some(&serde_json::json!({"delete": true})),
    );
    assert_eq!(status, 200, "{body}");
    wait_until("the runner to be deleted", Duration::from_secs(20), || {
        coordinator_lease(url, &ended)
            .get("cleanupStartedAt")
            .is_none()
            && runner_dirs(&state).len() == 1
    });
    // Another coordinator's claim: this one cannot speak for it.
    let foreign = "cbx_0000feedface";
    let text = std::fs::read_to_string(claim_path(&sb, &ended)).unwrap();
    std::fs::write(
        claim_path(&sb, foreign),
        text.replace(&ended, foreign)
            .replace(url, "http://127.0.0.1:9"),
    )
    .unwrap();

    let out = at(&sb, &repo, url, &["cleanup", "--dry-run"], &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("would forget lease id={ended} ")),
        "{}",
        stdout(&out)
    );
    assert!(
        claim_path(&sb, &ended).is_file(),
        "a dry run forgets nothing"
    );

    let out = at(&sb, &repo, url, &["cleanup"], &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("forget lease id={ended} "))
            && stdout(&out).contains("reason=released"),
        "{}",
        stdout(&out)
    );
    let err = stderr(&out);
    assert!(
        err.contains(&format!("skip lease id={live} ")) && err.contains("reason=active"),
        "{err}"
    );
    assert!(
        err.contains(&format!("skip lease id={foreign} "))
            && err.contains("reason=other-coordinator coordinator=http://127.0.0.1:9"),
        "{err}"
    );
    assert!(!claim_path(&sb, &ended).exists() && !key_dir(&sb, &ended).exists());
    assert!(claim_path(&sb, &live).is_file() && claim_path(&sb, foreign).is_file());
    assert_eq!(coordinator_lease(url, &live)["state"], "active");
    let listed = json(&at(&sb, &repo, url, &["list", "--json"], &[]));
    assert!(!ids(&listed).contains(&ended.as_str()), "{listed}");
}

/// Spec §1.3: a release the caller's own route refuses (401/404) goes through the admin route
/// when an admin token is configured.
#[test]
fn stop_of_a_lease_this_login_cannot_see_goes_through_the_admin_route() {
    let sb = sandbox();
    let state = sb.path().join("coord");
    let server = serve(&sb, &state, &[], &[]);
    let url = server.url.as_str();
    let repo = repo(&sb);
    // Leased for alice (the admin token acts for the owner it names) on this machine.
    let as_alice = [
        ("CRABBOX_COORDINATOR_TOKEN", ADMIN),
        ("CRABBOX_OWNER", "alice@example.com"),
    ];
    let id = id_of(&warm(&sb, &repo, url, &[], &as_alice));
    assert_eq!(coordinator_lease(url, &id)["owner"], "alice@example.com");

    // The shared-token member cannot see it (404); with the admin token, stop still releases.
    let out = at(&sb, &repo, url, &["stop", &id], WITH_ADMIN);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("through the admin route"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains(&format!("released lease={id} server=")),
        "{}",
        stderr(&out)
    );
    assert_eq!(coordinator_lease(url, &id)["state"], "released");
    assert!(runner_dirs(&state).is_empty(), "{:?}", runner_dirs(&state));
    assert!(!claim_path(&sb, &id).exists());
}
