//! `crabbox status <id>`: one line about a lease. A brokered lease is read from its
//! coordinator (state, expiry after heartbeats, telemetry), never from the local claim alone.
//! `--wait` polls until the lease is ready (exit 5 when it ends first or time runs out).

use std::time::{Duration, Instant};

use crabbox_api::ExitStatus;
use crabbox_api::coord::Timestamp;
use crabbox_api::view::LeaseView;
use crabbox_core::duration::format_duration;

use crate::brokered;
use crate::error::{CliError, CliResult, WithStatus};
use crate::lease::{self, Ctx};
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: LeaseArg,
    /// The provider the lease must belong to (exit 4 otherwise).
    #[arg(long)]
    pub provider: Option<String>,
    /// Wait until the lease is ready (exit 5 if it ends first or the wait times out).
    #[arg(long)]
    pub wait: bool,
    /// How long `--wait` waits, Go syntax (e.g. 90s, 10m).
    #[arg(
        long = "wait-timeout",
        value_name = "DURATION",
        default_value = "5m",
        requires = "wait"
    )]
    pub wait_timeout: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// How often `--wait` asks again (spec §1.5).
const WAIT_POLL: Duration = Duration::from_secs(5);

/// States from which a lease never becomes ready (spec §1.5).
const TERMINAL: [&str; 6] = [
    "expired",
    "failed",
    "released",
    "stopped",
    "stopped_with_code",
    "terminated",
];

/// A provider name as the coordinator spells it (`google` is `gcp`, `static` is `ssh`).
pub fn canonical_provider(raw: &str) -> String {
    match raw.trim().to_ascii_lowercase().as_str() {
        "google" => "gcp".to_owned(),
        "static" | "static-ssh" => "ssh".to_owned(),
        other => other.to_owned(),
    }
}

/// Refuses (exit 4) a lease of another provider than `--provider` names.
pub fn check_provider(record: &crabbox_providers::LeaseRecord, wanted: &str) -> CliResult<()> {
    same_provider(&record.lease_id, &record.slug, &record.provider, wanted)
}

fn same_provider(id: &str, slug: &str, provider: &str, wanted: &str) -> CliResult<()> {
    let wanted = canonical_provider(wanted);
    if canonical_provider(provider) == wanted {
        return Ok(());
    }
    Err(CliError::msg(
        ExitStatus::NotFound,
        format!(
            "lease {id} ({slug}) is a provider={provider} lease, not provider={wanted}; nothing \
             was done"
        ),
    )
    .hint("`crabbox list` shows each lease's provider; drop --provider or fix it"))
}

/// The one lease named by a positional argument or `--id` (exit 2 for none or both).
/// The lease a command acts on: an id or slug, as the argument or as `--id`.
#[derive(Debug, clap::Args)]
pub struct LeaseArg {
    /// Lease id or slug.
    pub lease: Option<String>,
    /// Lease id or slug (same as the positional argument).
    #[arg(long)]
    pub id: Option<String>,
}

impl LeaseArg {
    /// The one id or slug given (exit 2 for none or both).
    pub fn one(self) -> CliResult<String> {
        match (self.lease, self.id) {
            (Some(id), None) | (None, Some(id)) => Ok(id),
            _ => Err(CliError::msg(
                ExitStatus::Usage,
                "give exactly one lease id or slug",
            )),
        }
    }
}

/// Finds a lease by id or slug without checking its health: the local claims, then (brokered)
/// the coordinator.
pub async fn find(ctx: &Ctx, target: LeaseArg) -> CliResult<crabbox_providers::LeaseRecord> {
    let id = target.one()?;
    if let Some(record) = ctx.claims.resolve(&id).status(ExitStatus::Usage)? {
        return Ok(record);
    }
    if let Some(client) = &ctx.broker {
        let lease = brokered::fetch(client, &id, None).await?;
        return Ok(crate::broker::record_from(&lease, client.base_url()));
    }
    Err(lease::not_found(&id))
}

pub async fn run(args: Args) -> CliResult<u8> {
    let ctx = lease::context(Vec::new())?;
    let id = args.target.one()?;
    let timeout = crabbox_core::duration::parse_duration(&args.wait_timeout).map_err(|e| {
        CliError::new(ExitStatus::Usage, e)
            .hint("pass --wait-timeout in Go syntax, e.g. 90s or 10m")
    })?;
    let started = Instant::now();
    let view = loop {
        let view = current(&ctx, &id).await?;
        if let Some(wanted) = &args.provider {
            same_provider(&view.id, &view.slug, &view.provider, wanted)?;
        }
        if !args.wait || view.ready {
            break view;
        }
        if TERMINAL.contains(&view.state.as_str()) {
            return Err(CliError::msg(
                ExitStatus::Readiness,
                format!(
                    "lease {} ({}) is {}; it will not become ready",
                    view.id, view.slug, view.state
                ),
            )
            .hint("`crabbox warmup` leases a new one"));
        }
        let waited = started.elapsed();
        if waited >= timeout {
            return Err(CliError::msg(
                ExitStatus::Readiness,
                format!(
                    "lease {} ({}) is not ready after {} (state={})",
                    view.id,
                    view.slug,
                    format_duration(timeout),
                    view.state
                ),
            )
            .hint("wait longer with --wait-timeout, or `crabbox inspect` it"));
        }
        output::err(format!(
            "waiting for lease {} state={} waited={}",
            view.id,
            view.state,
            format_duration(Duration::from_secs(waited.as_secs()))
        ));
        tokio::time::sleep(WAIT_POLL.min(timeout.saturating_sub(waited))).await;
    };
    if args.json {
        output::json(&view);
    } else {
        output::out(line(&view));
    }
    Ok(0)
}

/// The lease's view now: a direct claim as its provider sees it, a brokered lease as its
/// coordinator reports it.
async fn current(ctx: &Ctx, id: &str) -> CliResult<LeaseView> {
    let claim = ctx.claims.resolve(id).status(ExitStatus::Usage)?;
    Ok(match (claim, &ctx.broker) {
        (Some(record), _) if !crate::broker::is_brokered(&record) => {
            lease::view(ctx, &record).await
        }
        (Some(record), _) => {
            let client = brokered::client_for(ctx, &record)?;
            let lease = brokered::fetch(&client, &record.lease_id, Some(&record)).await?;
            brokered::view(&lease, client.base_url(), Some(&record))
        }
        (None, Some(client)) => {
            let lease = brokered::fetch(client, id, None).await?;
            brokered::view(&lease, client.base_url(), None)
        }
        (None, None) => return Err(lease::not_found(id)),
    })
}

/// The human status line; telemetry (brokered leases) is appended when the coordinator has it.
fn line(v: &LeaseView) -> String {
    let mut line = format!(
        "{} slug={} provider={} target={} state={} type={} host={} ready={} has_host={} idle_for={} idle_timeout={} expires={}",
        v.id,
        v.slug,
        v.provider,
        v.target,
        v.state,
        v.server_type,
        v.host,
        v.ready,
        v.has_host,
        v.idle_for,
        v.idle_timeout,
        v.expires_at
    );
    if let Some(t) = &v.telemetry {
        line.push_str(&brokered::telemetry_suffix(t, Timestamp::now()));
    }
    line
}
