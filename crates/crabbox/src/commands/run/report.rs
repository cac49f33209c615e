//! What a run says when it is done: the timing summary on stderr (and `--timing-json`), a
//! note about a kept lease, and the exit code: the remote command's, or Crabbox's own when the
//! session failed or a run that otherwise succeeded could not release its lease (spec §4.12).

use std::time::Duration;

use crabbox_api::view::{SyncPhase, TimingReport};
use crabbox_api::{ExitStatus, RunId};
use crabbox_core::duration::format_duration;
use crabbox_remote::session::SessionOutcome;
use crabbox_remote::watch::Source;

use super::{Args, Held};
use crate::error::{CliError, CliResult};
use crate::lease::Released;
use crate::output;

/// What the report says of the run besides its outcome.
pub struct Report<'r, 'a> {
    pub held: &'r Held<'a>,
    pub run_id: &'r RunId,
    /// The file watcher proved nothing changed: git did not run.
    pub watcher_fingerprint: bool,
    pub total: Duration,
}

impl Report<'_, '_> {
    /// Prints the report and returns the run's exit code (or its error). `released` is the
    /// release of a fresh lease, unless it was kept.
    pub fn finish(
        &self,
        args: &Args,
        outcome: CliResult<SessionOutcome>,
        released: Option<CliResult<Released>>,
    ) -> CliResult<u8> {
        let id = &self.held.lease.record.lease_id;
        let kept = self.held.fresh && released.is_none();
        let stopped = matches!(released, Some(Ok(_)));
        let (session, result) = match outcome {
            Ok(o) => (o, Ok(())),
            Err(e) => (SessionOutcome::default(), Err(e)),
        };
        let exit = match &result {
            Ok(()) => session.exit_code,
            Err(e) => i32::from(e.code),
        };
        let stop_error = released.and_then(Result::err);
        let timing = self.timing(
            &session,
            exit,
            result.is_err(),
            stopped,
            stop_error.as_ref(),
            args,
        );
        // A lease that could not be released is still held (and billed): say how to release
        // it. The remote command's own failure still decides the exit code; a run that
        // otherwise succeeded exits 7 (spec §4.12).
        let stop_error = stop_error.map(|err| {
            let hint = format!(
                "the lease is still held; release it with `crabbox stop {id}`{}",
                err.hint
                    .as_ref()
                    .map(|h| format!(" ({h})"))
                    .unwrap_or_default()
            );
            (err, hint)
        });
        if let (Some((err, hint)), false) = (&stop_error, result.is_ok() && exit == 0) {
            output::warn(format!("could not release lease {id}: {:#}", err.error));
            output::err(format!("hint: {hint}"));
        }
        summary(&timing);
        if kept {
            let slug = &self.held.lease.record.slug;
            output::err(format!(
                "lease {id} ({slug}) kept; reuse with `crabbox run --id {slug} -- …`, release \
                 with `crabbox stop {id}`"
            ));
        }
        if args.timing_json {
            output::err(serde_json::to_string(&timing).expect("timing report serializes"));
        }
        result?;
        if let (Some((err, hint)), 0) = (stop_error, exit) {
            return Err(CliError::new(
                ExitStatus::Remote,
                err.error.context(format!(
                    "the command succeeded, but lease {id} could not be released"
                )),
            )
            .hint(hint));
        }
        Ok(u8::try_from(exit.clamp(0, 255)).unwrap_or(1))
    }

    /// The timing record (`--timing-json`, the summary line).
    fn timing(
        &self,
        session: &SessionOutcome,
        exit: i32,
        failed: bool,
        stopped: bool,
        stop_error: Option<&CliError>,
        args: &Args,
    ) -> TimingReport {
        let record = &self.held.lease.record;
        TimingReport {
            provider: record.provider.clone(),
            lease_id: record.lease_id.clone(),
            slug: record.slug.clone(),
            lease_ms: self.held.lease_time.as_millis() as u64,
            bootstrap_ms: self.held.ready_time.as_millis() as u64,
            sync_ms: session.sync_ms,
            sync_phases: session
                .phases
                .iter()
                .map(|(name, ms)| SyncPhase {
                    name: name.clone(),
                    ms: *ms,
                    skipped: false,
                    reason: (name == "fingerprint" && self.watcher_fingerprint)
                        .then(|| Source::Watcher.as_str().to_owned()),
                })
                .collect(),
            sync_skipped: session.sync_skipped,
            command_ms: session.command_ms,
            total_ms: self.total.as_millis() as u64,
            exit_code: exit,
            run_status: match exit {
                0 => "succeeded",
                130 => "canceled",
                _ => "failed",
            }
            .into(),
            error_kind: if failed {
                "provider-error".into()
            } else if exit != 0 {
                "command-exit".into()
            } else {
                String::new()
            },
            run_id: self.run_id.to_string(),
            repo_path: self.held.lease.repo_root().display().to_string(),
            workdir: self.held.lease.workdir(),
            stop_command: format!("crabbox stop {}", record.lease_id),
            idle_timeout: format_duration(Duration::from_secs(record.idle_timeout_secs)),
            lease_stopped: stopped,
            lease_stop_error: stop_error
                .map(|e| format!("{:#}", e.error))
                .unwrap_or_default(),
            label: args.label.clone().unwrap_or_default(),
        }
    }
}

/// `run summary lease=… bootstrap=… sync=… command=… total=… sync_skipped=… exit=…`.
fn summary(t: &TimingReport) {
    let ms = |v: u64| format_duration(Duration::from_millis(v));
    output::err(format!(
        "run summary lease={} bootstrap={} sync={} command={} total={} sync_skipped={} exit={}",
        ms(t.lease_ms),
        ms(t.bootstrap_ms),
        ms(t.sync_ms),
        ms(t.command_ms),
        ms(t.total_ms),
        t.sync_skipped,
        t.exit_code
    ));
}
