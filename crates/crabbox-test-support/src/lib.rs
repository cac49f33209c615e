//! Test fixtures for Crabbox: an isolated home (config, state and keys in a temp dir), git
//! repository builders and a CLI harness that runs the real `crabbox` binary.

pub mod fake_github;

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
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return;
        };
        let me = std::process::id().to_string();
        for entry in procs.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            if pid == me {
                continue;
            }
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            if cmdline.windows(root.len()).any(|w| w == root) {
                let _ = Command::new("kill").arg(pid).status();
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
        for dir in ["home", "config", "state", "work"] {
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

/// Every descendant pid of `pid` (Linux /proc), children first.
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut parents: Vec<(i32, i32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Ok(p) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            let Some((_, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
                parents.push((p, ppid));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(current) = frontier.pop() {
        for (child, parent) in &parents {
            if *parent == current {
                out.push(*child);
                frontier.push(*child);
            }
        }
    }
    out
}
