//! `--provider aws` end to end, direct mode: the real binary with the official SDK, through the
//! fault proxy, against moto, with the boot emulator booting the instances, all inside a
//! loopback-only network namespace (docs/design/cloud-testing.md).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use crabbox_test_support::boot_emulator::BootEmulator;
use crabbox_test_support::ec2_query::Ec2Query;
use crabbox_test_support::fault_proxy::{Ec2Error, Fault, FaultProxy};
use crabbox_test_support::moto::Moto;
use crabbox_test_support::{Sandbox, code, git_repo, loopback_only, stderr, stdout};

/// moto behind the fault proxy, the boot emulator, and a sandboxed CLI pointed at them.
struct Aws {
    moto: Moto,
    proxy: FaultProxy,
    emulator: BootEmulator,
    sb: Sandbox,
    repo: PathBuf,
}

impl Aws {
    fn start() -> Self {
        Self::start_in(&[crabbox_test_support::moto::DEFAULT_REGION])
    }

    /// With the boot emulator watching `regions`.
    fn start_in(regions: &[&str]) -> Self {
        let moto = Moto::start();
        let proxy = FaultProxy::start(&moto.url());
        let emulator = BootEmulator::start(&moto.url(), regions);
        let sb = crate::sandbox();
        let repo = sb.work().join("repo");
        git_repo(&repo, &[("hello.txt", "hello from the laptop\n")]);
        Self {
            moto,
            proxy,
            emulator,
            sb,
            repo,
        }
    }

    /// `crabbox <args>` in the repository, with AWS settings for moto and the emulated runner
    /// (`env` added last, so it can override them).
    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Command {
        let mut cmd = self.sb.crabbox(&self.repo, args);
        self.moto.configure(&mut cmd, &self.proxy.url());
        cmd.env("CRABBOX_PROVIDER", "aws")
            .env("CRABBOX_AWS_SSH_CIDRS", "127.0.0.0/8")
            .env("CRABBOX_SSH_USER", self.emulator.ssh_user())
            .env("CRABBOX_WORK_ROOT", self.emulator.work_root())
            .env("CRABBOX_READY_TIMEOUT", "60s");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    fn crabbox(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.command(args, env).output().expect("crabbox runs")
    }

    /// No instance runs and no key pair is left.
    fn assert_nothing_left(&self) {
        assert!(
            self.instances("running").is_empty(),
            "an instance still runs"
        );
        assert!(self.key_pairs().is_empty(), "a key pair is left");
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

    /// moto's view, asked directly (not through the proxy, so calls are not counted).
    fn moto_query(
        &self,
        action: &str,
        params: &[(&str, &str)],
    ) -> crabbox_test_support::ec2_query::Ec2Answer {
        let ec2 = Ec2Query::new(&self.moto.url(), self.moto.region());
        block(ec2.ok(action, params))
    }

    /// Instance ids moto holds in `state` (`running`, `terminated`, …).
    fn instances(&self, state: &str) -> Vec<String> {
        self.instances_in(self.moto.region(), state)
    }

    fn instances_in(&self, region: &str, state: &str) -> Vec<String> {
        let ec2 = Ec2Query::new(&self.moto.url(), region);
        block(ec2.ok(
            "DescribeInstances",
            &[
                ("Filter.1.Name", "instance-state-name"),
                ("Filter.1.Value.1", state),
            ],
        ))
        .all("instanceId")
    }

    /// The instance moto holds for `lease` (by its `lease` tag).
    fn instance_of(&self, lease: &str) -> String {
        let found = self
            .moto_query(
                "DescribeInstances",
                &[("Filter.1.Name", "tag:lease"), ("Filter.1.Value.1", lease)],
            )
            .all("instanceId");
        assert_eq!(found.len(), 1, "one instance for {lease}: {found:?}");
        found[0].clone()
    }

    /// Sets a tag on an instance behind the product's back.
    fn tag(&self, instance: &str, key: &str, value: &str) {
        self.moto_query(
            "CreateTags",
            &[
                ("ResourceId.1", instance),
                ("Tag.1.Key", key),
                ("Tag.1.Value", value),
            ],
        );
    }

    /// The user data moto holds for an instance, decoded.
    fn user_data(&self, instance: &str) -> String {
        let encoded = self
            .moto_query(
                "DescribeInstanceAttribute",
                &[("InstanceId", instance), ("Attribute", "userData")],
            )
            .first("value")
            .expect("user data");
        let mut decode = std::process::Command::new("base64")
            .arg("-d")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut decode.stdin.take().unwrap(), encoded.as_bytes()).unwrap();
        String::from_utf8(decode.wait_with_output().unwrap().stdout).unwrap()
    }

    fn key_pairs(&self) -> Vec<String> {
        self.moto_query("DescribeKeyPairs", &[]).all("keyName")
    }
}

fn block<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

impl Aws {
    /// `crabbox coordinator serve --providers aws` with the AWS settings in its environment
    /// (and only there), its state under the sandbox.
    fn coordinator(&self, extra: &[&str]) -> crate::coordinator::Server {
        let state = self.sb.path().join("coordinator-state");
        let mut env: Vec<(&str, String)> = self.moto.env(&self.proxy.url());
        env.push(("CRABBOX_AWS_SSH_CIDRS", "127.0.0.0/8".into()));
        env.push(("CRABBOX_SSH_USER", self.emulator.ssh_user().to_owned()));
        env.push((
            "CRABBOX_WORK_ROOT",
            self.emulator.work_root().display().to_string(),
        ));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut args = vec!["--providers", "aws"];
        args.extend_from_slice(extra);
        crate::coordinator::serve(&self.sb, &state, &args, &env)
    }

