//! Layering: defaults, then the user file, the repo files in order, the environment and the
//! flags, each overriding only the keys it sets; then the credential trust rule; then the
//! typed [`Config`] read from the result.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::error::ConfigError;
use super::keys::{self, KEYS};
use super::layer::{self, FlagValue};
use super::model::{
    Architecture, AwsConfig, AzureConfig, BrokerMode, Capabilities, CapacityConfig, Config,
    CoordinatorConfig, HetznerConfig, Market, MarketFallback, SshConfig, StaticHostConfig,
    SyncConfig, TargetOs, WindowsMode,
};
use super::origin::Origin;
use super::secret::Secret;
use super::token_command;
use super::value::Value;

/// Everything configuration is resolved from, gathered by the caller (which does the IO).
#[derive(Clone, Default)]
pub struct ConfigInputs {
    /// The user config file's path and contents, if it exists.
    pub user: Option<(PathBuf, String)>,
    /// Repo config files' paths and contents, applied in order (later wins).
    pub repo: Vec<(PathBuf, String)>,
    /// The process environment; only the `CRABBOX_*` names in the key table are read.
    pub env: BTreeMap<String, String>,
    /// Flags the user passed, applied in order.
    pub flags: Vec<FlagValue>,
}

/// File contents and environment values may hold tokens, so `Debug` shows only their names.
impl fmt::Debug for ConfigInputs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigInputs")
            .field("user", &self.user.as_ref().map(|(path, _)| path))
            .field(
                "repo",
                &self.repo.iter().map(|(path, _)| path).collect::<Vec<_>>(),
            )
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("flags", &self.flags)
            .finish()
    }
}

/// A value and the layer that set it.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub value: Value,
    pub origin: Origin,
}

/// The outcome of [`resolve`]: the typed config, where each key came from, and warnings the
/// caller should show (unknown keys, keys set twice, withheld credentials).
#[derive(Debug, Clone)]
pub struct Resolved {
    config: Config,
    entries: BTreeMap<&'static str, Entry>,
    warnings: Vec<String>,
}

impl Resolved {
    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn into_config(self) -> Config {
        self.config
    }

    /// Where a key's value came from, by canonical or alias name; `None` for unknown keys.
    pub fn origin(&self, key: &str) -> Option<&Origin> {
        let (spec, _) = keys::lookup(key)?;
        self.entries.get(spec.key).map(|entry| &entry.origin)
    }

    /// Every canonical key with its origin, sorted by key.
    pub fn origins(&self) -> impl Iterator<Item = (&'static str, &Origin)> {
        self.entries
            .iter()
            .map(|(key, entry)| (*key, &entry.origin))
    }

    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    pub(crate) fn entries(&self) -> &BTreeMap<&'static str, Entry> {
        &self.entries
    }
}

/// Resolves configuration with precedence flags > env > repo files > user file > defaults.
/// Pure: the caller reads the files and the environment.
pub fn resolve(inputs: &ConfigInputs) -> Result<Resolved, ConfigError> {
    let mut warnings = Vec::new();
    let mut entries: BTreeMap<&'static str, Entry> = KEYS
        .iter()
        .map(|spec| {
            (
                spec.key,
                Entry {
                    value: spec.default_value(),
                    origin: Origin::Default,
                },
            )
        })
        .collect();
    let mut layers = Vec::new();
    if let Some((path, text)) = &inputs.user {
        layers.push(layer::file(
            path,
            text,
            &Origin::User(path.clone()),
            &mut warnings,
        )?);
    }
    for (path, text) in &inputs.repo {
        layers.push(layer::file(
            path,
            text,
            &Origin::Repo(path.clone()),
            &mut warnings,
        )?);
    }
    layers.push(layer::env(&inputs.env, &mut warnings)?);
    let mut token_command = token_command::from_env(&inputs.env)?;
    layers.push(layer::flags(&inputs.flags)?);
    for setting in layers.into_iter().flatten() {
        entries.insert(
            setting.spec.key,
            Entry {
                value: setting.value,
                origin: setting.origin,
            },
        );
    }
    withhold_untrusted_credentials(&mut entries, &mut warnings);
    one_proxy(&entries)?;
    if token_command.is_some()
        && let Some(destination) = repo_destination(&entries)
    {
        token_command = None;
        warnings.push(format!(
            "not running {} because the coordinator comes from {destination}; \
             set CRABBOX_COORDINATOR or pass the coordinator flag to trust it",
            token_command::TOKEN_COMMAND_ENV
        ));
    }
    let mut config = typed_config(&entries);
    config.coordinator.token_command = token_command;
    Ok(Resolved {
        config,
        entries,
        warnings,
    })
}

