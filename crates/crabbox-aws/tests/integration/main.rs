//! The AWS provider in process, against moto behind the fault proxy, in a loopback-only
//! network namespace: the provider conformance suite, and the failures only a cloud has.
//! (The whole CLI path, SSH included, is in crates/crabbox/tests/integration/aws.rs.)

use crabbox_aws::client::{Aws, loader};
use crabbox_aws::{AwsProvider, AwsSettings};
use crabbox_providers::conformance::{Promises, lifecycle};
use crabbox_providers::{AcquireRequest, MachineChoice, Provider as _};
use crabbox_test_support::ec2_query::Ec2Query;
use crabbox_test_support::fault_proxy::{Ec2Error, Fault, FaultProxy};
use crabbox_test_support::loopback_only;
use crabbox_test_support::moto::{ACCESS_KEY_ID, Moto, SECRET_ACCESS_KEY};

mod cloud;
mod hosts;
mod images;

/// moto, the proxy in front of it, and a provider configured in code to use them.
struct Cloud {
    moto: Moto,
    proxy: FaultProxy,
    provider: AwsProvider,
}

impl Cloud {
    async fn start() -> Self {
        let moto = Moto::start();
        let proxy = FaultProxy::start(&moto.url());
        let provider = provider(&moto, &proxy, &["127.0.0.0/8"]).await;
        Self {
            moto,
            proxy,
            provider,
        }
    }

    /// Instance ids moto holds in `state`, asked directly (not counted by the proxy).
    async fn instances(&self, state: &str) -> Vec<String> {
        Ec2Query::new(&self.moto.url(), self.moto.region())
            .ok(
                "DescribeInstances",
                &[
                    ("Filter.1.Name", "instance-state-name"),
                    ("Filter.1.Value.1", state),
                ],
            )
            .await
            .all("instanceId")
    }

    /// The id of the `crabbox-runners` group moto holds.
    async fn group_id(&self) -> String {
        Ec2Query::new(&self.moto.url(), self.moto.region())
            .ok(
                "DescribeSecurityGroups",
                &[
                    ("Filter.1.Name", "group-name"),
                    ("Filter.1.Value.1", "crabbox-runners"),
                ],
            )
            .await
            .first("groupId")
            .expect("the crabbox-runners group")
    }

    async fn key_pairs(&self) -> Vec<String> {
        Ec2Query::new(&self.moto.url(), self.moto.region())
            .ok("DescribeKeyPairs", &[])
            .await
            .all("keyName")
    }
}

/// A provider configured in code for moto behind `proxy`, allowing SSH from `cidrs`.
async fn provider(moto: &Moto, proxy: &FaultProxy, cidrs: &[&str]) -> AwsProvider {
    let credentials = aws_credential_types::Credentials::new(
        ACCESS_KEY_ID,
        SECRET_ACCESS_KEY,
        None,
        None,
        "crabbox-tests",
    );
    let sdk = loader(moto.region())
        .endpoint_url(proxy.url())
        .credentials_provider(credentials)
        .load()
        .await;
    let defaults =
        crabbox_core::config::resolve(&crabbox_core::config::ConfigInputs::default()).unwrap();
    let mut settings = AwsSettings::from_config(
        defaults.config(),
        crabbox_providers::cloud::cost::CostRates::default(),
    );
    moto.region().clone_into(&mut settings.region);
    settings.ssh_cidrs = cidrs.iter().map(|c| (*c).to_owned()).collect();
    AwsProvider::with_clients(settings, Aws::from_sdk_config(sdk))
}

fn request(lease_id: &str) -> AcquireRequest {
    AcquireRequest {
        lease_id: lease_id.into(),
        slug: "conformance".into(),
        class: "standard".into(),
        public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl crabbox".into(),
        ttl_secs: 600,
        idle_timeout_secs: 300,
        keep: false,
        machine: MachineChoice::default(),
        capabilities: crabbox_providers::Capabilities::default(),
    }
}

