//! The table of configuration keys this version understands: canonical dotted name, aliases,
//! value kind, default and environment variables. Everything else in `config` is driven by it.

use std::time::Duration;

use super::error::ValueError;
use super::value::{Kind, Value, check_cidr};
use crate::machine::{Architecture, Market, MarketFallback, TargetOs, WindowsMode};

/// Accepted values of `broker.mode`.
pub(crate) const BROKER_MODES: &[&str] = &["managed", "registered"];
/// Accepted values of `desktopEnv`: the cloud desktops of the spec, and the light one the
/// local provider runs.
pub(crate) const DESKTOP_ENVS: &[&str] = &["xfce", "wayland", "gnome", "openbox"];
/// Accepted values of `azure.backend`; only `vm` leases yet.
pub(crate) const AZURE_BACKENDS: &[&str] = &["vm", "dynamic-sessions"];
/// Accepted values of `azure.osDisk`.
pub(crate) const AZURE_OS_DISKS: &[&str] = &["managed", "ephemeral", "ephemeral-preview", "auto"];
/// Accepted values of `azure.network`: which address SSH uses.
pub(crate) const AZURE_NETWORKS: &[&str] = &["public", "private"];
/// Accepted values of `capacity.strategy`. Recorded for compatibility; no provider uses it yet.
pub(crate) const CAPACITY_STRATEGIES: &[&str] = &[
    "most-available",
    "price-capacity-optimized",
    "capacity-optimized",
    "sequential",
];

/// The machine words are kept in their canonical spelling, so `config show` and every reader
/// see `x86_64` whether the file said `amd64` or not.
fn target(text: &str) -> Result<Value, ValueError> {
    Ok(Value::Text(TargetOs::parse(text)?.as_str().to_owned()))
}

fn windows_mode(text: &str) -> Result<Value, ValueError> {
    Ok(Value::Text(WindowsMode::parse(text)?.as_str().to_owned()))
}

fn architecture(text: &str) -> Result<Value, ValueError> {
    Ok(Value::Text(Architecture::parse(text)?.as_str().to_owned()))
}

fn market(text: &str) -> Result<Value, ValueError> {
    Ok(Value::Text(Market::parse(text)?.as_str().to_owned()))
}

fn market_fallback(text: &str) -> Result<Value, ValueError> {
    Ok(Value::Text(MarketFallback::parse(text)?.to_string()))
}

/// EC2 gp3 volumes hold 1 to 16,384 GiB; below 8 GiB no Ubuntu image fits.
fn root_gib(text: &str) -> Result<Value, ValueError> {
    match text.parse::<u64>() {
        Ok(gib) if (8..=16_384).contains(&gib) => Ok(Value::Count(gib)),
        _ => Err(ValueError::NotInRange {
            value: text.to_owned(),
            range: "8 to 16384 (GiB)",
        }),
    }
}

const GIB: u64 = 1024 * 1024 * 1024;

/// A compiled default, kept `const` so the table stays one static array.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Preset {
    /// Empty text, empty list or a missing secret.
    Unset,
    Text(&'static str),
    Bool(bool),
    Minutes(u64),
    Count(u64),
    List(&'static [&'static str]),
}

/// One configuration key.
#[derive(Debug)]
pub(crate) struct KeySpec {
    /// Canonical dotted camelCase name, as `config show` prints it.
    pub key: &'static str,
    /// Other spellings accepted in files and flags. The canonical name wins if a file sets both.
    pub aliases: &'static [&'static str],
    pub kind: Kind,
    pub default: Preset,
    /// Environment variables, highest priority first.
    pub env: &'static [&'static str],
}