    /// `crabbox <args>` against `server`, with no AWS setting in its environment.
    fn brokered_command(
        &self,
        server: &crate::coordinator::Server,
        args: &[&str],
    ) -> std::process::Command {
        let mut cmd = self.sb.crabbox(&self.repo, args);
        for (k, _) in std::env::vars() {
            if k.starts_with("AWS_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("CRABBOX_COORDINATOR", &server.url)
            .env("CRABBOX_COORDINATOR_TOKEN", crate::coordinator::SHARED)
            .env("CRABBOX_COORDINATOR_ADMIN_TOKEN", crate::coordinator::ADMIN)
            .env("CRABBOX_PROVIDER", "aws")
            .env("CRABBOX_READY_TIMEOUT", "60s");
        cmd
    }

    fn brokered(&self, server: &crate::coordinator::Server, args: &[&str]) -> Output {
        self.brokered_command(server, args)
            .output()
            .expect("crabbox runs")
    }

    /// How often each action reached the proxy since the last look, by name; every one of
    /// them must be allowed by the IAM policy the product generates.
    fn take_calls(&self) -> Vec<(String, usize)> {
        let policy = self
            .json(&["admin", "providers", "policy", "--provider", "aws"])
            .to_string();
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        for call in self.proxy.calls() {
            // JSON-protocol services name the action `<Service>.<Action>`.
            let action = call
                .action
                .rsplit('.')
                .next()
                .unwrap_or_default()
                .to_owned();
            assert!(
                policy.contains(&format!(":{action}\"")),
                "{action} is not in the policy: {policy}"
            );
            *counts.entry(action).or_default() += 1;
        }
        self.proxy.reset_calls();
        counts.into_iter().collect()
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
fn warmup_run_stop_on_an_ec2_runner_leaves_nothing_behind() {
    loopback_only!();
    let aws = Aws::start();
    let warm = aws.json(&["warmup", "--class", "standard", "--json"]);
    let id = lease_id(&warm);
    let running = aws.instances("running");
    assert_eq!(running.len(), 1, "one instance: {running:?}");
    // API calls per lease create (docs/PERFORMANCE.md): a first lease in a fresh account also
    // creates the security group and its two rules.
    assert_eq!(
        aws.take_calls(),
        counts(&[
            ("AuthorizeSecurityGroupIngress", 1),
            ("CreateSecurityGroup", 1),
            ("DescribeImages", 1),
            // One look at the instance: the view warmup prints asks whether it still runs.
            ("DescribeInstances", 1),
            ("DescribeSecurityGroups", 1),
            ("DescribeSpotPriceHistory", 1),
            ("DescribeVpcs", 1),
            ("GetServiceQuota", 1),
            ("ImportKeyPair", 1),
            ("RunInstances", 1),
        ])
    );
    let runner = aws
        .emulator
        .wait_for_runner(&running[0], Duration::from_secs(30));
    // The user data made the configured SSH user, with the lease's key.
    assert_eq!(runner.user.as_deref(), Some(aws.emulator.ssh_user()));
    assert_eq!(runner.authorized_keys.len(), 1);
    assert_eq!(
        aws.key_pairs(),
        [format!("crabbox-{}", id.replace('_', "-"))]
    );

    // A heartbeat writes the new clock onto the instance's tags.
    aws.take_calls();
    aws.ok(&["heartbeat", &id, "--idle-timeout", "45m"]);
    assert_eq!(
        aws.take_calls(),
        counts(&[("CreateTags", 1), ("DescribeInstances", 1)])
    );
    let tags = aws.moto_query(
        "DescribeTags",
        &[
            ("Filter.1.Name", "resource-id"),
            ("Filter.1.Value.1", running[0].as_str()),
            ("Filter.2.Name", "key"),
            ("Filter.2.Value.1", "idle_timeout_secs"),
        ],
    );
    assert_eq!(tags.all("value"), ["2700"]);

    let inspect = aws.json(&["inspect", "--id", &id, "--json"]);
    let text = inspect.to_string();
    assert!(
        text.contains("c7a.8xlarge"),
        "the class's first type: {text}"
    );
    assert!(text.contains(&running[0]), "the instance id: {text}");

    let out = aws.crabbox(
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

    aws.take_calls();
    aws.ok(&["stop", &id]);
    assert_eq!(
        aws.take_calls(),
        counts(&[("DeleteKeyPair", 1), ("TerminateInstances", 1)]),
        "API calls per release"
    );
    assert_eq!(aws.instances("running"), Vec::<String>::new());
    assert_eq!(aws.instances("terminated"), running);
    assert_eq!(
        aws.key_pairs(),
        Vec::<String>::new(),
        "the lease's key pair is deleted"
    );
    aws.emulator
        .wait_for_shutdown(&running[0], Duration::from_secs(30));

    // A later lease in the same region remembers the group, image, quota and price for a
    // while (the state directory's aws/<region>.json): the key import and the launch.
    let again = lease_id(&aws.json(&["warmup", "--class", "standard", "--json"]));
    assert_eq!(
        aws.take_calls(),
        counts(&[
            ("DescribeInstances", 1),
            ("ImportKeyPair", 1),
            ("RunInstances", 1),
        ])
    );
    aws.ok(&["stop", &again]);
}

#[test]
fn a_refused_type_falls_back_and_the_attempt_is_recorded() {
    loopback_only!();
    let aws = Aws::start();
    aws.proxy.inject(
        Fault::refuse("RunInstances", Ec2Error::InsufficientInstanceCapacity)
            .when("InstanceType", "c7a.8xlarge"),
    );
    // What a person sees: the price and that something was refused.
    let out = aws.ok(&["warmup", "--class", "standard"]);
    assert!(
        stdout(&out).contains("cost hourly=$0.0000 market=spot"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("1 launch attempt(s) refused"),
        "{}",
        stderr(&out)
    );
    aws.proxy.inject(
        Fault::refuse("RunInstances", Ec2Error::InsufficientInstanceCapacity)
            .when("InstanceType", "c7a.8xlarge"),
    );
    let warm = aws.json(&["warmup", "--class", "standard", "--json"]);
    let id = lease_id(&warm);
    let inspect = aws.json(&["inspect", "--id", &id, "--json"]);
    let text = inspect.to_string();
    assert!(text.contains("c7i.8xlarge"), "the next type: {text}");
    // moto's spot price history quotes 0.00001 USD: the live price, not the table's.
    assert_eq!(inspect["estimatedHourlyUSD"], 0.00001, "{text}");
    assert!(
        text.contains("InsufficientInstanceCapacity"),
        "the refused attempt is shown: {text}"
    );
    aws.ok(&["stop", &id]);
}

#[test]
fn spot_placement_scores_pick_the_region_tried_first_and_are_only_advice() {
    loopback_only!();
    let (home, other) = (crabbox_test_support::moto::DEFAULT_REGION, "us-west-2");
    let aws = Aws::start_in(&[home, other]);
    let regions = [("CRABBOX_CAPACITY_REGIONS", other)];
    aws.proxy
        .set_spot_placement_scores(&[(home, 3), (other, 9), ("ap-south-1", 10)]);
    let out = aws.crabbox(&["warmup", "--class", "tiny", "--json"], &regions);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let id = lease_id(&serde_json::from_slice(&out.stdout).unwrap());
    assert_eq!(
        aws.instances_in(other, "running").len(),
        1,
        "launched where spot scores best"
    );
    assert!(aws.instances_in(home, "running").is_empty());
    let asked = aws.proxy.calls();
    let asked = asked
        .iter()
        .find(|c| c.action == "GetSpotPlacementScores")
        .expect("the scores were asked for");
    assert_eq!(asked.param("TargetCapacity"), Some("1"));
    assert_eq!(asked.param("RegionName.2"), Some(other));
    assert_eq!(code(&aws.crabbox(&["stop", &id], &regions)), 0);

    // On-demand, or a single region: nothing to choose, nothing asked.
    aws.proxy.reset_calls();
    let on_demand = aws.crabbox(&["warmup", "--market", "on-demand", "--json"], &regions);
    assert_eq!(code(&on_demand), 0, "{}", stderr(&on_demand));
    assert_eq!(aws.proxy.count("GetSpotPlacementScores"), 0);
    assert_eq!(
        aws.instances_in(home, "running").len(),
        1,
        "the configured order"
    );
    let id = lease_id(&serde_json::from_slice(&on_demand.stdout).unwrap());
    assert_eq!(code(&aws.crabbox(&["stop", &id], &regions)), 0);

    // moto has no placement scores: the error is a warning and the configured order stands.
    let fresh = Aws::start_in(&[home, other]);
    let out = fresh.crabbox(&["warmup", "--json"], &regions);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(fresh.proxy.count("GetSpotPlacementScores"), 1);
    assert_eq!(fresh.instances_in(home, "running").len(), 1);
    let id = lease_id(&serde_json::from_slice(&out.stdout).unwrap());
    assert_eq!(code(&fresh.crabbox(&["stop", &id], &regions)), 0);
    for region in [home, other] {
        assert!(aws.instances_in(region, "running").is_empty());
        assert!(fresh.instances_in(region, "running").is_empty());
    }
}

#[test]
fn an_exact_type_that_is_refused_fails_without_leaking_and_says_to_drop_type() {
    loopback_only!();
    let aws = Aws::start();
    aws.proxy
        .inject(Fault::refuse("RunInstances", Ec2Error::InsufficientInstanceCapacity).times(10));
    let out = aws.crabbox(
        &["warmup", "--type", "c7a.8xlarge", "--market", "on-demand"],
        &[],
    );
    assert_ne!(code(&out), 0);
    let err = stderr(&out);
    assert!(err.contains("drop --type"), "{err}");
    assert_eq!(aws.proxy.count("RunInstances"), 1, "no fallback for --type");
    assert!(aws.instances("running").is_empty());
    assert!(
        aws.key_pairs().is_empty(),
        "the imported key pair is deleted again"
    );
}

#[test]
fn a_lost_run_instances_reply_is_retried_without_a_second_instance() {
    loopback_only!();
    let aws = Aws::start();
    aws.proxy.inject(Fault::drop_reply("RunInstances"));
    let warm = aws.json(&["warmup", "--class", "standard", "--json"]);
    let id = lease_id(&warm);
    assert_eq!(
        aws.proxy.count("RunInstances"),
        2,
        "the launch was sent again"
    );
    assert_eq!(aws.instances("running").len(), 1, "and made one instance");
    aws.ok(&["stop", &id]);
}

#[test]
fn a_runner_that_never_becomes_ready_is_terminated_with_exit_5() {
    loopback_only!();
    let aws = Aws::start();
    // The cloud-init's user does not exist on the emulated runner, so SSH never lets us in.
    let out = aws.crabbox(
        &["warmup"],
        &[
            ("CRABBOX_SSH_USER", "crabbox"),
            ("CRABBOX_READY_TIMEOUT", "3s"),
        ],
    );
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("never became ready"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("console output ends with"),
        "the hint shows the console output: {}",
        stderr(&out)
    );
    aws.assert_nothing_left();
}

#[test]
fn without_ssh_cidrs_and_no_way_out_the_error_says_what_to_set() {
    loopback_only!();
    let aws = Aws::start();
    let out = aws.crabbox(&["warmup"], &[("CRABBOX_AWS_SSH_CIDRS", "")]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("CRABBOX_AWS_SSH_CIDRS"),
        "{}",
        stderr(&out)
    );
    assert_eq!(aws.proxy.count("RunInstances"), 0, "nothing was launched");
    assert!(aws.key_pairs().is_empty());
}

#[test]
fn brokered_leases_use_the_coordinators_credentials_only() {
    loopback_only!();
    let aws = Aws::start();
    let server = aws.coordinator(&[]);
    // The CLI has no AWS settings at all: everything goes through the coordinator.
    let cli = |args: &[&str]| aws.brokered(&server, args);
    aws.proxy.inject(
        Fault::refuse("RunInstances", Ec2Error::InsufficientInstanceCapacity)
            .when("InstanceType", "c7a.8xlarge"),
    );
    let out = cli(&[
        "warmup",
        "--class",
        "standard",
        "--market",
        "on-demand",
        "--json",
    ]);
    assert_eq!(code(&out), 0, "brokered warmup: {}", stderr(&out));
    let warm: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = lease_id(&warm);
    let running = aws.instances("running");
    assert_eq!(running.len(), 1, "{running:?}");
    let launch = aws
        .proxy
        .calls()
        .into_iter()
        .rfind(|c| c.action == "RunInstances")
        .unwrap();
    assert_eq!(launch.param("InstanceType"), Some("c7i.8xlarge"));
    assert_eq!(
        launch.param("InstanceMarketOptions.MarketType"),
        None,
        "--market on-demand"
    );

    let out = cli(&["inspect", "--id", &id, "--json"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("InsufficientInstanceCapacity"),
        "attempts: {text}"
    );

    let out = cli(&["run", "--id", &id, "--", "cat", "hello.txt"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("hello from the laptop"));

    let out = cli(&["stop", &id]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(aws.instances("terminated"), running);
    assert!(
        aws.key_pairs().is_empty(),
        "the key pair is deleted with the lease"
    );
}

#[test]
fn the_coordinator_sweeps_unaccounted_runners_only_when_their_labels_prove_them_unused() {
    loopback_only!();
    let aws = Aws::start();
    // Direct leases in the coordinator's account: no coordinator record accounts for them.
    let (old, young, kept) = (
        lease_id(&aws.json(&["warmup", "--json"])),
        lease_id(&aws.json(&["warmup", "--json"])),
        lease_id(&aws.json(&["warmup", "--json"])),
    );
    let (old_vm, young_vm, kept_vm) = (
        aws.instance_of(&old),
        aws.instance_of(&young),
        aws.instance_of(&kept),
    );
    aws.tag(&old_vm, "keep", "false");
    aws.tag(&old_vm, "created_at", "1000");
    aws.tag(&young_vm, "keep", "false");
    aws.tag(&kept_vm, "created_at", "1000");
    // The reconciler sweeps at start-up.
    let server = aws.coordinator(&[]);
    // The release terminates the instance, then deletes its key pair: wait for both.
    crate::coordinator::wait_until("the sweep", Duration::from_secs(30), || {
        aws.instances("terminated") == [old_vm.clone()] && aws.key_pairs().len() == 2
    });
    let mut running = aws.instances("running");
    running.sort();
    let mut expected = vec![young_vm, kept_vm];
    expected.sort();
    assert_eq!(
        running, expected,
        "within its TTL, or keep=true: left alone"
    );
    let keys = aws.key_pairs();
    assert_eq!(
        keys.len(),
        2,
        "the orphan's key pair went with it: {keys:?}"
    );
    assert!(
        keys.iter()
            .all(|k| !k.contains(&old.to_ascii_lowercase()[4..]))
    );
    drop(server);
    for id in [&young, &kept] {
        aws.ok(&["stop", id]);
    }
    aws.assert_nothing_left();
}

#[test]
fn cleanup_deletes_unclaimed_runners_only_past_their_ttl_and_list_names_them() {
    loopback_only!();
    let aws = Aws::start();
    let id = lease_id(&aws.json(&["warmup", "--json"]));
    let running = aws.instances("running");
    // Another machine's lease, as this one sees it: no claim here.
    let claim = walk(aws.sb.path())
        .into_iter()
        .find(|p| p.ends_with(format!("claims/{id}.json")))
        .expect("the lease's claim file");
    std::fs::remove_file(&claim).unwrap();

    let out = aws.crabbox(&["list", "--refresh"], &[]);
    assert!(
        stderr(&out).contains(&format!("orphan runner lease={id} server={}", running[0]))
            && stderr(&out).contains("orphan=no-active-lease"),
        "{}",
        stderr(&out)
    );
    // warmup leases carry keep=true: never deleted by cleanup.
    let out = aws.ok(&["cleanup"]);
    assert!(
        stderr(&out).contains("reason=orphan keep=true"),
        "{}",
        stderr(&out)
    );
    // Not kept, but within its TTL: another machine may still be using it.
    let tag = |key: &str, value: &str| {
        aws.moto_query(
            "CreateTags",
            &[
                ("ResourceId.1", running[0].as_str()),
                ("Tag.1.Key", key),
                ("Tag.1.Value", value),
            ],
        );
    };
    tag("keep", "false");
    let out = aws.ok(&["cleanup"]);
    assert!(
        stderr(&out).contains("reason=orphan within its ttl"),
        "{}",
        stderr(&out)
    );
    assert_eq!(aws.instances("running"), running);
    // Long past its TTL: --dry-run only says so, cleanup deletes it and its key pair.
    tag("created_at", "1000");
    let out = aws.ok(&["cleanup", "--dry-run"]);
    assert!(
        stdout(&out).contains("would delete orphan"),
        "{}",
        stdout(&out)
    );
    assert_eq!(aws.instances("running"), running);
    let out = aws.ok(&["cleanup"]);
    assert!(
        stdout(&out).contains(&format!("delete orphan lease={id}")),
        "{}",
        stdout(&out)
    );
    assert_eq!(aws.instances("terminated"), running);
    assert!(aws.key_pairs().is_empty());
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
fn doctor_and_admin_providers_identity_report_the_account() {
    loopback_only!();
    let aws = Aws::start();
    let out = aws.crabbox(&["doctor", "--provider", "aws"], &[]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(text.contains("aws-identity"), "{text}");
    assert!(text.contains("account=123456789012"), "{text}");
    // moto's Service Quotas has no EC2 quotas: reported as unknown, not as a failure.
    assert!(
        text.contains("spot vCPU quota L-34B43A08 in eu-west-1 is unknown"),
        "{text}"
    );
    let who = aws.json(&[
        "admin",
        "providers",
        "identity",
        "--provider",
        "aws",
        "--json",
    ]);
    assert_eq!(who["account"], "123456789012");
    assert_eq!(who["region"], "eu-west-1");
    // Bad credentials: exit 3 with what to set.
    let out = aws.crabbox(
        &["admin", "providers", "identity", "--provider", "aws"],
        &[("AWS_ACCESS_KEY_ID", ""), ("AWS_SECRET_ACCESS_KEY", "")],
    );
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("AWS_PROFILE"), "{}", stderr(&out));
}

#[test]
fn ctrl_c_after_the_launch_deletes_what_the_create_made() {
    loopback_only!();
    let aws = Aws::start();
    // A user the runner does not have: the lease never becomes ready, so the signal always
    // arrives during the create or the wait for SSH.
    let child = aws
        .command(&["warmup"], &[("CRABBOX_SSH_USER", "nobody-here")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("crabbox starts");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while aws.proxy.count("RunInstances") == 0 {
        assert!(std::time::Instant::now() < deadline, "no launch seen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = child.id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    aws.assert_nothing_left();
}

#[test]
fn use_private_ip_reaches_the_runner_at_its_private_address() {
    loopback_only!();
    let aws = Aws::start();
    let out = aws.crabbox(
        &["warmup", "--json"],
        &[("CRABBOX_AWS_USE_PRIVATE_IP", "true")],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let warm: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let running = aws.instances("running");
    let runner = aws
        .emulator
        .wait_for_runner(&running[0], Duration::from_secs(30));
    let private = runner.private_ip.expect("a private address").to_string();
    assert_eq!(warm["lease"]["host"], private.as_str());
    let out = aws.crabbox(
        &["run", "--id", &lease_id(&warm), "--", "cat", "hello.txt"],
        &[],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    aws.ok(&["stop", &lease_id(&warm)]);
}

#[test]
fn bad_input_is_refused_with_a_clear_error_and_nothing_created() {
    loopback_only!();
    let aws = Aws::start();
    for (args, env, says) in [
        (
            vec!["warmup", "--class", "huge"],
            vec![],
            "unknown class \"huge\"",
        ),
        (vec!["warmup", "--type", "beast"], vec![], "beast"),
        (
            vec!["warmup", "--market", "cheap"],
            vec![],
            "spot or on-demand",
        ),
        (vec!["warmup", "--arch", "sparc"], vec![], "x86_64 or arm64"),
        (
            vec!["warmup"],
            vec![("CRABBOX_AWS_SSH_CIDRS", "10.0.0.0/33")],
            "CRABBOX_AWS_SSH_CIDRS",
        ),
        (
            vec!["warmup"],
            vec![("CRABBOX_AWS_AMI", "ami-00000000000000000")],
            "InvalidAMIID",
        ),
    ] {
        let out = aws.crabbox(&args, &env);
        assert_eq!(code(&out), 2, "{args:?} {env:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
        aws.assert_nothing_left();
    }
    assert_eq!(
        aws.proxy.count("RunInstances"),
        1,
        "only the bad image got as far as a launch"
    );

    // A region whose image look-up finds nothing: Canonical's x86_64 images gone from it.
    for image in crabbox_test_support::moto::UBUNTU_IMAGES {
        if image.architecture == "x86_64" {
            aws.moto_query("DeregisterImage", &[("ImageId", image.id)]);
        }
    }
    let out = aws.crabbox(&["warmup"], &[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("no AWS AMI found"), "{err}");
    assert!(
        err.contains("CRABBOX_AWS_AMI"),
        "the hint names the setting: {err}"
    );
    assert_eq!(aws.proxy.count("RunInstances"), 1, "nothing was launched");
    aws.assert_nothing_left();
}

#[test]
fn an_ec2_runner_is_reached_through_a_jump_host() {
    use crate::static_ssh::{Agent, user};
    use crabbox_remote::{keys, sshd};
    loopback_only!();
    let aws = Aws::start();
    let jump = aws.sb.work().join("jump");
    let jump_key = keys::ensure_ed25519(&jump.join("client"), "id_ed25519", "jump").unwrap();
    let bastion = block(sshd::start(
        &jump.join("sshd"),
        &user(),
        &jump_key.public_key().unwrap(),
    ))
    .unwrap();
    let agent = Agent::with_key(&jump, &jump_key.private);
    let hop = format!("{}@127.0.0.1:{}", user(), bastion.port);
    let socket = agent.socket.display().to_string();
    let env = [("SSH_AUTH_SOCK", socket.as_str())];

    let out = aws.crabbox(&["warmup", "--json", "--proxy-jump", &hop], &env);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let id = lease_id(&serde_json::from_slice(&out.stdout).unwrap());
    let out = aws.crabbox(&["run", "--id", &id, "--", "cat", "hello.txt"], &env);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("hello from the laptop"));
    // Without the bastion the runner cannot be reached: it was the way in.
    block(sshd::stop(&jump.join("sshd")));
    let out = aws.crabbox(&["run", "--id", &id, "--", "true"], &env);
    assert_eq!(code(&out), 7, "{}", stderr(&out));
    aws.ok(&["stop", &id]);
    aws.assert_nothing_left();
}

#[test]
fn a_coordinator_killed_after_run_instances_adopts_the_instance_after_restart() {
    loopback_only!();
    let aws = Aws::start();
    // RunInstances acts but its answers are lost, so the coordinator is retrying the launch
    // (with the same ClientToken) when it is killed.
    aws.proxy.inject(Fault::drop_reply("RunInstances").times(5));
    let mut server = aws.coordinator(&["--provisioning-settle-seconds", "1"]);
    let mut warmup = aws
        .brokered_command(&server, &["warmup", "--market", "on-demand"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    crate::coordinator::wait_until("the launch", Duration::from_secs(30), || {
        aws.proxy.count("RunInstances") > 0
    });
    server.kill();
    let _ = warmup.kill();
    let _ = warmup.wait();
    let launched = aws.instances("running");
    assert_eq!(launched.len(), 1, "{launched:?}");

    let server = aws.coordinator(&["--provisioning-settle-seconds", "1"]);
    let admin = |args: &[&str]| -> serde_json::Value {
        let out = aws.brokered(&server, args);
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    };
    crate::coordinator::wait_until("recovery", Duration::from_mins(1), || {
        admin(&["admin", "leases", "--json"])[0]["state"] == "active"
    });
    let lease = &admin(&["admin", "leases", "--json"])[0];
    assert_eq!(
        lease["cloudID"],
        launched[0].as_str(),
        "the same instance: {lease}"
    );
    assert_eq!(aws.instances("running"), launched, "and no second one");
    let id = lease["id"].as_str().unwrap().to_owned();
    let out = aws.brokered(&server, &["admin", "delete", &id, "--force"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    crate::coordinator::wait_until("nothing left", Duration::from_secs(30), || {
        aws.instances("running").is_empty() && aws.key_pairs().is_empty()
    });
}

/// The runbook's Linux verify body (shared/seeds, "2. Verify the source lease"), verbatim.
const RUNBOOK_VERIFY: &str = "set -euo pipefail
   command -v ssh
   command -v git
   command -v rsync
   command -v jq
   command -v node
   command -v pnpm
   command -v ffmpeg
   command -v scrot
   command -v x11vnc
   command -v google-chrome || command -v chromium || command -v chromium-browser
   test -d /work/crabbox
   sudo mkdir -p /var/cache/crabbox/pnpm
   sudo chmod 1777 /var/cache/crabbox /var/cache/crabbox/pnpm";

/// The runbook's candidate smoke body ("Smoke the candidate before promotion"), verbatim.
const RUNBOOK_SMOKE: &str = "set -euo pipefail
   echo image-smoke-ok
   uname -srm
   command -v node
   command -v pnpm
   command -v ffmpeg
   command -v scrot
   command -v google-chrome || command -v chromium || command -v chromium-browser
   test -d /work/crabbox";

/// The first canonical lease id (`cbx_` + 12 hex) in a command's output.
fn cbx_in(text: &str) -> String {
    let at = text
        .find("cbx_")
        .unwrap_or_else(|| panic!("no lease id in: {text}"));
    text[at..at + 16].to_owned()
}

/// The runbook's Linux image lifecycle (shared/seeds, "Bake a Linux candidate AMI by hand"),
/// its commands as written with ids substituted, through a coordinator (admin token), against
/// moto and the boot emulator, whose runners have the runbook's tools, `/work/crabbox` and a
/// desktop display: warm a desktop+browser source lease, verify it, create its image, boot the
/// candidate by `CRABBOX_AWS_AMI`, smoke it and screenshot it, promote it (and with fast
/// snapshot restore), a normal brokered lease boots it and says so, roll back by promoting the
/// earlier image, delete the candidate (its AMI and snapshot gone in moto).
#[test]
fn images_are_created_promoted_selected_rolled_back_and_deleted() {
    loopback_only!();
    let aws = Aws::start();
    let server = aws.coordinator(&[]);
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = aws.brokered_command(&server, args);
        cmd.envs(env.iter().copied());
        cmd.output().expect("crabbox runs")
    };
    let ok = |args: &[&str], env: &[(&str, &str)]| {
        let out = run(args, env);
        assert_eq!(code(&out), 0, "crabbox {args:?}: {}", stderr(&out));
        out
    };
    let ok_json = |args: &[&str], env: &[(&str, &str)]| -> serde_json::Value {
        let out = ok(args, env);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("crabbox {args:?}: not JSON ({e}): {}", stdout(&out)))
    };
    let admin = [("CRABBOX_COORDINATOR_TOKEN", crate::coordinator::ADMIN)];
    let warm_desktop = |ttl: &str, idle: &str, env: &[(&str, &str)]| {
        let out = ok(
            &[
                "warmup",
                "--provider",
                "aws",
                "--class",
                "standard",
                "--desktop",
                "--browser",
                "--ttl",
                ttl,
                "--idle-timeout",
                idle,
            ],
            env,
        );
        (cbx_in(&format!("{}{}", stdout(&out), stderr(&out))), out)
    };
    let run_shell = |id: &str, script: &str, env: &[(&str, &str)]| {
        let out = ok(
            &[
                "run",
                "--provider",
                "aws",
                "--id",
                id,
                "--no-sync",
                "--shell",
                "--",
                script,
            ],
            env,
        );
        stdout(&out)
    };
    // 1. Warm a source lease. 2. Verify it.
    let (source, _) = warm_desktop("2h", "30m", &[]);
    run_shell(&source, RUNBOOK_VERIFY, &[]);
    // 3. Create the candidate image.
    let made = ok_json(
        &[
            "image",
            "create",
            "--id",
            &source,
            "--name",
            "crabbox-linux-desktop-browser-20261206-0800",
            "--wait",
            "--json",
        ],
        &[],
    );
    let ami = made["image"]["id"].as_str().unwrap().to_owned();
    assert!(ami.starts_with("ami-"), "{made}");
    assert_eq!(made["image"]["state"], "available");
    assert_eq!(made["image"]["sourceLease"], source.as_str());
    // An earlier image, the known-good one to roll back to.
    let good = ok_json(
        &[
            "image",
            "create",
            "--id",
            &source,
            "--name",
            "crabbox-linux-desktop-browser-20261205-0800",
            "--json",
        ],
        &[],
    )["image"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Bad input changes nothing: a bad name, promoting something that is not there.
    let out = run(&["image", "create", "--id", &source, "--name", "x"], &[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let out = run(
        &["image", "promote", "ami-0123456789abcdef0", "--json"],
        &[],
    );
    assert_ne!(code(&out), 0, "{}", stderr(&out));
    let out = run(&["image", "promote", &ami, "--target", "macos"], &[]);
    assert_eq!(code(&out), 2, "macOS needs --type: {}", stderr(&out));
    assert!(stderr(&out).contains("--type"), "{}", stderr(&out));
    // Without the admin token: refused.
    let out = aws
        .brokered_command(&server, &["image", "list"])
        .env_remove("CRABBOX_COORDINATOR_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert_ne!(code(&out), 0, "{}", stderr(&out));

    // Smoke the candidate: booted by an explicit image (an admin's request), then its
    // desktop proof.
    let pinned = [admin[0], ("CRABBOX_AWS_AMI", ami.as_str())];
    let (candidate, out) = warm_desktop("30m", "10m", &pinned);
    assert!(
        stderr(&out).contains(&format!("image selected id={ami} source=request")),
        "{}",
        stderr(&out)
    );
    let instance = aws.instance_of(&candidate);
    let image_of = |instance: &str| {
        aws.moto_query("DescribeInstances", &[("InstanceId.1", instance)])
            .all("imageId")[0]
            .clone()
    };
    assert_eq!(image_of(&instance), ami);
    let smoke = run_shell(&candidate, RUNBOOK_SMOKE, &admin);
    assert!(smoke.contains("image-smoke-ok"), "{smoke}");
    let shot = Path::new("/tmp/crabbox-image-smoke.png");
    let _ = std::fs::remove_file(shot);
    ok(
        &[
            "screenshot",
            "--provider",
            "aws",
            "--id",
            &candidate,
            "--output",
            "/tmp/crabbox-image-smoke.png",
        ],
        &admin,
    );
    let png = std::fs::read(shot).expect("the screenshot");
    std::fs::remove_file(shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG"),
        "a PNG of the candidate's desktop"
    );

    // Promote, with fast snapshot restore in two zones; a normal brokered lease boots it and
    // says so.
    let promoted = ok_json(&["image", "promote", &ami, "--json"], &[]);
    assert_eq!(promoted["image"]["id"], ami.as_str(), "{promoted}");
    let out = run(&["image", "promote", &ami, "--fast-snapshot-restore"], &[]);
    assert_eq!(code(&out), 2, "FSR without a zone: {}", stderr(&out));
    let promoted = ok_json(
        &[
            "image",
            "promote",
            &ami,
            "--fast-snapshot-restore",
            "--fsr-az",
            "eu-west-1a",
            "--fsr-az",
            "eu-west-1b",
            "--json",
        ],
        &[],
    );
    assert_eq!(promoted["image"]["id"], ami.as_str());
    assert_eq!(promoted["image"]["target"], "linux");
    assert_eq!(
        promoted["image"]["fastSnapshotRestores"]
            .as_array()
            .map(Vec::len),
        Some(2),
        "{promoted}"
    );
    let fsr = ok_json(
        &[
            "image",
            "fsr-status",
            &ami,
            "--region",
            "eu-west-1",
            "--json",
        ],
        &[],
    );
    let states = fsr["fastSnapshotRestores"].as_array().unwrap();
    assert_eq!(states.len(), 2, "{fsr}");
    assert!(states.iter().all(|s| s["state"] == "enabled"), "{fsr}");
    let fsr = ok_json(
        &[
            "image",
            "fsr-status",
            &ami,
            "--fsr-az",
            "eu-west-1a",
            "--json",
        ],
        &[],
    );
    assert_eq!(
        fsr["fastSnapshotRestores"].as_array().unwrap().len(),
        1,
        "{fsr}"
    );
    let (normal, out) = warm_desktop("30m", "10m", &[]);
    assert!(
        stderr(&out).contains(&format!("image selected id={ami} source=promoted")),
        "{}",
        stderr(&out)
    );
    assert_eq!(image_of(&aws.instance_of(&normal)), ami);
    let promoted_smoke = run_shell(
        &normal,
        "echo promoted-image-smoke-ok && command -v ffmpeg && command -v node",
        &[],
    );
    assert!(promoted_smoke.contains("promoted-image-smoke-ok"));
    let listed = ok_json(&["image", "list", "--json"], &[]);
    assert!(listed["promoted"].to_string().contains(&ami), "{listed}");
    assert!(listed["images"].as_array().unwrap().len() >= 2, "{listed}");

    // A macOS promotion lands in its own scope: the Linux default stays.
    let mac = ok_json(
        &[
            "image",
            "promote",
            &good,
            "--target",
            "macos",
            "--type",
            "mac2.metal",
            "--architecture",
            "arm64_mac",
            "--json",
        ],
        &[],
    );
    assert_eq!(mac["image"]["target"], "macos", "{mac}");
    let out = run(&["warmup", "--json"], &[]);
    assert!(
        stderr(&out).contains(&format!("image selected id={ami} source=promoted")),
        "the Linux default is still {ami}: {}",
        stderr(&out)
    );
    let still_linux = lease_id(&serde_json::from_slice(&out.stdout).unwrap());
    let keys = ok_json(&["image", "list", "--json"], &[])["promoted"].to_string();
    assert!(
        keys.contains("image:aws:promoted:macos:arm64_mac:mac2.metal:"),
        "{keys}"
    );
    // A brokered Mac lease of that type boots it, on a free Dedicated Host.
    aws.moto_query(
        "AllocateHosts",
        &[
            ("AvailabilityZone", "eu-west-1a"),
            ("InstanceType", "mac2.metal"),
            ("Quantity", "1"),
        ],
    );
    let out = run(
        &[
            "warmup",
            "--target",
            "macos",
            "--type",
            "mac2.metal",
            "--json",
        ],
        &[],
    );
    assert_eq!(code(&out), 0, "mac warmup: {}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("image selected id={good} source=promoted")),
        "{}",
        stderr(&out)
    );
    let mac_lease = lease_id(&serde_json::from_slice(&out.stdout).unwrap());
    assert_eq!(image_of(&aws.instance_of(&mac_lease)), good);

    // A promoted image is not deleted without --force.
    let out = run(&["image", "delete", &ami], &[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("promoted"), "{}", stderr(&out));

    // Roll back: promote the earlier image; new leases boot it.
    ok_json(&["image", "promote", &good, "--json"], &[]);
    let (rolled, out) = warm_desktop("30m", "10m", &[]);
    assert!(
        stderr(&out).contains(&format!("image selected id={good} source=promoted")),
        "{}",
        stderr(&out)
    );
    assert_eq!(image_of(&aws.instance_of(&rolled)), good);
    run_shell(
        &rolled,
        "echo promoted-image-smoke-ok && command -v ffmpeg && command -v node",
        &[],
    );

    // The candidate, no longer promoted, is deleted with its snapshot.
    let snapshots: Vec<String> = aws
        .moto_query("DescribeImages", &[("ImageId.1", ami.as_str())])
        .all("snapshotId");
    assert!(!snapshots.is_empty(), "moto gives images a snapshot");
    // An image someone else made (no Crabbox tags) is refused and left alone.
    let foreign = aws
        .moto_query(
            "CreateImage",
            &[
                ("InstanceId", instance.as_str()),
                ("Name", "someone-elses-image"),
            ],
        )
        .first("imageId")
        .expect("an image id");
    let out = run(&["image", "delete", &foreign], &[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not made by Crabbox"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        aws.moto_query("DescribeImages", &[("ImageId.1", foreign.as_str())])
            .all("imageId"),
        std::slice::from_ref(&foreign),
        "left alone"
    );
    ok(
        &[
            "image",
            "delete",
            &ami,
            "--provider",
            "aws",
            "--region",
            "eu-west-1",
        ],
        &[],
    );
    assert!(
        aws.moto_query("DescribeImages", &[("ImageId.1", ami.as_str())])
            .all("imageId")
            .is_empty()
            || aws
                .moto_query("DescribeImages", &[("Owner.1", "self")])
                .all("imageId")
                .iter()
                .all(|i| *i != ami)
    );
    let left: Vec<String> = aws.moto_query("DescribeSnapshots", &[]).all("snapshotId");
    for snapshot in &snapshots {
        assert!(!left.contains(snapshot), "snapshot {snapshot} is left");
    }
    for (id, env) in [
        (&source, &[][..]),
        (&candidate, &admin[..]),
        (&normal, &[][..]),
        (&still_linux, &[][..]),
        (&mac_lease, &[][..]),
        (&rolled, &[][..]),
    ] {
        let out = run(&["stop", id], env);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
}

/// `image bake`: a plan that spends nothing without `--yes`; with it the runbook's steps, the
/// evidence kept, every lease released, the image promoted; a failing verify stops before any
/// image is made and still releases the source lease.
#[test]
fn image_bake_plans_then_runs_the_runbook_and_releases_what_it_leased() {
    loopback_only!();
    let aws = Aws::start();
    let server = aws.coordinator(&[]);
    let bake = |args: &[&str]| {
        let mut cmd = aws.brokered_command(&server, args);
        // The candidate boot names its image: an admin's lease.
        cmd.env("CRABBOX_COORDINATOR_TOKEN", crate::coordinator::ADMIN);
        cmd.output().expect("crabbox runs")
    };
    let name = "crabbox-linux-devtools-20261206-0800";
    let out = bake(&["image", "bake", "--name", name, "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["ran"], false, "{plan}");
    assert!(aws.instances("running").is_empty(), "a plan spends nothing");
    assert!(aws.instances("pending").is_empty());

    let evidence = aws.sb.work().join("bake-evidence");
    let out = bake(&[
        "image",
        "bake",
        "--name",
        name,
        "--yes",
        "--json",
        "--evidence",
        evidence.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "bake: {}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["phase"], "done", "{summary}");
    assert_eq!(summary["promoted"], true);
    let image = summary["image"].as_str().unwrap().to_owned();
    let kept: serde_json::Value =
        serde_json::from_slice(&std::fs::read(evidence.join("summary.json")).unwrap()).unwrap();
    assert_eq!(kept, summary, "the evidence holds the same summary");
    for step in summary["steps"].as_array().unwrap() {
        assert_eq!(step["exit"], 0, "{step}");
        assert!(Path::new(step["log"].as_str().unwrap()).is_file(), "{step}");
    }
    assert!(aws.instances("running").is_empty(), "both leases released");
    assert!(aws.key_pairs().is_empty());
    let listed = aws.brokered(&server, &["image", "list", "--json"]);
    assert!(stdout(&listed).contains(&image), "{}", stdout(&listed));

    let evidence = aws.sb.work().join("bake-failed");
    let out = bake(&[
        "image",
        "bake",
        "--name",
        "crabbox-linux-devtools-20261206-0900",
        "--verify",
        "exit 3",
        "--yes",
        "--json",
        "--evidence",
        evidence.to_str().unwrap(),
    ]);
    assert_ne!(code(&out), 0);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["phase"], "failed", "{summary}");
    assert!(
        summary.get("image").is_none(),
        "no image was made: {summary}"
    );
    assert!(
        aws.instances("running").is_empty(),
        "the source lease is released"
    );
}

/// `admin hosts` against moto behind the fault proxy: offerings, the quota, an allocation that
/// is a dry run until `--yes`, the list, a release, and the policies, as the runbook runs
/// them.
#[test]
fn admin_hosts_follow_the_runbook_and_allocate_only_with_yes() {
    loopback_only!();
    let aws = Aws::start();
    aws.proxy.set_dedicated_host_quota("mac2", 2.0);
    let region = crabbox_test_support::moto::DEFAULT_REGION;
    let scope = ["--provider", "aws", "--target", "macos", "--region", region];
    let hosts = |sub: &[&str]| {
        let mut args = vec!["admin", "hosts"];
        args.extend_from_slice(sub);
        args.extend_from_slice(&scope);
        args.push("--json");
        aws.json(&args)
    };
    let offerings = hosts(&["offerings", "--type", "mac2.metal"]);
    let zone = offerings["offerings"][0]["zone"]
        .as_str()
        .expect("a zone offers mac2")
        .to_owned();
    let quota = hosts(&["quota", "--type", "mac2.metal"]);
    assert_eq!(quota["quota"]["value"], 2.0, "{quota}");
    assert_eq!(quota["quota"]["allocated"], 0);

    // A dry run allocates nothing.
    let dry = hosts(&["allocate", "--type", "mac2.metal", "--dry-run"]);
    assert_eq!(dry["dryRun"], true, "{dry}");
    assert_eq!(dry["result"]["outcome"], "would_succeed");
    assert!(
        hosts(&["list"])["hosts"].as_array().unwrap().is_empty(),
        "nothing allocated"
    );
    let made = hosts(&["allocate", "--type", "mac2.metal", "--zone", &zone, "--yes"]);
    let host = made["result"]["host_id"]
        .as_str()
        .expect("a host")
        .to_owned();
    let listed = hosts(&["list"]);
    assert_eq!(listed["hosts"][0]["id"], host.as_str(), "{listed}");
    assert_eq!(listed["hosts"][0]["zone"], zone.as_str());
    assert_eq!(
        hosts(&["quota", "--type", "mac2.metal"])["quota"]["allocated"],
        1
    );
    let released = hosts(&["release", &host]);
    assert_eq!(released["result"]["outcome"], "released", "{released}");
    assert!(hosts(&["list"])["hosts"].as_array().unwrap().is_empty());

    // Bad input: not a Mac type, not macOS.
    let out = aws.crabbox(
        &[
            "admin",
            "hosts",
            "offerings",
            "--type",
            "c7a.large",
            "--region",
            region,
        ],
        &[],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let out = aws.crabbox(&["admin", "hosts", "list", "--target", "linux"], &[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));

    // The baseline policy leaves the host lifecycle out; --target macos adds it.
    let base = aws
        .json(&["admin", "providers", "policy", "--provider", "aws"])
        .to_string();
    assert!(!base.contains("ec2:AllocateHosts"), "{base}");
    let mac = aws
        .json(&[
            "admin",
            "providers",
            "policy",
            "--provider",
            "aws",
            "--target",
            "macos",
        ])
        .to_string();
    assert!(
        mac.contains("ec2:AllocateHosts") && mac.contains("ec2:RunInstances"),
        "{mac}"
    );
    let host_policy = aws.json(&[
        "admin",
        "hosts",
        "policy",
        "--provider",
        "aws",
        "--target",
        "macos",
    ]);
    assert!(host_policy.to_string().contains("ec2:ReleaseHosts"));
}

/// `--target macos` (spec §2.2; the runbook's manual macOS bake): without a free Dedicated Host
/// a Mac lease is refused with the way to get one and nothing is left; spot is refused before
/// anything is made; on an allocated host the lease launches there, on demand, from Amazon's
/// newest macOS image for the type, with the Mac bootstrap script as its user data, and then
/// runs commands and releases like any lease.
#[test]
fn mac_leases_launch_on_a_free_dedicated_host_on_demand_from_amazons_image() {
    loopback_only!();
    let aws = Aws::start();
    aws.proxy.set_dedicated_host_quota("mac2", 1.0);
    let region = crabbox_test_support::moto::DEFAULT_REGION;
    let mac = ["warmup", "--target", "macos", "--type", "mac2.metal"];

    let out = aws.crabbox(&mac, &[]);
    assert_ne!(code(&out), 0, "no host: {}", stderr(&out));
    assert!(
        stderr(&out).contains("no available EC2 Mac Dedicated Host for mac2.metal")
            && stderr(&out).contains("admin hosts allocate"),
        "{}",
        stderr(&out)
    );
    assert_eq!(aws.proxy.count("RunInstances"), 0, "nothing launched");
    aws.assert_nothing_left();
    let out = aws.crabbox(&["warmup", "--target", "macos", "--market", "spot"], &[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("on demand only"), "{}", stderr(&out));

    let offerings = aws.json(&[
        "admin",
        "hosts",
        "offerings",
        "--provider",
        "aws",
        "--target",
        "macos",
        "--region",
        region,
        "--type",
        "mac2.metal",
        "--json",
    ]);
    let zone = offerings["offerings"][0]["zone"]
        .as_str()
        .unwrap()
        .to_owned();
    let allocated = aws.json(&[
        "admin",
        "hosts",
        "allocate",
        "--provider",
        "aws",
        "--target",
        "macos",
        "--region",
        region,
        "--type",
        "mac2.metal",
        "--zone",
        &zone,
        "--yes",
        "--json",
    ]);
    let host = allocated["result"]["host_id"].as_str().unwrap().to_owned();

    aws.proxy.reset_calls();
    let mut args = mac.to_vec();
    args.extend(["--desktop", "--json"]);
    let warm = aws.json(&args);
    let lease = lease_id(&warm);
    let launch = aws
        .proxy
        .calls()
        .into_iter()
        .find(|c| c.action == "RunInstances")
        .expect("a launch");
    assert_eq!(launch.param("Placement.HostId"), Some(host.as_str()));
    assert_eq!(launch.param("Placement.Tenancy"), Some("host"));
    assert_eq!(launch.param("InstanceType"), Some("mac2.metal"));
    assert_eq!(
        launch.param("InstanceMarketOptions.MarketType"),
        None,
        "on demand"
    );
    assert_eq!(
        launch.param("ImageId"),
        Some("ami-0a1100000000c1402"),
        "the newest Apple silicon macOS 14 image"
    );
    let instance = aws.instance_of(&lease);
    let script = aws.user_data(&instance);
    assert!(script.starts_with("#!/bin/bash"), "{script}");
    assert!(
        script.contains("com.apple.screensharing"),
        "a desktop lease shares its screen"
    );
    let inspected = aws.json(&["inspect", "--id", &lease, "--json"]);
    let text = inspected.to_string();
    assert!(text.contains("\"market\":\"on-demand\""), "{inspected}");
    assert!(text.contains("\"target\":\"macos\""), "{inspected}");
    assert!(text.contains("/var/db/crabbox/vnc.password"), "{inspected}");

    let out = aws.ok(&["run", "--id", &lease, "--", "cat", "hello.txt"]);
    assert!(stdout(&out).contains("hello from the laptop"));
    aws.ok(&["stop", &lease]);
    aws.assert_nothing_left();
}

/// An `aws-ami` checkpoint (spec §3.4, §3.7, §3.8), direct: the runner forgets its cloud-init
/// state, its image is made and waited for, a fork boots a new instance from that image with
/// its own key pair and finds the saved workdir at its own path, and delete deregisters the
/// image with its snapshots. (moto's images hold no disk: the emulated runners share one work
/// root, which is what carries the files here.)
#[test]
fn an_ami_checkpoint_is_created_forked_and_deleted_with_its_snapshots() {
    loopback_only!();
    let aws = Aws::start();
    let source = lease_id(&aws.json(&["warmup", "--json"]));
    aws.ok(&[
        "run",
        "--id",
        &source,
        "--shell",
        "--",
        "mkdir -p node_modules && echo prepared >node_modules/marker",
    ]);
    let made = aws.json(&[
        "checkpoint",
        "create",
        "--id",
        &source,
        "--mode",
        "native",
        "--name",
        "after-npm-ci",
        "--json",
    ]);
    assert_eq!(made["kind"], "aws-ami", "{made}");
    let image = made["native"]["imageId"].as_str().unwrap().to_owned();
    assert_eq!(made["native"]["state"], "available", "{made}");
    assert_eq!(made["native"]["direct"], true);
    assert_eq!(
        aws.moto_query("DescribeImages", &[("ImageId.1", image.as_str())])
            .all("imageId"),
        std::slice::from_ref(&image)
    );
    let snapshots = aws
        .moto_query("DescribeImages", &[("ImageId.1", image.as_str())])
        .all("snapshotId");
    assert!(!snapshots.is_empty());
    let chk = made["id"].as_str().unwrap().to_owned();
    // An image checkpoint restores by forking.
    let out = aws.crabbox(&["checkpoint", "restore", &chk, "--id", &source], &[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("fork"), "{}", stderr(&out));

    let forked = aws.json(&["checkpoint", "fork", &chk, "--json"]);
    let fork = forked["forks"][0]["lease"].as_str().unwrap().to_owned();
    let instance = aws.instance_of(&fork);
    assert_eq!(
        aws.moto_query("DescribeInstances", &[("InstanceId.1", instance.as_str())])
            .all("imageId"),
        std::slice::from_ref(&image),
        "the fork boots the checkpoint's image"
    );
    let seen = aws.ok(&["run", "--id", &fork, "--", "cat", "node_modules/marker"]);
    assert_eq!(stdout(&seen).trim(), "prepared");

    // A checkpoint whose image is gone says so, and leases nothing.
    let copy = aws.json(&[
        "checkpoint",
        "create",
        "--id",
        &fork,
        "--mode",
        "native",
        "--json",
    ]);
    let copy_image = copy["native"]["imageId"].as_str().unwrap().to_owned();
    aws.moto_query("DeregisterImage", &[("ImageId", copy_image.as_str())]);
    let running = aws.instances("running").len();
    let out = aws.crabbox(&["checkpoint", "fork", copy["id"].as_str().unwrap()], &[]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("image {copy_image} is gone")),
        "{}",
        stderr(&out)
    );
    assert_eq!(aws.instances("running").len(), running, "nothing leased");
    aws.ok(&["checkpoint", "delete", &chk]);
    assert!(
        aws.moto_query("DescribeImages", &[("ImageId.1", image.as_str())])
            .all("imageId")
            .is_empty(),
        "the image is deregistered"
    );
    let left: Vec<String> = aws.moto_query("DescribeSnapshots", &[]).all("snapshotId");
    for snapshot in &snapshots {
        assert!(!left.contains(snapshot), "snapshot {snapshot} is left");
    }
    for id in [&source, &fork] {
        aws.ok(&["stop", id]);
    }
    aws.assert_nothing_left();
}

/// Checkpoints of a brokered lease (no AWS credentials on this side): an archive forks into a
/// new lease leased through the coordinator; an image is made by the coordinator (admin
/// token), a fork boots it (an admin's image choice), and delete removes it there.
#[test]
fn checkpoints_of_a_brokered_lease_go_through_the_coordinator() {
    loopback_only!();
    let aws = Aws::start();
    let server = aws.coordinator(&[]);
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = aws.brokered_command(&server, args);
        cmd.envs(env.iter().copied());
        let out = cmd.output().expect("crabbox runs");
        assert_eq!(code(&out), 0, "crabbox {args:?}: {}", stderr(&out));
        out
    };
    let json = |args: &[&str], env: &[(&str, &str)]| -> serde_json::Value {
        serde_json::from_slice(&run(args, env).stdout).unwrap()
    };
    let admin = [("CRABBOX_COORDINATOR_TOKEN", crate::coordinator::ADMIN)];
    let source = lease_id(&json(&["warmup", "--json"], &[]));
    run(
        &[
            "run",
            "--id",
            &source,
            "--shell",
            "--",
            "mkdir -p node_modules && echo prepared >node_modules/marker",
        ],
        &[],
    );
    let archive = json(&["checkpoint", "create", "--id", &source, "--json"], &[]);
    assert_eq!(archive["kind"], "workspace-archive", "{archive}");
    let forked = json(
        &[
            "checkpoint",
            "fork",
            archive["id"].as_str().unwrap(),
            "--json",
        ],
        &[],
    );
    let fork = forked["forks"][0]["lease"].as_str().unwrap().to_owned();
    let leases = json(&["admin", "leases", "--json"], &[]).to_string();
    assert!(
        leases.contains(&fork),
        "the coordinator holds the fork: {leases}"
    );
    let seen = run(
        &["run", "--id", &fork, "--", "cat", "node_modules/marker"],
        &[],
    );
    assert_eq!(stdout(&seen).trim(), "prepared");

    let image = json(
        &[
            "checkpoint",
            "create",
            "--id",
            &source,
            "--mode",
            "native",
            "--json",
        ],
        &[],
    );
    assert_eq!(image["kind"], "aws-ami", "{image}");
    assert_eq!(
        image["native"]["direct"],
        serde_json::Value::Null,
        "{image}"
    );
    let ami = image["native"]["imageId"].as_str().unwrap().to_owned();
    let booted = json(
        &[
            "checkpoint",
            "fork",
            image["id"].as_str().unwrap(),
            "--json",
        ],
        &admin,
    );
    let from_image = booted["forks"][0]["lease"].as_str().unwrap().to_owned();
    assert_eq!(
        aws.moto_query(
            "DescribeInstances",
            &[("InstanceId.1", aws.instance_of(&from_image).as_str())]
        )
        .all("imageId"),
        std::slice::from_ref(&ami)
    );
    run(
        &["checkpoint", "delete", image["id"].as_str().unwrap()],
        &[],
    );
    assert!(
        aws.moto_query("DescribeImages", &[("ImageId.1", ami.as_str())])
            .all("imageId")
            .is_empty(),
        "the coordinator deleted the image"
    );
    for (id, env) in [
        (&source, &[][..]),
        (&fork, &[][..]),
        (&from_image, &admin[..]),
    ] {
        run(&["stop", id], env);
    }
}

/// `--target windows` (spec §2.2 "Targets"): Amazon's newest Windows Server 2022 image, the
/// class's Windows type, the Windows bootstrap as `<powershell>` user data, readiness through
/// its PowerShell ready script (the boot emulator's POSIX runner answers that call only), and
/// `C:\crabbox` as the work root; direct and brokered. `run` and checkpoints, whose data plane
/// is POSIX, are refused with a hint before anything is leased; WSL2 and desktops are refused
/// before anything is made; stop leaves nothing.
#[test]
fn windows_leases_boot_amazons_windows_image_with_the_powershell_bootstrap() {
    loopback_only!();
    let aws = Aws::start();
    for (args, env, says) in [
        (
            vec!["warmup", "--target", "windows"],
            vec![("CRABBOX_WINDOWS_MODE", "wsl2")],
            "windows mode wsl2",
        ),
        (
            vec!["warmup", "--target", "windows", "--desktop"],
            vec![],
            "Windows lease",
        ),
        (
            vec!["run", "--target", "windows", "--", "echo", "hi"],
            vec![],
            "crabbox warmup --target windows",
        ),
    ] {
        let out = aws.crabbox(&args, &env);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
    assert_eq!(aws.proxy.count("RunInstances"), 0, "nothing was launched");
    aws.assert_nothing_left();

    let out = aws.crabbox(
        &["warmup", "--target", "windows", "--class", "tiny", "--json"],
        &[],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let warm: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = lease_id(&warm);
    let launch = aws
        .proxy
        .calls()
        .into_iter()
        .rfind(|c| c.action == "RunInstances")
        .unwrap();
    assert_eq!(
        launch.param("InstanceType"),
        Some("m7a.large"),
        "Windows' tiny"
    );
    assert_eq!(
        launch.param("ImageId"),
        Some("ami-0a1100000000e2202"),
        "the newest English Windows Server 2022 base image"
    );
    let instance = aws.instance_of(&id);
    let script = aws.user_data(&instance);
    assert!(script.starts_with("<powershell>\n"), "{script}");
    assert!(script.contains(&format!("$user = '{}'", aws.emulator.ssh_user())));
    assert!(script.contains(r"$workRoot = 'C:\crabbox'"), "{script}");
    let runner = aws
        .emulator
        .wait_for_runner(&instance, Duration::from_secs(30));
    assert!(runner.windows, "booted from the PowerShell user data");
    let inspect = aws.json(&["inspect", "--id", &id, "--json"]).to_string();
    assert!(inspect.contains(r#""target":"windows""#), "{inspect}");
    assert!(inspect.contains(r"C:\\crabbox"), "{inspect}");

    for args in [
        vec!["run", "--id", id.as_str(), "--", "echo", "hi"],
        vec!["checkpoint", "create", "--id", id.as_str()],
    ] {
        let out = aws.crabbox(&args, &[]);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("running Windows"), "{args:?}: {err}");
        assert!(err.contains(&format!("crabbox ssh --id {id}")), "{err}");
    }
    aws.ok(&["stop", &id]);
    aws.assert_nothing_left();

    // Brokered: the coordinator offers windows, and the CLI's readiness runs the Windows check.
    let server = aws.coordinator(&[]);
    let out = aws.brokered(
        &server,
        &["warmup", "--target", "windows", "--class", "tiny", "--json"],
    );
    assert_eq!(code(&out), 0, "brokered: {}", stderr(&out));
    let warm: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = lease_id(&warm);
    let instance = aws.instance_of(&id);
    assert!(aws.user_data(&instance).starts_with("<powershell>"));
    let out = aws.brokered(&server, &["run", "--id", &id, "--", "echo", "hi"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let out = aws.brokered(&server, &["stop", &id]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    aws.assert_nothing_left();
}
