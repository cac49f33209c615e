//! warmup / list / status / inspect / ssh / stop / cleanup across processes.

use crabbox_test_support::{code, git_repo, procs, stderr, stdout};

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

#[test]
fn no_ssh_master_outlives_its_lease() {
    let sb = sandbox();
    let repo = sb.work().join("repo");
    git_repo(&repo, &[("a", "a\n")]);

    // A kept lease keeps its master between runs (that is what makes the next run fast),
    // and `stop` ends it.
    let id = warm(&sb, &repo);
    let run = sb.run(&repo, &["run", "--id", &id, "--", "true"]);
    assert_eq!(code(&run), 0, "{}", stderr(&run));
    assert!(
        !sb.ssh_masters().is_empty(),
        "a warm lease keeps its ssh master"
    );
    let stop = sb.run(&repo, &["stop", &id]);
    assert_eq!(code(&stop), 0, "{}", stderr(&stop));
    assert_eq!(sb.ssh_masters(), Vec::<u32>::new(), "after stop");

    // A fresh lease is released after its run, failed or not, and its master goes with it.
    let failed = sb.run(&repo, &["run", "--", "sh", "-c", "exit 3"]);
    assert_eq!(code(&failed), 3, "{}", stderr(&failed));
    assert_eq!(sb.ssh_masters(), Vec::<u32>::new(), "after a failed run");
    let ok = sb.run(&repo, &["run", "--", "true"]);
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
    assert_eq!(sb.ssh_masters(), Vec::<u32>::new(), "after a run");
}

#[test]
fn list_refresh_forgets_stale_claims_and_names_orphan_runners() {
    let sb = sandbox();
    let repo = sb.work().join("repo");
    git_repo(&repo, &[("a", "a\n")]);
    let live = warm(&sb, &repo);
    let dead = warm(&sb, &repo);
    let orphan = warm(&sb, &repo);
    // `dead`'s runner dies behind Crabbox's back; `orphan` loses its claim.
    let pid: u32 = std::fs::read_to_string(
        sb.path()
            .join(format!("state/crabbox/local/{dead}/sshd/sshd.pid")),
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    for p in procs::descendants(pid).into_iter().chain([pid]) {
        procs::signal(p, procs::Signal::KILL);
    }
    let claim = |id: &str| sb.path().join(format!("state/crabbox/claims/{id}.json"));
    std::fs::remove_file(claim(&orphan)).unwrap();

    // Without --refresh the claim is trusted: the dead lease is listed, as stopped.
    let plain: serde_json::Value =
        serde_json::from_slice(&sb.run(&repo, &["list", "--json"]).stdout).unwrap();
    let states: Vec<(&str, &str)> = plain
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["id"].as_str().unwrap(), l["state"].as_str().unwrap()))
        .collect();
    assert!(states.contains(&(dead.as_str(), "stopped")), "{states:?}");
    assert!(claim(&dead).exists());

    let out = sb.run(&repo, &["list", "--refresh", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("forgot stale lease id={dead}")) && err.contains("runner gone"),
        "{err}"
    );
    assert!(
        err.contains(&format!("orphan runner lease={orphan}")),
        "{err}"
    );
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [live.as_str()], "only the live lease is left");
    assert!(!claim(&dead).exists(), "the stale claim is gone");
    assert!(
        !sb.path()
            .join(format!("config/crabbox/testboxes/{dead}"))
            .exists(),
        "and its key"
    );
    assert!(claim(&live).exists(), "the live claim is kept");
}
