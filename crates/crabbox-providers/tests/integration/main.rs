//! The provider conformance suite against `local` (a real sshd per lease on this machine) and
//! `ssh` (a static host: a real sshd started here for the test).

use crabbox_providers::conformance::{Promises, lifecycle};
use crabbox_providers::local::{LocalProvider, current_user};
use crabbox_providers::static_ssh::{StaticHost, StaticSshProvider};
use crabbox_providers::{AcquireRequest, MachineChoice, Provider as _};

fn request(lease_id: &str, public_key: String) -> AcquireRequest {
    AcquireRequest {
        lease_id: lease_id.into(),
        slug: "conformance".into(),
        class: "beast".into(),
        public_key,
        ttl_secs: 600,
        idle_timeout_secs: 300,
        keep: false,
        machine: MachineChoice::default(),
        capabilities: crabbox_providers::Capabilities::default(),
    }
}

fn lease_key(dir: &std::path::Path) -> String {
    crabbox_remote::keys::ensure_ed25519(dir, "id_ed25519", "crabbox conformance")
        .unwrap()
        .public_key()
        .unwrap()
}

#[tokio::test]
async fn local_provider_conforms() {
    let state = tempfile::tempdir().unwrap();
    let provider = LocalProvider::new(state.path());
    let req = request("cbx_00000000c0f1", lease_key(state.path()));
    let promises = Promises {
        lists: true,
        deletes: true,
        adopts: false,
    };
    lifecycle(&provider, &req, promises).await;
    assert!(provider.inventory().await.unwrap().is_empty());
}

#[tokio::test]
async fn static_ssh_provider_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let key = lease_key(dir.path());
    let sshd = crabbox_remote::sshd::start(&dir.path().join("sshd"), &current_user(), &key)
        .await
        .expect("an OpenSSH server (scripts/dev-setup)");
    let provider = StaticSshProvider::new(StaticHost {
        host: Some("127.0.0.1".into()),
        user: current_user(),
        port: sshd.port,
        work_root: dir.path().join("work").display().to_string(),
        key: Some(dir.path().join("id_ed25519").display().to_string()),
        ..StaticHost::default()
    });
    let promises = Promises {
        lists: false,
        deletes: false,
        adopts: true,
    };
    let record = lifecycle(
        &provider,
        &request("cbx_00000000c0f2", String::new()),
        promises,
    )
    .await;
    assert_eq!(record.ssh_port, sshd.port);
    crabbox_remote::sshd::stop(&dir.path().join("sshd")).await;
}
