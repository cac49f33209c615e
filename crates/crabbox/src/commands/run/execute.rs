//! The session of one `crabbox run` on a resolved lease: the sync, then the command with its
//! output streamed to the terminal and into the run record.

use std::time::Instant;

use crabbox_api::{ExitStatus, RunId};
use std::sync::{Arc, OnceLock};

use crabbox_remote::rsync::RsyncOptions;
use crabbox_remote::session::{SessionError, SessionEvent, SessionPlan, SyncHooks, run_session};
use crabbox_remote::sync::{self, FingerprintOptions, LocalState};
use crabbox_remote::watch::Source;

use crate::error::{CliError, CliResult};
use crate::lease::{self, Ctx};
use crate::output::{self, Progress};
use crate::run_record::{self, LogTail, Recording, Tee};
use crate::syncprep::SyncInputs;
use crate::syncstate::{self, SyncRecord};

use super::argv::{command_words, forwarded_env};
use super::{Args, sync_limits};

#[expect(
    clippy::too_many_arguments,
    reason = "the run's pieces are computed in run() and used once here"
)]
pub(super) async fn execute(
    ctx: &Ctx,
    args: &Args,
    record: &crabbox_providers::LeaseRecord,
    run_id: &RunId,
    lock_wait: std::time::Duration,
    progress: &Progress,
    log: Option<LogTail>,
    events: Option<run_record::EventSink>,
    fingerprint_source: &Arc<OnceLock<Source>>,
    cancel_rx: tokio::sync::watch::Receiver<bool>,
) -> CliResult<crabbox_remote::session::SessionOutcome> {
    let target = lease::ssh_target(record);
    let workdir = ctx.workdir(record);
    let config = ctx.settings.config();
    let is_git = sync::is_git_root(&ctx.repo_root);
    let scope = lease::sync_scope(ctx)?;
    let checksum = args.checksum || config.sync.checksum;
    let use_fp = config.sync.fingerprint && !args.full_resync && !args.no_sync;
    // The fingerprint is computed on a blocking thread while ssh starts the session; its result
    // is kept for the delta sync and the sync record.
    let local_cell: Arc<OnceLock<(LocalState, u64)>> = Arc::default();
    let fingerprint = {
        let cell = local_cell.clone();
        let source_cell = fingerprint_source.clone();
        let watch = crate::commands::watch::settings(ctx);
        let root = ctx.repo_root.clone();
        let scope = scope.clone();
        let delete = config.sync.delete;
        let extra = crate::syncprep::fingerprint_extra(config);
        // Started now, not when the session first polls it, so it overlaps the ssh start.
        let task = use_fp.then(|| {
            tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                let opts = FingerprintOptions {
                    scope: &scope,
                    delete,
                    checksum,
                    extra: &extra,
                };
                crabbox_remote::watch::local_state(&root, &opts, watch.as_ref())
                    .map(|(s, source)| (s, source, started.elapsed().as_millis() as u64))
            })
        });
        async move {
            let Some(task) = task else {
                return Ok(String::new());
            };
            let (state, source, ms) = task.await??;
            let fp = state.fingerprint.clone();
            let _ = source_cell.set(source);
            let _ = cell.set((state, ms));
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(fp)
        }
    };
    let (shell, words) = command_words(&args.command, args.shell);
    let mut allow = config.env_allow.clone();
    allow.extend(args.allow_env.iter().cloned());
    let mut env = forwarded_env(&allow, std::env::vars());
    env.retain(|(k, _)| !k.starts_with("CRABBOX_"));
    env.push(("CRABBOX_LEASE_ID".into(), record.lease_id.clone()));
    env.push(("CRABBOX_RUN_ID".into(), run_id.to_string()));
    env.push(("CRABBOX_SLUG".into(), record.slug.clone()));
    let git = is_git && config.sync.git_seed && scope.include.is_empty();
    let excludes_key = syncstate::excludes_key(&scope);
    let plan = SessionPlan {
        meta: if is_git {
            format!("{workdir}/.git/crabbox")
        } else {
            format!("{workdir}/.crabbox/meta")
        },
        lock: format!(
            "{}/{}/.crabbox-run.lock",
            record.work_root.trim_end_matches('/'),
            record.lease_id
        ),
        workdir: workdir.clone(),
        lock_wait,
        shell,
        full_resync: args.full_resync,
        sync_only: args.sync_only,
        no_sync: args.no_sync,
        git,
        allow_mass_deletions: std::env::var("CRABBOX_ALLOW_MASS_DELETIONS").is_ok_and(|v| v == "1"),
        env,
        argv: words,
    };
    let inputs = SyncInputs {
        root: ctx.repo_root.clone(),
        scope,
        limits: sync_limits(config, args.force_sync_large),
        base_ref: config.sync.base_ref.clone(),
        git,
        rsync: RsyncOptions {
            checksum,
            debug: false,
        },
        previous: if args.full_resync {
            None
        } else {
            syncstate::load(&ctx.state_dir, &record.lease_id, &workdir)
        },
        local: local_cell.clone(),
    };
    let prepare = move |runner| inputs.prepare(runner);
    let hooks = SyncHooks {
        fingerprint,
        prepare,
    };
    let output_copy = Recording {
        log: log.clone(),
        events: events.clone().map(|sink| (sink, "stdout")),
    };
    let progress_events = progress.clone();
    let mut session_events = events.map(run_record::SessionEvents::new);
    let on_event = move |event: SessionEvent| {
        if let Some(recording) = &mut session_events {
            recording.on(&event);
        }
        match event {
            SessionEvent::WaitingForLock => {
                progress_events.phase("waiting for another run on this lease");
            }
            SessionEvent::Skipped(reason) => {
                progress_events.phase(format!("no changes ({reason}), skipping sync"));
            }
            SessionEvent::Syncing { files, bytes } => {
                progress_events.phase(format!("syncing {files} files ({bytes} bytes)"));
            }
            SessionEvent::Synced => progress_events.phase("synced"),
            SessionEvent::CommandStarted => progress_events.finish(),
        }
    };
    progress.phase(format!("connecting to {}", record.slug));
    let result = run_session(
        &target,
        &plan,
        hooks,
        on_event,
        Tee::new(tokio::io::stdout(), output_copy.clone()),
        Tee::new(
            tokio::io::stderr(),
            Recording {
                log,
                events: output_copy.events.map(|(sink, _)| (sink, "stderr")),
            },
        ),
        cancel_rx,
    )
    .await;
    progress.finish();
    match result {
        Ok(mut outcome) => {
            if let Some((_, fp_ms)) = local_cell.get() {
                outcome.phases.insert(0, ("fingerprint".to_owned(), *fp_ms));
            }
            if let (true, Some((local, _))) = (outcome.synced, local_cell.get()) {
                let synced = SyncRecord {
                    fingerprint: local.fingerprint.clone(),
                    excludes: excludes_key,
                    head: local.head.clone(),
                    dirty: local.dirty.paths.clone(),
                };
                syncstate::save(&ctx.state_dir, &record.lease_id, &workdir, &synced);
            }
            if args.sync_only {
                output::out(format!("synced {workdir}"));
            }
            Ok(outcome)
        }
        Err(SessionError::Interrupted) => Err(CliError::msg(
            ExitStatus::Interrupted,
            "interrupted; the remote command was stopped",
        )),
        Err(e @ (SessionError::Sync(_) | SessionError::Prepare(_))) => {
            Err(CliError::new(ExitStatus::Sync, e)
                .hint("retry with --full-resync; `crabbox doctor` checks rsync and git"))
        }
        Err(e @ SessionError::LeaseBusy(_)) => Err(CliError::new(ExitStatus::Readiness, e)
            .hint("another `crabbox run` is using this lease; wait, or use a different lease")),
        Err(e @ SessionError::ConnectionLost { .. }) => Err(CliError::new(ExitStatus::Remote, e)
            .hint(format!(
                "the runner may be gone; check with `crabbox status {}`",
                record.lease_id
            ))),
        Err(e) => Err(CliError::new(ExitStatus::Remote, e)),
    }
}
