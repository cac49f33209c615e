//! EC2 Mac leases (spec/providers.md §2.2, "Targets"): a Mac instance runs only on a Dedicated
//! Host of its type that the account allocated beforehand (`crabbox admin hosts allocate`),
//! on demand, from one of Amazon's macOS images, logged in as the image's `ec2-user` on port
//! 22. This module picks the host and the image for one plan and says how a Mac is reached.

use crabbox_providers::ProviderError;
use crabbox_providers::cloud::macos::{MACOS_USER, MACOS_WORK_ROOT};
use crabbox_providers::cloud::{Category, Refusal};

use crate::hosts::Host;
use crate::settings::AwsSettings;

/// The user, ports and work root a Mac is reached at: the image's (`ec2-user`, 22,
/// `/Users/ec2-user/crabbox`) unless the configuration names its own user or work root.
pub fn login(settings: &AwsSettings) -> (String, Vec<u16>, String) {
    let user = if settings.ssh_user == crabbox_core::config::DEFAULT_SSH_USER {
        MACOS_USER.to_owned()
    } else {
        settings.ssh_user.clone()
    };
    let work_root = if settings.work_root == crabbox_core::config::DEFAULT_WORK_ROOT {
        MACOS_WORK_ROOT.to_owned()
    } else {
        settings.work_root.clone()
    };
    (user, vec![22], work_root)
}

/// The name pattern and architecture of Amazon's macOS image for a Mac type: macOS 14 on the
/// Intel `mac1`, macOS 15 on the M4 families, macOS 14 on the other Apple silicon ones.
pub fn image_pattern(server_type: &str) -> (&'static str, &'static str) {
    if server_type.starts_with("mac1.") {
        ("amzn-ec2-macos-14.*", "x86_64_mac")
    } else if server_type.starts_with("mac-m") {
        ("amzn-ec2-macos-15.*-arm64", "arm64_mac")
    } else {
        ("amzn-ec2-macos-14.*-arm64", "arm64_mac")
    }
}

/// The newest of Amazon's macOS images for the type in this region.
pub async fn image(
    ec2: &aws_sdk_ec2::Client,
    region: &str,
    server_type: &str,
) -> Result<String, ProviderError> {
    let (name, arch) = image_pattern(server_type);
    let found = crate::image::newest_amazon(ec2, name, arch).await?;
    found.ok_or_else(|| {
        ProviderError::InvalidSpec(format!(
            "no AWS AMI found: no Amazon macOS image {name} ({arch}) for {server_type} is \
                 visible in {region}; set CRABBOX_AWS_AMI (or aws.ami) to an image id"
        ))
    })
}

/// The host a plan of `server_type` launches on: the pinned one (`aws.macHostId`), which must
/// take that type and be free, else the first free host of that type in the region, Crabbox's
/// own first. None is a capacity refusal naming how to get one, so the next Mac type (or
/// region) is tried.
pub fn host_for(
    hosts: &[Host],
    pinned: Option<&str>,
    server_type: &str,
    region: &str,
) -> Result<String, Refusal> {
    if let Some(pinned) = pinned {
        let Some(host) = hosts.iter().find(|h| h.id == pinned) else {
            return Err(Refusal::new(
                Category::Capacity,
                "InvalidHostID.NotFound",
                ProviderError::Capacity(format!(
                    "the Dedicated Host {pinned} is not in {region} (see `crabbox admin hosts \
                     list --provider aws --target macos --region {region}`)"
                )),
            ));
        };
        if !takes(host, server_type) {
            return Err(Refusal::new(
                Category::Unsupported,
                "HostTypeMismatch",
                ProviderError::Capacity(format!(
                    "the Dedicated Host {pinned} takes {}, not {server_type}",
                    host.instance_type
                )),
            ));
        }
        if !is_free(host) {
            return Err(busy(&format!(
                "the Dedicated Host {pinned} is {} with {} instance(s); a Mac host takes one \
                 instance, and scrubs after each (up to a few hours)",
                host.state,
                host.instances.len()
            )));
        }
        return Ok(host.id.clone());
    }
    let mut free: Vec<&Host> = hosts
        .iter()
        .filter(|h| takes(h, server_type) && is_free(h))
        .collect();
    free.sort_by_key(|h| !h.owned_by_crabbox());
    free.first().map(|h| h.id.clone()).ok_or_else(|| {
        busy(&format!(
            "no available EC2 Mac Dedicated Host for {server_type} in {region}; allocate one \
             with `crabbox admin hosts allocate --provider aws --target macos --region {region} \
             --type {server_type} --yes`, or wait for a host to finish scrubbing"
        ))
    })
}

