//! The whole chain without product code: raw EC2 calls through the fault proxy to moto, the
//! boot emulator booting the instance, and a real `ssh` to the instance's public address.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use base64::Engine;
use crabbox_remote::keys::{self, KeyPair};
use crabbox_test_support::boot_emulator::{BootEmulator, Runner};
use crabbox_test_support::fault_proxy::{Ec2Error, Fault};
use crabbox_test_support::{code, loopback_only, procs, stderr, stdout};

use crate::fault_proxy::{Cloud, instance_ids, run_instance};

const BOOT: Duration = Duration::from_secs(30);

/// A [`Cloud`] whose instances boot, and a lease key.
struct Booting {
    cloud: Cloud,
    emulator: BootEmulator,
    keys: tempfile::TempDir,
    key: KeyPair,
}

impl Booting {
    fn start() -> Self {
        let cloud = Cloud::start();
        let emulator = BootEmulator::start(&cloud.moto.url(), &[cloud.moto.region()]);
        let keys = tempfile::tempdir().unwrap();
        let key = keys::ensure_ed25519(keys.path(), "lease", "cbx-test").unwrap();
        Self {
            cloud,
            emulator,
            keys,
            key,
        }
    }
}

/// Crabbox's cloud-init in the parts the emulator reads.
fn user_data(public_key: &str) -> String {
    let doc = format!(
        "#cloud-config\npackage_update: false\nusers:\n  - name: crabbox\n    groups: sudo\n    \
         shell: /bin/bash\n    sudo: ALL=(ALL) NOPASSWD:ALL\n    ssh_authorized_keys:\n      - {public_key}\n"
    );
    base64::engine::general_purpose::STANDARD.encode(doc)
}

