//! One create of the `azure` provider: for each plan the fallback driver gives it, the shared
//! network of the plan's location (brought once, then remembered across plans and creates for
//! a while), the lease's public IP and NIC there (made once, moved when the location changes),
//! then the VM, followed until it runs. A VM whose create failed is deleted before the next
//! plan. What it made is in [`Create::made`] and its paths, so a failed create deletes it.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crabbox_providers::ProviderError;
use crabbox_providers::cloud::azure::errors::classify_create;
use crabbox_providers::cloud::{Category, Refusal, TryPlan};
use crabbox_providers::facts::FactsCache;
use serde_json::Value;

use crate::arm::{Arm, CallError};
use crate::network::{self, Prepared};
use crate::settings::AzureSettings;
use crate::tags::{LOCATION_LABEL, tags_of};
use crate::vm::{self, Addresses, Names, Paths, VmSpec};

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
pub(crate) struct NetworkFacts {
    #[serde(default)]
    prepared: Option<(Prepared, String)>,
}

/// The state of one create.
pub(crate) struct Create<'a> {
    pub settings: &'a AzureSettings,
    /// The shared networks remembered across creates.
    pub facts: &'a FactsCache<NetworkFacts>,
    pub arm: &'a Arm,
    pub names: Names,
    pub paths: Paths,
    pub sources: network::SshSources,
    pub ports: Vec<u16>,
    pub image: &'a str,
    /// A Windows VM, whose bootstrap the VM agent runs once the VM is made.
    pub windows: bool,
    pub os_profile: Value,
    pub labels: BTreeMap<String, String>,
    /// The lease's public IP and NIC, once made, and where.
    pub made: Mutex<Option<Addresses>>,
}

/// What a successful plan made.
pub(crate) struct Launched {
    pub vm: Value,
    pub addresses: Addresses,
}

impl Create<'_> {
    /// One plan: the network of its location, then the VM.
    pub async fn try_plan(&self, plan: TryPlan) -> Result<Launched, Refusal> {
        let addresses = self.network_in(&plan.region).await.map_err(refusal)?;
        let mut tags = self.labels.clone();
        tags.insert("server_type".into(), plan.server_type.clone());
        tags.insert("market".into(), plan.market.as_str().into());
        tags.insert(LOCATION_LABEL.into(), plan.region.clone());
        let settings = &self.settings;
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
            !self.settings.use_private_ip,
            &tags_of(&self.labels),
        )
        .await;
        let addresses = match made {
            Ok(addresses) => addresses,
            Err(e) if remembered && STALE_NETWORK.contains(&e.code()) => {
                // Deleted behind Crabbox's back: looked up again when the plan is retried.
                self.facts.forget(location);
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

    /// The location's shared network: the one remembered for the same names, SSH sources and
    /// ports (10 minutes; also what an earlier plan of this create brought), else brought to
    /// what leases need now. Says whether it came from memory.
    async fn shared_network(&self, location: &str) -> Result<(Prepared, bool), ProviderError> {
        let net = self.settings.network(location);
        let wanted = format!("{net:?} {:?} {:?}", self.sources, self.ports);
        let facts = self.facts;
        if let Some((p, made_for)) = facts.get(location).prepared
            && made_for == wanted
        {
            return Ok((p, true));
        }
        let p = network::ensure(self.arm, &net, &self.sources, &self.ports).await?;
        facts.update(location, |f| f.prepared = Some((p.clone(), wanted)));
        Ok((p, false))
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
