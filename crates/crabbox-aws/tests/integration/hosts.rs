//! EC2 Mac Dedicated Hosts (`crabbox admin hosts …`) against moto behind the fault proxy, which
//! supplies what moto lacks here: the `AllocateHosts` dry run and the Mac host quotas. Scenes
//! are set and checked in moto directly, past the proxy, so the proxy's calls are exactly the
//! product's, and each of them must be in the IAM policy.

use std::collections::BTreeMap;

use crabbox_aws::hosts::{self, AllocateOutcome, ReleaseOutcome};
use crabbox_providers::ProviderError;
use crabbox_test_support::fault_proxy::{Ec2Error, Fault, dedicated_host_quota_code};

use crate::cloud::Cloud;
use crabbox_test_support::loopback_only;

const MAC2: &str = "mac2.metal";

impl Cloud {
    /// The hosts moto holds (released ones too), by id, with their state.
    async fn hosts(&self) -> BTreeMap<String, String> {
        let answer = self.moto.ok("DescribeHosts", &[]).await;
        answer
            .all("hostId")
            .into_iter()
            .zip(answer.all("state"))
            .collect()
    }

    /// A host allocated in moto directly, without tags: one an operator made by hand.
    async fn foreign_host(&self, zone: &str) -> String {
        self.moto
            .ok(
                "AllocateHosts",
                &[
                    ("AvailabilityZone", zone),
                    ("InstanceType", MAC2),
                    ("Quantity", "1"),
                ],
            )
            .await
            .first("item")
            .expect("a host id")
    }
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn a_mac_host_is_offered_dry_run_allocated_counted_and_released() {
    loopback_only!();
    let cloud = Cloud::start().await;

    let offered = hosts::offerings(&cloud.ec2, MAC2).await.unwrap();
    let zones: Vec<&str> = offered.iter().map(|o| o.zone.as_str()).collect();
    // moto's offerings data for eu-west-1.
    assert_eq!(zones, ["eu-west-1b", "eu-west-1c"]);
    assert!(offered.iter().all(|o| o.instance_type == MAC2));
    let zone = zones[0].to_owned();

    // The dry run allocates nothing.
    let tags = BTreeMap::from([("purpose".to_owned(), "macos-bake".to_owned())]);
    let dry = hosts::allocate(&cloud.ec2, &zone, MAC2, true, &tags)
        .await
        .unwrap();
    assert_eq!(
        dry,
        AllocateOutcome::WouldSucceed {
            zone: zone.clone(),
            instance_type: MAC2.to_owned()
        }
    );
    assert!(cloud.hosts().await.is_empty());
    let sent = cloud.proxy.calls();
    assert_eq!(sent.last().unwrap().param("DryRun"), Some("true"));
    assert_eq!(
        cloud.take_calls(),
        strings(&["DescribeInstanceTypeOfferings", "AllocateHosts"])
    );

    let AllocateOutcome::Allocated { host_id, .. } =
        hosts::allocate(&cloud.ec2, &zone, MAC2, false, &tags)
            .await
            .unwrap()
    else {
        panic!("a real allocation allocates");
    };
    let sent = cloud.proxy.calls();
    let allocation = sent.last().unwrap();
    assert_eq!(allocation.param("DryRun"), None);
    assert_eq!(allocation.param("AutoPlacement"), Some("off"));
    assert_eq!(allocation.param("Quantity"), Some("1"));
    assert_eq!(
        cloud.hosts().await,
        BTreeMap::from([(host_id.clone(), "available".to_owned())])
    );

    let listed = hosts::list(&cloud.ec2, Some(MAC2), false).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let host = &listed[0];
    assert_eq!(
        (
            host.id.as_str(),
            host.zone.as_str(),
            host.state.as_str(),
            host.instance_type.as_str()
        ),
        (host_id.as_str(), zone.as_str(), "available", MAC2)
    );
    assert!(host.instances.is_empty());
    assert!(host.allocated_at.is_some(), "{host:?}");
    assert!(host.owned_by_crabbox());
    assert_eq!(host.tags["purpose"], "macos-bake");
    assert!(
        hosts::list(&cloud.ec2, Some("mac-m4.metal"), false)
            .await
            .unwrap()
            .is_empty()
    );

    // Three families' quotas, two a page: mac2's is on the second page.
    cloud.proxy.set_dedicated_host_quota("mac1", 1.0);
    cloud.proxy.set_dedicated_host_quota("mac2", 3.0);
    cloud.proxy.set_dedicated_host_quota("mac-m4", 2.0);
    let quota = hosts::quota(&cloud.aws, &cloud.region, MAC2).await.unwrap();
    assert_eq!(quota.quota_name, "Running Dedicated mac2 Hosts");
    assert_eq!(
        quota.quota_code.as_deref(),
        Some(dedicated_host_quota_code("mac2"))
    );
    assert_eq!(quota.value, Some(3.0));
    assert_eq!(quota.allocated, 1);
    let quota = hosts::quota(&cloud.aws, &cloud.region, "mac-m4.metal")
        .await
        .unwrap();
    assert_eq!((quota.value, quota.allocated), (Some(2.0), 0));

    let released = hosts::release(&cloud.ec2, &host_id, false).await.unwrap();
    assert_eq!(
        released,
        ReleaseOutcome::Released {
            host_id: host_id.clone()
        }
    );
    assert!(
        hosts::list(&cloud.ec2, None, false)
            .await
            .unwrap()
            .is_empty()
    );
    let all = hosts::list(&cloud.ec2, None, true).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|h| (h.id.as_str(), h.state.as_str()))
            .collect::<Vec<_>>(),
        [(host_id.as_str(), "released")]
    );
    assert_eq!(
        hosts::release(&cloud.ec2, &host_id, false).await.unwrap(),
        ReleaseOutcome::AlreadyReleased {
            host_id: host_id.clone()
        }
    );
    cloud.take_calls();
}

