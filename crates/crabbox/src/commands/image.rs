//! `crabbox image create|promote|fsr-status|delete|list` (coordinator admin token; spec
//! providers.md §4 and the image bake runbook): an image of a lease's runner, with `--wait`
//! polling until it is available; promotion to the default image of a scope (target,
//! architecture, region, OS, mac type), with fast snapshot restore; its status; deletion of an
//! image Crabbox made with its snapshots (refused while promoted unless `--force`); and, beyond
//! the old tool, `list`: the promoted image of each scope and Crabbox's images with their age.

use std::time::{Duration, Instant};

use crabbox_api::ExitStatus;
use crabbox_client::query;
use serde_json::{Value, json};

use crate::broker;
use crate::error::{CliError, CliResult};
use crate::{lease, output};

/// How often `--wait` asks.
const WAIT_POLL: Duration = Duration::from_secs(15);

#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    /// Make an image of a lease's runner.
    Create {
        /// The canonical lease id (cbx_…).
        #[arg(long)]
        id: String,
        /// The image name (3–128 of A-Z a-z 0-9 ( ) [ ] . / _ - and space).
        #[arg(long)]
        name: String,
        /// Wait until the image is available.
        #[arg(long)]
        wait: bool,
        /// How long `--wait` waits.
        #[arg(long = "wait-timeout", default_value = "45m")]
        wait_timeout: String,
        /// Image the runner without rebooting it (`--no-reboot=false` reboots it first).
        #[arg(long = "no-reboot", default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
        no_reboot: bool,
        #[arg(long)]
        json: bool,
    },
    /// Make an image the default of its scope (brokered leases then boot it).
    Promote {
        /// The image id (ami-…).
        image: String,
        #[arg(long, default_value = "aws")]
        provider: String,
        /// linux (default), macos or windows.
        #[arg(long)]
        target: Option<String>,
        /// Linux only: ubuntu:24.04 or ubuntu:26.04.
        #[arg(long)]
        os: Option<String>,
        #[arg(long)]
        region: Option<String>,
        /// The mac instance type (macOS promotions).
        #[arg(long = "type", alias = "server-type")]
        server_type: Option<String>,
        /// `x86_64`, `arm64` (`x86_64_mac`, `arm64_mac`); default: the image's.
        #[arg(long)]
        architecture: Option<String>,
        /// Enable fast snapshot restore of its snapshots in the `--fsr-az` zones.
        #[arg(long = "fast-snapshot-restore")]
        fast_snapshot_restore: bool,
        #[arg(long = "fsr-az", value_name = "ZONE")]
        fsr_az: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Fast snapshot restore of an image's snapshots.
    #[command(name = "fsr-status")]
    FsrStatus {
        image: String,
        #[arg(long, default_value = "aws")]
        provider: String,
        #[arg(long)]
        region: Option<String>,
        #[arg(long = "fsr-az", value_name = "ZONE")]
        fsr_az: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Delete an image Crabbox made, with its snapshots.
    Delete {
        image: String,
        #[arg(long, default_value = "aws")]
        provider: String,
        #[arg(long)]
        region: Option<String>,
        /// Delete it even while it is promoted (its promotions go with it).
        #[arg(long)]
        force: bool,
        #[arg(long)]
        json: bool,
    },
    /// The bake runbook as one guarded command: source lease, verify, image, candidate,
    /// smoke, promote (a no-spend plan unless --yes).
    Bake(super::image_bake::Args),
    /// The promoted image of each scope, and Crabbox's images with their age.
    List {
        #[arg(long, default_value = "aws")]
        provider: String,
        #[arg(long)]
        region: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: ImageCommand) -> CliResult<u8> {
    match cmd {
        // The bake runs the other image commands as steps of its own.
        ImageCommand::Bake(args) => super::image_bake::run(args).await,
        other => on_coordinator(other).await,
    }
}

/// The commands that are one coordinator call (or a create and its wait).
async fn on_coordinator(cmd: ImageCommand) -> CliResult<u8> {
    let ctx = lease::context(Vec::new())?;
    let client = broker::require_admin(&ctx.settings)?;
    let failed = |doing: String| move |e| broker::cli_error(e, &doing);
    match cmd {
        ImageCommand::Create {
            id,
            name,
            wait,
            wait_timeout,
            no_reboot,
            json,
        } => {
            let timeout = crabbox_core::duration::parse_duration(&wait_timeout).map_err(|e| {
                CliError::msg(ExitStatus::Usage, format!("invalid --wait-timeout: {e}"))
            })?;
            let body =
                json!({"leaseID": id, "name": name, "noReboot": no_reboot, "strategy": "image"});
            let made = client
                .create_image(&body)
                .await
                .map_err(failed(format!("could not image lease {id}")))?;
            let mut image = made["image"].clone();
            if wait {
                image = wait_available(&client, &image, timeout).await?;
            }
            if json {
                output::json(&json!({ "image": image }));
            } else {
                output::out(format!(
                    "image id={} name={} state={} region={} source_lease={id}",
                    text(&image, "id"),
                    text(&image, "name"),
                    text(&image, "state"),
                    text(&image, "region"),
                ));
            }
        }
        ImageCommand::Promote {
            image,
            provider,
            target,
            os,
            region,
            server_type,
            architecture,
            fast_snapshot_restore,
            fsr_az,
            json,
        } => {
            let body = json!({
                "target": target, "os": os, "region": region, "serverType": server_type,
                "architecture": architecture, "fastSnapshotRestore": fast_snapshot_restore,
                "fsrAz": (!fsr_az.is_empty()).then_some(fsr_az),
            });
            let promoted = client
                .promote_image(&image, &query(&[("provider", Some(provider))]), &body)
                .await
                .map_err(failed(format!("could not promote {image}")))?;
            let record = &promoted["image"];
            if json {
                output::json(&promoted);
            } else {
                output::out(format!(
                    "promoted id={} target={} architecture={} region={} os={} type={} at={}",
                    text(record, "id"),
                    text(record, "target"),
                    text(record, "architecture"),
                    text(record, "region"),
                    text(record, "os"),
                    text(record, "serverType"),
                    text(record, "promotedAt"),
                ));
            }
        }
        ImageCommand::FsrStatus {
            image,
            provider,
            region,
            fsr_az,
            json,
        } => {
            let q = query(&[
                ("provider", Some(provider)),
                ("region", region),
                ("fsrAz", Some(fsr_az.join(","))),
            ]);
            let status = client.image_fsr(&image, &q).await.map_err(failed(format!(
                "could not read {image}'s fast snapshot restore"
            )))?;
            if json {
                output::json(&status);
            } else {
                for s in status["fastSnapshotRestores"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    output::out(format!(
                        "{} zone={} state={}",
                        text(s, "snapshotId"),
                        text(s, "zone"),
                        text(s, "state")
                    ));
                }
            }
        }
        ImageCommand::Delete {
            image,
            provider,
            region,
            force,
            json,
        } => {
            let q = query(&[
                ("provider", Some(provider)),
                ("region", region),
                ("force", force.then(|| "true".to_owned())),
            ]);
            let deleted = client
                .delete_image(&image, &q)
                .await
                .map_err(failed(format!("could not delete {image}")))?;
            if json {
                output::json(&deleted);
            } else {
                let removed: Vec<&str> = deleted["removed"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                output::out(format!("deleted {image} ({})", removed.join(" ")));
            }
        }
        ImageCommand::Bake(args) => return super::image_bake::run(args).await,
        ImageCommand::List {
            provider,
            region,
            json,
        } => {
            let q = query(&[("provider", Some(provider)), ("region", region)]);
            let listed = client
                .list_images(&q)
                .await
                .map_err(failed("could not list images".to_owned()))?;
            if json {
                output::json(&listed);
            } else {
                print_list(&listed);
            }
        }
    }
    Ok(0)
}

/// Polls the image until it is available, saying what it is now and then.
async fn wait_available(
    client: &crabbox_client::Client,
    image: &Value,
    timeout: Duration,
) -> CliResult<Value> {
    let id = text(image, "id");
    let region = text(image, "region");
    let started = Instant::now();
    let mut current = image.clone();
    loop {
        match text(&current, "state").as_str() {
            "available" => return Ok(current),
            state @ ("failed" | "invalid" | "deregistered" | "error") => {
                return Err(CliError::msg(
                    ExitStatus::Failure,
                    format!("image {id} is {state}"),
                ));
            }
            state => output::err(format!(
                "waiting for image {id}: {state} after {}s",
                started.elapsed().as_secs()
            )),
        }
        if started.elapsed() >= timeout {
            return Err(CliError::msg(
                ExitStatus::Readiness,
                format!("image {id} is not available after {timeout:?}"),
            )
            .hint("check later with `crabbox image list`, or raise --wait-timeout"));
        }
        tokio::time::sleep(WAIT_POLL.min(timeout.saturating_sub(started.elapsed()))).await;
        let q = query(&[("region", Some(region.clone()))]);
        current = client
            .get_image(&id, &q)
            .await
            .map_err(|e| broker::cli_error(e, &format!("could not follow image {id}")))?["image"]
            .clone();
    }
}

fn print_list(listed: &Value) {
    for p in listed["promoted"].as_array().into_iter().flatten() {
        output::out(format!(
            "promoted {} id={} at={}",
            text(p, "key").trim_start_matches("image:aws:promoted:"),
            text(p, "id"),
            text(p, "promotedAt"),
        ));
    }
    for i in listed["images"].as_array().into_iter().flatten() {
        let age = i["ageSeconds"].as_i64().map_or_else(
            || "-".to_owned(),
            |s| {
                crabbox_core::duration::format_duration(Duration::from_secs(
                    s.max(0).cast_unsigned(),
                ))
            },
        );
        output::out(format!(
            "image {} name={} state={} region={} age={age} lease={}",
            text(i, "id"),
            text(i, "name"),
            text(i, "state"),
            text(i, "region"),
            text(i, "sourceLease"),
        ));
    }
}

fn text(value: &Value, key: &str) -> String {
    match &value[key] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}
