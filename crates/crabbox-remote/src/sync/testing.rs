//! Test fixtures: throwaway git repositories driven by the real `git` binary.

use std::path::Path;
use std::process::Command;

/// A temporary git repository with a fixed identity and no global configuration.
#[derive(Debug)]
pub(crate) struct GitRepo {
    dir: tempfile::TempDir,
}

impl GitRepo {
    pub(crate) fn new() -> Self {
        let repo = Self {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs git in the repository and returns its trimmed stdout; panics on failure.
    pub(crate) fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .current_dir(self.path())
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args([
                "-c",
                "commit.gpgsign=false",
                "-c",
                "core.hooksPath=/dev/null",
            ])
            .args(args)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .expect("run git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

/// Writes `body` to `root/rel`, creating parent directories.
pub(crate) fn write(root: &Path, rel: &str, body: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().expect("relative path has a parent")).expect("mkdir");
    std::fs::write(path, body).expect("write");
}