#[tokio::test]
async fn a_dry_run_says_why_an_allocation_would_fail() {
    loopback_only!();
    let cloud = Cloud::start().await;
    let none = BTreeMap::new();
    // EC2 answers a capacity shortage with HTTP 500, which the SDK tries three times.
    let cases = [
        (Ec2Error::UnauthorizedOperation, 1, "Auth"),
        (Ec2Error::InsufficientHostCapacity, 3, "Capacity"),
        (Ec2Error::HostLimitExceeded, 1, "Quota"),
    ];
    for (error, tries, kind) in cases {
        cloud.proxy.inject(
            Fault::refuse("AllocateHosts", error)
                .when("DryRun", "true")
                .times(tries),
        );
        let err = hosts::allocate(&cloud.ec2, "eu-west-1b", MAC2, true, &none)
            .await
            .unwrap_err();
        let got = match err {
            ProviderError::Auth(_) => "Auth",
            ProviderError::Capacity(_) => "Capacity",
            ProviderError::Quota(_) => "Quota",
            _ => "other",
        };
        assert_eq!(got, kind, "{err}");
        assert!(err.to_string().contains(error.code()), "{err}");
    }
    assert!(cloud.proxy.faults_spent());
    assert!(cloud.hosts().await.is_empty());
    cloud.take_calls();
}

#[tokio::test]
async fn bad_input_is_refused_before_any_call() {
    loopback_only!();
    let cloud = Cloud::start().await;
    let none = BTreeMap::new();
    let refused = [
        hosts::offerings(&cloud.ec2, "c7a.8xlarge")
            .await
            .unwrap_err(),
        hosts::allocate(&cloud.ec2, "eu-west-1b", "m7i.metal", true, &none)
            .await
            .unwrap_err(),
        hosts::allocate(&cloud.ec2, "eu-west-1", MAC2, true, &none)
            .await
            .unwrap_err(),
        hosts::list(&cloud.ec2, Some("mac2.large"), false)
            .await
            .unwrap_err(),
        hosts::quota(&cloud.aws, &cloud.region, "t3.small")
            .await
            .unwrap_err(),
        hosts::release(&cloud.ec2, "i-0123456789abcdef0", false)
            .await
            .unwrap_err(),
        hosts::release(&cloud.ec2, "h-XYZ", true).await.unwrap_err(),
    ];
    for err in &refused {
        assert!(matches!(err, ProviderError::InvalidSpec(_)), "{err}");
    }
    assert!(refused[0].to_string().contains("mac*.metal"));
    assert!(cloud.proxy.calls().is_empty(), "{:?}", cloud.proxy.calls());
}

#[tokio::test]
async fn a_host_crabbox_did_not_allocate_is_released_only_when_allowed() {
    loopback_only!();
    let cloud = Cloud::start().await;
    let foreign = cloud.foreign_host("eu-west-1c").await;

    let err = hosts::release(&cloud.ec2, &foreign, false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("did not allocate"), "{err}");
    assert_eq!(cloud.hosts().await[&foreign], "available");
    assert_eq!(cloud.take_calls(), strings(&["DescribeHosts"]));

    let released = hosts::release(&cloud.ec2, &foreign, true).await.unwrap();
    assert_eq!(
        released,
        ReleaseOutcome::Released {
            host_id: foreign.clone()
        }
    );
    assert_eq!(cloud.hosts().await[&foreign], "released");

    // A well-formed id of no host.
    let err = hosts::release(&cloud.ec2, "h-0123456789abcdef0", true)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no AWS Dedicated Host"), "{err}");
    assert_eq!(
        cloud.take_calls(),
        strings(&["DescribeHosts", "ReleaseHosts", "DescribeHosts"])
    );
}
