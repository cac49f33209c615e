//! EC2 Mac Dedicated Hosts (spec/providers.md §2.2; the image bake runbook's "macOS images"):
//! the provider operations behind `crabbox admin hosts offerings|quota|list|allocate|release|
//! policy` and the coordinator's `/v1/admin/hosts` routes. An EC2 Mac instance runs only on a
//! Dedicated Host the account has allocated beforehand and pays for, 24 hours at least; these
//! functions find where a Mac type is offered, read the account's host quota, list, allocate
//! and release hosts, and print the IAM policy they need.
//!
//! A host is Crabbox's when its tags say so (`crabbox=true` and `created_by=crabbox`, put on at
//! allocation). [`release`] refuses any other host unless the caller allows foreign hosts, so a
//! host an operator allocated by hand is never released by mistake.
//!
//! Input is checked before any call: a type that is not a Mac `*.metal` type, a malformed zone
//! or host id is refused without asking AWS.

use std::collections::BTreeMap;

use aws_sdk_ec2::primitives::DateTimeFormat;
use aws_sdk_ec2::types::{
    AutoPlacement, Host as Ec2Host, LocationType, ResourceType, Tag, TagSpecification,
};
use crabbox_providers::ProviderError;
use serde_json::{Value, json};

use crate::client::{Aws, CallError, call};
use crate::network::filter;
use crate::policy::Action;

/// A zone where EC2 offers a Mac type (`DescribeInstanceTypeOfferings`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostOffering {
    pub zone: String,
    pub instance_type: String,
}

/// The zones of `region` (the client's) that offer `instance_type`, in name order.
pub async fn offerings(
    ec2: &aws_sdk_ec2::Client,
    instance_type: &str,
) -> Result<Vec<HostOffering>, ProviderError> {
    mac_family(instance_type)?;
    let mut found = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let out = call(
            Action::DescribeInstanceTypeOfferings,
            ec2.describe_instance_type_offerings()
                .location_type(LocationType::AvailabilityZone)
                .filters(filter("instance-type", instance_type))
                .set_next_token(token.take())
                .send(),
        )
        .await?;
        found.extend(out.instance_type_offerings().iter().filter_map(|o| {
            Some(HostOffering {
                zone: o.location()?.to_owned(),
                instance_type: o.instance_type()?.as_str().to_owned(),
            })
        }));
        token = out
            .next_token()
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    found.sort_by(|a, b| a.zone.cmp(&b.zone));
    Ok(found)
}

/// The account's quota of running Dedicated Hosts of one Mac family in a region, and how many
/// it holds now.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HostQuota {
    pub region: String,
    /// `mac2`, `mac2-m2pro`, `mac-m4`…
    pub family: String,
    /// `Running Dedicated <family> Hosts`, as Service Quotas names it.
    pub quota_name: String,
    /// Service Quotas' code of that quota, when it was found.
    pub quota_code: Option<String>,
    /// The applied value; `None` when Service Quotas does not list the quota.
    pub value: Option<f64>,
    /// Hosts of the family allocated now (any state but released), Crabbox's or not.
    pub allocated: usize,
}

