//! `crabbox run`: lease (or reuse), sync, run, stream, report, release.

use std::time::Instant;

use crabbox_api::coord::RunCreateRequest;
use crabbox_api::view::{SyncPhase, TimingReport};
use crabbox_api::{ExitStatus, RunId};
use std::sync::{Arc, OnceLock};

use crabbox_remote::sync;
use crabbox_remote::watch::Source;

use crate::cli::LeaseFlags;
use crate::error::{CliError, CliResult};
use crate::interrupt::Interrupt;
use crate::lease::{self, Ctx};
use crate::output::{self, Progress};
use crate::run_record::{self, Finish, LogTail, RunRecorder};

mod argv;
mod execute;

use execute::execute;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Reuse this lease (id or slug) instead of leasing a fresh one.
    #[arg(long)]
    pub id: Option<String>,
    /// Keep a freshly leased runner after the command.
    #[arg(long)]
    pub keep: bool,
    /// Skip the sync; run in the existing remote workdir.
    #[arg(long = "no-sync", conflicts_with_all = ["sync_only", "full_resync"])]
    pub no_sync: bool,
    /// Sync, then exit without running a command.
    #[arg(long = "sync-only")]
    pub sync_only: bool,
    /// Wipe the remote workdir and sync everything again.
    #[arg(long = "full-resync", alias = "fresh-sync")]
    pub full_resync: bool,
    /// Compare file contents instead of size and time (rsync --checksum).
    #[arg(long)]
    pub checksum: bool,
    /// Sync even past the large-sync fail thresholds.
    #[arg(long = "force-sync-large")]
    pub force_sync_large: bool,
    /// Run the words through the remote shell (pipes, globs, &&).
    #[arg(long)]
    pub shell: bool,
    /// Forward this environment variable (repeatable, comma lists, trailing * wildcard).
    #[arg(long = "allow-env", value_delimiter = ',')]
    pub allow_env: Vec<String>,
    /// Print the timing record as JSON on stderr.
    #[arg(long = "timing-json")]
    pub timing_json: bool,
    /// Label for the timing record.
    #[arg(long)]
    pub label: Option<String>,
    /// How long to wait for another run holding the lease (Go duration).
    #[arg(long = "lock-timeout", default_value = "30m")]
    pub lock_timeout: String,
    #[command(flatten)]
    pub lease: LeaseFlags,
    /// The command to run (after `--`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

