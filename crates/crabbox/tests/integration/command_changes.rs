//! What a command does to the synced tree on the runner decides what the next run does: a
//! synced file it changed is re-synced and restored; anything else keeps the sync skipped, with
//! the lease's run lock free the moment the run returns (nothing left checking in the
//! background). Changes the runner cannot vouch for from its watch are still found by the
//! background ctime check. The local provider's runner shares this filesystem, which lets the
//! tests look at the lock and the runner's files directly.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crabbox_test_support::{Sandbox, code, git_repo, stderr, stdout, write};

use crate::run::wait_for;
use crate::sync::{TREE, local_tree};
use crate::{sandbox, timing, warm};

/// A warm lease on a repository of `files`, synced once.
struct Lease {
    sb: Sandbox,
    repo: PathBuf,
    id: String,
    /// The runner's work directory for the repository, as the command sees it.
    workdir: PathBuf,
}

impl Lease {
    fn new(files: &[(&str, &str)]) -> Self {
        let sb = sandbox();
        let repo = sb.work().join("repo");
        git_repo(&repo, files);
        let id = warm(&sb, &repo);
        let mut lease = Self {
            sb,
            repo,
            id,
            workdir: PathBuf::new(),
        };
        lease.workdir = PathBuf::from(stdout(&lease.run("pwd").0).trim());
        lease
    }

    /// `run --id ID --timing-json -- bash -c SCRIPT` (bash, not `sh`: the scripts use its
    /// syntax), which must succeed: its output and whether the sync was skipped.
    fn run(&self, script: &str) -> (Output, bool) {
        let out = self.sb.run(
            &self.repo,
            &[
                "run",
                "--id",
                &self.id,
                "--timing-json",
                "--",
                "bash",
                "-c",
                script,
            ],
        );
        assert_eq!(code(&out), 0, "{script}: {}", stderr(&out));
        let skipped = timing(&out)["syncSkipped"].as_bool().unwrap();
        (out, skipped)
    }

    /// Whether another process can take the lease's run lock right now, without waiting.
    fn lock_is_free(&self) -> bool {
        let lock = self.workdir.parent().unwrap().join(".crabbox-run.lock");
        Command::new("flock")
            .arg("-n")
            .arg(&lock)
            .arg("true")
            .status()
            .expect("flock runs")
            .success()
    }

    /// Runs `script`, which changes the runner's tree behind the sync's back, then checks that
    /// the next run re-syncs and leaves the synced files as they are locally. Lines of the
    /// remote tree starting with one of `leftovers` (names the script created that were never
    /// synced, which a sync leaves alone) are not compared.
    fn assert_restored(&self, script: &str, leftovers: &[&str]) {
        let (_, skipped) = self.run(script);
        assert!(skipped, "{script}: the tree was as synced before it ran");
        let (out, skipped) = self.run(TREE);
        assert!(!skipped, "{script}: the next run did not re-sync");
        let tree: String = stdout(&out)
            .lines()
            .filter(|l| !leftovers.iter().any(|p| l.starts_with(p)))
            .flat_map(|l| [l, "\n"])
            .collect();
        assert_eq!(
            tree,
            local_tree(&self.repo, &[]),
            "{script}: the local versions were not restored"
        );
    }

    fn stop(&self) {
        assert_eq!(code(&self.sb.run(&self.repo, &["stop", &self.id])), 0);
    }
}

#[test]
fn the_next_run_restores_synced_files_the_command_changed() {
    let lease = Lease::new(&[
        ("a.txt", "local a\n"),
        ("dir/b.txt", "local b\n"),
        ("dir/sub/c.txt", "local c\n"),
    ]);
    let leftovers = ["./dir/moved/", "./a.link "];
    for script in [
        "echo remote >> a.txt",
        "chmod 600 dir/b.txt",
        "rm dir/sub/c.txt",
        "mv dir/sub dir/moved",
        // An editor's save: write a new file, rename it over the old one.
        "printf remote > a.txt.swp && mv a.txt.swp a.txt",
        "rm -r dir/sub && mkdir dir/sub && echo remote > dir/sub/c.txt",
        // A write through another name of a synced file reports only that name.
        "ln a.txt a.link && echo remote >> a.link",
    ] {
        lease.assert_restored(script, &leftovers);
    }
    lease.stop();
}

