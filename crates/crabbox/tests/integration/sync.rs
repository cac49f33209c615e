//! Sync through `crabbox run`: file kinds, deletions, excludes, git coherence, skips, locking.

use std::os::unix::fs::PermissionsExt;

use std::path::Path;

use crabbox_test_support::{Sandbox, code, git, git_repo, stderr, stdout, write};

use crate::{sandbox, timing, warm};

/// Runs the runner's git as the test's own git runs (see `crabbox_test_support::git`): no
/// system or global configuration, messages in the C locale, so their outputs compare.
fn remote_git(sb: &Sandbox, repo: &Path, id: Option<&str>, commands: &str) -> String {
    let script =
        format!("export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1 LC_ALL=C; {commands}");
    let mut args = vec!["run"];
    if let Some(id) = id {
        args.extend(["--id", id]);
    }
    args.extend(["--", "sh", "-c", &script]);
    let out = sb.run(repo, &args);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    stdout(&out)
}

/// Lists the remote tree (files, modes, link targets, content hashes), excluding `.git`.
pub const TREE: &str = "find . -path ./.git -prune -o \\( -type f -o -type l \\) -print | LC_ALL=C sort | while IFS= read -r f; do if [ -L \"$f\" ]; then echo \"$f -> $(readlink \"$f\")\"; else echo \"$f $(stat -c %a \"$f\") $(sha256sum < \"$f\" | cut -c1-12)\"; fi; done";

