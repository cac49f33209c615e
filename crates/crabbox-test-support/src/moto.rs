//! moto, the AWS emulator, as a test fixture: its server on a free 127.0.0.1 port, seeded with
//! the Ubuntu images Crabbox looks up, and the environment that points a child's AWS SDK at
//! it and at nothing else.
//!
//! `scripts/dev-setup` installs a pinned `moto[server]` into a virtualenv of its own; the
//! fixture runs `<venv>/bin/python -m moto.server` from there (`CRABBOX_MOTO_VENV` moves it,
//! for both), or else a `python3` that can import moto. moto checks no signature, so any
//! static credentials do; it tells services and regions apart by the credential scope of the
//! `Authorization` header (see [`crate::ec2_query`]).
//!
//! moto runs with AMI and key-pair validation on, as EC2 does: `RunInstances` with an unknown
//! image or key name fails instead of launching.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The access key id every fixture uses (moto accepts any).
pub const ACCESS_KEY_ID: &str = "testing";
/// The secret access key every fixture uses.
pub const SECRET_ACCESS_KEY: &str = "testing";
/// The region moto is addressed in unless a test says otherwise: Crabbox's default region.
pub const DEFAULT_REGION: &str = "eu-west-1";
/// The account moto reports (STS `GetCallerIdentity`).
pub const ACCOUNT_ID: &str = "123456789012";
/// Canonical's account, which owns the Ubuntu images.
pub const CANONICAL_OWNER: &str = "099720109477";

/// An Ubuntu server image seeded into moto (every region sees the same ids).
#[derive(Debug, Clone, Copy)]
pub struct UbuntuImage {
    pub id: &'static str,
    /// The name after `ubuntu/images/hvm-ssd-gp3/ubuntu-`.
    build: &'static str,
    /// `x86_64` or `arm64`, as `DescribeImages` reports it.
    pub architecture: &'static str,
    /// The day of its `CreationDate`.
    date: &'static str,
}

impl UbuntuImage {
    /// The image's name, as Canonical spells it.
    pub fn name(&self) -> String {
        format!("ubuntu/images/hvm-ssd-gp3/ubuntu-{}", self.build)
    }

    /// Its `CreationDate`, as `DescribeImages` reports it.
    pub fn creation_date(&self) -> String {
        format!("{}T00:00:00.000Z", self.date)
    }
}

/// The seeded images: Ubuntu 24.04 (noble) and 26.04 (resolute), gp3, amd64 and arm64, each
/// in an older and a newer build so that "the newest `CreationDate` wins" can be tested. Names
/// follow Canonical's, which Crabbox matches with
/// `ubuntu/images/hvm-ssd-gp3/ubuntu-{noble-24.04|resolute-26.04}-{amd64|arm64}-server-*`.
pub const UBUNTU_IMAGES: &[UbuntuImage] = &[
    ubuntu(
        "ami-0a11000000000a401",
        "noble-24.04-amd64-server-20250601",
        "x86_64",
        "2025-06-01",
    ),
    ubuntu(
        "ami-0a11000000000a402",
        "noble-24.04-amd64-server-20251101",
        "x86_64",
        "2025-11-01",
    ),
    ubuntu(
        "ami-0a11000000000b401",
        "noble-24.04-arm64-server-20250601",
        "arm64",
        "2025-06-01",
    ),
    ubuntu(
        "ami-0a11000000000b402",
        "noble-24.04-arm64-server-20251101",
        "arm64",
        "2025-11-01",
    ),
    ubuntu(
        "ami-0a11000000000a261",
        "resolute-26.04-amd64-server-20260501",
        "x86_64",
        "2026-05-01",
    ),
    ubuntu(
        "ami-0a11000000000a262",
        "resolute-26.04-amd64-server-20260901",
        "x86_64",
        "2026-09-01",
    ),
    ubuntu(
        "ami-0a11000000000b261",
        "resolute-26.04-arm64-server-20260501",
        "arm64",
        "2026-05-01",
    ),
    ubuntu(
        "ami-0a11000000000b262",
        "resolute-26.04-arm64-server-20260901",
        "arm64",
        "2026-09-01",
    ),
];

const fn ubuntu(
    id: &'static str,
    build: &'static str,
    architecture: &'static str,
    date: &'static str,
) -> UbuntuImage {
    UbuntuImage {
        id,
        build,
        architecture,
        date,
    }
}

/// Amazon's macOS images, seeded too (`amzn-ec2-macos-…`, architectures `arm64_mac` and
/// `x86_64_mac`): (id, name, architecture, day). The newest Apple silicon macOS 14 one is
/// what a `mac2.metal` lease boots.
pub const MACOS_IMAGES: &[(&str, &str, &str, &str)] = &[
    (
        "ami-0a1100000000c1401",
        "amzn-ec2-macos-14.7.1-20250110-arm64",
        "arm64_mac",
        "2025-01-10",
    ),
    (
        "ami-0a1100000000c1402",
        "amzn-ec2-macos-14.8.0-20251010-arm64",
        "arm64_mac",
        "2025-10-10",
    ),
    (
        "ami-0a1100000000c1501",
        "amzn-ec2-macos-15.6.0-20251010-arm64",
        "arm64_mac",
        "2025-10-10",
    ),
    (
        "ami-0a1100000000d1401",
        "amzn-ec2-macos-14.8.0-20251010",
        "x86_64_mac",
        "2025-10-10",
    ),
];

