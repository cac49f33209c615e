//! `--provider azure` end to end: the real binary and its Azure client against the stateful
//! Azure fake (HTTPS, its CA trusted through `SSL_CERT_FILE`), with the boot emulator booting
//! the VMs, inside a loopback-only network namespace (docs/design/cloud-testing.md). Direct
//! and brokered.

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use crabbox_test_support::boot_emulator::BootEmulator;
use crabbox_test_support::fake_azure::{AzureError, FakeAzure, Fault};
use crabbox_test_support::{Sandbox, code, git_repo, loopback_only, stderr, stdout};

/// The fake, the boot emulator watching it, and a sandboxed CLI pointed at them.
struct Azure {
    fake: FakeAzure,
    emulator: BootEmulator,
    sb: Sandbox,
    repo: PathBuf,
}

impl Azure {
    fn start() -> Self {
        let fake = FakeAzure::start();
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
        let mut env = self.fake.env();
        env.extend([
            ("CRABBOX_AZURE_SSH_CIDRS", "127.0.0.0/8".to_owned()),
            ("CRABBOX_SSH_USER", self.emulator.ssh_user().to_owned()),
            (
                "CRABBOX_WORK_ROOT",
                self.emulator.work_root().display().to_string(),
            ),
            ("CRABBOX_READY_TIMEOUT", "60s".to_owned()),
        ]);
        env
    }

    fn crabbox(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.sb.crabbox(&self.repo, args);
        cmd.env("CRABBOX_PROVIDER", "azure").envs(self.env());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("crabbox runs")
    }

    /// `crabbox coordinator serve --providers azure` with the fake's settings.
    fn coordinator(&self) -> crate::coordinator::Server {
        let state = self.sb.path().join("coordinator-state");
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        crate::coordinator::serve(&self.sb, &state, &["--providers", "azure"], &env)
    }

