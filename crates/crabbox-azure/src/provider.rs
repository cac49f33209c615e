//! The `azure` provider: a lease is one Azure VM booted by the Crabbox cloud-init, with its
//! own public IP and NIC, named and tagged after the lease.
//!
//! A create, in order: the candidate sizes (class or `--type`), the markets (spot first by
//! default, then on-demand) and the locations (the provider's, then `capacity.regions`); for
//! each plan the fallback driver gives it, the shared network of the plan's location
//! (ensured once per location), the lease's public IP and NIC there (made once, moved when the
//! location changes), then the VM, followed until it runs. A VM whose create failed is deleted
//! before the next plan; anything that fails after something was created deletes what this
//! create made before it returns the error.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use async_trait::async_trait;
use crabbox_core::machine::TargetOs;
use crabbox_providers::cloud::azure::CATALOG;
use crabbox_providers::cloud::cost::hourly_price;
use crabbox_providers::cloud::labels::{self, LeaseLabels};
use crabbox_providers::cloud::names::resource_name;
use crabbox_providers::cloud::{
    Backoff, CapacityPlan, MachineRequest, Provisioned, SystemPacing, provision,
};
use crabbox_providers::{AcquireRequest, Capability, Health, LeaseRecord, Provider, ProviderError};
use serde_json::Value;

use crabbox_providers::facts::FactsCache;

use crate::arm::Arm;
use crate::bootstrap;
use crate::create::{Create, Launched, NetworkFacts};
use crate::credential::Credential;
use crate::network;
use crate::settings::AzureSettings;
use crate::tags::{labels_of, tags_of};
use crate::transport::{Transport, http_client};
use crate::vm::{self, Addresses, COMPUTE_API, Names, Paths};

pub use crate::tags::LOCATION_LABEL;

/// The Azure VM provider.
#[derive(Debug)]
pub struct AzureProvider {
    settings: AzureSettings,
    /// The shared network of each location, as last brought to what leases need.
    networks: FactsCache<NetworkFacts>,
    /// `None` without a subscription: every call then says how to name one.
    arm: Option<Arm>,
    credential_kind: &'static str,
}

impl AzureProvider {
    pub fn new(settings: AzureSettings) -> Result<Self, ProviderError> {
        let env = |name: &str| settings.env(name);
        let transport = Transport(http_client(env)?);
        let credential = Credential::from_env(env, &transport)?;
        let credential_kind = credential.kind;
        let arm = settings.subscription_id.as_deref().map(|subscription| {
            Arm::new(
                transport.0.clone(),
                &settings.arm_endpoint,
                subscription,
                credential,
            )
        });
        Ok(Self {
            networks: FactsCache::new(settings.cache_dir.clone()),
            settings,
            arm,
            credential_kind,
        })
    }

    pub fn settings(&self) -> &AzureSettings {
        &self.settings
    }