/// The "Running Dedicated <family> Hosts" quota of `instance_type`'s family in `region`, and
/// the family's hosts there now.
///
/// The quota is found by its name in `ListServiceQuotas` for `ec2`, not by a code: AWS gives
/// each Mac family its own code and adds families over time, and the codes published outside
/// AWS's own console disagree for some of them, so a table of codes would go stale silently
/// while the name is the one AWS shows and documents.
pub async fn quota(
    aws: &Aws,
    region: &str,
    instance_type: &str,
) -> Result<HostQuota, ProviderError> {
    let family = mac_family(instance_type)?.to_owned();
    let quota_name = format!("Running Dedicated {family} Hosts");
    let quotas = aws.quotas(region);
    let mut found = None;
    let mut token: Option<String> = None;
    loop {
        let page = call(
            Action::ListServiceQuotas,
            quotas
                .list_service_quotas()
                .service_code("ec2")
                .set_next_token(token.take())
                .send(),
        )
        .await;
        let out = match page {
            Ok(out) => out,
            // A partition or emulator without EC2 quotas: the value is unknown, not an error.
            Err(e) if e.code == "NoSuchResourceException" => break,
            Err(e) => return Err(e.error),
        };
        found = out
            .quotas()
            .iter()
            .find(|q| {
                q.quota_name()
                    .is_some_and(|n| n.eq_ignore_ascii_case(&quota_name))
            })
            .cloned();
        token = out
            .next_token()
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        if found.is_some() || token.is_none() {
            break;
        }
    }
    let hosts = list(&aws.ec2(region), None, false).await?;
    let allocated = hosts
        .iter()
        .filter(|h| h.family() == Some(family.as_str()))
        .count();
    Ok(HostQuota {
        region: region.to_owned(),
        quota_code: found
            .as_ref()
            .and_then(|q| q.quota_code())
            .map(str::to_owned),
        value: found
            .as_ref()
            .and_then(aws_sdk_servicequotas::types::ServiceQuota::value),
        family,
        quota_name,
        allocated,
    })
}

/// A Dedicated Host as EC2 describes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Host {
    /// `h-…`.
    pub id: String,
    pub zone: String,
    /// The type its instances take (`mac2.metal`); a host allocated for a whole family says
    /// the family.
    pub instance_type: String,
    /// `available`, `pending`, `under-assessment`, `permanent-failure`, `released`,
    /// `released-permanent-failure`.
    pub state: String,
    /// The instances on it.
    pub instances: Vec<String>,
    /// RFC 3339, as EC2 reports it.
    pub allocated_at: Option<String>,
    pub tags: BTreeMap<String, String>,
}

impl Host {
    fn of(host: &Ec2Host) -> Self {
        let properties = host.host_properties();
        let instance_type = properties
            .and_then(|p| p.instance_type().or(p.instance_family()))
            .unwrap_or_default();
        Self {
            id: host.host_id().unwrap_or_default().to_owned(),
            zone: host.availability_zone().unwrap_or_default().to_owned(),
            instance_type: instance_type.to_owned(),
            state: host
                .state()
                .map_or_else(String::new, |s| s.as_str().to_owned()),
            instances: host
                .instances()
                .iter()
                .filter_map(|i| i.instance_id())
                .map(str::to_owned)
                .collect(),
            allocated_at: host
                .allocation_time()
                .and_then(|t| t.fmt(DateTimeFormat::DateTime).ok()),
            tags: host
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned())))
                .collect(),
        }
    }

    /// Tagged `crabbox=true` and `created_by=crabbox`: allocated by Crabbox.
    pub fn owned_by_crabbox(&self) -> bool {
        self.tags.get("crabbox").map(String::as_str) == Some("true")
            && self.tags.get("created_by").map(String::as_str) == Some("crabbox")
    }

    /// Released (or released after a failure): no longer the account's, though EC2 still
    /// describes it for a while.
    pub fn is_released(&self) -> bool {
        self.state.starts_with("released")
    }

    /// The Mac family of its type (`mac2` of `mac2.metal`); `None` for other hosts.
    pub fn family(&self) -> Option<&str> {
        let family = self
            .instance_type
            .strip_suffix(".metal")
            .unwrap_or(&self.instance_type);
        is_mac_family(family).then_some(family)
    }
}

/// The region's Dedicated Hosts (every type when `instance_type` is `None`, since any host is
/// paid for), in id order. Released hosts are left out unless `include_released`.
pub async fn list(
    ec2: &aws_sdk_ec2::Client,
    instance_type: Option<&str>,
    include_released: bool,
) -> Result<Vec<Host>, ProviderError> {
    if let Some(instance_type) = instance_type {
        mac_family(instance_type)?;
    }
    let mut hosts = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut request = ec2.describe_hosts().set_next_token(token.take());
        if let Some(instance_type) = instance_type {
            request = request.filter(filter("instance-type", instance_type));
        }
        let out = call(Action::DescribeHosts, request.send()).await?;
        hosts.extend(out.hosts().iter().map(Host::of));
        token = out
            .next_token()
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    hosts.retain(|h| include_released || !h.is_released());
    hosts.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(hosts)
}

