//! Registered leases, `PUT /v1/leases/{id}/registration` (spec coordinator §4.8): a runner
//! the caller already has, recorded as an `active` lease that never calls a provider.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use crabbox_api::coord::{Lease, LeaseState, Lifecycle, RegistrationRequest};
use crabbox_store::{StoreError, Versioned};

use super::{lease_body, modify_from, normalize_ports, shape};
use crate::access::Caller;
use crate::error::{Failure, Result};
use crate::lifecycle::{self, clamp_lifetime};
use crate::request::parse_json;
use crate::state::AppState;

fn valid_registered_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    (3..=128).contains(&bytes.len())
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
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
    if let Some(found) = state.store.get_lease(&id).await? {
        return replay(&state, &caller, &id, Some(found), &provider, fill).await;
    }
    let slug = match req.slug.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(raw) => crabbox_core::slug::normalize_slug(raw),
        None => crabbox_core::slug::slug_for_lease(&id),
    };
    let mut lease = Lease {
        id: id.clone(),
        slug,
        provider: provider.clone(),
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
        // Another request (on this replica or another one) stored the id between the read
        // above and this insert: answer as that registration's replay, as if this one had come
        // second, so a client never has to retry a race it cannot see.
        Err(StoreError::Conflict(_)) => replay(&state, &caller, &id, None, &provider, fill).await,
        Err(e) => Err(e.into()),
    }
}

/// Registers `id` again over its stored record (`found`, or re-read when `None`): allowed for
/// the registration's own owner and org on the same provider, refreshing it with `fill`; `200`.
async fn replay(
    state: &AppState,
    caller: &Caller,
    id: &str,
    found: Option<Versioned<Lease>>,
    provider: &str,
    fill: impl Fn(&mut Lease),
) -> Result<Response> {
    let lease = modify_from(state, id, found, |lease| {
        if !lease.is_registered() || lease.owner != caller.owner || lease.org != caller.org_key {
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
    Ok(lease_body(StatusCode::OK, shape(state, caller, lease)))
}
