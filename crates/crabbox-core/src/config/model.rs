//! The typed, resolved configuration that the rest of Crabbox reads.

use std::fmt;
use std::time::Duration;

use super::secret::Secret;
pub use crate::machine::{Architecture, Market, MarketFallback, TargetOs, WindowsMode};

/// Every setting this version uses, resolved across all layers. Where each value came from is
/// in [`super::Resolved::origin`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub provider: String,
    pub class: String,
    /// An exact provider machine type; when set, class fallback is off.
    pub server_type: Option<String>,
    pub target: TargetOs,
    /// Only meaningful when `target` is Windows.
    pub windows_mode: WindowsMode,
    pub architecture: Architecture,
    pub profile: String,
    /// What a new lease offers beyond a shell.
    pub capabilities: Capabilities,
    pub ttl: Duration,
    pub idle_timeout: Duration,
    pub work_root: String,
    /// Readiness wait for new leases; `None` uses the provider's default.
    pub ready_timeout: Option<Duration>,
    pub ssh: SshConfig,
    pub sync: SyncConfig,
    /// Local environment variable names forwarded to the remote command.
    pub env_allow: Vec<String>,
    pub static_host: StaticHostConfig,
    pub coordinator: CoordinatorConfig,
    pub capacity: CapacityConfig,
    pub aws: AwsConfig,
    pub hetzner: HetznerConfig,
    pub azure: AzureConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshConfig {
    pub user: String,
    /// Key path as written; a leading `~` is expanded by the caller, which knows `$HOME`.
    pub key: String,
    pub port: u16,
    /// Ports tried after `port`; empty disables the fallback.
    pub fallback_ports: Vec<u16>,
    /// `ssh -J` destination for runners behind a bastion. At most one of this and
    /// `proxy_command` is set.
    pub proxy_jump: Option<String>,
    /// `ssh -o ProxyCommand=…` for runners reached through a custom command.
    pub proxy_command: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncConfig {
    pub delete: bool,
    pub checksum: bool,
    pub git_seed: bool,
    pub fingerprint: bool,
    /// Serve the fingerprint from a file watcher's cache when nothing changed (Linux).
    pub watch: bool,
    /// Unset means origin's HEAD branch, else the current branch.
    pub base_ref: Option<String>,
    pub timeout: Duration,
    pub warn_files: u64,
    pub warn_bytes: u64,
    pub fail_files: u64,
    pub fail_bytes: u64,
    pub allow_large: bool,
    pub exclude: Vec<String>,
    /// A whitelist; when non-empty, git seeding and the fingerprint are off.
    pub include: Vec<String>,
}

/// The static host used by `provider: ssh`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StaticHostConfig {
    pub id: Option<String>,
    pub name: Option<String>,
    pub host: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub work_root: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorConfig {
    pub url: Option<String>,
    /// Withheld (`None`) when the URL came from repo config but the token did not.
    pub token: Option<Secret>,
    pub admin_token: Option<Secret>,
    /// `CRABBOX_COORDINATOR_TOKEN_COMMAND`: a program (argv) whose stdout is the token; when
    /// set it is used instead of `token`. Environment only; withheld like `token`.
    pub token_command: Option<Vec<String>>,
    pub mode: BrokerMode,
}

/// How and where cloud machines are bought (spec/providers.md §2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapacityConfig {
    pub market: Market,
    pub fallback: MarketFallback,
    /// `most-available` and the other accepted words; kept for compatibility, no behaviour.
    pub strategy: String,
    /// Extra regions tried, in order, after the provider's own region.
    pub regions: Vec<String>,
    /// Preferred availability zones; each provider picks the one in the region it launches in.
    pub availability_zones: Vec<String>,
    /// Whether brokered leases carry advisory capacity hints.
    pub hints: bool,
}

/// The AWS provider's settings (spec/providers.md §2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsConfig {
    pub region: String,
    /// A pinned image; unset means the newest Canonical Ubuntu image for the architecture.
    pub ami: Option<String>,
    /// An existing security group; unset means `crabbox-runners` in the VPC, created if absent.
    pub security_group_id: Option<String>,
    /// Launch into this subnet instead of the default VPC.
    pub subnet_id: Option<String>,
    /// IAM instance profile name attached to runners.
    pub instance_profile: Option<String>,
    pub root_gb: u64,
    /// Who may reach runners' SSH ports; empty means the caller's own address.
    pub ssh_cidrs: Vec<String>,
    /// Connect to the instance's private address (VPN or peered VPC users).
    pub use_private_ip: bool,
    /// The EC2 Mac Dedicated Host that macOS runners are placed on.
    pub mac_host_id: Option<String>,
}

/// Hetzner Cloud settings (`hetzner.*`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HetznerConfig {
    /// The location servers are created in first (`fsn1`); `capacity.regions` adds more.
    pub location: String,
    /// A system image name (`ubuntu-24.04`) or a snapshot's numeric id.
    pub image: String,
    /// The API base URL (`https://api.hetzner.cloud/v1`).
    pub endpoint: String,
}

/// What a lease offers beyond a shell (`desktop`, `desktopEnv`, `browser`, `code`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    pub desktop: bool,
    /// `xfce`, `wayland`, `gnome` or `openbox`.
    pub desktop_env: String,
    pub browser: bool,
    pub code: bool,
}

/// Azure settings (`azure.*`, spec/providers.md §2.3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AzureConfig {
    pub subscription_id: Option<String>,
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
    /// `vm` (or `dynamic-sessions`, which this version refuses).
    pub backend: String,
    /// The location VMs are created in first (`eastus`); `capacity.regions` adds more.
    pub location: String,
    /// The group every lease's resources and the shared network live in.
    pub resource_group: String,
    /// `Publisher:Offer:SKU:Version`; `None` means the default for the target.
    pub image: Option<String>,
    /// `managed`, `ephemeral`, `ephemeral-preview` or `auto`.
    pub os_disk: String,
    /// The managed OS disk's storage type (`StandardSSD_LRS`).
    pub os_disk_sku: String,
    pub vnet: String,
    pub subnet: String,
    pub nsg: String,
    /// Who may reach runners' SSH ports; empty means the caller's own address.
    pub ssh_cidrs: Vec<String>,
    /// `public` or `private`: the address SSH connects to.
    pub network: String,
    /// The Resource Manager endpoint (`https://management.azure.com`).
    pub arm_endpoint: String,
}

/// How leases are obtained when a coordinator is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerMode {
    /// The coordinator creates and owns the machines.
    Managed,
    /// Machines register themselves with the coordinator.
    Registered,
}

impl BrokerMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Managed => "managed",
            Self::Registered => "registered",
        }
    }
}

impl fmt::Display for BrokerMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