/// What [`allocate`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum AllocateOutcome {
    /// A dry run EC2 accepted (`DryRunOperation`): the real allocation would be tried.
    WouldSucceed { zone: String, instance_type: String },
    /// A new host.
    Allocated {
        host_id: String,
        zone: String,
        instance_type: String,
    },
}

/// Allocates one Dedicated Host of `instance_type` in `zone` (auto-placement off, so only
/// launches that name it land on it), tagged `crabbox=true`, `created_by=crabbox` and `tags`.
///
/// With `dry_run` the request carries EC2's `DryRun=true` and nothing is allocated: EC2 answers
/// `DryRunOperation` when the call would have succeeded and the reason it would not otherwise
/// (`UnauthorizedOperation`, `InsufficientHostCapacity`, `HostLimitExceeded`…), which comes
/// back as the error, EC2's code in its message.
pub async fn allocate(
    ec2: &aws_sdk_ec2::Client,
    zone: &str,
    instance_type: &str,
    dry_run: bool,
    tags: &BTreeMap<String, String>,
) -> Result<AllocateOutcome, ProviderError> {
    mac_family(instance_type)?;
    check_zone(zone)?;
    let spec = TagSpecification::builder()
        .resource_type(ResourceType::DedicatedHost)
        .set_tags(Some(host_tags(tags)?))
        .build();
    let request = ec2
        .allocate_hosts()
        .availability_zone(zone)
        .instance_type(instance_type)
        .quantity(1)
        .auto_placement(AutoPlacement::Off)
        .tag_specifications(spec);
    let sent = if dry_run {
        // EC2's API model (and so the SDK) has no `DryRun` member for `AllocateHosts`, but
        // EC2 evaluates the query parameter, as it does for its other mutating actions, and
        // the runbook's dry run relies on it; it is added to the signed form here.
        let request = request.customize().mutate_request(|req| {
            let Some(form) = req.body().bytes() else {
                return;
            };
            if form.windows(7).any(|w| w == b"DryRun=") {
                return;
            }
            let mut form = form.to_vec();
            form.extend_from_slice(b"&DryRun=true");
            let length = form.len().to_string();
            *req.body_mut() = form.into();
            req.headers_mut().insert("content-length", length);
        });
        call(Action::AllocateHosts, request.send()).await
    } else {
        call(Action::AllocateHosts, request.send()).await
    };
    let host_ids: Vec<String> = match sent {
        Ok(out) => out.host_ids().to_vec(),
        Err(e) if dry_run && e.code == "DryRunOperation" => {
            return Ok(AllocateOutcome::WouldSucceed {
                zone: zone.to_owned(),
                instance_type: instance_type.to_owned(),
            });
        }
        Err(e) => return Err(allocate_error(e)),
    };
    let Some(host_id) = host_ids.first() else {
        return Err(ProviderError::Transient(format!(
            "AWS AllocateHosts answered without a host id for {instance_type} in {zone}"
        )));
    };
    if dry_run {
        // An endpoint that ignored `DryRun` allocated a real, paid host: say so loudly rather
        // than report a dry run.
        return Err(ProviderError::InvalidSpec(format!(
            "AWS AllocateHosts ignored DryRun and allocated {}; release it with `crabbox admin \
             hosts release {host_id}` unless it is wanted",
            host_ids.join(", ")
        )));
    }
    Ok(AllocateOutcome::Allocated {
        host_id: host_id.clone(),
        zone: zone.to_owned(),
        instance_type: instance_type.to_owned(),
    })
}

