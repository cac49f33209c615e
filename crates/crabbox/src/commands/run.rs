//! `crabbox run`: lease (or reuse), sync, run, stream, report, release.

use std::time::Instant;

use crabbox_api::coord::RunCreateRequest;
use crabbox_api::view::{SyncPhase, TimingReport};
use crabbox_api::{ExitStatus, RunId};
use std::sync::{Arc, OnceLock};

use crabbox_remote::rsync::RsyncOptions;
use crabbox_remote::session::{SessionError, SessionEvent, SessionPlan, SyncHooks, run_session};
use crabbox_remote::sync::{self, FingerprintOptions, LocalState};
use crabbox_remote::watch::Source;

use crate::cli::LeaseFlags;
use crate::error::{CliError, CliResult};
use crate::interrupt::Interrupt;
use crate::lease::{self, Ctx};
use crate::output::{self, Progress};
use crate::run_record::{self, Finish, LogTail, Recording, RunRecorder, Tee};
use crate::syncprep::SyncInputs;
use crate::syncstate::{self, SyncRecord};

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

const SHELL_OPERATORS: &[&str] = &["&&", "||", ";", "|", ">", ">>", "<", "2>", "2>>"];

fn is_assignment(word: &str) -> bool {
    word.split_once('=')
        .is_some_and(|(name, _)| valid_env_name(name))
}

/// Decides argv vs shell mode (spec §4.10 step 6) and returns the words to send.
pub fn command_words(argv: &[String], force_shell: bool) -> (bool, Vec<String>) {
    use crabbox_remote::quote::sh_quote;
    if force_shell {
        return (true, argv.to_vec());
    }
    if argv.len() == 1 && argv[0].chars().any(|c| " \t\n&|;<>*$`\\()".contains(c)) {
        return (true, argv.to_vec());
    }
    let leading_assignment = argv.first().is_some_and(|w| is_assignment(w));
    let has_operator = argv.iter().any(|w| SHELL_OPERATORS.contains(&w.as_str()));
    if leading_assignment || has_operator {
        let mut seen_command = false;
        let words = argv
            .iter()
            .map(|w| {
                if SHELL_OPERATORS.contains(&w.as_str()) {
                    seen_command = false;
                    w.clone()
                } else if !seen_command && is_assignment(w) {
                    let (k, v) = w.split_once('=').expect("assignment");
                    format!("{k}={}", sh_quote(v))
                } else {
                    seen_command = true;
                    sh_quote(w)
                }
            })
            .collect();
        return (true, words);
    }
    (false, argv.to_vec())
}

fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Local variables selected by the allowlist (exact names or `PREFIX*`).
pub fn forwarded_env(
    allow: &[String],
    vars: impl Iterator<Item = (String, String)>,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vars
        .filter(|(name, _)| {
            valid_env_name(name)
                && allow.iter().any(|pat| match pat.strip_suffix('*') {
                    Some("") => false,
                    Some(prefix) => name.starts_with(prefix),
                    None => pat == name,
                })
        })
        .collect();
    out.sort();
    out
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
        lease::acquire(&ctx, &args.lease, args.keep, &progress, &interrupt)
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
        (_, Some(r)) => r.send(run_record::lease_event("lease.created", &record)),
        _ => {}
    }
    let run_id = recorder
        .as_ref()
        .and_then(|r| RunId::parse(&r.run_id).ok())
        .unwrap_or_else(RunId::generate);
    let log = recorder.as_ref().map(|_| LogTail::default());
    let events = recorder.as_ref().map(RunRecorder::sink);
    if let Some(r) = &mut recorder {
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

#[expect(
    clippy::too_many_arguments,
    reason = "the run's pieces are computed in run() and used once here"
)]
async fn execute(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn s(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn shell_detection() {
        assert_eq!(
            command_words(&s(&["cargo", "test"]), false),
            (false, s(&["cargo", "test"]))
        );
        assert_eq!(
            command_words(&s(&["echo hi | wc -c"]), false),
            (true, s(&["echo hi | wc -c"]))
        );
        assert_eq!(
            command_words(&s(&["FOO=a b", "env"]), false),
            (true, s(&["FOO='a b'", "env"]))
        );
        assert_eq!(
            command_words(&s(&["make", "&&", "echo", "a b"]), false),
            (true, s(&["make", "&&", "echo", "'a b'"]))
        );
    }

    #[test]
    fn env_allowlist() {
        let vars = vec![
            ("CI".into(), "1".into()),
            ("NPM_TOKEN".into(), "x".into()),
            ("NODE_OPTIONS".into(), "--x".into()),
            ("OTHER".into(), "y".into()),
        ];
        let out = forwarded_env(&s(&["CI", "NODE_*", "*"]), vars.into_iter());
        assert_eq!(
            out,
            vec![
                ("CI".to_owned(), "1".to_owned()),
                ("NODE_OPTIONS".to_owned(), "--x".to_owned())
            ]
        );
    }
}
