//! What the Hetzner provider is configured with: the resolved `hetzner.*`, `capacity.*`,
//! machine and SSH settings (spec/providers.md §2.1), and the API token from the environment
//! (`HCLOUD_TOKEN`, else `CRABBOX_HETZNER_TOKEN` or the old tool's `HETZNER_TOKEN`): in direct
//! mode the CLI's, in brokered mode the coordinator's.

use std::time::Duration;

use crabbox_core::config::{CapacityConfig, Config, Secret};
use crabbox_core::machine::{Architecture, TargetOs};
use crabbox_providers::cloud::cost::CostRates;

/// The variables the token is read from, in order.
pub const TOKEN_VARS: &[&str] = &["HCLOUD_TOKEN", "CRABBOX_HETZNER_TOKEN", "HETZNER_TOKEN"];

/// EUR → USD for Hetzner's prices, unless `CRABBOX_EUR_TO_USD` says otherwise.
const EUR_TO_USD: f64 = 1.08;

#[derive(Debug, Clone)]
pub struct HetznerSettings {
    pub token: Option<Secret>,
    /// The API base URL.
    pub endpoint: String,
    /// The location servers are created in first.
    pub location: String,
    pub image: String,
    pub capacity: CapacityConfig,
    pub target: TargetOs,
    pub architecture: Architecture,
    pub profile: String,
    pub ssh_user: String,
    pub ssh_port: u16,
    pub ssh_fallback_ports: Vec<u16>,
    pub work_root: String,
    pub cost_rates: CostRates,
    pub eur_to_usd: f64,
    /// How long a server's create action may take.
    pub action_wait: Duration,
}

impl HetznerSettings {
    /// The settings of a resolved configuration, the token from `env`.
    pub fn from_config(
        config: &Config,
        cost_rates: CostRates,
        env: impl Fn(&str) -> Option<String>,
    ) -> Self {
        let token = TOKEN_VARS
            .iter()
            .filter_map(|name| env(name))
            .map(|value| value.trim().to_owned())
            .find(|value| !value.is_empty())
            .map(Secret::new);
        let eur_to_usd = env("CRABBOX_EUR_TO_USD")
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|rate| rate.is_finite() && *rate > 0.0)
            .unwrap_or(EUR_TO_USD);
        let hetzner = &config.hetzner;
        Self {
            token,
            endpoint: hetzner.endpoint.clone(),
            location: hetzner.location.clone(),
            image: hetzner.image.clone(),
            capacity: config.capacity.clone(),
            target: config.target,
            architecture: config.architecture,
            profile: config.profile.clone(),
            ssh_user: config.ssh.user.clone(),
            ssh_port: config.ssh.port,
            ssh_fallback_ports: config.ssh.fallback_ports.clone(),
            work_root: config.work_root.clone(),
            cost_rates,
            eur_to_usd,
            action_wait: Duration::from_mins(5),
        }
    }

    /// The provider's location first, then the extra capacity regions, each once.
    pub fn locations(&self) -> Vec<String> {
        crabbox_providers::cloud::capacity::ordered_regions(&self.location, &self.capacity.regions)
    }

    /// The SSH ports sshd listens on, primary first.
    pub fn ssh_ports(&self) -> Vec<u16> {
        crabbox_providers::cloud::capacity::ssh_ports(self.ssh_port, &self.ssh_fallback_ports)
    }
}
