//! One create of the `aws` provider: what it tries and what it made. For each plan the
//! fallback driver gives it: the vCPU quota preflight, then (once per region) the lease's key
//! pair, the security group and the image, then `RunInstances`. It remembers the key pairs it
//! imported, so that a failed create, or a successful one in another region, deletes them.

use std::collections::BTreeMap;
use std::sync::Arc;

use crabbox_core::machine::{Architecture, Market, TargetOs};
use crabbox_providers::cloud::aws::CATALOG;
use crabbox_providers::cloud::names::resource_name;
use crabbox_providers::cloud::{Category, Refusal, TryPlan};
use crabbox_providers::{AcquireRequest, ProviderError};
use tokio::sync::Mutex;

use crate::cache::{Cache, RegionFacts};
use crate::client::Aws;
use crate::instances::{self, LaunchTemplate, Launched};
use crate::settings::AwsSettings;
use crate::{hosts, identity, image, keys, mac, network, windows};

/// Codes of a launch refused because the security group or image it named is gone.
const STALE: &[&str] = &[
    "InvalidGroup.NotFound",
    "InvalidSecurityGroupID.NotFound",
    "InvalidAMIID.NotFound",
    "InvalidAMIID.Unavailable",
];

/// Whether the template's group or image came from the region's remembered facts.
fn was_remembered(facts: &RegionFacts, template: &LaunchTemplate) -> bool {
    facts
        .security_group
        .as_ref()
        .is_some_and(|(id, _)| *id == template.security_group)
        || facts.images.values().any(|id| *id == template.image_id)
}

/// What a create imported in a region it reached: the lease's key pair. (The security
/// group, images and quotas are the region's, in the provider's [`Cache`].)
#[derive(Debug, Default)]
pub(crate) struct Prepared {
    key_name: Option<String>,
    /// The region's Dedicated Hosts, looked up once (Mac leases).
    hosts: Option<Vec<crate::hosts::Host>>,
}

/// The state of one create: what it made where, so a failure can delete it.
pub(crate) struct Create<'a> {
    pub settings: &'a AwsSettings,
    pub target: TargetOs,
    /// The Mac host asked for (the request's, else `aws.macHostId`).
    pub host_id: Option<String>,
    /// The user, ports and work root the runner is reached at.
    pub login: (String, Vec<u16>, String),
    pub cache: &'a Cache,
    pub aws: Arc<Aws>,
    pub req: &'a AcquireRequest,
    pub architecture: Architecture,
    pub cidrs: Vec<String>,
    pub user_data: String,
    pub labels: BTreeMap<String, String>,
    pub regions: Mutex<BTreeMap<String, Prepared>>,
}

