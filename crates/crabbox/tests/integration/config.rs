//! Config errors, `config show`, `init`, `doctor`.

use crabbox_test_support::{code, stderr, stdout, write};

use crate::sandbox;

#[test]
fn bad_config_is_exit_2_naming_file_and_key() {
    let sb = sandbox();
    let dir = sb.work().join("proj");
    write(&dir, "crabbox.yaml", "ttl: ninety\n");
    let out = sb.run(&dir, &["run", "--", "true"]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(
        err.contains("invalid value for \"ttl\" in")
            && err.contains("crabbox.yaml")
            && err.contains("Go syntax"),
        "{err}"
    );
    write(&dir, "crabbox.yaml", "sync: [unclosed\n");
    let out = sb.run(&dir, &["run", "--", "true"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("invalid yaml in") && stderr(&out).contains("line 2"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn config_show_reports_origins_and_hides_secrets() {
    let sb = sandbox();
    let dir = sb.work().join("proj");
    write(&dir, ".crabbox.yaml", "class: fast\nmystery: 1\n");
    let out = sb
        .crabbox(&dir, &["config", "show"])
        .env("CRABBOX_TTL", "2h")
        .env("CRABBOX_COORDINATOR_TOKEN", "tok-secret")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("class=fast origin=repo:"), "{text}");
    assert!(text.contains("ttl=2h0m0s origin=env:CRABBOX_TTL"), "{text}");
    assert!(text.contains("provider=local origin=default"), "{text}");
    assert!(text.contains("coordinatorToken=configured"), "{text}");
    assert!(!text.contains("tok-secret") && !stderr(&out).contains("tok-secret"));
    assert!(
        stderr(&out).contains("unknown config key \"mystery\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn init_writes_a_config_that_loads_and_refuses_to_overwrite() {
    let sb = sandbox();
    let dir = sb.work().join("proj");
    std::fs::create_dir_all(&dir).unwrap();
    assert_eq!(code(&sb.run(&dir, &["init"])), 0);
    let show = sb.run(&dir, &["config", "show"]);
    assert!(
        stdout(&show).contains("sync.exclude=.cache,.turbo,dist,node_modules origin=repo:"),
        "{}",
        stdout(&show)
    );
    assert!(stderr(&show).is_empty(), "{}", stderr(&show));
    let again = sb.run(&dir, &["init"]);
    assert_eq!(code(&again), 2);
    assert!(stderr(&again).contains("--force"));
}

#[test]
fn doctor_checks_tools_and_sshd() {
    let sb = sandbox();
    let out = sb.run(&sb.work(), &["doctor", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    let checks: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    for want in ["config", "tool-git", "tool-ssh", "tool-rsync", "sshd"] {
        assert!(checks.contains(&want), "{checks:?}");
    }
    let broken = sb
        .crabbox(&sb.work(), &["doctor"])
        .env("CRABBOX_PROVIDER", "ssh")
        .output()
        .unwrap();
    assert_eq!(code(&broken), 1);
    assert!(
        stdout(&broken).contains("failed static-host"),
        "{}",
        stdout(&broken)
    );
}
