//! Fast snapshot restore (FSR) of an image's EBS snapshots in chosen availability zones, so
//! that runners booted there read their disk at full speed at once instead of hydrating it
//! from S3 (the runbook's cold-start tuning). It costs money per snapshot and zone while on,
//! so it is only ever turned on where asked; [`super::delete`] turns it off again.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use aws_sdk_ec2::types::{FastSnapshotRestoreStateCode, Filter};
use crabbox_providers::ProviderError;
use crabbox_providers::cloud::aws::errors;

use super::{describe, region, reworded};
use crate::client::call;
use crate::policy::Action;

/// Fast snapshot restore of one snapshot in one availability zone.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FsrState {
    pub snapshot_id: String,
    pub zone: String,
    /// `enabling`, `optimizing`, `enabled`, `disabling`, `disabled`.
    pub state: String,
}

impl FsrState {
    fn new(
        snapshot_id: Option<&str>,
        zone: Option<&str>,
        state: Option<&FastSnapshotRestoreStateCode>,
    ) -> Self {
        Self {
            snapshot_id: snapshot_id.unwrap_or_default().to_owned(),
            zone: zone.unwrap_or_default().to_owned(),
            state: state.map_or_else(String::new, |s| s.as_str().to_owned()),
        }
    }
}

/// One snapshot and zone EC2 refused, with its code and message.
struct Refused {
    snapshot_id: String,
    zone: String,
    code: String,
    message: String,
}

/// Turns fast snapshot restore on for every snapshot of the image (or for the snapshot) in
/// every zone of `zones`. Any snapshot and zone EC2 refuses fails the whole call, naming each
/// with EC2's code (the others are on by then, which the error says too).
pub async fn enable_fsr(
    ec2: &aws_sdk_ec2::Client,
    image_id: &str,
    zones: &[String],
) -> Result<Vec<FsrState>, ProviderError> {
    if zones.is_empty() {
        return Err(ProviderError::InvalidSpec(format!(
            "fast snapshot restore of {image_id} needs at least one availability zone (e.g. \
             {}a)",
            region(ec2)
        )));
    }
    let zones = checked_zones(ec2, zones)?;
    let snapshots = snapshots_of(ec2, image_id).await?;
    let out = call(
        Action::EnableFastSnapshotRestores,
        ec2.enable_fast_snapshot_restores()
            .set_source_snapshot_ids(Some(snapshots))
            .set_availability_zones(Some(zones))
            .send(),
    )
    .await?;
    let done: Vec<FsrState> = out
        .successful()
        .iter()
        .map(|i| FsrState::new(i.snapshot_id(), i.availability_zone(), i.state()))
        .collect();
    let mut refused = Vec::new();
    for item in out.unsuccessful() {
        let snapshot = item.snapshot_id().unwrap_or_default();
        let errors = item.fast_snapshot_restore_state_errors();
        if errors.is_empty() {
            refused.push(Refused::unexplained(snapshot));
        }
        for e in errors {
            let error = e.error();
            refused.push(Refused {
                snapshot_id: snapshot.to_owned(),
                zone: e.availability_zone().unwrap_or_default().to_owned(),
                code: error.and_then(|e| e.code()).unwrap_or_default().to_owned(),
                message: error
                    .and_then(|e| e.message())
                    .unwrap_or_default()
                    .to_owned(),
            });
        }
    }
    if refused.is_empty() {
        Ok(sorted(done))
    } else {
        Err(refusal(
            Action::EnableFastSnapshotRestores,
            image_id,
            &refused,
            &done,
        ))
    }
}

/// Fast snapshot restore of the image's snapshots (or the snapshot): in `zones` (each of them,
/// `disabled` where it is off), or wherever it is on when `zones` is empty.
pub async fn fsr_status(
    ec2: &aws_sdk_ec2::Client,
    image_id: &str,
    zones: &[String],
) -> Result<Vec<FsrState>, ProviderError> {
    let zones = checked_zones(ec2, zones)?;
    let snapshots = snapshots_of(ec2, image_id).await?;
    let mut states = restores(ec2, &snapshots, &zones).await?;
    for snapshot in &snapshots {
        for zone in &zones {
            if !states
                .iter()
                .any(|s| &s.snapshot_id == snapshot && &s.zone == zone)
            {
                states.push(FsrState {
                    snapshot_id: snapshot.clone(),
                    zone: zone.clone(),
                    state: "disabled".to_owned(),
                });
            }
        }
    }
    Ok(sorted(states))
}

