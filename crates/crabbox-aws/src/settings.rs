//! What the AWS provider is configured with: the resolved `aws.*`, `capacity.*`, machine and
//! SSH settings (spec/providers.md §2.2), in direct mode from the CLI's configuration, in
//! brokered mode from the coordinator's.

use std::time::Duration;

use crabbox_core::config::{CapacityConfig, Config};
use crabbox_core::machine::{Architecture, TargetOs, WindowsMode};
use crabbox_providers::cloud::cost::CostRates;

#[derive(Debug, Clone)]
pub struct AwsSettings {
    /// The region leases are made in first (`aws.region`).
    pub region: String,
    pub ami: Option<String>,
    pub security_group_id: Option<String>,
    pub subnet_id: Option<String>,
    pub instance_profile: Option<String>,
    pub root_gb: u32,
    /// The EC2 Mac Dedicated Host Mac leases launch on (`aws.macHostId`); unset, a free one.
    pub mac_host_id: Option<String>,
    /// Sources SSH is allowed from; empty means this machine's public address.
    pub ssh_cidrs: Vec<String>,
    /// Reach runners at their private address (from inside the VPC, or through a jump host).
    pub use_private_ip: bool,
    pub capacity: CapacityConfig,
    pub target: TargetOs,
    pub windows_mode: WindowsMode,
    pub architecture: Architecture,
    pub profile: String,
    pub ssh_user: String,
    pub ssh_port: u16,
    pub ssh_fallback_ports: Vec<u16>,
    pub work_root: String,
    /// `CRABBOX_COST_RATES_JSON`.
    pub cost_rates: CostRates,
    /// How long a launched instance may take to get its address.
    pub address_wait: Duration,
    /// Where the region facts are remembered between processes (direct mode: the state
    /// directory's `aws/`); memory only when `None` (a coordinator).
    pub cache_dir: Option<std::path::PathBuf>,
}

impl AwsSettings {
    /// The settings of a resolved configuration.
    pub fn from_config(config: &Config, cost_rates: CostRates) -> Self {
        let aws = &config.aws;
        Self {
            region: aws.region.clone(),
            ami: aws.ami.clone(),
            security_group_id: aws.security_group_id.clone(),
            subnet_id: aws.subnet_id.clone(),
            instance_profile: aws.instance_profile.clone(),
            root_gb: u32::try_from(aws.root_gb).unwrap_or(u32::MAX),
            mac_host_id: aws.mac_host_id.clone(),
            ssh_cidrs: aws.ssh_cidrs.clone(),
            use_private_ip: aws.use_private_ip,
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
            address_wait: Duration::from_mins(10),
            cache_dir: None,
        }
    }

    /// The provider's region first, then the extra capacity regions, each once.
    pub fn regions(&self) -> Vec<String> {
        crabbox_providers::cloud::capacity::ordered_regions(&self.region, &self.capacity.regions)
    }

    /// The SSH ports sshd listens on, primary first.
    pub fn ssh_ports(&self) -> Vec<u16> {
        crabbox_providers::cloud::capacity::ssh_ports(self.ssh_port, &self.ssh_fallback_ports)
    }
}
