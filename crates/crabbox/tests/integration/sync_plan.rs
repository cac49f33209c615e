//! `crabbox sync-plan`: the plan matches what `run` sends, with guardrails and rule details.

use crabbox_test_support::{code, git_repo, stderr, stdout, write};

use crate::sandbox;

fn plan_repo(sb: &crabbox_test_support::Sandbox) -> std::path::PathBuf {
    let repo = sb.work().join("repo");
    git_repo(
        &repo,
        &[
            ("src/main.rs", "fn main() {}\n"),
            ("src/lib/deep/mod.rs", "pub fn x() {}\n"),
            ("dist/app.js", "tracked build output\n"),
            ("gone.txt", "bye\n"),
            (".crabboxignore", "*.log\n"),
        ],
    );
    std::fs::remove_file(repo.join("gone.txt")).unwrap();
    write(&repo, "big.bin", &"x".repeat(10_000));
    write(&repo, "debug.log", "excluded by .crabboxignore\n");
    write(&repo, "dist/untracked.js", "untracked build output\n");
    repo
}

#[test]
fn sync_plan_json_matches_what_run_sends() {
    let sb = sandbox();
    let repo = plan_repo(&sb);
    let out = sb
        .crabbox(&repo, &["sync-plan", "--json", "--limit", "2"])
        .env("CRABBOX_SYNC_WARN_FILES", "2")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    // .crabboxignore, big.bin, dist/app.js, src/lib/deep/mod.rs, src/main.rs
    assert_eq!(plan["candidate"]["files"], 5, "{plan:#}");
    assert_eq!(
        plan["dirtyDelta"]["files"], 2,
        "big.bin and gone.txt: {plan:#}"
    );
    assert_eq!(plan["dirtyDelta"]["bytes"], 10_000);
    assert_eq!(plan["deletedTrackedPaths"], 1);
    assert_eq!(plan["protectedTrackedFiles"]["count"], 1);
    assert_eq!(
        plan["protectedTrackedFiles"]["examples"][0],
        serde_json::json!({"path": "dist/app.js", "pattern": "dist"})
    );
    let guard = &plan["guardrail"];
    assert_eq!(guard["scope"], "dirty_delta");
    assert_eq!(guard["status"], "warning");
    assert_eq!(guard["limits"]["warnFiles"], 2);
    assert_eq!(
        guard["reasons"],
        serde_json::json!([{"status": "warning", "metric": "files", "actual": 2, "limit": 2}])
    );
    assert_eq!(plan["topFiles"].as_array().unwrap().len(), 2);
    assert_eq!(plan["topFiles"][0]["path"], "big.bin");
    assert_eq!(plan["topFiles"][0]["humanBytes"], "9.8 KiB");
    assert_eq!(plan["topDirs"][0]["path"], ".");
    assert_eq!(plan["topDirs"][0]["files"], 2);
    let rules = plan["excludeRules"].as_array().unwrap();
    assert!(
        rules.contains(&serde_json::json!({"origin": "crabboxignore", "rule": "*.log"})),
        "{rules:?}"
    );
    assert_eq!(
        rules.last().unwrap(),
        &serde_json::json!({"origin": "protected", "rule": ".crabbox/runs"})
    );
    assert!(plan["fingerprintMs"].is_u64() && plan["manifestMs"].is_u64());
    assert_eq!(plan["fingerprint"].as_str().unwrap().len(), 64);

    // The runner receives exactly the candidate files.
    let run = sb.run(
        &repo,
        &[
            "run", "--", "find", ".", "-path", "./.git", "-prune", "-o", "-type", "f", "-print",
        ],
    );
    assert_eq!(code(&run), 0, "{}", stderr(&run));
    let mut synced: Vec<String> = stdout(&run).lines().map(str::to_owned).collect();
    synced.sort_unstable();
    assert_eq!(
        synced,
        [
            "./.crabboxignore",
            "./big.bin",
            "./dist/app.js",
            "./src/lib/deep/mod.rs",
            "./src/main.rs"
        ]
    );
}

#[test]
fn sync_plan_human_output_and_bad_limit() {
    let sb = sandbox();
    let repo = plan_repo(&sb);
    let out = sb.run(&repo, &["sync-plan"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "sync candidate: 5 files, 9.8 KiB", "{text}");
    for expected in [
        "deleted tracked paths: 1",
        "guardrail: ok (dirty_delta 2 files, 9.8 KiB)",
        "  dist/app.js (dist)",
        "  crabboxignore:*.log",
        "top files:",
        "  9.8 KiB    big.bin",
        "top dirs:",
    ] {
        assert!(
            lines.contains(&expected),
            "missing {expected:?} in:\n{text}"
        );
    }
    let bad = sb.run(&repo, &["sync-plan", "-limit", "0"]);
    assert_eq!(code(&bad), 2, "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("--limit must be positive"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn sync_plan_fails_guardrail_without_a_lease_for_plain_directories() {
    let sb = sandbox();
    let dir = sb.work().join("plain");
    for i in 0..3 {
        write(&dir, &format!("f{i}.txt"), "x\n");
    }
    write(&dir, "node_modules/m.js", "excluded\n");
    let out = sb
        .crabbox(&dir, &["sync-plan", "--json"])
        .env("CRABBOX_SYNC_FAIL_FILES", "3")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["git"], false);
    assert_eq!(plan["candidate"]["files"], 3);
    assert_eq!(plan["guardrail"]["scope"], "candidate");
    assert_eq!(plan["guardrail"]["status"], "failed");
    assert_eq!(plan["guardrail"]["reasons"][0]["status"], "failed");
    assert_eq!(plan["guardrail"]["reasons"][0]["limit"], 3);
}
