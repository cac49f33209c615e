//! Native checkpoints on the provider (spec providers.md §3.4, §3.7, §3.8). This build has one
//! native kind, `aws-ami`: an AMI of the lease's instance, made after the runner forgets its
//! cloud-init state (so a fork boots as a new instance, with its own key), directly with this
//! machine's AWS credentials, or through the coordinator (admin token) for a brokered lease.
//! A fork boots it as `CRABBOX_AWS_AMI` would; a delete deregisters it with its snapshots.

use std::time::{Duration, Instant};

use crabbox_api::ExitStatus;
use crabbox_core::config::FlagValue;
use crabbox_providers::images::ProviderImage;
use serde_json::{Value, json};

use super::record::{Kind, Native, Record};
use crate::error::{CliError, CliResult, WithStatus};
use crate::lease::{self, Lease};
use crate::{broker, output};

/// How often a wait for an image asks.
const WAIT_POLL: Duration = Duration::from_secs(15);

/// Run on the runner before its image is made: cloud-init forgets this instance, so an
/// instance booted from the image runs it again (new host keys, the fork's own lease key).
const FORGET_INSTANCE: &str = "if command -v cloud-init >/dev/null 2>&1; then \
     sudo cloud-init clean --logs; fi; sync";

/// Makes `lease`'s image and fills `record.native`. With `wait`, returns once the image is
/// available (or failed: exit 5); an image the provider made is recorded even when the wait
/// fails, so it can be found and deleted.
pub async fn create(
    lease: &Lease<'_>,
    record: &mut Record,
    no_reboot: bool,
    wait: Option<Duration>,
) -> CliResult<()> {
    if lease.record.provider != "aws" {
        return Err(CliError::msg(
            ExitStatus::Usage,
            format!(
                "provider {} has no native checkpoints in this build (aws has aws-ami)",
                lease.record.provider
            ),
        )
        .hint("use --mode archive (the default for it)"));
    }
    run_script(lease, FORGET_INSTANCE, "reset cloud-init on the runner").await?;
    let name = image_name(record);
    let image = if lease.is_brokered() {
        let client = broker::require_admin(lease.settings())?;
        let body = json!({"leaseID": lease.record.lease_id, "name": name, "noReboot": no_reboot, "strategy": "image"});
        let made = client
            .create_image(&body)
            .await
            .map_err(|e| broker::cli_error(e, "could not image the lease"))?;
        from_json(&made["image"])
    } else {
        let provider = lease.provider()?;
        let images = provider
            .images()
            .ok_or_else(|| no_images(&lease.record.provider))?;
        images
            .create_image(&lease.record, &name, no_reboot)
            .await
            .map_err(|e| CliError::new(ExitStatus::Failure, anyhow::Error::new(e)))?
    };
    record.native = Native {
        provider: "aws".into(),
        image_id: image.id.clone(),
        kind: Kind::AwsAmi.as_str().into(),
        name,
        state: image.state.clone(),
        region: image.region.clone(),
        architecture: image.architecture.clone(),
        snapshot_ids: image.snapshot_ids.clone(),
        direct: !lease.is_brokered(),
        strategy: "image".into(),
        no_reboot,
        ..Native::default()
    };
    if let Some(timeout) = wait {
        let done = wait_available(lease, record, timeout).await;
        if let Err(e) = done {
            output::warn(format!(
                "checkpoint {} keeps image {} while it is not available",
                record.id, record.native.image_id
            ));
            return Err(e);
        }
    }
    Ok(())
}

