//! warmup / list / status / inspect / ssh / stop / cleanup across processes.

use crabbox_test_support::{code, git_repo, stderr, stdout};

use crate::{sandbox, warm};

#[test]
fn warmup_list_status_inspect_stop_across_processes() {
    let sb = sandbox();
    let repo = sb.work().join("repo");
    git_repo(&repo, &[("a", "a\n")]);
    let id = warm(&sb, &repo);
    assert!(id.starts_with("cbx_") && id.len() == 16, "{id}");

    let list: serde_json::Value =
        serde_json::from_slice(&sb.run(&repo, &["list", "--json"]).stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["state"], "ready");
    let slug = list[0]["slug"].as_str().unwrap().to_owned();

    let status: serde_json::Value =
        serde_json::from_slice(&sb.run(&repo, &["status", &slug, "--json"]).stdout).unwrap();
    assert_eq!(status["id"], id.as_str());
    assert_eq!(status["provider"], "local");
    assert_eq!(status["idleTimeout"], "30m0s");
    let inspect = stdout(&sb.run(&repo, &["inspect", &id]));
    assert!(
        inspect.contains(&format!("id={id}\n")) && inspect.contains("provider=local\n"),
        "{inspect}"
    );

    let ssh_line = stdout(&sb.run(&repo, &["ssh", &slug]));
    let words: Vec<&str> = ssh_line.split_whitespace().collect();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{} echo via-ssh", ssh_line.trim()))
        .output()
        .unwrap();
    assert_eq!(
        stdout(&out).trim(),
        "via-ssh",
        "printed ssh line works: {words:?} {}",
        stderr(&out)
    );

    let stop = sb.run(&repo, &["stop", &slug]);
    assert_eq!(code(&stop), 0, "{}", stderr(&stop));
    assert!(stderr(&stop).contains(&format!("deleted lease={id}")));
    assert_eq!(stdout(&sb.run(&repo, &["list", "--json"])).trim(), "[]");
    let gone = sb.run(&repo, &["stop", &id]);
    assert_eq!(
        code(&gone),
        4,
        "stopping a gone lease is exit 4: {}",
        stderr(&gone)
    );
    assert!(stderr(&gone).contains("not found"));
}

#[test]
fn expired_leases_are_noticed_by_list_and_cleaned() {
    let sb = sandbox();
    let repo = sb.work().join("repo");
    git_repo(&repo, &[("a", "a\n")]);
    let out = sb.run(&repo, &["warmup", "--json", "--idle-timeout", "1s"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let list: serde_json::Value =
        serde_json::from_slice(&sb.run(&repo, &["list", "--json"]).stdout).unwrap();
    assert_eq!(list[0]["state"], "expired");
    let dry = sb.run(&repo, &["cleanup", "--dry-run"]);
    assert!(
        stdout(&dry).contains("would delete lease"),
        "{}",
        stdout(&dry)
    );
    let clean = sb.run(&repo, &["cleanup"]);
    assert_eq!(code(&clean), 0, "{}", stderr(&clean));
    assert!(stdout(&clean).contains("reason=expired"));
    assert_eq!(stdout(&sb.run(&repo, &["list", "--json"])).trim(), "[]");
}

#[test]
fn unknown_lease_is_exit_4_with_a_hint() {
    let sb = sandbox();
    let out = sb.run(&sb.work(), &["run", "--id", "blue-crab", "--", "true"]);
    assert_eq!(code(&out), 4);
    let err = stderr(&out);
    assert!(
        err.contains("error: lease \"blue-crab\" not found")
            && err.contains("hint: `crabbox list`"),
        "{err}"
    );
}
