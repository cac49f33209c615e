//! Loopback-only network namespaces for cloud tests.
//!
//! An emulated cloud hands out public-looking addresses (moto's instances get 54.x.x.x), and
//! a bug in the code under test could connect to one, or to a real cloud's metadata address.
//! Every cloud test therefore runs in a network namespace of its own whose only interface is
//! `lo`: a connection to any address not on `lo` fails at once with `ENETUNREACH`, and the
//! boot emulator can put the emulated instances' addresses on that `lo`.
//!
//! The workspace forbids `unsafe`, so the namespace is not made with unshare(2) from Rust.
//! Instead a test starts with [`loopback_only!`](crate::loopback_only): outside a namespace it
//! runs the current test binary again for just this test (`--exact <name>`) under
//! `/usr/bin/unshare -n` (util-linux), streams the child's output through, and fails when the
//! child fails; the macro then returns. Inside (the child, marked by [`MARKER`]), it brings
//! `lo` up (`ip link set lo up`, iproute2) and the test goes on. This works under
//! `cargo nextest` (a process per test) and plain `cargo test` alike; the test's name is read
//! from its thread, which libtest names after the test.
//!
//! What it needs: root (CI runs as root), or unprivileged user namespaces, where it uses
//! `unshare -rn` and the test runs as root of its own user namespace. That is enough for
//! moto, the fault proxy and raw sockets, but not for the boot emulator: OpenSSH's sshd
//! refuses to start when its privilege-separation directory is not owned by (real) root.
//! When no namespace can be made the test fails with the reason: it never runs un-isolated.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};

/// The environment variable that marks the child running inside the namespace; its value is
/// the name of the test it runs there.
pub const MARKER: &str = "CRABBOX_TEST_NETNS";

const UNSHARE: &str = "/usr/bin/unshare";

/// Runs the rest of the calling test inside a loopback-only network namespace: when called
/// outside one, reruns this test there, reports its outcome (a failure inside fails this
/// test) and returns from the calling function. Call it first, before starting any fixture.
#[macro_export]
macro_rules! loopback_only {
    () => {
        if !$crate::netns::enter() {
            return;
        }
    };
}

/// True when the caller is inside its loopback-only namespace (with `lo` up) and should run
/// the test's body; false when the test has just run in a child inside one and passed (a
/// failure there panics here). [`loopback_only!`] is the usual way to call it.
pub fn enter() -> bool {
    let test = current_test();
    if std::env::var(MARKER).is_ok_and(|marked| marked == test) {
        bring_lo_up();
        assert!(
            is_loopback_only(),
            "{MARKER} is set but this process is not in a loopback-only network namespace \
             (interfaces: {:?})",
            interfaces()
        );
        return true;
    }
    run_in_namespace(&test);
    false
}

/// Whether this process's network namespace has no interface but `lo`.
pub fn is_loopback_only() -> bool {
    interfaces() == ["lo"]
}

/// The interfaces of this process's network namespace (`/proc/self/net/dev` is per process;
/// `/sys/class/net` shows the namespace that mounted sysfs instead).
fn interfaces() -> Vec<String> {
    let dev = std::fs::read_to_string("/proc/self/net/dev").unwrap_or_default();
    dev.lines()
        .skip(2)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, _)| name.trim().to_owned())
        .collect()
}

/// The running test's full name, which libtest gives the thread it runs the test on.
fn current_test() -> String {
    let thread = std::thread::current();
    match thread.name() {
        Some(name) if name != "main" => name.to_owned(),
        _ => panic!(
            "loopback_only! must be called on the test's own thread (libtest names it after \
             the test); this thread is {:?}",
            thread.name()
        ),
    }
}

