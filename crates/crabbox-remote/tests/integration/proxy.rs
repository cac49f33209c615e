//! Reaching a runner through a jump host (`SshProxy`): readiness, a command and the multiplexed
//! connection all go through it, and nothing reaches the runner once the jump host is gone.

use std::time::Duration;

use crabbox_remote::keys;
use crabbox_remote::ssh::{SshProxy, wait_ready};
use crabbox_remote::sshd;

use crate::{current_user, runner};

#[tokio::test]
async fn a_runner_is_reached_through_a_proxy_command_and_only_through_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut target = runner(tmp.path()).await;
    let jump_dir = tmp.path().join("jump");
    let jump_key = keys::ensure_ed25519(&jump_dir.join("client"), "id_ed25519", "jump").unwrap();
    let jump = sshd::start(
        &jump_dir.join("sshd"),
        &current_user(),
        &jump_key.public_key().unwrap(),
    )
    .await
    .unwrap();
    let via = format!(
        "ssh -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=accept-new \
         -o UserKnownHostsFile={} -p {} -W %h:%p {}@127.0.0.1",
        jump_key.private.display(),
        jump_dir.join("known_hosts").display(),
        jump.port,
        current_user()
    );
    target.proxy = Some(SshProxy::Command(via));

    let port = wait_ready(
        &target,
        "bootstrap",
        Duration::from_secs(20),
        "true",
        |_| {},
    )
    .await
    .expect("ready through the jump host");
    assert_eq!(port, target.port);
    let out = target.capture("echo via-jump").await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "via-jump");

    // Without the jump host (and its connection) the runner cannot be reached.
    target.close_master().await;
    sshd::stop(&jump_dir.join("sshd")).await;
    let out = target.capture("echo via-jump").await.unwrap();
    assert_eq!(out.code, 255, "{}", String::from_utf8_lossy(&out.stderr));
    sshd::stop(&tmp.path().join("sshd")).await;
}