fn busy(message: &str) -> Refusal {
    Refusal::new(
        Category::Capacity,
        "NoAvailableHost",
        ProviderError::Capacity(message.to_owned()),
    )
}

/// A host of the type itself, or of its family (a host allocated for `mac2` takes any size).
fn takes(host: &Host, server_type: &str) -> bool {
    host.instance_type == server_type
        || server_type
            .strip_suffix(".metal")
            .is_some_and(|family| host.instance_type == family)
}

fn is_free(host: &Host) -> bool {
    host.state == "available" && host.instances.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(id: &str, instance_type: &str, state: &str, busy: bool, ours: bool) -> Host {
        let mut tags = std::collections::BTreeMap::new();
        if ours {
            tags.insert("crabbox".into(), "true".into());
            tags.insert("created_by".into(), "crabbox".into());
        }
        Host {
            id: id.into(),
            zone: "eu-west-1a".into(),
            instance_type: instance_type.into(),
            state: state.into(),
            instances: if busy { vec!["i-1".into()] } else { vec![] },
            allocated_at: None,
            tags,
        }
    }

    #[test]
    fn a_free_host_of_the_type_is_chosen_crabboxs_own_first() {
        let hosts = [
            host("h-01", "mac2.metal", "available", false, false),
            host("h-02", "mac2.metal", "available", false, true),
            host("h-03", "mac2.metal", "available", true, true),
            host("h-04", "mac-m4.metal", "available", false, true),
        ];
        assert_eq!(
            host_for(&hosts, None, "mac2.metal", "eu-west-1").unwrap(),
            "h-02"
        );
        assert_eq!(
            host_for(&hosts, None, "mac-m4.metal", "eu-west-1").unwrap(),
            "h-04"
        );
        let none = host_for(&hosts, None, "mac2-m2.metal", "eu-west-1").unwrap_err();
        assert_eq!(none.category, Category::Capacity);
        assert!(none.error.to_string().contains("admin hosts allocate"));
    }

    #[test]
    fn a_pinned_host_must_exist_take_the_type_and_be_free() {
        let hosts = [
            host("h-01", "mac2.metal", "available", false, false),
            host("h-02", "mac2.metal", "pending", false, true),
            host("h-03", "mac2", "available", false, true),
        ];
        assert_eq!(
            host_for(&hosts, Some("h-01"), "mac2.metal", "r").unwrap(),
            "h-01",
            "a host an operator allocated may be named"
        );
        assert_eq!(
            host_for(&hosts, Some("h-03"), "mac2.metal", "r").unwrap(),
            "h-03",
            "a family host takes the type"
        );
        let wrong = host_for(&hosts, Some("h-01"), "mac-m4.metal", "r").unwrap_err();
        assert_eq!(wrong.category, Category::Unsupported);
        let busy = host_for(&hosts, Some("h-02"), "mac2.metal", "r").unwrap_err();
        assert!(busy.error.to_string().contains("pending"));
        let gone = host_for(&hosts, Some("h-09"), "mac2.metal", "r").unwrap_err();
        assert_eq!(gone.code, "InvalidHostID.NotFound");
    }

    #[test]
    fn each_mac_family_boots_its_macos() {
        assert_eq!(image_pattern("mac1.metal").1, "x86_64_mac");
        assert_eq!(
            image_pattern("mac-m4pro.metal").0,
            "amzn-ec2-macos-15.*-arm64"
        );
        assert_eq!(
            image_pattern("mac2-m2.metal").0,
            "amzn-ec2-macos-14.*-arm64"
        );
    }
}
