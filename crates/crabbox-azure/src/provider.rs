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
use crabbox_core::machine::{TargetOs, WindowsMode};
use crabbox_providers::cloud::azure::CATALOG;
use crabbox_providers::cloud::azure::errors::classify_create;
use crabbox_providers::cloud::cloud_init::LinuxCloudInit;
use crabbox_providers::cloud::cost::hourly_price;
use crabbox_providers::cloud::labels::{self, LeaseLabels};
use crabbox_providers::cloud::names::resource_name;
use crabbox_providers::cloud::windows::{self, WindowsBootstrap};
use crabbox_providers::cloud::{
    Backoff, CapacityPlan, Category, MachineRequest, Provisioned, Refusal, SystemPacing, TryPlan,
    provision,
};
use crabbox_providers::{
    AcquireRequest, Capabilities, Capability, Health, LeaseRecord, Provider, ProviderError,
};
use serde_json::Value;

use crabbox_providers::facts::FactsCache;

use crate::arm::{Arm, CallError};
use crate::credential::Credential;
use crate::network::{self, Prepared};
use crate::settings::AzureSettings;
use crate::transport::{Transport, http_client};
use crate::vm::{self, Addresses, COMPUTE_API, Names, Paths, VmSpec};

/// The tag a VM's location is kept in.
pub const LOCATION_LABEL: &str = "azure_location";

/// Codes of a lease resource refused because the remembered shared network it named is gone.
const STALE_NETWORK: &[&str] = &[
    "InvalidResourceReference",
    "ResourceGroupNotFound",
    "ParentResourceNotFound",
    "NotFound",
    "ResourceNotFound",
];

/// A location's shared network as remembered: what a NIC refers to, and the names, sources
/// and ports it was brought to (another configuration brings it again).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct NetworkFacts {
    #[serde(default)]
    prepared: Option<(Prepared, String)>,
}

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
            work_root: self.work_root(target).to_owned(),
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

/// The state of one create.
struct Create<'a> {
    provider: &'a AzureProvider,
    arm: &'a Arm,
    names: Names,
    paths: Paths,
    sources: network::SshSources,
    ports: Vec<u16>,
    image: &'a str,
    /// A Windows VM, whose bootstrap the VM agent runs once the VM is made.
    windows: bool,
    os_profile: Value,
    labels: BTreeMap<String, String>,
    /// The shared network of each location a plan used.
    networks: tokio::sync::Mutex<BTreeMap<String, Prepared>>,
    /// The lease's public IP and NIC, once made, and where.
    made: Mutex<Option<Addresses>>,
}

/// What a successful plan made.
struct Launched {
    vm: Value,
    addresses: Addresses,
}

