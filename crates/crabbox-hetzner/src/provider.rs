//! The `hetzner` provider: a lease is one Hetzner Cloud server booted by the Crabbox
//! cloud-init, with its own SSH key, named and labelled after the lease.
//!
//! A create, in order: the candidate types (class or `--type`) and the locations (the
//! provider's, then `capacity.regions`); the lease's SSH key; then the fallback driver tries
//! each type in each location (`create::Create::try_plan`); the server's create action is
//! followed to the end. Anything that fails after something was created deletes what this
//! create made (server, key) before it returns the error. Hetzner has no spot market.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use crabbox_core::machine::{Market, MarketFallback, WindowsMode};
use crabbox_providers::cloud::cloud_init::LinuxCloudInit;
use crabbox_providers::cloud::cost::hourly_price;
use crabbox_providers::cloud::hetzner::CATALOG;
use crabbox_providers::cloud::labels::{self, LeaseLabels};
use crabbox_providers::cloud::names::{provider_key_name, resource_name};
use crabbox_providers::cloud::{
    Backoff, CapacityPlan, Category, MachineRequest, Provisioned, SystemPacing, provision,
};
use crabbox_providers::{AcquireRequest, Capability, Health, LeaseRecord, Provider, ProviderError};

use crate::api::{self, Server};
use crate::client::Hcloud;
use crate::create::{self, Create, KEY_LABEL, LOCATION_LABEL, Launched};
use crate::settings::HetznerSettings;

/// How long a server found without its create action may take to be running.
const SERVER_WAIT: Duration = Duration::from_mins(5);

/// The Hetzner Cloud provider.
#[derive(Debug)]
pub struct HetznerProvider {
    settings: HetznerSettings,
    /// `None` without a token: every call then says which variable to set.
    api: Option<Hcloud>,
}

impl HetznerProvider {
    pub fn new(settings: HetznerSettings) -> Result<Self, ProviderError> {
        let api = match &settings.token {
            Some(token) => Some(Hcloud::new(&settings.endpoint, token.clone())?),
            None => None,
        };
        Ok(Self { settings, api })
    }

    pub fn settings(&self) -> &HetznerSettings {
        &self.settings
    }

    /// The API client, or the error that says how to get one.
    pub fn api(&self) -> Result<&Hcloud, ProviderError> {
        self.api.as_ref().ok_or_else(|| {
            ProviderError::Auth(
                "no Hetzner Cloud API token: set HCLOUD_TOKEN to a read-write API token of the \
                 project (Cloud Console → Security → API tokens)"
                    .into(),
            )
        })
    }

    /// Crabbox's servers in the project (every location: the API lists them all).
    pub async fn servers(&self) -> Result<Vec<Server>, ProviderError> {
        let selector = "crabbox=true,provider=hetzner";
        Ok(api::servers(self.api()?, &[("label_selector", selector)]).await?)
    }

