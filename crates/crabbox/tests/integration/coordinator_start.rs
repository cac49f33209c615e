//! How `crabbox coordinator serve` starts, or refuses to: private state, settings it cannot
//! use (named, at once, not on the first request), logs that stay machine-readable.

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crabbox_test_support::{code, stderr};
use serde_json::Value;

use crate::sandbox;

/// `coordinator serve` with only the given environment (no CRABBOX_* from the test's own).
fn serve_cmd(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crabbox"));
    cmd.args(["coordinator", "serve", "--listen", "127.0.0.1:0"])
        .args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("CRABBOX_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("CRABBOX_SHARED_TOKEN", "shared-token-0123456789abcdef");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs a start that must fail; fails the test if it is still running after 30 s.
fn refused(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("crabbox starts");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!("the coordinator started anyway:\n{}", stderr(&out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("Uid:")
                    .map(|r| r.split_whitespace().nth(1) == Some("0"))
            })
        })
        .unwrap_or(false)
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_state_directory_and_database_are_private_and_an_unwritable_database_stops_the_start() {
    let sb = sandbox();
    let state = sb.path().join("srv/coordinator");
    // JSON logs: every line on stderr is a JSON object; the listening line carries the URL.
    let mut child = serve_cmd(
        &[
            "--state-dir",
            state.to_str().unwrap(),
            "--log-format",
            "json",
        ],
        &[],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("crabbox starts");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr"));
    let server = Running(child);
    let mut url = None;
    for _ in 0..50 {
        let mut line = String::new();
        if lines.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
        if let Some(u) = v["fields"]["url"].as_str() {
            assert_eq!(v["fields"]["providers"], "local", "{line}");
            url = Some(u.to_owned());
            break;
        }
    }
    assert!(url.is_some_and(|u| u.starts_with("http://127.0.0.1:")));
    assert_eq!(mode(&state), 0o700, "state directory");
    assert_eq!(mode(&sb.path().join("srv")), 0o700, "created parent");
    assert_eq!(mode(&state.join("coordinator.db")), 0o600, "database");
    drop(server);

    // A database this process may read but not write: SQLite would open it read-only without
    // a word and every write would fail later; the start must fail and say why.
    let ro = tempfile::tempdir().unwrap();
    std::fs::set_permissions(ro.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let db = ro.path().join("coordinator.db");
    std::fs::copy(state.join("coordinator.db"), &db).unwrap();
    let args = ["--state-dir", ro.path().to_str().unwrap()];
    let cmd = if is_root() {
        // root writes any file: run as nobody, for whom the root-owned 0644 file is read-only.
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        let plain = serve_cmd(&args, &[]);
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(plain.get_program())
            .args(plain.get_args());
        for (k, v) in plain.get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd
    } else {
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o444)).unwrap();
        serve_cmd(&args, &[])
    };
    let out = refused(cmd);
    assert_ne!(code(&out), 0);
    assert!(
        stderr(&out).contains("is read-only for this process"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn settings_it_cannot_use_are_named_when_it_starts() {
    let sb = sandbox();
    let state = sb.path().join("state");
    let state = state.to_str().unwrap();
    // A refused PostgreSQL port: the cause, quickly, not "pool timed out".
    let refused_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://postgres:hunter2-secret@127.0.0.1:{refused_port}/test");
    let started = Instant::now();
    let out = refused(serve_cmd(
        &[
            "--state-dir",
            state,
            "--database-url",
            &url,
            "--database-connect-timeout-ms",
            "3000",
        ],
        &[],
    ));
    let err = stderr(&out);
    assert_ne!(code(&out), 0);
    assert!(err.contains("refused"), "{err}");
    assert!(!err.contains("hunter2-secret"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));

    // A port that accepts and never answers: the configured timeout, named.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/test",
        silent.local_addr().unwrap().port()
    );
    for (args, env, says) in [
        (
            vec![
                "--database-url",
                url.as_str(),
                "--database-connect-timeout-ms",
                "500",
            ],
            vec![],
            "no answer within 500 ms",
        ),
        (
            vec!["--database-pool-size", "0"],
            vec![],
            "--database-pool-size",
        ),
        (
            vec![
                "--providers",
                "ssh",
                "--ssh-pool",
                "root@127.0.0.1:22",
                "--ssh-pool-key",
                "/nonexistent/pool-key",
            ],
            vec![],
            "--ssh-pool-key /nonexistent/pool-key",
        ),
        (vec![], vec![("CRABBOX_LOG", "crabbox=[[")], "CRABBOX_LOG"),
    ] {
        let out = refused(serve_cmd(
            &[&["--state-dir", state], &args[..]].concat(),
            &env,
        ));
        assert_ne!(code(&out), 0, "{args:?}");
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
    drop(silent);
}

#[test]
fn misconfigured_authentication_is_a_warning_at_start() {
    let sb = sandbox();
    let state = sb.path().join("state");
    // The admin token equal to the shared token makes every member an admin.
    let mut child = serve_cmd(
        &["--state-dir", state.to_str().unwrap()],
        &[("CRABBOX_ADMIN_TOKEN", "shared-token-0123456789abcdef")],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("crabbox starts");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr"));
    let _server = Running(child);
    let mut seen = String::new();
    for _ in 0..50 {
        let mut line = String::new();
        if lines.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        seen.push_str(&line);
        if line.contains("listening on") {
            break;
        }
    }
    let warning = seen
        .lines()
        .find(|l| l.contains("CRABBOX_ADMIN_TOKEN equals CRABBOX_SHARED_TOKEN"))
        .unwrap_or_else(|| panic!("no warning:\n{seen}"));
    assert!(warning.contains("WARN"), "{warning}");
    // stderr is a pipe, not a terminal: no colour codes.
    assert!(!seen.contains('\u{1b}'), "{seen:?}");
}
