//! Creating leases: `POST /v1/leases` and the fixed-id `PUT /v1/leases/{id}` (spec
//! coordinator §4.1–4.3): validate, plan the lease, settle idempotency (create-attempt tokens
//! in [`super::attempts`], fixed-id intents in [`super::fixed`]), then hand over to
//! [`super::provision`], which stores it as `provisioning` first, calls the provider outside
//! any lock and commits the result with a compare-and-swap.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use crabbox_api::LeaseId;
use crabbox_api::coord::{Lease, LeaseRequest, LeaseState, Timestamp};
use crabbox_providers::cloud::cost;

use super::attempts::{AttemptOutcome, ensure_unreserved, join_attempt, valid_attempt_token};
use super::fixed::{fixed_intent_hash, fixed_replay};
use super::provision::Reservation;
use crate::access::Caller;
use crate::error::{Failure, Result};
use crate::lifecycle::{self, DEFAULT_IDLE_SECS, DEFAULT_TTL_SECS, clamp_lifetime};
use crate::providers;
use crate::request::parse_json;
use crate::state::{AppState, random_hex};

/// `POST /v1/leases`.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Response> {
    let req: LeaseRequest = parse_json(&body)?;
    create_managed(&state, &caller, req, None).await
}

/// `PUT /v1/leases/{id}`: fixed-id idempotent create.
pub async fn put_fixed(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response> {
    let req: LeaseRequest = parse_json(&body)?;
    if !LeaseId::is_canonical(&id) {
        return Err(Failure::bad_request(
            "invalid_lease_id",
            format!("{id:?} is not a lease id (cbx_ + 12 hex)"),
        ));
    }
    if req.lease_id.as_deref().is_some_and(|b| b != id) {
        return Err(Failure::bad_request(
            "lease_id_mismatch",
            "body leaseID differs from the path",
        ));
    }
    if req.create_attempt_id.is_some() {
        return Err(Failure::bad_request(
            "create_attempt_not_allowed",
            "fixed-id creates are idempotent by themselves; drop createAttemptID",
        ));
    }
    create_managed(&state, &caller, req, Some(id)).await
}

struct Plan {
    provider_name: String,
    provider: std::sync::Arc<dyn crabbox_providers::Provider>,
    public_key: String,
    lease: Lease,
}

fn plan(
    state: &AppState,
    caller: &Caller,
    req: &LeaseRequest,
    id: String,
    now: Timestamp,
) -> Result<Plan> {
    let provider_name = match req.provider.as_deref().map(str::trim) {
        None | Some("") => state.settings.default_provider.clone(),
        Some(p) => providers::canonical_name(p),
    };
    let Some(provider) = state.provider(&provider_name).cloned() else {
        if providers::is_known(&provider_name) {
            return Err(
                Failure::new(StatusCode::FAILED_DEPENDENCY, "provider_not_configured")
                    .with("provider", &provider_name)
                    .with("missing", providers::missing_settings(&provider_name))
                    .message(format!(
                        "provider {provider_name} is not configured on this coordinator"
                    )),
            );
        }
        return Err(Failure::bad_request(
            "unsupported_provider",
            format!(
                "unsupported provider: {provider_name} (this coordinator offers: {})",
                state
                    .providers
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    };
    let target = req
        .target
        .clone()
        .or_else(|| req.target_os.clone())
        .unwrap_or_else(|| "linux".into())
        .to_ascii_lowercase();
    if target != "linux" && target != "macos" && target != "windows" {
        return Err(Failure::bad_request(
            "invalid_target",
            format!("target {target:?} is not linux, macos or windows"),
        ));
    }
    let offered: Vec<&str> = provider.targets().iter().map(|t| t.as_str()).collect();
    if !offered.contains(&target.as_str()) {
        return Err(Failure::bad_request(
            "unsupported_target",
            format!(
                "provider {provider_name} offers {} runners only",
                offered.join(" and ")
            ),
        ));
    }
    let public_key = req.ssh_public_key.clone().unwrap_or_default();
    if public_key.trim().is_empty() {
        return Err(Failure::bad_request(
            "invalid_request",
            "sshPublicKey is required",
        ));
    }
    if !public_key.trim_start().starts_with("ssh-")
        && !public_key.trim_start().starts_with("ecdsa-")
    {
        return Err(Failure::bad_request(
            "invalid_request",
            "sshPublicKey must be an OpenSSH public key line (ssh-ed25519 AAAA…)",
        ));
    }
    let ttl = clamp_lifetime(req.ttl_seconds, DEFAULT_TTL_SECS);
    let idle = clamp_lifetime(req.idle_timeout_seconds, DEFAULT_IDLE_SECS);
    let class = req
        .class
        .clone()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "beast".into());
    let server_type = req
        .server_type
        .clone()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| provider_name.clone());
    let rate = cost::hourly_price(
        &provider_name,
        &server_type,
        &state.settings.cost_rates,
        None,
    )
    .usd;
    let pond = req
        .pond
        .as_deref()
        .map(crabbox_core::slug::normalize_slug)
        .unwrap_or_default();
    let exposed_ports = super::normalize_ports(req.exposed_ports.as_deref());
    let capabilities = crabbox_providers::Capabilities {
        desktop: req.desktop.unwrap_or(false),
        desktop_env: req.desktop_env.clone().filter(|e| !e.trim().is_empty()),
        browser: req.browser.unwrap_or(false),
        code: req.code.unwrap_or(false),
    };
    if let Some(missing) = capabilities
        .asked()
        .into_iter()
        .find(|c| !provider.capabilities().contains(c))
    {
        return Err(Failure::bad_request(
            "capability_unsupported",
            format!(
                "provider {provider_name} cannot offer a {} lease",
                missing.as_str()
            ),
        ));
    }
    let mut lease = Lease {
        id,
        provider: provider_name.clone(),
        owner: caller.owner.clone(),
        provider_owner: Some(caller.owner.clone()),
        org: caller.org_key.clone(),
        target,
        os: String::new(),
        profile: req.profile.clone().unwrap_or_else(|| "default".into()),
        class,
        requested_server_type: req
            .server_type
            .clone()
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_default(),
        server_type,
        pond,
        exposed_ports,
        desktop: capabilities.desktop,
        desktop_env: capabilities.desktop_env.clone().unwrap_or_default(),
        browser: capabilities.browser,
        code: capabilities.code,
        keep: req.keep.unwrap_or(false),
        ttl_seconds: ttl,
        idle_timeout_seconds: idle,
        state: LeaseState::Provisioning,
        created_at: now,
        updated_at: now,
        last_touched_at: now,
        estimated_hourly_usd: rate,
        max_estimated_usd: cost::reserved_usd(ttl, rate),
        provisioning_request_started_at: Some(now),
        provisioning_coordinator_version: Some(state.generation.clone()),
        ..Lease::default()
    };
    lease.extra = machine_selectors(req);
    let pinned_host = ["awsMacHostID", "hostId"]
        .iter()
        .find_map(|key| req.extra.get(*key).and_then(serde_json::Value::as_str));
    if let Some(host) = pinned_host.filter(|h| !h.is_empty()) {
        if !caller.admin {
            return Err(
                Failure::new(axum::http::StatusCode::FORBIDDEN, "admin_required")
                    .message("awsMacHostID pins a Dedicated Host: admin only")
                    .with("fields", ["awsMacHostID"]),
            );
        }
        lease.extra.insert("hostId".into(), host.into());
    }
    lease.expires_at = lifecycle::expires_at(&lease);
    Ok(Plan {
        provider_name,
        provider,
        public_key,
        lease,
    })
}

pub(super) async fn create_managed(
    state: &AppState,
    caller: &Caller,
    req: LeaseRequest,
    fixed_id: Option<String>,
) -> Result<Response> {
    let now = state.now();
    // 1. Validate.
    let attempt_token = req.create_attempt_id.clone();
    let id = match (&fixed_id, &req.lease_id, &attempt_token) {
        (Some(id), _, _) => id.clone(),
        (None, Some(id), _) if LeaseId::is_canonical(id) => id.clone(),
        (None, Some(id), Some(_)) => {
            return Err(Failure::bad_request(
                "invalid_lease_id",
                format!("{id:?} is not a lease id (cbx_ + 12 hex)"),
            ));
        }
        (None, None, Some(_)) => {
            return Err(Failure::bad_request(
                "invalid_lease_id",
                "createAttemptID needs a client-minted leaseID",
            ));
        }
        _ => LeaseId::generate().as_str().to_owned(),
    };
    if let Some(token) = &attempt_token
        && !valid_attempt_token(token)
    {
        return Err(Failure::bad_request(
            "invalid_create_attempt_id",
            "createAttemptID must be cat_ + 32 hex",
        ));
    }
    // `slug ?? requestedSlug`, as the old coordinator read it; a blank one asks for no slug,
    // one that normalises to nothing is refused (spec §2.2).
    let requested_slug = match req.slug.as_deref().or(req.requested_slug.as_deref()) {
        Some(raw) if !raw.trim().is_empty() => Some(
            crabbox_core::slug::requested_slug(raw)
                .map_err(|e| Failure::bad_request("invalid_slug", e.to_string()))?,
        ),
        _ => None,
    };
    let Plan {
        provider_name,
        provider,
        public_key,
        mut lease,
    } = plan(state, caller, &req, id.clone(), now)?;
    select_image(state, caller, &req, provider.as_ref(), &mut lease).await?;
    let fixed_hash = fixed_id
        .is_some()
        .then(|| fixed_intent_hash(requested_slug.as_deref(), &lease, &public_key));
    if let Some(hash) = &fixed_hash {
        // The id itself is the idempotency key: a stored lease is a replay or a conflict.
        if let Some(existing) = state.store.get_lease(&id).await? {
            return fixed_replay(state, caller, existing.value, hash);
        }
        lease.fixed_create_intent_version = Some(2);
        lease.fixed_create_intent_hash = Some(hash.clone());
    }

    // 2. Idempotency: a create-attempt token binds this id to one create, and a pending or
    // bound attempt keeps every other create off the id.
    if let Some(token) = &attempt_token {
        if let AttemptOutcome::Replay(response) =
            join_attempt(state, caller, &id, token, now).await?
        {
            return Ok(response);
        }
        lease.create_attempt_id = Some(token.clone());
        lease.create_attempt_generation = Some(random_hex(16));
    } else {
        ensure_unreserved(state, &id).await?;
    }
    let reservation = Reservation {
        state: state.clone(),
        caller: caller.clone(),
        slug_base: requested_slug.unwrap_or_else(|| crabbox_core::slug::slug_for_lease(&id)),
        lease,
        fixed_hash,
        attempt_token,
        provider_name,
        provider,
        public_key,
    };
    // From the reservation on the create runs as a task of its own: a client that hangs up
    // (and retries with its token) must not strand a stored `provisioning` record or a runner.
    match tokio::spawn(reservation.run()).await {
        Ok(answer) => answer,
        Err(e) => {
            tracing::error!(lease = %id, error = %e, "create task failed");
            Err(Failure::internal("the create failed unexpectedly; retry"))
        }
    }
}

/// The create body's `capacity.market` (or `market`) and `architecture`, kept on the lease for
/// the provider.
/// The promoted image of the lease's scope (spec/providers.md §4, "How a new brokered AWS
/// lease picks an image"): target, architecture and the provider's region, the exact scoped
/// key first, then the region-less and legacy ones. Found, it is the lease's image
/// (`imageID`, `imageRegion`, `imageSource: promoted`), which the provider boots and the CLI
/// reports; none, the provider's own image.
async fn select_image(
    state: &AppState,
    caller: &Caller,
    req: &LeaseRequest,
    provider: &dyn crabbox_providers::Provider,
    lease: &mut Lease,
) -> Result<()> {
    let Some(images) = provider.images() else {
        return Ok(());
    };
    if let Some(pinned) = images.pinned_image() {
        lease.extra.insert("imageID".into(), pinned.into());
        lease
            .extra
            .insert("imageRegion".into(), images.home_region().into());
        lease
            .extra
            .insert("imageSource".into(), "coordinator".into());
        return Ok(());
    }
    // An image the request names (`CRABBOX_AWS_AMI` on the CLI: a candidate's smoke) is an
    // admin's choice (spec: restricted provider selectors).
    if let Some(ami) = req.extra.get("awsAMI").and_then(serde_json::Value::as_str) {
        if !caller.admin {
            return Err(
                Failure::new(axum::http::StatusCode::FORBIDDEN, "admin_required")
                    .message("awsAMI selects an image: admin only")
                    .with("fields", ["awsAMI"]),
            );
        }
        let region = req
            .extra
            .get("awsRegion")
            .and_then(serde_json::Value::as_str)
            .map_or_else(|| images.home_region(), str::to_owned);
        lease.extra.insert("imageID".into(), ami.into());
        lease.extra.insert("imageRegion".into(), region.into());
        lease.extra.insert("imageSource".into(), "request".into());
        return Ok(());
    }
    let Some(scope) = lease_scope(lease, images.home_region()) else {
        return Ok(());
    };
    for key in scope.lookup_keys() {
        if let Some(found) = state.store.kv_get(&key).await? {
            let promoted = found.value;
            for (from, to) in [
                ("id", "imageID"),
                ("region", "imageRegion"),
                ("promotedAt", "imagePromotedAt"),
            ] {
                if let Some(value) = promoted.get(from).and_then(serde_json::Value::as_str) {
                    lease.extra.insert(to.into(), value.into());
                }
            }
            lease.extra.insert("imageSource".into(), "promoted".into());
            return Ok(());
        }
    }
    Ok(())
}

/// The promotion scope a lease looks its image up in. A macOS promotion is per Mac type, so a
/// Mac lease finds one only when it names its type (`--type mac2.metal`); without, it boots
/// Amazon's macOS image for whichever type has a free host.
fn lease_scope(lease: &Lease, region: String) -> Option<crate::promotions::Scope> {
    let target = if lease.target.is_empty() {
        "linux".to_owned()
    } else {
        lease.target.clone()
    };
    if target == "macos" {
        let server_type = Some(lease.requested_server_type.clone()).filter(|t| !t.is_empty())?;
        let architecture = if server_type.starts_with("mac1.") {
            "x86_64_mac"
        } else {
            "arm64_mac"
        };
        return Some(crate::promotions::Scope {
            target,
            architecture: architecture.to_owned(),
            region,
            os: None,
            server_type: Some(server_type),
        });
    }
    let architecture = lease
        .extra
        .get("architecture")
        .and_then(serde_json::Value::as_str)
        .and_then(|a| crabbox_core::machine::Architecture::parse(a).ok())
        .map_or("x86_64", crabbox_core::machine::Architecture::as_str)
        .to_owned();
    Some(crate::promotions::Scope {
        target,
        architecture,
        region,
        os: None,
        server_type: None,
    })
}

fn machine_selectors(req: &LeaseRequest) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    let market = req
        .extra
        .get("capacity")
        .and_then(|c| c.get("market"))
        .or_else(|| req.extra.get("market"));
    if let Some(market) = market.and_then(serde_json::Value::as_str) {
        out.insert("market".into(), market.into());
    }
    if let Some(arch) = req
        .extra
        .get("architecture")
        .and_then(serde_json::Value::as_str)
    {
        out.insert("architecture".into(), arch.into());
    }
    out
}
