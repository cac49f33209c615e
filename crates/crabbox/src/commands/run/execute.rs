//! The session of one `crabbox run` on a held lease: one remote exec that takes the lease's
//! run lock, syncs when the fingerprint says so, and runs the command with its output
//! streamed to the terminal and into the run record.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crabbox_api::{ExitStatus, RunId};
use crabbox_remote::rsync::RsyncOptions;
use crabbox_remote::session::{
    SessionError, SessionEvent, SessionOutcome, SessionPlan, SyncHooks, run_session,
};
use crabbox_remote::sync::{self, FingerprintOptions, LocalState, ManifestOptions};
use crabbox_remote::watch::Source;
use tokio::sync::watch;

use super::argv::{command_words, forwarded_env};
use super::{Args, sync_limits};
use crate::error::{CliError, CliResult};
use crate::lease::{Ctx, Lease};
use crate::output::{self, Progress};
use crate::run_record::{self, LogTail, Recording, Tee};
use crate::syncprep::SyncInputs;
use crate::syncstate::{self, SyncRecord};

/// The local state the fingerprint was computed from, and how long that took (ms).
type Computed = Arc<OnceLock<(LocalState, u64)>>;

#[expect(
    clippy::too_many_arguments,
    reason = "the run's pieces are computed in run() and used once here"
)]
pub(super) async fn execute(
    ctx: &Ctx,
    args: &Args,
    lease: &Lease<'_>,
    run_id: &RunId,
    lock_wait: Duration,
    progress: &Progress,
    log: Option<LogTail>,
    events: Option<run_record::EventSink>,
    fingerprint_source: &Arc<OnceLock<Source>>,
    cancel_rx: watch::Receiver<bool>,
) -> CliResult<SessionOutcome> {
    let record = &lease.record;
    let workdir = lease.workdir();
    let config = ctx.settings.config();
    let scope = ctx.sync_scope()?;
    let checksum = args.checksum || config.sync.checksum;
    let is_git = sync::is_git_root(&ctx.repo_root);
    let git = is_git && config.sync.git_seed && scope.include.is_empty();
    let computed: Computed = Arc::default();
    let use_fp = config.sync.fingerprint && !args.full_resync && !args.no_sync;
    let fingerprint = fingerprint(
        ctx,
        &scope,
        checksum,
        use_fp,
        &computed,
        fingerprint_source.clone(),
    );
    let plan = plan(ctx, args, lease, run_id, lock_wait, is_git, git);
    let excludes_key = syncstate::excludes_key(&scope);
    let inputs = sync_inputs(ctx, args, lease, scope, git, checksum, &computed);
    let hooks = SyncHooks {
        fingerprint,
        prepare: move |runner| inputs.prepare(runner),
    };
    let stdout = Recording {
        log: log.clone(),
        events: events.clone().map(|sink| (sink, "stdout")),
    };
    let stderr = Recording {
        log,
        events: events.clone().map(|sink| (sink, "stderr")),
    };
    progress.phase(format!("connecting to {}", record.slug));
    let result = run_session(
        &lease.target(),
        &plan,
        hooks,
        on_event(progress.clone(), events),
        Tee::new(tokio::io::stdout(), stdout),
        Tee::new(tokio::io::stderr(), stderr),
        cancel_rx,
    )
    .await;
    progress.finish();
    let mut outcome = result.map_err(|e| session_error(e, &record.lease_id))?;
    if let Some((local, fp_ms)) = computed.get() {
        outcome.phases.insert(0, ("fingerprint".to_owned(), *fp_ms));
        if outcome.synced {
            let synced = SyncRecord {
                fingerprint: local.fingerprint.clone(),
                excludes: excludes_key,
                head: local.head.clone(),
                dirty: local.dirty.paths.clone(),
            };
            syncstate::save(&ctx.state_dir, &record.lease_id, &workdir, &synced);
        }
    }
    if args.sync_only {
        output::out(format!("synced {workdir}"));
    }
    Ok(outcome)
}

/// What a sync needs when the fingerprint says one is due: the scope and limits, how to
/// seed git, and what the last sync to this workdir left (for a delta).
fn sync_inputs(
    ctx: &Ctx,
    args: &Args,
    lease: &Lease<'_>,
    scope: ManifestOptions,
    git: bool,
    checksum: bool,
    computed: &Computed,
) -> SyncInputs {
    let config = ctx.settings.config();
    SyncInputs {
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
            syncstate::load(&ctx.state_dir, &lease.record.lease_id, &lease.workdir())
        },
        local: computed.clone(),
    }
}