impl Create<'_> {
    /// One plan: the quota preflight, the region prepared, then `RunInstances`. A launch
    /// refused because a remembered group or image is gone forgets the region's facts and is
    /// tried again (once: the next look-ups are fresh).
    pub async fn try_plan(&self, plan: TryPlan, zone: Option<String>) -> Result<Launched, Refusal> {
        self.preflight(&plan).await?;
        let ec2 = self.aws.ec2(&plan.region);
        let arch = CATALOG.architecture_of(&plan.server_type, self.architecture);
        let remembered = self.cache.get(&plan.region);
        let template = self
            .template(&ec2, &plan.region, &plan.server_type, arch)
            .await?;
        let launched = instances::launch(&ec2, &template, &plan, zone.as_deref()).await;
        match launched {
            Err(refusal)
                if STALE.contains(&refusal.code.as_str())
                    && was_remembered(&remembered, &template) =>
            {
                self.cache.forget(&plan.region);
                Err(Refusal::new(
                    Category::Transient,
                    refusal.code,
                    ProviderError::Transient(format!(
                        "a remembered security group or image in {} is gone: {}",
                        plan.region,
                        refusal.error.message()
                    )),
                ))
            }
            other => other,
        }
    }

    /// Refuses a plan whose type needs more vCPUs than the account's quota for its market in
    /// its region, before anything is spent. A quota that cannot be read is unknown: no
    /// refusal (Service Quotas may not know EC2's quotas in every partition).
    async fn preflight(&self, plan: &TryPlan) -> Result<(), Refusal> {
        let Some(needs) = crabbox_providers::cloud::aws::shape::vcpus(&plan.server_type) else {
            return Ok(());
        };
        let cache = &self.cache;
        let market = plan.market.as_str();
        let quota = if let Some(known) = cache.get(&plan.region).quotas.get(market) {
            *known
        } else {
            let read = identity::vcpu_quota(&self.aws, &plan.region, plan.market).await;
            let quota = read.unwrap_or_else(|e| {
                tracing::warn!(region = %plan.region, error = %e, "vCPU quota unknown");
                None
            });
            cache.update(&plan.region, |f| {
                f.quotas.insert(market.to_owned(), quota);
            });
            quota
        };
        match quota {
            Some(have) if f64::from(needs) > have => {
                let code = identity::vcpu_quota_code(plan.market);
                let message = format!(
                    "quota {code} in {} is {have} vCPUs; {} needs {needs} vCPUs",
                    plan.region, plan.server_type
                );
                Err(
                    Refusal::new(Category::Quota, code, ProviderError::Quota(message))
                        .spot_recoverable(plan.market == Market::Spot),
                )
            }
            _ => Ok(()),
        }
    }

    async fn template(
        &self,
        ec2: &aws_sdk_ec2::Client,
        region: &str,
        server_type: &str,
        arch: Architecture,
    ) -> Result<LaunchTemplate, Refusal> {
        let settings = &self.settings;
        let fatal = |e: ProviderError| Refusal::new(Category::Fatal, "", e);
        let mut regions = self.regions.lock().await;
        let prepared = regions.entry(region.to_owned()).or_default();
        let host = if self.target == TargetOs::Macos {
            if prepared.hosts.is_none() {
                prepared.hosts = Some(hosts::list(ec2, None, false).await.map_err(fatal)?);
            }
            let found = prepared.hosts.as_deref().unwrap_or_default();
            Some(mac::host_for(
                found,
                self.host_id.as_deref(),
                server_type,
                region,
            )?)
        } else {
            None
        };
        if prepared.key_name.is_none() {
            let name = keys::import(ec2, &self.req.lease_id, &self.req.public_key)
                .await
                .map_err(fatal)?;
            prepared.key_name = Some(name);
        }
        let key_name = prepared.key_name.clone().unwrap_or_default();
        drop(regions);
        let cache = &self.cache;
        let facts = cache.get(region);
        let ports = settings.ssh_ports();
        let wanted = format!(
            "{:?} {:?} {:?} {ports:?}",
            settings.security_group_id, settings.subnet_id, self.cidrs
        );
        let security_group = match facts.security_group {
            Some((id, made_for)) if made_for == wanted => id,
            _ => {
                let id = network::security_group(
                    ec2,
                    settings.security_group_id.as_deref(),
                    settings.subnet_id.as_deref(),
                    &self.cidrs,
                    &ports,
                )
                .await
                .map_err(fatal)?;
                cache.update(region, |f| f.security_group = Some((id.clone(), wanted)));
                id
            }
        };
        let promoted = self
            .req
            .machine
            .image
            .as_ref()
            .filter(|image| image.region == region)
            .map(|image| image.id.clone());
        // An image pinned on this side (`CRABBOX_AWS_AMI`) wins over one the request names.
        // Amazon's macOS images differ by Mac family; Canonical's Ubuntu by architecture.
        let image_key = match self.target {
            TargetOs::Macos => format!("macos:{}", mac::image_pattern(server_type).0),
            TargetOs::Windows => format!("windows:{}", windows::IMAGE_PATTERN),
            TargetOs::Linux => arch.as_str().to_owned(),
        };
        let image_id = match (
            settings.ami.clone().or(promoted),
            facts.images.get(&image_key),
        ) {
            (Some(ami), _) => ami,
            (None, Some(found)) => found.clone(),
            (None, None) => {
                let found = match self.target {
                    TargetOs::Macos => mac::image(ec2, region, server_type).await,
                    TargetOs::Windows => windows::image(ec2, region).await,
                    TargetOs::Linux => image::linux_image(ec2, region, arch).await,
                }
                // The region lacks the image every plan there needs; a Mac's image is its
                // family's, so another Mac type may still find one.
                .map_err(|e| {
                    let category = match self.target {
                        TargetOs::Macos => Category::Unsupported,
                        _ => Category::Region,
                    };
                    Refusal::new(category, "", e)
                })?;
                cache.update(region, |f| {
                    f.images.insert(image_key.clone(), found.clone());
                });
                found
            }
        };
        Ok(LaunchTemplate {
            lease_id: self.req.lease_id.clone(),
            image_id,
            key_name,
            security_group,
            subnet: settings.subnet_id.clone(),
            instance_profile: settings.instance_profile.clone(),
            root_gb: settings.root_gb,
            host,
            user_data: self.user_data.clone(),
            labels: self.labels.clone(),
            name: resource_name(&self.req.lease_id, &self.req.slug),
        })
    }

    /// Deletes the key pairs this create imported, except in `keep_region`.
    pub async fn delete_keys(&self, keep_region: Option<&str>) {
        let regions = self.regions.lock().await;
        for (region, prepared) in regions.iter() {
            if Some(region.as_str()) == keep_region {
                continue;
            }
            if let Some(name) = &prepared.key_name
                && let Err(e) = keys::delete(&self.aws.ec2(region), name).await
            {
                tracing::warn!(%region, key = %name, error = %e, "could not delete a key pair");
            }
        }
    }
}