impl Create<'_> {
    /// One plan: the network of its location, then the VM.
    async fn try_plan(&self, plan: TryPlan) -> Result<Launched, Refusal> {
        let addresses = self.network_in(&plan.region).await.map_err(refusal)?;
        let mut tags = self.labels.clone();
        tags.insert("server_type".into(), plan.server_type.clone());
        tags.insert("market".into(), plan.market.as_str().into());
        tags.insert(LOCATION_LABEL.into(), plan.region.clone());
        let settings = &self.provider.settings;
        let spec = VmSpec {
            location: &plan.region,
            size: &plan.server_type,
            market: plan.market,
            image: self.image,
            os_disk_sku: &settings.os_disk_sku,
            ephemeral_os_disk: settings.os_disk == "ephemeral",
            os_profile: self.os_profile.clone(),
            tags: &tags_of(&tags),
        };
        match vm::create_vm(self.arm, &self.paths, &self.names, &spec).await {
            Ok(vm) if self.windows => {
                // The VM agent runs the bootstrap Azure wrote from the custom data.
                vm::run_bootstrap_extension(self.arm, &self.paths, &plan.region)
                    .await
                    .map_err(|e| refusal(e.into()))?;
                Ok(Launched { vm, addresses })
            }
            Ok(vm) => Ok(Launched { vm, addresses }),
            Err(CallError::Api {
                status,
                code,
                message,
                ..
            }) => {
                if status == 0 {
                    // The VM was made and failed: it goes before the next plan, and its NIC
                    // and disk with it (their delete option), so the next plan makes a NIC
                    // again.
                    vm::delete_vm(self.arm, &self.paths)
                        .await
                        .map_err(|e| refusal(e.into()))?;
                    *self.made.lock().expect("made") = None;
                }
                Err(classify_create(status, &code, &message))
            }
            Err(lost) => Err(refusal(lost.into())),
        }
    }

    /// The lease's public IP and NIC in `location`: made there once; made anew when an
    /// earlier plan made them elsewhere.
    async fn network_in(&self, location: &str) -> Result<Addresses, ProviderError> {
        let made = self.made.lock().expect("made").clone();
        if let Some(made) = made {
            if made.location == location {
                return Ok(made);
            }
            vm::delete_network(self.arm, &self.paths).await?;
            *self.made.lock().expect("made") = None;
        }
        let (prepared, remembered) = self.shared_network(location).await?;
        let made = vm::create_network(
            self.arm,
            &self.paths,
            location,
            &prepared,
            !self.provider.settings.use_private_ip,
            &tags_of(&self.labels),
        )
        .await;
        let addresses = match made {
            Ok(addresses) => addresses,
            Err(e) if remembered && STALE_NETWORK.contains(&e.code()) => {
                // Deleted behind Crabbox's back: looked up again when the plan is retried.
                self.provider.networks.forget(location);
                self.networks.lock().await.remove(location);
                return Err(ProviderError::Transient(format!(
                    "the remembered shared network in {location} is gone: {}",
                    ProviderError::from(e)
                )));
            }
            Err(e) => return Err(e.into()),
        };
        *self.made.lock().expect("made") = Some(addresses.clone());
        Ok(addresses)
    }

    /// The location's shared network: this create's, else the one remembered for the same
    /// names, SSH sources and ports (10 minutes), else brought to what leases need now. Says
    /// whether it came from memory.
    async fn shared_network(&self, location: &str) -> Result<(Prepared, bool), ProviderError> {
        let mut networks = self.networks.lock().await;
        if let Some(p) = networks.get(location) {
            return Ok((p.clone(), false));
        }
        let net = self.provider.settings.network(location);
        let wanted = format!("{net:?} {:?} {:?}", self.sources, self.ports);
        let facts = &self.provider.networks;
        let (prepared, remembered) = match facts.get(location).prepared {
            Some((p, made_for)) if made_for == wanted => (p, true),
            _ => {
                let p = network::ensure(self.arm, &net, &self.sources, &self.ports).await?;
                facts.update(location, |f| f.prepared = Some((p.clone(), wanted)));
                (p, false)
            }
        };
        networks.insert(location.to_owned(), prepared.clone());
        Ok((prepared, remembered))
    }
}