fn bring_lo_up() {
    let out = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .output()
        .unwrap_or_else(|e| {
            panic!("could not run `ip` (iproute2; scripts/dev-setup installs it): {e}")
        });
    assert!(
        out.status.success(),
        "`ip link set lo up` failed in the test's network namespace: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Runs this test binary for `test` alone under `unshare`, streaming its output through.
fn run_in_namespace(test: &str) {
    assert!(
        Path::new(UNSHARE).is_file(),
        "cloud tests run in a network namespace made by {UNSHARE} (util-linux), which is \
         missing: run scripts/dev-setup"
    );
    let exe = std::env::current_exe().expect("the test binary's path");
    let namespaces: &[&str] = if rustix::process::geteuid().is_root() {
        &["--net"]
    } else {
        // Without root, a user namespace of our own gives the rights over the new network
        // namespace (needs unprivileged user namespaces).
        &["--map-root-user", "--net"]
    };
    let mut child = Command::new(UNSHARE)
        .args(namespaces)
        .arg("--")
        .arg(&exe)
        .args(["--exact", test, "--nocapture", "--include-ignored"])
        .env(MARKER, test)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {UNSHARE}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let err_pump = std::thread::spawn(move || pump(stderr, false, || {}));
    // The child prints only once it runs inside the namespace: its first line tells which.
    let namespace = Arc::new(OnceLock::new());
    let noted = Arc::clone(&namespace);
    let pid = child.id();
    let out_pump = std::thread::spawn(move || {
        pump(stdout, true, || {
            if let Some(ns) = net_namespace(pid) {
                let _ = noted.set(ns);
            }
        })
    });
    // Its namespace is also noted here, while it runs (an exited process's is gone): on a
    // loaded machine the pump may see the first line only after the child is done, and a
    // namespace never noted would leave its leftovers running.
    while namespace.get().is_none() && matches!(child.try_wait(), Ok(None)) {
        if let Some(ns) = net_namespace(pid) {
            let _ = namespace.set(ns);
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let status = child.wait().expect("wait for the namespaced test");
    // Before the pumps finish: a leftover may hold the child's stdout or stderr open.
    if let Some(namespace) = namespace.get() {
        kill_leftovers(namespace);
    }
    let out_lines = out_pump.join().expect("stdout pump");
    let err_lines = err_pump.join().expect("stderr pump");
    let ran_one = out_lines
        .iter()
        .any(|l| l.starts_with("test result: ok. 1 passed"));
    if status.success() && ran_one {
        return;
    }
    let started = out_lines.iter().any(|l| l.starts_with("running 1 test"));
    assert!(
        started,
        "could not run {test} in a loopback-only network namespace ({UNSHARE} {} exited \
         with {status}): {}\nhint: cloud tests need root, or unprivileged user namespaces \
         (see crabbox_test_support::netns)",
        namespaces.join(" "),
        err_lines.join("\n").trim()
    );
    panic!("{test} failed inside its network namespace ({status}); its output is above");
}

/// The network namespace of process `pid` (`net:[<inode>]`), unless it is ours.
fn net_namespace(pid: u32) -> Option<String> {
    let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
    let theirs = ns(&pid.to_string())?;
    (Some(&theirs) != ns("self").as_ref()).then(|| theirs.to_string_lossy().into_owned())
}

/// Kills what still runs in the test's namespace once the test is over: a daemon that a
/// crashed test could not stop (a runner sshd) would keep the namespace alive forever.
fn kill_leftovers(namespace: &str) {
    for pid in crate::procs::pids() {
        if net_namespace(pid).as_deref() == Some(namespace) {
            crate::procs::signal(pid, crate::procs::Signal::KILL);
        }
    }
}

/// Copies a child's stream to ours line by line (through libtest's capture when it is on)
/// and returns the lines; `first_line` runs when the first one arrives.
#[expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "passes the namespaced test's own output through"
)]
fn pump(stream: impl Read, to_stdout: bool, first_line: impl FnOnce()) -> Vec<String> {
    let mut lines = Vec::new();
    let mut first_line = Some(first_line);
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        if let Some(note) = first_line.take() {
            note();
        }
        if to_stdout {
            println!("{line}");
        } else {
            eprintln!("{line}");
        }
        lines.push(line);
    }
    lines
}
