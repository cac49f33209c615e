//! The `aws` provider: a lease is one EC2 instance booted by the Crabbox cloud-init, with its
//! own key pair, in the `crabbox-runners` security group.
//!
//! A create, in order: the candidate types (class or `--type`) and the capacity plan (market,
//! regions, zones); the SSH sources; then the fallback driver tries the plans (each one a
//! `create::Create::try_plan`); the launched instance is waited on until it has its address. Anything that fails after
//! something was created deletes what this create made (instance, key pairs) before it
//! returns the error.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use crabbox_core::machine::{Market, TargetOs};
use crabbox_providers::cloud::aws::CATALOG;
use crabbox_providers::cloud::cloud_init::LinuxCloudInit;
use crabbox_providers::cloud::cost::hourly_price;
use crabbox_providers::cloud::labels::LeaseLabels;
use crabbox_providers::cloud::macos::{MACOS_VNC_PASSWORD_FILE, MACOS_VNC_PORT, MacosUserData};
use crabbox_providers::cloud::{
    Backoff, CapacityPlan, Category, MachineRequest, Provisioned, SystemPacing, TryPlan, provision,
};
use crabbox_providers::{AcquireRequest, Capability, Health, LeaseRecord, Provider, ProviderError};
use tokio::sync::{Mutex, OnceCell};

use crate::cache::Cache;
use crate::client::Aws;
use crate::create::Create;
use crate::instances::{self, Launched};
use crate::settings::AwsSettings;
use crate::{keys, mac, network, placement, windows};

/// Label of the region a lease's instance runs in.
pub const REGION_LABEL: &str = "aws_region";

/// The AWS provider. The SDK configuration is loaded on first use.
#[derive(Debug)]
pub struct AwsProvider {
    settings: AwsSettings,
    aws: OnceCell<Arc<Aws>>,
    cache: Cache,
}

impl AwsProvider {
    pub fn new(settings: AwsSettings) -> Self {
        Self {
            cache: Cache::new(settings.cache_dir.clone()),
            settings,
            aws: OnceCell::new(),
        }
    }

    /// A provider on clients the caller made (an SDK configuration built in code).
    pub fn with_clients(settings: AwsSettings, aws: Aws) -> Self {
        Self {
            cache: Cache::new(settings.cache_dir.clone()),
            settings,
            aws: OnceCell::new_with(Some(Arc::new(aws))),
        }
    }

    pub fn settings(&self) -> &AwsSettings {
        &self.settings
    }

    /// The SDK clients (loaded once).
    pub async fn aws(&self) -> Arc<Aws> {
        self.aws
            .get_or_init(|| async { Arc::new(Aws::load(&self.settings.region).await) })
            .await
            .clone()
    }

    pub(crate) fn region_of(&self, lease: &LeaseRecord) -> String {
        lease
            .labels
            .get(REGION_LABEL)
            .cloned()
            .unwrap_or_else(|| self.settings.region.clone())
    }

    /// Crabbox's live instances in every capacity region.
    pub async fn instances(&self) -> Result<Vec<(String, Launched)>, ProviderError> {
        let aws = self.aws().await;
        let mut out = Vec::new();
        for region in self.settings.regions() {
            for instance in instances::list(&aws.ec2(&region), None).await? {
                out.push((region.clone(), instance));
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl Provider for AwsProvider {
    fn name(&self) -> &'static str {
        "aws"
    }

    fn per_lease_key(&self) -> bool {
        true
    }

    fn ready_check(&self, record: &LeaseRecord) -> &'static str {
        crabbox_providers::cloud::ready_check(record)
    }

    fn capabilities(&self) -> &'static [Capability] {
        &[Capability::Desktop, Capability::Browser]
    }

    fn images(&self) -> Option<&dyn crabbox_providers::images::Images> {
        Some(self)
    }

    fn targets(&self) -> &'static [TargetOs] {
        &[TargetOs::Linux, TargetOs::Macos, TargetOs::Windows]
    }

