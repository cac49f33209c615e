//! The file watcher through the CLI: warm runs served from its cache, edits still synced, and
//! `sync.watch: false` starting nothing.

use crabbox_test_support::{Sandbox, code, git_repo, stderr, stdout, write};

use crate::{sandbox, timing, warm};

/// `run --timing-json -- cat a.txt`: (stdout, sync skipped, fingerprint served by the watcher).
fn cat(sb: &Sandbox, repo: &std::path::Path, id: &str) -> (String, bool, bool) {
    let out = sb.run(
        repo,
        &["run", "--id", id, "--timing-json", "--", "cat", "a.txt"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let t = timing(&out);
    let watcher = t["syncPhases"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "fingerprint" && p["reason"] == "watcher");
    (stdout(&out), t["syncSkipped"].as_bool().unwrap(), watcher)
}

fn doctor_watch_line(sb: &Sandbox, repo: &std::path::Path) -> String {
    let out = sb.run(repo, &["doctor"]);
    stdout(&out)
        .lines()
        .find(|l| l.contains(" watch "))
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn warm_runs_skip_git_until_a_file_changes() {
    let sb = sandbox().watching();
    let repo = sb.work().join("repo");
    git_repo(&repo, &[("a.txt", "one\n")]);
    let id = warm(&sb, &repo);
    let (text, skipped, _) = cat(&sb, &repo, &id);
    assert_eq!((text.as_str(), skipped), ("one\n", false));
    assert!(
        doctor_watch_line(&sb, &repo).starts_with("ok watch running for"),
        "the first fingerprint started a watcher: {}",
        doctor_watch_line(&sb, &repo)
    );
    // Unchanged: skipped every time, and soon without running git (git's own index rewrites
    // for "racily clean" files settle within a second or so).
    let mut served = false;
    for _ in 0..30 {
        let (text, skipped, watcher) = cat(&sb, &repo, &id);
        assert_eq!((text.as_str(), skipped), ("one\n", true));
        if watcher {
            served = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(served, "no warm run was served by the watcher");

    write(&repo, "a.txt", "two\n");
    let (text, skipped, watcher) = cat(&sb, &repo, &id);
    assert_eq!(
        (text.as_str(), skipped, watcher),
        ("two\n", false, false),
        "the edit reached the runner"
    );
    let (text, skipped, _) = cat(&sb, &repo, &id);
    assert_eq!((text.as_str(), skipped), ("two\n", true));
    sb.run(&repo, &["stop", &id]);
}

#[test]
fn sync_watch_false_starts_no_watcher() {
    let sb = sandbox().watching();
    let repo = sb.work().join("repo");
    git_repo(
        &repo,
        &[
            ("a.txt", "a\n"),
            ("crabbox.yaml", "sync:\n  watch: false\n"),
        ],
    );
    for _ in 0..2 {
        let out = sb.run(&repo, &["sync-plan", "--json"]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(plan["fingerprintSource"], "computed");
    }
    assert!(
        !sb.path().join("state/crabbox/watch").exists(),
        "no watcher directory, so no daemon"
    );
    let line = doctor_watch_line(&sb, &repo);
    assert!(
        line.starts_with("ok watch off (sync.watch from repo:"),
        "{line}"
    );

    // The environment switch does the same (the default sandbox sets it).
    let plain = sandbox();
    let repo = plain.work().join("repo");
    git_repo(&repo, &[("a.txt", "a\n")]);
    assert_eq!(code(&plain.run(&repo, &["sync-plan"])), 0);
    assert!(!plain.path().join("state/crabbox/watch").exists());
}
