//! The `ssh` provider against a real static sshd, and readiness failures.

use crabbox_remote::{keys, sshd};
use crabbox_test_support::{code, git_repo, stderr, stdout, write};

use crate::sandbox;

fn user() -> String {
    crabbox_providers::local::current_user()
}

#[tokio::test(flavor = "multi_thread")]
async fn static_host_runs_commands_and_stop_only_forgets_the_claim() {
    let sb = sandbox();
    let host = sb.work().join("host");
    let key = keys::ensure_ed25519(&host.join("client"), "id_ed25519", "static test").unwrap();
    let handle = sshd::start(&host.join("sshd"), &user(), &key.public_key().unwrap())
        .await
        .unwrap();
    let repo = sb.work().join("repo");
    git_repo(&repo, &[("a.txt", "from static\n")]);
    let work_root = host.join("work");
    write(
        &repo,
        ".crabbox.yaml",
        &format!(
            "provider: ssh\nstatic:\n  host: 127.0.0.1\n  port: \"{}\"\n  user: {}\n  workRoot: {}\nssh:\n  key: {}\n  fallbackPorts: []\n",
            handle.port,
            user(),
            work_root.display(),
            key.private.display()
        ),
    );
    let out = sb.run(&repo, &["run", "--", "sh", "-c", "cat a.txt; pwd"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("from static\n"), "{text}");
    assert!(
        text.contains(&format!("{}/static_127-0-0-1/repo", work_root.display())),
        "{text}"
    );
    // Releasing a static lease only forgets the claim; the host stays up.
    assert_eq!(stdout(&sb.run(&repo, &["list", "--json"])).trim(), "[]");
    assert!(sshd::alive(&host.join("sshd")));
    let warm = sb.run(&repo, &["warmup", "--json"]);
    assert_eq!(code(&warm), 0, "{}", stderr(&warm));
    let list: serde_json::Value =
        serde_json::from_slice(&sb.run(&repo, &["list", "--json"]).stdout).unwrap();
    assert_eq!(list[0]["id"], "static_127-0-0-1");
    let again = sb.run(
        &repo,
        &["run", "--id", "static_127-0-0-1", "--", "cat", "a.txt"],
    );
    assert_eq!(stdout(&again), "from static\n", "{}", stderr(&again));
    assert_eq!(code(&sb.run(&repo, &["stop", "static_127-0-0-1"])), 0);
    assert!(
        sshd::alive(&host.join("sshd")),
        "stop must not touch a static host"
    );
    sshd::stop(&host.join("sshd")).await;
}

#[test]
fn unreachable_host_times_out_with_exit_5() {
    let sb = sandbox();
    let repo = sb.work().join("repo");
    git_repo(&repo, &[("a.txt", "a\n")]);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = sb
        .crabbox(
            &repo,
            &[
                "run",
                "--provider",
                "ssh",
                "--static-host",
                "127.0.0.1",
                "--static-port",
                &closed.to_string(),
                "--",
                "true",
            ],
        )
        .env("CRABBOX_READY_TIMEOUT", "1s")
        .env("CRABBOX_SSH_FALLBACK_PORTS", "none")
        .output()
        .unwrap();
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("never became ready"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains(&format!("{closed}:closed")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn ssh_provider_without_host_is_a_usage_error() {
    let sb = sandbox();
    let out = sb.run(&sb.work(), &["run", "--provider", "ssh", "--", "true"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("static.host"), "{}", stderr(&out));
}