impl KeySpec {
    pub(crate) fn default_value(&self) -> Value {
        match (self.default, self.kind) {
            (Preset::Unset, Kind::Secret) => Value::Secret(None),
            (Preset::Unset, Kind::List | Kind::PortList | Kind::ListOf(_)) => {
                Value::List(Vec::new())
            }
            (Preset::Unset, _) => Value::Text(String::new()),
            (Preset::Text(text), _) => Value::Text(text.to_owned()),
            (Preset::Bool(flag), _) => Value::Bool(flag),
            (Preset::Minutes(minutes), _) => Value::Duration(Duration::from_mins(minutes)),
            (Preset::Count(count), _) => Value::Count(count),
            (Preset::List(items), _) => {
                Value::List(items.iter().map(|item| (*item).to_owned()).collect())
            }
        }
    }
}

const fn key(
    key: &'static str,
    kind: Kind,
    default: Preset,
    env: &'static [&'static str],
) -> KeySpec {
    KeySpec {
        key,
        aliases: &[],
        kind,
        default,
        env,
    }
}

const fn aliased(
    key: &'static str,
    aliases: &'static [&'static str],
    kind: Kind,
    default: Preset,
    env: &'static [&'static str],
) -> KeySpec {
    KeySpec {
        key,
        aliases,
        kind,
        default,
        env,
    }
}

