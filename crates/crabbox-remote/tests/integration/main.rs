//! Real-boundary tests for crabbox-remote: a private sshd, the OpenSSH client, rsync and git,
//! and the file watcher daemon.

mod proxy;
mod session;
mod watch;
mod workspace_archive;

use std::path::Path;

use crabbox_remote::keys;
use crabbox_remote::ssh::{HostKeyPolicy, SshTarget};
use crabbox_remote::sshd;

/// The user this test runs as, from the system rather than `$USER` (unset under `env -i`).
pub fn current_user() -> String {
    let out = std::process::Command::new("id")
        .arg("-un")
        .output()
        .expect("id(1) runs");
    assert!(out.status.success(), "id -un failed");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

pub async fn runner(dir: &Path) -> SshTarget {
    let client = keys::ensure_ed25519(&dir.join("client"), "id_ed25519", "test").unwrap();
    let handle = sshd::start(
        &dir.join("sshd"),
        &current_user(),
        &client.public_key().unwrap(),
    )
    .await
    .unwrap();
    let known = dir.join("known_hosts");
    std::fs::write(
        &known,
        format!("[127.0.0.1]:{} {}\n", handle.port, handle.host_key),
    )
    .unwrap();
    SshTarget {
        user: current_user(),
        host: "127.0.0.1".into(),
        port: handle.port,
        fallback_ports: vec![],
        key: Some(client.private),
        known_hosts: known,
        host_keys: HostKeyPolicy::AcceptNew,
        control_dir: Some(dir.to_owned()),
        proxy: None,
    }
}
