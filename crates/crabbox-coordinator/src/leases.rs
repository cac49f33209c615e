//! `/v1/leases`: list, get, heartbeat and release here; create (three-phase, idempotent),
//! fixed-id create, cancel-create and registration in the submodules (spec coordinator §2.2, §4).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use crabbox_api::coord::{
    HeartbeatRequest, Lease, LeaseState, ReleaseRequest, Telemetry, Timestamp,
};
use crabbox_store::{LeaseQuery, StoreError, Versioned};
use serde::Deserialize;
use serde_json::json;

use crate::access::{self, Caller};
use crate::error::{Failure, Result};
use crate::lifecycle;
use crate::request::optional_json;
use crate::state::AppState;

/// How often a compare-and-swap is retried before the request gives up with 409.
const CAS_ATTEMPTS: usize = 16;

mod attempts;
mod create;
mod fixed;
mod provision;
mod register;

pub use attempts::cancel_create;
pub use create::{create, put_fixed};

/// A provisioning lease becomes active with the runner its provider made: the record's fields,
/// the price (the provider's live quote when it had one), no provisioning fence.
pub fn activate(
    l: &mut Lease,
    record: &crabbox_providers::LeaseRecord,
    rates: &crabbox_providers::cloud::cost::CostRates,
    now: Timestamp,
) {
    use crabbox_providers::cloud::cost;
    crate::providers::apply_record(l, record);
    l.state = LeaseState::Active;
    l.updated_at = now;
    l.provisioning_request_started_at = None;
    l.provisioning_request_settled_at = None;
    l.provisioning_coordinator_version = None;
    l.provisioning_recovery_observed_at = None;
    l.provisioning_recovery_missing_since = None;
    let live = record.hourly_usd.filter(|_| record.price_source == "live");
    let rate = cost::hourly_price(&l.provider, &l.server_type, rates, live).usd;
    l.estimated_hourly_usd = rate;
    l.max_estimated_usd = cost::reserved_usd(l.ttl_seconds, rate);
}
pub use register::register;

fn lease_body(status: StatusCode, lease: Lease) -> Response {
    /// `{"lease": …}`, serialized straight from the record (no intermediate `Value` tree).
    #[derive(serde::Serialize)]
    struct Body {
        lease: Lease,
    }
    (status, Json(Body { lease })).into_response()
}

/// Shapes a stored lease for `caller` (org label, private fields removed, share hidden).
pub fn shape(state: &AppState, caller: &Caller, mut lease: Lease) -> Lease {
    let role = access::lease_role(caller, &lease);
    lease.strip_private();
    if !matches!(role, Some(access::Role::Owner | access::Role::Manage)) {
        lease.share = None;
    }
    lease.org = crabbox_auth::org::label_for_key(&lease.org);
    if let Some(e) = lease.cleanup_error.take() {
        lease.cleanup_error = Some(state.redact(&e));
    }
    if let Some(e) = lease.failure_error.take() {
        lease.failure_error = Some(state.redact(&e));
    }
    lease
}

/// Resolves `{id-or-slug}`: the exact id first (any state), else a live, unexpired lease with
/// that slug visible to the caller.
pub async fn resolve(state: &AppState, caller: &Caller, key: &str) -> Result<Versioned<Lease>> {
    if let Some(found) = state.store.get_lease(key).await? {
        if access::can_see_lease(caller, &found.value) {
            return Ok(found);
        }
        return Err(Failure::not_found());
    }
    let slug = crabbox_core::slug::normalize_slug(key);
    if slug.is_empty() {
        return Err(Failure::not_found());
    }
    let now = state.now();
    let mut matches: Vec<_> = state
        .store
        .live_leases_by_slug(&slug)
        .await?
        .into_iter()
        .filter(|l| l.value.expires_at > now && access::can_see_lease(caller, &l.value))
        .collect();
    match matches.len() {
        0 => Err(Failure::not_found()),
        1 => Ok(matches.remove(0)),
        n => Err(Failure::conflict(
            "ambiguous_slug",
            format!("slug {slug:?} matches {n} leases; use the lease id"),
        )),
    }
}

