//! Instances: the launch of one plan, the wait for its address, and the calls on an
//! instance that exists (look, terminate, console output, list by tag).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, HttpTokensState, IamInstanceProfileSpecification, Instance,
    InstanceInterruptionBehavior, InstanceMarketOptionsRequest, InstanceMetadataEndpointState,
    InstanceMetadataOptionsRequest, InstanceNetworkInterfaceSpecification, InstanceStateName,
    InstanceType, MarketType, Placement, ResourceType, SpotInstanceType, SpotMarketOptions, Tag,
    TagSpecification, Tenancy, VolumeType,
};
use base64::Engine as _;
use crabbox_core::machine::Market;
use crabbox_core::slug::fnv1a32;
use crabbox_providers::ProviderError;
use crabbox_providers::cloud::Refusal;
use crabbox_providers::cloud::TryPlan;
use crabbox_providers::cloud::aws::errors::classify_launch;

use crate::client::{CallError, call};
use crate::network::filter;
use crate::policy::Action;

/// Everything of a launch that does not change from one plan to the next.
#[derive(Debug, Clone)]
pub struct LaunchTemplate {
    pub lease_id: String,
    pub image_id: String,
    pub key_name: String,
    pub security_group: String,
    pub subnet: Option<String>,
    pub instance_profile: Option<String>,
    pub root_gb: u32,
    /// The Dedicated Host to launch on (an EC2 Mac).
    pub host: Option<String>,
    pub user_data: String,
    /// The canonical labels; `Name`, `server_type`, `market` and `aws_region` are added per plan.
    pub labels: BTreeMap<String, String>,
    pub name: String,
}

/// A launched instance, as `RunInstances` or a later look described it.
#[derive(Debug, Clone)]
pub struct Launched {
    pub instance_id: String,
    pub public_ip: Option<String>,
    pub private_ip: Option<String>,
    pub state: String,
    pub labels: BTreeMap<String, String>,
}

impl Launched {
    fn of(instance: &Instance) -> Self {
        Self {
            instance_id: instance.instance_id().unwrap_or_default().to_owned(),
            public_ip: instance.public_ip_address().map(str::to_owned),
            private_ip: instance.private_ip_address().map(str::to_owned),
            state: instance
                .state()
                .and_then(|s| s.name())
                .map_or_else(String::new, |n| n.as_str().to_owned()),
            labels: instance
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned())))
                .collect(),
        }
    }

    /// Whether the instance is gone or going.
    pub fn ended(&self) -> bool {
        matches!(self.state.as_str(), "shutting-down" | "terminated")
    }
}

/// `<lease>-<fnv1a32(type/market/region)>`: retries of one plan share the token, so EC2 never
/// launches twice for them; another plan gets its own.
pub fn client_token(lease_id: &str, plan: &TryPlan) -> String {
    let key = format!("{}/{}/{}", plan.server_type, plan.market, plan.region);
    format!("{lease_id}-{:08x}", fnv1a32(key.as_bytes()))
}