fn remote_tree(sb: &Sandbox, repo: &Path, id: &str) -> String {
    let out = sb.run(repo, &["run", "--id", id, "--shell", "--", TREE]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    stdout(&out)
}

pub fn local_tree(repo: &Path, skip: &[&str]) -> String {
    let out = std::process::Command::new("sh")
        .current_dir(repo)
        .arg("-c")
        .arg(TREE)
        .output()
        .unwrap();
    stdout(&out)
        .lines()
        .filter(|l| !skip.iter().any(|s| l.starts_with(s)))
        .flat_map(|l| [l, "\n"])
        .collect()
}

#[test]
fn every_kind_of_change_reaches_the_runner() {
    let sb = sandbox();
    let repo = sb.work().join("repo");
    git_repo(
        &repo,
        &[
            ("keep.txt", "keep\n"),
            ("mod.txt", "v1\n"),
            ("gone.txt", "bye\n"),
            ("old name.txt", "rename me\n"),
            ("run.sh", "#!/bin/sh\n"),
        ],
    );
    let id = warm(&sb, &repo);
    assert_eq!(remote_tree(&sb, &repo, &id), local_tree(&repo, &[]));

    write(&repo, "mod.txt", "v2\n");
    write(&repo, "new dir/ünïcödé file.txt", "new\n");
    std::fs::remove_file(repo.join("gone.txt")).unwrap();
    std::fs::rename(repo.join("old name.txt"), repo.join("new name.txt")).unwrap();
    std::fs::set_permissions(repo.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("keep.txt", repo.join("link")).unwrap();
    let big = (0..200_000)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(" line\n");
    write(&repo, "big.bin", &big);
    let tree = remote_tree(&sb, &repo, &id);
    assert_eq!(tree, local_tree(&repo, &[]));
    assert!(
        tree.contains("./link -> keep.txt")
            && tree.contains("./run.sh 755")
            && !tree.contains("gone.txt"),
        "{tree}"
    );

    assert_eq!(
        remote_git(&sb, &repo, Some(&id), "git status --short"),
        git(&repo, &["status", "--short"]),
        "remote git status matches local"
    );
    sb.run(&repo, &["stop", &id]);
}

#[test]
fn crabboxignore_and_config_excludes_keep_files_local() {
    let sb = sandbox();
    let repo = sb.work().join("repo");
    git_repo(
        &repo,
        &[
            ("src/a.rs", "a\n"),
            (".crabboxignore", "# local only\nsecrets/\n*.log\n"),
            ("crabbox.yaml", "sync:\n  exclude:\n    - scratch\n"),
        ],
    );
    write(&repo, "secrets/key", "k\n");
    write(&repo, "debug.log", "log\n");
    write(&repo, "scratch/x", "x\n");
    write(&repo, "node_modules/m/index.js", "m\n");
    write(&repo, "target/debug/bin", "b\n");
    let out = sb.run(
        &repo,
        &[
            "run", "--", "find", ".", "-path", "./.git", "-prune", "-o", "-type", "f", "-print",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let mut files: Vec<&str> = stdout(&out)
        .lines()
        .map(str::to_owned)
        .collect::<Vec<_>>()
        .leak()
        .iter()
        .map(String::as_str)
        .collect();
    files.sort_unstable();
    assert_eq!(files, ["./.crabboxignore", "./crabbox.yaml", "./src/a.rs"]);
}

#[test]
fn warm_loop_skips_sync_until_something_changes_locally_or_remotely() {
    let sb = sandbox();
    let repo = sb.work().join("repo");
    git_repo(&repo, &[("a.txt", "one\n")]);
    let id = warm(&sb, &repo);
    let first = sb.run(
        &repo,
        &["run", "--id", &id, "--timing-json", "--", "cat", "a.txt"],
    );
    assert!(!timing(&first)["syncSkipped"].as_bool().unwrap());
    for _ in 0..2 {
        let again = sb.run(
            &repo,
            &["run", "--id", &id, "--timing-json", "--", "cat", "a.txt"],
        );
        assert!(
            timing(&again)["syncSkipped"].as_bool().unwrap(),
            "no change: sync skipped: {}",
            stderr(&again)
        );
        assert_eq!(stdout(&again), "one\n");
    }
    write(&repo, "a.txt", "two\n");
    let changed = sb.run(
        &repo,
        &["run", "--id", &id, "--timing-json", "--", "cat", "a.txt"],
    );
    assert!(!timing(&changed)["syncSkipped"].as_bool().unwrap());
    assert_eq!(stdout(&changed), "two\n");
    // The command itself edits a synced file: the next run must restore the local version.
    let edit = sb.run(
        &repo,
        &[
            "run",
            "--id",
            &id,
            "--",
            "sh",
            "-c",
            "echo remote-edit > a.txt",
        ],
    );
    assert_eq!(code(&edit), 0);
    let restored = wait_restored(&sb, &repo, &id);
    assert_eq!(restored, "two\n");
    sb.run(&repo, &["stop", &id]);
}

fn wait_restored(sb: &Sandbox, repo: &Path, id: &str) -> String {
    let out = sb.run(repo, &["run", "--id", id, "--", "cat", "a.txt"]);
    stdout(&out)
}

#[test]
fn non_git_directories_sync_too() {
    let sb = sandbox();
    let dir = sb.work().join("plain dir");
    write(&dir, "notes.txt", "plain\n");
    write(&dir, "node_modules/x.js", "x\n");
    let out = sb.run(&dir, &["run", "--", "sh", "-c", "cat notes.txt; ls"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "plain\nnotes.txt\n");
}

#[test]
fn concurrent_runs_on_one_lease_never_see_a_half_synced_tree() {
    let sb = sandbox();
    let repo = sb.work().join("repo");
    git_repo(&repo, &[("v.txt", "old\n")]);
    let id = warm(&sb, &repo);
    assert_eq!(code(&sb.run(&repo, &["run", "--id", &id, "--", "true"])), 0);
    // The local provider's runner shares this filesystem, so the command can signal the test.
    let started = sb.work().join("started");
    let script = format!(
        "cat v.txt; touch '{}'; sleep 2; cat v.txt",
        started.display()
    );
    let first = sb
        .crabbox(&repo, &["run", "--id", &id, "--", "sh", "-c", &script])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if started.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    assert!(started.exists(), "first run never started its command");
    write(&repo, "v.txt", "new\n");
    let second = sb.run(&repo, &["run", "--id", &id, "--", "cat", "v.txt"]);
    let first = first.wait_with_output().unwrap();
    assert_eq!(
        stdout(&first),
        "old\nold\n",
        "the first run kept its revision: {}",
        stderr(&first)
    );
    assert_eq!(stdout(&second), "new\n", "{}", stderr(&second));
    sb.run(&repo, &["stop", &id]);
}

/// A git repository with `f/0.txt` … `f/<count - 1>.txt` and `extra` committed.
fn repo_with_numbered_files(repo: &std::path::Path, count: usize, extra: &[(&str, &str)]) {
    let files: Vec<(String, String)> = (0..count)
        .map(|i| (format!("f/{i}.txt"), format!("{i}\n")))
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .chain(extra.iter().copied())
        .collect();
    git_repo(repo, &refs);
}

#[test]
fn mass_deletion_guard_refuses_then_allows() {
    let sb = sandbox();
    let repo = sb.work().join("repo");
    repo_with_numbered_files(&repo, 210, &[]);
    let id = warm(&sb, &repo);
    assert_eq!(code(&sb.run(&repo, &["run", "--id", &id, "--", "true"])), 0);
    std::fs::remove_dir_all(repo.join("f")).unwrap();
    let refused = sb.run(&repo, &["run", "--id", &id, "--", "ls", "f"]);
    assert_eq!(code(&refused), 6, "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("mass-deletion guard"),
        "{}",
        stderr(&refused)
    );
    let allowed = sb
        .crabbox(
            &repo,
            &[
                "run",
                "--id",
                &id,
                "--",
                "sh",
                "-c",
                "ls f 2>/dev/null | wc -l",
            ],
        )
        .env("CRABBOX_ALLOW_MASS_DELETIONS", "1")
        .output()
        .unwrap();
    assert_eq!(stdout(&allowed).trim(), "0", "{}", stderr(&allowed));
    sb.run(&repo, &["stop", &id]);
}

#[test]
fn sync_only_and_no_sync() {
    let sb = sandbox();
    let repo = sb.work().join("repo");
    git_repo(&repo, &[("a.txt", "a\n")]);
    let id = warm(&sb, &repo);
    let out = sb.run(&repo, &["run", "--id", &id, "--sync-only"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).starts_with("synced /"), "{}", stdout(&out));
    write(&repo, "a.txt", "changed\n");
    let out = sb.run(
        &repo,
        &["run", "--id", &id, "--no-sync", "--", "cat", "a.txt"],
    );
    assert_eq!(
        stdout(&out),
        "a\n",
        "--no-sync leaves the remote tree alone"
    );
    let out = sb.run(
        &repo,
        &["run", "--id", &id, "--full-resync", "--", "cat", "a.txt"],
    );
    assert_eq!(stdout(&out), "changed\n");
    sb.run(&repo, &["stop", &id]);
}

#[test]
fn runner_git_knows_the_base_branch() {
    let sb = sandbox();
    let origin = sb.work().join("origin.git");
    std::fs::create_dir_all(&origin).unwrap();
    git(&origin, &["init", "-q", "--bare"]);
    let repo = sb.work().join("repo");
    git_repo(&repo, &[("lib.rs", "fn a() {}\n")]);
    git(
        &repo,
        &["remote", "add", "origin", origin.to_str().unwrap()],
    );
    git(&repo, &["push", "-q", "origin", "HEAD:main"]);
    git(&repo, &["fetch", "-q", "origin"]);
    git(&repo, &["remote", "set-head", "origin", "main"]);
    git(&repo, &["checkout", "-q", "-b", "feature"]);
    write(&repo, "lib.rs", "fn a() {}\nfn b() {}\n");
    git(&repo, &["commit", "-q", "-am", "add b"]);
    write(&repo, "new.rs", "fn c() {}\n");
    let remote = remote_git(
        &sb,
        &repo,
        None,
        "git diff --stat origin/main; git status --short --branch",
    );
    let local = git(&repo, &["diff", "--stat", "origin/main"])
        + &git(&repo, &["status", "--short", "--branch"]);
    assert_eq!(remote, local);
    assert!(remote.contains("## feature"), "{remote}");
}

#[test]
fn large_sync_guard_fails_with_exit_6_and_a_hint() {
    let sb = sandbox();
    let repo = sb.work().join("repo");
    git_repo(&repo, &[("a", "a\n"), ("b", "b\n"), ("c", "c\n")]);
    let out = sb
        .crabbox(&repo, &["run", "--", "true"])
        .env("CRABBOX_SYNC_FAIL_FILES", "2")
        .output()
        .unwrap();
    assert_eq!(code(&out), 6, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("too large") && stderr(&out).contains("--force-sync-large"),
        "{}",
        stderr(&out)
    );
    let forced = sb
        .crabbox(&repo, &["run", "--force-sync-large", "--", "ls"])
        .env("CRABBOX_SYNC_FAIL_FILES", "2")
        .output()
        .unwrap();
    assert_eq!(stdout(&forced), "a\nb\nc\n", "{}", stderr(&forced));
}

#[test]
fn tracked_files_under_ambiguous_builtins_are_synced_with_a_warning() {
    let sb = sandbox();
    let repo = sb.work().join("repo");
    git_repo(&repo, &[("src/a.rs", "a\n"), ("dist/app.js", "built\n")]);
    write(&repo, "dist/untracked.js", "local build output\n");
    let out = sb.run(
        &repo,
        &[
            "run", "--", "find", ".", "-path", "./.git", "-prune", "-o", "-type", "f", "-print",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let mut files: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    files.sort_unstable();
    assert_eq!(files, ["./dist/app.js", "./src/a.rs"]);
    assert!(
        stderr(&out).contains(
            "warning: syncing 1 tracked files that built-in excludes would skip: dist/app.js (dist)"
        ),
        "{}",
        stderr(&out)
    );
}

#[test]
fn paths_a_delta_sync_deleted_are_not_deleted_again_by_a_full_sync() {
    let sb = sandbox();
    let repo = sb.work().join("repo");
    repo_with_numbered_files(&repo, 150, &[("a.txt", "local\n")]);
    let id = warm(&sb, &repo);
    assert_eq!(code(&sb.run(&repo, &["run", "--id", &id, "--", "true"])), 0);
    // 150 deletions travel in a delta sync (under the guard's 200).
    std::fs::remove_dir_all(repo.join("f")).unwrap();
    let out = sb.run(&repo, &["run", "--id", &id, "--", "true"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // A change on the runner makes the next sync a full one, which prunes what is no longer
    // synced: nothing, since those 150 are gone already.
    let out = sb.run(
        &repo,
        &["run", "--id", &id, "--", "sh", "-c", "echo remote > a.txt"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = sb.run(&repo, &["run", "--id", &id, "--", "cat", "a.txt"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "local\n");
    sb.run(&repo, &["stop", &id]);
}
