//! A boot emulator: the instances of moto and of our fake clouds never boot, so this fixture
//! does for each what the Crabbox cloud-init would, on this machine, inside the test's
//! loopback-only network namespace ([`crate::netns`]).
//!
//! It polls a [`Cloud`] every ~100 ms: moto directly ([`MotoCloud`]: `DescribeInstances` over
//! plain query calls in every region it is given; never through the fault proxy, so the proxy
//! counts only the product's calls), or a fake's own state (the Hetzner and Azure fakes).
//! For each machine that is running and new, it:
//!
//! 1. reads its user data (moto: `DescribeInstanceAttribute` `userData`) and parses the
//!    `#cloud-config` for the user and the authorised key ([`crate::cloud_config`]);
//! 2. puts the instance's public and private addresses on `lo` (`ip addr add <ip>/32 dev lo`);
//! 3. starts a runner `sshd` bound to each address on ports 2222 and 22, with the key
//!    authorised, a `crabbox-ready` on its `PATH`, and the emulator's work root.
//!
//! When the instance leaves `running` (terminated, stopped) its sshd stops, connections
//! first, and its addresses leave `lo`. Everything it started stops when it is dropped.
//!
//! Run as root, each runner also gets a machine view of its own, as its image would give it:
//! its sshd starts in a private mount namespace (`unshare -m`) with empty tmpfs at `/work`
//! (holding `/work/crabbox`), `/var/cache` and `/tmp/.X11-unix`; and when the user data asks
//! for a desktop (the cloud-init's `crabbox-xvfb.service`), an `Xvfb` on display `:99` there,
//! private to the runner because the X socket's directory is its own and the test's network
//! namespace has its own abstract sockets. So the image runbook's checks (`test -d
//! /work/crabbox`, `sudo mkdir -p /var/cache/crabbox/pnpm`, a screenshot of `:99`) run as
//! written, changing nothing on this machine. Tools come from this machine (scripts/dev-setup).
//!
//! What it does not emulate: the user. The sshd runs as the current user (root on CI), so a
//! test sets the product's SSH user to [`BootEmulator::ssh_user`] instead of the cloud-init's
//! `crabbox`; [`Runner::user`] says which user the user data asked for. Nor the machine: there
//! is no apt, no `/usr/local/bin` and no `/work/crabbox`; `crabbox-ready` is found on the
//! session's `PATH` (the product must run it by name, as the real cloud-init does), and the
//! work root is [`BootEmulator::work_root`], which a test configures as the product's.
//! An instance whose user data cloud-init would not take (not `#cloud-config`, no key) gets
//! no sshd, as a real one would be unreachable; [`BootEmulator::failures`] says why.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine;

use crate::ec2_query::{Ec2Answer, Ec2Query};
use crate::{cloud_config, procs};

/// How often the cloud is asked for its machines.
const POLL: Duration = Duration::from_millis(100);

/// What a [`Cloud`] answers, boxed so the trait stays object safe.
pub type CloudFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A machine as its cloud lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// The cloud's id for it (EC2 instance id, Hetzner server id, Azure VM name).
    pub id: String,
    /// Its region or location.
    pub region: String,
    /// Whether it is running (booted machines that stop running are shut down).
    pub running: bool,
    pub public_ip: Option<Ipv4Addr>,
    pub private_ip: Option<Ipv4Addr>,
}

/// A cloud whose machines the emulator boots: it lists them and hands out their user data.
pub trait Cloud: Send + Sync + 'static {
    /// Every machine the cloud has now; `Err` when the cloud did not answer (the emulator
    /// looks again on its next poll).
    fn machines(&self) -> CloudFuture<'_, Result<Vec<Machine>, String>>;
    /// The user data (cloud-init text, decoded) the machine was created with.
    fn user_data<'a>(&'a self, machine: &'a Machine) -> CloudFuture<'a, Result<String, String>>;
}

/// moto's EC2, asked directly with plain query calls in each region.
#[derive(Debug)]
pub struct MotoCloud {
    queries: Vec<Ec2Query>,
}

impl MotoCloud {
    pub fn new(moto_url: &str, regions: &[&str]) -> Self {
        Self {
            queries: regions.iter().map(|r| Ec2Query::new(moto_url, r)).collect(),
        }
    }
}