/// One `RunInstances` for `plan`, refused in the fallback driver's terms.
pub async fn launch(
    ec2: &aws_sdk_ec2::Client,
    template: &LaunchTemplate,
    plan: &TryPlan,
    zone: Option<&str>,
) -> Result<Launched, Refusal> {
    let mut labels = template.labels.clone();
    labels.insert("Name".into(), template.name.clone());
    labels.insert("server_type".into(), plan.server_type.clone());
    labels.insert("market".into(), plan.market.as_str().into());
    labels.insert("aws_region".into(), plan.region.clone());
    let tags: Vec<Tag> = labels
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    let tagged = |kind: ResourceType| {
        TagSpecification::builder()
            .resource_type(kind)
            .set_tags(Some(tags.clone()))
            .build()
    };
    let root = BlockDeviceMapping::builder()
        .device_name("/dev/sda1")
        .ebs(
            EbsBlockDevice::builder()
                .volume_type(VolumeType::Gp3)
                .encrypted(true)
                .delete_on_termination(true)
                .volume_size(i32::try_from(template.root_gb).unwrap_or(i32::MAX))
                .build(),
        )
        .build();
    let mut request = ec2
        .run_instances()
        .image_id(&template.image_id)
        .instance_type(InstanceType::from(plan.server_type.as_str()))
        .key_name(&template.key_name)
        .min_count(1)
        .max_count(1)
        .client_token(client_token(&template.lease_id, plan))
        .user_data(base64::engine::general_purpose::STANDARD.encode(&template.user_data))
        .block_device_mappings(root)
        .metadata_options(
            InstanceMetadataOptionsRequest::builder()
                .http_tokens(HttpTokensState::Required)
                .http_endpoint(InstanceMetadataEndpointState::Enabled)
                .build(),
        )
        .tag_specifications(tagged(ResourceType::Instance))
        .tag_specifications(tagged(ResourceType::Volume));
    // In a configured subnet the interface carries the group and asks for a public address;
    // otherwise the default VPC's subnet of the zone, if one is preferred.
    if let Some(subnet) = &template.subnet {
        request = request.network_interfaces(
            InstanceNetworkInterfaceSpecification::builder()
                .device_index(0)
                .subnet_id(subnet)
                .groups(&template.security_group)
                .associate_public_ip_address(true)
                .delete_on_termination(true)
                .build(),
        );
    } else {
        request = request.security_group_ids(&template.security_group);
        if let Some(zone) = zone {
            request = request.placement(Placement::builder().availability_zone(zone).build());
        }
    }
    // A Mac launches on its Dedicated Host, which fixes the zone.
    if let Some(host) = &template.host {
        request = request.placement(
            Placement::builder()
                .host_id(host)
                .tenancy(Tenancy::Host)
                .build(),
        );
    }
    if let Some(profile) = &template.instance_profile {
        request = request.iam_instance_profile(
            IamInstanceProfileSpecification::builder()
                .name(profile)
                .build(),
        );
    }
    if plan.market == Market::Spot {
        request = request
            .instance_market_options(
                InstanceMarketOptionsRequest::builder()
                    .market_type(MarketType::Spot)
                    .spot_options(
                        SpotMarketOptions::builder()
                            .spot_instance_type(SpotInstanceType::OneTime)
                            .instance_interruption_behavior(InstanceInterruptionBehavior::Terminate)
                            .build(),
                    )
                    .build(),
            )
            .tag_specifications(tagged(ResourceType::SpotInstancesRequest));
    }
    // No SDK retries here: the fallback driver retries throttling and lost replies itself
    // (with the same `ClientToken`), and a refusal moves on to the next plan at once instead of
    // being repeated (EC2 answers `InsufficientInstanceCapacity` with HTTP 500).
    let once = aws_sdk_ec2::config::Builder::default()
        .retry_config(aws_sdk_ec2::config::retry::RetryConfig::disabled());
    let out = call(
        Action::RunInstances,
        request.customize().config_override(once).send(),
    )
    .await
    .map_err(|e| refusal(&e))?;
    out.instances().first().map(Launched::of).ok_or_else(|| {
        Refusal::new(
            crabbox_providers::cloud::Category::Fatal,
            "",
            ProviderError::Transient("AWS RunInstances answered without an instance".into()),
        )
    })
}

fn refusal(e: &CallError) -> Refusal {
    if e.code.is_empty() {
        // No answer: retried with the same token, which EC2 answers with the first launch.
        let category = crabbox_providers::cloud::Category::Transient;
        return Refusal::new(category, "", clone_error(&e.error));
    }
    classify_launch(&e.code, &e.message)
}

fn clone_error(e: &ProviderError) -> ProviderError {
    match e {
        ProviderError::Auth(m) => ProviderError::Auth(m.clone()),
        ProviderError::InvalidSpec(m) => ProviderError::InvalidSpec(m.clone()),
        other => ProviderError::Transient(other.message()),
    }
}