/// Every key this version uses (spec/cli-dataplane.md §3.2).
pub(crate) const KEYS: &[KeySpec] = &[
    // The architecture's embedded default: with nothing configured, leases are local `sshd`s.
    // This deliberately differs from the old tool, which had no actionable default provider.
    // `broker.provider` is where `login --provider` records the provider (spec §3.1 lists it
    // among the ways to select one); like the old tool, login writes both spellings.
    aliased(
        "provider",
        &["broker.provider"],
        Kind::Text,
        Preset::Text("local"),
        &["CRABBOX_PROVIDER"],
    ),
    key(
        "class",
        Kind::Text,
        Preset::Text("beast"),
        &["CRABBOX_DEFAULT_CLASS"],
    ),
    key(
        "serverType",
        Kind::Text,
        Preset::Unset,
        &["CRABBOX_SERVER_TYPE"],
    ),
    aliased(
        "target",
        &["targetOS"],
        Kind::Parsed(target),
        Preset::Text("linux"),
        &["CRABBOX_TARGET", "CRABBOX_TARGET_OS"],
    ),
    key(
        "windows.mode",
        Kind::Parsed(windows_mode),
        Preset::Text("normal"),
        &["CRABBOX_WINDOWS_MODE"],
    ),
    // The old tool's default was spelled `amd64`; both spellings read as x86_64.
    key(
        "architecture",
        Kind::Parsed(architecture),
        Preset::Text("x86_64"),
        &["CRABBOX_ARCH"],
    ),
    key(
        "profile",
        Kind::Text,
        Preset::Text("default"),
        &["CRABBOX_PROFILE"],
    ),
    // What a new lease offers beyond a shell (spec/providers.md §5); a lease cannot gain them
    // later.
    key(
        "desktop",
        Kind::Bool,
        Preset::Bool(false),
        &["CRABBOX_DESKTOP"],
    ),
    key(
        "desktopEnv",
        Kind::OneOf(DESKTOP_ENVS, "xfce, wayland, gnome or openbox"),
        Preset::Text("xfce"),
        &["CRABBOX_DESKTOP_ENV"],
    ),
    key(
        "browser",
        Kind::Bool,
        Preset::Bool(false),
        &["CRABBOX_BROWSER"],
    ),
    key("code", Kind::Bool, Preset::Bool(false), &["CRABBOX_CODE"]),
    aliased(
        "ttl",
        &["lease.ttl"],
        Kind::Duration,
        Preset::Minutes(90),
        &["CRABBOX_TTL"],
    ),
    aliased(
        "idleTimeout",
        &["lease.idleTimeout"],
        Kind::Duration,
        Preset::Minutes(30),
        &["CRABBOX_IDLE_TIMEOUT"],
    ),
    key(
        "workRoot",
        Kind::Text,
        Preset::Text(super::DEFAULT_WORK_ROOT),
        &["CRABBOX_WORK_ROOT"],
    ),
    // How long a new lease may take to accept SSH; unset means the provider's default
    // (30s for local, 20m for remote runners).
    key(
        "readyTimeout",
        Kind::Duration,
        Preset::Unset,
        &["CRABBOX_READY_TIMEOUT"],
    ),
    key(
        "ssh.user",
        Kind::Text,
        Preset::Text(super::DEFAULT_SSH_USER),
        &["CRABBOX_SSH_USER"],
    ),
    key(
        "ssh.key",
        Kind::Text,
        Preset::Text("~/.ssh/id_ed25519"),
        &["CRABBOX_SSH_KEY"],
    ),
    key(
        "ssh.port",
        Kind::Port,
        Preset::Text("2222"),
        &["CRABBOX_SSH_PORT"],
    ),
    key(
        "ssh.fallbackPorts",
        Kind::PortList,
        Preset::List(&["22"]),
        &["CRABBOX_SSH_FALLBACK_PORTS"],
    ),
    // For runners behind a bastion; every ssh and rsync call passes them on. ssh accepts
    // only one of the two, so setting both is an error.
    key(
        "ssh.proxyJump",
        Kind::Text,
        Preset::Unset,
        &["CRABBOX_SSH_PROXY_JUMP"],
    ),
    key(
        "ssh.proxyCommand",
        Kind::Text,
        Preset::Unset,
        &["CRABBOX_SSH_PROXY_COMMAND"],
    ),
    key(
        "sync.delete",
        Kind::Bool,
        Preset::Bool(true),
        &["CRABBOX_SYNC_DELETE"],
    ),
    key(
        "sync.checksum",
        Kind::Bool,
        Preset::Bool(false),
        &["CRABBOX_SYNC_CHECKSUM"],
    ),
    key(
        "sync.gitSeed",
        Kind::Bool,
        Preset::Bool(true),
        &["CRABBOX_SYNC_GIT_SEED"],
    ),
    key(
        "sync.fingerprint",
        Kind::Bool,
        Preset::Bool(true),
        &["CRABBOX_SYNC_FINGERPRINT"],
    ),
    // A file watcher per sync root (inotify) lets the fingerprint skip `git status` when
    // nothing changed; only Linux has one.
    key(
        "sync.watch",
        Kind::Bool,
        Preset::Bool(cfg!(target_os = "linux")),
        &["CRABBOX_SYNC_WATCH"],
    ),
    key(
        "sync.baseRef",
        Kind::Text,
        Preset::Unset,
        &["CRABBOX_SYNC_BASE_REF"],
    ),
    key(
        "sync.timeout",
        Kind::Duration,
        Preset::Minutes(15),
        &["CRABBOX_SYNC_TIMEOUT"],
    ),
    key(
        "sync.warnFiles",
        Kind::Count,
        Preset::Count(50_000),
        &["CRABBOX_SYNC_WARN_FILES"],
    ),
    key(
        "sync.warnBytes",
        Kind::Bytes,
        Preset::Count(5 * GIB),
        &["CRABBOX_SYNC_WARN_BYTES"],
    ),
    key(
        "sync.failFiles",
        Kind::Count,
        Preset::Count(150_000),
        &["CRABBOX_SYNC_FAIL_FILES"],
    ),
    key(
        "sync.failBytes",
        Kind::Bytes,
        Preset::Count(20 * GIB),
        &["CRABBOX_SYNC_FAIL_BYTES"],
    ),
    key(
        "sync.allowLarge",
        Kind::Bool,
        Preset::Bool(false),
        &["CRABBOX_SYNC_ALLOW_LARGE"],
    ),
    aliased(
        "sync.exclude",
        &["sync.excludes"],
        Kind::List,
        Preset::Unset,
        &[],
    ),
    aliased(
        "sync.include",
        &["sync.includes"],
        Kind::List,
        Preset::Unset,
        &[],
    ),
    key(
        "env.allow",
        Kind::List,
        Preset::List(&["CI", "NODE_OPTIONS"]),
        &["CRABBOX_ENV_ALLOW"],
    ),
    key(
        "static.id",
        Kind::Text,
        Preset::Unset,
        &["CRABBOX_STATIC_ID"],
    ),
    key(
        "static.name",
        Kind::Text,
        Preset::Unset,
        &["CRABBOX_STATIC_NAME"],
    ),
    key(
        "static.host",
        Kind::Text,
        Preset::Unset,
        &["CRABBOX_STATIC_HOST"],
    ),
    key(
        "static.user",
        Kind::Text,
        Preset::Unset,
        &["CRABBOX_STATIC_USER"],
    ),
    key(
        "static.port",
        Kind::Port,
        Preset::Unset,
        &["CRABBOX_STATIC_PORT"],
    ),
    key(
        "static.workRoot",
        Kind::Text,
        Preset::Unset,
        &["CRABBOX_STATIC_WORK_ROOT"],
    ),
    aliased(
        "coordinator",
        &["broker.url"],
        Kind::Text,
        Preset::Unset,
        &["CRABBOX_COORDINATOR"],
    ),
    aliased(
        "coordinatorToken",
        &["broker.token"],
        Kind::Secret,
        Preset::Unset,
        &["CRABBOX_COORDINATOR_TOKEN"],
    ),
    key(
        "broker.adminToken",
        Kind::Secret,
        Preset::Unset,
        &["CRABBOX_COORDINATOR_ADMIN_TOKEN", "CRABBOX_ADMIN_TOKEN"],
    ),
    key(
        "broker.mode",
        Kind::OneOf(BROKER_MODES, "managed or registered"),
        Preset::Text("managed"),
        &["CRABBOX_COORDINATOR_MODE"],
    ),
    // Cloud capacity (spec/providers.md §2.2): how machines are bought and where.
    key(
        "capacity.market",
        Kind::Parsed(market),
        Preset::Text("spot"),
        &["CRABBOX_CAPACITY_MARKET"],
    ),
    key(
        "capacity.fallback",
        Kind::Parsed(market_fallback),
        Preset::Text("on-demand-after-120s"),
        &["CRABBOX_CAPACITY_FALLBACK"],
    ),
    key(
        "capacity.strategy",
        Kind::OneOf(
            CAPACITY_STRATEGIES,
            "most-available, price-capacity-optimized, capacity-optimized or sequential",
        ),
        Preset::Text("most-available"),
        &["CRABBOX_CAPACITY_STRATEGY"],
    ),
    key(
        "capacity.regions",
        Kind::List,
        Preset::Unset,
        &["CRABBOX_CAPACITY_REGIONS"],
    ),
    key(
        "capacity.availabilityZones",
        Kind::List,
        Preset::Unset,
        &["CRABBOX_CAPACITY_AVAILABILITY_ZONES"],
    ),
    key(
        "capacity.hints",
        Kind::Bool,
        Preset::Bool(true),
        &["CRABBOX_CAPACITY_HINTS"],
    ),
    // AWS (spec/providers.md §2.2). `AWS_REGION` is the SDK's own variable: it ranks below
    // Crabbox's but above the config files, as in the old tool.
    key(
        "aws.region",
        Kind::Text,
        Preset::Text("eu-west-1"),
        &["CRABBOX_AWS_REGION", "AWS_REGION"],
    ),
    key("aws.ami", Kind::Text, Preset::Unset, &["CRABBOX_AWS_AMI"]),
    key(
        "aws.securityGroupId",
        Kind::Text,
        Preset::Unset,
        &["CRABBOX_AWS_SECURITY_GROUP_ID"],
    ),
    key(
        "aws.subnetId",
        Kind::Text,
        Preset::Unset,
        &["CRABBOX_AWS_SUBNET_ID"],
    ),
    key(
        "aws.instanceProfile",
        Kind::Text,
        Preset::Unset,
        &["CRABBOX_AWS_INSTANCE_PROFILE"],
    ),
    key(
        "aws.rootGB",
        Kind::Parsed(root_gib),
        Preset::Count(400),
        &["CRABBOX_AWS_ROOT_GB"],
    ),
    key(
        "aws.sshCIDRs",
        Kind::ListOf(check_cidr),
        Preset::Unset,
        &["CRABBOX_AWS_SSH_CIDRS"],
    ),
    key(
        "aws.usePrivateIP",
        Kind::Bool,
        Preset::Bool(false),
        &["CRABBOX_AWS_USE_PRIVATE_IP"],
    ),
    key(
        "aws.macHostId",
        Kind::Text,
        Preset::Unset,
        &["CRABBOX_AWS_MAC_HOST_ID", "CRABBOX_HOST_ID"],
    ),
    // Hetzner Cloud (spec/providers.md §2.1). The API token is a secret and comes only from
    // the environment (`HCLOUD_TOKEN`), never from a config file. `HCLOUD_ENDPOINT` is the
    // hcloud CLI's own variable for the API base URL.
    key(
        "hetzner.location",
        Kind::Text,
        Preset::Text("fsn1"),
        &["CRABBOX_HETZNER_LOCATION"],
    ),
    key(
        "hetzner.image",
        Kind::Text,
        Preset::Text("ubuntu-24.04"),
        &["CRABBOX_HETZNER_IMAGE"],
    ),
    key(
        "hetzner.endpoint",
        Kind::Text,
        Preset::Text("https://api.hetzner.cloud/v1"),
        &["HCLOUD_ENDPOINT", "CRABBOX_HETZNER_ENDPOINT"],
    ),
    // Azure VMs (spec/providers.md §2.3). The client secret is a secret and comes only from
    // the environment (`AZURE_CLIENT_SECRET`); the ids rank Crabbox's variable, then the one
    // Azure's own tools read, then the files.
    key(
        "azure.subscriptionId",
        Kind::Text,
        Preset::Unset,
        &["CRABBOX_AZURE_SUBSCRIPTION_ID", "AZURE_SUBSCRIPTION_ID"],
    ),
    key(
        "azure.tenantId",
        Kind::Text,
        Preset::Unset,
        &["CRABBOX_AZURE_TENANT_ID", "AZURE_TENANT_ID"],
    ),
    key(
        "azure.clientId",
        Kind::Text,
        Preset::Unset,
        &["CRABBOX_AZURE_CLIENT_ID", "AZURE_CLIENT_ID"],
    ),
    key(
        "azure.backend",
        Kind::OneOf(AZURE_BACKENDS, "vm or dynamic-sessions"),
        Preset::Text("vm"),
        &["CRABBOX_AZURE_BACKEND"],
    ),
    key(
        "azure.location",
        Kind::Text,
        Preset::Text("eastus"),
        &["CRABBOX_AZURE_LOCATION"],
    ),
    key(
        "azure.resourceGroup",
        Kind::Text,
        Preset::Text("crabbox-leases"),
        &["CRABBOX_AZURE_RESOURCE_GROUP"],
    ),
    // `Publisher:Offer:SKU:Version`; unset means Ubuntu (or Windows Server) for the target
    // and architecture.
    key(
        "azure.image",
        Kind::Text,
        Preset::Unset,
        &["CRABBOX_AZURE_IMAGE"],
    ),
    key(
        "azure.osDisk",
        Kind::OneOf(
            AZURE_OS_DISKS,
            "managed, ephemeral, ephemeral-preview or auto",
        ),
        Preset::Text("managed"),
        &["CRABBOX_AZURE_OS_DISK"],
    ),
    key(
        "azure.osDiskSKU",
        Kind::Text,
        Preset::Text("StandardSSD_LRS"),
        &["CRABBOX_AZURE_OS_DISK_SKU"],
    ),
    key(
        "azure.vnet",
        Kind::Text,
        Preset::Text("crabbox-vnet"),
        &["CRABBOX_AZURE_VNET"],
    ),
    key(
        "azure.subnet",
        Kind::Text,
        Preset::Text("crabbox-subnet"),
        &["CRABBOX_AZURE_SUBNET"],
    ),
    key(
        "azure.nsg",
        Kind::Text,
        Preset::Text("crabbox-nsg"),
        &["CRABBOX_AZURE_NSG"],
    ),
    key(
        "azure.sshCIDRs",
        Kind::ListOf(check_cidr),
        Preset::Unset,
        &["CRABBOX_AZURE_SSH_CIDRS"],
    ),
    key(
        "azure.network",
        Kind::OneOf(AZURE_NETWORKS, "public or private"),
        Preset::Text("public"),
        &["CRABBOX_AZURE_NETWORK"],
    ),
    key(
        "azure.armEndpoint",
        Kind::Text,
        Preset::Text("https://management.azure.com"),
        &["CRABBOX_AZURE_ARM_ENDPOINT"],
    ),
];