/// The fingerprint of the local tree, computed on a blocking thread started now, so that it
/// overlaps the ssh start; the session awaits it. Its local state and time go to `computed`
/// (for the delta sync and the sync record), where it came from to `source`. Empty without
/// a fingerprint (`use_fp` false): the session then always syncs.
fn fingerprint(
    ctx: &Ctx,
    scope: &ManifestOptions,
    checksum: bool,
    use_fp: bool,
    computed: &Computed,
    source: Arc<OnceLock<Source>>,
) -> impl Future<Output = Result<String, Box<dyn std::error::Error + Send + Sync>>> + use<> {
    let cell = computed.clone();
    let watch = crate::commands::watch::settings(ctx);
    let root = ctx.repo_root.clone();
    let scope = scope.clone();
    let delete = ctx.settings.config().sync.delete;
    let extra = crate::syncprep::fingerprint_extra(ctx.settings.config());
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
        let (state, from, ms) = task.await??;
        let fp = state.fingerprint.clone();
        let _ = source.set(from);
        let _ = cell.set((state, ms));
        Ok(fp)
    }
}

/// The session script's plan: where the workdir, sync metadata and run lock live, what the
/// command is and the environment it gets.
fn plan(
    ctx: &Ctx,
    args: &Args,
    lease: &Lease<'_>,
    run_id: &RunId,
    lock_wait: Duration,
    is_git: bool,
    git: bool,
) -> SessionPlan {
    let record = &lease.record;
    let workdir = lease.workdir();
    let config = ctx.settings.config();
    let (shell, words) = command_words(&args.command, args.shell);
    let mut allow = config.env_allow.clone();
    allow.extend(args.allow_env.iter().cloned());
    let mut env = forwarded_env(&allow, std::env::vars());
    env.retain(|(k, _)| !k.starts_with("CRABBOX_"));
    env.push(("CRABBOX_LEASE_ID".into(), record.lease_id.clone()));
    env.push(("CRABBOX_RUN_ID".into(), run_id.to_string()));
    env.push(("CRABBOX_SLUG".into(), record.slug.clone()));
    env.extend(desktop_env(config, record));
    SessionPlan {
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
        workdir,
        lock_wait,
        shell,
        full_resync: args.full_resync,
        sync_only: args.sync_only,
        no_sync: args.no_sync,
        git,
        allow_mass_deletions: std::env::var("CRABBOX_ALLOW_MASS_DELETIONS").is_ok_and(|v| v == "1"),
        env,
        argv: words,
    }
}

/// `run --desktop` and `--browser`'s environment (spec/providers.md §5): `CRABBOX_DESKTOP`
/// and `DISPLAY`; `CRABBOX_BROWSER`, `BROWSER` and `CHROME_BIN`. The lease has them:
/// [`super::check_capabilities`] refused it otherwise.
fn desktop_env(
    config: &crabbox_core::config::Config,
    record: &crabbox_providers::LeaseRecord,
) -> Vec<(String, String)> {
    let desktop = crabbox_providers::LeaseDesktop::of(record);
    let mut env = Vec::new();
    if config.capabilities.desktop
        && let Some(display) = desktop.display
    {
        env.push(("CRABBOX_DESKTOP".into(), "1".into()));
        env.push(("DISPLAY".into(), display));
    }
    if config.capabilities.browser
        && let Some(browser) = desktop.browser
    {
        env.push(("CRABBOX_BROWSER".into(), "1".into()));
        env.push(("BROWSER".into(), browser.clone()));
        env.push(("CHROME_BIN".into(), browser));
    }
    env
}

/// Session events become progress lines and, when the run is recorded, run events.
fn on_event(progress: Progress, events: Option<run_record::EventSink>) -> impl FnMut(SessionEvent) {
    let mut recording = events.map(run_record::SessionEvents::new);
    move |event: SessionEvent| {
        if let Some(recording) = &mut recording {
            recording.on(&event);
        }
        match event {
            SessionEvent::WaitingForLock => {
                progress.phase("waiting for another run on this lease");
            }
            SessionEvent::Skipped(reason) => {
                progress.phase(format!("no changes ({reason}), skipping sync"));
            }
            SessionEvent::Syncing { files, bytes } => {
                progress.phase(format!("syncing {files} files ({bytes} bytes)"));
            }
            SessionEvent::Synced => progress.phase("synced"),
            SessionEvent::CommandStarted => progress.finish(),
        }
    }
}

/// A failed session, in the exit-code contract with a hint.
fn session_error(e: SessionError, lease_id: &str) -> CliError {
    match e {
        SessionError::Interrupted => CliError::msg(
            ExitStatus::Interrupted,
            "interrupted; the remote command was stopped",
        ),
        e @ (SessionError::Sync(_) | SessionError::Prepare(_)) => {
            CliError::new(ExitStatus::Sync, e)
                .hint("retry with --full-resync; `crabbox doctor` checks rsync and git")
        }
        e @ SessionError::LeaseBusy(_) => CliError::new(ExitStatus::Readiness, e)
            .hint("another `crabbox run` is using this lease; wait, or use a different lease"),
        e @ SessionError::ConnectionLost { .. } => CliError::new(ExitStatus::Remote, e).hint(
            format!("the runner may be gone; check with `crabbox status {lease_id}`"),
        ),
        e => CliError::new(ExitStatus::Remote, e),
    }
}
