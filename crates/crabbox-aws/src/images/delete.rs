//! Deleting an image Crabbox made (spec/providers.md §2.2, §4): its fast snapshot restores
//! turned off, the AMI deregistered, then every EBS snapshot of its block-device mappings
//! deleted. A snapshot id deletes only that snapshot. Images and snapshots without Crabbox's
//! tags are refused and left alone.
//!
//! EC2 frees an image's snapshots a moment after the deregister, and a snapshot whose restores
//! are being turned off a while after the call, refusing their delete with
//! `InvalidSnapshot.InUse` until then; such a delete, a throttled one and one EC2 failed is
//! tried again after 1, 2, 4, 8, 15 and 30 s. What is gone already counts as deleted, so a
//! delete can be repeated: one that stopped after the deregister is finished by the next,
//! which finds the image's snapshots by the description EC2 gives them (`Created by
//! CreateImage(<instance>) for <image>`) and Crabbox's tags.

use std::time::Duration;

use aws_sdk_ec2::types::Filter;
use crabbox_providers::ProviderError;

use super::fsr::{self, FsrState};
use super::{ImageInfo, Kind, describe, kind_of, reworded};
use crate::client::call;
use crate::network::filter;
use crate::policy::Action;

/// The pauses, in seconds, before the tries of a snapshot delete EC2 refused for now.
const BACKOFF: [u64; 6] = [1, 2, 4, 8, 15, 30];

/// What [`delete`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteReport {
    /// The id asked for.
    pub id: String,
    /// The AMI was deregistered by this delete.
    pub deregistered: bool,
    /// The snapshots this delete deleted.
    pub deleted_snapshots: Vec<String>,
    /// The fast snapshot restores turned off first (EC2 keeps a snapshot that has some).
    pub disabled_fsr: Vec<FsrState>,
    /// Nothing was left of the image or snapshot before this delete.
    pub already_gone: bool,
}

impl DeleteReport {
    /// Every id this delete removed: the image, then its snapshots.
    pub fn removed(&self) -> Vec<String> {
        let image = self.deregistered.then(|| self.id.clone());
        image
            .into_iter()
            .chain(self.deleted_snapshots.iter().cloned())
            .collect()
    }
}

/// Deletes the image (`ami-…`) with its snapshots, or the snapshot (`snap-…`), if Crabbox made
/// it; refuses one it did not make. What is gone already is not an error.
pub async fn delete(ec2: &aws_sdk_ec2::Client, id: &str) -> Result<DeleteReport, ProviderError> {
    let kind = kind_of(id)?;
    let mut report = DeleteReport {
        id: id.to_owned(),
        ..DeleteReport::default()
    };
    let Some(found) = describe(ec2, id).await? else {
        let leftovers = match kind {
            Kind::Image => leftover_snapshots(ec2, id).await?,
            Kind::Snapshot => Vec::new(),
        };
        report.already_gone = leftovers.is_empty();
        report.disabled_fsr = fsr::disable_all(ec2, &leftovers).await?;
        delete_snapshots(ec2, &leftovers, true, &mut report).await?;
        return Ok(report);
    };
    if !found.owned_by_crabbox {
        return Err(not_crabboxs(&found));
    }
    // Before the deregister, so that a refusal here leaves the image as it was.
    report.disabled_fsr = fsr::disable_all(ec2, &found.snapshot_ids).await?;
    if kind == Kind::Image {
        report.deregistered = deregister(ec2, id).await?;
    }
    let freed_later = kind == Kind::Image || !report.disabled_fsr.is_empty();
    delete_snapshots(ec2, &found.snapshot_ids, freed_later, &mut report).await?;
    Ok(report)
}

fn not_crabboxs(found: &ImageInfo) -> ProviderError {
    let what = if found.id.starts_with("snap-") {
        "snapshot"
    } else {
        "image"
    };
    ProviderError::InvalidSpec(format!(
        "refusing to delete AWS {what} {} ({:?}): not made by Crabbox (it lacks the tags \
         crabbox=true and created_by=crabbox); delete it with AWS's own tools if it should go",
        found.id, found.name
    ))
}

/// Deregisters the image; `false` when it was gone already.
async fn deregister(ec2: &aws_sdk_ec2::Client, id: &str) -> Result<bool, ProviderError> {
    match call(
        Action::DeregisterImage,
        ec2.deregister_image().image_id(id).send(),
    )
    .await
    {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() || e.code == "InvalidAMIID.Unavailable" => Ok(false),
        Err(e) => Err(e.error),
    }
}

/// Crabbox's snapshots of an image that is gone.
async fn leftover_snapshots(
    ec2: &aws_sdk_ec2::Client,
    image_id: &str,
) -> Result<Vec<String>, ProviderError> {
    // EC2 describes an image's snapshot as made `for <image>`, older ones `for <image> from
    // <volume>`.
    let made_for = Filter::builder()
        .name("description")
        .values(format!("Created by CreateImage(*) for {image_id}"))
        .values(format!("Created by CreateImage(*) for {image_id} from *"))
        .build();
    let found = call(
        Action::DescribeSnapshots,
        ec2.describe_snapshots()
            .owner_ids("self")
            .filters(made_for)
            .filters(filter("tag:crabbox", "true"))
            .filters(filter("tag:created_by", "crabbox"))
            .send(),
    )
    .await?;
    Ok(found
        .snapshots()
        .iter()
        .filter_map(|s| s.snapshot_id().map(str::to_owned))
        .collect())
}

/// Deletes `snapshots` into the report; `freed_later`: EC2 may still hold them for a while.
async fn delete_snapshots(
    ec2: &aws_sdk_ec2::Client,
    snapshots: &[String],
    freed_later: bool,
    report: &mut DeleteReport,
) -> Result<(), ProviderError> {
    for snapshot in snapshots {
        match delete_snapshot(ec2, snapshot, freed_later).await {
            Ok(true) => report.deleted_snapshots.push(snapshot.clone()),
            Ok(false) => {}
            Err(e) if report.deregistered => {
                let text = format!(
                    "AWS image {} is deregistered, but its snapshot {snapshot} is left: {}; \
                     delete the image again to finish",
                    report.id,
                    e.message()
                );
                return Err(reworded(e, text));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Deletes one snapshot; `false` when it was gone already.
async fn delete_snapshot(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
    freed_later: bool,
) -> Result<bool, ProviderError> {
    let mut pauses = BACKOFF.iter();
    loop {
        let e = match call(
            Action::DeleteSnapshot,
            ec2.delete_snapshot().snapshot_id(id).send(),
        )
        .await
        {
            Ok(_) => return Ok(true),
            Err(e) if e.is_not_found() => return Ok(false),
            Err(e) => e,
        };
        let in_use = e.code == "InvalidSnapshot.InUse";
        let again = (in_use && freed_later)
            || matches!(
                e.error,
                ProviderError::RateLimited(_) | ProviderError::Transient(_)
            );
        match pauses.next() {
            Some(secs) if again => tokio::time::sleep(Duration::from_secs(*secs)).await,
            _ if in_use && freed_later => {
                let waited: u64 = BACKOFF.iter().sum();
                return Err(ProviderError::Transient(format!(
                    "AWS snapshot {id} was still in use after {waited}s: {}",
                    e.message
                )));
            }
            _ if in_use => {
                return Err(ProviderError::InvalidSpec(format!(
                    "AWS snapshot {id} is in use: {}; delete the image that uses it instead",
                    e.message
                )));
            }
            _ => return Err(e.error),
        }
    }
}
