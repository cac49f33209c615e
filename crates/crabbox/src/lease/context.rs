//! Where a command runs: the resolved configuration, the repository, the local claims and the
//! configured coordinator; and the lease-shaping flags `warmup` and `run` share.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crabbox_api::ExitStatus;
use crabbox_core::config::FlagValue;
use crabbox_providers::static_ssh::StaticHost;
use crabbox_providers::{ClaimStore, LeaseRecord, Provider, ProviderConfig};
use crabbox_remote::ssh::SshProxy;
use crabbox_remote::sync;

use crate::error::{CliError, CliResult, WithStatus};
use crate::output;
use crate::paths;
use crate::settings::Settings;

/// Everything a command needs to know about where it runs.
#[derive(Debug)]
pub struct Ctx {
    pub settings: Settings,
    pub repo_root: PathBuf,
    pub repo_name: String,
    pub claims: ClaimStore,
    pub state_dir: PathBuf,
    /// The coordinator, when one is configured (brokered mode).
    pub broker: Option<crabbox_client::Client>,
}

/// Lease-shaping flags shared by `warmup` and `run`.
#[derive(Debug, Clone, clap::Args, Default)]
pub struct LeaseFlags {
    /// Provider to lease from (`local`, `ssh`).
    #[arg(long)]
    pub provider: Option<String>,
    /// Machine class (tiny, small, standard, fast, large, beast).
    #[arg(long)]
    pub class: Option<String>,
    /// Maximum lifetime, Go syntax (e.g. 90m, 2h).
    #[arg(long)]
    pub ttl: Option<String>,
    /// Release after this long without use (e.g. 30m).
    #[arg(long = "idle-timeout")]
    pub idle_timeout: Option<String>,
    /// Requested slug for a new lease.
    #[arg(long)]
    pub slug: Option<String>,
    /// Static host for provider=ssh.
    #[arg(long = "static-host")]
    pub static_host: Option<String>,
    /// Static user for provider=ssh.
    #[arg(long = "static-user")]
    pub static_user: Option<String>,
    /// Static port for provider=ssh.
    #[arg(long = "static-port")]
    pub static_port: Option<String>,
    /// Static work root for provider=ssh.
    #[arg(long = "static-work-root")]
    pub static_work_root: Option<String>,
    /// Exactly this machine type (`c7a.8xlarge`), with no fallback to other types.
    #[arg(long = "type", value_name = "TYPE")]
    pub server_type: Option<String>,
    /// The market tried first: spot (falls back to on-demand when spot is refused) or on-demand.
    #[arg(long, value_name = "spot|on-demand")]
    pub market: Option<String>,
    /// The runner's CPU architecture: `x86_64` or `arm64`.
    #[arg(long = "arch", value_name = "x86_64|arm64")]
    pub architecture: Option<String>,
    /// The runner's OS: linux (default), macos (aws: an EC2 Mac on a Dedicated Host) or
    /// windows.
    #[arg(long, value_name = "linux|macos|windows")]
    pub target: Option<String>,
    /// Reach the runner through this jump host (`[user@]host[:port]`, comma-separated hops).
    #[arg(long = "proxy-jump", value_name = "HOSTS")]
    pub proxy_jump: Option<String>,
    /// Reach the runner through this command (ssh's `ProxyCommand`: `%h`, `%p` expanded).
    #[arg(long = "proxy-command", value_name = "COMMAND")]
    pub proxy_command: Option<String>,
    /// A new lease with a desktop (X display and VNC); `run` exports `DISPLAY`.
    #[arg(long)]
    pub desktop: bool,
    /// The desktop environment: xfce (clouds' default), wayland, gnome or openbox (local).
    #[arg(long = "desktop-env", value_name = "ENV")]
    pub desktop_env: Option<String>,
    /// A new lease with a browser; `run` exports `BROWSER` and `CHROME_BIN`.
    #[arg(long)]
    pub browser: bool,
    /// A new lease with a code server.
    #[arg(long)]
    pub code: bool,
}