/// A failure outside the VM's own create as the fallback driver sees it: throttling and lost
/// answers are tried again, anything else ends the create.
fn refusal(error: ProviderError) -> Refusal {
    let category = match &error {
        ProviderError::RateLimited(_) => Category::RateLimited,
        ProviderError::Transient(_) => Category::Transient,
        _ => Category::Fatal,
    };
    Refusal::new(category, "", error)
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
        self.check_supported(&req.capabilities, target)?;
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
        let os_profile = self.os_profile(&name, req, &ports, target)?;
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
            provider: self,
            arm,
            paths: Paths::new(arm, &settings.resource_group, &names),
            os_profile,
            names,
            sources,
            ports,
            image,
            windows: target == TargetOs::Windows,
            labels,
            networks: tokio::sync::Mutex::new(BTreeMap::new()),
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
    /// What this version cannot lease yet, refused before anything is made.
    fn check_supported(&self, caps: &Capabilities, target: TargetOs) -> Result<(), ProviderError> {
        let settings = &self.settings;
        if settings.backend != "vm" {
            return Err(ProviderError::InvalidSpec(format!(
                "azure backend {:?} is not supported by this version (vm is); set \
                 CRABBOX_AZURE_BACKEND=vm",
                settings.backend
            )));
        }
        if settings.os_disk == "ephemeral-preview" {
            return Err(ProviderError::InvalidSpec(
                "azure.osDisk ephemeral-preview is not supported by this version; use managed \
                 or ephemeral"
                    .into(),
            ));
        }
        if target == TargetOs::Windows && !caps.asked().is_empty() {
            return Err(ProviderError::InvalidSpec(
                "a desktop or browser on a Windows lease is not supported by this version (on \
                 linux it is)"
                    .into(),
            ));
        }
        match (target, settings.windows_mode) {
            (TargetOs::Linux, _) | (TargetOs::Windows, WindowsMode::Normal) => Ok(()),
            (TargetOs::Windows, mode) => Err(ProviderError::InvalidSpec(format!(
                "windows mode {mode} on azure is not supported by this version (normal is)"
            ))),
            (target, _) => Err(ProviderError::InvalidSpec(format!(
                "target {target} is not offered on azure (linux and windows are)"
            ))),
        }
    }

    /// The VM's OS profile: on Linux the SSH user with the lease's key and the cloud-init; on
    /// Windows the admin Azure requires (a random password nobody uses) and the bootstrap,
    /// which the bootstrap extension runs, that makes the SSH user with the lease's key.
    fn os_profile(
        &self,
        name: &str,
        req: &AcquireRequest,
        ports: &[u16],
        target: TargetOs,
    ) -> Result<Value, ProviderError> {
        let settings = &self.settings;
        let invalid = |e: String| ProviderError::InvalidSpec(e);
        if target == TargetOs::Windows {
            let script = WindowsBootstrap {
                user: &settings.ssh_user,
                public_key: &req.public_key,
                work_root: self.work_root(target),
                ssh_ports: ports,
            }
            .render()
            .map_err(|e| invalid(e.to_string()))?;
            return Ok(vm::windows_os_profile(
                &windows_computer_name(&req.lease_id),
                &windows::admin_password(),
                &script,
            ));
        }
        let optional =
            crabbox_providers::cloud::desktop::for_lease(&req.capabilities, &settings.ssh_user)?;
        let cloud_init = LinuxCloudInit {
            user: &settings.ssh_user,
            public_key: &req.public_key,
            work_root: &settings.work_root,
            ssh_ports: ports,
            units: &optional.units,
        }
        .render()
        .map_err(|e| invalid(e.to_string()))?;
        Ok(vm::linux_os_profile(
            name,
            &settings.ssh_user,
            &req.public_key,
            &cloud_init,
        ))
    }

    /// Where commands run: on Windows a Windows path (the configured one when it is one).
    fn work_root(&self, target: TargetOs) -> &str {
        let configured = &self.settings.work_root;
        if target == TargetOs::Windows && !configured.contains(':') {
            windows::DEFAULT_WORK_ROOT
        } else {
            configured
        }
    }

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

/// A Windows computer name (at most 15 characters): `cbx` and the lease id's hex.
fn windows_computer_name(lease_id: &str) -> String {
    let hex: String = lease_id
        .trim_start_matches("cbx_")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect();
    format!("cbx{hex}")
}

/// Labels as Azure tags: keys that start with `windows` are kept as `crabbox_windows…`.
fn tags_of(labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    labels
        .iter()
        .map(|(k, v)| {
            let key = if k.starts_with("windows") {
                format!("crabbox_{k}")
            } else {
                k.clone()
            };
            (key, v.clone())
        })
        .collect()
}

/// A resource's tags as labels (the inverse of [`tags_of`]).
fn labels_of(tags: &Value) -> BTreeMap<String, String> {
    tags.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            let key = k
                .strip_prefix("crabbox_")
                .filter(|k| k.starts_with("windows"));
            Some((key.unwrap_or(k).to_owned(), v.as_str()?.to_owned()))
        })
        .collect()
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
