//! Test fixtures for Crabbox: an isolated home (config, state and keys in a temp dir), git
//! repository builders, a CLI harness that runs the real `crabbox` binary, and process
//! helpers that read `/proc` instead of relying on procps.
//!
//! For clouds without a cloud (docs/design/cloud-testing.md): loopback-only network
//! namespaces ([`netns`]), moto ([`moto`]), raw EC2 query calls ([`ec2_query`]), a
//! fault-injecting EC2 proxy ([`fault_proxy`]) and a boot emulator that gives moto's
//! instances a runner sshd ([`boot_emulator`]). It does not hold product code or mocks of
//! Crabbox's own traits: every fixture speaks a real protocol on a real socket.

pub mod boot_emulator;
pub mod cloud_config;
pub mod ec2_query;
pub mod fake_azure;
pub mod fake_github;
pub mod fake_hetzner;
pub mod fault_proxy;
pub mod moto;
pub mod netns;
pub mod procs;
pub mod tls;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// An isolated environment: its own HOME, XDG config and state directories, and `local`
/// runners whose login shells use that HOME too (see [`Sandbox::sshd_wrapper`]). The file
/// watcher is off (`CRABBOX_SYNC_WATCH=0`) unless [`Sandbox::watching`] turns it on, so the
/// many throwaway repositories of a test run do not each get a watcher daemon.
#[derive(Debug)]
pub struct Sandbox {
    root: tempfile::TempDir,
    bin: PathBuf,
    sshd: PathBuf,
    runner_sshd: PathBuf,
    watch: bool,
}

/// Processes started from the sandbox outlive the test otherwise: the `local` provider's
/// runners are detached `sshd`s (a coordinator killed by its test leaves its runners behind).
/// Each one that names the sandbox on its command line is stopped before the directory goes.
impl Drop for Sandbox {
    fn drop(&mut self) {
        let me = std::process::id();
        for pid in procs::naming(self.root.path().as_os_str().as_encoded_bytes()) {
            if pid != me {
                procs::signal(pid, procs::Signal::TERM);
            }
        }
    }
}

impl Sandbox {
    /// A new sandbox running the crabbox binary at `bin`, whose `local` runners start the
    /// OpenSSH server at `sshd` (an absolute path).
    pub fn new(bin: impl Into<PathBuf>, sshd: impl Into<PathBuf>) -> Self {
        let root = tempfile::Builder::new()
            .prefix("cbx-test")
            .tempdir()
            .expect("temp dir");
        for dir in ["home", "config", "state", "work", "bin", "tmp"] {
            std::fs::create_dir_all(root.path().join(dir)).expect("sandbox dirs");
        }
        let mut sb = Self {
            root,
            bin: bin.into(),
            sshd: sshd.into(),
            runner_sshd: PathBuf::new(),
            watch: false,
        };
        sb.runner_sshd = sb.sshd_wrapper("sshd", "", "");
        sb
    }

    /// Leaves `sync.watch` to the configuration (on by default on Linux). Watcher daemons
    /// exit when their repository is deleted with the sandbox.
    #[must_use]
    pub fn watching(mut self) -> Self {
        self.watch = true;
        self
    }

    pub fn path(&self) -> &Path {
        self.root.path()
    }

    /// A directory for the test's own files.
    pub fn work(&self) -> PathBuf {
        self.root.path().join("work")
    }

