//! How `crabbox coordinator serve` starts, or refuses to: private state, settings it cannot
//! use (named, at once, not on the first request), logs that stay machine-readable.

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crabbox_test_support::{code, procs, stderr};
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

/// Starts `coordinator serve` with `args` and JSON logs, and returns it once it listens, with
/// the address it listens on. Every line on stderr must be a JSON object; the listening line
/// carries the URL. The rest of stderr is read (and dropped) until the coordinator exits.
fn serve_json(args: &[&str]) -> (Running, String) {
    let (server, addr, mut lines) = serve_json_until_listening(args);
    std::thread::spawn(move || std::io::copy(&mut lines, &mut std::io::sink()));
    (server, addr)
}

/// [`serve_json`], handing back the rest of stderr.
fn serve_json_until_listening(args: &[&str]) -> (Running, String, BufReader<ChildStderr>) {
    let mut child = serve_cmd(&[args, &["--log-format", "json"]].concat(), &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("crabbox starts");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr"));
    let server = Running(child);
    for _ in 0..50 {
        let mut line = String::new();
        if lines.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
        if let Some(url) = v["fields"]["url"].as_str() {
            assert_eq!(v["fields"]["providers"], "local", "{line}");
            let addr = url.strip_prefix("http://").expect("an http URL");
            assert!(addr.starts_with("127.0.0.1:"), "{line}");
            return (server, addr.to_owned(), lines);
        }
    }
    panic!("the coordinator did not say where it listens");
}

/// Stops the coordinator as a service manager does (SIGTERM) and waits for it to exit.
fn stop(mut server: Running) -> std::process::ExitStatus {
    assert!(procs::signal(server.0.id(), procs::Signal::TERM));
    server.0.wait().expect("the coordinator exits")
}

/// One request to the coordinator at `addr` over a plain socket, with the shared token; the
/// status and the body.
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).expect("the coordinator accepts");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\n\
         authorization: Bearer shared-token-0123456789abcdef\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("request written");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response read");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status: {response}"));
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (status, body.to_owned())
}

/// `PUT /v1/leases/{id}/registration` of a machine at `host`; the status.
fn register(addr: &str, id: &str, host: &str) -> u16 {
    let body = format!(
        r#"{{"provider":"ssh","target":"linux","host":"{host}","serverName":"{}"}}"#,
        "a-long-server-name-".repeat(50)
    );
    http(addr, "PUT", &format!("/v1/leases/{id}/registration"), &body).0
}

#[test]
fn the_state_directory_and_database_are_private_and_an_unwritable_database_stops_the_start() {
    let sb = sandbox();
    let state = sb.path().join("srv/coordinator");
    let (server, _) = serve_json(&["--state-dir", state.to_str().unwrap()]);
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

/// A graceful stop leaves the SQLite file complete by itself (its write-ahead log copied back
/// and removed): an operator who moves the stopped coordinator's database file alone loses
/// nothing.
#[test]
fn a_stopped_coordinator_leaves_its_sqlite_file_complete_by_itself() {
    let sb = sandbox();
    let state = sb.path().join("state");
    let (server, addr) = serve_json(&["--state-dir", state.to_str().unwrap()]);
    assert_eq!(register(&addr, "kept-box", "10.0.0.7"), 201);
    let exit = stop(server);
    assert!(exit.success(), "{exit}");
    assert!(
        !state.join("coordinator.db-wal").exists(),
        "the log is left over"
    );

    let moved = sb.path().join("moved");
    std::fs::create_dir_all(&moved).unwrap();
    std::fs::copy(state.join("coordinator.db"), moved.join("coordinator.db")).unwrap();
    let (_server, addr) = serve_json(&["--state-dir", moved.to_str().unwrap()]);
    let (status, body) = http(&addr, "GET", "/v1/leases/kept-box", "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"host\":\"10.0.0.7\""), "{body}");
}

/// A log reader that goes away (a pipe to a collector that died, `| head`) costs the
/// coordinator its logs, not its life: it keeps serving and stops cleanly.
#[test]
fn a_closed_stderr_does_not_stop_the_coordinator() {
    let sb = sandbox();
    let state = sb.path().join("state");
    let (server, addr, lines) =
        serve_json_until_listening(&["--state-dir", state.to_str().unwrap()]);
    drop(lines);
    assert_eq!(register(&addr, "quiet-box", "10.0.0.8"), 201);
    let exit = stop(server);
    assert!(exit.success(), "{exit}");
}

/// Overwrites a few pages in the middle of the SQLite file at `path` with garbage, as a disk
/// fault would, leaving its header (and so SQLite's willingness to open it) intact.
fn damage_middle_pages(path: &Path) {
    use std::io::{Seek as _, SeekFrom, Write as _};
    let bytes = std::fs::read(path).expect("database read");
    let page_size = match u16::from_be_bytes([bytes[16], bytes[17]]) {
        1 => 65_536,
        size => u64::from(size),
    };
    let pages = bytes.len() as u64 / page_size;
    assert!(
        pages >= 16,
        "a database of {pages} pages is too small to damage"
    );
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("database opened");
    file.seek(SeekFrom::Start((pages / 2) * page_size))
        .expect("seek");
    let garbage: Vec<u8> = (0..4 * page_size).map(|i| (i * 167 % 251) as u8).collect();
    file.write_all(&garbage).expect("pages overwritten");
}

#[test]
fn a_damaged_sqlite_file_stops_the_start_and_says_how_to_recover() {
    let sb = sandbox();
    let state = sb.path().join("state");
    let db = state.join("coordinator.db");
    let (server, addr) = serve_json(&["--state-dir", state.to_str().unwrap()]);
    for n in 0..300 {
        assert_eq!(register(&addr, &format!("box-{n}"), "10.0.0.1"), 201);
    }
    // A graceful stop leaves the file without its log: the damage below is then the only copy
    // of those pages.
    assert!(stop(server).success());
    damage_middle_pages(&db);

    let out = refused(serve_cmd(&["--state-dir", state.to_str().unwrap()], &[]));
    let err = stderr(&out);
    assert_ne!(code(&out), 0, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains(&format!("the SQLite database {} is damaged", db.display())),
        "{err}"
    );
    assert!(err.contains("restore it from a backup"), "{err}");
    assert!(err.contains("--database-url"), "{err}");

    // An operator may skip the check (it reads the whole file): the start then goes on.
    let (_running, _) = serve_json(&[
        "--state-dir",
        state.to_str().unwrap(),
        "--skip-sqlite-check",
    ]);
}
