//! `--provider hetzner` end to end: the real binary and its Hetzner client against the
//! stateful Hetzner fake, with the boot emulator booting the servers, inside a loopback-only
//! network namespace (docs/design/cloud-testing.md). Direct and brokered.

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use crabbox_test_support::boot_emulator::BootEmulator;
use crabbox_test_support::fake_hetzner::{FakeHetzner, Fault};
use crabbox_test_support::{Sandbox, code, git_repo, loopback_only, stderr, stdout};

/// The fake, the boot emulator watching it, and a sandboxed CLI pointed at them.
struct Hetzner {
    fake: FakeHetzner,
    emulator: BootEmulator,
    sb: Sandbox,
    repo: PathBuf,
}

impl Hetzner {
    fn start() -> Self {
        let fake = FakeHetzner::start();
        let emulator = BootEmulator::watch(fake.cloud());
        let sb = crate::sandbox();
        let repo = sb.work().join("repo");
        git_repo(&repo, &[("hello.txt", "hello from the laptop\n")]);
        Self {
            fake,
            emulator,
            sb,
            repo,
        }
    }

    /// The settings the product needs for the fake and the emulated runners.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("HCLOUD_TOKEN", FakeHetzner::TOKEN.to_owned()),
            ("HCLOUD_ENDPOINT", self.fake.url()),
            ("CRABBOX_SSH_USER", self.emulator.ssh_user().to_owned()),
            (
                "CRABBOX_WORK_ROOT",
                self.emulator.work_root().display().to_string(),
            ),
            ("CRABBOX_READY_TIMEOUT", "60s".to_owned()),
        ]
    }

    fn crabbox(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.sb.crabbox(&self.repo, args);
        cmd.env("CRABBOX_PROVIDER", "hetzner").envs(self.env());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("crabbox runs")
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.crabbox(args, &[]);
        assert_eq!(code(&out), 0, "crabbox {args:?} failed: {}", stderr(&out));
        out
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.ok(args);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("crabbox {args:?}: not JSON ({e}): {}", stdout(&out)))
    }

    /// How often each route reached the fake since the last look; every one must be a call
    /// `admin providers policy --provider hetzner` lists.
    fn take_calls(&self) -> Vec<(String, usize)> {
        let policy = self.json(&["admin", "providers", "policy", "--provider", "hetzner"]);
        let listed: Vec<&str> = policy["calls"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(serde_json::Value::as_str)
            .collect();
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        for call in self.fake.calls() {
            assert!(
                listed.contains(&call.route.as_str()),
                "{} is not in the policy's calls: {listed:?}",
                call.route
            );
            *counts.entry(call.route).or_default() += 1;
        }
        self.fake.reset_calls();
        counts.into_iter().collect()
    }

    fn assert_nothing_left(&self) {
        assert!(self.fake.servers().is_empty(), "a server is left");
        assert!(self.fake.ssh_keys().is_empty(), "an SSH key is left");
    }
}

fn counts(expected: &[(&str, usize)]) -> Vec<(String, usize)> {
    expected
        .iter()
        .map(|(a, n)| ((*a).to_owned(), *n))
        .collect()
}

fn lease_id(warmup: &serde_json::Value) -> String {
    warmup["lease"]["id"].as_str().expect("lease id").to_owned()
}

