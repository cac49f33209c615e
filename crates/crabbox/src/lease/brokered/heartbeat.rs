//! Heartbeats of a coordinator lease: one now (`crabbox heartbeat`), or in the background
//! every `idle/3` (clamped to 5–60 s) while a command runs, each with the runner's Linux
//! telemetry sampled over the lease's SSH master.

use std::time::Duration;

use crabbox_api::coord::{HeartbeatRequest, Lease};
use crabbox_client::Client;
use crabbox_core::duration::format_duration;
use crabbox_providers::LeaseRecord;

use crate::broker;
use crate::error::CliResult;
use crate::lease::backend::KeepAlive;
use crate::lease::runner::{Sampler, sampler, ssh_target};
use crate::output;

/// How long the runner's telemetry may take (spec §4.9).
const TELEMETRY_TIMEOUT: Duration = Duration::from_secs(5);

/// `POST /v1/leases/{id}/heartbeat` now, with the runner's telemetry when its key is here.
pub async fn once(
    client: &Client,
    record: &LeaseRecord,
    idle_timeout: Option<Duration>,
    expected_provider: Option<String>,
) -> CliResult<Lease> {
    let target = ssh_target(record);
    let telemetry = if target.key.as_ref().is_some_and(|k| k.is_file()) {
        tokio::time::timeout(TELEMETRY_TIMEOUT, sampler(target)())
            .await
            .ok()
            .flatten()
    } else {
        None
    };
    if telemetry.is_none() {
        output::warn(format!(
            "no telemetry from the runner of lease {} (its SSH key is not here, or it did not \
             answer in {}s); heartbeating without it",
            record.lease_id,
            TELEMETRY_TIMEOUT.as_secs()
        ));
    }
    let req = HeartbeatRequest {
        expected_provider: Some(expected_provider.unwrap_or_else(|| record.provider.clone())),
        idle_timeout_seconds: idle_timeout.map(|d| d.as_secs() as f64),
        telemetry,
    };
    let url = client.base_url();
    client.heartbeat(&record.lease_id, &req).await.map_err(|e| {
        broker::error_at(
            e,
            &format!(
                "could not heartbeat lease {} on coordinator {url}",
                record.lease_id
            ),
            Some(url),
        )
    })
}

/// Touches the lease now and then heartbeats it in the background until the guard drops.
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
) -> CliResult<KeepAlive> {
    let id = record.lease_id.clone();
    let provider = record.provider.clone();
    let idle_timeout_seconds = idle_timeout.map(|d| d.as_secs() as f64);
    let first = HeartbeatRequest {
        expected_provider: Some(provider.clone()),
        idle_timeout_seconds,
        telemetry: None,
    };
    let touched = if idle_timeout.is_some() {
        let lease = client.heartbeat(&id, &first).await.map_err(|e| {
            broker::cli_error(e, &format!("could not update the idle timeout of {id}"))
        })?;
        record.idle_timeout_secs = lease.idle_timeout_seconds;
        let expires = lease.expires_at.to_string();
        output::err(format!(
            "updated idle_timeout={} expires={}",
            format_duration(Duration::from_secs(lease.idle_timeout_seconds)),
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
            output::warn(format!("heartbeat for {id} failed: {e}"));
        }
        loop {
            tokio::time::sleep(interval).await;
            let telemetry = tokio::time::timeout(TELEMETRY_TIMEOUT, sample())
                .await
                .ok()
                .flatten();
            let req = HeartbeatRequest {
                expected_provider: Some(provider.clone()),
                idle_timeout_seconds,
                telemetry,
            };
            if let Err(e) = client.heartbeat(&id, &req).await {
                output::warn(format!("heartbeat for {id} failed: {e}"));
            }
        }
    });
    Ok(KeepAlive::new(task))
}