    async fn acquire(&self, req: &AcquireRequest) -> Result<LeaseRecord, ProviderError> {
        let settings = &self.settings;
        let target = req.machine.target.unwrap_or(settings.target);
        if target == TargetOs::Windows {
            windows::check(settings.windows_mode, &req.capabilities)?;
        }
        let architecture = req.machine.architecture.unwrap_or(settings.architecture);
        let candidates = CATALOG.candidates(&MachineRequest {
            class: &req.class,
            server_type: req.machine.server_type.as_deref(),
            target,
            windows_mode: settings.windows_mode,
            architecture,
        })?;
        let mut capacity = settings.capacity.clone();
        if let Some(market) = req.machine.market {
            capacity.market = market;
        }
        if target == TargetOs::Macos {
            if req.machine.market == Some(Market::Spot) {
                return Err(ProviderError::InvalidSpec(
                    "EC2 Mac instances run on Dedicated Hosts, on demand only; drop --market spot"
                        .into(),
                ));
            }
            capacity.market = Market::OnDemand;
        }
        // A coordinator's promoted image lives in one region: leases start there.
        let home = req
            .machine
            .image
            .as_ref()
            .map_or(settings.region.as_str(), |image| image.region.as_str());
        let mut plan = CapacityPlan::from_config(home, &capacity)?;
        if plan.market == Market::Spot && plan.regions.len() > 1 {
            let ec2 = self.aws().await.ec2(&plan.regions[0]);
            plan.regions =
                placement::best_region_first(&ec2, &candidates.types, &plan.regions).await;
        }
        let cidrs = network::ssh_cidrs(&settings.ssh_cidrs).await?;
        let login = login(settings, target);
        let (user_data, optional_labels) = bootstrap(req, target, &login)?;
        let now = now_secs();
        let mut labels = LeaseLabels {
            provider: "aws",
            lease_id: &req.lease_id,
            slug: &req.slug,
            class: &req.class,
            profile: &settings.profile,
            server_type: "",
            target,
            windows_mode: settings.windows_mode,
            market: None,
            keep: req.keep,
            created_at: now,
            ttl_secs: req.ttl_secs,
            idle_timeout_secs: req.idle_timeout_secs,
        }
        .render();
        labels.extend(optional_labels);
        let create = Create {
            settings: &self.settings,
            target,
            host_id: req.machine.host_id.clone().or(settings.mac_host_id.clone()),
            login,
            cache: &self.cache,
            aws: self.aws().await,
            req,
            architecture,
            cidrs,
            user_data,
            labels,
            regions: Mutex::new(BTreeMap::new()),
        };
        let launched = provision(
            &candidates,
            &plan,
            Backoff::default(),
            &mut SystemPacing::new(),
            |try_plan| {
                let zone = plan.zone_in(&try_plan.region).map(str::to_owned);
                create.try_plan(try_plan, zone)
            },
        )
        .await;
        let launched = match launched {
            Ok(launched) => launched,
            Err(failure) => {
                // A launch whose answer never came may have made an instance all the same.
                let unanswered = failure
                    .attempts
                    .iter()
                    .any(|a| a.category == Category::Transient);
                if unanswered {
                    self.terminate_tagged(&req.lease_id).await;
                }
                create.delete_keys(None).await;
                return Err(failure.error);
            }
        };
        match self.finish(&create, launched, now).await {
            Ok(record) => {
                create
                    .delete_keys(record.labels.get(REGION_LABEL).map(String::as_str))
                    .await;
                Ok(record)
            }
            Err((instance, region, error)) => {
                if let Err(e) = instances::terminate(&create.aws.ec2(&region), &instance).await {
                    tracing::warn!(%instance, error = %e, "could not terminate a failed launch");
                }
                create.delete_keys(None).await;
                Err(error)
            }
        }
    }

    async fn health(&self, lease: &LeaseRecord) -> Health {
        let ec2 = self.aws().await.ec2(&self.region_of(lease));
        match instances::describe(&ec2, &lease.server_id).await {
            Ok(None) => Health::Gone(format!("AWS instance {} not found", lease.server_id)),
            Ok(Some(instance)) if instance.ended() => Health::Gone(format!(
                "AWS instance {} is {}",
                lease.server_id, instance.state
            )),
            Ok(Some(_)) => Health::Alive,
            Err(_) => Health::Unknown,
        }
    }

