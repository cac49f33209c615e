//! `crabbox run`: resolve or acquire a lease, then one remote session that takes the lease's
//! run lock, syncs and runs the command, streaming its output; record the run, release a
//! fresh lease, report.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crabbox_api::ExitStatus;
use crabbox_remote::sync;
use crabbox_remote::watch::Source;

use crate::error::{CliError, CliResult};
use crate::interrupt::Interrupt;
use crate::lease::{self, Lease, LeaseFlags, Leases, NewLease};
use crate::output::Progress;
use crate::run_record::{self, LogTail, RunRecorder};

mod argv;
mod execute;
mod record;
mod report;

use execute::execute;
use report::Report;

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

impl Args {
    /// The arguments of `crabbox run --id <lease> --keep -- <command>`, every other flag at
    /// its default: how `checkpoint fork` runs its command on each fork. They are parsed by
    /// clap itself, so the defaults are always the ones `crabbox run` has.
    pub fn on_lease(lease: &str, command: Vec<String>) -> Self {
        /// `Args` as the whole command line.
        #[derive(clap::Parser)]
        struct Line {
            #[command(flatten)]
            args: Args,
        }
        let head = ["run", &format!("--id={lease}"), "--keep", "--"].map(str::to_owned);
        <Line as clap::Parser>::try_parse_from(head.into_iter().chain(command))
            .expect("an id, --keep and a command are valid run arguments")
            .args
    }
}

/// The lease a run uses, and what getting it cost.
pub struct Held<'a> {
    lease: Lease<'a>,
    /// Leased for this run (released after it unless `--keep`).
    fresh: bool,
    lease_time: Duration,
    ready_time: Duration,
}

pub async fn run(args: Args) -> CliResult<u8> {
    let total = Instant::now();
    let lock_wait = check(&args)?;
    let ctx = lease::context(args.lease.values())?;
    let leases = Leases::new(&ctx);
    let progress = Progress::start(false);
    // One listener for the whole run: a signal while leasing cancels the lease, one during
    // the session stops the command (and the run is recorded and released as usual).
    let interrupt = Interrupt::listen();

    // Resolve or acquire. A fresh lease's run is recorded before leasing, so a lease that
    // cannot be had still leaves a failed run saying why (spec §4.11 step 1).
    let mut recorder = match &args.id {
        None => record::before_leasing(&leases, &ctx, &args).await,
        Some(_) => None,
    };
    let mut held = match hold(
        &ctx,
        &leases,
        &args,
        &progress,
        &interrupt,
        recorder.as_ref(),
    )
    .await
    {
        Ok(held) => held,
        Err(err) => return Err(RunRecorder::abandon(recorder, err).await),
    };
    held.lease.touch();
    let sampler = lease::sampler(held.lease.target());
    // `run --id X --idle-timeout D` sets that lease's idle timeout (spec §4.5 step 5).
    let idle_update = (args.id.is_some() && args.lease.idle_timeout.is_some())
        .then(|| ctx.settings.config().idle_timeout);
    let keep_alive = match held.lease.keep_alive(sampler.clone(), idle_update).await {
        Ok(keep_alive) => keep_alive,
        Err(err) => return Err(RunRecorder::abandon(recorder, err).await),
    };
    if !held.fresh {
        recorder = record::on_lease(&held.lease, &ctx, &args).await;
    }
    let run_id = record::run_id(recorder.as_ref());
    let log = recorder.as_ref().map(|_| LogTail::default());
    record::start(recorder.as_mut(), sampler).await;

    // Lock, sync and exec: one remote session.
    let fingerprint_source: Arc<OnceLock<Source>> = Arc::default();
    let outcome = execute(
        &ctx,
        &args,
        &held.lease,
        &run_id,
        lock_wait,
        &progress,
        log.clone(),
        recorder.as_ref().map(RunRecorder::sink),
        &fingerprint_source,
        interrupt.receiver(),
    )
    .await;
    progress.finish();

    // Record, then release: nothing may touch the runner once it is being released.
    if let Some(r) = &mut recorder {
        record::finish(r, &outcome, log.as_ref()).await;
    }
    drop(keep_alive);
    let released = if held.fresh && !args.keep {
        Some(held.lease.release().await)
    } else {
        None
    };
    record::close(recorder, &held.lease, matches!(released, Some(Ok(_)))).await;
    let report = Report {
        held: &held,
        run_id: &run_id,
        watcher_fingerprint: fingerprint_source.get() == Some(&Source::Watcher),
        total: total.elapsed(),
    };
    report.finish(&args, outcome, released)
}

