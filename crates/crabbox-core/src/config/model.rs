//! The typed, resolved configuration that the rest of Crabbox reads.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::Secret;
use super::resolve::Entry;
use super::value::Value;

/// Every setting this version uses, resolved across all layers. Where each value came from is
/// in [`super::Resolved::origin`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub provider: String,
    pub class: String,
    /// An exact provider machine type; when set, class fallback is off.
    pub server_type: Option<String>,
    pub target: TargetOs,
    pub profile: String,
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshConfig {
    pub user: String,
    /// Key path as written; a leading `~` is expanded by the caller, which knows `$HOME`.
    pub key: String,
    pub port: u16,
    /// Ports tried after `port`; empty disables the fallback.
    pub fallback_ports: Vec<u16>,
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

/// The operating system of the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetOs {
    Linux,
    Macos,
    Windows,
}

impl TargetOs {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Linux => "linux",
            Self::Macos => "macos",
            Self::Windows => "windows",
        }
    }
}

impl fmt::Display for TargetOs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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

/// Reads typed values out of the resolved entries. Every key is present and was checked
/// against its kind when read, so a mismatch here is a bug in the key table.
struct Reader<'a>(&'a BTreeMap<&'static str, Entry>);

impl Reader<'_> {
    fn value(&self, key: &str) -> &Value {
        &self
            .0
            .get(key)
            .unwrap_or_else(|| panic!("config key {key} missing"))
            .value
    }

    fn text(&self, key: &str) -> String {
        match self.value(key) {
            Value::Text(text) => text.clone(),
            other => panic!("config key {key} holds {other:?}, not text"),
        }
    }

    fn optional(&self, key: &str) -> Option<String> {
        Some(self.text(key)).filter(|text| !text.is_empty())
    }

    fn port(&self, key: &str) -> Option<u16> {
        self.optional(key)
            .map(|text| text.parse().expect("ports are checked when read"))
    }

    fn flag(&self, key: &str) -> bool {
        match self.value(key) {
            Value::Bool(flag) => *flag,
            other => panic!("config key {key} holds {other:?}, not a boolean"),
        }
    }

    fn duration(&self, key: &str) -> Duration {
        match self.value(key) {
            Value::Duration(duration) => *duration,
            other => panic!("config key {key} holds {other:?}, not a duration"),
        }
    }

    fn count(&self, key: &str) -> u64 {
        match self.value(key) {
            Value::Count(count) => *count,
            other => panic!("config key {key} holds {other:?}, not a number"),
        }
    }

    fn list(&self, key: &str) -> Vec<String> {
        match self.value(key) {
            Value::List(items) => items.clone(),
            other => panic!("config key {key} holds {other:?}, not a list"),
        }
    }

    fn secret(&self, key: &str) -> Option<Secret> {
        match self.value(key) {
            Value::Secret(secret) => secret.clone(),
            other => panic!("config key {key} holds {other:?}, not a secret"),
        }
    }
}

impl Config {
    pub(crate) fn from_entries(entries: &BTreeMap<&'static str, Entry>) -> Self {
        let read = Reader(entries);
        let target = match read.text("target").as_str() {
            "macos" => TargetOs::Macos,
            "windows" => TargetOs::Windows,
            _ => TargetOs::Linux,
        };
        let mode = match read.text("broker.mode").as_str() {
            "registered" => BrokerMode::Registered,
            _ => BrokerMode::Managed,
        };
        let fallback_ports = read.list("ssh.fallbackPorts");
        Self {
            provider: read.text("provider"),
            class: read.text("class"),
            server_type: read.optional("serverType"),
            target,
            profile: read.text("profile"),
            ttl: read.duration("ttl"),
            idle_timeout: read.duration("idleTimeout"),
            work_root: read.text("workRoot"),
            ready_timeout: match read.value("readyTimeout") {
                Value::Duration(duration) => Some(*duration),
                _ => None,
            },
            ssh: SshConfig {
                user: read.text("ssh.user"),
                key: read.text("ssh.key"),
                port: read.port("ssh.port").expect("ssh.port has a default"),
                fallback_ports: fallback_ports
                    .iter()
                    .map(|port| port.parse().expect("ports are checked when read"))
                    .collect(),
            },
            sync: SyncConfig {
                delete: read.flag("sync.delete"),
                checksum: read.flag("sync.checksum"),
                git_seed: read.flag("sync.gitSeed"),
                fingerprint: read.flag("sync.fingerprint"),
                watch: read.flag("sync.watch"),
                base_ref: read.optional("sync.baseRef"),
                timeout: read.duration("sync.timeout"),
                warn_files: read.count("sync.warnFiles"),
                warn_bytes: read.count("sync.warnBytes"),
                fail_files: read.count("sync.failFiles"),
                fail_bytes: read.count("sync.failBytes"),
                allow_large: read.flag("sync.allowLarge"),
                exclude: read.list("sync.exclude"),
                include: read.list("sync.include"),
            },
            env_allow: read.list("env.allow"),
            static_host: StaticHostConfig {
                id: read.optional("static.id"),
                name: read.optional("static.name"),
                host: read.optional("static.host"),
                user: read.optional("static.user"),
                port: read.port("static.port"),
                work_root: read.optional("static.workRoot"),
            },
            coordinator: CoordinatorConfig {
                url: read.optional("coordinator"),
                token: read.secret("coordinatorToken"),
                admin_token: read.secret("broker.adminToken"),
                token_command: None,
                mode,
            },
        }
    }
}
