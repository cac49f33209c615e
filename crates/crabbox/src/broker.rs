//! Brokered mode: when a coordinator is configured (`coordinator` / `broker.url`), leases come
//! from it. `BrokerProvider` implements the same `Provider` trait as the direct providers, so
//! the data plane (keys, readiness, sync, run) is identical; the coordinator owns provisioning,
//! expiry and cleanup. Also: the heartbeat loop with Linux telemetry (the run record is
//! `crate::run_record`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use crabbox_api::ExitStatus;
use crabbox_api::coord::{HeartbeatRequest, Lease, ReleaseRequest};
use crabbox_client::{Client, ClientError};
use crabbox_providers::{AcquireRequest, Health, LeaseRecord, Provider, ProviderError};

use crate::error::{CliError, CliResult};
use crate::settings::Settings;

/// The label that marks a claim as brokered (value: the coordinator URL).
pub const BROKER_LABEL: &str = "broker";

/// The configured coordinator client, if any (`broker.mode: registered` is direct mode). It
/// sends the configured token (or the token command's) and the identity headers.
pub fn client(settings: &Settings) -> CliResult<Option<Client>> {
    let coord = &settings.config().coordinator;
    let Some(url) = coord.url.clone().filter(|u| !u.trim().is_empty()) else {
        return Ok(None);
    };
    let client = Client::new(&url, None).map_err(|e| {
        CliError::new(ExitStatus::Usage, e).hint(
            "set coordinator: https://… in ~/.config/crabbox/config.yaml or CRABBOX_COORDINATOR",
        )
    })?;
    let credentials = crate::credentials::CliCredentials::configured(coord);
    Ok(Some(client.with_credentials(credentials)))
}

/// The coordinator client, or exit 2 saying one is needed.
pub fn require(settings: &Settings, what: &str) -> CliResult<Client> {
    client(settings)?.ok_or_else(|| {
        CliError::msg(
            ExitStatus::Usage,
            format!("{what} requires a configured coordinator"),
        )
        .hint("run `crabbox login --url https://…` or set CRABBOX_COORDINATOR")
    })
}

/// The admin client (`broker.adminToken` / `CRABBOX_COORDINATOR_ADMIN_TOKEN`), with the
/// identity headers (an admin token acts for the owner they name). The token command is not
/// used for admin calls.
pub fn require_admin(settings: &Settings) -> CliResult<Client> {
    let base = require(settings, "an admin command")?;
    let Some(token) = settings.config().coordinator.admin_token.as_ref() else {
        return Err(CliError::msg(
            ExitStatus::Usage,
            "admin command requires broker.adminToken or CRABBOX_COORDINATOR_ADMIN_TOKEN",
        ));
    };
    let credentials = crate::credentials::CliCredentials::token(Some(token.clone()));
    Ok(base.with_credentials(credentials))
}

/// Maps a coordinator failure to the exit-code contract with a hint.
pub fn cli_error(e: ClientError, doing: &str) -> CliError {
    error_at(e, doing, None)
}

/// [`cli_error`] for a known coordinator: hints name its URL.
pub fn error_at(e: ClientError, doing: &str, url: Option<&str>) -> CliError {
    let at = url.unwrap_or("<coordinator>");
    let status = match e.status() {
        Some(401 | 403) => ExitStatus::Auth,
        Some(404) => ExitStatus::NotFound,
        Some(400 | 409 | 424) => ExitStatus::Usage,
        _ => ExitStatus::Failure,
    };
    let hint = match (e.status(), e.code()) {
        (Some(401), _) => Some(format!(
            "run `crabbox login --url {at}` (or check CRABBOX_COORDINATOR_TOKEN)"
        )),
        (Some(403), _) => Some(
            "this login may not change that lease; its owner can share it with manage access"
                .to_owned(),
        ),
        (Some(404), _) => Some(format!(
            "`crabbox list` shows your leases on {at}; other users' leases are not visible to you"
        )),
        (Some(429), _) | (_, Some("cost_limit_exceeded")) => Some(
            "release a lease (`crabbox list`, `crabbox stop <id>`) or ask an admin to raise the \
             cap; `crabbox usage` shows the limits"
                .to_owned(),
        ),
        (_, Some("provider_not_configured")) => Some(
            "pick a provider this coordinator offers with --provider, or ask its admin to \
             configure this one"
                .to_owned(),
        ),
        (None, _) if matches!(e, ClientError::Transport { .. }) => Some(format!(
            "is the coordinator at {at} running and reachable? `crabbox whoami` or \
             `crabbox doctor` checks it"
        )),
        _ => None,
    };
    let mut err = CliError::new(status, anyhow::Error::new(e).context(doing.to_owned()));
    if let Some(h) = hint {
        err = err.hint(h);
    }
    err
}