/// ssh honours only the first of `ProxyJump` and `ProxyCommand` it reads, so a config with both
/// would silently use one; it is refused instead, naming where each came from.
fn one_proxy(entries: &BTreeMap<&'static str, Entry>) -> Result<(), ConfigError> {
    let (jump, command) = (&entries["ssh.proxyJump"], &entries["ssh.proxyCommand"]);
    let set = |entry: &Entry| !matches!(&entry.value, Value::Text(text) if text.is_empty());
    if set(jump) && set(command) {
        return Err(ConfigError::Conflict {
            first: "ssh.proxyJump",
            first_origin: jump.origin.clone(),
            second: "ssh.proxyCommand",
            second_origin: command.origin.clone(),
        });
    }
    Ok(())
}

/// Where the coordinator URL came from, when that is a repository's config file.
fn repo_destination(entries: &BTreeMap<&'static str, Entry>) -> Option<Origin> {
    let destination = &entries["coordinator"];
    let set = !matches!(&destination.value, Value::Text(url) if url.is_empty());
    (set && matches!(destination.origin, Origin::Repo(_))).then(|| destination.origin.clone())
}

/// Repo config is untrusted as a credential destination: a cloned repository must not be able
/// to point the user's own coordinator token at a server it chose. A repo may still pair its
/// own coordinator with its own token, and env or flags can vouch for the coordinator.
fn withhold_untrusted_credentials(
    entries: &mut BTreeMap<&'static str, Entry>,
    warnings: &mut Vec<String>,
) {
    let Some(destination_origin) = repo_destination(entries) else {
        return;
    };
    for key in ["coordinatorToken", "broker.adminToken"] {
        let entry = entries.get_mut(key).expect("token keys are in KEYS");
        if matches!(entry.value, Value::Secret(Some(_))) && !matches!(entry.origin, Origin::Repo(_))
        {
            entry.value = Value::Secret(None);
            warnings.push(format!(
                "not using {key} from {} because the coordinator comes from {destination_origin}; \
                 set CRABBOX_COORDINATOR or pass the coordinator flag to trust it",
                entry.origin
            ));
        }
    }
}

