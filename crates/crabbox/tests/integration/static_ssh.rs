//! The `ssh` provider against a real static sshd, and readiness failures.

use crabbox_remote::{keys, sshd};
use crabbox_test_support::{code, git_repo, stderr, stdout, write};

use crate::sandbox;

pub(crate) fn user() -> String {
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

/// An ssh-agent holding one key, stopped when dropped (jump hosts authenticate through the
/// user's agent, as bastions usually do).
pub(crate) struct Agent {
    child: std::process::Child,
    pub(crate) socket: std::path::PathBuf,
}

impl Agent {
    pub(crate) fn with_key(dir: &std::path::Path, key: &std::path::Path) -> Self {
        let socket = dir.join("agent.sock");
        let child = std::process::Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("ssh-agent runs");
        for _ in 0..100 {
            if socket.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let added = std::process::Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &socket)
            .output()
            .expect("ssh-add runs");
        assert!(added.status.success(), "{}", stderr(&added));
        Self { child, socket }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lease_behind_a_jump_host_is_reached_through_it_every_time() {
    let sb = sandbox();
    let repo = sb.work().join("repo");
    git_repo(&repo, &[("a.txt", "via the bastion\n")]);
    let jump = sb.work().join("jump");
    let jump_key = keys::ensure_ed25519(&jump.join("client"), "id_ed25519", "jump").unwrap();
    let bastion = sshd::start(&jump.join("sshd"), &user(), &jump_key.public_key().unwrap())
        .await
        .unwrap();
    let agent = Agent::with_key(&jump, &jump_key.private);
    let hop = format!("{}@127.0.0.1:{}", user(), bastion.port);
    let crabbox = |args: &[&str]| {
        sb.crabbox(&repo, args)
            .env("SSH_AUTH_SOCK", &agent.socket)
            .output()
            .expect("crabbox runs")
    };

    let warm = crabbox(&["warmup", "--json", "--proxy-jump", &hop]);
    assert_eq!(code(&warm), 0, "{}", stderr(&warm));
    let id = serde_json::from_slice::<serde_json::Value>(&warm.stdout).unwrap()["lease"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Later commands reach it the same way without being told: the claim remembers.
    let run = crabbox(&["run", "--id", &id, "--", "cat", "a.txt"]);
    assert_eq!(stdout(&run), "via the bastion\n", "{}", stderr(&run));
    let line = stdout(&crabbox(&["ssh", &id]));
    assert!(
        line.contains("ProxyCommand=") && line.contains(&hop),
        "{line}"
    );

    // With the bastion gone the runner cannot be reached, so it was the way in.
    sshd::stop(&jump.join("sshd")).await;
    let cut = crabbox(&["run", "--id", &id, "--", "true"]);
    assert_eq!(code(&cut), 7, "{}", stderr(&cut));
    assert_eq!(code(&crabbox(&["stop", &id])), 0);

    // Both ways at once would leave ssh to pick one silently: refused, nothing leased.
    let both = crabbox(&[
        "warmup",
        "--proxy-jump",
        &hop,
        "--proxy-command",
        "nc %h %p",
    ]);
    assert_eq!(code(&both), 2, "{}", stderr(&both));
    assert_eq!(stdout(&crabbox(&["list", "--json"])).trim(), "[]");
}