/// Leases through a coordinator.
#[derive(Debug, Clone)]
pub struct BrokerProvider {
    client: Client,
    /// The provider to ask the coordinator for (`None`: its default).
    provider: Option<String>,
}

impl BrokerProvider {
    pub fn new(client: Client, provider: Option<String>) -> Self {
        Self { client, provider }
    }

    /// Creates a lease on the coordinator (see [`crate::brokered::create`]).
    pub async fn create(&self, req: &AcquireRequest) -> CliResult<LeaseRecord> {
        crate::brokered::create(&self.client, self.provider.clone(), req).await
    }
}

fn provider_error(e: &ClientError) -> ProviderError {
    match e.status() {
        Some(400 | 409 | 424) => ProviderError::InvalidSpec(e.to_string()),
        Some(404) => ProviderError::NotFound(e.to_string()),
        Some(401 | 403) => ProviderError::Auth(e.to_string()),
        Some(429) => ProviderError::Quota(e.to_string()),
        _ => ProviderError::Transient(e.to_string()),
    }
}

/// A coordinator lease as the CLI tracks it in its local claims.
pub fn record_from(lease: &Lease, url: &str) -> LeaseRecord {
    let mut record = LeaseRecord::from_coordinator(lease);
    record.labels = [
        (BROKER_LABEL.to_owned(), url.to_owned()),
        ("class".to_owned(), lease.class.clone()),
    ]
    .into();
    record
}

pub fn is_brokered(record: &LeaseRecord) -> bool {
    record.labels.contains_key(BROKER_LABEL)
}

#[async_trait]
impl Provider for BrokerProvider {
    fn name(&self) -> &'static str {
        "coordinator"
    }

    fn per_lease_key(&self) -> bool {
        true
    }

    async fn acquire(&self, req: &AcquireRequest) -> Result<LeaseRecord, ProviderError> {
        self.create(req).await.map_err(|e| {
            let message = format!("{:#}", e.error);
            if e.code == ExitStatus::Usage.code() {
                ProviderError::InvalidSpec(message)
            } else if e.code == ExitStatus::Auth.code() {
                ProviderError::Auth(message)
            } else {
                ProviderError::Transient(message)
            }
        })
    }

    async fn health(&self, lease: &LeaseRecord) -> Health {
        match self.client.get_lease(&lease.lease_id).await {
            Ok(l) if l.is_live() => Health::Alive,
            Ok(l) => Health::Gone(format!("the coordinator reports it {}", l.state.as_str())),
            Err(e) if e.status() == Some(404) => {
                Health::Gone("the coordinator no longer knows it".into())
            }
            Err(_) => Health::Unknown,
        }
    }

    async fn release(&self, lease: &LeaseRecord) -> Result<(), ProviderError> {
        let req = ReleaseRequest {
            expected_provider: None,
            delete: Some(true),
        };
        // A 404 is not success: the lease may live on another coordinator, or under another
        // login. The CLI's own release (`crate::brokered::release`) decides what a 404 means.
        self.client
            .release(&lease.lease_id, &req)
            .await
            .map(drop)
            .map_err(|e| provider_error(&e))
    }
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the OS random source is unavailable");
    hex::encode(buf)
}

/// Linux telemetry from the runner, one command over the lease's SSH master (spec §4.9).
pub const TELEMETRY_SCRIPT: &str = r#"set +e
echo cpuCount=$(getconf _NPROCESSORS_ONLN 2>/dev/null)
read l1 l5 l15 _ < /proc/loadavg 2>/dev/null && echo load1=$l1 && echo load5=$l5 && echo load15=$l15
awk '/^MemTotal:/{t=$2*1024} /^MemAvailable:/{a=$2*1024} END{if(t>0){printf "memoryTotalBytes=%d\nmemoryUsedBytes=%d\nmemoryPercent=%.1f\n",t,t-a,(t-a)*100/t}}' /proc/meminfo 2>/dev/null
df -PB1 / 2>/dev/null | awk 'NR==2{printf "diskTotalBytes=%d\ndiskUsedBytes=%d\ndiskPercent=%.1f\n",$2,$3,($2>0?$3*100/$2:0)}'
awk '{printf "uptimeSeconds=%d\n",$1}' /proc/uptime 2>/dev/null
"#;