    /// Terminates the lease's instance and deletes its key pair. A record without an instance
    /// id (an orphan known only by its lease id) finds its instances by tag in every region.
    async fn release(&self, lease: &LeaseRecord) -> Result<(), ProviderError> {
        let aws = self.aws().await;
        let key = crabbox_providers::cloud::names::provider_key_name(&lease.lease_id)
            .map_err(|e| ProviderError::InvalidSpec(e.to_string()))?;
        if !lease.server_id.is_empty() {
            let ec2 = aws.ec2(&self.region_of(lease));
            instances::terminate(&ec2, &lease.server_id).await?;
            return keys::delete(&ec2, &key).await;
        }
        for region in self.settings.regions() {
            let ec2 = aws.ec2(&region);
            for instance in instances::list(&ec2, Some(&lease.lease_id)).await? {
                instances::terminate(&ec2, &instance.instance_id).await?;
            }
            keys::delete(&ec2, &key).await?;
        }
        Ok(())
    }

    async fn inventory(&self) -> Result<Vec<String>, ProviderError> {
        let mut leases: Vec<String> = self
            .instances()
            .await?
            .into_iter()
            .filter_map(|(_, i)| i.labels.get("lease").cloned())
            .collect();
        leases.sort();
        leases.dedup();
        Ok(leases)
    }

    /// The instance an interrupted create launched for the lease, found by its `lease` tag in
    /// every capacity region (its `ClientToken` made sure there is one per plan); once it has
    /// its address, its record, rebuilt from its tags. Extra instances (two plans both
    /// launched before the interruption) are terminated.
    async fn adopt(&self, lease_id: &str) -> Result<Option<LeaseRecord>, ProviderError> {
        let aws = self.aws().await;
        let mut found = Vec::new();
        for region in self.settings.regions() {
            let ec2 = aws.ec2(&region);
            for instance in instances::list(&ec2, Some(lease_id)).await? {
                found.push((region.clone(), instance));
            }
        }
        let mut found = found.into_iter().filter(|(_, i)| !i.ended());
        let Some((region, instance)) = found.next() else {
            return Ok(None);
        };
        for (extra_region, extra) in found {
            instances::terminate(&aws.ec2(&extra_region), &extra.instance_id).await?;
        }
        let ec2 = aws.ec2(&region);
        let (instance, address) = instances::wait_for_address(
            &ec2,
            instance,
            self.settings.use_private_ip,
            self.settings.address_wait,
        )
        .await?;
        let mut labels = instance.labels;
        labels.insert(REGION_LABEL.into(), region);
        let label = |key: &str| labels.get(key).cloned().unwrap_or_default();
        let number = |key: &str| label(key).parse::<u64>().unwrap_or(0);
        let target = TargetOs::parse(&label("target")).unwrap_or(self.settings.target);
        let (user, ports, work_root) = login(&self.settings, target);
        Ok(Some(LeaseRecord {
            lease_id: lease_id.to_owned(),
            slug: label("slug"),
            provider: "aws".into(),
            server_id: instance.instance_id,
            server_type: label("server_type"),
            ssh_host: address,
            ssh_user: user,
            ssh_port: ports[0],
            ssh_fallback_ports: ports[1..].to_vec(),
            work_root,
            keep: label("keep") == "true",
            created_at: number("created_at"),
            last_touched_at: number("last_touched_at"),
            ttl_secs: number("ttl_secs"),
            idle_timeout_secs: number("idle_timeout_secs"),
            state: "ready".into(),
            labels,
            ..LeaseRecord::default()
        }))
    }

