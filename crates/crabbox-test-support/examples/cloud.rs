//! An emulated AWS for benchmarks: moto, the fault proxy in front of it and the boot emulator,
//! started in the caller's network namespace, which must be loopback-only (scripts/bench-aws
//! runs this under `unshare -n`). Prints the environment a `crabbox` needs to use them, one
//! `export` line each, then `# ready`; runs until its stdin closes, then prints the API calls
//! the proxy counted to stderr.

use std::io::{BufRead as _, Write as _};

use crabbox_test_support::boot_emulator::BootEmulator;
use crabbox_test_support::fault_proxy::FaultProxy;
use crabbox_test_support::moto::Moto;
use crabbox_test_support::{netns, sh_quote};

#[expect(
    clippy::print_stderr,
    reason = "the call counts, for the bench's reader"
)]
fn main() {
    assert!(
        netns::is_loopback_only(),
        "run inside a loopback-only network namespace (scripts/bench-aws does)"
    );
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.url());
    let emulator = BootEmulator::start(&moto.url(), &[moto.region()]);
    let mut out = std::io::stdout().lock();
    for (key, value) in moto.env(&proxy.url()) {
        let _ = writeln!(out, "export {key}={}", sh_quote(&value));
    }
    for (key, value) in [
        ("CRABBOX_PROVIDER", "aws".to_owned()),
        ("CRABBOX_AWS_SSH_CIDRS", "127.0.0.0/8".to_owned()),
        ("CRABBOX_SSH_USER", emulator.ssh_user().to_owned()),
        (
            "CRABBOX_WORK_ROOT",
            emulator.work_root().display().to_string(),
        ),
    ] {
        let _ = writeln!(out, "export {key}={}", sh_quote(&value));
    }
    let _ = writeln!(out, "# ready");
    let _ = out.flush();
    drop(out);
    for _ in std::io::stdin().lock().lines() {}
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for call in proxy.calls() {
        *counts.entry(call.action).or_default() += 1;
    }
    eprintln!("API calls at the proxy: {counts:?}");
}