/// The typed config read out of the resolved entries, each of which holds a value checked
/// against its key's kind.
fn typed_config(entries: &BTreeMap<&'static str, Entry>) -> Config {
    let read = Reader(entries);
    let mode = match read.text("broker.mode").as_str() {
        "registered" => BrokerMode::Registered,
        _ => BrokerMode::Managed,
    };
    let fallback_ports = read.list("ssh.fallbackPorts");
    Config {
        provider: read.text("provider"),
        class: read.text("class"),
        server_type: read.optional("serverType"),
        target: read.word("target", TargetOs::parse),
        windows_mode: read.word("windows.mode", WindowsMode::parse),
        architecture: read.word("architecture", Architecture::parse),
        profile: read.text("profile"),
        capabilities: Capabilities {
            desktop: read.flag("desktop"),
            desktop_env: read.text("desktopEnv"),
            browser: read.flag("browser"),
            code: read.flag("code"),
        },
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
            proxy_jump: read.optional("ssh.proxyJump"),
            proxy_command: read.optional("ssh.proxyCommand"),
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
        capacity: CapacityConfig {
            market: read.word("capacity.market", Market::parse),
            fallback: read.word("capacity.fallback", MarketFallback::parse),
            strategy: read.text("capacity.strategy"),
            regions: read.list("capacity.regions"),
            availability_zones: read.list("capacity.availabilityZones"),
            hints: read.flag("capacity.hints"),
        },
        aws: AwsConfig {
            region: read.text("aws.region"),
            ami: read.optional("aws.ami"),
            security_group_id: read.optional("aws.securityGroupId"),
            subnet_id: read.optional("aws.subnetId"),
            instance_profile: read.optional("aws.instanceProfile"),
            root_gb: read.count("aws.rootGB"),
            ssh_cidrs: read.list("aws.sshCIDRs"),
            use_private_ip: read.flag("aws.usePrivateIP"),
            mac_host_id: read.optional("aws.macHostId"),
        },
        hetzner: HetznerConfig {
            location: read.text("hetzner.location"),
            image: read.text("hetzner.image"),
            endpoint: read.text("hetzner.endpoint"),
        },
        azure: AzureConfig {
            subscription_id: read.optional("azure.subscriptionId"),
            tenant_id: read.optional("azure.tenantId"),
            client_id: read.optional("azure.clientId"),
            backend: read.text("azure.backend"),
            location: read.text("azure.location"),
            resource_group: read.text("azure.resourceGroup"),
            image: read.optional("azure.image"),
            os_disk: read.text("azure.osDisk"),
            os_disk_sku: read.text("azure.osDiskSKU"),
            vnet: read.text("azure.vnet"),
            subnet: read.text("azure.subnet"),
            nsg: read.text("azure.nsg"),
            ssh_cidrs: read.list("azure.sshCIDRs"),
            network: read.text("azure.network"),
            arm_endpoint: read.text("azure.armEndpoint"),
        },
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

    /// A machine word, stored in its canonical spelling when it was read.
    fn word<T, E: fmt::Debug>(&self, key: &str, parse: fn(&str) -> Result<T, E>) -> T {
        let text = self.text(key);
        parse(&text).unwrap_or_else(|e| panic!("config key {key} holds {text:?}: {e:?}"))
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{
        Architecture, BrokerMode, Market, MarketFallback, Secret, StaticHostConfig, TargetOs,
        WindowsMode, render_show,
    };

    const USER: &str = "/home/u/.config/crabbox/config.yaml";
    const REPO: &str = "/repo/crabbox.yaml";
    const DOT_REPO: &str = "/repo/.crabbox.yaml";

    fn user(text: &str) -> (PathBuf, String) {
        (PathBuf::from(USER), text.to_owned())
    }

    fn repo(text: &str) -> Vec<(PathBuf, String)> {
        vec![(PathBuf::from(REPO), text.to_owned())]
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn error(inputs: &ConfigInputs) -> String {
        resolve(inputs).unwrap_err().to_string()
    }

    #[test]
    fn defaults_when_nothing_is_configured() {
        let resolved = resolve(&ConfigInputs::default()).unwrap();
        let config = resolved.config();
        assert_eq!(config.provider, "local");
        assert_eq!(config.class, "beast");
        assert_eq!(config.target, TargetOs::Linux);
        assert_eq!(config.profile, "default");
        assert_eq!(config.ttl, Duration::from_mins(90));
        assert_eq!(config.idle_timeout, Duration::from_mins(30));
        assert_eq!(config.work_root, "/work/crabbox");
        assert_eq!(
            (config.ssh.user.as_str(), config.ssh.port),
            ("crabbox", 2222)
        );
        assert_eq!(config.ssh.key, "~/.ssh/id_ed25519");
        assert_eq!(config.ssh.fallback_ports, vec![22]);
        let sync = &config.sync;
        assert!(sync.delete && !sync.checksum && sync.git_seed && sync.fingerprint);
        assert_eq!(sync.watch, cfg!(target_os = "linux"));
        assert_eq!(sync.timeout, Duration::from_mins(15));
        assert_eq!((sync.warn_files, sync.warn_bytes), (50_000, 5 << 30));
        assert_eq!((sync.fail_files, sync.fail_bytes), (150_000, 20 << 30));
        assert!(!sync.allow_large && sync.exclude.is_empty() && sync.include.is_empty());
        assert_eq!(sync.base_ref, None);
        assert_eq!(config.env_allow, ["CI", "NODE_OPTIONS"]);
        assert_eq!(config.static_host, StaticHostConfig::default());
        assert_eq!(config.coordinator.mode, BrokerMode::Managed);
        assert!(config.coordinator.url.is_none() && config.coordinator.token.is_none());
        assert!(
            resolved
                .origins()
                .all(|(_, origin)| *origin == Origin::Default)
        );
        assert!(resolved.warnings().is_empty());
    }

    #[test]
    fn each_layer_overrides_the_one_below() {
        let mut inputs = ConfigInputs {
            user: Some(user("ttl: 1h\nclass: small\n")),
            repo: vec![
                (REPO.into(), "ttl: 2h\nprofile: repo\n".into()),
                (DOT_REPO.into(), "ttl: 3h\n".into()),
            ],
            env: env(&[("CRABBOX_TTL", "4h"), ("HOME", "/home/u")]),
            flags: vec![FlagValue::new("ttl", "--ttl", "5h")],
        };
        let hours = |inputs: &ConfigInputs| {
            let resolved = resolve(inputs).unwrap();
            (
                resolved.config().ttl.as_secs() / 3600,
                resolved.origin("ttl").unwrap().to_string(),
            )
        };
        assert_eq!(hours(&inputs), (5, "flag:--ttl".to_owned()));
        inputs.flags.clear();
        assert_eq!(hours(&inputs), (4, "env:CRABBOX_TTL".to_owned()));
        inputs.env.clear();
        assert_eq!(hours(&inputs), (3, format!("repo:{DOT_REPO}")));
        inputs.repo.pop();
        assert_eq!(hours(&inputs), (2, format!("repo:{REPO}")));
        inputs.repo.clear();
        assert_eq!(hours(&inputs), (1, format!("user:{USER}")));
        inputs.user = None;
        assert_eq!(hours(&inputs), (1, "default".to_owned()));

        // A layer leaves the keys it does not set alone.
        let resolved = resolve(&ConfigInputs {
            user: Some(user("class: small\n")),
            repo: repo("profile: repo\n"),
            ..ConfigInputs::default()
        })
        .unwrap();
        assert_eq!(resolved.config().class, "small");
        assert_eq!(resolved.origin("class"), Some(&Origin::User(USER.into())));
        assert_eq!(resolved.config().profile, "repo");
    }

    #[test]
    fn unknown_keys_warn_and_documented_unused_keys_do_not() {
        let text = "foo:\n  bar: 1\nbroker:\n  flavor: x\n  autoWebVNC: false\nsync:\n  delete: false\n  exclud: [x]\ncapacity:\n  market: spot\n\
                    profiles:\n  ci: {env: {A: b}}\nwindows:\n  mode: wsl2\n";
        let resolved = resolve(&ConfigInputs {
            repo: repo(text),
            ..ConfigInputs::default()
        })
        .unwrap();
        assert_eq!(
            resolved.warnings(),
            [
                format!("unknown config key \"foo\" in {REPO}"),
                format!("unknown config key \"broker.flavor\" in {REPO}"),
                format!("unknown config key \"sync.exclud\" in {REPO}"),
            ]
        );
        assert!(!resolved.config().sync.delete);
    }

    #[test]
    fn empty_or_comment_only_files_are_fine() {
        let inputs = ConfigInputs {
            user: Some(user("")),
            repo: repo("# nothing yet\n"),
            ..ConfigInputs::default()
        };
        assert!(resolve(&inputs).unwrap().warnings().is_empty());
    }

    #[test]
    fn bad_values_name_file_key_and_expected_form() {
        let in_repo = |text: &str| ConfigInputs {
            repo: repo(text),
            ..ConfigInputs::default()
        };
        assert_eq!(
            error(&in_repo("ttl: ninety\n")),
            "invalid value for \"ttl\" in /repo/crabbox.yaml: \"ninety\" is not a duration \
             (use Go syntax like 90m or 1h30m)"
        );
        assert_eq!(
            error(&in_repo("lease:\n  idleTimeout: 0s\n")),
            "invalid value for \"lease.idleTimeout\" in /repo/crabbox.yaml: \"0s\" must be longer \
             than zero (use a duration like 90m)"
        );
        assert_eq!(
            error(&in_repo("ssh:\n  port: 70000\n")),
            "invalid value for \"ssh.port\" in /repo/crabbox.yaml: \"70000\" is not a port \
             (use a number from 1 to 65535)"
        );
        assert_eq!(
            error(&in_repo("class: [a, b]\n")),
            "invalid value for \"class\" in /repo/crabbox.yaml: expected a single value, found a list"
        );
        assert_eq!(
            error(&in_repo("sync: true\n")),
            "invalid value for \"sync\" in /repo/crabbox.yaml: expected a mapping, found a boolean"
        );
        assert_eq!(
            error(&in_repo("- a\n- b\n")),
            "/repo/crabbox.yaml must be a mapping of config keys at the top level, found a list"
        );
        let syntax = resolve(&in_repo("ssh:\n  user: a\n   port: 1\n")).unwrap_err();
        assert!(
            syntax
                .to_string()
                .starts_with("invalid yaml in /repo/crabbox.yaml at line 3"),
            "{syntax}"
        );
        assert!(std::error::Error::source(&syntax).is_some());
    }

    #[test]
    fn bad_env_and_flag_values_name_the_variable_or_flag() {
        let inputs = ConfigInputs {
            env: env(&[("CRABBOX_SYNC_DELETE", "sure")]),
            ..ConfigInputs::default()
        };
        assert_eq!(
            error(&inputs),
            "invalid value for \"sync.delete\" in env CRABBOX_SYNC_DELETE: \"sure\" is not a boolean \
             (use true, false, yes, no, 1 or 0)"
        );
        let inputs = ConfigInputs {
            flags: vec![FlagValue::new("idleTimeout", "--idle-timeout", "30")],
            ..ConfigInputs::default()
        };
        assert_eq!(
            error(&inputs),
            "invalid value for \"idleTimeout\" in flag --idle-timeout: \"30\" has no unit \
             (use Go syntax like 90m or 1h30m)"
        );
        let inputs = ConfigInputs {
            flags: vec![FlagValue::new("coordinatorToken", "--token", "t")],
            ..ConfigInputs::default()
        };
        assert_eq!(
            error(&inputs),
            "\"coordinatorToken\" is a secret and cannot be set by flag --token \
             (use CRABBOX_COORDINATOR_TOKEN or the user config)"
        );
        let inputs = ConfigInputs {
            flags: vec![FlagValue::new("nope", "--nope", "1")],
            ..ConfigInputs::default()
        };
        assert_eq!(
            error(&inputs),
            "flag --nope sets unknown config key \"nope\""
        );
    }

    #[test]
    fn env_booleans_lists_sizes_and_ports() {
        let resolved = resolve(&ConfigInputs {
            env: env(&[
                ("CRABBOX_SYNC_DELETE", "no"),
                ("CRABBOX_SYNC_CHECKSUM", "1"),
                ("CRABBOX_SYNC_GIT_SEED", "FALSE"),
                ("CRABBOX_SYNC_WATCH", "0"),
                ("CRABBOX_SYNC_ALLOW_LARGE", "yes"),
                ("CRABBOX_ENV_ALLOW", "CI, GITHUB_TOKEN"),
                ("CRABBOX_SYNC_WARN_BYTES", "500MB"),
                ("CRABBOX_SYNC_FAIL_BYTES", "1073741824"),
                ("CRABBOX_SSH_FALLBACK_PORTS", "22,2200"),
                ("CRABBOX_TARGET_OS", "macos"),
                ("CRABBOX_STATIC_PORT", "2022"),
                ("CRABBOX_SERVER_TYPE", ""),
            ]),
            repo: repo("env:\n  allow: [A, B, C]\n"),
            ..ConfigInputs::default()
        })
        .unwrap();
        let config = resolved.config();
        assert!(!config.sync.delete && config.sync.checksum && !config.sync.git_seed);
        assert!(config.sync.allow_large && !config.sync.watch);
        assert_eq!(
            config.env_allow,
            ["CI", "GITHUB_TOKEN"],
            "env replaces the list"
        );
        assert_eq!(
            (config.sync.warn_bytes, config.sync.fail_bytes),
            (500_000_000, 1 << 30)
        );
        assert_eq!(config.ssh.fallback_ports, [22, 2200]);
        assert_eq!(config.target, TargetOs::Macos);
        assert_eq!(
            resolved.origin("targetOS"),
            Some(&Origin::Env("CRABBOX_TARGET_OS".into()))
        );
        assert_eq!(config.static_host.port, Some(2022));
        assert_eq!(
            resolved.origin("serverType"),
            Some(&Origin::Default),
            "empty env is unset"
        );
    }

    #[test]
    fn fallback_ports_none_disables_the_fallback() {
        let resolved = resolve(&ConfigInputs {
            env: env(&[("CRABBOX_SSH_FALLBACK_PORTS", "none")]),
            ..ConfigInputs::default()
        })
        .unwrap();
        assert!(resolved.config().ssh.fallback_ports.is_empty());
        assert!(
            render_show(&resolved)
                .contains("ssh.fallbackPorts=- origin=env:CRABBOX_SSH_FALLBACK_PORTS\n")
        );
        let resolved = resolve(&ConfigInputs {
            user: Some(user("ssh:\n  fallbackPorts: []\n")),
            ..ConfigInputs::default()
        })
        .unwrap();
        assert!(resolved.config().ssh.fallback_ports.is_empty());
    }

    #[test]
    fn first_listed_env_var_wins() {
        let resolved = resolve(&ConfigInputs {
            env: env(&[
                ("CRABBOX_TARGET", "windows"),
                ("CRABBOX_TARGET_OS", "macos"),
            ]),
            ..ConfigInputs::default()
        })
        .unwrap();
        assert_eq!(resolved.config().target, TargetOs::Windows);
        assert_eq!(
            resolved.warnings(),
            ["CRABBOX_TARGET and CRABBOX_TARGET_OS are both set; using CRABBOX_TARGET"]
        );
        let resolved = resolve(&ConfigInputs {
            env: env(&[("CRABBOX_ADMIN_TOKEN", "adm")]),
            ..ConfigInputs::default()
        })
        .unwrap();
        assert_eq!(
            resolved
                .config()
                .coordinator
                .admin_token
                .as_ref()
                .map(Secret::expose),
            Some("adm")
        );
    }

    #[test]
    fn aliases_set_the_canonical_key() {
        let text = "lease:\n  ttl: 2h\n  idleTimeout: 10m\nsync:\n  excludes: [target]\n  includes: [src]\n\
                    broker:\n  url: https://cbx.example\n  token: t0k\n  mode: registered\ntargetOS: windows\n";
        let resolved = resolve(&ConfigInputs {
            user: Some(user(text)),
            ..ConfigInputs::default()
        })
        .unwrap();
        let config = resolved.config();
        assert_eq!(config.ttl, Duration::from_hours(2));
        assert_eq!(config.idle_timeout, Duration::from_mins(10));
        assert_eq!(config.sync.exclude, ["target"]);
        assert_eq!(config.sync.include, ["src"]);
        assert_eq!(
            config.coordinator.url.as_deref(),
            Some("https://cbx.example")
        );
        assert_eq!(
            config.coordinator.token.as_ref().map(Secret::expose),
            Some("t0k")
        );
        assert_eq!(config.coordinator.mode, BrokerMode::Registered);
        assert_eq!(config.target, TargetOs::Windows);
        assert_eq!(
            resolved.origin("broker.url"),
            Some(&Origin::User(USER.into()))
        );
        assert!(resolved.warnings().is_empty(), "{:?}", resolved.warnings());
    }

    #[test]
    fn broker_provider_selects_the_provider_below_env_and_flags() {
        let login = "provider: ssh\nbroker:\n  url: https://cbx.example\n  provider: ssh\n";
        let inputs = ConfigInputs {
            user: Some(user(login)),
            ..ConfigInputs::default()
        };
        let resolved = resolve(&inputs).unwrap();
        assert_eq!(resolved.config().provider, "ssh");
        assert_eq!(
            resolved.origin("provider"),
            Some(&Origin::User(USER.into()))
        );
        assert!(resolved.warnings().is_empty(), "{:?}", resolved.warnings());
        let alone = ConfigInputs {
            user: Some(user("broker:\n  provider: ssh\n")),
            ..ConfigInputs::default()
        };
        assert_eq!(resolve(&alone).unwrap().config().provider, "ssh");
        // A repo's provider, then env, then flags override it.
        let mut layered = alone.clone();
        layered.repo = repo("provider: local\n");
        assert_eq!(resolve(&layered).unwrap().config().provider, "local");
        let mut layered = alone.clone();
        layered.env = env(&[("CRABBOX_PROVIDER", "local")]);
        assert_eq!(resolve(&layered).unwrap().config().provider, "local");
        layered.env = BTreeMap::new();
        layered.flags = vec![FlagValue::new("provider", "--provider", "local")];
        assert_eq!(resolve(&layered).unwrap().config().provider, "local");
    }

    #[test]
    fn canonical_spelling_wins_within_a_file() {
        let text = "lease:\n  ttl: 2h\nttl: 3h\nsync:\n  exclude: [a]\n  excludes: [b]\n";
        let resolved = resolve(&ConfigInputs {
            repo: repo(text),
            ..ConfigInputs::default()
        })
        .unwrap();
        assert_eq!(resolved.config().ttl, Duration::from_hours(3));
        assert_eq!(resolved.config().sync.exclude, ["a"]);
        assert_eq!(
            resolved.warnings(),
            [
                format!("\"lease.ttl\" and \"ttl\" are both set in {REPO}; using \"ttl\""),
                format!(
                    "\"sync.exclude\" and \"sync.excludes\" are both set in {REPO}; using \"sync.exclude\""
                ),
            ]
        );
    }

    #[test]
    fn repo_cannot_send_the_users_token_to_its_own_coordinator() {
        let inputs = ConfigInputs {
            user: Some(user("coordinatorToken: users-token\n")),
            repo: repo("coordinator: https://evil.example\n"),
            env: env(&[("CRABBOX_ADMIN_TOKEN", "admin")]),
            ..ConfigInputs::default()
        };
        let resolved = resolve(&inputs).unwrap();
        assert_eq!(resolved.config().coordinator.token, None);
        assert_eq!(resolved.config().coordinator.admin_token, None);
        assert_eq!(resolved.warnings().len(), 2);
        assert!(resolved.warnings()[0].starts_with("not using coordinatorToken from user:"));

        // The env vouching for the coordinator restores trust.
        let mut trusted = inputs.clone();
        trusted
            .env
            .insert("CRABBOX_COORDINATOR".into(), "https://evil.example".into());
        let resolved = resolve(&trusted).unwrap();
        assert!(resolved.config().coordinator.token.is_some() && resolved.warnings().is_empty());

        // A repo may pair its own coordinator with its own token.
        let own = ConfigInputs {
            repo: repo("broker:\n  url: https://team.example\n  token: repo-token\n"),
            ..ConfigInputs::default()
        };
        assert!(resolve(&own).unwrap().config().coordinator.token.is_some());

        // Nor may it have the user's token command run for it.
        let mut command = inputs.clone();
        command.env.insert(
            "CRABBOX_COORDINATOR_TOKEN_COMMAND".into(),
            r#"["print-token"]"#.into(),
        );
        let resolved = resolve(&command).unwrap();
        assert_eq!(resolved.config().coordinator.token_command, None);
        assert!(
            resolved.warnings()[2].starts_with("not running CRABBOX_COORDINATOR_TOKEN_COMMAND")
        );
        command
            .env
            .insert("CRABBOX_COORDINATOR".into(), "https://evil.example".into());
        let resolved = resolve(&command).unwrap();
        assert_eq!(
            resolved.config().coordinator.token_command.as_deref(),
            Some(&["print-token".to_owned()][..])
        );
    }

    #[test]
    fn cloud_keys_default_as_the_old_tool() {
        let resolved = resolve(&ConfigInputs::default()).unwrap();
        let config = resolved.config();
        assert_eq!(config.architecture, Architecture::X86_64);
        assert_eq!(config.windows_mode, WindowsMode::Normal);
        let capacity = &config.capacity;
        assert_eq!(capacity.market, Market::Spot);
        assert_eq!(capacity.fallback, MarketFallback::DEFAULT);
        assert_eq!(capacity.strategy, "most-available");
        assert!(capacity.regions.is_empty() && capacity.availability_zones.is_empty());
        assert!(capacity.hints);
        let aws = &config.aws;
        assert_eq!((aws.region.as_str(), aws.root_gb), ("eu-west-1", 400));
        assert!(aws.ami.is_none() && aws.subnet_id.is_none() && aws.ssh_cidrs.is_empty());
        assert!(!aws.use_private_ip && aws.mac_host_id.is_none());
        assert!(config.ssh.proxy_jump.is_none() && config.ssh.proxy_command.is_none());
        let show = render_show(&resolved);
        for line in [
            "architecture=x86_64 origin=default",
            "capacity.fallback=on-demand-after-120s origin=default",
            "capacity.market=spot origin=default",
            "aws.region=eu-west-1 origin=default",
            "aws.rootGB=400 origin=default",
            "ssh.proxyJump=- origin=default",
        ] {
            assert!(show.contains(&format!("{line}\n")), "{line} not in\n{show}");
        }
    }

    #[test]
    fn cloud_keys_read_old_files_and_env() {
        let text = "architecture: amd64\nwindows:\n  mode: wsl2\ncapacity:\n  market: on-demand\n  \
                    fallback: none\n  regions: [eu-west-1, us-east-1]\n  availabilityZones: [us-east-1b]\n  \
                    hints: false\naws:\n  region: us-east-1\n  ami: ami-0abc\n  rootGB: 200\n  \
                    sshCIDRs: [203.0.113.7/32]\n  usePrivateIP: true\n  macHostId: h-0123\n\
                    ssh:\n  proxyJump: bastion.example\n";
        let resolved = resolve(&ConfigInputs {
            user: Some(user(text)),
            env: env(&[
                ("CRABBOX_ARCH", "aarch64"),
                ("CRABBOX_CAPACITY_FALLBACK", "on-demand"),
                ("CRABBOX_AWS_SSH_CIDRS", "198.51.100.0/24, 2001:db8::/48"),
            ]),
            ..ConfigInputs::default()
        })
        .unwrap();
        assert!(resolved.warnings().is_empty(), "{:?}", resolved.warnings());
        let config = resolved.config();
        assert_eq!(config.architecture, Architecture::Arm64);
        assert_eq!(config.windows_mode, WindowsMode::Wsl2);
        assert_eq!(config.capacity.market, Market::OnDemand);
        assert_eq!(
            config.capacity.fallback,
            MarketFallback::OnDemand { after: None }
        );
        assert_eq!(config.capacity.regions, ["eu-west-1", "us-east-1"]);
        assert_eq!(config.capacity.availability_zones, ["us-east-1b"]);
        assert!(!config.capacity.hints);
        assert_eq!(config.aws.region, "us-east-1");
        assert_eq!(config.aws.ami.as_deref(), Some("ami-0abc"));
        assert_eq!(config.aws.root_gb, 200);
        assert_eq!(config.aws.ssh_cidrs, ["198.51.100.0/24", "2001:db8::/48"]);
        assert!(config.aws.use_private_ip);
        assert_eq!(config.aws.mac_host_id.as_deref(), Some("h-0123"));
        assert_eq!(config.ssh.proxy_jump.as_deref(), Some("bastion.example"));
        let show = render_show(&resolved);
        assert!(
            show.contains("architecture=arm64 origin=env:CRABBOX_ARCH\n"),
            "{show}"
        );
        assert!(
            show.contains(&format!("windows.mode=wsl2 origin=user:{USER}\n")),
            "{show}"
        );
    }

    #[test]
    fn aws_region_ranks_crabbox_env_then_aws_env_then_files() {
        let region = |pairs: &[(&str, &str)]| {
            let resolved = resolve(&ConfigInputs {
                repo: repo("aws:\n  region: ap-south-1\n"),
                env: env(pairs),
                ..ConfigInputs::default()
            })
            .unwrap();
            let origin = resolved.origin("aws.region").unwrap().to_string();
            (
                resolved.config().aws.region.clone(),
                origin,
                resolved.warnings().len(),
            )
        };
        assert_eq!(
            region(&[
                ("CRABBOX_AWS_REGION", "eu-north-1"),
                ("AWS_REGION", "us-east-2")
            ]),
            ("eu-north-1".into(), "env:CRABBOX_AWS_REGION".into(), 0),
            "overriding the SDK's region is not worth a warning"
        );
        assert_eq!(
            region(&[("AWS_REGION", "us-east-2")]),
            ("us-east-2".into(), "env:AWS_REGION".into(), 0)
        );
        assert_eq!(
            region(&[]),
            ("ap-south-1".into(), format!("repo:{REPO}"), 0)
        );
        assert!(crate::config::env_names().any(|name| name == "AWS_REGION"));
    }

    #[test]
    fn bad_cloud_values_name_the_key_and_the_accepted_forms() {
        let cases = [
            (
                ("CRABBOX_ARCH", "sparc"),
                "invalid value for \"architecture\" in env CRABBOX_ARCH: unknown architecture \
                 \"sparc\" (use x86_64 or arm64; amd64 and aarch64 also work)",
            ),
            (
                ("CRABBOX_CAPACITY_MARKET", "reserved"),
                "invalid value for \"capacity.market\" in env CRABBOX_CAPACITY_MARKET: unknown \
                 capacity market \"reserved\" (use spot or on-demand)",
            ),
            (
                ("CRABBOX_CAPACITY_FALLBACK", "later"),
                "invalid value for \"capacity.fallback\" in env CRABBOX_CAPACITY_FALLBACK: unknown \
                 capacity fallback \"later\" (use none, on-demand or on-demand-after-<duration> \
                 like on-demand-after-120s)",
            ),
            (
                ("CRABBOX_AWS_SSH_CIDRS", "203.0.113.7/32,10.0.0.1"),
                "invalid value for \"aws.sshCIDRs\" in env CRABBOX_AWS_SSH_CIDRS: \"10.0.0.1\" is \
                 not a CIDR block (use an address with a prefix length, like 203.0.113.7/32 or \
                 2001:db8::/48)",
            ),
            (
                ("CRABBOX_AWS_ROOT_GB", "0"),
                "invalid value for \"aws.rootGB\" in env CRABBOX_AWS_ROOT_GB: \"0\" is not a whole \
                 number from 8 to 16384 (GiB)",
            ),
            (
                ("CRABBOX_WINDOWS_MODE", "wsl3"),
                "invalid value for \"windows.mode\" in env CRABBOX_WINDOWS_MODE: unknown windows \
                 mode \"wsl3\" (use normal or wsl2)",
            ),
        ];
        for ((name, value), expected) in cases {
            let inputs = ConfigInputs {
                env: env(&[(name, value)]),
                ..ConfigInputs::default()
            };
            assert_eq!(error(&inputs), expected);
        }
        let in_file = ConfigInputs {
            repo: repo("aws:\n  sshCIDRs: [\"0.0.0.0/0\", \"nope\"]\n"),
            ..ConfigInputs::default()
        };
        assert!(
            error(&in_file).starts_with(&format!(
                "invalid value for \"aws.sshCIDRs\" in {REPO}: \"nope\" is not a CIDR block"
            )),
            "{}",
            error(&in_file)
        );
    }

    #[test]
    fn proxy_jump_and_proxy_command_together_are_refused() {
        let inputs = ConfigInputs {
            user: Some(user("ssh:\n  proxyCommand: nc -X 5 -x proxy:1080 %h %p\n")),
            env: env(&[("CRABBOX_SSH_PROXY_JUMP", "bastion.example")]),
            ..ConfigInputs::default()
        };
        assert_eq!(
            error(&inputs),
            format!(
                "\"ssh.proxyJump\" (from env CRABBOX_SSH_PROXY_JUMP) and \"ssh.proxyCommand\" \
                 (from {USER}) are both set; ssh takes only one, so remove one of them"
            )
        );
    }

    #[test]
    fn secrets_never_reach_debug_or_show_output() {
        let inputs = ConfigInputs {
            user: Some(user(
                "coordinator: https://c.example\nbroker:\n  token: tok-user-123\n",
            )),
            env: env(&[("CRABBOX_COORDINATOR_ADMIN_TOKEN", "tok-admin-456")]),
            ..ConfigInputs::default()
        };
        let resolved = resolve(&inputs).unwrap();
        let show = render_show(&resolved);
        let json = crate::config::show_json(&resolved).to_string();
        for output in [
            format!("{resolved:?}"),
            format!("{inputs:?}"),
            show.clone(),
            json,
        ] {
            assert!(
                !output.contains("tok-user-123") && !output.contains("tok-admin-456"),
                "{output}"
            );
        }
        assert!(show.contains(&format!("coordinatorToken=configured origin=user:{USER}\n")));
        assert!(
            show.contains(
                "broker.adminToken=configured origin=env:CRABBOX_COORDINATOR_ADMIN_TOKEN\n"
            )
        );
    }
}