    /// `CreateTags` with the heartbeat's labels: `last_touched_at` now, `expires_at` and the
    /// idle timeout recomputed from the lease's own durations.
    async fn touch(&self, lease: &LeaseRecord) -> Result<(), ProviderError> {
        let mut labels = lease.labels.clone();
        labels.insert(
            "idle_timeout_secs".into(),
            lease.idle_timeout_secs.to_string(),
        );
        let touched = crabbox_providers::cloud::labels::touch(&labels, None, now_secs());
        let changed: Vec<aws_sdk_ec2::types::Tag> = [
            "last_touched_at",
            "expires_at",
            "idle_timeout",
            "idle_timeout_secs",
        ]
        .iter()
        .filter_map(|key| {
            let value = touched.get(*key)?;
            Some(
                aws_sdk_ec2::types::Tag::builder()
                    .key(*key)
                    .value(value)
                    .build(),
            )
        })
        .collect();
        let ec2 = self.aws().await.ec2(&self.region_of(lease));
        crate::client::call(
            crate::policy::Action::CreateTags,
            ec2.create_tags()
                .resources(&lease.server_id)
                .set_tags(Some(changed))
                .send(),
        )
        .await?;
        Ok(())
    }

    async fn runners(&self) -> Result<Vec<LeaseRecord>, ProviderError> {
        Ok(self
            .instances()
            .await?
            .into_iter()
            .map(|(region, instance)| {
                let mut labels = instance.labels;
                labels.insert(REGION_LABEL.into(), region);
                LeaseRecord {
                    lease_id: labels.get("lease").cloned().unwrap_or_default(),
                    slug: labels.get("slug").cloned().unwrap_or_default(),
                    provider: "aws".into(),
                    server_id: instance.instance_id,
                    server_type: labels.get("server_type").cloned().unwrap_or_default(),
                    ssh_host: instance.public_ip.unwrap_or_default(),
                    state: instance.state,
                    labels,
                    ..LeaseRecord::default()
                }
            })
            .collect())
    }

    async fn boot_log(&self, lease: &LeaseRecord) -> Option<String> {
        let ec2 = self.aws().await.ec2(&self.region_of(lease));
        instances::console_tail(&ec2, &lease.server_id, 30).await
    }
}

impl AwsProvider {
    /// Terminates every instance tagged with the lease, in every capacity region (a failed
    /// create whose launch answers were lost); failures are logged, the create's error wins.
    async fn terminate_tagged(&self, lease_id: &str) {
        let aws = self.aws().await;
        for region in self.settings.regions() {
            let ec2 = aws.ec2(&region);
            let found = instances::list(&ec2, Some(lease_id))
                .await
                .unwrap_or_default();
            for instance in found {
                if let Err(e) = instances::terminate(&ec2, &instance.instance_id).await {
                    tracing::warn!(instance = %instance.instance_id, error = %e, "could not terminate an unanswered launch");
                }
            }
        }
    }

    /// The spot price of the plan's type, remembered for a while.
    async fn spot_price(&self, ec2: &aws_sdk_ec2::Client, plan: &TryPlan) -> Option<f64> {
        if let Some(price) = self
            .cache
            .get(&plan.region)
            .spot_prices
            .get(&plan.server_type)
        {
            return Some(*price);
        }
        let price = instances::spot_price(ec2, &plan.server_type, None).await?;
        self.cache.update(&plan.region, |f| {
            f.spot_prices.insert(plan.server_type.clone(), price);
        });
        Some(price)
    }