#[test]
fn delta_syncs_keep_the_watched_directories_current() {
    let lease = Lease::new(&[("a.txt", "a\n"), ("old/only.txt", "only\n")]);
    // A delta sync brings a new directory and empties (and removes) an old one.
    write(&lease.repo, "new/dir/n.txt", "local n\n");
    std::fs::remove_dir_all(lease.repo.join("old")).unwrap();
    let (out, skipped) = lease.run("ls old 2>/dev/null; cat new/dir/n.txt");
    assert!(!skipped);
    assert_eq!(stdout(&out), "local n\n");
    let phases = timing(&out)["syncPhases"].to_string();
    assert!(
        phases.contains("inline_delta"),
        "not a delta sync: {phases}"
    );
    // The new directory is watched: an edit there is restored by the next run.
    lease.assert_restored("echo remote >> new/dir/n.txt", &[]);
    // The removed one is no longer in the list: the watch is set up, and vouches for the tree.
    let (_, skipped) = lease.run("true");
    assert!(skipped);
    assert!(
        lease.lock_is_free(),
        "the lease's run lock was still held after the run returned"
    );
    lease.stop();
}

#[test]
fn commands_that_leave_synced_files_alone_keep_the_sync_skipped_and_the_lock_free() {
    let lease = Lease::new(&[
        ("README.md", "readme\n"),
        ("src/a.c", "int a;\n"),
        ("src/pkg/mod.py", "x = 1\n"),
    ]);
    for script in [
        "true",
        "cat README.md src/a.c > /dev/null && ls -lR > /dev/null && git status --short > /dev/null",
        // Build output next to synced sources, and in directories of its own.
        "echo obj > src/a.o",
        "mkdir -p src/pkg/__pycache__ && echo pyc > src/pkg/__pycache__/mod.pyc",
        "echo scratch > src/notes.tmp && rm src/notes.tmp",
        "exit 0",
    ] {
        let (_, skipped) = lease.run(script);
        assert!(skipped, "{script}: the tree was as synced before it ran");
        assert!(
            lease.lock_is_free(),
            "{script}: the lease's run lock was still held after the run returned"
        );
        let (out, skipped) = lease.run("cat README.md");
        assert!(skipped, "{script}: the next run synced again");
        assert_eq!(stdout(&out), "readme\n");
    }
    lease.stop();
}

#[test]
fn changes_the_watch_cannot_vouch_for_are_found_by_the_ctime_check() {
    let lease = Lease::new(&[("a.txt", "local a\n"), ("dir/b.txt", "local b\n")]);
    // More events than the kernel queues for one watcher, then an edit: the edit's event is
    // lost to the overflow. The launcher (the command's parent) is stopped meanwhile, so the
    // queue overflows however early it reads.
    let overflow = "trap 'kill -CONT $PPID' EXIT; kill -STOP $PPID; \
        perl -e 'for (0 .. $ARGV[0]) { open(my $f, \">\", \"x.tmp\"); unlink(\"x.tmp\") }' \
        $(($(cat /proc/sys/fs/inotify/max_queued_events) / 2)); echo remote >> a.txt";
    lease.assert_restored(overflow, &[]);
    // More new names than the launcher checks one by one, then an edit.
    let many = "perl -e 'for (1 .. 1100) { open(my $f, \">\", \"dir/gen$_.o\") }'; \
        echo remote >> dir/b.txt";
    lease.assert_restored(many, &["./dir/gen"]);

    // A runner synced by an older Crabbox has no list of synced directories to watch.
    let dirs = lease.workdir.join(".git/crabbox/sync-dirs");
    std::fs::remove_file(&dirs).unwrap();
    lease.assert_restored("echo remote >> a.txt", &["./dir/gen"]);
    std::fs::remove_file(&dirs).unwrap();
    // The check rebuilds the list, after which runs are vouched for again.
    assert!(lease.run("true").1);
    assert!(lease.run("true").1);
    assert!(
        lease.lock_is_free(),
        "the lease's run lock was still held after the run returned"
    );
    lease.stop();
}

/// The runner's watch keepers (see the helper's `keep`) working in `workdir`.
fn keepers(workdir: &Path) -> Vec<u32> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            cmdline.starts_with(b"crabbox watch keeper")
                && std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == workdir)
        })
        .collect()
}

#[test]
fn at_most_one_watch_keeper_per_workdir_and_none_after_the_lease() {
    let lease = Lease::new(&[("a.txt", "a\n")]);
    for _ in 0..4 {
        lease.run("true");
    }
    assert!(
        wait_for(|| keepers(&lease.workdir).len() <= 1),
        "keepers after four runs: {:?}",
        keepers(&lease.workdir)
    );
    lease.stop();
    assert!(
        wait_for(|| keepers(&lease.workdir).is_empty()),
        "keepers after the lease was stopped: {:?}",
        keepers(&lease.workdir)
    );
}
