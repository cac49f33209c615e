//! The run's record on the coordinator, when its lease's coordinator keeps one (brokered
//! leases): created before leasing for a fresh lease, once resolved for `--id`, finished
//! with the exit code, timings and the log tail.

use crabbox_api::RunId;
use crabbox_api::coord::RunCreateRequest;
use crabbox_remote::session::SessionOutcome;

use super::Args;
use crate::error::CliResult;
use crate::lease::{Ctx, Lease, Leases, Sampler};
use crate::run_record::{self, Finish, LogTail, RunRecorder};

/// The record of a run that leases a fresh lease, created before leasing (`leasing.started`).
pub async fn before_leasing(leases: &Leases<'_>, ctx: &Ctx, args: &Args) -> Option<RunRecorder> {
    let client = leases.run_log()?.clone();
    let recorder = RunRecorder::create(client, create_request(ctx, args)).await?;
    recorder.send(run_record::event("leasing.started"));
    Some(recorder)
}

/// The record of a run on an existing lease (`--id`), which names the lease from the start.
pub async fn on_lease(lease: &Lease<'_>, ctx: &Ctx, args: &Args) -> Option<RunRecorder> {
    let client = lease.run_log()?.clone();
    let record = &lease.record;
    let req = RunCreateRequest {
        lease_id: Some(record.lease_id.clone()),
        provider: Some(record.provider.clone()),
        class: record.labels.get("class").cloned(),
        server_type: Some(record.server_type.clone()),
        ..create_request(ctx, args)
    };
    RunRecorder::create(client, req).await
}

/// The run id: the coordinator's when the run is recorded, else a fresh one.
pub fn run_id(recorder: Option<&RunRecorder>) -> RunId {
    recorder
        .and_then(|r| RunId::parse(&r.run_id).ok())
        .unwrap_or_else(RunId::generate)
}

/// Says the run is about to sync (spec cli-dataplane §4.8 step 1: before the sync, for every
/// run) and starts sampling the runner's telemetry.
pub async fn start(recorder: Option<&mut RunRecorder>, sampler: Sampler) {
    if let Some(r) = recorder {
        r.send(run_record::event("bootstrap.waiting"));
        r.start_telemetry(sampler, run_record::telemetry_interval())
            .await;
    }
}

/// Finishes the record with the session's outcome (a failure is recorded as `run.failed`).
pub async fn finish(
    recorder: &mut RunRecorder,
    outcome: &CliResult<SessionOutcome>,
    log: Option<&LogTail>,
) {
    let (exit_code, sync_ms, command_ms) = match outcome {
        Ok(o) => (o.exit_code, o.sync_ms, o.command_ms),
        Err(e) => {
            recorder.fail(e);
            (i32::from(e.code), 0, 0)
        }
    };
    recorder
        .finish(Finish {
            exit_code,
            sync_ms,
            command_ms,
            log,
        })
        .await;
}

/// The run record's create request before a lease is known: what this run asks for.
fn create_request(ctx: &Ctx, args: &Args) -> RunCreateRequest {
    let config = ctx.settings.config();
    RunCreateRequest {
        lease_id: Some(String::new()),
        provider: ctx.explicit_provider(),
        target: Some("linux".into()),
        class: Some(config.class.clone()).filter(|c| !c.is_empty()),
        command: Some(args.command.clone()),
        label: args.label.clone(),
        ..RunCreateRequest::default()
    }
}

/// Posts what is still queued, after `lease.released` when the lease was released.
pub async fn close(recorder: Option<RunRecorder>, lease: &Lease<'_>, released: bool) {
    if let Some(r) = recorder {
        if released {
            r.send(run_record::lease_event("lease.released", &lease.record));
        }
        r.close().await;
    }
}
