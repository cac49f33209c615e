//! What the Azure provider is configured with: the resolved `azure.*`, `capacity.*`, machine
//! and SSH settings (spec/providers.md §2.3), and the environment its credential and transport
//! read (`AZURE_CLIENT_SECRET`, `AZURE_AUTHORITY_HOST`, `SSL_CERT_FILE`): in direct mode the
//! CLI's, in brokered mode the coordinator's.

use std::collections::BTreeMap;
use std::time::Duration;

use crabbox_core::config::{CapacityConfig, Config};
use crabbox_core::machine::{Architecture, TargetOs, WindowsMode};
use crabbox_providers::ProviderError;
use crabbox_providers::cloud::cost::CostRates;

use crate::network::Network;

/// The variables of the environment the credential and the transport read; a coordinator
/// passes its own, tests theirs.
const ENV_VARS: &[&str] = &[
    "AZURE_CLIENT_SECRET",
    "AZURE_AUTHORITY_HOST",
    "SSL_CERT_FILE",
];

/// The images leases boot when `azure.image` is unset.
const LINUX_X86_64: &str = "Canonical:ubuntu-26_04-lts:server:latest";
const LINUX_ARM64: &str = "Canonical:ubuntu-26_04-lts:server-arm64:latest";
const WINDOWS: &str =
    "MicrosoftWindowsServer:windowsserver2022:2022-datacenter-smalldisk-g2:latest";

#[derive(Debug, Clone)]
pub struct AzureSettings {
    pub subscription_id: Option<String>,
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
    pub backend: String,
    /// The location VMs are created in first (`azure.location`).
    pub location: String,
    pub resource_group: String,
    /// `azure.image`, unset for the target's default.
    pub image: Option<String>,
    pub os_disk: String,
    pub os_disk_sku: String,
    pub vnet: String,
    pub subnet: String,
    pub nsg: String,
    /// Sources SSH is allowed from; empty means this machine's public address.
    pub ssh_cidrs: Vec<String>,
    /// Reach runners at their private address (`azure.network: private`).
    pub use_private_ip: bool,
    pub arm_endpoint: String,
    pub capacity: CapacityConfig,
    pub target: TargetOs,
    pub windows_mode: WindowsMode,
    pub architecture: Architecture,
    pub profile: String,
    pub ssh_user: String,
    pub ssh_port: u16,
    pub ssh_fallback_ports: Vec<u16>,
    pub work_root: String,
    pub cost_rates: CostRates,
    /// How long a VM may take to get its address after its create succeeded.
    pub address_wait: Duration,
    /// The variables of [`ENV_VARS`] that are set.
    pub env: BTreeMap<String, String>,
    /// Where the shared network's ids are remembered between processes (the state
    /// directory's `azure/`); memory only when `None` (a coordinator).
    pub cache_dir: Option<std::path::PathBuf>,
}

impl AzureSettings {
    /// The settings of a resolved configuration, the rest of the environment from `env`.
    pub fn from_config(
        config: &Config,
        cost_rates: CostRates,
        env: impl Fn(&str) -> Option<String>,
    ) -> Self {
        let azure = &config.azure;
        Self {
            subscription_id: azure.subscription_id.clone(),
            tenant_id: azure.tenant_id.clone(),
            client_id: azure.client_id.clone(),
            backend: azure.backend.clone(),
            location: azure.location.clone(),
            resource_group: azure.resource_group.clone(),
            image: azure.image.clone(),
            os_disk: azure.os_disk.clone(),
            os_disk_sku: azure.os_disk_sku.clone(),
            vnet: azure.vnet.clone(),
            subnet: azure.subnet.clone(),
            nsg: azure.nsg.clone(),
            ssh_cidrs: azure.ssh_cidrs.clone(),
            use_private_ip: azure.network == "private",
            arm_endpoint: azure.arm_endpoint.clone(),
            capacity: config.capacity.clone(),
            target: config.target,
            windows_mode: config.windows_mode,
            architecture: config.architecture,
            profile: config.profile.clone(),
            ssh_user: config.ssh.user.clone(),
            ssh_port: config.ssh.port,
            ssh_fallback_ports: config.ssh.fallback_ports.clone(),
            work_root: config.work_root.clone(),
            cost_rates,
            address_wait: Duration::from_mins(2),
            env: ENV_VARS
                .iter()
                .filter_map(|name| Some(((*name).to_owned(), env(name)?)))
                .collect(),
            cache_dir: None,
        }
    }

    /// What the credential and the transport read: the ids as resolved (Crabbox's variable,
    /// Azure's, the files), the rest from the environment the settings were made with.
    pub fn env(&self, name: &str) -> Option<String> {
        match name {
            "AZURE_TENANT_ID" => self.tenant_id.clone(),
            "AZURE_CLIENT_ID" => self.client_id.clone(),
            _ => self.env.get(name).cloned(),
        }
        .filter(|value| !value.trim().is_empty())
    }

    /// The subscription, or the error that says how to name one.
    pub fn subscription(&self) -> Result<&str, ProviderError> {
        self.subscription_id.as_deref().ok_or_else(|| {
            ProviderError::Auth(
                "no Azure subscription: set AZURE_SUBSCRIPTION_ID (or azure.subscriptionId) to \
                 the subscription leases are made in (`az account show --query id`)"
                    .into(),
            )
        })
    }

    /// The provider's location first, then the extra capacity regions, each once.
    pub fn locations(&self) -> Vec<String> {
        crabbox_providers::cloud::capacity::ordered_regions(&self.location, &self.capacity.regions)
    }

    /// The shared network of a location. With more than one location each gets a virtual
    /// network and security group of its own (`crabbox-vnet-westus2`): a network serves
    /// only its own location.
    pub fn network(&self, location: &str) -> Network {
        let regional = self.locations().len() > 1;
        let name = |base: &str| {
            if regional && !base.ends_with(&format!("-{location}")) {
                format!("{base}-{location}")
            } else {
                base.to_owned()
            }
        };
        Network {
            group: self.resource_group.clone(),
            location: location.to_owned(),
            vnet: name(&self.vnet),
            subnet: self.subnet.clone(),
            nsg: name(&self.nsg),
        }
    }

    /// The image leases boot: `azure.image`, else Ubuntu for the architecture or Windows
    /// Server.
    pub fn image(&self, target: TargetOs, architecture: Architecture) -> &str {
        if let Some(image) = &self.image {
            return image;
        }
        match (target, architecture) {
            (TargetOs::Windows, _) => WINDOWS,
            (_, Architecture::Arm64) => LINUX_ARM64,
            _ => LINUX_X86_64,
        }
    }

    /// The SSH ports sshd listens on, primary first.
    pub fn ssh_ports(&self) -> Vec<u16> {
        crabbox_providers::cloud::capacity::ssh_ports(self.ssh_port, &self.ssh_fallback_ports)
    }
}