/// Looks at one instance; `None` when EC2 no longer knows it.
pub async fn describe(
    ec2: &aws_sdk_ec2::Client,
    instance_id: &str,
) -> Result<Option<Launched>, CallError> {
    let found = call(
        Action::DescribeInstances,
        ec2.describe_instances().instance_ids(instance_id).send(),
    )
    .await;
    match found {
        Ok(out) => Ok(out
            .reservations()
            .iter()
            .flat_map(aws_sdk_ec2::types::Reservation::instances)
            .map(Launched::of)
            .next()),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Waits until the instance has the address runners are reached at: polls every 0.5 s at
/// first, backing off to 5 s, for at most `limit`. An instance that ends meanwhile fails.
pub async fn wait_for_address(
    ec2: &aws_sdk_ec2::Client,
    mut launched: Launched,
    private: bool,
    limit: Duration,
) -> Result<(Launched, String), ProviderError> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(500);
    loop {
        let address = if private {
            launched.private_ip.clone()
        } else {
            launched.public_ip.clone()
        };
        if let Some(address) = address {
            return Ok((launched, address));
        }
        if launched.ended() {
            return Err(ProviderError::Capacity(format!(
                "AWS instance {} ended ({}) before it had an address",
                launched.instance_id, launched.state
            )));
        }
        if start.elapsed() >= limit {
            let which = if private { "private" } else { "public" };
            return Err(ProviderError::Transient(format!(
                "AWS instance {} had no {which} IP address after {}s",
                launched.instance_id,
                limit.as_secs()
            )));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
        match describe(ec2, &launched.instance_id).await {
            Ok(Some(now)) => launched = now,
            // Just launched: EC2's reads may not see it yet.
            Ok(None) => {}
            Err(e)
                if matches!(
                    e.error,
                    ProviderError::RateLimited(_) | ProviderError::Transient(_)
                ) => {}
            Err(e) => return Err(e.error),
        }
    }
}

/// Terminates an instance; one already gone is fine.
pub async fn terminate(ec2: &aws_sdk_ec2::Client, instance_id: &str) -> Result<(), ProviderError> {
    match call(
        Action::TerminateInstances,
        ec2.terminate_instances().instance_ids(instance_id).send(),
    )
    .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e.error),
    }
}

/// Crabbox's instances in this region that are not terminated (`tag:crabbox=true`,
/// `tag:provider=aws`), optionally only those of one lease.
pub async fn list(
    ec2: &aws_sdk_ec2::Client,
    lease_id: Option<&str>,
) -> Result<Vec<Launched>, ProviderError> {
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let mut request = ec2
            .describe_instances()
            .filters(filter("tag:crabbox", "true"))
            .filters(filter("tag:provider", "aws"))
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("instance-state-name")
                    .set_values(Some(
                        [
                            InstanceStateName::Pending,
                            InstanceStateName::Running,
                            InstanceStateName::Stopping,
                            InstanceStateName::Stopped,
                        ]
                        .iter()
                        .map(|s| s.as_str().to_owned())
                        .collect(),
                    ))
                    .build(),
            )
            .set_next_token(next.take());
        if let Some(lease) = lease_id {
            request = request.filters(filter("tag:lease", lease));
        }
        let page = call(Action::DescribeInstances, request.send()).await?;
        out.extend(
            page.reservations()
                .iter()
                .flat_map(aws_sdk_ec2::types::Reservation::instances)
                .map(Launched::of),
        );
        match page.next_token() {
            Some(token) if !token.is_empty() => next = Some(token.to_owned()),
            _ => return Ok(out),
        }
    }
}

/// The last `lines` lines of the instance's console output, if EC2 has any.
pub async fn console_tail(
    ec2: &aws_sdk_ec2::Client,
    instance_id: &str,
    lines: usize,
) -> Option<String> {
    let out = call(
        Action::GetConsoleOutput,
        ec2.get_console_output()
            .instance_id(instance_id)
            .latest(true)
            .send(),
    )
    .await
    .ok()?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(out.output()?.trim())
        .ok()?;
    let text = String::from_utf8_lossy(&raw);
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = all[all.len().saturating_sub(lines)..].join("\n");
    (!tail.is_empty()).then_some(tail)
}

/// The current spot price of `server_type` (Linux) in the region, or the zone when given.
pub async fn spot_price(
    ec2: &aws_sdk_ec2::Client,
    server_type: &str,
    zone: Option<&str>,
) -> Option<f64> {
    let out = call(
        Action::DescribeSpotPriceHistory,
        ec2.describe_spot_price_history()
            .instance_types(InstanceType::from(server_type))
            .product_descriptions("Linux/UNIX")
            .set_availability_zone(zone.map(str::to_owned))
            .start_time(aws_sdk_ec2::primitives::DateTime::from(
                std::time::SystemTime::now(),
            ))
            .max_results(20)
            .send(),
    )
    .await
    .ok()?;
    out.spot_price_history()
        .iter()
        .filter_map(|p| p.spot_price()?.parse::<f64>().ok())
        .filter(|p| p.is_finite() && *p > 0.0)
        .reduce(f64::min)
}
