//! `crabbox coordinator serve` settings. Every setting is a flag with an environment variable
//! of the existing coordinator's name; `--help` lists them all, including the authentication
//! variables read by `crabbox-auth`.

use std::net::SocketAddr;
use std::path::PathBuf;

use crabbox_api::coord::CostLimits;
use crabbox_providers::cloud::cost::CostRates;

/// Authentication settings, read from the environment (documented in `--help`).
pub const AUTH_ENV_HELP: &str = "\
Authentication (environment only; secrets never on the command line):
  CRABBOX_SHARED_TOKEN            bearer token for team members (non-admin)
  CRABBOX_SHARED_OWNER            owner recorded for shared-token callers
  CRABBOX_ADMIN_TOKEN             bearer token with admin rights
  CRABBOX_DEFAULT_ORG             org label for token callers
  CRABBOX_SESSION_SECRET          HMAC key for signed user tokens (must differ from the shared token)
  CRABBOX_USER_TOKEN_TTL_SECONDS  user token lifetime (default 15552000 = 180 days)
  CRABBOX_PUBLIC_URL              public origin for GitHub login callbacks
  CRABBOX_GITHUB_CLIENT_ID / CRABBOX_GITHUB_CLIENT_SECRET   GitHub OAuth app
  CRABBOX_GITHUB_ALLOWED_ORGS / CRABBOX_GITHUB_ALLOWED_TEAMS / CRABBOX_GITHUB_ADMIN_OWNERS
                                  (CRABBOX_GITHUB_ALLOWED_ORG / _TEAM are read as aliases)
  CRABBOX_GITHUB_REVOKED_USERS    github:<id> entries denied immediately
  CRABBOX_GITHUB_MEMBERSHIP_CACHE_SECONDS   membership revalidation cache (default 300)
  CRABBOX_GITHUB_URL / CRABBOX_GITHUB_API_URL   GitHub endpoints (default github.com)
  CRABBOX_TRUSTED_PROXY_CIDRS     peers allowed to assert identity with a header
  CRABBOX_TRUSTED_USER_HEADER / CRABBOX_TRUSTED_USER_ORG / CRABBOX_TRUSTED_PROXY_SECRET
  CRABBOX_ACCESS_TEAM_DOMAIN / CRABBOX_ACCESS_AUD   Cloudflare Access: accepted, but this
                                  coordinator does not verify Access JWTs (a warning at start)
  Misconfigurations that still start (the admin token equal to the shared token, GitHub login
  without a usable public URL, …) are logged as warnings when the coordinator starts.

Caps (0 or unset = off):
  CRABBOX_MAX_ACTIVE_LEASES, CRABBOX_MAX_ACTIVE_LEASES_PER_OWNER, CRABBOX_MAX_ACTIVE_LEASES_PER_ORG,
  CRABBOX_CAPACITY_ADMIN_OWNERS, CRABBOX_MAX_ACTIVE_LEASES_PER_CAPACITY_ADMIN,
  CRABBOX_MAX_MONTHLY_USD, CRABBOX_MAX_MONTHLY_USD_PER_OWNER, CRABBOX_MAX_MONTHLY_USD_PER_ORG,
  CRABBOX_COST_RATES_JSON ({\"<provider>:<serverType>\": usd_per_hour})

Logging and the local provider:
  CRABBOX_LOG                     log filter (default info), e.g. debug or crabbox=debug,tower_http=warn
  CRABBOX_SSHD                    absolute path of the sshd for local runners (default: /usr/sbin/sshd,
                                  /usr/local/sbin/sshd, /opt/homebrew/sbin/sshd, then PATH)";

/// Flags of `crabbox coordinator serve`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = AUTH_ENV_HELP)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(
        long,
        env = "CRABBOX_COORDINATOR_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,
    /// Database: a SQLite file path (or `sqlite://PATH`), or `postgres://…` for several replicas.
    /// Default: coordinator.db in the state directory.
    #[arg(long, env = "CRABBOX_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// PostgreSQL schema that holds the coordinator's tables.
    #[arg(long, env = "CRABBOX_DATABASE_SCHEMA", default_value = "crabbox")]
    pub database_schema: String,
    /// PostgreSQL connection pool size.
    #[arg(long, env = "CRABBOX_DATABASE_POOL_SIZE", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_pool_size: u32,
    /// How long connecting to PostgreSQL (and waiting for a pooled connection) may take, in
    /// milliseconds.
    #[arg(long, env = "CRABBOX_DATABASE_CONNECT_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub database_connect_timeout_ms: u64,
    /// Start without checking the SQLite file for damage. The check reads the whole file,
    /// about 3 s per 400 MiB from disk; without it a damaged file fails requests later instead
    /// of stopping the start.
    #[arg(long, env = "CRABBOX_SKIP_SQLITE_CHECK")]
    pub skip_sqlite_check: bool,
    #[expect(
        clippy::doc_markdown,
        reason = "this doc comment is the --help text, shown verbatim"
    )]
    /// Where the coordinator keeps its SQLite file and local runners (created private to
    /// this user). Default: $XDG_STATE_HOME/crabbox/coordinator, else
    /// ~/.local/state/crabbox/coordinator.
    #[arg(long, env = "CRABBOX_COORDINATOR_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Providers this coordinator offers (comma-separated): local, ssh.
    #[arg(
        long,
        env = "CRABBOX_COORDINATOR_PROVIDERS",
        default_value = "local",
        value_delimiter = ','
    )]
    pub providers: Vec<String>,
    /// Provider used when a create names none (default: the first of --providers).
    #[arg(long, env = "CRABBOX_COORDINATOR_DEFAULT_PROVIDER")]
    pub default_provider: Option<String>,
    /// Static ssh pool for provider `ssh`: comma-separated user@host[:port] entries.
    #[arg(long, env = "CRABBOX_SSH_POOL", value_delimiter = ',')]
    pub ssh_pool: Vec<String>,
    /// Private key the coordinator uses to reach pool hosts.
    #[arg(long, env = "CRABBOX_SSH_POOL_KEY")]
    pub ssh_pool_key: Option<PathBuf>,
    /// Work root on pool hosts.
    #[arg(
        long,
        env = "CRABBOX_SSH_POOL_WORK_ROOT",
        default_value = "/work/crabbox"
    )]
    pub ssh_pool_work_root: String,
    /// Authorized-keys file on pool hosts that lease keys are added to and removed from.
    #[arg(
        long,
        env = "CRABBOX_SSH_POOL_AUTHORIZED_KEYS",
        default_value = "~/.ssh/authorized_keys"
    )]
    pub ssh_pool_authorized_keys: String,
    /// Days terminal runs and ended leases are kept.
    #[arg(long, env = "CRABBOX_RUN_RETENTION_DAYS", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub run_retention_days: u32,
    /// Seconds an interrupted create is left to settle before it is cleaned up.
    #[arg(
        long,
        env = "CRABBOX_PROVISIONING_SETTLE_SECONDS",
        default_value_t = 300
    )]
    pub provisioning_settle_seconds: u32,
    /// Longest graceful shutdown before the process exits anyway, in milliseconds.
    #[arg(long, env = "CRABBOX_SHUTDOWN_TIMEOUT_MS", default_value_t = 120_000)]
    pub shutdown_timeout_ms: u64,
    /// Log format: text or json.
    #[arg(long, env = "CRABBOX_LOG_FORMAT", default_value = "text",
          value_parser = ["text", "json"])]
    pub log_format: String,
}

