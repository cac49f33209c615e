//! Brokered leases as the CLI handles them: which coordinator a local claim belongs to, the
//! coordinator's own record for `status`, `list` and `run --id`, and release through the
//! coordinator that created the lease.
//!
//! A claim is only ever acted on through the coordinator that created it. With another
//! coordinator configured (or none) the command is refused and the claim and its SSH key are
//! kept: releasing "elsewhere" would report success while the lease kept running.

use std::time::Duration;

use crabbox_api::ExitStatus;
use crabbox_api::coord::{Lease, LeaseRequest, LeaseState, ReleaseRequest, Telemetry, Timestamp};
use crabbox_api::view::LeaseView;
use crabbox_client::{Client, ClientError};
use crabbox_core::duration::format_duration;
use crabbox_providers::{AcquireRequest, LeaseRecord};

use crate::broker::{self, BROKER_LABEL};
use crate::error::{CliError, CliResult};
use crate::interrupt::Interrupt;
use crate::lease::{self, Ctx};

/// The coordinator URL a brokered claim was created through (empty when unrecorded).
pub fn claim_url(record: &LeaseRecord) -> &str {
    record.labels.get(BROKER_LABEL).map_or("", String::as_str)
}

/// Whether two coordinator URLs name the same coordinator.
pub fn same_coordinator(a: &str, b: &str) -> bool {
    let norm = |u: &str| u.trim().trim_end_matches('/').to_ascii_lowercase();
    !a.trim().is_empty() && norm(a) == norm(b)
}

/// The configured coordinator's client when that coordinator created this claim.
pub fn own_client<'a>(ctx: &'a Ctx, record: &LeaseRecord) -> Option<&'a Client> {
    ctx.broker
        .as_ref()
        .filter(|c| same_coordinator(claim_url(record), c.base_url()))
}

/// The client for a brokered claim, or an error (exit 2) that leaves the claim alone.
pub fn client_for(ctx: &Ctx, record: &LeaseRecord) -> CliResult<Client> {
    if let Some(client) = own_client(ctx, record) {
        return Ok(client.clone());
    }
    let url = claim_url(record);
    let configured = match &ctx.broker {
        Some(c) => format!("the configured coordinator is {}", c.base_url()),
        None => "no coordinator is configured".to_owned(),
    };
    Err(CliError::msg(
        ExitStatus::Usage,
        format!(
            "lease {} was created through coordinator {url}, but {configured}",
            record.lease_id
        ),
    )
    .hint(format!(
        "log in to that coordinator (`crabbox login --url {url}`, or set \
         CRABBOX_COORDINATOR={url} with its token) to use or release this lease; its local \
         claim and SSH key are kept"
    )))
}

/// A note for `list`: a claim this coordinator cannot speak for.
pub fn foreign_note(ctx: &Ctx, record: &LeaseRecord) -> String {
    let configured = ctx
        .broker
        .as_ref()
        .map_or_else(|| "none".to_owned(), |c| c.base_url().to_owned());
    format!(
        "lease {} belongs to coordinator {} (configured: {configured}); its state is unknown here",
        record.lease_id,
        claim_url(record)
    )
}

/// `GET /v1/leases/{id-or-slug}`. A 404 is exit 4 naming the coordinator; `claim` (the local
/// claim being looked up, if any) makes the hint say how to forget it.
pub async fn fetch(client: &Client, id: &str, claim: Option<&LeaseRecord>) -> CliResult<Lease> {
    client
        .get_lease(id)
        .await
        .map_err(|e| lookup_error(e, id, client.base_url(), claim))
}

fn lookup_error(e: ClientError, id: &str, url: &str, claim: Option<&LeaseRecord>) -> CliError {
    if e.status() != Some(404) {
        return broker::error_at(
            e,
            &format!("could not look up lease {id:?} on coordinator {url}"),
            Some(url),
        );
    }
    let err = CliError::msg(
        ExitStatus::NotFound,
        format!("lease {id:?} not found on coordinator {url}"),
    );
    match claim {
        Some(record) => err.hint(format!(
            "it ended and was pruned, or this login cannot see it; `crabbox stop {}` forgets \
             the local claim",
            record.lease_id
        )),
        None => err.hint(format!(
            "`crabbox list` shows your leases on {url}; other users' leases are not visible to you"
        )),
    }
}