    /// Which credential calls are made with (`client-secret`, `developer-tools`).
    pub fn credential_kind(&self) -> &'static str {
        self.credential_kind
    }

    /// The ARM client, or the error that says how to get one.
    pub fn arm(&self) -> Result<&Arm, ProviderError> {
        self.settings.subscription()?;
        self.arm
            .as_ref()
            .ok_or_else(|| ProviderError::Auth("no Azure subscription".into()))
    }

    /// The subscription the credentials reach (`GET /subscriptions/{id}`): its id, name and
    /// state, and the tenant it belongs to.
    pub async fn identity(&self) -> Result<Value, ProviderError> {
        let arm = self.arm()?;
        let found = arm
            .get(&arm.subscription_path(), "2022-12-01")
            .await?
            .ok_or_else(|| {
                ProviderError::NotFound(format!(
                    "Azure subscription {} is not visible to these credentials",
                    self.settings.subscription().unwrap_or_default()
                ))
            })?;
        Ok(serde_json::json!({
            "provider": "azure",
            "credential": self.credential_kind,
            "subscriptionId": found["subscriptionId"],
            "subscriptionName": found["displayName"],
            "state": found["state"],
            "tenantId": found["tenantId"],
            "clientId": self.settings.client_id,
            "armEndpoint": self.settings.arm_endpoint,
        }))
    }

    fn paths(&self, arm: &Arm, vm: &str) -> Paths {
        Paths::new(arm, &self.settings.resource_group, &Names::of(vm))
    }

    /// The lease group's VMs, public IPs and NICs (three listings, whatever their number). A
    /// group that does not exist holds none.
    async fn listing(&self) -> Result<Listing, ProviderError> {
        let arm = self.arm()?;
        let group = arm.group_path(&self.settings.resource_group);
        let list = |kind: &str, api: &'static str| {
            let path = format!("{group}/providers/{kind}");
            async move {
                match arm.list(&path, api, None).await {
                    Err(e) if e.is_not_found() => Ok(Vec::new()),
                    other => other,
                }
            }
        };
        Ok(Listing {
            vms: list("Microsoft.Compute/virtualMachines", COMPUTE_API).await?,
            pips: list("Microsoft.Network/publicIPAddresses", network::NETWORK_API).await?,
            nics: list("Microsoft.Network/networkInterfaces", network::NETWORK_API).await?,
        })
    }

    /// Crabbox's VMs in the lease group, with the addresses of their public IPs and NICs.
    pub async fn vms(&self) -> Result<Vec<(Value, Addresses)>, ProviderError> {
        Ok(vms_in(&self.listing().await?))
    }

    /// Each lease with anything in the group, and the VM names its resources belong to: a
    /// create that died before its VM leaves a public IP or NIC tagged with the lease.
    async fn leases(&self) -> Result<BTreeMap<String, BTreeSet<String>>, ProviderError> {
        let Listing { vms, pips, nics } = self.listing().await?;
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (items, suffix) in [(vms, ""), (pips, "-pip"), (nics, "-nic")] {
            for item in items {
                let (Some(lease), Some(name)) =
                    (item["tags"]["lease"].as_str(), item["name"].as_str())
                else {
                    continue;
                };
                if item["tags"]["crabbox"] != "true" {
                    continue;
                }
                let vm = name.strip_suffix(suffix).unwrap_or(name);
                out.entry(lease.to_owned())
                    .or_default()
                    .insert(vm.to_owned());
            }
        }
        Ok(out)
    }

    /// A lease's record from its VM: everything but what only the create knows (attempts,
    /// price) comes from the VM's tags.
    fn record(&self, vm: &Value, addresses: &Addresses) -> LeaseRecord {
        let mut labels = labels_of(&vm["tags"]);
        labels.insert(LOCATION_LABEL.into(), addresses.location.clone());
        let label = |key: &str| labels.get(key).cloned().unwrap_or_default();
        let number = |key: &str| label(key).parse::<u64>().unwrap_or(0);
        let ports = self.settings.ssh_ports();
        let target = TargetOs::parse(&label("target")).unwrap_or(self.settings.target);
        let host = if self.settings.use_private_ip {
            &addresses.private
        } else {
            &addresses.public
        };
        LeaseRecord {
            lease_id: label("lease"),
            slug: label("slug"),
            provider: "azure".into(),
            server_id: vm["name"].as_str().unwrap_or_default().to_owned(),
            server_type: vm["properties"]["hardwareProfile"]["vmSize"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            ssh_host: host.clone(),
            ssh_user: self.settings.ssh_user.clone(),
            ssh_port: ports[0],
            ssh_fallback_ports: ports[1..].to_vec(),
            work_root: bootstrap::work_root(&self.settings, target).to_owned(),
            keep: label("keep") == "true",
            created_at: number("created_at"),
            last_touched_at: number("last_touched_at"),
            ttl_secs: number("ttl_secs"),
            idle_timeout_secs: number("idle_timeout_secs"),
            state: "ready".into(),
            labels,
            ..LeaseRecord::default()
        }
    }

    /// The VMs tagged with the lease.
    async fn vms_of(&self, lease_id: &str) -> Result<Vec<(Value, Addresses)>, ProviderError> {
        Ok(self
            .vms()
            .await?
            .into_iter()
            .filter(|(v, _)| v["tags"]["lease"] == lease_id)
            .collect())
    }

    /// Waits until the address SSH uses is known (a static IP has it once made; a NIC's
    /// private address may come a moment later).
    async fn address(
        &self,
        arm: &Arm,
        paths: &Paths,
        mut got: Addresses,
    ) -> Result<Addresses, ProviderError> {
        let deadline = std::time::Instant::now() + self.settings.address_wait;
        loop {
            let have = if self.settings.use_private_ip {
                &got.private
            } else {
                &got.public
            };
            if !have.is_empty() {
                return Ok(got);
            }
            if std::time::Instant::now() >= deadline {
                return Err(ProviderError::Transient(format!(
                    "Azure gave {} no address within {:?}",
                    paths.vm.rsplit('/').next().unwrap_or_default(),
                    self.settings.address_wait
                )));
            }
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            if let Some(pip) = arm.get(&paths.pip, network::NETWORK_API).await? {
                got.public = vm::public_address(&pip);
            }
            if let Some(nic) = arm.get(&paths.nic, network::NETWORK_API).await? {
                got.private = vm::private_address(&nic);
            }
        }
    }
}

