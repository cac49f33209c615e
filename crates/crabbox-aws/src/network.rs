//! Where runners sit on the network: the VPC (the configured subnet's, else the region's
//! default), the `crabbox-runners` security group, and its SSH ingress, which allows the SSH
//! ports only from the configured CIDRs (`aws.sshCIDRs` / `CRABBOX_AWS_SSH_CIDRS`) or, when none
//! are configured, from this machine's public address.

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_ec2::types::{
    Filter, IpPermission, IpRange, Ipv6Range, ResourceType, Tag, TagSpecification,
};
use crabbox_providers::ProviderError;

use crate::client::call;
use crate::policy::Action;

pub const GROUP_NAME: &str = "crabbox-runners";
const GROUP_DESCRIPTION: &str = "Crabbox ephemeral test runners";
/// The description of every ingress rule Crabbox owns; only these are ever revoked.
const RULE_DESCRIPTION: &str = "Crabbox SSH";
/// Where this machine's public address is looked up when no CIDR is configured.
const CHECKIP_URL: &str = "https://checkip.amazonaws.com";

/// One allowed source of SSH traffic on one port.
type Rule = (u16, String);

/// The security group runners get: the configured one as it is, else `crabbox-runners` in the
/// VPC, created when missing, with its SSH rules brought to `cidrs` × `ports`.
pub async fn security_group(
    ec2: &aws_sdk_ec2::Client,
    configured: Option<&str>,
    subnet: Option<&str>,
    cidrs: &[String],
    ports: &[u16],
) -> Result<String, ProviderError> {
    if let Some(id) = configured {
        return Ok(id.to_owned());
    }
    let vpc = vpc_id(ec2, subnet).await?;
    let found = call(
        Action::DescribeSecurityGroups,
        ec2.describe_security_groups()
            .filters(filter("group-name", GROUP_NAME))
            .filters(filter("vpc-id", &vpc))
            .send(),
    )
    .await?;
    let (group_id, present) = match found.security_groups().first() {
        Some(group) => (
            group.group_id().unwrap_or_default().to_owned(),
            owned_rules(group.ip_permissions()),
        ),
        None => (create_group(ec2, &vpc).await?, BTreeSet::new()),
    };
    let wanted: BTreeSet<Rule> = ports
        .iter()
        .flat_map(|port| cidrs.iter().map(move |cidr| (*port, cidr.clone())))
        .collect();
    let stale: Vec<Rule> = present.difference(&wanted).cloned().collect();
    let missing: Vec<Rule> = wanted.difference(&present).cloned().collect();
    if !stale.is_empty() {
        change_rules(ec2, &group_id, &stale, false).await?;
    }
    if !missing.is_empty() {
        change_rules(ec2, &group_id, &missing, true).await?;
    }
    Ok(group_id)
}

/// The CIDRs SSH is allowed from: the configured ones, else this machine's public IPv4
/// address as a /32, looked up with a short timeout.
pub async fn ssh_cidrs(configured: &[String]) -> Result<Vec<String>, ProviderError> {
    if !configured.is_empty() {
        return Ok(configured.to_vec());
    }
    let looked_up = async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .no_proxy()
            .build()
            .map_err(|e| e.to_string())?;
        let text = client
            .get(CHECKIP_URL)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        text.trim()
            .parse::<std::net::Ipv4Addr>()
            .map(|ip| format!("{ip}/32"))
            .map_err(|_| format!("it answered {:?}", text.trim()))
    };
    match looked_up.await {
        Ok(cidr) => Ok(vec![cidr]),
        Err(why) => Err(ProviderError::InvalidSpec(format!(
            "could not find this machine's public address to allow SSH from ({CHECKIP_URL}: \
             {why}); set CRABBOX_AWS_SSH_CIDRS (or aws.sshCIDRs) to the CIDRs runners may be \
             reached from"
        ))),
    }
}

async fn vpc_id(ec2: &aws_sdk_ec2::Client, subnet: Option<&str>) -> Result<String, ProviderError> {
    if let Some(subnet) = subnet {
        let found = call(
            Action::DescribeSubnets,
            ec2.describe_subnets().subnet_ids(subnet).send(),
        )
        .await?;
        return found
            .subnets()
            .first()
            .and_then(|s| s.vpc_id())
            .map(str::to_owned)
            .ok_or_else(|| {
                ProviderError::InvalidSpec(format!("AWS subnet {subnet} (aws.subnetId) not found"))
            });
    }
    let found = call(
        Action::DescribeVpcs,
        ec2.describe_vpcs()
            .filters(filter("is-default", "true"))
            .send(),
    )
    .await?;
    found
        .vpcs()
        .first()
        .and_then(|v| v.vpc_id())
        .map(str::to_owned)
        .ok_or_else(|| {
            ProviderError::InvalidSpec(
                "this AWS region has no default VPC; set CRABBOX_AWS_SUBNET_ID and \
                 CRABBOX_AWS_SECURITY_GROUP_ID (aws.subnetId, aws.securityGroupId)"
                    .into(),
            )
        })
}