/// Creates a lease on the coordinator. Failures keep the coordinator's answer, mapped to
/// the exit-code contract with a hint (cap, provider not configured, unreachable).
///
/// A first Ctrl-C/SIGTERM while the create is in flight (or while a replayed create is still
/// provisioning) abandons it and cancels the create attempt on the coordinator (spec §4.3): the
/// coordinator then releases a lease it already made for this attempt, or deletes the runner
/// when its provider call returns, so nothing is left running until the idle timeout.
pub async fn create_or_cancel(
    client: &Client,
    provider: Option<String>,
    req: &AcquireRequest,
    interrupt: &Interrupt,
) -> CliResult<LeaseRecord> {
    let token = attempt_token();
    tokio::select! {
        // A create that answered in the same instant is still canceled: the user asked to stop,
        // and cancel-create releases a lease already bound to this attempt.
        biased;
        () = interrupt.wait() => Err(cancel_create(client, req, &token).await),
        created = create_attempt(client, provider, req, &token) => created,
    }
}

/// [`create_or_cancel`] for callers that handle no signals.
pub async fn create(
    client: &Client,
    provider: Option<String>,
    req: &AcquireRequest,
) -> CliResult<LeaseRecord> {
    create_attempt(client, provider, req, &attempt_token()).await
}

/// A fresh create-attempt token (`createAttemptID`).
fn attempt_token() -> String {
    format!("cat_{}", broker::random_hex(16))
}

/// Cancels the create attempt `token` for `req` and says so; the error to exit with (130).
async fn cancel_create(client: &Client, req: &AcquireRequest, token: &str) -> CliError {
    let url = client.base_url();
    let id = &req.lease_id;
    let mut attempt = 0;
    let answer = loop {
        attempt += 1;
        match client.cancel_create(id, token).await {
            Err(e) if e.is_uncertain() && attempt < RELEASE_TRIES => {
                tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
            }
            answer => break answer,
        }
    };
    match answer {
        Ok(body) => {
            // The coordinator returns the lease when it had already made one (now released).
            let state = body["lease"]["state"]
                .as_str()
                .map(|s| format!(" state={s}"))
                .unwrap_or_default();
            crate::output::err(format!("canceled lease={id} slug={}{state}", req.slug));
            CliError::msg(
                ExitStatus::Interrupted,
                format!("interrupted; the create of lease {id} was canceled"),
            )
        }
        Err(e) => CliError::new(
            ExitStatus::Interrupted,
            anyhow::Error::new(e).context(format!(
                "interrupted, and could not cancel the create of lease {id} on coordinator {url}"
            )),
        )
        .hint(format!(
            "the lease may still be created; check `crabbox list` and release it with \
             `crabbox stop {id}`"
        )),
    }
}

/// One create attempt token's create, with its retries and the wait for a replay still
/// provisioning.
async fn create_attempt(
    client: &Client,
    provider: Option<String>,
    req: &AcquireRequest,
    token: &str,
) -> CliResult<LeaseRecord> {
    let url = client.base_url();
    let body = LeaseRequest {
        lease_id: Some(req.lease_id.clone()),
        create_attempt_id: Some(token.to_owned()),
        slug: Some(req.slug.clone()),
        provider,
        class: Some(req.class.clone()).filter(|c| !c.is_empty()),
        ttl_seconds: Some(req.ttl_secs as f64),
        idle_timeout_seconds: Some(req.idle_timeout_secs as f64),
        keep: Some(req.keep),
        ssh_public_key: Some(req.public_key.clone()),
        ..LeaseRequest::default()
    };
    // An uncertain answer (5xx, a dropped connection) is retried with the same attempt
    // token for up to 90 s: the coordinator joins or replays the create, never doubles it.
    // A coordinator that accepts no connection at all is given a few seconds only: waiting
    // 90 s in silence for a server that is not running helps nobody.
    let started = std::time::Instant::now();
    let (mut attempt, mut unreachable) = (0, 0);
    let lease = loop {
        attempt += 1;
        let e = match client.create_lease(&body).await {
            Ok(lease) => break lease,
            Err(e) if e.is_uncertain() => e,
            Err(e) => {
                return Err(broker::error_at(
                    e,
                    "the coordinator refused the lease",
                    Some(url),
                ));
            }
        };
        if e.never_connected() {
            unreachable += 1;
        } else {
            unreachable = 0;
        }
        let elapsed = started.elapsed();
        if unreachable >= CREATE_UNREACHABLE_TRIES || elapsed >= CREATE_RETRY_WINDOW {
            return Err(broker::error_at(e, "could not create a lease", Some(url)));
        }
        crate::output::warn(format!(
            "{e}; retrying the same create in {}s (attempt {attempt})",
            CREATE_RETRY_PAUSE.as_secs()
        ));
        tokio::time::sleep(CREATE_RETRY_PAUSE).await;
    };
    let mut lease = lease;
    // A replay of a create still provisioning: poll until it is active.
    while lease.state == LeaseState::Provisioning {
        tokio::time::sleep(Duration::from_secs(2)).await;
        lease = client.get_lease(&lease.id).await.map_err(|e| {
            broker::error_at(e, "could not follow the lease being provisioned", Some(url))
        })?;
    }
    if !lease.is_live() {
        return Err(CliError::msg(
            ExitStatus::Failure,
            format!(
                "the coordinator's lease {} is {}",
                lease.id,
                lease.state.as_str()
            ),
        ));
    }
    Ok(broker::record_from(&lease, url))
}

