//! Test fixtures for Crabbox: an isolated home (config, state and keys in a temp dir), git
//! repository builders and a CLI harness that runs the real `crabbox` binary.

pub mod fake_github;

pub use crabbox_remote::process::descendants;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// An isolated environment: its own HOME, XDG config and state directories. The file watcher
/// is off (`CRABBOX_SYNC_WATCH=0`) unless [`Sandbox::watching`] turns it on, so the many
/// throwaway repositories of a test run do not each get a watcher daemon.
#[derive(Debug)]
pub struct Sandbox {
    root: tempfile::TempDir,
    bin: PathBuf,
    watch: bool,
}

/// Processes started from the sandbox outlive the test otherwise: the `local` provider's
/// runners are detached `sshd`s (a coordinator killed by its test leaves its runners behind).
/// Each one that names the sandbox on its command line is stopped before the directory goes.
impl Drop for Sandbox {
    fn drop(&mut self) {
        let root = self.root.path().as_os_str().as_encoded_bytes();
        let me = i32::try_from(std::process::id()).unwrap_or_default();
        for (pid, cmdline) in processes() {
            if pid != me && cmdline.windows(root.len()).any(|w| w == root) {
                let _ = Command::new("kill").arg(pid.to_string()).status();
            }
        }
    }
}

impl Sandbox {
    /// A new sandbox running the binary at `bin`.
    pub fn new(bin: impl Into<PathBuf>) -> Self {
        let root = tempfile::Builder::new()
            .prefix("cbx-test")
            .tempdir()
            .expect("temp dir");
        for dir in ["home", "config", "state", "work", "tmp"] {
            std::fs::create_dir_all(root.path().join(dir)).expect("sandbox dirs");
        }
        Self {
            root,
            bin: bin.into(),
            watch: false,
        }
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

    /// A `crabbox` command running in `dir` with the sandbox's environment.
    pub fn crabbox(&self, dir: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.current_dir(dir).args(args);
        for (key, _) in std::env::vars() {
            if key.starts_with("CRABBOX_") || key == "CI" {
                cmd.env_remove(key);
            }
        }
        cmd.env("HOME", self.root.path().join("home"))
            .env("XDG_CONFIG_HOME", self.root.path().join("config"))
            .env("XDG_STATE_HOME", self.root.path().join("state"))
            // SSH control sockets live under the temp dir: the sandbox's own, so its masters
            // can be found (and are stopped with it).
            .env("TMPDIR", self.root.path().join("tmp"))
            .env("GIT_CONFIG_NOSYSTEM", "1");
        if !self.watch {
            cmd.env("CRABBOX_SYNC_WATCH", "0");
        }
        cmd
    }

    /// Runs `crabbox` to completion.
    pub fn run(&self, dir: &Path, args: &[&str]) -> Output {
        self.crabbox(dir, args).output().expect("crabbox runs")
    }

    /// The pids of SSH `ControlMaster` processes of this sandbox's commands that are still
    /// running, after giving ones that were just asked to exit a moment to do so.
    pub fn ssh_masters(&self) -> Vec<i32> {
        let sockets = self.root.path().join("tmp");
        let needle = sockets.as_os_str().as_encoded_bytes();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        loop {
            let masters: Vec<i32> = processes()
                .into_iter()
                .filter(|(_, cmdline)| {
                    cmdline.starts_with(b"ssh")
                        && cmdline.windows(needle.len()).any(|w| w == needle)
                })
                .map(|(pid, _)| pid)
                .collect();
            if masters.is_empty() || std::time::Instant::now() >= deadline {
                return masters;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

/// Every process's pid and command line (NUL-separated words).
fn processes() -> Vec<(i32, Vec<u8>)> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            Some((pid, cmdline))
        })
        .collect()
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

/// Runs git in `dir`, panicking with its stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
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