/// Re-reads `id`, applies `change` and writes it back with a compare-and-swap, retrying when a
/// concurrent writer won. `change` sees the freshest record every time.
pub async fn modify<F>(state: &AppState, id: &str, change: F) -> Result<Lease>
where
    F: FnMut(&mut Lease) -> Result<()>,
{
    modify_from(state, id, None, change).await
}

/// Like [`modify`], starting from a record the caller just read (saves one read when no other
/// writer got in between).
pub async fn modify_from<F>(
    state: &AppState,
    id: &str,
    mut fresh: Option<Versioned<Lease>>,
    mut change: F,
) -> Result<Lease>
where
    F: FnMut(&mut Lease) -> Result<()>,
{
    for _ in 0..CAS_ATTEMPTS {
        let current = match fresh.take() {
            Some(current) => current,
            None => match state.store.get_lease(id).await? {
                Some(current) => current,
                None => return Err(Failure::not_found()),
            },
        };
        let mut lease = current.value;
        change(&mut lease)?;
        let index = lifecycle::index(&lease, state.settings.settle_secs);
        match state
            .store
            .update_lease(&lease, &index, current.version)
            .await
        {
            Ok(_) => return Ok(lease),
            Err(StoreError::Conflict(_)) => {
                state.metrics.cas_retry();
            }
            Err(StoreError::NotFound(_)) => return Err(Failure::not_found()),
            Err(e) => return Err(e.into()),
        }
    }
    Err(Failure::conflict(
        "lease_state_changed",
        "the lease kept changing under this request; retry",
    ))
}

fn check_expected_provider(lease: &Lease, expected: Option<&str>) -> Result<()> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let canonical = match expected.trim().to_ascii_lowercase().as_str() {
        "google" => "gcp".to_owned(),
        "static" | "static-ssh" => "ssh".to_owned(),
        other => other.to_owned(),
    };
    if canonical.is_empty()
        || !canonical
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(Failure::bad_request(
            "invalid_expected_provider",
            format!("expectedProvider {expected:?} is not a provider name"),
        ));
    }
    if canonical != lease.provider {
        return Err(Failure::conflict(
            "provider_identity_mismatch",
            format!(
                "lease {} is on provider {}, not {canonical}",
                lease.id, lease.provider
            ),
        ));
    }
    Ok(())
}

fn claim_active(lease: &Lease, now: Timestamp) -> bool {
    let Some(started) = lease.cleanup_started_at else {
        return false;
    };
    let until = lease
        .cleanup_claim_expires_at
        .unwrap_or(started.plus_secs(lifecycle::CLEANUP_CLAIM_SECS));
    // A zero-length claim (release queued a delete) still means cleanup has begun.
    until >= now || lease.release_deletes_server == Some(true)
}

// ---- list / get ----------------------------------------------------------------------------

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    state: Option<String>,
    provider: Option<String>,
    owner: Option<String>,
    org: Option<String>,
    org_kind: Option<String>,
    limit: Option<String>,
}

/// Which stored org an `org`/`orgKind` query selects (the old coordinator's `orgFilterKey`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrgFilter {
    /// No org filter.
    Any,
    /// Exactly this stored org value (a current key, `~0`, or a legacy label).
    Key(String),
    /// A filter no record can match: an invalid label, an unknown `orgKind`, or `legacy`
    /// without a legacy label. Answered with an empty list, not an error.
    Nothing,
}

