//! Checkpoint workspace archives against a real sshd, tar and zstd: create, check, restore.

mod hostile;
mod tarball;

use std::collections::BTreeMap;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use crabbox_remote::process;
use crabbox_remote::ssh::SshTarget;
use crabbox_remote::sshd;
use crabbox_remote::workspace_archive::{self, ArchiveError, RestoreMode};
use sha2::{Digest, Sha256};

use crate::runner;

/// A runner (a private sshd) with a scratch directory; the sshd and its connections are stopped
/// when the test ends, however it ends.
struct Fixture {
    tmp: tempfile::TempDir,
    target: SshTarget,
}

impl Fixture {
    async fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let target = runner(tmp.path()).await;
        Self { tmp, target }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(pid) = sshd::pid_of(&self.tmp.path().join("sshd")) {
            for conn in process::descendants(pid) {
                process::signal_pid(conn, false);
            }
            process::signal_pid(pid, false);
        }
    }
}

fn write(path: &Path, data: &str, mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Everything under `root` as path → what a user would see there: kind, mode, and contents or
/// link target. `.` is the root itself.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, path: &Path, out: &mut BTreeMap<String, String>) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    let mode = meta.permissions().mode() & 0o7777;
    let rel = path.strip_prefix(root).unwrap().display().to_string();
    let rel = if rel.is_empty() { ".".to_owned() } else { rel };
    let seen = if meta.is_symlink() {
        format!("link -> {}", std::fs::read_link(path).unwrap().display())
    } else if meta.is_dir() {
        let mut children: Vec<_> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        children.sort();
        for child in children {
            walk(root, &child, out);
        }
        format!("dir {mode:o}")
    } else {
        let data = std::fs::read(path).unwrap();
        if data.len() > 100 {
            let digest = hex::encode(&Sha256::digest(&data)[..8]);
            format!("file {mode:o} {} bytes, sha256 {digest}", data.len())
        } else {
            format!("file {mode:o} {:?}", String::from_utf8_lossy(&data))
        }
    };
    out.insert(rel, seen);
}

/// A workdir with what checkpoints must keep: modes, symlinks, a hard link, an empty directory,
/// a private root mode; and the lease's own state in `lease_paths`, which must stay out.
fn sample_workdir(wd: &Path, lease_paths: &[&str]) {
    write(&wd.join("README.md"), "hello\n", 0o644);
    write(&wd.join("bin/run.sh"), "#!/bin/sh\necho run\n", 0o755);
    write(&wd.join("private.key"), "secret\n", 0o600);
    write(&wd.join("deep/a/b/c.txt"), "deep\n", 0o640);
    // Bigger than what a restore sends in one piece, and not compressible.
    let mut x: u32 = 7;
    let noise: String = (0..3 << 20)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            char::from(b'!' + (x >> 16) as u8 % 90)
        })
        .collect();
    write(&wd.join("deep/noise.txt"), &noise, 0o644);
    std::fs::create_dir_all(wd.join("empty")).unwrap();
    symlink("README.md", wd.join("readme")).unwrap();
    symlink("../deep/a", wd.join("bin/a")).unwrap();
    std::fs::hard_link(wd.join("README.md"), wd.join("README.copy")).unwrap();
    write(&wd.join(".crabbox/sync-manifest"), "README.md\n", 0o644);
    for path in lease_paths {
        write(&wd.join(path).join("state"), "lease only\n", 0o600);
    }
    std::fs::set_permissions(wd, std::fs::Permissions::from_mode(0o750)).unwrap();
}

/// `tree(wd)` without the lease's own paths: what an archive of it restores.
fn archived_tree(wd: &Path) -> BTreeMap<String, String> {
    let mut expected = tree(wd);
    expected.retain(|path, _| {
        !workspace_archive::PROTECTED_PATHS
            .iter()
            .any(|p| path == p || path.starts_with(&format!("{p}/")))
    });
    expected
}

/// Names in `dir` that a restore leaves behind when it does not clean up after itself.
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".crabbox-restore-") || n.contains(".crabbox-old-"))
        .collect()
}

#[tokio::test]
async fn a_workdir_round_trips_through_an_archive() {
    let fx = Fixture::new().await;
    let src = fx.path("runner/src");
    sample_workdir(&src, &workspace_archive::PROTECTED_PATHS);
    let dest = fx.path("local/workspace.tar.zst");
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();

    let stats = workspace_archive::create(&fx.target, src.to_str().unwrap(), &dest)
        .await
        .unwrap();
    let meta = std::fs::metadata(&dest).unwrap();
    assert_eq!(stats.bytes, meta.len());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(!fx.path("local/workspace.tar.zst.tmp").exists());

    let report = workspace_archive::check(&dest).unwrap();
    assert_eq!(
        (report.files, report.symlinks, report.hard_links),
        (6, 2, 1)
    );

    let restored = fx.path("runner/elsewhere/new/repo");
    let stats = workspace_archive::restore(
        &fx.target,
        &dest,
        restored.to_str().unwrap(),
        RestoreMode::default(),
    )
    .await
    .unwrap();
    assert_eq!(stats.entries, report.entries);
    assert_eq!(tree(&restored), archived_tree(&src));
    assert!(!restored.join(".crabbox/env").exists());
    assert_eq!(leftovers(restored.parent().unwrap()), Vec::<String>::new());
}