impl Cloud for MotoCloud {
    fn machines(&self) -> CloudFuture<'_, Result<Vec<Machine>, String>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for query in &self.queries {
                let answer = query
                    .call("DescribeInstances", &[])
                    .await
                    .map_err(|e| e.to_string())?;
                if answer.status != 200 {
                    return Err(format!("DescribeInstances answered {}", answer.status));
                }
                out.extend(instances(&answer, query.region()));
            }
            Ok(out)
        })
    }

    fn user_data<'a>(&'a self, machine: &'a Machine) -> CloudFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let query = self
                .queries
                .iter()
                .find(|q| q.region() == machine.region)
                .ok_or("a machine of a region not watched")?;
            let answer = query
                .call(
                    "DescribeInstanceAttribute",
                    &[("InstanceId", &machine.id), ("Attribute", "userData")],
                )
                .await
                .map_err(|e| format!("DescribeInstanceAttribute failed: {e}"))?;
            let encoded = answer.first("value").unwrap_or_default();
            let user_data = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|e| format!("user data is not base64: {e}"))?;
            Ok(String::from_utf8_lossy(&user_data).into_owned())
        })
    }
}

/// An emulated instance with its runner sshd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runner {
    pub instance_id: String,
    pub region: String,
    pub public_ip: Option<Ipv4Addr>,
    pub private_ip: Option<Ipv4Addr>,
    /// The user the user data creates (`crabbox` for Crabbox's cloud-init).
    pub user: Option<String>,
    /// The keys the user data authorises, as the sshd accepts them.
    pub authorized_keys: Vec<String>,
    /// The runner's host public key line (`ssh-ed25519 AAAA…`).
    pub host_key: String,
    pub sshd_pid: u32,
    /// Whether the user data asked for a desktop (an `Xvfb :99` runs for it).
    pub desktop: bool,
    /// Whether the user data was a Windows bootstrap: the runner is still this machine's
    /// POSIX sshd, with a `powershell.exe` that answers the Windows readiness call only.
    pub windows: bool,
    dir: PathBuf,
}

impl Runner {
    /// The address a client connects to: the public one, else the private one.
    pub fn address(&self) -> Ipv4Addr {
        self.public_ip
            .or(self.private_ip)
            .expect("a runner has an address")
    }

    fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> {
        self.public_ip.into_iter().chain(self.private_ip)
    }
}

#[derive(Debug, Default)]
struct State {
    runners: BTreeMap<String, Runner>,
    /// Instances that will not boot, and why.
    failures: BTreeMap<String, String>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    root: PathBuf,
    user: String,
}

/// The running emulator.
#[derive(Debug)]
pub struct BootEmulator {
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
    dir: tempfile::TempDir,
}

impl Drop for BootEmulator {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
        let runners = std::mem::take(&mut self.shared.state().runners);
        for runner in runners.values() {
            shut_down(runner);
        }
    }
}

impl BootEmulator {
    /// Starts watching the moto at `moto_url` in `regions`. Panics outside a loopback-only
    /// network namespace: the addresses it adds to `lo` would otherwise shadow real ones.
    pub fn start(moto_url: &str, regions: &[&str]) -> Self {
        Self::watch(MotoCloud::new(moto_url, regions))
    }