impl OrgFilter {
    /// `orgKind=missing` selects records without an org (no `org` may be given with it);
    /// `orgKind=legacy&org=<label>` selects records still holding that plain pre-key label;
    /// otherwise `org` is a display label turned into its key.
    pub fn parse(org: Option<&str>, kind: Option<&str>) -> Self {
        match kind {
            Some("missing") if org.is_none_or(str::is_empty) => {
                Self::Key(crabbox_auth::org::MISSING_ORG_KEY.to_owned())
            }
            Some("legacy") => match org {
                Some(label) if crabbox_auth::org::is_legacy_key(label) => {
                    Self::Key(label.to_owned())
                }
                _ => Self::Nothing,
            },
            Some(_) => Self::Nothing,
            None => match org.filter(|s| !s.is_empty()) {
                None => Self::Any,
                Some(label) => {
                    crabbox_auth::org::key_for_label(label).map_or(Self::Nothing, Self::Key)
                }
            },
        }
    }
}

pub fn clamp_limit(raw: Option<&str>, default: usize) -> usize {
    match raw.and_then(|s| s.trim().parse::<f64>().ok()) {
        Some(v) if v.is_finite() && v >= 1.0 => (v.trunc() as usize).min(500),
        _ => default,
    }
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Response> {
    let leases = list_for(&state, &caller, &q).await?;
    Ok(Json(json!({ "leases": leases })).into_response())
}

pub async fn list_for(state: &AppState, caller: &Caller, q: &ListQuery) -> Result<Vec<Lease>> {
    let mut query = LeaseQuery {
        limit: clamp_limit(q.limit.as_deref(), 100),
        provider: q.provider.clone().filter(|s| !s.is_empty()),
        owner: q.owner.clone().filter(|s| !s.is_empty()),
        ..LeaseQuery::default()
    };
    if let Some(s) = q.state.as_deref().filter(|s| !s.is_empty()) {
        match LeaseState::parse(s) {
            Some(st) => query.states = vec![st],
            None if s == "live" => {
                query.states = vec![LeaseState::Provisioning, LeaseState::Active];
            }
            None => {
                return Err(Failure::bad_request(
                    "invalid_state",
                    format!(
                        "state {s:?} is not one of provisioning, active, released, expired, failed, live"
                    ),
                ));
            }
        }
    }
    match OrgFilter::parse(q.org.as_deref(), q.org_kind.as_deref()) {
        OrgFilter::Any => {}
        OrgFilter::Key(key) => query.org = Some(key),
        OrgFilter::Nothing => return Ok(Vec::new()),
    }
    let leases = state.store.list_leases(&query).await?;
    Ok(leases
        .into_iter()
        .filter(|l| access::can_see_lease(caller, l))
        .map(|l| shape(state, caller, l))
        .collect())
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
) -> Result<Response> {
    let lease = resolve(&state, &caller, &key).await?.value;
    Ok(lease_body(StatusCode::OK, shape(&state, &caller, lease)))
}

// ---- heartbeat -----------------------------------------------------------------------------

pub async fn heartbeat(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response> {
    let req: HeartbeatRequest = optional_json(&headers, &body)?;
    let found = resolve(&state, &caller, &key).await?;
    let lease = apply_heartbeat(&state, &caller, found, &req).await?;
    state.metrics.heartbeat();
    Ok(lease_body(StatusCode::OK, shape(&state, &caller, lease)))
}

pub async fn apply_heartbeat(
    state: &AppState,
    caller: &Caller,
    found: Versioned<Lease>,
    req: &HeartbeatRequest,
) -> Result<Lease> {
    let id = found.value.id.clone();
    let now = state.now();
    let sample = req
        .telemetry
        .as_ref()
        .and_then(|raw| Telemetry::sanitize(raw, now));
    modify_from(state, &id, Some(found), |lease| {
        if !access::can_see_lease(caller, lease) {
            return Err(Failure::not_found());
        }
        if !access::can_manage_lease(caller, lease) {
            return Err(Failure::forbidden("lease manage access required"));
        }
        check_expected_provider(lease, req.expected_provider.as_deref())?;
        if claim_active(lease, now) {
            return Err(Failure::conflict(
                "cleanup_in_progress",
                "the lease is being cleaned up",
            ));
        }
        if !lease.is_live() {
            return Err(Failure::conflict(
                "lease_ended",
                format!("lease is {}", lease.state.as_str()),
            ));
        }
        if lease.expires_at <= now {
            return Err(Failure::conflict(
                "lease_expired",
                "lease heartbeat deadline has passed",
            ));
        }
        if let Some(idle) = req
            .idle_timeout_seconds
            .filter(|v| v.is_finite() && *v >= 1.0)
        {
            lease.idle_timeout_seconds = (idle.trunc() as u64).min(lifecycle::MAX_LIFETIME_SECS);
        }
        if let Some(sample) = sample.clone() {
            Telemetry::merge_history(&mut lease.telemetry_history, [sample.clone()]);
            lease.telemetry = Some(sample);
        }
        lease.updated_at = now;
        lease.last_touched_at = now;
        lease.expires_at = lifecycle::expires_at(lease);
        lease.cleanup_attempts = 0;
        lease.cleanup_error = None;
        lease.cleanup_failed_at = None;
        lease.cleanup_retry_at = None;
        Ok(())
    })
    .await
}

// ---- release -------------------------------------------------------------------------------

pub async fn release(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response> {
    let req: ReleaseRequest = optional_json(&headers, &body)?;
    let found = resolve(&state, &caller, &key).await?;
    let id = found.value.id.clone();
    let lease = apply_release(&state, &caller, &id, Some(found), &req).await?;
    state.metrics.release();
    Ok(lease_body(StatusCode::OK, shape(&state, &caller, lease)))
}

pub async fn apply_release(
    state: &AppState,
    caller: &Caller,
    id: &str,
    found: Option<Versioned<Lease>>,
    req: &ReleaseRequest,
) -> Result<Lease> {
    let now = state.now();
    let mut queued_delete = false;
    let mut unchanged: Option<Lease> = None;
    let lease = modify_from(state, id, found, |lease| {
        queued_delete = false;
        unchanged = None;
        if !access::can_see_lease(caller, lease) {
            return Err(Failure::not_found());
        }
        if !access::can_manage_lease(caller, lease) {
            return Err(Failure::forbidden("lease manage access required"));
        }
        check_expected_provider(lease, req.expected_provider.as_deref())?;
        let delete = req.delete.unwrap_or(!lease.keep);
        if lease.cleanup_started_at.is_some() {
            if delete {
                unchanged = Some(lease.clone());
                return Ok(());
            }
            return Err(
                Failure::conflict("cleanup_in_progress", "the lease is being cleaned up")
                    .with("lease", lease.clone()),
            );
        }
        if !lease.is_live() {
            // Releasing twice is not an error: the lease is already over.
            unchanged = Some(lease.clone());
            return Ok(());
        }
        let has_resource = !lease.cloud_id.is_empty() || lease.state == LeaseState::Provisioning;
        lease.state = LeaseState::Released;
        lease.released_at = Some(now);
        lease.ended_at = Some(now);
        lease.updated_at = now;
        lease.cleanup_attempts = 0;
        lease.cleanup_error = None;
        lease.cleanup_failed_at = None;
        lease.cleanup_retry_at = None;
        if lease.is_registered() || !has_resource {
            lease.release_deletes_server = None;
        } else if delete && !lease.cloud_id.is_empty() {
            lease.release_deletes_server = Some(true);
            lease.cleanup_started_at = Some(now);
            lease.cleanup_claim_expires_at = Some(now);
            queued_delete = true;
        } else if delete {
            // Still provisioning: the create's finalization deletes what it made.
            lease.release_deletes_server = Some(true);
        } else {
            lease.release_deletes_server = Some(false);
        }
        Ok(())
    })
    .await?;
    if queued_delete {
        state.reconcile_wake.notify_one();
    }
    Ok(unchanged.unwrap_or(lease))
}

/// Trimmed exposed ports, blanks dropped.
pub(crate) fn normalize_ports(ports: Option<&[String]>) -> Vec<String> {
    ports
        .unwrap_or_default()
        .iter()
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}