/// Keys (and whole sections) the old tool documents that this version does not use yet. Files
/// written for the old tool carry them, so they are skipped without a warning.
const ACCEPTED_UNUSED: &[&str] = &[
    "actions",
    "azure.snapshotSKU",
    "azureDynamicSessions",
    "blacksmith",
    "broker.access",
    "broker.autoWebVNC",
    "broker.loginRedirectOrigins",
    "cache",
    "daytona",
    "gcp",
    "hetzner.sshKey",
    "hostId",
    "islo",
    "jobs",
    "localContainer",
    "network",
    "os",
    "pond",
    "presets",
    "profiles",
    "results",
    "run",
    "tailscale",
];

/// Every environment variable the key table reads, for callers that pass the process
/// environment on selectively (most are `CRABBOX_*`; `AWS_REGION` is not).
pub fn env_names() -> impl Iterator<Item = &'static str> {
    KEYS.iter().flat_map(|spec| spec.env.iter().copied())
}

/// The key a dotted name (canonical or alias) refers to, and whether it was an alias.
pub(crate) fn lookup(name: &str) -> Option<(&'static KeySpec, bool)> {
    KEYS.iter().find_map(|spec| {
        if spec.key == name {
            Some((spec, false))
        } else if spec.aliases.contains(&name) {
            Some((spec, true))
        } else {
            None
        }
    })
}