/// Runs `script` on the lease's runner; a failure says what could not be done, with the
/// runner's stderr (exit 8).
pub async fn run_script(lease: &Lease<'_>, script: &str, doing: &str) -> CliResult<()> {
    let out = lease
        .target()
        .capture(script)
        .await
        .status(ExitStatus::Remote)?;
    if out.code != 0 {
        return Err(CliError::msg(
            ExitStatus::Remote,
            format!(
                "could not {doing}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(())
}

/// `crabbox-<repo>-<lease with _ as ->-<YYYYMMDD-HHMMSS>`, at most 128 characters.
fn image_name(record: &Record) -> String {
    if !record.name.is_empty() {
        return record.name.chars().take(128).collect();
    }
    let stamp: String = record
        .created_at
        .chars()
        .filter(char::is_ascii_digit)
        .take(14)
        .collect();
    let (day, time) = stamp.split_at(stamp.len().min(8));
    let repo = if record.repo.name.is_empty() {
        "workspace"
    } else {
        &record.repo.name
    };
    let name = format!(
        "crabbox-{repo}-{}-{day}-{time}",
        record.lease_id.replace('_', "-")
    );
    name.chars().take(128).collect()
}

/// Polls until the image is available; failed or invalid is exit 5, as is the timeout.
async fn wait_available(
    lease: &Lease<'_>,
    record: &mut Record,
    timeout: Duration,
) -> CliResult<()> {
    let started = Instant::now();
    loop {
        match record.native.state.as_str() {
            "available" | "ready" | "succeeded" | "completed" => return Ok(()),
            state @ ("failed" | "invalid") => {
                return Err(CliError::msg(
                    ExitStatus::Readiness,
                    format!("image {} is {state}", record.native.image_id),
                ));
            }
            state => output::err(format!(
                "waiting for image {}: {state} after {}s",
                record.native.image_id,
                started.elapsed().as_secs()
            )),
        }
        if started.elapsed() >= timeout {
            return Err(CliError::msg(
                ExitStatus::Readiness,
                format!(
                    "image {} is not available after {timeout:?}",
                    record.native.image_id
                ),
            )
            .hint("`crabbox checkpoint inspect --verify` checks it later"));
        }
        tokio::time::sleep(WAIT_POLL.min(timeout.saturating_sub(started.elapsed()))).await;
        let now = describe(lease, &record.native).await?;
        record.native.state = now.map_or_else(|| "deregistered".to_owned(), |i| i.state);
    }
}

async fn describe(lease: &Lease<'_>, native: &Native) -> CliResult<Option<ProviderImage>> {
    let (id, region) = (&native.image_id, &native.region);
    if lease.is_brokered() {
        let client = broker::require_admin(lease.settings())?;
        let got = client
            .get_image(id, &format!("region={region}"))
            .await
            .map_err(|e| broker::cli_error(e, &format!("could not follow image {id}")))?;
        return Ok(Some(from_json(&got["image"])));
    }
    let provider = lease.provider()?;
    let images = provider.images().ok_or_else(|| no_images("aws"))?;
    images
        .image(id, Some(region))
        .await
        .map_err(|e| CliError::new(ExitStatus::Failure, anyhow::Error::new(e)))
}

/// The lease flags a fork of `record` adds: its image (and region) as `CRABBOX_AWS_AMI` would
/// give them, and on demand for a Mac unless the user chose a market.
pub fn fork_flags(record: &Record, market_chosen: bool) -> CliResult<Vec<FlagValue>> {
    let native = &record.native;
    if record.kind != Kind::AwsAmi || native.image_id.is_empty() {
        return Err(missing_resource(record));
    }
    let mut flags = vec![
        FlagValue::new("provider", "checkpoint", "aws".to_owned()),
        FlagValue::new("aws.ami", "checkpoint", native.image_id.clone()),
    ];
    if !native.region.is_empty() {
        flags.push(FlagValue::new(
            "aws.region",
            "checkpoint",
            native.region.clone(),
        ));
    }
    if record.target_os == "macos" {
        flags.push(FlagValue::new("target", "checkpoint", "macos".to_owned()));
        if !market_chosen {
            flags.push(FlagValue::new(
                "capacity.market",
                "checkpoint",
                "on-demand".to_owned(),
            ));
        }
    }
    Ok(flags)
}

/// Refuses a fork of a direct image checkpoint whose image is gone, naming it, before anything
/// is leased. (A brokered one is the coordinator's to check when the lease boots.)
pub async fn check_image(record: &Record) -> CliResult<()> {
    let native = &record.native;
    if !native.direct {
        return Ok(());
    }
    let ctx = lease::context(Vec::new())?;
    let provider = ctx.provider_named("aws")?;
    let images = provider.images().ok_or_else(|| no_images("aws"))?;
    let found = images
        .image(&native.image_id, Some(&native.region))
        .await
        .map_err(|e| CliError::new(ExitStatus::Failure, anyhow::Error::new(e)))?;
    match found {
        Some(image) if image.state != "deregistered" => Ok(()),
        _ => Err(CliError::msg(
            ExitStatus::NotFound,
            format!(
                "checkpoint {}'s image {} is gone from {} (deregistered or deleted)",
                record.id, native.image_id, native.region
            ),
        )
        .hint(format!(
            "forget the checkpoint with `crabbox checkpoint delete {} --local-only`",
            record.id
        ))),
    }
}

/// Deletes `record`'s provider resource: the AMI and its snapshots, with this machine's AWS
/// credentials for a direct checkpoint, through the coordinator otherwise. An image already
/// gone is done. The caller removes the local record only after this succeeds.
pub async fn delete(record: &Record) -> CliResult<()> {
    if record.kind != Kind::AwsAmi {
        return Err(CliError::msg(
            ExitStatus::Usage,
            format!(
                "deleting {} checkpoints is not built; pass --local-only to forget the record \
                 (the provider resource stays)",
                record.kind
            ),
        ));
    }
    let native = &record.native;
    let ctx = lease::context(Vec::new())?;
    if !native.direct {
        let client = broker::require_admin(&ctx.settings)?;
        let query = format!("provider=aws&region={}", native.region);
        return match client.delete_image(&native.image_id, &query).await {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(404) => Ok(()),
            Err(e) => Err(broker::cli_error(
                e,
                &format!("could not delete image {}", native.image_id),
            )),
        };
    }
    let provider = ctx.provider_named("aws")?;
    let images = provider.images().ok_or_else(|| no_images("aws"))?;
    images
        .delete_image(&native.image_id, Some(&native.region))
        .await
        .map(drop)
        .map_err(|e| {
            CliError::new(ExitStatus::Failure, anyhow::Error::new(e)).hint(format!(
                "the record is kept; retry, or `crabbox checkpoint delete {} --local-only` to \
                 forget it",
                record.id
            ))
        })
}

/// The error for a native record without the resource a fork needs.
pub fn missing_resource(record: &Record) -> CliError {
    CliError::msg(
        ExitStatus::NotFound,
        format!(
            "checkpoint {} ({}) records no provider image to boot",
            record.id, record.kind
        ),
    )
    .hint("delete it with `crabbox checkpoint delete --local-only`")
}

fn no_images(provider: &str) -> CliError {
    CliError::msg(
        ExitStatus::Usage,
        format!("provider {provider} has no images in this build"),
    )
}

/// A provider image as the coordinator's JSON gives it.
fn from_json(image: &Value) -> ProviderImage {
    serde_json::from_value(image.clone()).unwrap_or_else(|_| ProviderImage {
        id: image["id"].as_str().unwrap_or_default().to_owned(),
        state: image["state"].as_str().unwrap_or_default().to_owned(),
        region: image["region"].as_str().unwrap_or_default().to_owned(),
        ..ProviderImage::default()
    })
}
