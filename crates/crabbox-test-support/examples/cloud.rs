//! An emulated cloud for benchmarks, started in the caller's network namespace, which must be
//! loopback-only (scripts/bench-cloud runs this under `unshare -n`):
//!
//! - `cloud aws` (the default): moto, the fault proxy in front of it and the boot emulator;
//! - `cloud hetzner`: the Hetzner fake and the boot emulator;
//! - `cloud azure`: the Azure fake (HTTPS; its CA in `SSL_CERT_FILE`) and the boot emulator.
//!
//! Prints the environment a `crabbox` needs to use them, one `export` line each, then
//! `# ready`; runs until its stdin closes, then prints the API calls the proxy or the fake
//! counted to stderr.

use std::collections::BTreeMap;
use std::io::{BufRead as _, Write as _};

use crabbox_test_support::boot_emulator::BootEmulator;
use crabbox_test_support::fake_azure::FakeAzure;
use crabbox_test_support::fake_hetzner::FakeHetzner;
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
        "run inside a loopback-only network namespace (scripts/bench-cloud does)"
    );
    let provider = std::env::args().nth(1).unwrap_or_else(|| "aws".into());
    let mut env: Vec<(String, String)> = Vec::new();
    let counted: Box<dyn Fn() -> BTreeMap<String, usize>>;
    let emulator;
    let _keep: Box<dyn std::any::Any>;
    match provider.as_str() {
        "aws" => {
            let moto = Moto::start();
            let proxy = FaultProxy::start(&moto.url());
            emulator = BootEmulator::start(&moto.url(), &[moto.region()]);
            env.extend(
                moto.env(&proxy.url())
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v)),
            );
            env.push(("CRABBOX_AWS_SSH_CIDRS".into(), "127.0.0.0/8".into()));
            let proxy = std::rc::Rc::new(proxy);
            let calls = std::rc::Rc::clone(&proxy);
            counted = Box::new(move || {
                let mut counts = BTreeMap::new();
                for call in calls.calls() {
                    *counts.entry(call.action).or_default() += 1;
                }
                counts
            });
            _keep = Box::new((moto, proxy));
        }
        "hetzner" => {
            let fake = std::rc::Rc::new(FakeHetzner::start());
            emulator = BootEmulator::watch(fake.cloud());
            env.push(("HCLOUD_TOKEN".into(), FakeHetzner::TOKEN.into()));
            env.push(("HCLOUD_ENDPOINT".into(), fake.url()));
            let calls = std::rc::Rc::clone(&fake);
            counted = Box::new(move || {
                let mut counts = BTreeMap::new();
                for call in calls.calls() {
                    *counts.entry(call.route).or_default() += 1;
                }
                counts
            });
            _keep = Box::new(fake);
        }
        "azure" => {
            let fake = std::rc::Rc::new(FakeAzure::start());
            emulator = BootEmulator::watch(fake.cloud());
            env.extend(fake.env().into_iter().map(|(k, v)| (k.to_owned(), v)));
            env.push(("CRABBOX_AZURE_SSH_CIDRS".into(), "127.0.0.0/8".into()));
            let calls = std::rc::Rc::clone(&fake);
            counted = Box::new(move || {
                let mut counts = BTreeMap::new();
                for call in calls.calls() {
                    *counts.entry(call.route).or_default() += 1;
                }
                counts
            });
            _keep = Box::new(fake);
        }
        other => panic!("unknown cloud {other:?} (aws, hetzner or azure)"),
    }
    env.push(("CRABBOX_PROVIDER".into(), provider.clone()));
    env.push(("CRABBOX_SSH_USER".into(), emulator.ssh_user().to_owned()));
    env.push((
        "CRABBOX_WORK_ROOT".into(),
        emulator.work_root().display().to_string(),
    ));
    let mut out = std::io::stdout().lock();
    for (key, value) in &env {
        let _ = writeln!(out, "export {key}={}", sh_quote(value));
    }
    let _ = writeln!(out, "# ready");
    let _ = out.flush();
    drop(out);
    for _ in std::io::stdin().lock().lines() {}
    eprintln!("API calls ({provider}): {:?}", counted());
}