#[tokio::test]
async fn a_missing_workdir_leaves_no_archive_behind() {
    let fx = Fixture::new().await;
    let dest = fx.path("workspace.tar.zst");
    let missing = fx.path("runner/nope");

    let err = workspace_archive::create(&fx.target, missing.to_str().unwrap(), &dest)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ArchiveError::MissingWorkdir { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("workdir {} does not exist on 127.0.0.1", missing.display())
    );
    assert!(!dest.exists());
    assert!(!fx.path("workspace.tar.zst.tmp").exists());
}

#[tokio::test]
async fn restore_merges_or_clears_and_a_dry_run_changes_nothing() {
    let fx = Fixture::new().await;
    let src = fx.path("runner/src");
    write(&src.join("a.txt"), "archived\n", 0o644);
    write(&src.join("dir/b.txt"), "archived\n", 0o644);
    write(&src.join("was-a-file/x.txt"), "archived\n", 0o644);
    write(&src.join("was-a-dir"), "archived\n", 0o644);
    let archive = fx.path("workspace.tar.zst");
    workspace_archive::create(&fx.target, src.to_str().unwrap(), &archive)
        .await
        .unwrap();

    let wd = fx.path("runner/wd");
    write(&wd.join("a.txt"), "local edit\n", 0o644);
    write(&wd.join("unrelated.txt"), "keep me\n", 0o644);
    write(&wd.join("dir/c.txt"), "keep me\n", 0o644);
    write(&wd.join("was-a-file"), "local\n", 0o644);
    write(&wd.join("was-a-dir/y.txt"), "local\n", 0o644);
    write(&wd.join(".crabbox/logs/run.log"), "lease log\n", 0o644);
    let wd_arg = wd.to_str().unwrap();
    let before = tree(fx.path("runner").as_path());

    let plan = workspace_archive::plan(&fx.target, &archive, wd_arg, RestoreMode { clear: true })
        .await
        .unwrap();
    assert!(plan.workdir_exists);
    assert_eq!(plan.top_level_entries, 6);
    assert_eq!(plan.check.files, 4);
    assert_eq!(tree(fx.path("runner").as_path()), before);

    workspace_archive::restore(&fx.target, &archive, wd_arg, RestoreMode { clear: false })
        .await
        .unwrap();
    let merged = tree(&wd);
    let mut expected = tree(&src);
    for kept in [
        "unrelated.txt",
        "dir/c.txt",
        ".crabbox",
        ".crabbox/logs",
        ".crabbox/logs/run.log",
    ] {
        expected.insert(kept.to_owned(), before[&format!("wd/{kept}")].clone());
    }
    assert_eq!(merged, expected);

    workspace_archive::restore(&fx.target, &archive, wd_arg, RestoreMode { clear: true })
        .await
        .unwrap();
    assert_eq!(tree(&wd), tree(&src));
    assert_eq!(leftovers(&fx.path("runner")), Vec::<String>::new());
}

#[tokio::test]
async fn an_old_gzip_archive_restores() {
    let fx = Fixture::new().await;
    let src = fx.path("runner/src");
    // The lease state the Go system kept on a runner: env and scripts it left out of its
    // archives, its logs it did not (a restore leaves them out).
    sample_workdir(&src, &[".crabbox/env", ".crabbox/scripts"]);
    write(&src.join(".crabbox/logs/old.log"), "go log\n", 0o644);
    // What the Go system ran on the runner (spec §3.4), output stored as workspace.tar.gz.
    let archive = fx.path("workspace.tar.gz");
    let status = std::process::Command::new("tar")
        .arg("-C")
        .arg(&src)
        .args([
            "--exclude",
            "./.crabbox/env",
            "--exclude",
            "./.crabbox/scripts",
        ])
        .arg("-czf")
        .arg(&archive)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());

    workspace_archive::check(&archive).unwrap();
    let wd = fx.path("runner/restored");
    workspace_archive::restore(
        &fx.target,
        &archive,
        wd.to_str().unwrap(),
        RestoreMode::default(),
    )
    .await
    .unwrap();
    assert_eq!(tree(&wd), archived_tree(&src));
}
