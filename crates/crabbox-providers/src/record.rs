//! Lease records as direct mode stores them in local claims.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A request for a new lease.
#[derive(Debug, Clone)]
pub struct AcquireRequest {
    pub lease_id: String,
    pub slug: String,
    pub class: String,
    pub public_key: String,
    pub ttl_secs: u64,
    pub idle_timeout_secs: u64,
    pub keep: bool,
    /// The machine asked for beyond the class, where the provider has a choice: an exact type
    /// (`--type`, no fallback), the market to try first and the architecture (`--market`,
    /// `--arch`). `None` means the provider's configured default.
    pub machine: MachineChoice,
    /// What the lease offers beyond a shell (`--desktop`, `--browser`, `--code`).
    pub capabilities: Capabilities,
}

/// One thing a lease may offer beyond a shell (spec/providers.md §5), as its label names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    Desktop,
    Browser,
    Code,
}

impl Capability {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Desktop => "desktop",
            Self::Browser => "browser",
            Self::Code => "code",
        }
    }
}

/// Where a lease's desktop and browser are, as its labels say: `desktop`, `desktop_env`,
/// `browser`, and where they differ from a cloud runner's (spec/providers.md §5: display `:99`,
/// VNC on 5900, `/var/lib/crabbox/vnc.password`, `crabbox-browser`) `desktop_display`,
/// `vnc_port`, `vnc_password_file`, `browser_bin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseDesktop {
    /// `None` when the lease has no desktop.
    pub display: Option<String>,
    pub desktop_env: String,
    pub vnc_port: u16,
    pub vnc_password_file: String,
    /// `None` when the lease has no browser.
    pub browser: Option<String>,
}

impl LeaseDesktop {
    /// The labels of a lease with this desktop and browser.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::new();
        if let Some(display) = &self.display {
            labels.insert("desktop".into(), "true".into());
            labels.insert("desktop_env".into(), self.desktop_env.clone());
            labels.insert("desktop_display".into(), display.clone());
            labels.insert("vnc_port".into(), self.vnc_port.to_string());
            labels.insert("vnc_password_file".into(), self.vnc_password_file.clone());
        }
        if let Some(browser) = &self.browser {
            labels.insert("browser".into(), "true".into());
            labels.insert("browser_bin".into(), browser.clone());
        }
        labels
    }

    /// A lease's desktop and browser from its labels, a cloud runner's defaults where they
    /// do not say.
    pub fn of(record: &LeaseRecord) -> Self {
        let label = |key: &str| record.labels.get(key).filter(|v| !v.is_empty());
        let on = |key: &str| label(key).is_some_and(|v| v == "true");
        Self {
            display: on("desktop").then(|| {
                label("desktop_display")
                    .map_or(":99", String::as_str)
                    .to_owned()
            }),
            desktop_env: label("desktop_env")
                .map_or("xfce", String::as_str)
                .to_owned(),
            vnc_port: label("vnc_port")
                .and_then(|p| p.parse().ok())
                .unwrap_or(5900),
            vnc_password_file: label("vnc_password_file")
                .map_or("/var/lib/crabbox/vnc.password", String::as_str)
                .to_owned(),
            browser: on("browser").then(|| {
                label("browser_bin")
                    .map_or("/usr/local/bin/crabbox-browser", String::as_str)
                    .to_owned()
            }),
        }
    }
}

/// What a lease asks to offer beyond a shell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub desktop: bool,
    /// The desktop environment the user chose (`xfce`, `openbox`…); `None` means the
    /// provider's own.
    pub desktop_env: Option<String>,
    pub browser: bool,
    pub code: bool,
}

impl Capabilities {
    /// Each capability asked for.
    pub fn asked(&self) -> Vec<Capability> {
        [
            (self.desktop, Capability::Desktop),
            (self.browser, Capability::Browser),
            (self.code, Capability::Code),
        ]
        .into_iter()
        .filter_map(|(asked, c)| asked.then_some(c))
        .collect()
    }
}

/// `--type`, `--market`, `--arch` of a lease request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MachineChoice {
    pub server_type: Option<String>,
    pub market: Option<crabbox_core::machine::Market>,
    pub architecture: Option<crabbox_core::machine::Architecture>,
    /// The image to boot and the region it is in (a coordinator's promoted image); `None`
    /// means the provider's own choice.
    pub image: Option<ImageChoice>,
    /// The target OS; `None` means the provider's configured one (a coordinator passes each
    /// lease's).
    pub target: Option<crabbox_core::machine::TargetOs>,
    /// The EC2 Mac Dedicated Host to launch on (`aws.macHostId`); `None` lets the provider pick
    /// a free one.
    pub host_id: Option<String>,
}