/// Crabbox's VMs of a listing, with the addresses of their public IPs and NICs.
fn vms_in(listing: &Listing) -> Vec<(Value, Addresses)> {
    let Listing { vms, pips, nics } = listing;
    let find = |items: &[Value], name: &str| {
        items
            .iter()
            .find(|i| {
                i["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
            .cloned()
            .unwrap_or(Value::Null)
    };
    vms.iter()
        .filter(|v| v["tags"]["crabbox"] == "true")
        .map(|v| {
            let names = Names::of(v["name"].as_str().unwrap_or_default());
            let addresses = Addresses {
                location: v["location"].as_str().unwrap_or_default().to_owned(),
                public: vm::public_address(&find(pips, &names.pip)),
                private: vm::private_address(&find(nics, &names.nic)),
            };
            (v.clone(), addresses)
        })
        .collect()
}

/// The lease group's resources of the kinds a lease has.
struct Listing {
    vms: Vec<Value>,
    pips: Vec<Value>,
    nics: Vec<Value>,
}

#[async_trait]
impl Provider for AzureProvider {
    fn name(&self) -> &'static str {
        "azure"
    }

    fn per_lease_key(&self) -> bool {
        true
    }

    fn capabilities(&self) -> &'static [Capability] {
        &[Capability::Desktop, Capability::Browser]
    }

    fn targets(&self) -> &'static [TargetOs] {
        &[TargetOs::Linux, TargetOs::Windows]
    }

    fn ready_check(&self, record: &LeaseRecord) -> &'static str {
        crabbox_providers::cloud::ready_check(record)
    }

    async fn acquire(&self, req: &AcquireRequest) -> Result<LeaseRecord, ProviderError> {
        let settings = &self.settings;
        // A coordinator's request names its target; direct, the configuration (or --target).
        let target = req.machine.target.unwrap_or(settings.target);
        bootstrap::check_supported(settings, &req.capabilities, target)?;
        let arm = self.arm()?;
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
        let plan = CapacityPlan::from_config(&settings.location, &capacity)?;
        let image = settings.image(target, architecture);
        if !vm::valid_image(image) {
            return Err(ProviderError::InvalidSpec(format!(
                "Azure image {image:?} is neither Publisher:Offer:SKU:Version nor an image \
                 resource id; fix CRABBOX_AZURE_IMAGE (or azure.image)"
            )));
        }
        let sources = network::ssh_sources(&settings.ssh_cidrs, settings.use_private_ip).await?;
        let ports = settings.ssh_ports();
        let name = resource_name(&req.lease_id, &req.slug);
        let os_profile = bootstrap::os_profile(settings, &name, req, &ports, target)?;
        let mut labels = LeaseLabels {
            provider: "azure",
            lease_id: &req.lease_id,
            slug: &req.slug,
            class: &req.class,
            profile: &settings.profile,
            server_type: "",
            target,
            windows_mode: settings.windows_mode,
            market: None,
            keep: req.keep,
            created_at: now_secs(),
            ttl_secs: req.ttl_secs,
            idle_timeout_secs: req.idle_timeout_secs,
        }
        .render();
        labels.extend(
            crabbox_providers::cloud::desktop::for_lease(&req.capabilities, &settings.ssh_user)?
                .labels,
        );
        let names = Names::of(&name);
        let create = Create {
            settings,
            facts: &self.networks,
            arm,
            paths: Paths::new(arm, &settings.resource_group, &names),
            os_profile,
            names,
            sources,
            ports,
            image,
            windows: target == TargetOs::Windows,
            labels,
            made: Mutex::new(None),
        };
        let launched = provision(
            &candidates,
            &plan,
            Backoff::default(),
            &mut SystemPacing::new(),
            |try_plan| create.try_plan(try_plan),
        )
        .await;
        let outcome = match launched {
            Ok(launched) => self.finish(&create, launched).await,
            Err(failure) => Err(failure.error),
        };
        if outcome.is_err()
            && let Err(e) = vm::delete_all(arm, &create.paths).await
        {
            tracing::warn!(vm = %create.names.vm, error = %ProviderError::from(e), "could not delete what a failed create made");
        }
        outcome
    }

    async fn health(&self, lease: &LeaseRecord) -> Health {
        let Ok(arm) = self.arm() else {
            return Health::Unknown;
        };
        let paths = self.paths(arm, &lease.server_id);
        match arm.get(&paths.vm, COMPUTE_API).await {
            Ok(None) => Health::Gone(format!("Azure VM {} not found", lease.server_id)),
            Ok(Some(vm)) if vm["properties"]["provisioningState"] == "Deleting" => {
                Health::Gone(format!("Azure VM {} is being deleted", lease.server_id))
            }
            Ok(Some(_)) => Health::Alive,
            Err(_) => Health::Unknown,
        }
    }

    /// Deletes the lease's VM, NIC, public IP and disk, each followed to its end. A record
    /// without a VM name (an orphan known only by its lease id) finds its resources by tag. Every
    /// delete tolerates "already gone".
    async fn release(&self, lease: &LeaseRecord) -> Result<(), ProviderError> {
        let arm = self.arm()?;
        if !lease.server_id.is_empty() {
            return Ok(vm::delete_all(arm, &self.paths(arm, &lease.server_id)).await?);
        }
        let leases = self.leases().await?;
        for name in leases.get(&lease.lease_id).into_iter().flatten() {
            vm::delete_all(arm, &self.paths(arm, name)).await?;
        }
        Ok(())
    }

    async fn inventory(&self) -> Result<Vec<String>, ProviderError> {
        Ok(self.leases().await?.into_keys().collect())
    }

    /// The VM an interrupted create made for the lease, found by its `lease` tag, once it
    /// has its address.
    async fn adopt(&self, lease_id: &str) -> Result<Option<LeaseRecord>, ProviderError> {
        let arm = self.arm()?;
        let found = self.vms_of(lease_id).await?;
        let Some((vm, addresses)) = found
            .into_iter()
            .find(|(v, _)| v["properties"]["provisioningState"] == "Succeeded")
        else {
            return Ok(None);
        };
        let paths = self.paths(arm, vm["name"].as_str().unwrap_or_default());
        let addresses = self.address(arm, &paths, addresses).await?;
        Ok(Some(self.record(&vm, &addresses)))
    }

    /// `PATCH` of the VM's tags with the heartbeat's labels. Azure replaces a resource's tags
    /// whole: a record made from the VM carries all of them; one that does not (rebuilt from a
    /// coordinator's lease) has them read from the VM first.
    async fn touch(&self, lease: &LeaseRecord) -> Result<(), ProviderError> {
        let arm = self.arm()?;
        let paths = self.paths(arm, &lease.server_id);
        let labels = if labels::is_whole_set(&lease.labels) {
            lease.labels.clone()
        } else {
            let vm = arm
                .get(&paths.vm, COMPUTE_API)
                .await?
                .ok_or_else(|| ProviderError::NotFound(format!("Azure VM {}", lease.server_id)))?;
            labels_of(&vm["tags"])
        };
        let labels = labels::heartbeat(labels, lease.idle_timeout_secs, now_secs());
        arm.patch(
            &paths.vm,
            COMPUTE_API,
            &serde_json::json!({"tags": tags_of(&labels)}),
        )
        .await?;
        Ok(())
    }

    /// The VMs, and what a create that died before its VM left (a public IP or NIC), as
    /// records with their tags, so `cleanup` and the coordinator judge them like VMs.
    async fn runners(&self) -> Result<Vec<LeaseRecord>, ProviderError> {
        let listing = self.listing().await?;
        let mut records: Vec<LeaseRecord> = vms_in(&listing)
            .iter()
            .map(|(vm, addresses)| LeaseRecord {
                state: match vm["properties"]["provisioningState"].as_str() {
                    Some("Succeeded") => "running".to_owned(),
                    Some(other) => other.to_ascii_lowercase(),
                    None => "unknown".to_owned(),
                },
                ..self.record(vm, addresses)
            })
            .collect();
        for item in listing.pips.iter().chain(&listing.nics) {
            let lease = item["tags"]["lease"].as_str().unwrap_or_default();
            if item["tags"]["crabbox"] != "true"
                || lease.is_empty()
                || records.iter().any(|r| r.lease_id == lease)
            {
                continue;
            }
            let location = item["location"].as_str().unwrap_or_default().to_owned();
            let addresses = Addresses {
                location,
                public: String::new(),
                private: String::new(),
            };
            records.push(LeaseRecord {
                // Released by its lease id: there is no VM to name.
                server_id: String::new(),
                server_type: String::new(),
                state: "leftover".into(),
                ..self.record(item, &addresses)
            });
        }
        Ok(records)
    }
}

impl AzureProvider {
    /// After the VM runs: its address, the price, the record.
    async fn finish(
        &self,
        create: &Create<'_>,
        launched: Provisioned<Launched>,
    ) -> Result<LeaseRecord, ProviderError> {
        let Provisioned {
            value,
            plan,
            attempts,
        } = launched;
        let addresses = self
            .address(create.arm, &create.paths, value.addresses)
            .await?;
        let price = hourly_price("azure", &plan.server_type, &self.settings.cost_rates, None);
        Ok(LeaseRecord {
            provisioning_attempts: attempts,
            hourly_usd: Some(price.usd),
            price_source: format!("{:?}", price.source).to_ascii_lowercase(),
            ..self.record(&value.vm, &addresses)
        })
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