/// `AllocateHosts`'s refusal in the shared vocabulary. `HostLimitExceeded` (the family's
/// host quota) is a quota, which the shared EC2 table does not know.
fn allocate_error(e: CallError) -> ProviderError {
    if e.code == "HostLimitExceeded" {
        return ProviderError::Quota(format!(
            "AWS AllocateHosts failed ({}): {}",
            e.code, e.message
        ));
    }
    e.error
}

/// The allocation's tags: the caller's, then Crabbox's ownership tags, which win.
fn host_tags(extra: &BTreeMap<String, String>) -> Result<Vec<Tag>, ProviderError> {
    let mut tags = BTreeMap::new();
    for (key, value) in extra {
        if key.is_empty() || key.len() > 128 || key.to_ascii_lowercase().starts_with("aws:") {
            return Err(ProviderError::InvalidSpec(format!(
                "invalid tag key {key:?}: EC2 takes 1 to 128 characters, not starting with `aws:`"
            )));
        }
        if value.len() > 256 {
            return Err(ProviderError::InvalidSpec(format!(
                "the value of tag {key:?} is longer than EC2's 256 characters"
            )));
        }
        tags.insert(key.as_str(), value.as_str());
    }
    tags.insert("crabbox", "true");
    tags.insert("created_by", "crabbox");
    Ok(tags
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect())
}

/// What [`release`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ReleaseOutcome {
    Released {
        host_id: String,
    },
    /// It was released before; nothing was asked of EC2.
    AlreadyReleased {
        host_id: String,
    },
    /// EC2 would not release it (instances on it, the 24-hour minimum of a Mac host…): its
    /// unsuccessful item, code and message.
    Refused {
        host_id: String,
        code: String,
        message: String,
    },
}

/// Releases the Dedicated Host `host_id`. A host Crabbox did not allocate (see
/// [`Host::owned_by_crabbox`]) is refused unless `allow_foreign`.
pub async fn release(
    ec2: &aws_sdk_ec2::Client,
    host_id: &str,
    allow_foreign: bool,
) -> Result<ReleaseOutcome, ProviderError> {
    check_host_id(host_id)?;
    let described = call(
        Action::DescribeHosts,
        ec2.describe_hosts().host_ids(host_id).send(),
    )
    .await;
    let missing = || ProviderError::InvalidSpec(format!("no AWS Dedicated Host {host_id} here"));
    let host = match described {
        Ok(out) => out
            .hosts()
            .iter()
            .map(Host::of)
            .find(|h| h.id == host_id)
            .ok_or_else(missing)?,
        Err(e) if e.is_not_found() => return Err(missing()),
        Err(e) => return Err(e.error),
    };
    if host.is_released() {
        return Ok(ReleaseOutcome::AlreadyReleased { host_id: host.id });
    }
    if !allow_foreign && !host.owned_by_crabbox() {
        return Err(ProviderError::InvalidSpec(format!(
            "refusing to release AWS Dedicated Host {host_id}: it is not tagged crabbox=true and \
             created_by=crabbox, so Crabbox did not allocate it; release it as a foreign host \
             explicitly if that is meant"
        )));
    }
    let out = call(
        Action::ReleaseHosts,
        ec2.release_hosts().host_ids(host_id).send(),
    )
    .await?;
    release_outcome(host_id, out.successful(), out.unsuccessful())
}

/// `ReleaseHosts`'s answer for one host.
fn release_outcome(
    host_id: &str,
    successful: &[String],
    unsuccessful: &[aws_sdk_ec2::types::UnsuccessfulItem],
) -> Result<ReleaseOutcome, ProviderError> {
    if successful.iter().any(|id| id == host_id) {
        return Ok(ReleaseOutcome::Released {
            host_id: host_id.to_owned(),
        });
    }
    let refusal = unsuccessful
        .iter()
        .find(|item| item.resource_id().is_none_or(|id| id == host_id));
    match refusal {
        Some(item) => Ok(ReleaseOutcome::Refused {
            host_id: host_id.to_owned(),
            code: item
                .error()
                .and_then(|e| e.code())
                .unwrap_or("Unknown")
                .to_owned(),
            message: item
                .error()
                .and_then(|e| e.message())
                .unwrap_or_default()
                .to_owned(),
        }),
        None => Err(ProviderError::Transient(format!(
            "AWS ReleaseHosts did not confirm the release of {host_id}"
        ))),
    }
}

