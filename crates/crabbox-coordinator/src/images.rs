//! `/v1/images` (admin only; spec/coordinator.md §2.5): images of a lease's runner, their
//! promotion to the default of a scope ([`crate::promotions`]), fast snapshot restore,
//! deletion, and (beyond the old coordinator) a list of what is promoted and what Crabbox
//! made. The provider's [`crabbox_providers::images::Images`] does the work; the coordinator
//! keeps the promotions.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use crabbox_providers::ProviderError;
use crabbox_providers::images::{Images, ProviderImage};
use crabbox_store::KvWrite;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::access::Caller;
use crate::error::{Failure, Result};
use crate::promotions::{CATALOG_PREFIX, PROMOTED_PREFIX, Promotion, Scope};
use crate::providers;
use crate::state::AppState;

/// The one provider with native images this coordinator serves.
const PROVIDER: &str = "aws";

/// `POST /v1/images` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateBody {
    #[serde(rename = "leaseID", alias = "id", default)]
    pub lease_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub no_reboot: Option<bool>,
    #[serde(default)]
    pub strategy: Option<String>,
}

/// The query of the reads and the delete.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageQuery {
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    /// `fsrAz=a&fsrAz=b` or `fsrAz=a,b`.
    #[serde(default)]
    pub fsr_az: Option<String>,
    /// Delete even a promoted image (its promotions go with it).
    #[serde(default)]
    pub force: Option<bool>,
}

/// `POST /v1/images/{id}/promote` body (every field optional).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromoteBody {
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub os: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default, alias = "type")]
    pub server_type: Option<String>,
    #[serde(default)]
    pub architecture: Option<String>,
    #[serde(default)]
    pub fast_snapshot_restore: Option<bool>,
    #[serde(default, alias = "fastSnapshotRestoreAvailabilityZones")]
    pub fsr_az: Option<Vec<String>>,
}

fn images_of<'a>(state: &'a AppState, provider: Option<&str>) -> Result<&'a dyn Images> {
    let name = provider.filter(|p| !p.is_empty()).unwrap_or(PROVIDER);
    state
        .provider(name)
        .and_then(|p| p.images())
        .ok_or_else(|| {
            Failure::bad_request(
                "unsupported_provider",
                format!("provider {name} has no native images on this coordinator"),
            )
        })
}

fn provider_failure(e: &ProviderError) -> Failure {
    Failure::new(providers::status_for(e), providers::code_for(e)).message(e.to_string())
}

/// Route ids: `^[A-Za-z0-9_./:-]{1,512}$`.
fn checked_id(id: &str) -> Result<&str> {
    let ok = (1..=512).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./:-".contains(c));
    if ok {
        Ok(id)
    } else {
        Err(Failure::bad_request(
            "invalid_image_id",
            format!("not an image id: {id:?}"),
        ))
    }
}