    /// A lease's record from its server: everything but what only the create knows (attempts,
    /// price) comes from the server's labels.
    fn record(&self, server: &Server, address: &str) -> LeaseRecord {
        let mut labels = server.labels.clone();
        labels.insert(LOCATION_LABEL.into(), server.location());
        let label = |key: &str| labels.get(key).cloned().unwrap_or_default();
        let number = |key: &str| label(key).parse::<u64>().unwrap_or(0);
        let ports = self.settings.ssh_ports();
        LeaseRecord {
            lease_id: label("lease"),
            slug: label("slug"),
            provider: "hetzner".into(),
            server_id: server.id.to_string(),
            server_type: server.server_type.name.clone(),
            ssh_host: address.to_owned(),
            ssh_user: self.settings.ssh_user.clone(),
            ssh_port: ports[0],
            ssh_fallback_ports: ports[1..].to_vec(),
            work_root: self.settings.work_root.clone(),
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

    /// Waits until a launched server is running and has its address: its create action
    /// followed to the end, or (found by name) the server itself polled.
    async fn running(&self, launched: Launched) -> Result<(Server, String), ProviderError> {
        let api = self.api()?;
        let Launched { mut server, action } = launched;
        // A finished create action means a started server (`start_after_create`), whatever the
        // create's answer said its status was then.
        let mut started = false;
        if let Some(action) = action {
            api::wait_for_action(api, action, self.settings.action_wait).await?;
            started = true;
        }
        let deadline = Instant::now() + SERVER_WAIT;
        loop {
            if let Some(ip) = server.ipv4().map(str::to_owned)
                && (started || server.status == "running")
            {
                return Ok((server, ip));
            }
            if Instant::now() >= deadline {
                return Err(ProviderError::Transient(format!(
                    "Hetzner server {} is {} without an address after {SERVER_WAIT:?}",
                    server.id, server.status
                )));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            server = api::server(api, server.id).await?.ok_or_else(|| {
                ProviderError::Transient(format!("Hetzner server {} went away", server.id))
            })?;
        }
    }

    /// The lease's SSH key, deleted by the id its server's labels carry, else found by name.
    async fn delete_key(
        &self,
        labels: &BTreeMap<String, String>,
        lease_id: &str,
    ) -> Result<(), ProviderError> {
        let api = self.api()?;
        if let Some(id) = labels.get(KEY_LABEL).and_then(|id| id.parse::<u64>().ok()) {
            return Ok(api::delete_key(api, id).await?);
        }
        let name =
            provider_key_name(lease_id).map_err(|e| ProviderError::InvalidSpec(e.to_string()))?;
        if let Some(key) = api::key_named(api, &name).await? {
            api::delete_key(api, key.id).await?;
        }
        Ok(())
    }

    /// Deletes every server labelled with the lease (a failed create whose answers were
    /// lost); failures are logged, the create's error wins.
    async fn delete_tagged(&self, lease_id: &str) {
        let Ok(api) = self.api() else { return };
        let selector = format!("crabbox=true,lease={lease_id}");
        let found = api::servers(api, &[("label_selector", &selector)])
            .await
            .unwrap_or_default();
        for server in found {
            if let Err(e) = api::delete_server(api, server.id).await {
                tracing::warn!(server = server.id, error = %ProviderError::from(e), "could not delete a server of a failed create");
            }
        }
    }

    /// After the launch: running, the price, the record.
    async fn finish(
        &self,
        launched: Provisioned<Launched>,
    ) -> Result<LeaseRecord, (u64, ProviderError)> {
        let Provisioned {
            value,
            plan,
            attempts,
        } = launched;
        let id = value.server.id;
        let (server, address) = self.running(value).await.map_err(|e| (id, e))?;
        let api = self.api().map_err(|e| (id, e))?;
        let live = api::hourly_eur(api, &plan.server_type, &plan.region)
            .await
            .map(|eur| eur * self.settings.eur_to_usd);
        let price = hourly_price(
            "hetzner",
            &plan.server_type,
            &self.settings.cost_rates,
            live,
        );
        Ok(LeaseRecord {
            provisioning_attempts: attempts,
            hourly_usd: Some(price.usd),
            price_source: format!("{:?}", price.source).to_ascii_lowercase(),
            ..self.record(&server, &address)
        })
    }
}

#[async_trait]
impl Provider for HetznerProvider {
    fn name(&self) -> &'static str {
        "hetzner"
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

    async fn acquire(&self, req: &AcquireRequest) -> Result<LeaseRecord, ProviderError> {
        let settings = &self.settings;
        let api = self.api()?;
        if req.machine.market == Some(Market::Spot) {
            return Err(ProviderError::InvalidSpec(
                "Hetzner Cloud has no spot market: its servers are always on-demand; drop \
                 --market spot"
                    .into(),
            ));
        }
        let architecture = req.machine.architecture.unwrap_or(settings.architecture);
        let candidates = CATALOG.candidates(&MachineRequest {
            class: &req.class,
            server_type: req.machine.server_type.as_deref(),
            target: settings.target,
            windows_mode: WindowsMode::Normal,
            architecture,
        })?;
        let plan = CapacityPlan::new(
            Market::OnDemand,
            MarketFallback::None,
            &settings.location,
            &settings.capacity.regions,
            &[],
        )?;
        let ports = settings.ssh_ports();
        let optional =
            crabbox_providers::cloud::desktop::for_lease(&req.capabilities, &settings.ssh_user)?;
        let user_data = LinuxCloudInit {
            user: &settings.ssh_user,
            public_key: &req.public_key,
            work_root: &settings.work_root,
            ssh_ports: &ports,
            units: &optional.units,
        }
        .render()
        .map_err(|e| ProviderError::InvalidSpec(e.to_string()))?;
        let mut labels = LeaseLabels {
            provider: "hetzner",
            lease_id: &req.lease_id,
            slug: &req.slug,
            class: &req.class,
            profile: &settings.profile,
            server_type: "",
            target: settings.target,
            windows_mode: WindowsMode::Normal,
            market: Some(Market::OnDemand),
            keep: req.keep,
            created_at: now_secs(),
            ttl_secs: req.ttl_secs,
            idle_timeout_secs: req.idle_timeout_secs,
        }
        .render();
        labels.extend(optional.labels);
        let key = create::ensure_key(api, req, &labels).await?;
        let create = Create {
            api,
            lease_id: &req.lease_id,
            name: resource_name(&req.lease_id, &req.slug),
            image: &settings.image,
            key,
            user_data,
            labels,
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
            Ok(launched) => self.finish(launched).await.map_err(|(id, e)| (Some(id), e)),
            Err(failure) => {
                // A create whose answer never came may have made a server all the same.
                let unanswered = failure
                    .attempts
                    .iter()
                    .any(|a| a.category == Category::Transient);
                if unanswered {
                    self.delete_tagged(&req.lease_id).await;
                }
                Err((None, failure.error))
            }
        };
        match outcome {
            Ok(record) => Ok(record),
            Err((server, error)) => {
                if let Some(id) = server
                    && let Err(e) = api::delete_server(api, id).await
                {
                    tracing::warn!(server = id, error = %ProviderError::from(e), "could not delete a failed create's server");
                }
                if let Err(e) = api::delete_key(api, create.key.id).await {
                    tracing::warn!(key = create.key.id, error = %ProviderError::from(e), "could not delete a failed create's SSH key");
                }
                Err(error)
            }
        }
    }

    async fn health(&self, lease: &LeaseRecord) -> Health {
        let (Ok(api), Ok(id)) = (self.api(), lease.server_id.parse::<u64>()) else {
            return Health::Unknown;
        };
        match api::server(api, id).await {
            Ok(None) => Health::Gone(format!("Hetzner server {id} not found")),
            Ok(Some(server)) if server.status == "deleting" => {
                Health::Gone(format!("Hetzner server {id} is being deleted"))
            }
            Ok(Some(_)) => Health::Alive,
            Err(_) => Health::Unknown,
        }
    }

    /// Deletes the lease's SSH key, then its server (so a failed key delete leaves the
    /// server reachable to try again). A record without a server id (an orphan known only by
    /// its lease id) finds its servers by label. Both tolerate "already gone".
    async fn release(&self, lease: &LeaseRecord) -> Result<(), ProviderError> {
        let api = self.api()?;
        self.delete_key(&lease.labels, &lease.lease_id).await?;
        if let Ok(id) = lease.server_id.parse::<u64>() {
            return Ok(api::delete_server(api, id).await?);
        }
        let selector = format!("crabbox=true,provider=hetzner,lease={}", lease.lease_id);
        for server in api::servers(api, &[("label_selector", &selector)]).await? {
            api::delete_server(api, server.id).await?;
        }
        Ok(())
    }

    async fn inventory(&self) -> Result<Vec<String>, ProviderError> {
        let mut leases: Vec<String> = self
            .servers()
            .await?
            .into_iter()
            .filter_map(|s| s.labels.get("lease").cloned())
            .collect();
        leases.sort();
        leases.dedup();
        Ok(leases)
    }

    /// The server an interrupted create made for the lease, found by its `lease` label
    /// (its name made sure there is at most one), once it runs.
    async fn adopt(&self, lease_id: &str) -> Result<Option<LeaseRecord>, ProviderError> {
        let api = self.api()?;
        let selector = format!("crabbox=true,provider=hetzner,lease={lease_id}");
        let found = api::servers(api, &[("label_selector", &selector)]).await?;
        let Some(server) = found.into_iter().find(|s| s.status != "deleting") else {
            return Ok(None);
        };
        let (server, address) = self
            .running(Launched {
                server,
                action: None,
            })
            .await?;
        Ok(Some(self.record(&server, &address)))
    }

    /// `PUT /servers/{id}` with the heartbeat's labels. Hetzner replaces a server's labels
    /// whole: a record made from the server carries all of them; one that does not (rebuilt
    /// from a coordinator's lease) has them read from the server first.
    async fn touch(&self, lease: &LeaseRecord) -> Result<(), ProviderError> {
        let api = self.api()?;
        let id = lease.server_id.parse::<u64>().map_err(|_| {
            ProviderError::InvalidSpec(format!("not a Hetzner server id: {:?}", lease.server_id))
        })?;
        let labels = if labels::is_whole_set(&lease.labels) {
            lease.labels.clone()
        } else {
            api::server(api, id)
                .await?
                .ok_or_else(|| ProviderError::NotFound(format!("Hetzner server {id}")))?
                .labels
        };
        let labels = labels::heartbeat(labels, lease.idle_timeout_secs, now_secs());
        Ok(api::set_labels(api, id, &labels).await?)
    }

    async fn runners(&self) -> Result<Vec<LeaseRecord>, ProviderError> {
        Ok(self
            .servers()
            .await?
            .iter()
            .map(|server| LeaseRecord {
                state: server.status.clone(),
                ..self.record(server, server.ipv4().unwrap_or_default())
            })
            .collect())
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
