//! `/v1/leases`: create (three-phase, idempotent), list, get, heartbeat, release, registration
//! and cancel-create (spec coordinator §2.2, §4).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use crabbox_api::coord::{
    HeartbeatRequest, Lease, LeaseState, Lifecycle, RegistrationRequest, ReleaseRequest, Telemetry,
    Timestamp,
};
use crabbox_store::{LeaseQuery, StoreError, Versioned};
use serde::Deserialize;
use serde_json::json;

use crate::access::{self, Caller};
use crate::error::{Failure, Result};
use crate::lifecycle::{self, clamp_lifetime};
use crate::request::{optional_json, parse_json};
use crate::state::AppState;

/// How often a compare-and-swap is retried before the request gives up with 409.
const CAS_ATTEMPTS: usize = 16;

mod attempts;
mod create;
mod fixed;
mod provision;

pub use attempts::cancel_create;
pub use create::create;
pub use fixed::put_fixed;

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

// ---- registration --------------------------------------------------------------------------

fn valid_registered_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    (3..=128).contains(&bytes.len())
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
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

/// The runtime adapter a registration binds its lease to: `(adapter, workspace, registration)`
/// ids, each 1–128 printable ASCII characters; a workspace or registration id needs its
/// adapter id.
fn runtime_adapter_binding(
    req: &RegistrationRequest,
) -> Result<(Option<String>, Option<String>, Option<String>)> {
    let field = |name: &str, raw: Option<&str>| -> Result<Option<String>> {
        let Some(value) = raw.map(str::trim).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        if value.len() > 128 || !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Failure::bad_request(
                "invalid_runtime_adapter_binding",
                format!("{name} must be 1-128 printable ASCII characters without spaces"),
            ));
        }
        Ok(Some(value.to_owned()))
    };
    let adapter = field("runtimeAdapterID", req.runtime_adapter_id.as_deref())?;
    let workspace = field(
        "runtimeAdapterWorkspaceID",
        req.runtime_adapter_workspace_id.as_deref(),
    )?;
    let registration = field(
        "runtimeAdapterRegistrationID",
        req.runtime_adapter_registration_id.as_deref(),
    )?;
    if adapter.is_none() && (workspace.is_some() || registration.is_some()) {
        return Err(Failure::bad_request(
            "invalid_runtime_adapter_binding",
            "runtimeAdapterWorkspaceID and runtimeAdapterRegistrationID need runtimeAdapterID",
        ));
    }
    Ok((adapter, workspace, registration))
}

