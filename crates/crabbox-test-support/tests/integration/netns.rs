use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use crabbox_test_support::{code, loopback_only, netns, procs, stderr, stdout};

#[test]
fn inside_only_loopback_is_reachable() {
    loopback_only!();
    // Checked first: were the isolation broken, the connection below must not be tried.
    assert!(
        netns::is_loopback_only(),
        "not in a loopback-only namespace"
    );
    let public: SocketAddr = "54.214.0.1:22".parse().unwrap();
    let err = TcpStream::connect_timeout(&public, Duration::from_secs(5))
        .expect_err("a public address is unreachable");
    assert_eq!(err.kind(), ErrorKind::NetworkUnreachable, "{err}");

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    TcpStream::connect(listener.local_addr().unwrap()).expect("loopback works");
}

/// Passes inside its namespace, unless the test below asks it to fail there (or to leave a
/// process behind).
#[test]
fn verdict_from_inside() {
    loopback_only!();
    if let Some(pid_file) = std::env::var_os("CBX_TEST_LEAVE_BEHIND") {
        #[expect(clippy::zombie_processes, reason = "left behind on purpose")]
        let sleeper = Command::new("sleep").arg("600").spawn().unwrap();
        std::fs::write(pid_file, sleeper.id().to_string()).unwrap();
    }
    assert!(
        std::env::var_os("CBX_TEST_FAIL_INSIDE").is_none(),
        "failing inside on purpose"
    );
}

#[test]
fn a_failure_inside_fails_the_test_outside() {
    let passed = verdict(&[]);
    assert_eq!(code(&passed), 0, "{}{}", stdout(&passed), stderr(&passed));
    assert!(stdout(&passed).contains("test result: ok. 1 passed"));

    let failed = verdict(&[("CBX_TEST_FAIL_INSIDE", "1")]);
    let err = stderr(&failed);
    assert_ne!(code(&failed), 0, "{}{err}", stdout(&failed));
    assert!(err.contains("failing inside on purpose"), "{err}");
    assert!(
        err.contains("netns::verdict_from_inside failed inside its network namespace"),
        "{err}"
    );
}

#[test]
fn nothing_the_test_started_outlives_its_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("sleeper.pid");
    let out = verdict(&[("CBX_TEST_LEAVE_BEHIND", pid_file.to_str().unwrap())]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let pid: u32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    assert!(
        !procs::alive(pid),
        "the process left behind in the namespace was killed"
    );
}

/// Runs `verdict_from_inside` in a test binary of its own, with `env`.
fn verdict(env: &[(&str, &str)]) -> std::process::Output {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "netns::verdict_from_inside", "--nocapture"])
        .env_remove(netns::MARKER)
        .env_remove("CBX_TEST_FAIL_INSIDE")
        .env_remove("CBX_TEST_LEAVE_BEHIND")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}