pub async fn run(args: Args) -> CliResult<u8> {
    let total = Instant::now();
    if args.command.is_empty() && !args.sync_only {
        return Err(CliError::msg(ExitStatus::Usage, "no command given")
            .hint("usage: crabbox run [flags] -- <command> [args…]"));
    }
    if args.id.is_some() && args.lease.slug.is_some() {
        return Err(CliError::msg(
            ExitStatus::Usage,
            "--slug names a new lease and cannot be combined with --id",
        ));
    }
    let lock_wait = crabbox_core::duration::parse_duration(&args.lock_timeout)
        .map_err(|e| CliError::msg(ExitStatus::Usage, format!("invalid --lock-timeout: {e}")))?;
    let ctx = lease::context(lease::lease_flag_values(&args.lease))?;
    let progress = Progress::start(false);
    // One listener for the whole run: a signal while leasing cancels the lease, one during
    // the session stops the command (and the run is recorded and released as usual).
    let interrupt = Interrupt::listen();
    // A fresh brokered lease: the run is recorded before leasing, so a lease that cannot be
    // had still leaves a failed run saying why (spec §4.11 step 1); `--id` records it once the
    // lease is resolved.
    let mut recorder = match (&ctx.broker, &args.id) {
        (Some(client), None) => {
            let recorder = RunRecorder::create(client.clone(), create_request(&ctx, &args)).await;
            if let Some(r) = &recorder {
                r.send(run_record::event("leasing.started"));
            }
            recorder
        }
        _ => None,
    };
    let leased = if let Some(id) = &args.id {
        lease::resolve(&ctx, id).await.map(|r| (r, false, 0, 0))
    } else {
        // The lease exists before its runner answers ssh: say so then, not after the wait.
        let on_created = |record: &crabbox_providers::LeaseRecord| {
            if let Some(r) = &recorder {
                r.send(run_record::lease_event("lease.created", record));
            }
        };
        lease::acquire(
            &ctx,
            &args.lease,
            args.keep,
            &progress,
            &interrupt,
            &on_created,
        )
        .await
        .map(|(record, lease_time, ready)| {
            (
                record,
                true,
                lease_time.as_millis() as u64,
                ready.as_millis() as u64,
            )
        })
    };
    let (mut record, fresh, lease_ms, bootstrap_ms) = match leased {
        Ok(leased) => leased,
        Err(err) => return Err(RunRecorder::abandon(recorder, err).await),
    };
    lease::touch(&ctx, &mut record);
    // Brokered leases: a run record on the coordinator, heartbeats with telemetry meanwhile.
    let client = ctx
        .broker
        .clone()
        .filter(|_| crate::broker::is_brokered(&record));
    let sampler = crate::broker::sampler(lease::ssh_target(&record));
    // `run --id X --idle-timeout D` sets that lease's idle timeout (spec §4.5 step 5).
    let idle_update = (args.id.is_some() && args.lease.idle_timeout.is_some())
        .then(|| ctx.settings.config().idle_timeout);
    let _heartbeat = match client.clone() {
        Some(c) => {
            let sample = sampler.clone();
            match crate::broker::Heartbeat::start(c, &mut record, sample, idle_update).await {
                Ok(heartbeat) => Some(heartbeat),
                Err(err) => return Err(RunRecorder::abandon(recorder, err).await),
            }
        }
        None => None,
    };
    match (&client, &recorder) {
        (Some(c), None) if !fresh => {
            let mut req = create_request(&ctx, &args);
            req.lease_id = Some(record.lease_id.clone());
            req.provider = Some(record.provider.clone());
            req.class = record.labels.get("class").cloned();
            req.server_type = Some(record.server_type.clone());
            recorder = RunRecorder::create(c.clone(), req).await;
        }
        // A fresh lease said `lease.created` as soon as it existed (before the ssh wait).
        _ => {}
    }
    let run_id = recorder
        .as_ref()
        .and_then(|r| RunId::parse(&r.run_id).ok())
        .unwrap_or_else(RunId::generate);
    let log = recorder.as_ref().map(|_| LogTail::default());
    let events = recorder.as_ref().map(RunRecorder::sink);
    if let Some(r) = &mut recorder {
        // Spec cli-dataplane §4.8 step 1: said before the sync, for every run.
        r.send(run_record::event("bootstrap.waiting"));
        r.start_telemetry(sampler.clone(), run_record::telemetry_interval())
            .await;
    }
    let fingerprint_source: Arc<OnceLock<Source>> = Arc::default();
    let outcome = execute(
        &ctx,
        &args,
        &record,
        &run_id,
        lock_wait,
        &progress,
        log.clone(),
        events,
        &fingerprint_source,
        interrupt.receiver(),
    )
    .await;
    progress.finish();
    if let Some(r) = &mut recorder {
        let (exit, sync_ms, command_ms) = match &outcome {
            Ok(o) => (o.exit_code, o.sync_ms, o.command_ms),
            Err(e) => {
                r.fail(e);
                (i32::from(e.code), 0, 0)
            }
        };
        r.finish(Finish {
            exit_code: exit,
            sync_ms,
            command_ms,
            log: log.as_ref(),
        })
        .await;
    }

    let release = fresh && !args.keep;
    let mut stopped = false;
    let mut stop_error = None;
    if release {
        match lease::release(&ctx, &record).await {
            Ok(()) => stopped = true,
            Err(err) => stop_error = Some(err),
        }
    }
    if let Some(r) = recorder {
        if stopped {
            r.send(run_record::lease_event("lease.released", &record));
        }
        r.close().await;
    }
    let (outcome, result) = match outcome {
        Ok(o) => (o, Ok(())),
        Err(e) => (crabbox_remote::session::SessionOutcome::default(), Err(e)),
    };
    let exit = match &result {
        Ok(()) => outcome.exit_code,
        Err(e) => i32::from(e.code),
    };
    let report = TimingReport {
        provider: record.provider.clone(),
        lease_id: record.lease_id.clone(),
        slug: record.slug.clone(),
        lease_ms,
        bootstrap_ms,
        sync_ms: outcome.sync_ms,
        sync_phases: outcome
            .phases
            .iter()
            .map(|(name, ms)| SyncPhase {
                name: name.clone(),
                ms: *ms,
                skipped: false,
                // The file watcher proved nothing changed: git did not run.
                reason: (name == "fingerprint"
                    && fingerprint_source.get() == Some(&Source::Watcher))
                .then(|| Source::Watcher.as_str().to_owned()),
            })
            .collect(),
        sync_skipped: outcome.sync_skipped,
        command_ms: outcome.command_ms,
        total_ms: total.elapsed().as_millis() as u64,
        exit_code: exit,
        run_status: if exit == 0 {
            "succeeded"
        } else if exit == 130 {
            "canceled"
        } else {
            "failed"
        }
        .into(),
        error_kind: if result.is_err() {
            "provider-error".into()
        } else if exit != 0 {
            "command-exit".into()
        } else {
            String::new()
        },
        run_id: run_id.to_string(),
        repo_path: ctx.repo_root.display().to_string(),
        workdir: ctx.workdir(&record),
        stop_command: format!("crabbox stop {}", record.lease_id),
        idle_timeout: crabbox_core::duration::format_duration(std::time::Duration::from_secs(
            record.idle_timeout_secs,
        )),
        lease_stopped: stopped,
        lease_stop_error: stop_error
            .as_ref()
            .map(|e| format!("{:#}", e.error))
            .unwrap_or_default(),
        label: args.label.clone().unwrap_or_default(),
    };
    // A lease that could not be released is still held (and billed): say how to release it.
    // The remote command's own failure still decides the exit code; a run that otherwise
    // succeeded exits 7 (spec §4.12).
    let stop_error = stop_error.map(|err| {
        let hint = format!(
            "the lease is still held; release it with `crabbox stop {}`{}",
            record.lease_id,
            err.hint
                .as_ref()
                .map(|h| format!(" ({h})"))
                .unwrap_or_default()
        );
        (err, hint)
    });
    if let (Some((err, hint)), false) = (&stop_error, result.is_ok() && exit == 0) {
        output::warn(format!(
            "could not release lease {}: {:#}",
            record.lease_id, err.error
        ));
        output::err(format!("hint: {hint}"));
    }
    let ms = |v: u64| crabbox_core::duration::format_duration(std::time::Duration::from_millis(v));
    output::err(format!(
        "run summary lease={} bootstrap={} sync={} command={} total={} sync_skipped={} exit={exit}",
        ms(report.lease_ms),
        ms(report.bootstrap_ms),
        ms(report.sync_ms),
        ms(report.command_ms),
        ms(report.total_ms),
        report.sync_skipped
    ));
    if fresh && !release {
        output::err(format!(
            "lease {} ({}) kept; reuse with `crabbox run --id {} -- …`, release with `crabbox stop {}`",
            record.lease_id, record.slug, record.slug, record.lease_id
        ));
    }
    if args.timing_json {
        output::err(serde_json::to_string(&report).expect("timing report serializes"));
    }
    result?;
    if let (Some((err, hint)), 0) = (stop_error, exit) {
        return Err(CliError::new(
            ExitStatus::Remote,
            err.error.context(format!(
                "the command succeeded, but lease {} could not be released",
                record.lease_id
            )),
        )
        .hint(hint));
    }
    Ok(u8::try_from(exit.clamp(0, 255)).unwrap_or(1))
}

/// The run record's create request before a lease is known: what this run asks for.
fn create_request(ctx: &Ctx, args: &Args) -> RunCreateRequest {
    let config = ctx.settings.config();
    RunCreateRequest {
        lease_id: Some(String::new()),
        provider: (ctx.settings.origin("provider") != "default").then(|| config.provider.clone()),
        target: Some("linux".into()),
        class: Some(config.class.clone()).filter(|c| !c.is_empty()),
        command: Some(args.command.clone()),
        label: args.label.clone(),
        ..RunCreateRequest::default()
    }
}

/// The large-sync thresholds in force (`force` is `--force-sync-large`).
pub fn sync_limits(config: &crabbox_core::config::Config, force: bool) -> sync::Limits {
    sync::Limits {
        warn_files: config.sync.warn_files,
        warn_bytes: config.sync.warn_bytes,
        fail_files: config.sync.fail_files,
        fail_bytes: config.sync.fail_bytes,
        allow_large: config.sync.allow_large || force,
    }
}