/// Amazon's Windows Server 2022 images, seeded too: (id, name, day). The newest is what a
/// `--target windows` lease boots.
pub const WINDOWS_IMAGES: &[(&str, &str, &str)] = &[
    (
        "ami-0a1100000000e2201",
        "Windows_Server-2022-English-Full-Base-2025.10.15",
        "2025-10-15",
    ),
    (
        "ami-0a1100000000e2202",
        "Windows_Server-2022-English-Full-Base-2025.11.12",
        "2025-11-12",
    ),
    (
        "ami-0a1100000000e2203",
        "Windows_Server-2022-Japanese-Full-Base-2025.11.12",
        "2025-11-12",
    ),
];

/// The newest seeded image for `release` (`24.04` or `26.04`) and `architecture` (`x86_64`
/// or `arm64`): the one Crabbox's image lookup must pick.
pub fn newest_ubuntu_image(release: &str, architecture: &str) -> &'static UbuntuImage {
    UBUNTU_IMAGES
        .iter()
        .filter(|i| i.architecture == architecture && i.build.contains(&format!("-{release}-")))
        .max_by_key(|i| i.date)
        .unwrap_or_else(|| panic!("no seeded image for Ubuntu {release} {architecture}"))
}

/// A running moto server. Dropping it kills the server and everything it started.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Moto {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

impl Moto {
    /// Starts moto on a free 127.0.0.1 port and waits until it answers HTTP. Panics with
    /// moto's own output (or what to install) when it cannot start.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("cbx-moto")
            .tempdir()
            .expect("temp dir");
        let amis = dir.path().join("amis.json");
        std::fs::write(&amis, amis_json()).expect("write amis.json");
        for empty in ["aws-config", "aws-credentials"] {
            std::fs::write(dir.path().join(empty), "").expect("empty AWS file");
        }
        let (python, how) = python();
        let log_path = dir.path().join("moto.log");
        let mut last = String::new();
        // The port is picked, released and handed to moto: another process may take it in
        // between, so a start that fails is tried again on a new port.
        for _ in 0..3 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let log = std::fs::File::create(&log_path).expect("moto log");
            let mut cmd = Command::new(&python);
            cmd.args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .env("MOTO_AMIS_PATH", &amis)
            .env("MOTO_ENABLE_AMI_VALIDATION", "true")
            .env("MOTO_ENABLE_KEYPAIR_VALIDATION", "true")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("moto log"))
            .stderr(log)
            .process_group(0);
            strip_aws_env(&mut cmd);
            let mut child = cmd.spawn().unwrap_or_else(|e| {
                panic!(
                    "could not start moto with {} ({how}): {e}",
                    python.display()
                )
            });
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            match wait_until_answering(&mut child, addr, Duration::from_mins(1)) {
                Ok(()) => return Self { child, addr, dir },
                Err(why) => {
                    kill_group(&mut child);
                    last = format!(
                        "{why}\n{}",
                        std::fs::read_to_string(&log_path).unwrap_or_default()
                    );
                }
            }
        }
        panic!(
            "moto ({}, {how}) did not start: {}",
            python.display(),
            last.trim()
        );
    }

    /// The server's base URL, `http://127.0.0.1:<port>`: what `AWS_ENDPOINT_URL` is set to.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The region children are pointed at (`AWS_REGION`).
    pub fn region(&self) -> &'static str {
        DEFAULT_REGION
    }

    /// The environment a child's AWS SDK needs to reach this moto (through `endpoint`, which
    /// is [`Moto::url`] or a proxy in front of it) and nothing else: static test credentials,
    /// the region, no instance-metadata lookups, and empty shared config and credentials files
    /// so that the machine's own AWS profiles are never read. [`Moto::configure`] also removes
    /// every other `AWS_*` variable.
    pub fn env(&self, endpoint: &str) -> Vec<(&'static str, String)> {
        let file = |name: &str| self.dir.path().join(name).display().to_string();
        vec![
            ("AWS_ENDPOINT_URL", endpoint.to_owned()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.to_owned()),
            ("AWS_REGION", DEFAULT_REGION.to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
            ("AWS_CONFIG_FILE", file("aws-config")),
            ("AWS_SHARED_CREDENTIALS_FILE", file("aws-credentials")),
        ]
    }

    /// Points `cmd` at this moto through `endpoint`: removes every `AWS_*` variable it would
    /// inherit or was given (a profile, a session token, a service-specific endpoint such as
    /// `AWS_ENDPOINT_URL_EC2` would all win over ours) and sets [`Moto::env`].
    pub fn configure(&self, cmd: &mut Command, endpoint: &str) {
        strip_aws_env(cmd);
        cmd.envs(self.env(endpoint));
    }
}