/// Turns off every fast snapshot restore of `snapshots` that is on; returns those it turned off.
pub(super) async fn disable_all(
    ec2: &aws_sdk_ec2::Client,
    snapshots: &[String],
) -> Result<Vec<FsrState>, ProviderError> {
    if snapshots.is_empty() {
        return Ok(Vec::new());
    }
    let mut on: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for state in restores(ec2, snapshots, &[]).await? {
        if !matches!(state.state.as_str(), "disabling" | "disabled") {
            on.entry(state.snapshot_id).or_default().push(state.zone);
        }
    }
    let mut disabled = Vec::new();
    // One call per snapshot: a call turns off every snapshot in every zone it names.
    for (snapshot, zones) in on {
        let out = call(
            Action::DisableFastSnapshotRestores,
            ec2.disable_fast_snapshot_restores()
                .source_snapshot_ids(&snapshot)
                .set_availability_zones(Some(zones))
                .send(),
        )
        .await?;
        let mut refused = Vec::new();
        for item in out.unsuccessful() {
            let snapshot = item.snapshot_id().unwrap_or_default();
            let errors = item.fast_snapshot_restore_state_errors();
            if errors.is_empty() {
                refused.push(Refused::unexplained(snapshot));
            }
            for e in errors {
                let error = e.error();
                refused.push(Refused {
                    snapshot_id: snapshot.to_owned(),
                    zone: e.availability_zone().unwrap_or_default().to_owned(),
                    code: error.and_then(|e| e.code()).unwrap_or_default().to_owned(),
                    message: error
                        .and_then(|e| e.message())
                        .unwrap_or_default()
                        .to_owned(),
                });
            }
        }
        if !refused.is_empty() {
            return Err(refusal(
                Action::DisableFastSnapshotRestores,
                &snapshot,
                &refused,
                &disabled,
            ));
        }
        disabled.extend(
            out.successful()
                .iter()
                .map(|i| FsrState::new(i.snapshot_id(), i.availability_zone(), i.state())),
        );
    }
    Ok(sorted(disabled))
}

/// The restores EC2 lists for `snapshots` (in `zones`, when some are given).
async fn restores(
    ec2: &aws_sdk_ec2::Client,
    snapshots: &[String],
    zones: &[String],
) -> Result<Vec<FsrState>, ProviderError> {
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let mut request = ec2
            .describe_fast_snapshot_restores()
            .filters(
                Filter::builder()
                    .name("snapshot-id")
                    .set_values(Some(snapshots.to_vec()))
                    .build(),
            )
            .set_next_token(next.take());
        if !zones.is_empty() {
            request = request.filters(
                Filter::builder()
                    .name("availability-zone")
                    .set_values(Some(zones.to_vec()))
                    .build(),
            );
        }
        let page = call(Action::DescribeFastSnapshotRestores, request.send()).await?;
        out.extend(
            page.fast_snapshot_restores()
                .iter()
                .map(|i| FsrState::new(i.snapshot_id(), i.availability_zone(), i.state())),
        );
        match page.next_token() {
            Some(token) if !token.is_empty() => next = Some(token.to_owned()),
            _ => return Ok(out),
        }
    }
}

/// The zones, each once, or an error for one outside the client's region (an image's snapshots
/// are restored where the image lives).
fn checked_zones(
    ec2: &aws_sdk_ec2::Client,
    zones: &[String],
) -> Result<Vec<String>, ProviderError> {
    let region = region(ec2);
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for zone in zones {
        let here = zone.len() > region.len() && zone.starts_with(&region);
        if !here {
            return Err(ProviderError::InvalidSpec(format!(
                "availability zone {zone:?} is not in {region}, where the image is; name zones \
                 in full (e.g. {region}a)"
            )));
        }
        if seen.insert(zone) {
            out.push(zone.clone());
        }
    }
    Ok(out)
}

/// The snapshots of an image (a snapshot: itself), or an error when it has none.
async fn snapshots_of(
    ec2: &aws_sdk_ec2::Client,
    image_id: &str,
) -> Result<Vec<String>, ProviderError> {
    let Some(image) = describe(ec2, image_id).await? else {
        return Err(ProviderError::InvalidSpec(format!(
            "AWS image {image_id} not found in {}",
            region(ec2)
        )));
    };
    if image.snapshot_ids.is_empty() {
        return Err(ProviderError::InvalidSpec(format!(
            "AWS image {image_id} has no EBS snapshots, so fast snapshot restore cannot apply \
             to it"
        )));
    }
    Ok(image.snapshot_ids)
}

impl Refused {
    fn unexplained(snapshot: &str) -> Self {
        Self {
            snapshot_id: snapshot.to_owned(),
            zone: String::new(),
            code: "Unknown".to_owned(),
            message: "AWS gives no reason".to_owned(),
        }
    }
}

/// The error for refused snapshots and zones, of the kind the first code says.
fn refusal(action: Action, id: &str, refused: &[Refused], done: &[FsrState]) -> ProviderError {
    let operation = action.operation();
    let each: Vec<String> = refused
        .iter()
        .map(|r| {
            let zone = if r.zone.is_empty() { "?" } else { &r.zone };
            if r.message.is_empty() {
                format!("{} in {zone} ({})", r.snapshot_id, r.code)
            } else {
                format!("{} in {zone} ({}: {})", r.snapshot_id, r.code, r.message)
            }
        })
        .collect();
    let mut text = format!("AWS {operation} failed for {id}: {}", each.join("; "));
    if !done.is_empty() {
        let done: Vec<String> = done
            .iter()
            .map(|d| format!("{} in {}", d.snapshot_id, d.zone))
            .collect();
        let _ = write!(text, " (went through meanwhile: {})", done.join(", "));
    }
    let first = &refused[0];
    reworded(
        errors::provider_error(operation, &first.code, &first.message),
        text,
    )
}

fn sorted(mut states: Vec<FsrState>) -> Vec<FsrState> {
    states.sort();
    states
}
