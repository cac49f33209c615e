//! `crabbox run`: streams, exit codes, env, interrupts, lost connections.

use std::time::Duration;

use crabbox_test_support::procs::{self, Signal};
use crabbox_test_support::{Sandbox, code, git_repo, stderr, stdout};

use crate::{sandbox, warm};

#[test]
fn one_shot_run_streams_and_passes_the_exit_code_then_releases() {
    let sb = sandbox();
    let repo = sb.work().join("repo");
    git_repo(&repo, &[("hello.txt", "hello\n")]);
    let out = sb.run(
        &repo,
        &[
            "run",
            "--",
            "sh",
            "-c",
            "cat hello.txt; echo oops >&2; exit 42",
        ],
    );
    assert_eq!(code(&out), 42, "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello\n");
    assert!(stderr(&out).contains("oops\n"), "{}", stderr(&out));
    assert!(!stdout(&out).contains("oops"));
    assert!(stderr(&out).contains("run summary"), "{}", stderr(&out));
    let list = sb.run(&repo, &["list", "--json"]);
    assert_eq!(stdout(&list).trim(), "[]", "one-shot lease was released");
}

#[test]
fn exit_codes_pass_through_on_a_warm_lease() {
    let sb = sandbox();
    let repo = sb.work().join("repo");
    git_repo(&repo, &[("a", "a\n")]);
    let id = warm(&sb, &repo);
    for want in [0, 1, 42] {
        let out = sb.run(
            &repo,
            &[
                "run",
                "--id",
                &id,
                "--",
                "sh",
                "-c",
                &format!("exit {want}"),
            ],
        );
        assert_eq!(code(&out), want, "{}", stderr(&out));
    }
    let missing = sb.run(&repo, &["run", "--id", &id, "--", "no-such-command-xyz"]);
    assert_eq!(code(&missing), 127);
    assert!(stderr(&missing).contains("no-such-command-xyz"));
    assert_eq!(code(&sb.run(&repo, &["stop", &id])), 0);
}

#[test]
fn env_allowlist_forwards_only_named_variables() {
    let sb = sandbox();
    let repo = sb.work().join("repo");
    git_repo(&repo, &[("a", "a\n")]);
    let out = sb
        .crabbox(
            &repo,
            &[
                "run",
                "--allow-env",
                "FOO_*",
                "--",
                "sh",
                "-c",
                "echo ci=$CI foo=$FOO_BAR secret=$SECRET lease=${CRABBOX_LEASE_ID%_*}",
            ],
        )
        .env("CI", "true")
        .env("FOO_BAR", "it's a value")
        .env("SECRET", "nope")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "ci=true foo=it's a value secret= lease=cbx\n");
}

#[test]
fn shell_mode_is_detected_for_operators_and_single_strings() {
    let sb = sandbox();
    let repo = sb.work().join("repo");
    git_repo(&repo, &[("a", "one\ntwo\n")]);
    let id = warm(&sb, &repo);
    let out = sb.run(&repo, &["run", "--id", &id, "--", "cat a | wc -l"]);
    assert_eq!(stdout(&out).trim(), "2", "{}", stderr(&out));
    let out = sb.run(
        &repo,
        &[
            "run",
            "--id",
            &id,
            "--",
            "echo",
            "x y",
            "&&",
            "echo",
            "$HOME-literal",
        ],
    );
    assert_eq!(stdout(&out), "x y\n$HOME-literal\n", "{}", stderr(&out));
    // Go-style single-dash flags and no `--` still work, as with the old CLI.
    let out = sb.run(
        &repo,
        &["run", "-id", &id, "-shell=false", "echo", "-n", "no-dashes"],
    );
    assert_eq!(stdout(&out), "no-dashes", "{}", stderr(&out));
    sb.run(&repo, &["stop", &id]);
}

