//! The CLI against a real `crabbox coordinator serve` process: login, brokered runs with run
//! records, history/logs/usage/admin, a coordinator killed mid-create, and two replicas on one
//! PostgreSQL database racing the same creates and expiries.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crabbox_test_support::{Sandbox, code, curl, git_repo, stderr, stdout};
use serde_json::Value;

use crate::sandbox;

pub(crate) const SHARED: &str = "shared-token-0123456789abcdef";
pub(crate) const ADMIN: &str = "admin-token-0123456789abcdef";

/// A coordinator process.
pub(crate) struct Server {
    child: Child,
    pub(crate) url: String,
}

impl Server {
    /// SIGKILL: no draining, no closing of the store.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn serve(
    sb: &Sandbox,
    state_dir: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Server {
    let mut cmd: Command = sb.crabbox(sb.path(), &["coordinator", "serve"]);
    if !extra.contains(&"--listen") {
        cmd.args(["--listen", "127.0.0.1:0"]);
    }
    cmd.arg("--state-dir").arg(state_dir).args(extra);
    cmd.env("CRABBOX_SHARED_TOKEN", SHARED)
        .env("CRABBOX_ADMIN_TOKEN", ADMIN)
        .env("CRABBOX_SHARED_OWNER", "dev@example.com")
        .env("CRABBOX_DEFAULT_ORG", "example-org");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("coordinator starts");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr"));
    let mut url = None;
    let mut seen = String::new();
    for _ in 0..200 {
        let mut line = String::new();
        if lines.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        seen.push_str(&line);
        if let Some(rest) = line
            .trim()
            .strip_prefix("crabbox coordinator listening on ")
        {
            url = Some(rest.to_owned());
            break;
        }
    }
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = String::new();
        while lines.read_line(&mut sink).unwrap_or(0) > 0 {
            sink.clear();
        }
    });
    let url = url.unwrap_or_else(|| panic!("coordinator did not start:\n{seen}"));
    Server { child, url }
}

/// A CLI command logged in to `server` with the shared token (via env, like CI would).
fn cli(sb: &Sandbox, dir: &Path, server: &Server, args: &[&str]) -> std::process::Output {
    sb.crabbox(dir, args)
        .env("CRABBOX_COORDINATOR", &server.url)
        .env("CRABBOX_COORDINATOR_TOKEN", SHARED)
        .env("CRABBOX_COORDINATOR_ADMIN_TOKEN", ADMIN)
        .output()
        .expect("crabbox runs")
}

pub(crate) fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(out), stderr(out)))
}