/// Parses `key=value` telemetry lines; `None` when no metric parsed.
pub fn parse_telemetry(text: &str) -> Option<serde_json::Value> {
    let mut map = serde_json::Map::new();
    for line in text.lines() {
        let Some((k, v)) = line.trim().split_once('=') else {
            continue;
        };
        let Ok(n) = v.trim().parse::<f64>() else {
            continue;
        };
        if n.is_finite() && n >= 0.0 {
            map.insert(k.to_owned(), serde_json::json!(n));
        }
    }
    if map.is_empty() {
        return None;
    }
    map.insert(
        "capturedAt".into(),
        serde_json::json!(crabbox_api::coord::Timestamp::now().to_string()),
    );
    map.insert("source".into(), serde_json::json!("ssh-linux"));
    Some(serde_json::Value::Object(map))
}

/// Heartbeats a brokered lease every `idle/3` (clamped to 5–60 s) with telemetry until dropped.
#[derive(Debug)]
pub struct Heartbeat {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Samples the runner's telemetry (for heartbeats and the run record).
pub type Sampler = Arc<
    dyn Fn() -> futures_util::future::BoxFuture<'static, Option<serde_json::Value>> + Send + Sync,
>;

impl Heartbeat {
    /// Touches the lease now and then heartbeats it in the background.
    ///
    /// With `idle_timeout` (`run --id X --idle-timeout D`, spec §4.5 step 5) that first
    /// heartbeat sets the lease's idle timeout and is awaited: it prints
    /// `updated idle_timeout=<D> expires=<t>` on stderr, updates `record`, and a refusal fails
    /// the run. Every later heartbeat carries the same value, as the old tool's do.
    pub async fn start(
        client: Client,
        record: &mut LeaseRecord,
        sample: Sampler,
        idle_timeout: Option<Duration>,
    ) -> CliResult<Self> {
        let id = record.lease_id.clone();
        let provider = record.provider.clone();
        let idle_timeout_seconds = idle_timeout.map(|d| d.as_secs() as f64);
        let first = HeartbeatRequest {
            expected_provider: Some(provider.clone()),
            idle_timeout_seconds,
            telemetry: None,
        };
        let touched = if idle_timeout.is_some() {
            let lease = client
                .heartbeat(&id, &first)
                .await
                .map_err(|e| cli_error(e, &format!("could not update the idle timeout of {id}")))?;
            record.idle_timeout_secs = lease.idle_timeout_seconds;
            let expires = lease.expires_at.to_string();
            crate::output::err(format!(
                "updated idle_timeout={} expires={}",
                crabbox_core::duration::format_duration(Duration::from_secs(
                    lease.idle_timeout_seconds
                )),
                if expires.is_empty() { "-" } else { &expires }
            ));
            true
        } else {
            false
        };
        let interval = Duration::from_secs((record.idle_timeout_secs / 3).clamp(5, 60));
        let task = tokio::spawn(async move {
            // Touch now (a short run still refreshes the idle timer), sample later.
            if !touched && let Err(e) = client.heartbeat(&id, &first).await {
                crate::output::warn(format!("heartbeat for {id} failed: {e}"));
            }
            loop {
                tokio::time::sleep(interval).await;
                let telemetry = tokio::time::timeout(Duration::from_secs(5), sample())
                    .await
                    .ok()
                    .flatten();
                let req = HeartbeatRequest {
                    expected_provider: Some(provider.clone()),
                    idle_timeout_seconds,
                    telemetry,
                };
                if let Err(e) = client.heartbeat(&id, &req).await {
                    crate::output::warn(format!("heartbeat for {id} failed: {e}"));
                }
            }
        });
        Ok(Self { task })
    }
}

/// Samples the runner's telemetry over its SSH master.
pub fn sampler(target: crabbox_remote::ssh::SshTarget) -> Sampler {
    Arc::new(move || {
        let target = target.clone();
        Box::pin(async move {
            let out = target.capture(TELEMETRY_SCRIPT).await.ok()?;
            parse_telemetry(&String::from_utf8_lossy(&out.stdout))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telemetry_lines_parse_and_garbage_is_dropped() {
        let v =
            parse_telemetry("cpuCount=2\nload1=0.50\nmemoryPercent=-3\nnoise\nuptimeSeconds=12\n")
                .unwrap();
        assert_eq!(v["cpuCount"], 2.0);
        assert_eq!(v["load1"], 0.5);
        assert!(v.get("memoryPercent").is_none());
        assert_eq!(v["source"], "ssh-linux");
        assert!(parse_telemetry("nothing here").is_none());
    }
}