/// Whether `name` is a map that holds known keys (`ssh`, `sync`, `lease`, `broker`, …).
pub(crate) fn is_section(name: &str) -> bool {
    KEYS.iter()
        .flat_map(|spec| std::iter::once(spec.key).chain(spec.aliases.iter().copied()))
        .any(|known| {
            known
                .strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('.'))
        })
}

/// Whether `name` is, or lies under, a documented key this version ignores.
pub(crate) fn is_accepted_unused(name: &str) -> bool {
    ACCEPTED_UNUSED.iter().any(|known| {
        name.strip_prefix(known)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_classified_once() {
        let mut names: Vec<&str> = KEYS
            .iter()
            .flat_map(|spec| std::iter::once(spec.key).chain(spec.aliases.iter().copied()))
            .collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "a key or alias is listed twice");
        for name in names {
            assert!(!is_accepted_unused(name), "{name} is both used and ignored");
            assert!(!is_section(name), "{name} is both a key and a section");
        }
    }

    #[test]
    fn lookup_resolves_aliases() {
        assert_eq!(
            lookup("lease.ttl").map(|(spec, alias)| (spec.key, alias)),
            Some(("ttl", true))
        );
        assert_eq!(
            lookup("ttl").map(|(spec, alias)| (spec.key, alias)),
            Some(("ttl", false))
        );
        assert!(lookup("lease").is_none());
        assert!(is_section("lease") && is_section("broker") && !is_section("sync.exclude"));
        assert!(is_accepted_unused("tailscale.tags") && is_accepted_unused("broker.access.token"));
        assert!(!is_accepted_unused("tailscalex") && !is_accepted_unused("broker.urlx"));
        assert!(!is_accepted_unused("capacity.market") && lookup("capacity.market").is_some());
    }
}