/// The IAM policy of the Dedicated Host lifecycle ([`Action::HOSTS`]), with `ec2:CreateTags` on
/// hosts only as part of `AllocateHosts` (tags on create need it). It is printed on its own
/// (`admin hosts policy`) and beside the runners' policy for macOS.
pub fn host_policy() -> Value {
    let actions: Vec<&str> = Action::HOSTS.iter().map(|a| a.iam()).collect();
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "CrabboxMacDedicatedHosts",
                "Effect": "Allow",
                "Action": actions,
                "Resource": "*"
            },
            {
                "Sid": "CrabboxMacDedicatedHostTagsOnAllocate",
                "Effect": "Allow",
                "Action": Action::CreateTags.iam(),
                "Resource": "arn:aws:ec2:*:*:dedicated-host/*",
                "Condition": {"StringEquals": {"ec2:CreateAction": Action::AllocateHosts.operation()}}
            }
        ]
    })
}

/// The Mac family of a Mac `*.metal` type (`mac2-m2pro` of `mac2-m2pro.metal`), or an error
/// saying what Dedicated Hosts here take.
pub fn mac_family(instance_type: &str) -> Result<&str, ProviderError> {
    instance_type
        .strip_suffix(".metal")
        .filter(|family| is_mac_family(family))
        .ok_or_else(|| {
            ProviderError::InvalidSpec(format!(
                "{instance_type:?} is not an EC2 Mac type; Mac Dedicated Hosts take a \
                 mac*.metal type (mac1.metal, mac2.metal, mac2-m2.metal, mac2-m2pro.metal, \
                 mac-m4.metal…)"
            ))
        })
}

/// `mac1`, `mac2`, `mac2-m2pro`, `mac-m4`…: `mac`, then a digit or a dash, in lowercase.
fn is_mac_family(family: &str) -> bool {
    family
        .strip_prefix("mac")
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit() || c == '-'))
        && family
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// `h-` and 8 or 17 lowercase hex digits, as EC2 makes host ids.
fn check_host_id(host_id: &str) -> Result<(), ProviderError> {
    let hex = host_id.strip_prefix("h-").unwrap_or_default();
    if matches!(hex.len(), 8 | 17) && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(ProviderError::InvalidSpec(format!(
            "{host_id:?} is not an EC2 Dedicated Host id (h- and 17 hex digits)"
        )))
    }
}