/// Kills `child`, which leads its own process group, with everything it started, and reaps it.
fn kill_group(child: &mut Child) {
    if let Some(group) = rustix::process::Pid::from_raw(child.id().cast_signed()) {
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    }
    let _ = child.wait();
}

/// Waits until moto answers HTTP on `addr`, or says why not.
fn wait_until_answering(
    child: &mut Child,
    addr: SocketAddr,
    limit: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("moto exited with {status}"));
        }
        if answers_http(addr) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("moto did not answer on {addr} within {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Removes from `cmd` every `AWS_*` variable, of this process's environment or set on it.
fn strip_aws_env(cmd: &mut Command) {
    let set: Vec<std::ffi::OsString> = cmd.get_envs().map(|(k, _)| k.to_owned()).collect();
    for key in std::env::vars_os().map(|(k, _)| k).chain(set) {
        if key.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(key);
        }
    }
}

/// Whether an HTTP server answers a request on `addr`.
fn answers_http(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream
        .write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
}

/// The moto release the fixture is written against; scripts/dev-setup pins the same.
pub const MOTO_VERSION: &str = "5.2.6";

/// The Python that runs moto, and how it was found (for error messages).
fn python() -> (PathBuf, &'static str) {
    let venv = std::env::var_os("CRABBOX_MOTO_VENV").map_or_else(
        || {
            let data = std::env::var_os("XDG_DATA_HOME").map_or_else(
                || Path::new(&std::env::var_os("HOME").unwrap_or_default()).join(".local/share"),
                PathBuf::from,
            );
            data.join("crabbox-dev/moto")
        },
        PathBuf::from,
    );
    let venv_python = venv.join("bin/python");
    if venv_python.is_file() {
        return (venv_python, "the virtualenv scripts/dev-setup makes");
    }
    // Another moto than the pinned one may seed images differently or not at all (5.2.1 fails
    // on the seed file's dates), so only the pinned version is taken.
    let check = format!("import moto.server, sys; sys.exit(moto.__version__ != {MOTO_VERSION:?})");
    let pinned = Command::new("python3")
        .args(["-c", &check])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        pinned,
        "moto {MOTO_VERSION} is not installed: no {} and no python3 that imports that version; \
         run scripts/dev-setup (it installs moto[server]=={MOTO_VERSION} from PyPI into that \
         virtualenv)",
        venv_python.display()
    );
    (PathBuf::from("python3"), "python3 on PATH")
}

/// The seeded images in the form `MOTO_AMIS_PATH` takes.
fn amis_json() -> String {
    let images: Vec<serde_json::Value> = UBUNTU_IMAGES
        .iter()
        .map(|i| {
            serde_json::json!({
                "ami_id": i.id,
                "name": i.name(),
                "description": format!("Canonical, Ubuntu, {}", i.build),
                "owner_id": CANONICAL_OWNER,
                "public": true,
                "virtualization_type": "hvm",
                "architecture": i.architecture,
                "state": "available",
                "platform": null,
                "image_type": "machine",
                "hypervisor": "xen",
                "root_device_name": "/dev/sda1",
                "root_device_type": "ebs",
                "sriov": "simple",
                "creation_date": i.creation_date(),
            })
        })
        .collect();
    let macs = MACOS_IMAGES.iter().map(|(id, name, architecture, date)| {
        serde_json::json!({
            "ami_id": id,
            "name": name,
            "description": format!("Amazon macOS image {name}"),
            "owner_id": "628277914472",
            "public": true,
            "virtualization_type": "hvm",
            "architecture": architecture,
            "state": "available",
            "platform": null,
            "image_type": "machine",
            "hypervisor": "nitro",
            "root_device_name": "/dev/sda1",
            "root_device_type": "ebs",
            "sriov": "simple",
            "creation_date": format!("{date}T00:00:00.000Z"),
        })
    });
    let windows = WINDOWS_IMAGES.iter().map(|(id, name, date)| {
        serde_json::json!({
            "ami_id": id,
            "name": name,
            "description": format!("Microsoft Windows Server 2022 {name}"),
            "owner_id": "801119661308",
            "public": true,
            "virtualization_type": "hvm",
            "architecture": "x86_64",
            "state": "available",
            "platform": "windows",
            "image_type": "machine",
            "hypervisor": "xen",
            "root_device_name": "/dev/sda1",
            "root_device_type": "ebs",
            "sriov": "simple",
            "creation_date": format!("{date}T00:00:00.000Z"),
        })
    });
    serde_json::Value::Array(images.into_iter().chain(macs).chain(windows).collect()).to_string()
}