/// The harness, not the product: runners of a sandbox give their login shells the sandbox's
/// HOME, so the machine user's rc files (what they print, what they cost) never reach a test.
#[test]
fn runner_shells_use_the_sandbox_home() {
    let sb = sandbox();
    let repo = sb.work().join("repo");
    git_repo(&repo, &[("a", "a\n")]);
    let out = sb.run(&repo, &["run", "--", "sh", "-c", "echo \"$HOME\""]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{}\n", sb.home().display()));
}

#[test]
fn ctrl_c_stops_the_remote_command_and_exits_130() {
    let sb = sandbox();
    let repo = sb.work().join("repo");
    git_repo(&repo, &[("a", "a\n")]);
    let id = warm(&sb, &repo);
    let child = sb
        .crabbox(&repo, &["run", "--id", &id, "--", "sleep", "60"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let remote = remote_sleep(&sb, &id).expect("the remote command never started");
    procs::signal(child.id(), Signal::INT);
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    assert!(
        wait_for(|| !procs::alive(remote)),
        "the remote process survived the interrupt"
    );
    sb.run(&repo, &["stop", &id]);
}

#[test]
fn runner_killed_mid_run_gives_exit_7() {
    let sb = sandbox();
    let repo = sb.work().join("repo");
    git_repo(&repo, &[("a", "a\n")]);
    let id = warm(&sb, &repo);
    let child = sb
        .crabbox(&repo, &["run", "--id", &id, "--", "sleep", "60"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    remote_sleep(&sb, &id).expect("the remote command never started");
    // The whole runner dies at once: its sshd and everything running under it.
    let listener = runner_sshd(&sb, &id);
    for pid in procs::descendants(listener).into_iter().chain([listener]) {
        procs::signal(pid, Signal::KILL);
    }
    // A killed process closes its sockets before it counts as dead: wait for the sshd to be
    // gone before asking what the next run says about the runner.
    assert!(
        wait_for(|| !procs::alive(listener)),
        "the runner's sshd survived"
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 7, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("lost the SSH connection"),
        "{}",
        stderr(&out)
    );
    let again = sb.run(&repo, &["run", "--id", &id, "--", "true"]);
    assert_eq!(
        code(&again),
        7,
        "a dead lease is reported, not reused: {}",
        stderr(&again)
    );
    assert!(stderr(&again).contains("is gone"), "{}", stderr(&again));
    assert_eq!(code(&sb.run(&repo, &["stop", &id])), 0);
}

/// The pid of the `local` runner's sshd (the listener) for lease `id`.
fn runner_sshd(sb: &Sandbox, id: &str) -> u32 {
    let pid_file = sb
        .path()
        .join(format!("state/crabbox/local/{id}/sshd/sshd.pid"));
    std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// The `sleep` that lease `id`'s runner started for a `run -- sleep 60`, once it runs: found
/// among the runner sshd's descendants, so neither the test's nor crabbox's own command line
/// can be mistaken for it.
fn remote_sleep(sb: &Sandbox, id: &str) -> Option<u32> {
    let listener = runner_sshd(sb, id);
    let mut found = None;
    wait_for(|| {
        found = procs::descendants(listener)
            .into_iter()
            .find(|pid| procs::argv(*pid) == ["sleep", "60"]);
        found.is_some()
    });
    found
}

pub fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn forwarded_values_never_appear_in_process_arguments() {
    let sb = sandbox();
    let repo = sb.work().join("repo");
    git_repo(&repo, &[("a", "a\n")]);
    // The runner shares this machine, so /proc shows the client (crabbox, ssh) and the runner
    // (sshd, session script, command) alike.
    let scan = r#"n=0; for f in /proc/[0-9]*/cmdline; do if tr '\0' ' ' < "$f" 2>/dev/null | grep -qF -f <(printf '%s' "$TOKEN_VALUE"); then n=$((n+1)); fi; done; echo "$n"; echo "${#TOKEN_VALUE}""#;
    let out = sb
        .crabbox(
            &repo,
            &[
                "run",
                "--allow-env",
                "TOKEN_VALUE",
                "--",
                "bash",
                "-c",
                scan,
            ],
        )
        .env("TOKEN_VALUE", "s3cr3t-token-value-123")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "0\n22\n",
        "the value arrived and no process showed it: {}",
        stderr(&out)
    );
}

#[test]
fn signals_and_exec_failures_give_shell_exit_codes() {
    let sb = sandbox();
    let repo = sb.work().join("repo");
    git_repo(&repo, &[("not-executable", "echo no\n")]);
    let id = warm(&sb, &repo);
    for (argv, want) in [
        (&["bash", "-c", "kill -TERM $$"][..], 143),
        (&["bash", "-c", "kill -KILL $$"][..], 137),
        (&["./not-executable"][..], 126),
    ] {
        let mut args = vec!["run", "--id", &id, "--"];
        args.extend_from_slice(argv);
        let out = sb.run(&repo, &args);
        assert_eq!(code(&out), want, "{argv:?}: {}", stderr(&out));
    }
    sb.run(&repo, &["stop", &id]);
}

#[test]
fn ctrl_c_stops_everything_in_the_commands_process_group() {
    let sb = sandbox();
    let repo = sb.work().join("repo");
    git_repo(&repo, &[("a", "a\n")]);
    let id = warm(&sb, &repo);
    // The runner shares this machine: the command writes its own pid and its background
    // child's, so the test can look for those very processes.
    let pids = sb.work().join("pids");
    let script = format!(
        "sleep 300 & echo $! > '{p}.tmp'; echo $$ >> '{p}.tmp'; mv '{p}.tmp' '{p}'; wait",
        p = pids.display()
    );
    let child = sb
        .crabbox(&repo, &["run", "--id", &id, "--", "bash", "-c", &script])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_for(|| pids.exists()), "the command never started");
    let pids: Vec<u32> = std::fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert!(pids.iter().all(|p| procs::alive(*p)), "{pids:?}");
    procs::signal(child.id(), Signal::INT);
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    assert!(
        wait_for(|| !pids.iter().any(|p| procs::alive(*p))),
        "the command or its background child survived the interrupt: {pids:?}"
    );
    sb.run(&repo, &["stop", &id]);
}