#[test]
fn warmup_run_stop_on_a_hetzner_server_leaves_nothing_behind() {
    loopback_only!();
    let cloud = Hetzner::start();
    let out = cloud.ok(&["warmup", "--class", "standard"]);
    assert!(
        stdout(&out).contains("market=on-demand"),
        "the price is shown: {}",
        stdout(&out)
    );
    let servers = cloud.fake.servers();
    assert_eq!(servers.len(), 1);
    let server_id = servers[0]["id"].to_string();
    assert_eq!(servers[0]["server_type"]["name"], "ccx33");
    assert_eq!(
        cloud.take_calls(),
        counts(&[
            ("GET /actions/{id}", 1),
            // The view warmup prints asks whether the server still runs.
            ("GET /server_types", 1),
            ("GET /servers/{id}", 1),
            ("POST /servers", 1),
            ("POST /ssh_keys", 1),
        ]),
        "API calls per create"
    );
    let runner = cloud
        .emulator
        .wait_for_runner(&server_id, Duration::from_secs(30));
    assert_eq!(runner.user.as_deref(), Some(cloud.emulator.ssh_user()));
    let text = format!("{}{}", stdout(&out), stderr(&out));
    let id = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .find(|w| w.starts_with("cbx_"))
        .map_or_else(|| panic!("warmup names the lease: {text}"), str::to_owned);

    let out = cloud.crabbox(
        &[
            "run",
            "--id",
            &id,
            "--",
            "sh",
            "-c",
            "cat hello.txt; exit 7",
        ],
        &[],
    );
    assert_eq!(code(&out), 7, "the remote exit code: {}", stderr(&out));
    assert!(
        stdout(&out).contains("hello from the laptop"),
        "{}",
        stdout(&out)
    );

    // A heartbeat writes the new clock onto the server's labels, keeping the others.
    cloud.take_calls();
    cloud.ok(&["heartbeat", &id, "--idle-timeout", "45m"]);
    assert_eq!(
        cloud.take_calls(),
        counts(&[("GET /servers/{id}", 1), ("PUT /servers/{id}", 1)]),
        "API calls per heartbeat"
    );
    let labels = &cloud.fake.servers()[0]["labels"];
    assert_eq!(labels["idle_timeout_secs"], "2700", "{labels}");
    assert_eq!(labels["lease"], id.as_str());
    let inspect = cloud.json(&["inspect", "--id", &id, "--json"]);
    assert!(inspect.to_string().contains("ccx33"), "{inspect}");

    cloud.take_calls();
    cloud.ok(&["stop", &id]);
    assert_eq!(
        cloud.take_calls(),
        counts(&[("DELETE /servers/{id}", 1), ("DELETE /ssh_keys/{id}", 1)]),
        "API calls per release"
    );
    cloud.assert_nothing_left();
    cloud
        .emulator
        .wait_for_shutdown(&server_id, Duration::from_secs(30));
}

