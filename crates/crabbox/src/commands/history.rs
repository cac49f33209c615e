//! `crabbox history`, `logs` and `events`: run records kept by the coordinator.

use std::fmt::Write as _;

use crabbox_api::coord::{Run, RunEvent};
use crabbox_client::query;
use serde_json::json;

use crate::broker;
use crate::error::CliResult;
use crate::{lease, output};

#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// Only runs on this lease id.
    #[arg(long)]
    pub lease: Option<String>,
    /// Only runs of this owner (admins).
    #[arg(long)]
    pub owner: Option<String>,
    /// Only runs of this org.
    #[arg(long)]
    pub org: Option<String>,
    /// running, succeeded or failed.
    #[arg(long)]
    pub state: Option<String>,
    /// How many runs (the coordinator caps at 500).
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The run id (`run_…`).
    pub run_id: String,
    /// Only the last N lines.
    #[arg(long)]
    pub tail: Option<usize>,
    /// Print JSON `{"run":…,"log":…}`.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// The run id (`run_…`).
    pub run_id: String,
    /// Only events after this sequence number.
    #[arg(long, default_value_t = 0)]
    pub after: u64,
    #[arg(long, default_value_t = 500)]
    pub limit: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn short(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn human_ms(ms: Option<u64>) -> String {
    ms.map_or_else(
        || "-".to_owned(),
        |ms| crabbox_core::duration::format_duration(std::time::Duration::from_millis(ms)),
    )
}

fn history_line(r: &Run) -> String {
    let mut line = format!(
        "{:<16} {:<16} {:<16} {:<9} phase={} exit={} duration={} started={}",
        short(&r.id, 16),
        short(
            if r.lease_id.is_empty() {
                "-"
            } else {
                &r.lease_id
            },
            16
        ),
        short(if r.slug.is_empty() { "-" } else { &r.slug }, 16),
        r.state.as_str(),
        r.phase,
        r.exit_code
            .map_or_else(|| "-".to_owned(), |c| c.to_string()),
        human_ms(r.duration_ms),
        r.started_at
    );
    if let Some(end) = r
        .telemetry
        .as_ref()
        .and_then(|t| t.end.clone().or_else(|| t.samples.last().cloned()))
    {
        let _ = write!(
            line,
            " resources=load={} mem={}% disk={}%",
            end.load1.map_or("-".into(), |v| format!("{v:.2}")),
            end.memory_percent.map_or("-".into(), |v| format!("{v:.0}")),
            end.disk_percent.map_or("-".into(), |v| format!("{v:.0}")),
        );
    }
    let _ = write!(line, " command={}", r.command.join(" "));
    line
}

pub async fn history(args: HistoryArgs) -> CliResult<u8> {
    let ctx = lease::context(Vec::new())?;
    let client = broker::require(&ctx.settings, "history")?;
    let q = query(&[
        ("leaseID", args.lease.clone()),
        ("owner", args.owner.clone()),
        ("org", args.org.clone()),
        ("state", args.state.clone()),
        ("limit", Some(args.limit.to_string())),
    ]);
    let runs = client
        .list_runs(&q)
        .await
        .map_err(|e| broker::cli_error(e, "could not list runs"))?;
    if args.json {
        output::json(&runs);
    } else if runs.is_empty() {
        output::err("no runs recorded yet");
    } else {
        for r in &runs {
            output::out(history_line(r));
        }
    }
    Ok(0)
}

pub async fn logs(args: LogsArgs) -> CliResult<u8> {
    let ctx = lease::context(Vec::new())?;
    let client = broker::require(&ctx.settings, "logs")?;
    let run = client
        .get_run(&args.run_id)
        .await
        .map_err(|e| broker::cli_error(e, &format!("could not read run {}", args.run_id)))?;
    let mut log = client
        .run_log(&args.run_id)
        .await
        .map_err(|e| broker::cli_error(e, "could not read the run log"))?;
    if let Some(n) = args.tail {
        let lines: Vec<&str> = log.lines().collect();
        log = lines[lines.len().saturating_sub(n)..].join("\n");
        if !log.is_empty() {
            log.push('\n');
        }
    }
    if args.json {
        output::json(&json!({"run": run, "log": log}));
    } else {
        output::raw(&log);
        if run.log_truncated {
            output::warn(format!(
                "the coordinator kept only the last {} bytes of this log",
                run.log_bytes
            ));
        }
    }
    Ok(0)
}

fn event_line(e: &RunEvent) -> String {
    format!(
        "{:04} {} phase={} stream={} at={} {}",
        e.seq,
        e.kind,
        e.phase.as_deref().unwrap_or("-"),
        e.stream.as_deref().unwrap_or("-"),
        e.created_at,
        e.message.as_deref().unwrap_or("")
    )
    .trim_end()
    .to_owned()
}

pub async fn events(args: EventsArgs) -> CliResult<u8> {
    let ctx = lease::context(Vec::new())?;
    let client = broker::require(&ctx.settings, "events")?;
    let events = client
        .run_events(&args.run_id, args.after, args.limit)
        .await
        .map_err(|e| broker::cli_error(e, &format!("could not read events of {}", args.run_id)))?;
    if args.json {
        output::json(&events);
    } else {
        for e in &events {
            output::out(event_line(e));
        }
    }
    Ok(0)
}