/// `ssh -p <port> <user>@<address> <command>` with only `key`, trusting only the runner's
/// host key, and no configuration of the machine's.
fn ssh(runner: &Runner, user: &str, key: &Path, port: u16, command: &str) -> Output {
    let known_hosts = key.with_extension("known_hosts");
    let host = if port == 22 {
        runner.address().to_string()
    } else {
        format!("[{}]:{port}", runner.address())
    };
    std::fs::write(&known_hosts, format!("{host} {}\n", runner.host_key)).unwrap();
    Command::new("ssh")
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .args(["-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=10"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .arg("-i")
        .arg(key)
        .args(["-p", &port.to_string()])
        .arg(format!("{user}@{}", runner.address()))
        .arg(command)
        .output()
        .unwrap()
}

#[tokio::test]
async fn an_instance_boots_into_a_runner_reached_over_ssh_and_goes_away_when_terminated() {
    loopback_only!();
    let Booting {
        cloud: Cloud {
            moto: _moto,
            proxy,
            ec2,
        },
        emulator,
        keys,
        key,
    } = Booting::start();
    let public_key = key.public_key().unwrap();

    ec2.ok(
        "ImportKeyPair",
        &[
            ("KeyName", "crabbox-cbx-test"),
            (
                "PublicKeyMaterial",
                &base64::engine::general_purpose::STANDARD.encode(&public_key),
            ),
        ],
    )
    .await;
    let launched = run_instance(
        &ec2,
        "t3.small",
        &[
            ("KeyName", "crabbox-cbx-test"),
            ("UserData", &user_data(&public_key)),
        ],
    )
    .await;
    assert_eq!(launched.status, 200, "{}", launched.body);
    let id = launched.first("instanceId").unwrap();

    let runner = emulator.wait_for_runner(&id, BOOT);
    assert_eq!(runner.user.as_deref(), Some("crabbox"));
    assert_eq!(runner.authorized_keys, vec![public_key.clone()]);
    let public_ip = runner
        .public_ip
        .expect("moto gives the instance a public address");
    assert_eq!(
        ec2.ok("DescribeInstances", &[("InstanceId.1", &id)])
            .await
            .first("ipAddress"),
        Some(public_ip.to_string())
    );
    let work_root = emulator.work_root();
    for port in [2222, 22] {
        let out = ssh(
            &runner,
            emulator.ssh_user(),
            &key.private,
            port,
            &format!(
                "crabbox-ready && test -w '{}' && echo ok",
                work_root.display()
            ),
        );
        assert_eq!(code(&out), 0, "port {port}: {}", stderr(&out));
        assert_eq!(stdout(&out), "ok\n");
    }
    // The lease key is what lets a client in.
    let stranger = keys::ensure_ed25519(keys.path(), "other", "cbx-test").unwrap();
    let refused = ssh(
        &runner,
        emulator.ssh_user(),
        &stranger.private,
        2222,
        "true",
    );
    assert_eq!(code(&refused), 255, "{}", stderr(&refused));

    ec2.ok("TerminateInstances", &[("InstanceId.1", &id)]).await;
    emulator.wait_for_shutdown(&id, BOOT);
    assert!(!procs::alive(runner.sshd_pid), "the runner's sshd stopped");
    let gone = ssh(&runner, emulator.ssh_user(), &key.private, 2222, "true");
    assert_eq!(code(&gone), 255, "the address left lo: {}", stderr(&gone));

    assert_eq!(proxy.count("ImportKeyPair"), 1);
    assert_eq!(proxy.count("RunInstances"), 1);
    assert_eq!(proxy.count("TerminateInstances"), 1);
    assert_eq!(
        proxy.count("DescribeInstanceAttribute"),
        0,
        "the emulator asks moto directly, so the proxy counts only the client's calls"
    );
}

#[tokio::test]
async fn capacity_refusal_and_a_lost_reply_retried_by_client_token_leave_one_instance() {
    loopback_only!();
    let Booting {
        cloud: Cloud { moto, proxy, ec2 },
        emulator,
        keys: _keys,
        key,
    } = Booting::start();
    let user_data = user_data(&key.public_key().unwrap());
    let launch = [
        ("ClientToken", "cbx-attempt-1"),
        ("UserData", user_data.as_str()),
    ];

    proxy.inject(Fault::refuse(
        "RunInstances",
        Ec2Error::InsufficientInstanceCapacity,
    ));
    let refused = run_instance(&ec2, "c7a.48xlarge", &launch).await;
    assert_eq!(
        (refused.status, refused.error_code().as_deref()),
        (500, Some("InsufficientInstanceCapacity"))
    );
    assert!(instance_ids(&moto).await.is_empty());

    proxy.inject(Fault::drop_reply("RunInstances"));
    let lost = ec2
        .call(
            "RunInstances",
            &[
                (
                    "ImageId",
                    crabbox_test_support::moto::newest_ubuntu_image("24.04", "x86_64").id,
                ),
                ("InstanceType", "c7a.48xlarge"),
                ("MinCount", "1"),
                ("MaxCount", "1"),
                ("ClientToken", "cbx-attempt-1"),
                ("UserData", user_data.as_str()),
            ],
        )
        .await;
    assert!(lost.is_err(), "the reply was dropped: {lost:?}");
    let launched_while_lost = instance_ids(&moto).await;
    assert_eq!(
        launched_while_lost.len(),
        1,
        "moto acted on the call whose reply was lost"
    );

    let retried = run_instance(&ec2, "c7a.48xlarge", &launch).await;
    assert_eq!(retried.status, 200, "{}", retried.body);
    assert_eq!(
        retried.first("instanceId"),
        launched_while_lost.first().cloned()
    );
    assert_eq!(
        instance_ids(&moto).await,
        launched_while_lost,
        "the retry launched nothing"
    );
    assert_eq!(proxy.count("RunInstances"), 3);

    let runner = emulator.wait_for_runner(&launched_while_lost[0], BOOT);
    assert_eq!(emulator.runners(), [runner]);
}

#[tokio::test]
async fn an_instance_without_a_public_address_is_reached_on_its_private_one() {
    loopback_only!();
    // Every fixture is bound for the whole test: one left out of the pattern would stop now.
    let Booting {
        cloud:
            Cloud {
                moto: _moto,
                proxy: _proxy,
                ec2,
            },
        emulator,
        keys: _keys,
        key,
    } = Booting::start();
    let subnet = ec2
        .ok("DescribeSubnets", &[])
        .await
        .first("subnetId")
        .unwrap();
    let launched = run_instance(
        &ec2,
        "t3.small",
        &[
            ("UserData", &user_data(&key.public_key().unwrap())),
            ("NetworkInterface.1.DeviceIndex", "0"),
            ("NetworkInterface.1.SubnetId", &subnet),
            ("NetworkInterface.1.AssociatePublicIpAddress", "false"),
        ],
    )
    .await;
    assert_eq!(launched.status, 200, "{}", launched.body);
    let runner = emulator.wait_for_runner(&launched.first("instanceId").unwrap(), BOOT);
    assert_eq!(runner.public_ip, None);
    let private_ip = runner.private_ip.expect("a private address");
    assert_eq!(runner.address(), private_ip);
    let out = ssh(
        &runner,
        emulator.ssh_user(),
        &key.private,
        2222,
        "crabbox-ready && echo ok",
    );
    assert_eq!(
        (code(&out), stdout(&out).as_str()),
        (0, "ok\n"),
        "{}",
        stderr(&out)
    );
}