    /// The sandbox's HOME, for the CLI and for the login shells of its `local` runners.
    pub fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }

    /// Writes `bin/<name>`, an executable for `CRABBOX_SSHD`: it runs the shell lines
    /// `before`, then the real sshd with the arguments it was given plus `extra_args`.
    ///
    /// The sshd gives its sessions the sandbox's HOME (`SetEnv`), so a runner's login shell
    /// reads the sandbox's (empty) rc files instead of the machine user's. Otherwise whatever
    /// those files print or cost decides whether tests pass: root's `~/.bashrc` on our CI
    /// machines initialises pyenv, ~100 ms on every remote exec, and a pyenv rehash killed
    /// half-way leaves a lock that stalls every later shell for 60 s.
    pub fn sshd_wrapper(&self, name: &str, before: &str, extra_args: &str) -> PathBuf {
        let path = self.root.path().join("bin").join(name);
        let script = format!(
            "#!/bin/sh\n{before}\nexec {sshd} \"$@\" -o {home} {extra_args}\n",
            sshd = sh_quote(&self.sshd.to_string_lossy()),
            home = sh_quote(&format!("SetEnv=HOME={}", self.home().display())),
        );
        std::fs::write(&path, script).expect("sshd wrapper");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("sshd wrapper mode");
        path
    }

    /// `program` running in `dir` with the sandbox's environment: its HOME and XDG
    /// directories, no `CRABBOX_*`, `CI` or proxy settings from the machine, no system git
    /// configuration, and the sandbox's runner sshd.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>, dir: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(dir);
        for (key, _) in std::env::vars_os() {
            let name = key.to_string_lossy();
            // Every test talks to 127.0.0.1 only; a machine's proxy must not be asked.
            let proxy = name.to_ascii_lowercase().ends_with("_proxy");
            if name.starts_with("CRABBOX_") || name == "CI" || proxy {
                cmd.env_remove(&key);
            }
        }
        cmd.env("HOME", self.home())
            .env("XDG_CONFIG_HOME", self.root.path().join("config"))
            .env("XDG_STATE_HOME", self.root.path().join("state"))
            // SSH control sockets live under the temp dir: the sandbox's own, so its masters
            // can be found (and are stopped with it).
            .env("TMPDIR", self.root.path().join("tmp"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("CRABBOX_SSHD", &self.runner_sshd);
        if !self.watch {
            cmd.env("CRABBOX_SYNC_WATCH", "0");
        }
        cmd
    }

    /// A `crabbox` command running in `dir` with the sandbox's environment.
    pub fn crabbox(&self, dir: &Path, args: &[&str]) -> Command {
        let mut cmd = self.command(&self.bin, dir);
        cmd.args(args);
        cmd
    }

    /// Runs `crabbox` to completion.
    pub fn run(&self, dir: &Path, args: &[&str]) -> Output {
        self.crabbox(dir, args).output().expect("crabbox runs")
    }

    /// The pids of SSH `ControlMaster` processes of this sandbox's commands that are still
    /// running, after giving ones that were just asked to exit a moment to do so.
    pub fn ssh_masters(&self) -> Vec<u32> {
        let sockets = self.root.path().join("tmp");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        loop {
            let masters: Vec<u32> = procs::naming(sockets.as_os_str().as_encoded_bytes())
                .into_iter()
                .filter(|pid| {
                    procs::argv(*pid)
                        .first()
                        .is_some_and(|a| a.starts_with("ssh"))
                })
                .collect();
            if masters.is_empty() || std::time::Instant::now() >= deadline {
                return masters;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

/// A runtime of its own for a server fixture, so the fixture keeps serving while a test blocks
/// its own thread (running the CLI and waiting for it), whatever runtime the test uses. Its
/// owner drops it with `shutdown_background`, which is allowed inside another runtime.
pub(crate) fn background_runtime(name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("a runtime for a fixture")
}

/// What a fixture's HTTP handler answers: an error closes the connection without an answer
/// (how the fakes and the fault proxy drop a reply).
pub(crate) type HttpAnswer =
    Result<hyper::Response<http_body_util::Full<hyper::body::Bytes>>, std::io::Error>;

/// A listener on a free 127.0.0.1 port, and its address, for a fixture that needs the
/// address before it serves (to put it in its answers).
pub(crate) fn loopback_listener(what: &str) -> (std::net::TcpListener, std::net::SocketAddr) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("bind the {what}: {e}"));
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let addr = listener.local_addr().expect("the listener's address");
    (listener, addr)
}

/// Serves HTTP/1.1 on `listener` from `runtime`, every request to `handle`.
pub(crate) fn serve_http<H, F>(
    runtime: &tokio::runtime::Runtime,
    listener: std::net::TcpListener,
    handle: H,
) where
    H: Fn(hyper::Request<hyper::body::Incoming>) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = HttpAnswer> + Send + 'static,
{
    runtime.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(serve_connection(stream, handle.clone()));
        }
    });
}

/// Serves HTTP/1.1 over TLS on `listener` from `runtime`, every request to `handle`, with the
/// certificate of `tls` (a [`tls::TestCa`]'s server configuration).
pub(crate) fn serve_https<H, F>(
    runtime: &tokio::runtime::Runtime,
    listener: std::net::TcpListener,
    tls: std::sync::Arc<rustls::ServerConfig>,
    handle: H,
) where
    H: Fn(hyper::Request<hyper::body::Incoming>) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = HttpAnswer> + Send + 'static,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    runtime.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let handle = handle.clone();
            tokio::spawn(async move {
                // A failed handshake is a client that does not trust the test CA (or is not
                // speaking TLS): it gets its alert and nothing else.
                if let Ok(stream) = acceptor.accept(stream).await {
                    serve_connection(stream, handle).await;
                }
            });
        }
    });
}

/// Answers the requests of one connection until it closes.
async fn serve_connection<S, H, F>(stream: S, handle: H)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    H: Fn(hyper::Request<hyper::body::Incoming>) -> F + Send + Sync + 'static,
    F: std::future::Future<Output = HttpAnswer> + Send + 'static,
{
    let service = hyper::service::service_fn(handle);
    // An error here is a dropped reply or a client gone: nothing to report. Either way the
    // connection is closed (over TLS without a close_notify), so a dropped reply reaches the
    // client as a connection cut before any answer.
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .await;
}

/// `s` quoted for a POSIX shell.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Stdout of an output as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Stderr of an output as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Exit code (signals as 128+N).
pub fn code(out: &Output) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    out.status
        .code()
        .unwrap_or_else(|| 128 + out.status.signal().unwrap_or(0))
}

/// Runs git in `dir`, panicking with its stderr on failure. The machine's global and system
/// git configuration is ignored (a signing or hook setting there must not break a test), and
/// messages are in the C locale whatever the machine's is.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("LC_ALL", "C")
        .args([
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.com",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Creates a git repository at `dir` with `files` committed.
pub fn git_repo(dir: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).expect("repo dir");
    git(dir, &["init", "-q"]);
    for (path, contents) in files {
        write(dir, path, contents);
    }
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "initial"]);
}

/// Writes a file, creating parent directories.
pub fn write(dir: &Path, path: &str, contents: &str) {
    let full = dir.join(path);
    if let Some(parent) = full.parent() {
        std::fs::create_dir_all(parent).expect("parent dirs");
    }
    std::fs::write(full, contents).expect("write file");
}

/// A silent `curl` (errors still shown) that reads no `~/.curlrc` and asks no proxy: every
/// server a test talks to is on 127.0.0.1, whatever the machine is set up for.
pub fn curl() -> Command {
    let mut cmd = Command::new("curl");
    // `-q` only works as the first argument.
    cmd.args(["-q", "--noproxy", "*", "-sS"]);
    cmd
}