/// Checks what the flags alone can tell; the lock wait.
fn check(args: &Args) -> CliResult<Duration> {
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
    crabbox_core::duration::parse_duration(&args.lock_timeout)
        .map_err(|e| CliError::msg(ExitStatus::Usage, format!("invalid --lock-timeout: {e}")))
}

/// `--desktop` and `--browser` on an existing lease: it must have them (a lease cannot gain
/// them later).
pub(crate) fn check_capabilities(
    config: &crabbox_core::config::Config,
    record: &crabbox_providers::LeaseRecord,
) -> CliResult<()> {
    let has = crabbox_providers::LeaseDesktop::of(record);
    for (asked, present, what) in [
        (
            config.capabilities.desktop,
            has.display.is_some(),
            "desktop",
        ),
        (
            config.capabilities.browser,
            has.browser.is_some(),
            "browser",
        ),
    ] {
        if asked && !present {
            return Err(CliError::msg(
                ExitStatus::Usage,
                format!("lease {} has no {what}", record.lease_id),
            )
            .hint(format!(
                "a lease cannot gain a {what} later: warm a new one with `crabbox warmup \
                 --{what}`, or drop --{what}"
            )));
        }
    }
    Ok(())
}

/// `--id`'s lease, resolved; else a fresh one, acquired (the run record hears of it as soon
/// as it exists, before the wait for its ssh).
async fn hold<'a>(
    ctx: &crate::lease::Ctx,
    leases: &Leases<'a>,
    args: &Args,
    progress: &Progress,
    interrupt: &Interrupt,
    recorder: Option<&RunRecorder>,
) -> CliResult<Held<'a>> {
    if let Some(id) = &args.id {
        let lease = leases.resolve(id).await?;
        lease::posix_only("run", &lease.record)?;
        check_capabilities(ctx.settings.config(), &lease.record)?;
        return Ok(Held {
            lease,
            fresh: false,
            lease_time: Duration::ZERO,
            ready_time: Duration::ZERO,
        });
    }
    // A fresh Windows lease could not run the command: refused before anything is leased.
    if ctx.settings.config().target == crabbox_core::machine::TargetOs::Windows {
        return Err(lease::windows_refused("run", "a new lease").hint(
            "lease it with `crabbox warmup --target windows` and reach it with `crabbox ssh --id <lease>`",
        ));
    }
    let on_created = |record: &crabbox_providers::LeaseRecord| {
        if let Some(r) = recorder {
            r.send(run_record::lease_event("lease.created", record));
        }
    };
    let new = NewLease {
        slug: args.lease.slug.clone(),
        keep: args.keep,
        keep_unready: args.keep,
    };
    let acquired = leases
        .acquire(&new, progress, interrupt, &on_created)
        .await?;
    Ok(Held {
        lease: acquired.lease,
        fresh: true,
        lease_time: acquired.lease_time,
        ready_time: acquired.ready_time,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_on_a_lease_has_the_defaults_of_crabbox_run() {
        let words = ["sh", "-c", "exit 3", "--keep", "--"].map(str::to_owned);
        let args = Args::on_lease("cbx_0000000000ab", words.to_vec());
        assert_eq!(args.id.as_deref(), Some("cbx_0000000000ab"));
        assert!(args.keep);
        assert_eq!(
            args.command, words,
            "every word is the command's, hyphens too"
        );
        assert_eq!(args.lock_timeout, "30m");
        assert!(!args.no_sync && !args.sync_only && !args.shell && !args.full_resync);
        assert!(args.allow_env.is_empty() && args.lease.values().is_empty());
    }
}