#[test]
fn brokered_hetzner_leases_use_the_coordinators_token_only() {
    loopback_only!();
    let cloud = Hetzner::start();
    let state = cloud.sb.path().join("coordinator-state");
    let env = cloud.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = crate::coordinator::serve(&cloud.sb, &state, &["--providers", "hetzner"], &env);
    cloud.fake.inject(
        Fault::refuse(
            "POST /servers",
            412,
            "resource_unavailable",
            "error during placement",
        )
        .when("server_type", "ccx23"),
    );
    let cli = |args: &[&str]| {
        let mut cmd = cloud.sb.crabbox(&cloud.repo, args);
        cmd.env_remove("HCLOUD_TOKEN")
            .env("CRABBOX_COORDINATOR", &server.url)
            .env("CRABBOX_COORDINATOR_TOKEN", crate::coordinator::SHARED)
            .env("CRABBOX_PROVIDER", "hetzner");
        cmd.output().expect("crabbox runs")
    };
    let out = cli(&["warmup", "--class", "small", "--json"]);
    assert_eq!(code(&out), 0, "brokered warmup: {}", stderr(&out));
    let id = lease_id(&serde_json::from_slice(&out.stdout).unwrap());
    let servers = cloud.fake.servers();
    assert_eq!(servers.len(), 1);
    assert_eq!(
        servers[0]["server_type"]["name"], "cpx32",
        "fell back past ccx23"
    );
    let out = cli(&["inspect", "--id", &id, "--json"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("resource_unavailable"), "attempts: {text}");

    let out = cli(&["run", "--id", &id, "--", "cat", "hello.txt"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("hello from the laptop"));
    let out = cli(&["stop", &id]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    crate::coordinator::wait_until("the server deleted", Duration::from_secs(30), || {
        cloud.fake.servers().is_empty() && cloud.fake.ssh_keys().is_empty()
    });
}

#[test]
fn bad_input_and_bad_tokens_are_clear_errors_and_create_nothing() {
    loopback_only!();
    let cloud = Hetzner::start();
    let out = cloud.crabbox(&["warmup"], &[("HCLOUD_TOKEN", "wrong")]);
    assert_eq!(code(&out), 3, "auth failures exit 3: {}", stderr(&out));
    assert!(stderr(&out).contains("HCLOUD_TOKEN"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("wrong"), "the token never prints");

    let out = cloud.crabbox(&["warmup"], &[("CRABBOX_HETZNER_LOCATION", "mars1")]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("check hetzner.location / CRABBOX_HETZNER_LOCATION"),
        "{}",
        stderr(&out)
    );

    let out = cloud.crabbox(&["warmup", "--market", "spot"], &[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("no spot market"), "{}", stderr(&out));

    let out = cloud.crabbox(&["warmup", "--class", "c7a.large"], &[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("unknown class"), "{}", stderr(&out));
    cloud.assert_nothing_left();
}

#[test]
fn doctor_identity_and_cleanup_of_unclaimed_servers() {
    loopback_only!();
    let cloud = Hetzner::start();
    let out = cloud.ok(&["doctor", "--provider", "hetzner"]);
    assert!(stdout(&out).contains("auth=ready"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("default_type=ccx63"),
        "{}",
        stdout(&out)
    );
    let who = cloud.json(&[
        "admin",
        "providers",
        "identity",
        "--provider",
        "hetzner",
        "--json",
    ]);
    assert_eq!(who["tokenFrom"], "HCLOUD_TOKEN");

    let id = lease_id(&cloud.json(&["warmup", "--json"]));
    let claim = walk(cloud.sb.path())
        .into_iter()
        .find(|p| p.ends_with(format!("claims/{id}.json")))
        .expect("the lease's claim file");
    std::fs::remove_file(&claim).unwrap();
    let out = cloud.ok(&["list", "--refresh"]);
    assert!(
        stderr(&out).contains("orphan=no-active-lease"),
        "{}",
        stderr(&out)
    );
    let out = cloud.ok(&["cleanup"]);
    assert!(
        stderr(&out).contains("reason=orphan keep=true"),
        "{}",
        stderr(&out)
    );
    assert_eq!(cloud.fake.servers().len(), 1);
    // Its labels, rewritten behind the product's back: not kept, long past its TTL.
    let server = cloud.fake.servers()[0]["id"].as_u64().unwrap();
    let mut labels = cloud.fake.servers()[0]["labels"].clone();
    labels["keep"] = "false".into();
    labels["created_at"] = "1000".into();
    block(
        reqwest::Client::new()
            .put(format!("{}/servers/{server}", cloud.fake.url()))
            .bearer_auth(FakeHetzner::TOKEN)
            .json(&serde_json::json!({ "labels": labels }))
            .send(),
    )
    .unwrap();
    let out = cloud.ok(&["cleanup", "--dry-run"]);
    assert!(
        stdout(&out).contains("would delete orphan"),
        "{}",
        stdout(&out)
    );
    assert_eq!(cloud.fake.servers().len(), 1);
    let out = cloud.ok(&["cleanup"]);
    assert!(
        stdout(&out).contains(&format!("delete orphan lease={id}")),
        "{}",
        stdout(&out)
    );
    cloud.assert_nothing_left();
}

fn block<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn ctrl_c_after_the_create_deletes_the_server_and_key() {
    loopback_only!();
    let cloud = Hetzner::start();
    // A user the runner does not have: the lease never becomes ready, so the signal always
    // arrives during the create or the wait for SSH.
    let mut cmd = cloud.sb.crabbox(&cloud.repo, &["warmup"]);
    cmd.env("CRABBOX_PROVIDER", "hetzner")
        .envs(cloud.env())
        .env("CRABBOX_SSH_USER", "nobody-here");
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("crabbox starts");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while cloud.fake.count("POST /servers") == 0 {
        assert!(std::time::Instant::now() < deadline, "no create seen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    cloud.assert_nothing_left();
}