    /// Starts watching `cloud`. Panics outside a loopback-only network namespace.
    pub fn watch(cloud: impl Cloud) -> Self {
        assert!(
            crate::netns::is_loopback_only(),
            "the boot emulator adds the emulated instances' addresses to `lo`: start it only \
             inside a test's loopback-only network namespace (crabbox_test_support::loopback_only!)"
        );
        let dir = tempfile::Builder::new()
            .prefix("cbx-boot")
            .tempdir()
            .expect("temp dir");
        std::fs::create_dir_all(dir.path().join("work")).expect("work root");
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            root: dir.path().to_owned(),
            user: current_user(),
        });
        let runtime = crate::background_runtime("boot-emulator");
        let watcher = Arc::clone(&shared);
        runtime.spawn(async move {
            loop {
                look(&watcher, &cloud).await;
                tokio::time::sleep(POLL).await;
            }
        });
        Self {
            shared,
            runtime: Some(runtime),
            dir,
        }
    }

    /// The user every runner's sshd logs in (the current user): tests set the product's SSH
    /// user to it.
    pub fn ssh_user(&self) -> &str {
        &self.shared.user
    }

    /// The work root every runner has, writable by [`BootEmulator::ssh_user`]: tests set the
    /// product's work root to it.
    pub fn work_root(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// The runners running now.
    pub fn runners(&self) -> Vec<Runner> {
        self.shared.state().runners.values().cloned().collect()
    }

    /// Instances that did not boot, with the reason.
    pub fn failures(&self) -> BTreeMap<String, String> {
        self.shared.state().failures.clone()
    }

    /// Waits (up to `limit`) until `instance_id` has a runner, and returns it. Panics with
    /// the boot failure, or after `limit`.
    pub fn wait_for_runner(&self, instance_id: &str, limit: Duration) -> Runner {
        let deadline = Instant::now() + limit;
        loop {
            let (runner, failure) = {
                let state = self.shared.state();
                let runner = state.runners.get(instance_id).cloned();
                (runner, state.failures.get(instance_id).cloned())
            };
            if let Some(runner) = runner {
                return runner;
            }
            if let Some(why) = failure {
                panic!("instance {instance_id} did not boot: {why}");
            }
            assert!(
                Instant::now() < deadline,
                "instance {instance_id} got no runner within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (up to `limit`) until `instance_id` has no runner any more.
    pub fn wait_for_shutdown(&self, instance_id: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.shared.state().runners.contains_key(instance_id) {
            assert!(
                Instant::now() < deadline,
                "the runner of {instance_id} still runs after {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A test that failed while holding it must still let the runners be stopped.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One look at the cloud: boots what is new and running, shuts down what no longer runs.
async fn look(shared: &Shared, cloud: &impl Cloud) {
    let Ok(seen) = cloud.machines().await else {
        return;
    };
    let (to_boot, to_stop) = {
        let state = shared.state();
        let boot: Vec<&Machine> = seen
            .iter()
            .filter(|m| m.running)
            .filter(|m| !state.runners.contains_key(&m.id) && !state.failures.contains_key(&m.id))
            .collect();
        let stop: Vec<String> = state
            .runners
            .values()
            .filter(|r| !seen.iter().any(|m| m.id == r.instance_id && m.running))
            .map(|r| r.instance_id.clone())
            .collect();
        (boot, stop)
    };
    for id in to_stop {
        // Listed until it is down, so a test that saw it go finds its sshd gone.
        let runner = shared.state().runners.get(&id).cloned();
        if let Some(runner) = runner {
            shut_down(&runner);
            shared.state().runners.remove(&id);
        }
    }
    for machine in to_boot {
        match boot(shared, cloud, machine).await {
            Ok(runner) => {
                shared.state().runners.insert(machine.id.clone(), runner);
            }
            Err(why) => {
                shared.state().failures.insert(machine.id.clone(), why);
            }
        }
    }
}

/// The instances of a `DescribeInstances` answer.
fn instances(answer: &Ec2Answer, region: &str) -> Vec<Machine> {
    let Ok(doc) = roxmltree::Document::parse(&answer.body) else {
        return Vec::new();
    };
    let child_text = |node: roxmltree::Node<'_, '_>, tag: &str| {
        node.children()
            .find(|c| c.has_tag_name(tag))
            .and_then(|c| c.text())
            .map(str::to_owned)
    };
    doc.descendants()
        .filter(|n| n.has_tag_name("instancesSet"))
        .flat_map(|set| set.children().filter(|c| c.has_tag_name("item")))
        .filter_map(|item| {
            let state = item.children().find(|c| c.has_tag_name("instanceState"))?;
            Some(Machine {
                id: child_text(item, "instanceId")?,
                region: region.to_owned(),
                running: child_text(state, "name").as_deref() == Some("running"),
                public_ip: child_text(item, "ipAddress").and_then(|ip| ip.parse().ok()),
                private_ip: child_text(item, "privateIpAddress").and_then(|ip| ip.parse().ok()),
            })
        })
        .collect()
}

/// Does what cloud-init would for `machine`; on failure nothing it did is left.
async fn boot(shared: &Shared, cloud: &impl Cloud, machine: &Machine) -> Result<Runner, String> {
    let id = &machine.id;
    let user_data = cloud.user_data(machine).await?;
    let config = cloud_config::parse(&user_data)?;
    let dir = shared.root.join(id);
    let mut runner = Runner {
        instance_id: id.clone(),
        region: machine.region.clone(),
        public_ip: machine.public_ip,
        private_ip: machine.private_ip,
        user: config.user,
        authorized_keys: config.authorized_keys,
        host_key: String::new(),
        sshd_pid: 0,
        desktop: user_data.contains("crabbox-xvfb.service"),
        windows: config.windows,
        dir,
    };
    if runner.public_ip.is_none() && runner.private_ip.is_none() {
        return Err("the instance has no address".to_owned());
    }
    let started = add_addresses(&runner).and_then(|()| start_sshd(shared, &mut runner));
    if let Err(why) = started {
        shut_down(&runner);
        return Err(why);
    }
    Ok(runner)
}

fn add_addresses(runner: &Runner) -> Result<(), String> {
    for ip in runner.addresses() {
        ip_addr("add", ip)?;
    }
    Ok(())
}

/// `ip addr <verb> <ip>/32 dev lo`.
fn ip_addr(verb: &str, ip: Ipv4Addr) -> Result<(), String> {
    let out = Command::new("ip")
        .args(["addr", verb, &format!("{ip}/32"), "dev", "lo"])
        .output()
        .map_err(|e| format!("could not run `ip` (iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip addr {verb} {ip}/32 dev lo` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Writes the runner's files and starts its sshd, which daemonizes once it listens.
fn start_sshd(shared: &Shared, runner: &mut Runner) -> Result<(), String> {
    let dir = &runner.dir;
    let files = |e: std::io::Error| {
        format!(
            "could not write the runner's files in {}: {e}",
            dir.display()
        )
    };
    for sub in ["home", "bin"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(files)?;
    }
    let host = crabbox_remote::keys::ensure_ed25519(
        dir,
        "ssh_host_ed25519_key",
        "crabbox emulated runner",
    )
    .map_err(|e| e.to_string())?;
    runner.host_key = host.public_key().map_err(|e| e.to_string())?;
    let keys = runner.authorized_keys.join("\n");
    std::fs::write(dir.join("authorized_keys"), format!("{keys}\n")).map_err(files)?;
    std::fs::write(dir.join("bootstrapped"), "").map_err(files)?;
    // A Windows runner has no `crabbox-ready` on its PATH: only its `powershell.exe` finds
    // the ready script, so a product asking a Windows runner the Linux question is not ready.
    let ready = dir.join(if runner.windows {
        "bin/crabbox-ready.ps1"
    } else {
        "bin/crabbox-ready"
    });
    std::fs::write(&ready, ready_script(dir, &shared.root.join("work"))).map_err(files)?;
    std::fs::set_permissions(&ready, std::fs::Permissions::from_mode(0o755)).map_err(files)?;
    if runner.windows {
        let powershell = dir.join("bin/powershell.exe");
        std::fs::write(&powershell, POWERSHELL).map_err(files)?;
        std::fs::set_permissions(&powershell, std::fs::Permissions::from_mode(0o755))
            .map_err(files)?;
    }
    let config = dir.join("sshd_config");
    std::fs::write(&config, sshd_config(runner, &shared.user)).map_err(files)?;
    if rustix::process::geteuid().is_root() {
        // Privilege separation needs this directory when sshd runs as root.
        let _ = std::fs::create_dir_all("/run/sshd");
    }
    let sshd = crabbox_remote::sshd::find_sshd().ok_or("no sshd binary found")?;
    let log = dir.join("sshd.log");
    let mut command = Command::new(&sshd);
    command.arg("-f").arg(&config).arg("-E").arg(&log);
    if rustix::process::geteuid().is_root() && Path::new(UNSHARE).exists() {
        let boot = dir.join("boot.sh");
        std::fs::write(&boot, boot_script(runner, &sshd, &config, &log)).map_err(files)?;
        command = Command::new(UNSHARE);
        command
            .args(["-m", "--propagation", "private", "/bin/sh"])
            .arg(&boot);
    }
    let out = command
        .output()
        .map_err(|e| format!("could not start {}: {e}", sshd.display()))?;
    // The daemon writes its pid file after its parent has returned.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut pid = None;
    while out.status.success() && pid.is_none() && Instant::now() < deadline {
        pid = crabbox_remote::sshd::pid_of(dir).and_then(|p| u32::try_from(p).ok());
        std::thread::sleep(Duration::from_millis(5));
    }
    match pid {
        Some(pid) if out.status.success() => {
            runner.sshd_pid = pid;
            Ok(())
        }
        _ => Err(format!(
            "the runner sshd did not start: {}{}",
            std::fs::read_to_string(&log).unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

const UNSHARE: &str = "/usr/bin/unshare";

/// Run in the runner's own mount namespace: its `/work/crabbox`, `/var/cache` and X socket
/// directory, its desktop's display, then its sshd (which daemonizes and keeps the namespace).
fn boot_script(runner: &Runner, sshd: &Path, config: &Path, log: &Path) -> String {
    let q = |p: &Path| format!("'{}'", p.display());
    let mut script = String::from("set -e\n");
    // Unless this emulator's own files are under /work (a TMPDIR there), which a mount hides.
    if !runner.dir.starts_with("/work") {
        script.push_str(
            "if [ -d /work ]; then\n  mount -t tmpfs -o mode=0755 runner-work /work\n  \
             mkdir /work/crabbox\nfi\n",
        );
    }
    script.push_str(
        "mount -t tmpfs -o mode=0755 runner-cache /var/cache\nmkdir -p /tmp/.X11-unix\n\
         mount -t tmpfs -o mode=1777 runner-x11 /tmp/.X11-unix\n",
    );
    if runner.desktop {
        let dir = &runner.dir;
        let _ = write!(
            script,
            "Xvfb :99 -screen 0 1280x800x24 -nolisten tcp -nolock >{} 2>&1 </dev/null &\n\
             echo $! >{}\n",
            q(&dir.join("xvfb.log")),
            q(&dir.join("xvfb.pid"))
        );
    }
    let _ = writeln!(script, "exec {} -f {} -E {}", q(sshd), q(config), q(log));
    script
}

/// The runner's sshd configuration: what the cloud-init's sshd drop-in sets (ports 2222 and
/// 22, keys only), bound to the instance's addresses, with a HOME and PATH of the runner's own
/// for its sessions (a login shell reads no rc file of the machine's user).
fn sshd_config(runner: &Runner, user: &str) -> String {
    let d = runner.dir.display();
    let listen: String = runner
        .addresses()
        .flat_map(|ip| [2222, 22].map(|port| format!("ListenAddress {ip}:{port}\n")))
        .collect();
    format!(
        "{listen}HostKey {d}/ssh_host_ed25519_key\nPidFile {d}/sshd.pid\n\
         AuthorizedKeysFile {d}/authorized_keys\nAllowUsers {user}\nPubkeyAuthentication yes\n\
         PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
         PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nPrintMotd no\n\
         MaxSessions 64\nMaxStartups 64:30:128\nLogLevel ERROR\n\
         SetEnv HOME={d}/home PATH={d}/bin:/usr/local/bin:/usr/bin:/bin\n"
    )
}

/// `powershell.exe` of a Windows runner: the readiness call (`powershell.exe … -File
/// C:\ProgramData\crabbox\crabbox-ready.ps1`, its backslashes eaten by the POSIX login shell)
/// runs the emulated ready script beside it; anything else fails, as the runner has no
/// PowerShell.
const POWERSHELL: &str = "#!/bin/sh\n# powershell.exe of a Windows runner emulated by crabbox-test-support.\n\
     case \"$*\" in *crabbox-ready.ps1) exec \"$(dirname \"$0\")/crabbox-ready.ps1\" ;; esac\n\
     echo 'the boot emulator runs no PowerShell (only the ready script)' >&2\nexit 1\n";

/// `crabbox-ready` as the emulated runner has it: the real one checks the tools and the
/// bootstrap marker that the cloud-init installs, and that the work root is writable.
fn ready_script(dir: &Path, work_root: &Path) -> String {
    format!(
        "#!/bin/sh\n# crabbox-ready of a runner emulated by crabbox-test-support's boot emulator.\n\
         set -e\ngit --version >/dev/null\nrsync --version >/dev/null\n\
         test -f '{}/bootstrapped'\ntest -w '{}'\n",
        dir.display(),
        work_root.display()
    )
}

/// Stops a runner's sshd (its connections first, which outlive the listener otherwise) and
/// takes its addresses off `lo`.
fn shut_down(runner: &Runner) {
    let xvfb = std::fs::read_to_string(runner.dir.join("xvfb.pid"));
    if let Some(pid) = xvfb.ok().and_then(|p| p.trim().parse::<u32>().ok()) {
        procs::signal(pid, procs::Signal::TERM);
    }
    if runner.sshd_pid != 0 {
        for conn in procs::descendants(runner.sshd_pid) {
            procs::signal(conn, procs::Signal::TERM);
        }
        procs::signal(runner.sshd_pid, procs::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(2);
        while procs::alive(runner.sshd_pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if procs::alive(runner.sshd_pid) {
            procs::signal(runner.sshd_pid, procs::Signal::KILL);
        }
    }
    for ip in runner.addresses() {
        let _ = ip_addr("del", ip);
    }
}

/// The current user's login name.
fn current_user() -> String {
    let out = Command::new("id")
        .arg("-un")
        .output()
        .expect("run `id -un`");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