/// Image names: `^[A-Za-z0-9()[\]./_ -]{3,128}$` (what EC2 accepts for an AMI name).
fn checked_name(name: &str) -> Result<&str> {
    let ok = (3..=128).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "()[]./_ -".contains(c));
    if ok {
        Ok(name)
    } else {
        Err(Failure::bad_request(
            "invalid_image_name",
            "an image name is 3 to 128 of A-Z a-z 0-9 ( ) [ ] . / _ - and space",
        ))
    }
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Response> {
    caller.require_admin()?;
    let body: CreateBody = serde_json::from_slice(&body)
        .map_err(|e| Failure::bad_request("invalid_request", e.to_string()))?;
    if !crabbox_api::ids::LeaseId::is_canonical(&body.lease_id) {
        return Err(Failure::bad_request(
            "invalid_lease_id",
            "leaseID must be a canonical lease id (cbx_…)",
        ));
    }
    let name = checked_name(body.name.trim())?;
    match body.strategy.as_deref().unwrap_or("image") {
        "image" | "ami" | "machine-image" | "managed-image" => {}
        "auto" | "snapshot" | "disk" | "disk-snapshot" | "disk_snapshot" => {
            return Err(Failure::bad_request(
                "unsupported_strategy",
                "only whole images (strategy image) are made by this coordinator",
            ));
        }
        other => {
            return Err(Failure::bad_request(
                "invalid_strategy",
                format!("unknown strategy {other:?}"),
            ));
        }
    }
    // An admin route: any owner's lease.
    let lease = state
        .store
        .get_lease(&body.lease_id)
        .await?
        .ok_or_else(Failure::not_found)?
        .value;
    if lease.cloud_id.is_empty() || lease.is_registered() {
        return Err(Failure::bad_request(
            "unsupported_provider",
            "the lease has no provider runner to image",
        ));
    }
    let images = images_of(&state, Some(&lease.provider))?;
    let image = images
        .create_image(
            &providers::record_for(&lease),
            name,
            body.no_reboot.unwrap_or(true),
        )
        .await
        .map_err(|e| provider_failure(&e))?;
    // The runbook keeps who made it with the image's record.
    let mut out = serde_json::to_value(&image).unwrap_or_default();
    out["createdBy"] = json!(caller.owner);
    Ok((StatusCode::CREATED, Json(json!({ "image": out }))).into_response())
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<ImageQuery>,
) -> Result<Response> {
    caller.require_admin()?;
    let id = checked_id(&id)?;
    let images = images_of(&state, q.provider.as_deref())?;
    let image = images
        .image(id, q.region.as_deref())
        .await
        .map_err(|e| provider_failure(&e))?
        .ok_or_else(Failure::not_found)?;
    let promoted: Vec<String> = promoted_keys_of(&state, id).await?;
    let mut out = serde_json::to_value(&image).unwrap_or_default();
    out["promotedAs"] = json!(promoted);
    Ok(Json(json!({ "image": out })).into_response())
}

pub async fn fsr_status(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<ImageQuery>,
) -> Result<Response> {
    caller.require_admin()?;
    let id = checked_id(&id)?;
    let images = images_of(&state, q.provider.as_deref())?;
    let zones = zones(q.fsr_az.as_deref());
    let states = images
        .fsr_status(id, q.region.as_deref(), &zones)
        .await
        .map_err(|e| provider_failure(&e))?;
    Ok(Json(json!({ "imageID": id, "fastSnapshotRestores": states })).into_response())
}

fn zones(list: Option<&str>) -> Vec<String> {
    list.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|z| !z.is_empty())
        .map(str::to_owned)
        .collect()
}