async fn create_group(ec2: &aws_sdk_ec2::Client, vpc: &str) -> Result<String, ProviderError> {
    let tags = TagSpecification::builder()
        .resource_type(ResourceType::SecurityGroup)
        .tags(Tag::builder().key("Name").value(GROUP_NAME).build())
        .tags(Tag::builder().key("crabbox").value("true").build())
        .tags(Tag::builder().key("created_by").value("crabbox").build())
        .build();
    let created = call(
        Action::CreateSecurityGroup,
        ec2.create_security_group()
            .group_name(GROUP_NAME)
            .description(GROUP_DESCRIPTION)
            .vpc_id(vpc)
            .tag_specifications(tags)
            .send(),
    )
    .await;
    match created {
        Ok(out) => Ok(out.group_id().unwrap_or_default().to_owned()),
        // Another lease created it between our look and our create.
        Err(e) if e.code == "InvalidGroup.Duplicate" => {
            let found = call(
                Action::DescribeSecurityGroups,
                ec2.describe_security_groups()
                    .filters(filter("group-name", GROUP_NAME))
                    .filters(filter("vpc-id", vpc))
                    .send(),
            )
            .await?;
            found
                .security_groups()
                .first()
                .and_then(|g| g.group_id())
                .map(str::to_owned)
                .ok_or(e.error)
        }
        Err(e) => Err(e.error),
    }
}

/// The single-port TCP rules described as Crabbox's.
fn owned_rules(permissions: &[IpPermission]) -> BTreeSet<Rule> {
    let mut rules = BTreeSet::new();
    for p in permissions {
        let port = match (p.ip_protocol(), p.from_port(), p.to_port()) {
            (Some("tcp"), Some(from), Some(to)) if from == to => u16::try_from(from).ok(),
            _ => None,
        };
        let Some(port) = port else { continue };
        let ours = |d: Option<&str>| d == Some(RULE_DESCRIPTION);
        for r in p.ip_ranges().iter().filter(|r| ours(r.description())) {
            rules.extend(r.cidr_ip().map(|c| (port, c.to_owned())));
        }
        for r in p.ipv6_ranges().iter().filter(|r| ours(r.description())) {
            rules.extend(r.cidr_ipv6().map(|c| (port, c.to_owned())));
        }
    }
    rules
}

fn permissions(rules: &[Rule]) -> Vec<IpPermission> {
    rules
        .iter()
        .map(|(port, cidr)| {
            let p = IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(i32::from(*port))
                .to_port(i32::from(*port));
            if cidr.contains(':') {
                p.ipv6_ranges(
                    Ipv6Range::builder()
                        .cidr_ipv6(cidr)
                        .description(RULE_DESCRIPTION)
                        .build(),
                )
            } else {
                p.ip_ranges(
                    IpRange::builder()
                        .cidr_ip(cidr)
                        .description(RULE_DESCRIPTION)
                        .build(),
                )
            }
            .build()
        })
        .collect()
}

/// Adds or removes ingress rules. Adding one that exists, or removing one that is gone, is
/// not an error.
async fn change_rules(
    ec2: &aws_sdk_ec2::Client,
    group: &str,
    rules: &[Rule],
    add: bool,
) -> Result<(), ProviderError> {
    let permissions = Some(permissions(rules));
    let sent = if add {
        call(
            Action::AuthorizeSecurityGroupIngress,
            ec2.authorize_security_group_ingress()
                .group_id(group)
                .set_ip_permissions(permissions)
                .send(),
        )
        .await
        .map(drop)
    } else {
        call(
            Action::RevokeSecurityGroupIngress,
            ec2.revoke_security_group_ingress()
                .group_id(group)
                .set_ip_permissions(permissions)
                .send(),
        )
        .await
        .map(drop)
    };
    match sent {
        Ok(()) => Ok(()),
        Err(e) if add && e.code == "InvalidPermission.Duplicate" => Ok(()),
        Err(e) if !add && (e.is_not_found() || e.code == "InvalidPermission.NotFound") => Ok(()),
        Err(e) => Err(e.error),
    }
}

pub fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}