#[tokio::test]
async fn aws_provider_conforms() {
    loopback_only!();
    let cloud = Cloud::start().await;
    let promises = Promises {
        lists: true,
        deletes: true,
        adopts: false,
    };
    let record = lifecycle(&cloud.provider, &request("cbx_00000000a001"), promises).await;
    assert_eq!(record.server_type, "c7a.8xlarge");
    assert_eq!(cloud.instances("terminated").await, [record.server_id]);
    assert!(cloud.key_pairs().await.is_empty());
}

#[tokio::test]
async fn a_create_that_every_type_refuses_leaves_nothing() {
    loopback_only!();
    let cloud = Cloud::start().await;
    cloud
        .proxy
        .inject(Fault::refuse("RunInstances", Ec2Error::InsufficientInstanceCapacity).times(100));
    let err = cloud
        .provider
        .acquire(&request("cbx_00000000a002"))
        .await
        .unwrap_err();
    // standard: 6 types on spot, then the same 6 on-demand.
    assert_eq!(cloud.proxy.count("RunInstances"), 12, "{err}");
    assert!(err.to_string().contains("c7a.8xlarge"), "{err}");
    assert!(cloud.instances("running").await.is_empty());
    assert!(
        cloud.key_pairs().await.is_empty(),
        "the imported key pair is deleted"
    );
}

#[tokio::test]
async fn a_create_retried_after_a_lost_reply_leaves_one_runner() {
    loopback_only!();
    let cloud = Cloud::start().await;
    cloud.proxy.inject(Fault::drop_reply("RunInstances"));
    let record = cloud
        .provider
        .acquire(&request("cbx_00000000a003"))
        .await
        .unwrap();
    assert_eq!(cloud.proxy.count("RunInstances"), 2);
    assert_eq!(
        cloud.instances("running").await,
        std::slice::from_ref(&record.server_id)
    );
    cloud.provider.release(&record).await.unwrap();
}

#[tokio::test]
async fn throttling_is_retried_and_other_errors_map_to_the_shared_vocabulary() {
    loopback_only!();
    let cloud = Cloud::start().await;
    cloud
        .proxy
        .inject(Fault::refuse("RunInstances", Ec2Error::RequestLimitExceeded).times(2));
    let record = cloud
        .provider
        .acquire(&request("cbx_00000000a004"))
        .await
        .unwrap();
    assert_eq!(
        cloud.proxy.count("RunInstances"),
        3,
        "two throttled tries, then the launch"
    );
    assert_eq!(
        record.server_type, "c7a.8xlarge",
        "the same plan, not the next type"
    );
    assert_eq!(record.provisioning_attempts.len(), 2);
    cloud.provider.release(&record).await.unwrap();
}

#[tokio::test]
async fn the_vcpu_quota_preflight_skips_types_before_anything_is_spent() {
    loopback_only!();
    let cloud = Cloud::start().await;
    // Spot: 16 vCPUs. The standard class's 32-vCPU types are refused without a call.
    cloud.proxy.set_service_quota("L-34B43A08", 16.0);
    let record = cloud
        .provider
        .acquire(&request("cbx_00000000a005"))
        .await
        .unwrap();
    assert_eq!(
        record.server_type, "c7a.4xlarge",
        "the first type that fits"
    );
    assert_eq!(cloud.proxy.count("RunInstances"), 1);
    let refused: Vec<_> = record
        .provisioning_attempts
        .iter()
        .map(|a| {
            (
                a.server_type.as_str(),
                a.category.as_str(),
                a.message.as_str(),
            )
        })
        .collect();
    assert_eq!(refused.len(), 4, "{refused:?}");
    assert_eq!(
        refused[0],
        (
            "c7a.8xlarge",
            "quota",
            "quota L-34B43A08 in eu-west-1 is 16 vCPUs; c7a.8xlarge needs 32 vCPUs"
        )
    );
    cloud.provider.release(&record).await.unwrap();

    // Nothing fits either market: a quota error, and nothing was made.
    cloud.proxy.set_service_quota("L-34B43A08", 2.0);
    cloud.proxy.set_service_quota("L-1216C47A", 2.0);
    cloud.proxy.reset_calls();
    let mut req = request("cbx_00000000a006");
    req.machine.server_type = Some("c7a.48xlarge".into());
    let err = cloud.provider.acquire(&req).await.unwrap_err();
    assert!(
        matches!(err, crabbox_providers::ProviderError::Quota(_)),
        "{err}"
    );
    assert_eq!(cloud.proxy.count("RunInstances"), 0);
    assert_eq!(
        cloud.proxy.count("ImportKeyPair"),
        0,
        "not even the key is imported"
    );
}