pub(crate) fn runner_dirs(state_dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(state_dir.join("local"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

pub(crate) fn live_sshds(state_dir: &Path) -> usize {
    runner_dirs(state_dir)
        .iter()
        .filter_map(|d| std::fs::read_to_string(d.join("sshd/sshd.pid")).ok())
        .filter_map(|p| p.trim().parse::<i32>().ok())
        .filter(|pid| Path::new(&format!("/proc/{pid}")).exists())
        .count()
}

pub(crate) fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn login_then_brokered_runs_leave_history_logs_and_usage() {
    let sb = sandbox();
    let state = sb.path().join("coord");
    let server = serve(&sb, &state, &[], &[]);
    let repo = sb.work().join("repo");
    git_repo(&repo, &[("hello.txt", "hi\n")]);

    // login --token-stdin writes the user config 0600 and checks the token.
    let out = crate::output_with_stdin(
        &mut sb.crabbox(&repo, &["login", "--url", &server.url, "--token-stdin"]),
        SHARED,
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("user=dev@example.com"),
        "{}",
        stdout(&out)
    );
    let config = sb.path().join("config/crabbox/config.yaml");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&config).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let out = sb.run(&repo, &["whoami", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(json(&out)["owner"], "dev@example.com");
    let doctor = sb.run(&repo, &["doctor"]);
    assert!(
        stdout(&doctor).contains("ok coord ")
            && stdout(&doctor).contains("ok broker user=dev@example.com"),
        "{}",
        stdout(&doctor)
    );

    // A brokered run: output streams back, the exit code passes through, a record is kept.
    let out = sb.run(
        &repo,
        &[
            "run",
            "--",
            "sh",
            "-c",
            "cat hello.txt; echo to-err >&2; exit 3",
        ],
    );
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(stdout(&out), "hi\n");
    assert!(stderr(&out).contains("to-err"));
    let run_id = stderr(&out)
        .lines()
        .find_map(|l| l.strip_prefix("recording run "))
        .unwrap_or_else(|| panic!("no run record: {}", stderr(&out)))
        .trim()
        .to_owned();
    let history = json(&sb.run(&repo, &["history", "--json"]));
    assert_eq!(history[0]["id"], run_id.as_str());
    assert_eq!(history[0]["state"], "failed");
    assert_eq!(history[0]["exitCode"], 3);
    assert_eq!(history[0]["command"][0], "sh");
    // Start and end telemetry came from the runner over ssh (Linux /proc and df).
    for end in ["start", "end"] {
        let sample = &history[0]["telemetry"][end];
        assert_eq!(sample["source"], "ssh-linux", "{}", history[0]);
        assert!(sample["cpuCount"].as_u64().unwrap() >= 1, "{sample}");
        assert!(sample["memoryTotalBytes"].as_u64().unwrap() > 0, "{sample}");
        assert!(sample["diskPercent"].as_f64().is_some(), "{sample}");
    }
    let logs = sb.run(&repo, &["logs", &run_id]);
    assert_eq!(code(&logs), 0, "{}", stderr(&logs));
    assert!(
        stdout(&logs).contains("hi\n") && stdout(&logs).contains("to-err"),
        "{}",
        stdout(&logs)
    );
    let events = json(&sb.run(&repo, &["events", &run_id, "--json"]));
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert!(
        kinds.starts_with(&["run.started", "leasing.started", "lease.created"]),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&"command.started")
            && kinds.ends_with(&["command.finished", "lease.released"]),
        "{kinds:?}"
    );
    // The fresh lease was released and the coordinator deletes its runner.
    wait_until("the runner to be deleted", Duration::from_secs(20), || {
        runner_dirs(&state).is_empty()
    });

    // warmup + run --id reuse the same brokered lease; stop releases it.
    let warm = json(&sb.run(&repo, &["warmup", "--json"]));
    let id = warm["lease"]["id"].as_str().unwrap().to_owned();
    let slug = warm["lease"]["slug"].as_str().unwrap().to_owned();
    let out = sb.run(&repo, &["run", "--id", &slug, "--", "cat", "hello.txt"]);
    assert_eq!(
        (code(&out), stdout(&out).as_str()),
        (0, "hi\n"),
        "{}",
        stderr(&out)
    );
    // Another shell without this machine's claims still finds the lease on the coordinator.
    let elsewhere = sb
        .crabbox(&repo, &["status", &slug, "--json"])
        .env("XDG_STATE_HOME", sb.path().join("other-state"))
        .output()
        .unwrap();
    assert_eq!(code(&elsewhere), 0, "{}", stderr(&elsewhere));
    assert_eq!(json(&elsewhere)["id"], id.as_str());
    let listed = json(&sb.run(&repo, &["list", "--json"]));
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["id"] == id.as_str()),
        "{listed}"
    );
    let admin = json(&cli(&sb, &repo, &server, &["admin", "leases", "--json"]));
    assert_eq!(admin.as_array().unwrap().len(), 2, "{admin}");
    let out = sb.run(&repo, &["stop", &id]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    wait_until(
        "the warm runner to be deleted",
        Duration::from_secs(20),
        || runner_dirs(&state).is_empty(),
    );

    let usage = json(&sb.run(&repo, &["usage", "--json"]));
    assert_eq!(usage["usage"]["leases"], 2, "{usage}");
    assert_eq!(usage["usage"]["activeLeases"], 0, "{usage}");

    // Logged out, the coordinator refuses: exit 3 with a hint to log in.
    assert_eq!(code(&sb.run(&repo, &["logout"])), 0);
    let out = sb.run(&repo, &["whoami"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("crabbox login"), "{}", stderr(&out));
    let doctor = sb.run(&repo, &["doctor"]);
    assert_eq!(code(&doctor), 1);
    assert!(
        stdout(&doctor).contains("failed broker"),
        "{}",
        stdout(&doctor)
    );
}

#[test]
fn a_coordinator_killed_mid_create_leaks_nothing_after_restart() {
    let sb = sandbox();
    let state = sb.path().join("coord");
    // A slow sshd start widens the window in which the lease is provisioning.
    let wrapper = sb.sshd_wrapper("slow-sshd", "sleep 1", "");
    let mut server = serve(
        &sb,
        &state,
        &["--provisioning-settle-seconds", "1"],
        &[("CRABBOX_SSHD", wrapper.to_str().unwrap())],
    );
    let repo = sb.work().join("repo");
    git_repo(&repo, &[("a.txt", "a\n")]);
    let mut warmup = sb
        .crabbox(&repo, &["warmup", "--json"])
        .env("CRABBOX_COORDINATOR", &server.url)
        .env("CRABBOX_COORDINATOR_TOKEN", SHARED)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the lease to be reserved", Duration::from_secs(20), || {
        !runner_dirs(&state).is_empty()
    });
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    // The CLI would keep retrying its token-bound create through the outage; stop it here.
    let _ = warmup.kill();
    let _ = warmup.wait();

    let server = serve(&sb, &state, &["--provisioning-settle-seconds", "1"], &[]);
    // The interrupted create is recovered: its runner removed and the lease marked failed.
    wait_until("recovery", Duration::from_secs(30), || {
        let leases = json(&cli(&sb, &repo, &server, &["admin", "leases", "--json"]));
        leases
            .as_array()
            .is_some_and(|l| l.len() == 1 && l[0]["state"] != "provisioning")
    });
    let leases = json(&cli(&sb, &repo, &server, &["admin", "leases", "--json"]));
    let state_now = leases[0]["state"].as_str().unwrap().to_owned();
    if state_now == "active" {
        // The create finished before the kill: releasing it must still clean up.
        let id = leases[0]["id"].as_str().unwrap().to_owned();
        assert_eq!(
            code(&cli(
                &sb,
                &repo,
                &server,
                &["admin", "delete", &id, "--force"]
            )),
            0
        );
    } else {
        assert_eq!(state_now, "failed", "{leases}");
    }
    wait_until("no runner left", Duration::from_secs(20), || {
        live_sshds(&state) == 0 && runner_dirs(&state).is_empty()
    });
}

fn postgres_url() -> String {
    std::env::var("CRABBOX_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

pub(crate) fn http(method: &str, url: &str, token: &str, body: Option<&Value>) -> (u16, Value) {
    let mut args = vec![
        "-X".to_owned(),
        method.into(),
        "-w".into(),
        "\n%{http_code}".into(),
        "-H".into(),
        format!("authorization: Bearer {token}"),
    ];
    if let Some(b) = body {
        args.extend([
            "-H".into(),
            "content-type: application/json".into(),
            "--data".into(),
            b.to_string(),
        ]);
    }
    args.push(url.to_owned());
    let out = curl().args(&args).output().expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        status.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

#[test]
fn two_replicas_on_one_postgres_never_provision_twice_and_expire_once() {
    let sb = sandbox();
    let state = sb.path().join("coord");
    let schema = format!("cbx_it_{}", std::process::id());
    let db = postgres_url();
    let args = [
        "--database-url",
        db.as_str(),
        "--database-schema",
        schema.as_str(),
    ];
    let a = serve(&sb, &state, &args, &[]);
    let b = serve(&sb, &state, &args, &[]);
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDQ4PxYkQ3H0y6Tq0r7WnZ1x0a0n4gkTzK8cZ6vX3bS2 it";

    // Both replicas get the same ten fixed-id creates at once.
    let mut handles = Vec::new();
    for i in 0..10 {
        for url in [a.url.clone(), b.url.clone()] {
            let id = format!("cbx_00000000{i:04x}");
            handles.push(std::thread::spawn(move || {
                let body = serde_json::json!({"provider": "local", "sshPublicKey": key, "idleTimeoutSeconds": 3, "keep": true});
                http("PUT", &format!("{url}/v1/leases/{id}"), SHARED, Some(&body))
            }));
        }
    }
    let results: Vec<(u16, Value)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let created = results.iter().filter(|(s, _)| *s == 201).count();
    assert_eq!(created, 10, "{results:?}");
    assert!(
        results
            .iter()
            .all(|(s, _)| matches!(s, 200 | 201 | 202 | 409)),
        "{results:?}"
    );
    assert_eq!(
        runner_dirs(&state).len(),
        10,
        "a lease was provisioned twice"
    );

    // Exactly one replica runs the reconciler; it expires every lease exactly once.
    let leader = |url: &str| {
        curl()
            .arg(format!("{url}/metrics"))
            .output()
            .is_ok_and(|o| {
                String::from_utf8_lossy(&o.stdout).contains("crabbox_reconciler_leader 1")
            })
    };
    wait_until("a leader", Duration::from_secs(10), || {
        leader(&a.url) || leader(&b.url)
    });
    assert!(!(leader(&a.url) && leader(&b.url)), "two replicas lead");
    wait_until("every lease to expire", Duration::from_secs(30), || {
        let (_, body) = http(
            "GET",
            &format!("{}/v1/admin/leases?state=expired&limit=500", a.url),
            ADMIN,
            None,
        );
        body["leases"].as_array().is_some_and(|l| l.len() == 10)
    });
    wait_until(
        "every runner to be deleted",
        Duration::from_secs(20),
        || live_sshds(&state) == 0,
    );
    let (_, all) = http(
        "GET",
        &format!("{}/v1/admin/leases?limit=500", b.url),
        ADMIN,
        None,
    );
    assert_eq!(all["leases"].as_array().unwrap().len(), 10, "{all}");
    drop((a, b));
    let _ = Command::new("psql")
        .args([
            "-X",
            db.as_str(),
            "-c",
            &format!("drop schema if exists {schema} cascade"),
        ])
        .output();
}

#[test]
fn github_browser_login_through_the_cli_against_a_fake_github() {
    use crabbox_test_support::fake_github::{FakeGithub, FakeUser};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let gh = rt.block_on(FakeGithub::start());
    gh.set_oauth_app("cid-test", "csecret-test");
    gh.add_user(FakeUser::new(4242, "octo"));
    gh.set_membership(4242, "example-org", "active");
    gh.set_logged_in(Some(4242));

    let sb = sandbox();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let public = format!("http://127.0.0.1:{port}");
    let listen = format!("127.0.0.1:{port}");
    let gh_url = gh.url();
    let server = serve(
        &sb,
        &sb.path().join("coord"),
        &["--listen", listen.as_str()],
        &[
            ("CRABBOX_PUBLIC_URL", public.as_str()),
            ("CRABBOX_GITHUB_CLIENT_ID", "cid-test"),
            ("CRABBOX_GITHUB_CLIENT_SECRET", "csecret-test"),
            (
                "CRABBOX_SESSION_SECRET",
                "session-secret-for-tests-0123456789",
            ),
            ("CRABBOX_GITHUB_URL", gh_url.as_str()),
            ("CRABBOX_GITHUB_API_URL", gh_url.as_str()),
            ("CRABBOX_GITHUB_ALLOWED_ORGS", "example-org"),
            ("CRABBOX_GITHUB_MEMBERSHIP_CACHE_SECONDS", "0"),
        ],
    );
    assert_eq!(server.url, public);

    let mut login = sb
        .crabbox(sb.path(), &["login", "--url", &server.url, "--no-browser"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Play the browser: open the printed URL and follow every redirect (GitHub's authorize,
    // the coordinator's callback, then the CLI's one-time loopback listener).
    let mut err = BufReader::new(login.stderr.take().unwrap());
    let mut url = None;
    for _ in 0..20 {
        let mut line = String::new();
        if err.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        if line.trim().starts_with("http") {
            url = Some(line.trim().to_owned());
            break;
        }
    }
    let url = url.expect("login printed a URL");
    assert!(url.starts_with(&gh_url), "{url}");
    let browser = curl().args(["-L", &url]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&browser.stdout).contains("login confirmed"),
        "{browser:?}"
    );
    let out = login.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout(&out).contains("user=github:4242"),
        "{}",
        stdout(&out)
    );
    let config = std::fs::read_to_string(sb.path().join("config/crabbox/config.yaml")).unwrap();
    assert!(config.contains("cbxu_"), "the signed user token is stored");
    // The token works, and stops working when GitHub membership is revoked.
    let me = json(&sb.run(sb.path(), &["whoami", "--json"]));
    assert_eq!(
        (me["owner"].as_str(), me["auth"].as_str()),
        (Some("github:4242"), Some("github"))
    );
    gh.remove_membership(4242, "example-org");
    let out = sb.run(sb.path(), &["whoami"]);
    assert_eq!(
        code(&out),
        3,
        "a revoked member must be refused: {}",
        stderr(&out)
    );
    drop(rt);
}

#[test]
fn sigterm_drains_in_flight_requests_and_loses_no_acknowledged_record() {
    let sb = sandbox();
    let state = sb.path().join("coord");
    let mut server = serve(&sb, &state, &[], &[]);
    let url = server.url.clone();
    let mut handles = Vec::new();
    for i in 0..40 {
        let url = url.clone();
        handles.push(std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(i * 5));
            let body =
                serde_json::json!({"provider": "ssh", "target": "linux", "host": "10.0.0.9"});
            (
                i,
                http(
                    "PUT",
                    &format!("{url}/v1/leases/box-{i}/registration"),
                    SHARED,
                    Some(&body),
                )
                .0,
            )
        }));
    }
    std::thread::sleep(Duration::from_millis(60));
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(i32::try_from(server.child.id()).unwrap()).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "graceful shutdown exits 0");
    let acknowledged: Vec<u64> = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|(_, s)| *s == 201)
        .map(|(i, _)| i)
        .collect();
    assert!(
        !acknowledged.is_empty(),
        "no request got through before the signal"
    );
    let server = serve(&sb, &state, &[], &[]);
    for i in acknowledged {
        let (status, body) = http(
            "GET",
            &format!("{}/v1/leases/box-{i}", server.url),
            SHARED,
            None,
        );
        assert_eq!(status, 200, "acknowledged lease box-{i} lost: {body}");
    }
}