/// How long an uncertain create is retried, and how often.
const CREATE_RETRY_WINDOW: Duration = Duration::from_secs(90);
const CREATE_RETRY_PAUSE: Duration = Duration::from_secs(5);
/// Consecutive creates that could not connect to the coordinator at all before giving up.
const CREATE_UNREACHABLE_TRIES: u32 = 3;

/// What a release did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    /// The coordinator released the lease (and deletes its runner).
    Released,
    /// The coordinator that created the lease answered 404: the lease ended and was pruned,
    /// or this login cannot see it. Either way there is nothing left to release from here.
    Gone,
}

/// Attempts at a release whose outcome was uncertain (transport error, 5xx); releasing twice
/// is harmless.
const RELEASE_TRIES: u32 = 5;

/// `POST /v1/leases/{id}/release {"delete": true}` on `client`, which must be the lease's own
/// coordinator (see [`client_for`]); uncertain answers are retried (spec §1.3: 5 attempts,
/// 2 s × n apart). When the caller's own route answers 401 or 404 and an admin token is
/// configured (`admin`, for the same coordinator), the release goes through the admin route.
pub async fn release(
    client: &Client,
    record: &LeaseRecord,
    admin: Option<&Client>,
) -> CliResult<Released> {
    let url = client.base_url();
    let req = ReleaseRequest {
        expected_provider: Some(record.provider.clone()).filter(|p| !p.is_empty()),
        delete: Some(true),
    };
    let mut attempt = 0;
    let mut via_admin = false;
    loop {
        attempt += 1;
        let answer = match (via_admin, admin) {
            (true, Some(admin)) => admin.admin_release(&record.lease_id, &req).await,
            _ => client.release(&record.lease_id, &req).await,
        };
        match answer {
            Ok(_) => return Ok(Released::Released),
            Err(e) if !via_admin && admin.is_some() && matches!(e.status(), Some(401 | 404)) => {
                crate::output::warn(format!(
                    "{e}; releasing lease {} through the admin route",
                    record.lease_id
                ));
                via_admin = true;
                attempt = 0;
            }
            Err(e) if e.status() == Some(404) => return Ok(Released::Gone),
            Err(e) if e.is_uncertain() && attempt < RELEASE_TRIES => {
                let pause = Duration::from_secs(2 * u64::from(attempt));
                crate::output::warn(format!(
                    "{e}; retrying the release in {}s (attempt {attempt} of {RELEASE_TRIES})",
                    pause.as_secs()
                ));
                tokio::time::sleep(pause).await;
            }
            Err(e) => {
                return Err(broker::error_at(
                    e,
                    &format!(
                        "could not release lease {} on coordinator {url}",
                        record.lease_id
                    ),
                    Some(url),
                ));
            }
        }
    }
}

/// Copies the coordinator's clock fields into a claim record (heartbeats from other processes
/// move them), so expiry warnings and later views start from the truth.
pub fn refresh(record: &mut LeaseRecord, lease: &Lease) {
    let fresh = LeaseRecord::from_coordinator(lease);
    record.created_at = fresh.created_at;
    record.last_touched_at = fresh.last_touched_at;
    record.ttl_secs = fresh.ttl_secs;
    record.idle_timeout_secs = fresh.idle_timeout_secs;
}