pub async fn register(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response> {
    let req: RegistrationRequest = parse_json(&body)?;
    if !valid_registered_id(&id) {
        return Err(Failure::bad_request(
            "invalid_lease_id",
            "registered lease ids are 3-128 of [A-Za-z0-9_.:-], starting alphanumeric",
        ));
    }
    let provider = req.provider.trim().to_ascii_lowercase();
    let provider_ok = (2..=64).contains(&provider.len())
        && provider.as_bytes()[0].is_ascii_alphanumeric()
        && provider
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !provider_ok {
        return Err(Failure::bad_request(
            "invalid_provider",
            "provider is required: lowercase letters, digits and dashes",
        ));
    }
    let target = req.target.trim().to_ascii_lowercase();
    if !matches!(target.as_str(), "linux" | "macos" | "windows") {
        return Err(Failure::bad_request(
            "invalid_target",
            "target is required: linux, macos or windows",
        ));
    }
    if req.host.trim().is_empty() {
        return Err(Failure::bad_request("host_required", "host is required"));
    }
    let adapter = runtime_adapter_binding(&req)?;
    let now = state.now();
    let ttl = clamp_lifetime(req.ttl_seconds, lifecycle::REGISTERED_DEFAULT_SECS);
    let idle = clamp_lifetime(req.idle_timeout_seconds, lifecycle::REGISTERED_DEFAULT_SECS);
    let fill = |lease: &mut Lease| {
        lease.target.clone_from(&target);
        req.host.trim().clone_into(&mut lease.host);
        lease.windows_mode = req.windows_mode.clone().unwrap_or_default();
        lease.desktop = req.desktop.unwrap_or(false);
        req.desktop_env
            .as_deref()
            .map(str::trim)
            .unwrap_or_default()
            .clone_into(&mut lease.desktop_env);
        lease.browser = req.browser.unwrap_or(false);
        lease.code = req.code.unwrap_or(false);
        lease.exposed_ports = normalize_ports(req.exposed_ports.as_deref());
        (
            lease.runtime_adapter_id,
            lease.runtime_adapter_workspace_id,
            lease.runtime_adapter_registration_id,
        ) = adapter.clone();
        lease.cloud_id = req.cloud_id.clone().unwrap_or_default();
        lease.server_id = req.server_id.unwrap_or(0);
        lease.server_name = req.server_name.clone().unwrap_or_default();
        lease.server_type = req
            .server_type
            .clone()
            .unwrap_or_else(|| "registered".into());
        lease.class = req.class.clone().unwrap_or_else(|| "registered".into());
        lease.ssh_user = req.ssh_user.clone().unwrap_or_else(|| "crabbox".into());
        lease.ssh_port = req.ssh_port.clone().unwrap_or_else(|| "22".into());
        lease.ssh_fallback_ports = req.ssh_fallback_ports.clone().unwrap_or_default();
        lease.work_root = req
            .work_root
            .clone()
            .unwrap_or_else(|| "/workspaces/crabbox".into());
        lease.profile = req.profile.clone().unwrap_or_else(|| "default".into());
        lease.pond = req
            .pond
            .as_deref()
            .map(crabbox_core::slug::normalize_slug)
            .unwrap_or_default();
        lease.ttl_seconds = ttl;
        lease.idle_timeout_seconds = idle;
        lease.state = LeaseState::Active;
        lease.keep = true;
        lease.updated_at = now;
        lease.last_touched_at = now;
        lease.registered_at = Some(now);
        lease.released_at = None;
        lease.ended_at = None;
        lease.expires_at = lifecycle::expires_at(lease);
    };
    if state.store.get_lease(&id).await?.is_some() {
        let lease = modify(&state, &id, |lease| {
            if !lease.is_registered() || lease.owner != caller.owner || lease.org != caller.org_key
            {
                return Err(Failure::conflict(
                    "lease_id_conflict",
                    "lease id belongs to another owner or to a managed lease",
                ));
            }
            if lease.provider != provider {
                return Err(Failure::conflict(
                    "provider_conflict",
                    format!(
                        "lease {} is registered for provider {}",
                        lease.id, lease.provider
                    ),
                ));
            }
            fill(lease);
            Ok(())
        })
        .await?;
        return Ok(lease_body(StatusCode::OK, shape(&state, &caller, lease)));
    }
    let slug = match req.slug.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(raw) => crabbox_core::slug::normalize_slug(raw),
        None => crabbox_core::slug::slug_for_lease(&id),
    };
    let mut lease = Lease {
        id: id.clone(),
        slug,
        provider,
        lifecycle: Lifecycle::Registered,
        owner: caller.owner.clone(),
        provider_owner: Some(caller.owner.clone()),
        org: caller.org_key.clone(),
        created_at: now,
        ..Lease::default()
    };
    fill(&mut lease);
    let index = lifecycle::index(&lease, state.settings.settle_secs);
    match state.store.insert_lease(&lease, &index).await {
        Ok(_) => Ok(lease_body(
            StatusCode::CREATED,
            shape(&state, &caller, lease),
        )),
        Err(StoreError::Conflict(_)) => Err(Failure::conflict(
            "lease_id_conflict",
            "lease id was registered concurrently; retry",
        )),
        Err(e) => Err(e.into()),
    }
}