    /// After the launch: the address, the price, the record. On failure, what to delete.
    async fn finish(
        &self,
        create: &Create<'_>,
        launched: Provisioned<Launched>,
        created_at: u64,
    ) -> Result<LeaseRecord, (String, String, ProviderError)> {
        let settings = &self.settings;
        let Provisioned {
            value,
            plan,
            attempts,
        } = launched;
        let ec2 = create.aws.ec2(&plan.region);
        let instance_id = value.instance_id.clone();
        let (instance, address) = instances::wait_for_address(
            &ec2,
            value,
            settings.use_private_ip,
            settings.address_wait,
        )
        .await
        .map_err(|e| (instance_id.clone(), plan.region.clone(), e))?;
        let live = match plan.market {
            Market::Spot => self.spot_price(&ec2, &plan).await,
            Market::OnDemand => None,
        };
        let price = hourly_price("aws", &plan.server_type, &settings.cost_rates, live);
        let mut labels = create.labels.clone();
        labels.extend(instance.labels);
        labels.insert("server_type".into(), plan.server_type.clone());
        labels.insert("market".into(), plan.market.as_str().into());
        labels.insert(REGION_LABEL.into(), plan.region.clone());
        labels.insert("class".into(), create.req.class.clone());
        let (user, ports, work_root) = create.login.clone();
        Ok(LeaseRecord {
            lease_id: create.req.lease_id.clone(),
            slug: create.req.slug.clone(),
            provider: "aws".into(),
            server_id: instance.instance_id,
            server_type: plan.server_type.clone(),
            ssh_host: address,
            ssh_user: user,
            ssh_port: ports[0],
            ssh_fallback_ports: ports[1..].to_vec(),
            work_root,
            keep: create.req.keep,
            created_at,
            last_touched_at: created_at,
            ttl_secs: create.req.ttl_secs,
            idle_timeout_secs: create.req.idle_timeout_secs,
            state: "ready".into(),
            labels,
            provisioning_attempts: attempts,
            hourly_usd: Some(price.usd),
            price_source: format!("{:?}", price.source).to_ascii_lowercase(),
            ..LeaseRecord::default()
        })
    }
}

/// The user, ports and work root a lease of `target` is reached at.
pub(crate) fn login(settings: &AwsSettings, target: TargetOs) -> (String, Vec<u16>, String) {
    match target {
        TargetOs::Macos => mac::login(settings),
        TargetOs::Windows => windows::login(settings),
        TargetOs::Linux => (
            settings.ssh_user.clone(),
            settings.ssh_ports(),
            settings.work_root.clone(),
        ),
    }
}

/// The user data of a lease and the labels of what it adds: the Linux cloud-init with the
/// desktop and browser units it asks for, a Mac's bootstrap script, whose desktop is Screen
/// Sharing (a Mac lease has no browser or code server to add), or the Windows bootstrap.
fn bootstrap(
    req: &AcquireRequest,
    target: TargetOs,
    (user, ports, work_root): &(String, Vec<u16>, String),
) -> Result<(String, Vec<(String, String)>), ProviderError> {
    let invalid = |e: crabbox_providers::cloud::cloud_init::CloudInitError| {
        ProviderError::InvalidSpec(e.to_string())
    };
    if target == TargetOs::Windows {
        return Ok((
            windows::user_data(
                &req.public_key,
                &(user.clone(), ports.clone(), work_root.clone()),
            )?,
            Vec::new(),
        ));
    }
    if target == TargetOs::Macos {
        let caps = &req.capabilities;
        if caps.browser || caps.code || caps.desktop_env.is_some() {
            return Err(ProviderError::InvalidSpec(
                "a macOS lease offers --desktop (Screen Sharing) only: no --browser, --code or \
                 --desktop-env"
                    .into(),
            ));
        }
        let script = MacosUserData {
            user,
            public_key: &req.public_key,
            work_root,
            ssh_ports: ports,
            desktop: caps.desktop,
        }
        .render()
        .map_err(invalid)?;
        let labels = if caps.desktop {
            vec![
                ("desktop".to_owned(), "true".to_owned()),
                ("vnc_port".to_owned(), MACOS_VNC_PORT.to_string()),
                (
                    "vnc_password_file".to_owned(),
                    MACOS_VNC_PASSWORD_FILE.to_owned(),
                ),
            ]
        } else {
            Vec::new()
        };
        return Ok((script, labels));
    }
    let optional = crabbox_providers::cloud::desktop::for_lease(&req.capabilities, user)?;
    let cloud_init = LinuxCloudInit {
        user,
        public_key: &req.public_key,
        work_root,
        ssh_ports: ports,
        units: &optional.units,
    }
    .render()
    .map_err(invalid)?;
    Ok((cloud_init, optional.labels))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