/// The view of a coordinator lease: its state, clock and telemetry as the coordinator reports
/// them; `claim` adds what only this machine knows (the repo it is claimed for).
pub fn view(lease: &Lease, url: &str, claim: Option<&LeaseRecord>) -> LeaseView {
    let record = broker::record_from(lease, url);
    let now = Timestamp::now().millis();
    let idle_ms = now.saturating_sub(lease.last_touched_at.millis()).max(0);
    let key = lease::ssh_target(&record)
        .key
        .map(|k| k.display().to_string())
        .unwrap_or_default();
    let mut labels = record.labels.clone();
    for (k, v) in [("owner", &lease.owner), ("org", &lease.org)] {
        if !v.is_empty() {
            labels.insert(k.to_owned(), v.clone());
        }
    }
    LeaseView {
        id: lease.id.clone(),
        slug: lease.slug.clone(),
        provider: lease.provider.clone(),
        target: if lease.target.is_empty() {
            "linux".to_owned()
        } else {
            lease.target.clone()
        },
        state: lease.state.as_str().to_owned(),
        server_id: record.server_id.clone(),
        server_type: lease.server_type.clone(),
        host: lease.host.clone(),
        ssh_host: lease.host.clone(),
        ssh_user: lease.ssh_user.clone(),
        ssh_port: record.ssh_port,
        ssh_fallback_ports: record.ssh_fallback_ports.clone(),
        ssh_key: key,
        work_root: lease.work_root.clone(),
        keep: lease.keep,
        repo_root: claim.and_then(|c| c.repo_root.clone()),
        created_at: lease.created_at.to_string(),
        last_touched_at: lease.last_touched_at.to_string(),
        idle_for: format_duration(Duration::from_secs(
            u64::try_from(idle_ms / 1000).unwrap_or_default(),
        )),
        idle_timeout: format_duration(Duration::from_secs(lease.idle_timeout_seconds)),
        ttl: format_duration(Duration::from_secs(lease.ttl_seconds)),
        expires_at: lease.expires_at.to_string(),
        has_host: !lease.host.is_empty(),
        ready: lease.state == LeaseState::Active && !lease.host.is_empty(),
        labels,
        ssh_host_key: lease.ssh_host_key.clone(),
        telemetry: lease.telemetry.clone(),
        telemetry_history: lease.telemetry_history.clone(),
    }
}

/// ` load=… mem=used/total disk=used/total uptime=… telemetry=<age>` for `status`, or empty.
pub fn telemetry_suffix(t: &Telemetry, now: Timestamp) -> String {
    let mut parts = Vec::new();
    if let Some(load) = t.load1 {
        parts.push(format!("load={load:.2}"));
    }
    let pair = |used: Option<u64>, total: Option<u64>, percent: Option<f64>| match (used, total) {
        (Some(u), Some(t)) => Some(format!("{}/{}", bytes(u), bytes(t))),
        _ => percent.map(|p| format!("{p:.0}%")),
    };
    if let Some(mem) = pair(t.memory_used_bytes, t.memory_total_bytes, t.memory_percent) {
        parts.push(format!("mem={mem}"));
    }
    if let Some(disk) = pair(t.disk_used_bytes, t.disk_total_bytes, t.disk_percent) {
        parts.push(format!("disk={disk}"));
    }
    if let Some(up) = t.uptime_seconds {
        parts.push(format!(
            "uptime={}",
            format_duration(Duration::from_secs(up))
        ));
    }
    let age_ms = now.millis().saturating_sub(t.captured_at.millis()).max(0);
    parts.push(format!(
        "telemetry={}",
        format_duration(Duration::from_secs(
            u64::try_from(age_ms / 1000).unwrap_or_default()
        ))
    ));
    parts.iter().fold(String::new(), |acc, p| acc + " " + p)
}

/// `1.5GiB`: binary units, one decimal, no space (it sits in a `key=value` record).
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}B")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinator_urls_compare_without_trailing_slash_or_case() {
        assert!(same_coordinator(
            "http://127.0.0.1:8080/",
            "HTTP://127.0.0.1:8080"
        ));
        assert!(!same_coordinator(
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8081"
        ));
        assert!(
            !same_coordinator("", ""),
            "an unrecorded coordinator is nobody's"
        );
    }

    #[test]
    fn telemetry_reads_as_key_values() {
        let t = Telemetry {
            captured_at: Timestamp::from_millis(1_000_000),
            load1: Some(0.5),
            memory_used_bytes: Some(512 * 1024 * 1024),
            memory_total_bytes: Some(2 * 1024 * 1024 * 1024),
            disk_percent: Some(41.6),
            uptime_seconds: Some(90),
            ..Telemetry::default()
        };
        assert_eq!(
            telemetry_suffix(&t, Timestamp::from_millis(1_012_500)),
            " load=0.50 mem=512.0MiB/2.0GiB disk=42% uptime=1m30s telemetry=12s"
        );
        assert_eq!(bytes(1023), "1023B");
    }
}