pub async fn promote(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<ImageQuery>,
    body: axum::body::Bytes,
) -> Result<Response> {
    caller.require_admin()?;
    let id = checked_id(&id)?;
    let body: PromoteBody = if body.is_empty() {
        PromoteBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| Failure::bad_request("invalid_request", e.to_string()))?
    };
    let images = images_of(&state, q.provider.as_deref())?;
    let region = body.region.clone().or(q.region.clone());
    let image = images
        .image(id, region.as_deref())
        .await
        .map_err(|e| provider_failure(&e))?
        .ok_or_else(Failure::not_found)?;
    if image.state != "available" {
        return Err(Failure::conflict(
            "image_not_available",
            format!("image {id} is {}, not available", image.state),
        ));
    }
    let scope = Scope {
        target: body.target.clone().unwrap_or_else(|| "linux".into()),
        architecture: body
            .architecture
            .clone()
            .unwrap_or_else(|| image.architecture.clone()),
        region: region.unwrap_or_else(|| image.region.clone()),
        os: body.os.clone().filter(|o| !o.is_empty()),
        server_type: body.server_type.clone().filter(|t| !t.is_empty()),
    }
    .checked()
    .map_err(|e| Failure::bad_request(e.code, e.message))?;
    let mut fast_snapshot_restores = Vec::new();
    if body.fast_snapshot_restore.unwrap_or(false) {
        let zones: Vec<String> = body
            .fsr_az
            .clone()
            .unwrap_or_else(|| zones(q.fsr_az.as_deref()));
        if zones.is_empty() {
            return Err(Failure::bad_request(
                "invalid_fast_snapshot_restore_zones",
                "fast snapshot restore needs at least one availability zone (--fsr-az)",
            ));
        }
        let states = images
            .enable_fsr(id, Some(&scope.region), &zones)
            .await
            .map_err(|e| provider_failure(&e))?;
        fast_snapshot_restores = states
            .iter()
            .map(|s| serde_json::to_value(s).unwrap_or_default())
            .collect();
    }
    let promotion = Promotion {
        id: image.id.clone(),
        name: image.name.clone(),
        provider: PROVIDER.into(),
        scope: scope.clone(),
        promoted_at: state.now().to_string(),
        promoted_by: caller.owner.clone(),
        fast_snapshot_restores,
    };
    let value = serde_json::to_value(&promotion).unwrap_or_default();
    // Every key of the scope and the history entry, all or nothing.
    let mut writes: Vec<KvWrite> = scope
        .promoted_keys()
        .into_iter()
        .map(|key| KvWrite::upsert(key, value.clone()))
        .collect();
    writes.push(KvWrite::upsert(scope.catalog_key(&image.id), value.clone()));
    state.store.kv_put_many(&writes).await?;
    Ok(Json(json!({ "image": value })).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<ImageQuery>,
) -> Result<Response> {
    caller.require_admin()?;
    let id = checked_id(&id)?;
    let images = images_of(&state, q.provider.as_deref())?;
    let promoted = promoted_keys_of(&state, id).await?;
    if !promoted.is_empty() && !q.force.unwrap_or(false) {
        return Err(Failure::conflict(
            "image_promoted",
            format!(
                "image {id} is promoted ({}); promote another image first, or delete with --force",
                promoted.join(", ")
            ),
        ));
    }
    // Ownership from the image's own description (its tags); one that is already gone is
    // the provider's to finish (snapshots an interrupted delete left).
    let described = images
        .image(id, q.region.as_deref())
        .await
        .map_err(|e| provider_failure(&e))?;
    if described.is_some_and(|image| !image.owned) {
        return Err(Failure::conflict(
            "image_not_owned",
            format!("image {id} was not made by Crabbox (its tags say so); delete it yourself"),
        ));
    }
    let deleted = images
        .delete_image(id, q.region.as_deref())
        .await
        .map_err(|e| provider_failure(&e))?;
    for key in &promoted {
        state.store.kv_delete(key).await?;
    }
    Ok(
        Json(json!({ "imageID": id, "deleted": true, "removed": deleted, "unpromoted": promoted }))
            .into_response(),
    )
}

/// `GET /v1/images`: every promoted scope with its image, the promotion history, and the
/// images Crabbox made with their age.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ImageQuery>,
) -> Result<Response> {
    caller.require_admin()?;
    let images = images_of(&state, q.provider.as_deref())?;
    let promoted: Vec<Value> = state
        .store
        .kv_list(PROMOTED_PREFIX, 1000)
        .await?
        .into_iter()
        .map(|(key, mut value)| {
            value["key"] = json!(key);
            value
        })
        .collect();
    let history: Vec<Value> = state
        .store
        .kv_list(CATALOG_PREFIX, 1000)
        .await?
        .into_iter()
        .map(|(_, value)| value)
        .collect();
    let now = state.now();
    let made: Vec<Value> = images
        .images(q.region.as_deref())
        .await
        .map_err(|e| provider_failure(&e))?
        .into_iter()
        .map(|image: ProviderImage| {
            let age = crabbox_api::coord::Timestamp::parse(&image.created_at)
                .map(|t| (now.millis() - t.millis()) / 1000);
            let mut out = serde_json::to_value(&image).unwrap_or_default();
            out["ageSeconds"] = json!(age);
            out
        })
        .collect();
    Ok(Json(json!({ "promoted": promoted, "history": history, "images": made })).into_response())
}

/// The promoted keys that name `id` now.
async fn promoted_keys_of(state: &AppState, id: &str) -> Result<Vec<String>> {
    Ok(state
        .store
        .kv_list(PROMOTED_PREFIX, 1000)
        .await?
        .into_iter()
        .filter(|(_, value)| value["id"] == id)
        .map(|(key, _)| key)
        .collect())
}