/// A zone name (`eu-west-1b`, `us-west-2-lax-1a`): lowercase letters, digits and dashes,
/// ending in the zone's letter.
fn check_zone(zone: &str) -> Result<(), ProviderError> {
    let plausible = zone
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && zone.contains('-')
        && zone.ends_with(|c: char| c.is_ascii_lowercase());
    if plausible {
        Ok(())
    } else {
        Err(ProviderError::InvalidSpec(format!(
            "{zone:?} is not an availability zone name (eu-west-1b); see `crabbox admin hosts \
             offerings` for the zones that offer the type"
        )))
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::types::{UnsuccessfulItem, UnsuccessfulItemError};

    use super::*;

    #[test]
    fn mac_types_and_their_families() {
        for (ty, family) in [
            ("mac1.metal", "mac1"),
            ("mac2.metal", "mac2"),
            ("mac2-m2.metal", "mac2-m2"),
            ("mac2-m2pro.metal", "mac2-m2pro"),
            ("mac2-m1ultra.metal", "mac2-m1ultra"),
            ("mac-m4.metal", "mac-m4"),
            ("mac-m4pro.metal", "mac-m4pro"),
        ] {
            assert_eq!(mac_family(ty).unwrap(), family);
        }
        for ty in [
            "m7i.metal",
            "mac2.large",
            "macos.metal",
            "MAC2.metal",
            "mac.metal",
            "",
        ] {
            let err = mac_family(ty).unwrap_err();
            assert!(err.to_string().contains("mac*.metal"), "{ty}: {err}");
        }
    }

    #[test]
    fn host_ids_and_zones() {
        assert!(check_host_id("h-0123456789abcdef0").is_ok());
        assert!(check_host_id("h-0123abcd").is_ok());
        for bad in [
            "h-0123456789ABCDEF0",
            "i-0123456789abcdef0",
            "h-",
            "h-xyz",
            "",
        ] {
            assert!(check_host_id(bad).is_err(), "{bad}");
        }
        assert!(check_zone("eu-west-1b").is_ok());
        assert!(check_zone("us-west-2-lax-1a").is_ok());
        for bad in ["eu-west-1", "EU-WEST-1B", "", "eu west 1b"] {
            assert!(check_zone(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn crabboxs_tags_win_over_the_callers() {
        let extra = BTreeMap::from([
            ("crabbox".to_owned(), "false".to_owned()),
            ("purpose".to_owned(), "macos-bake".to_owned()),
        ]);
        let tags: Vec<(String, String)> = host_tags(&extra)
            .unwrap()
            .iter()
            .map(|t| (t.key().unwrap().to_owned(), t.value().unwrap().to_owned()))
            .collect();
        assert_eq!(
            tags,
            [
                ("crabbox".to_owned(), "true".to_owned()),
                ("created_by".to_owned(), "crabbox".to_owned()),
                ("purpose".to_owned(), "macos-bake".to_owned()),
            ]
        );
        let reserved = BTreeMap::from([("aws:owner".to_owned(), "x".to_owned())]);
        assert!(host_tags(&reserved).is_err());
    }

    #[test]
    fn release_answers() {
        let id = "h-0123456789abcdef0";
        assert_eq!(
            release_outcome(id, &[id.to_owned()], &[]).unwrap(),
            ReleaseOutcome::Released {
                host_id: id.to_owned()
            }
        );
        let occupied = UnsuccessfulItem::builder()
            .resource_id(id)
            .error(
                UnsuccessfulItemError::builder()
                    .code("Client.InvalidHost.Occupied")
                    .message("The host has running instances.")
                    .build(),
            )
            .build();
        assert_eq!(
            release_outcome(id, &[], &[occupied]).unwrap(),
            ReleaseOutcome::Refused {
                host_id: id.to_owned(),
                code: "Client.InvalidHost.Occupied".to_owned(),
                message: "The host has running instances.".to_owned(),
            }
        );
        assert!(matches!(
            release_outcome(id, &[], &[]),
            Err(ProviderError::Transient(_))
        ));
    }

    #[test]
    fn host_limit_is_a_quota_and_keeps_the_code() {
        let err = allocate_error(CallError {
            code: "HostLimitExceeded".into(),
            message: "Quota exceeded for mac2 hosts.".into(),
            error: ProviderError::InvalidSpec(String::new()),
        });
        assert!(matches!(err, ProviderError::Quota(_)));
        assert!(err.to_string().contains("(HostLimitExceeded)"), "{err}");
    }

    #[test]
    fn the_host_policy_is_the_host_actions_and_tags_on_allocate() {
        let policy = host_policy();
        let actions: Vec<&str> = policy["Statement"][0]["Action"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(
            actions,
            [
                "ec2:DescribeHosts",
                "ec2:DescribeInstanceTypeOfferings",
                "ec2:AllocateHosts",
                "ec2:ReleaseHosts",
                "servicequotas:GetServiceQuota",
                "servicequotas:ListServiceQuotas",
            ]
        );
        assert_eq!(policy["Statement"][1]["Action"], "ec2:CreateTags");
        assert_eq!(
            policy["Statement"][1]["Condition"]["StringEquals"]["ec2:CreateAction"],
            "AllocateHosts"
        );
    }
}
