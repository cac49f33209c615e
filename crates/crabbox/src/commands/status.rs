//! `crabbox status <id>`: one line about a lease. A brokered lease is read from its
//! coordinator (state, expiry after heartbeats, telemetry), never from the local claim alone.
//! `--wait` polls until the lease is ready (exit 5 when it ends first or time runs out).

use std::time::{Duration, Instant};

use crabbox_api::ExitStatus;
use crabbox_api::coord::{Telemetry, Timestamp};
use crabbox_api::view::LeaseView;
use crabbox_core::duration::format_duration;

use crate::error::{CliError, CliResult};
use crate::lease::{self, Leases, canonical_provider};
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

pub async fn run(args: Args) -> CliResult<u8> {
    let ctx = lease::context(Vec::new())?;
    let id = args.target.one()?;
    let timeout = crabbox_core::duration::parse_duration(&args.wait_timeout).map_err(|e| {
        CliError::new(ExitStatus::Usage, e)
            .hint("pass --wait-timeout in Go syntax, e.g. 90s or 10m")
    })?;
    let lease = Leases::new(&ctx).find(&id).await?;
    let started = Instant::now();
    let view = loop {
        let view = lease.current().await?;
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
        line.push_str(&telemetry_suffix(t, Timestamp::now()));
    }
    line
}

/// ` load=… mem=used/total disk=used/total uptime=… telemetry=<age>`, or empty.
fn telemetry_suffix(t: &Telemetry, now: Timestamp) -> String {
    let mut parts = Vec::new();
    if let Some(load) = t.load1 {
        parts.push(format!("load={load:.2}"));
    }
    let pair = |used: Option<u64>, total: Option<u64>, percent: Option<f64>| match (used, total) {
        (Some(u), Some(t)) => Some(format!("{}/{}", bytes(u), bytes(t))),
        _ => percent.map(|p| format!("{p:.0}%")),
    };
    if let Some(mem) = pair(t.memory_used_bytes, t.memory_total_bytes, t.memory_percent) {
        parts.push(format!("mem={mem}"));
    }
    if let Some(disk) = pair(t.disk_used_bytes, t.disk_total_bytes, t.disk_percent) {
        parts.push(format!("disk={disk}"));
    }
    if let Some(up) = t.uptime_seconds {
        parts.push(format!(
            "uptime={}",
            format_duration(Duration::from_secs(up))
        ));
    }
    let age_ms = now.millis().saturating_sub(t.captured_at.millis()).max(0);
    parts.push(format!(
        "telemetry={}",
        format_duration(Duration::from_secs(
            u64::try_from(age_ms / 1000).unwrap_or_default()
        ))
    ));
    parts.iter().fold(String::new(), |acc, p| acc + " " + p)
}

/// `1.5GiB`: binary units, one decimal, no space (it sits in a `key=value` record).
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}B")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telemetry_reads_as_key_values() {
        let t = Telemetry {
            captured_at: Timestamp::from_millis(1_000_000),
            load1: Some(0.5),
            memory_used_bytes: Some(512 * 1024 * 1024),
            memory_total_bytes: Some(2 * 1024 * 1024 * 1024),
            disk_percent: Some(41.6),
            uptime_seconds: Some(90),
            ..Telemetry::default()
        };
        assert_eq!(
            telemetry_suffix(&t, Timestamp::from_millis(1_012_500)),
            " load=0.50 mem=512.0MiB/2.0GiB disk=42% uptime=1m30s telemetry=12s"
        );
        assert_eq!(bytes(1023), "1023B");
    }
}