/// Resolved settings the handlers read.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub default_provider: String,
    pub limits: CostLimits,
    pub cost_rates: CostRates,
    pub run_retention_days: u32,
    pub settle_secs: i64,
    /// Extra strings the redactor always hides (configured secrets).
    pub secrets: Vec<String>,
}

fn env_u64(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Result<u64, String> {
    match env(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
    {
        None => Ok(0),
        Some(v) => v
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(|f| if f <= 0.0 { 0 } else { f.trunc() as u64 })
            .ok_or_else(|| format!("{name} must be a number, got {v:?}")),
    }
}

fn env_f64(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Result<f64, String> {
    match env(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
    {
        None => Ok(0.0),
        Some(v) => v
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(|f| f.max(0.0))
            .ok_or_else(|| format!("{name} must be a number, got {v:?}")),
    }
}

/// Reads caps and cost rates from the environment.
pub fn limits_from_env(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(CostLimits, CostRates), String> {
    let limits = CostLimits {
        max_active_leases: env_u64(env, "CRABBOX_MAX_ACTIVE_LEASES")?,
        max_active_leases_per_owner: env_u64(env, "CRABBOX_MAX_ACTIVE_LEASES_PER_OWNER")?,
        max_active_leases_per_org: env_u64(env, "CRABBOX_MAX_ACTIVE_LEASES_PER_ORG")?,
        capacity_admin_owners: env("CRABBOX_CAPACITY_ADMIN_OWNERS")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect(),
        max_active_leases_per_capacity_admin: env_u64(
            env,
            "CRABBOX_MAX_ACTIVE_LEASES_PER_CAPACITY_ADMIN",
        )?,
        max_monthly_usd: env_f64(env, "CRABBOX_MAX_MONTHLY_USD")?,
        max_monthly_usd_per_owner: env_f64(env, "CRABBOX_MAX_MONTHLY_USD_PER_OWNER")?,
        max_monthly_usd_per_org: env_f64(env, "CRABBOX_MAX_MONTHLY_USD_PER_ORG")?,
    };
    let rates = CostRates::parse(&env("CRABBOX_COST_RATES_JSON").unwrap_or_default())
        .map_err(|e| e.to_string())?;
    Ok((limits, rates))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_parse_and_reject_garbage_naming_the_variable() {
        let env = |k: &str| match k {
            "CRABBOX_MAX_ACTIVE_LEASES_PER_OWNER" => Some("10".to_owned()),
            "CRABBOX_MAX_MONTHLY_USD" => Some("-5".to_owned()),
            "CRABBOX_CAPACITY_ADMIN_OWNERS" => Some(" Ops@Example.com ,".to_owned()),
            "CRABBOX_COST_RATES_JSON" => Some(r#"{"local:local":0.25}"#.to_owned()),
            _ => None,
        };
        let (limits, rates) = limits_from_env(&env).unwrap();
        assert_eq!(limits.max_active_leases_per_owner, 10);
        assert!(limits.max_monthly_usd.abs() < f64::EPSILON);
        assert_eq!(limits.capacity_admin_owners, vec!["ops@example.com"]);
        assert_eq!(rates, CostRates::parse(r#"{"local:local":0.25}"#).unwrap());
        let bad = |k: &str| (k == "CRABBOX_MAX_ACTIVE_LEASES").then(|| "lots".to_owned());
        let err = limits_from_env(&bad).unwrap_err();
        assert!(err.contains("CRABBOX_MAX_ACTIVE_LEASES"), "{err}");
    }
}