#[tokio::test]
async fn the_security_group_allows_ssh_from_exactly_the_configured_sources() {
    loopback_only!();
    let cloud = Cloud::start().await;
    let first = cloud
        .provider
        .acquire(&request("cbx_00000000a007"))
        .await
        .unwrap();
    // The sources change: the next create brings the group's Crabbox rules to the new ones
    // and leaves a rule someone else added alone.
    let ec2 = Ec2Query::new(&cloud.moto.url(), cloud.moto.region());
    let group = cloud.group_id().await;
    ec2.ok(
        "AuthorizeSecurityGroupIngress",
        &[
            ("GroupId", group.as_str()),
            ("IpPermissions.1.IpProtocol", "tcp"),
            ("IpPermissions.1.FromPort", "443"),
            ("IpPermissions.1.ToPort", "443"),
            ("IpPermissions.1.IpRanges.1.CidrIp", "10.0.0.0/8"),
        ],
    )
    .await;
    let moved = provider(
        &cloud.moto,
        &cloud.proxy,
        &["192.0.2.0/24", "2001:db8::/32"],
    )
    .await;
    let second = moved.acquire(&request("cbx_00000000a008")).await.unwrap();
    let rules = ec2
        .ok("DescribeSecurityGroups", &[("GroupId.1", group.as_str())])
        .await;
    let mut sources = rules.all("cidrIp");
    sources.extend(rules.all("cidrIpv6"));
    // The group's default egress rule (`ipPermissionsEgress`) reads the same way.
    sources.retain(|cidr| cidr != "0.0.0.0/0");
    sources.sort();
    assert_eq!(
        sources,
        [
            "10.0.0.0/8",
            "192.0.2.0/24",
            "192.0.2.0/24",
            "2001:db8::/32",
            "2001:db8::/32"
        ],
        "ports 22 and 2222 from the new sources, the foreign rule kept"
    );
    cloud.provider.release(&first).await.unwrap();
    moved.release(&second).await.unwrap();
}

#[tokio::test]
async fn a_remembered_security_group_that_is_gone_is_looked_up_again() {
    loopback_only!();
    let cloud = Cloud::start().await;
    let first = cloud
        .provider
        .acquire(&request("cbx_00000000a009"))
        .await
        .unwrap();
    cloud.provider.release(&first).await.unwrap();
    // Someone deletes the group the provider remembers.
    let ec2 = Ec2Query::new(&cloud.moto.url(), cloud.moto.region());
    let group = cloud.group_id().await;
    ec2.ok("DeleteSecurityGroup", &[("GroupId", group.as_str())])
        .await;
    cloud.proxy.reset_calls();
    let second = cloud
        .provider
        .acquire(&request("cbx_00000000a00a"))
        .await
        .unwrap();
    assert_eq!(
        cloud.proxy.count("RunInstances"),
        2,
        "refused once, then launched"
    );
    assert_eq!(
        cloud.proxy.count("CreateSecurityGroup"),
        1,
        "the group is made again"
    );
    assert_eq!(second.provisioning_attempts.len(), 1);
    assert_eq!(
        second.provisioning_attempts[0].code,
        "InvalidGroup.NotFound"
    );
    cloud.provider.release(&second).await.unwrap();
}

#[tokio::test]
async fn a_create_whose_launch_answers_are_all_lost_leaves_nothing() {
    loopback_only!();
    let cloud = Cloud::start().await;
    // Every try of the first plan launches (moto acts) but its answer never arrives.
    cloud
        .proxy
        .inject(Fault::drop_reply("RunInstances").times(5));
    let err = cloud
        .provider
        .acquire(&request("cbx_00000000a00b"))
        .await
        .unwrap_err();
    assert_eq!(cloud.proxy.count("RunInstances"), 5, "{err}");
    assert!(
        cloud.instances("running").await.is_empty(),
        "the unseen instance is terminated"
    );
    assert!(cloud.key_pairs().await.is_empty());
}