/// A provider image a lease boots, in its region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageChoice {
    pub id: String,
    pub region: String,
}

/// One lease, as a provider created it and the CLI tracks it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseRecord {
    #[serde(rename = "leaseID")]
    pub lease_id: String,
    pub slug: String,
    pub provider: String,
    pub server_id: String,
    pub server_type: String,
    pub ssh_host: String,
    pub ssh_user: String,
    pub ssh_port: u16,
    #[serde(default)]
    pub ssh_fallback_ports: Vec<u16>,
    /// Host key line the provider vouches for (`ssh-ed25519 AAAA…`), if any.
    #[serde(default)]
    pub ssh_host_key: Option<String>,
    /// Key file for static hosts; managed leases use their per-lease key.
    #[serde(default)]
    pub ssh_key: Option<String>,
    /// The jump host or proxy command the runner is reached through, as configured when the
    /// lease was made (later commands reach it the same way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_proxy: Option<crabbox_remote::ssh::SshProxy>,
    pub work_root: String,
    pub keep: bool,
    #[serde(default)]
    pub repo_root: Option<String>,
    /// Unix seconds.
    pub created_at: u64,
    pub last_touched_at: u64,
    pub ttl_secs: u64,
    pub idle_timeout_secs: u64,
    /// `ready` or `running`.
    pub state: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Every launch a cloud provider tried before this one succeeded (type, market, region,
    /// error), as `inspect` shows them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provisioning_attempts: Vec<crate::cloud::ProvisioningAttempt>,
    /// What the runner costs per hour, in USD, and where the price came from
    /// (`configured`, `live`, `table`, `default`); absent where nothing is charged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hourly_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub price_source: String,
}

impl LeaseRecord {
    /// The runner's OS as its `target` label says; `None` when it has none (a static host,
    /// an older claim).
    pub fn target(&self) -> Option<crabbox_core::machine::TargetOs> {
        crabbox_core::machine::TargetOs::parse(self.labels.get("target")?).ok()
    }

    /// A coordinator lease as a provider (and the CLI's claims) see it.
    pub fn from_coordinator(lease: &crabbox_api::coord::Lease) -> Self {
        let secs = |t: crabbox_api::coord::Timestamp| u64::try_from(t.millis() / 1000).unwrap_or(0);
        Self {
            lease_id: lease.id.clone(),
            slug: lease.slug.clone(),
            provider: lease.provider.clone(),
            server_id: lease.cloud_id.clone(),
            server_type: lease.server_type.clone(),
            ssh_host: lease.host.clone(),
            ssh_user: lease.ssh_user.clone(),
            ssh_port: lease.ssh_port.parse().unwrap_or(22),
            ssh_fallback_ports: lease
                .ssh_fallback_ports
                .iter()
                .filter_map(|p| p.parse().ok())
                .collect(),
            ssh_host_key: lease.ssh_host_key.clone(),
            ssh_key: None,
            ssh_proxy: None,
            work_root: lease.work_root.clone(),
            keep: lease.keep,
            repo_root: None,
            created_at: secs(lease.created_at),
            last_touched_at: secs(lease.last_touched_at),
            ttl_secs: lease.ttl_seconds,
            idle_timeout_secs: lease.idle_timeout_seconds,
            state: "ready".into(),
            // Where the runner is, under the label its provider reads it from.
            labels: match lease.provider.as_str() {
                _ if lease.region.is_empty() => BTreeMap::default(),
                "hetzner" => [("hetzner_location".to_owned(), lease.region.clone())].into(),
                "azure" => [("azure_location".to_owned(), lease.region.clone())].into(),
                _ => [("aws_region".to_owned(), lease.region.clone())].into(),
            },
            provisioning_attempts: Vec::new(),
            hourly_usd: (lease.estimated_hourly_usd > 0.0).then_some(lease.estimated_hourly_usd),
            price_source: String::new(),
        }
    }

    /// `min(created + ttl, last_touched + idle)`.
    pub fn expires_at(&self) -> u64 {
        (self.created_at + self.ttl_secs).min(self.last_touched_at + self.idle_timeout_secs)
    }

    pub fn expired(&self, now: u64) -> bool {
        now >= self.expires_at()
    }
}