impl LeaseFlags {
    /// The flags that override config keys.
    pub fn values(&self) -> Vec<FlagValue> {
        let mut out = Vec::new();
        let mut add = |key: &str, flag: &str, value: &Option<String>| {
            if let Some(v) = value {
                out.push(FlagValue::new(key, flag, v.clone()));
            }
        };
        add("provider", "--provider", &self.provider);
        add("class", "--class", &self.class);
        add("serverType", "--type", &self.server_type);
        add("capacity.market", "--market", &self.market);
        add("architecture", "--arch", &self.architecture);
        add("target", "--target", &self.target);
        add("ttl", "--ttl", &self.ttl);
        add("idleTimeout", "--idle-timeout", &self.idle_timeout);
        add("static.host", "--static-host", &self.static_host);
        add("static.user", "--static-user", &self.static_user);
        add("static.port", "--static-port", &self.static_port);
        add(
            "static.workRoot",
            "--static-work-root",
            &self.static_work_root,
        );
        add("ssh.proxyJump", "--proxy-jump", &self.proxy_jump);
        add("ssh.proxyCommand", "--proxy-command", &self.proxy_command);
        add("desktopEnv", "--desktop-env", &self.desktop_env);
        for (on, key, flag) in [
            (self.desktop, "desktop", "--desktop"),
            (self.browser, "browser", "--browser"),
            (self.code, "code", "--code"),
        ] {
            if on {
                out.push(FlagValue::new(key, flag, "true".to_owned()));
            }
        }
        out
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn git_toplevel(cwd: &Path) -> Option<PathBuf> {
    let out = std::process::Command::new("git")
        .current_dir(cwd)
        .args(["rev-parse", "--show-toplevel"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Builds the context: finds the repo, loads config, prints config warnings.
pub fn context(flags: Vec<FlagValue>) -> CliResult<Ctx> {
    let cwd = std::env::current_dir().status(ExitStatus::Usage)?;
    let git_root = git_toplevel(&cwd);
    let settings = Settings::load(&cwd, git_root.as_deref(), flags)?;
    for warning in settings.warnings() {
        output::warn(warning);
    }
    let repo_root = git_root.unwrap_or(cwd);
    let repo_name = repo_root
        .file_name()
        .map_or_else(|| "workspace".into(), |n| n.to_string_lossy().into_owned());
    let state_dir = paths::state_dir();
    let broker = crate::broker::client(&settings)?;
    Ok(Ctx {
        broker,
        claims: ClaimStore::new(&state_dir),
        settings,
        repo_root,
        repo_name,
        state_dir,
    })
}

impl Ctx {
    /// A direct provider by name, configured from the settings (static host, keys).
    pub fn provider_named(&self, name: &str) -> CliResult<Arc<dyn Provider>> {
        let cfg = self.settings.config();
        let fixed = &cfg.static_host;
        let static_host = StaticHost {
            id: fixed.id.clone(),
            name: fixed.name.clone(),
            host: fixed.host.clone(),
            user: fixed.user.clone().unwrap_or_else(|| cfg.ssh.user.clone()),
            port: fixed.port.unwrap_or(cfg.ssh.port),
            fallback_ports: cfg.ssh.fallback_ports.clone(),
            work_root: fixed
                .work_root
                .clone()
                .unwrap_or_else(|| cfg.work_root.clone()),
            key: Some(expand_home(&cfg.ssh.key)),
        };
        if let Some(cloud) = crate::clouds::provider(name, cfg)? {
            return Ok(cloud);
        }
        let config = ProviderConfig {
            state_dir: self.state_dir.clone(),
            static_host,
        };
        crabbox_providers::provider_for(name, &config)
            .status(ExitStatus::Usage)
            .map_err(|e| {
                e.hint(
                    "set provider: local or provider: ssh (with static.host) in crabbox.yaml, \
                     or pass --provider",
                )
            })
    }

    /// The jump host or proxy command configured for reaching runners (config keys
    /// `ssh.proxyJump` / `ssh.proxyCommand`, their env variables and flags; at most one is set,
    /// the config layer refuses both).
    pub fn ssh_proxy(&self) -> Option<SshProxy> {
        let ssh = &self.settings.config().ssh;
        match (&ssh.proxy_jump, &ssh.proxy_command) {
            (Some(hops), _) => Some(SshProxy::Jump(hops.clone())),
            (None, Some(command)) => Some(SshProxy::Command(command.clone())),
            (None, None) => None,
        }
    }

    /// The provider a user chose (flag, environment or config file), not the built-in
    /// default; a coordinator is asked for it (`None`: the coordinator's default).
    pub fn explicit_provider(&self) -> Option<String> {
        (self.settings.origin("provider") != "default")
            .then(|| self.settings.config().provider.clone())
    }

    /// Remote workdir for this repo on a lease.
    pub fn workdir(&self, lease: &LeaseRecord) -> String {
        format!(
            "{}/{}/{}",
            lease.work_root.trim_end_matches('/'),
            lease.lease_id,
            self.repo_name
        )
    }

    /// The sync scope of this repo: built-in and configured excludes, `.crabboxignore` and
    /// the `sync.include` whitelist.
    pub fn sync_scope(&self) -> CliResult<sync::ManifestOptions> {
        let sync = &self.settings.config().sync;
        sync::ManifestOptions::load(&self.repo_root, &sync.exclude, &sync.include).map_err(|e| {
            CliError::new(ExitStatus::Sync, e).hint("make .crabboxignore readable, or remove it")
        })
    }
}

/// `~/x` with the home directory spelled out.
pub fn expand_home(path: &str) -> String {
    match path.strip_prefix("~/") {
        Some(rest) => format!("{}/{rest}", std::env::var("HOME").unwrap_or_default()),
        None => path.to_owned(),
    }
}

/// A provider name as the coordinator spells it (`google` is `gcp`, `static` is `ssh`).
pub fn canonical_provider(raw: &str) -> String {
    match raw.trim().to_ascii_lowercase().as_str() {
        "google" => "gcp".to_owned(),
        "static" | "static-ssh" => "ssh".to_owned(),
        other => other.to_owned(),
    }
}