    /// `crabbox <args>` through the coordinator, with no Azure settings of its own.
    fn brokered(&self, server: &crate::coordinator::Server, args: &[&str]) -> Output {
        let mut cmd = self.sb.crabbox(&self.repo, args);
        for (name, _) in self.fake.env() {
            cmd.env_remove(name);
        }
        cmd.env("CRABBOX_COORDINATOR", &server.url)
            .env("CRABBOX_COORDINATOR_TOKEN", crate::coordinator::SHARED)
            .env("CRABBOX_PROVIDER", "azure");
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

    /// How often each write or delete reached the fake since the last look, and every call.
    fn take_calls(&self) -> (Vec<(String, usize)>, Vec<String>) {
        let calls = self.fake.calls();
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        for call in &calls {
            if ["PUT", "PATCH", "DELETE"]
                .iter()
                .any(|m| call.route.starts_with(m))
            {
                *counts.entry(call.route.clone()).or_default() += 1;
            }
        }
        self.fake.reset_calls();
        (
            counts.into_iter().collect(),
            calls.into_iter().map(|c| c.route).collect(),
        )
    }

    /// The lease resources left: VMs, disks, NICs, public IPs.
    fn lease_resources(&self) -> Vec<String> {
        self.fake
            .resources()
            .into_iter()
            .filter(|r| {
                [
                    "virtualMachines",
                    "disks",
                    "networkInterfaces",
                    "publicIPAddresses",
                ]
                .iter()
                .any(|t| r.resource_type.ends_with(t))
            })
            .map(|r| format!("{} {}", r.resource_type, r.name))
            .collect()
    }

    fn vms(&self) -> Vec<String> {
        self.fake
            .resources()
            .into_iter()
            .filter(|r| r.resource_type.ends_with("virtualMachines"))
            .map(|r| r.name)
            .collect()
    }

    fn assert_nothing_left(&self) {
        assert!(
            self.lease_resources().is_empty(),
            "left: {:?}",
            self.lease_resources()
        );
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
fn warmup_run_stop_on_an_azure_vm_leaves_nothing_behind() {
    loopback_only!();
    let cloud = Azure::start();
    let warmup = cloud.json(&["warmup", "--class", "standard", "--json"]);
    let id = lease_id(&warmup);
    let vms = cloud.vms();
    assert_eq!(vms.len(), 1);
    let vm = cloud.fake.vm(&vms[0]).unwrap();
    assert_eq!(vm.vm_size, "Standard_D32ads_v6");
    assert_eq!(vm.priority.as_deref(), Some("Spot"));
    let (writes, all) = cloud.take_calls();
    assert_eq!(
        writes,
        counts(&[
            ("PUT networkInterfaces", 1),
            ("PUT networkSecurityGroups", 1),
            ("PUT publicIPAddresses", 1),
            ("PUT resourceGroups", 1),
            ("PUT virtualMachines", 1),
            ("PUT virtualNetworks", 1),
        ]),
        "writes of the first create"
    );
    // docs/PERFORMANCE.md: the shared network made (3 reads, 3 writes), then the lease's IP,
    // NIC and VM, each followed (the fake's operations take one poll) and read once.
    assert_eq!(all.len(), 27, "API calls of the first create: {all:?}");
    let runner = cloud
        .emulator
        .wait_for_runner(&vm.name, Duration::from_secs(30));
    assert_eq!(runner.user.as_deref(), Some(cloud.emulator.ssh_user()));

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

    // A heartbeat writes the new clock onto the VM's tags, keeping the others.
    cloud.take_calls();
    cloud.ok(&["heartbeat", &id, "--idle-timeout", "45m"]);
    let (writes, all) = cloud.take_calls();
    assert_eq!(
        writes,
        counts(&[("PATCH virtualMachines", 1)]),
        "per heartbeat"
    );
    assert_eq!(all.len(), 6, "API calls per heartbeat: {all:?}");
    let tags = cloud.fake.vm(&vm.name).unwrap().tags;
    assert_eq!(tags["idle_timeout_secs"], "2700", "{tags:?}");
    assert_eq!(tags["lease"], id.as_str());
    let inspect = cloud.json(&["inspect", "--id", &id, "--json"]);
    assert!(
        inspect.to_string().contains("Standard_D32ads_v6"),
        "{inspect}"
    );

    cloud.take_calls();
    cloud.ok(&["stop", &id]);
    let (writes, all) = cloud.take_calls();
    assert_eq!(
        writes,
        counts(&[
            ("DELETE publicIPAddresses", 1),
            ("DELETE virtualMachines", 1),
        ]),
        "per release"
    );
    assert_eq!(all.len(), 7, "API calls per release: {all:?}");
    cloud.assert_nothing_left();
    cloud
        .emulator
        .wait_for_shutdown(&vm.name, Duration::from_secs(30));
}

#[test]
fn brokered_azure_leases_use_the_coordinators_credentials_only() {
    loopback_only!();
    let cloud = Azure::start();
    let server = cloud.coordinator();
    cloud.fake.inject(
        Fault::refuse("PUT virtualMachines", AzureError::SkuNotAvailable)
            .when("/properties/hardwareProfile/vmSize", "Standard_D8ads_v6")
            .times(2),
    );
    let cli = |args: &[&str]| cloud.brokered(&server, args);
    let out = cli(&["warmup", "--class", "small", "--json"]);
    assert_eq!(code(&out), 0, "brokered warmup: {}", stderr(&out));
    let id = lease_id(&serde_json::from_slice(&out.stdout).unwrap());
    let vms = cloud.vms();
    assert_eq!(vms.len(), 1);
    assert_eq!(
        cloud.fake.vm(&vms[0]).unwrap().vm_size,
        "Standard_D8ds_v6",
        "fell back past Standard_D8ads_v6"
    );
    let out = cli(&["inspect", "--id", &id, "--json"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("SkuNotAvailable"), "attempts: {text}");
    assert!(text.contains("eastus"), "the region: {text}");

    let out = cli(&["run", "--id", &id, "--", "cat", "hello.txt"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("hello from the laptop"));
    let out = cli(&["stop", &id]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    crate::coordinator::wait_until("the VM deleted", Duration::from_secs(30), || {
        cloud.lease_resources().is_empty()
    });
}

#[test]
fn bad_input_and_bad_credentials_are_clear_errors_and_create_nothing() {
    loopback_only!();
    let cloud = Azure::start();
    let out = cloud.crabbox(&["warmup"], &[("AZURE_CLIENT_SECRET", "wrong-secret")]);
    assert_eq!(code(&out), 3, "auth failures exit 3: {}", stderr(&out));
    assert!(
        stderr(&out).contains("AZURE_CLIENT_SECRET"),
        "{}",
        stderr(&out)
    );
    assert!(
        !stderr(&out).contains("wrong-secret"),
        "the secret never prints"
    );

    let out = cloud.crabbox(&["warmup"], &[("CRABBOX_AZURE_SUBSCRIPTION_ID", "")]);
    let out = if code(&out) == 0 {
        panic!("no subscription: {}", stdout(&out))
    } else {
        out
    };
    assert!(
        stderr(&out).contains("AZURE_SUBSCRIPTION_ID"),
        "{}",
        stderr(&out)
    );

    let out = cloud.crabbox(&["warmup"], &[("CRABBOX_AZURE_LOCATION", "mars")]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("mars"), "{}", stderr(&out));

    // A size Azure does not offer: its refusal, and what to do.
    let out = cloud.crabbox(&["warmup", "--type", "Standard_X99"], &[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("Standard_X99"), "{}", stderr(&out));
    assert!(stderr(&out).contains("drop --type"), "{}", stderr(&out));

    let out = cloud.crabbox(&["warmup", "--class", "c7a.large"], &[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("unknown class"), "{}", stderr(&out));

    let out = cloud.crabbox(&["warmup"], &[("CRABBOX_AZURE_OS_DISK", "floppy")]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("azure.osDisk"), "{}", stderr(&out));
    cloud.assert_nothing_left();
}

#[test]
fn doctor_identity_policy_and_cleanup_of_unclaimed_vms() {
    loopback_only!();
    let cloud = Azure::start();
    let out = cloud.ok(&["doctor", "--provider", "azure"]);
    assert!(stdout(&out).contains("auth=ready"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("default_size=Standard_D192ds_v6"),
        "beast by default: {}",
        stdout(&out)
    );
    let who = cloud.json(&[
        "admin",
        "providers",
        "identity",
        "--provider",
        "azure",
        "--json",
    ]);
    assert_eq!(
        who["subscriptionId"],
        crabbox_test_support::fake_azure::SUBSCRIPTION_ID
    );
    assert_eq!(who["credential"], "client-secret");
    let role = cloud.json(&["admin", "providers", "policy", "--provider", "azure"]);
    let actions = role["Actions"].as_array().unwrap();
    assert!(
        actions
            .iter()
            .any(|a| a == "Microsoft.Compute/virtualMachines/write"),
        "{role}"
    );
    assert!(
        role["AssignableScopes"][0]
            .as_str()
            .unwrap()
            .ends_with(crabbox_test_support::fake_azure::SUBSCRIPTION_ID)
    );

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
    assert_eq!(cloud.vms().len(), 1);
    // Its tags, rewritten behind the product's back: not kept, long past its TTL.
    let vm = cloud.vms()[0].clone();
    assert!(cloud.fake.set_vm_tag(&vm, "keep", "false"));
    assert!(cloud.fake.set_vm_tag(&vm, "created_at", "1000"));
    let out = cloud.ok(&["cleanup", "--dry-run"]);
    assert!(
        stdout(&out).contains("would delete orphan"),
        "{}",
        stdout(&out)
    );
    assert_eq!(cloud.vms().len(), 1);
    let out = cloud.ok(&["cleanup"]);
    assert!(
        stdout(&out).contains(&format!("delete orphan lease={id}")),
        "{}",
        stdout(&out)
    );
    cloud.assert_nothing_left();
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
fn ctrl_c_after_the_create_deletes_what_it_made() {
    loopback_only!();
    let cloud = Azure::start();
    // A user the runner does not have: the lease never becomes ready, so the signal always
    // arrives during the create or the wait for SSH.
    let mut cmd = cloud.sb.crabbox(&cloud.repo, &["warmup"]);
    cmd.env("CRABBOX_PROVIDER", "azure")
        .envs(cloud.env())
        .env("CRABBOX_SSH_USER", "nobody-here");
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("crabbox starts");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while cloud.fake.count("PUT virtualMachines") == 0 {
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

/// `--target windows` on Azure through the CLI, direct and brokered: a Windows Server VM with
/// the bootstrap as custom data, run by the extension; readiness through the bootstrap's
/// PowerShell ready call (the boot emulator's POSIX runner answers that call only); `run`
/// refused with a hint; stop leaves nothing.
#[test]
fn windows_leases_become_ready_through_the_powershell_check_direct_and_brokered() {
    loopback_only!();
    let cloud = Azure::start();
    let out = cloud.crabbox(
        &["warmup", "--target", "windows", "--class", "tiny", "--json"],
        &[],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let id = lease_id(&serde_json::from_slice(&out.stdout).unwrap());
    let vms = cloud.vms();
    let vm = cloud.fake.vm(&vms[0]).unwrap();
    assert_eq!(vm.vm_size, "Standard_D2ads_v6", "Windows' tiny size");
    let inspect = cloud.json(&["inspect", "--id", &id, "--json"]).to_string();
    assert!(inspect.contains(r#""target":"windows""#), "{inspect}");
    let out = cloud.crabbox(&["run", "--id", &id, "--", "echo", "hi"], &[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("running Windows"), "{}", stderr(&out));
    cloud.ok(&["stop", &id]);
    cloud.assert_nothing_left();

    let server = cloud.coordinator();
    let cli = |args: &[&str]| cloud.brokered(&server, args);
    let out = cli(&["warmup", "--target", "windows", "--class", "tiny", "--json"]);
    assert_eq!(code(&out), 0, "brokered: {}", stderr(&out));
    let id = lease_id(&serde_json::from_slice(&out.stdout).unwrap());
    let vms = cloud.vms();
    assert_eq!(vms.len(), 1);
    let vm = cloud.fake.vm(&vms[0]).unwrap();
    assert_eq!(
        vm.tags["target"], "windows",
        "the coordinator made a Windows VM"
    );
    let out = cli(&["stop", &id]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    crate::coordinator::wait_until("the VM deleted", Duration::from_secs(30), || {
        cloud.lease_resources().is_empty()
    });
}
