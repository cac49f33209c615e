//! `crabbox checkpoint fork` (spec providers.md §3.7): leases new runners from a checkpoint,
//! each ready with its state (the archive restored into it, or the image booted and the saved
//! workdir moved to the new lease's path). With a trailing command, each fork runs it as
//! `crabbox run --id <fork> --keep -- …` would, one fork after the other, with `{{index}}`,
//! `{{total}}`, `{{lease}}` and `{{slug}}` filled in; the first failing fork's exit code is
//! the command's.

use std::path::PathBuf;

use crabbox_api::ExitStatus;
use crabbox_core::config::FlagValue;
use crabbox_remote::quote::{sh_join, sh_quote};
use crabbox_remote::workspace_archive::{self, RestoreMode};
use serde_json::json;

use super::checkpoint_lease::{archive_error, archive_of};
use super::run;
use crate::checkpoint::record::{Kind, Record};
use crate::checkpoint::{Store, native};
use crate::error::{CliError, CliResult};
use crate::interrupt::Interrupt;
use crate::lease::{self, Lease, LeaseFlags, Leases, NewLease};
use crate::output::{self, Progress};

#[derive(Debug, clap::Args)]
pub struct ForkArgs {
    /// The checkpoint (chk_…).
    pub checkpoint: String,
    #[command(flatten)]
    pub lease: LeaseFlags,
    /// How many leases to fork (slugs `<slug>-01`, `-02`… when --slug is given).
    #[arg(long, default_value_t = 1)]
    pub count: u32,
    /// The remote directory to restore into (default: this repository's workdir on each lease).
    #[arg(long)]
    pub workdir: Option<String>,
    /// Keep each fork (default); `--keep=false` releases each one once its command ran.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub keep: bool,
    /// Say what would be leased (and run); lease nothing.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    #[arg(long)]
    pub json: bool,
    /// A command to run on each fork (after `--`), as `crabbox run --id <fork> --keep` does;
    /// `{{index}}`, `{{total}}`, `{{lease}}` and `{{slug}}` are filled in per fork.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// What every fork starts from: the checked archive (none for an image checkpoint) and the
/// lease flags, with an image checkpoint's image among them.
struct Source {
    archive: Option<PathBuf>,
    flags: Vec<FlagValue>,
}

/// One fork made, as the final report shows it.
struct Forked {
    lease: String,
    slug: String,
    workdir: String,
    /// The exit code of its command, when one ran.
    exit: Option<u8>,
}

/// `checkpoint fork`: `--count` new leases from the checkpoint, each ready with its state, and
/// the trailing command run on each in turn. A lease whose restore fails is released before
/// the error is returned; a failing command does not stop the next forks.
pub async fn fork(args: ForkArgs) -> CliResult<u8> {
    check(&args)?;
    let store = Store::open();
    let record = store.get(&args.checkpoint)?;
    let source = prepare(&store, &record, &args.lease).await?;
    if args.dry_run {
        dry_run(&args, &record);
        return Ok(0);
    }
    let interrupt = Interrupt::listen();
    let mut forked = Vec::new();
    for index in 1..=args.count {
        let ctx = lease::context(source.flags.clone())?;
        let (lease, workdir) = place(&ctx, &args, &record, &source, index, &interrupt).await?;
        let exit = if args.command.is_empty() {
            None
        } else {
            Some(run_on(&args, &lease, index).await)
        };
        forked.push(Forked {
            lease: lease.record.lease_id.clone(),
            slug: lease.record.slug.clone(),
            workdir,
            exit,
        });
        // Ctrl-C stopped this fork's command: the forks not made yet are not made.
        if exit.is_some() && interrupt.requested() {
            break;
        }
    }
    store.touch_used(&record.id)?;
    report(&args, &record, &forked);
    let interrupted = !args.command.is_empty() && interrupt.requested();
    Ok(exit_code(&forked, interrupted))
}

/// Checks what the flags alone can tell, before anything is read or leased.
fn check(args: &ForkArgs) -> CliResult<()> {
    if args.count == 0 || args.count > 100 {
        return Err(CliError::msg(ExitStatus::Usage, "--count is 1 to 100"));
    }
    if !args.keep && args.command.is_empty() {
        return Err(CliError::msg(
            ExitStatus::Usage,
            "--keep=false without a command: each fork would be released at once",
        )
        .hint("give the command to run on each fork after `--`, or drop --keep=false"));
    }
    Ok(())
}

/// The archive, checked before anything is leased, or the image and its flags (an image
/// that is gone is refused here).
async fn prepare(store: &Store, record: &Record, lease: &LeaseFlags) -> CliResult<Source> {
    let archive = match &record.kind {
        Kind::AwsAmi => None,
        _ => Some(archive_of(store, record)?),
    };
    if let Some(archive) = &archive {
        workspace_archive::check(archive).map_err(archive_error)?;
    }
    let mut flags = lease.values();
    if record.kind == Kind::AwsAmi {
        flags.extend(native::fork_flags(record, lease.market.is_some())?);
        native::check_image(record).await?;
    }
    Ok(Source { archive, flags })
}

/// `--dry-run`: what would be leased and, with a command, what each fork would run (the
/// lease id is not known yet, so `{{lease}}` stays as written; so does `{{slug}}` without
/// `--slug`, as the provider names the lease).
fn dry_run(args: &ForkArgs, record: &Record) {
    output::out(format!(
        "would fork checkpoint {} ({}) into {} lease(s) (dry run: nothing leased)",
        record.id, record.kind, args.count
    ));
    if args.command.is_empty() {
        return;
    }
    for index in 1..=args.count {
        let slug = fork_slug(args, index);
        let values = Placeholders {
            index,
            total: args.count,
            lease: None,
            slug: slug.as_deref(),
        };
        let words = values.fill(&args.command);
        let release = if args.keep {
            ""
        } else {
            "; then crabbox stop {{lease}}"
        };
        output::out(format!(
            "fork {index}/{} slug={} would run: crabbox run --id {{{{lease}}}} --keep -- {}{release}",
            args.count,
            slug.as_deref().unwrap_or("-"),
            sh_join(&words)
        ));
    }
}

/// The slug asked for fork `index`: `--slug` itself for one fork, numbered for several.
fn fork_slug(args: &ForkArgs, index: u32) -> Option<String> {
    args.lease.slug.as_ref().map(|s| {
        if args.count > 1 {
            format!("{s}-{index:02}")
        } else {
            s.clone()
        }
    })
}

/// Leases fork `index` and puts the checkpoint's state in it; returns the lease and the
/// workdir that holds the state. A lease whose state cannot be placed is released.
async fn place<'c>(
    ctx: &'c lease::Ctx,
    args: &ForkArgs,
    record: &Record,
    source: &Source,
    index: u32,
    interrupt: &Interrupt,
) -> CliResult<(Lease<'c>, String)> {
    let progress = Progress::start(args.json);
    let new = NewLease {
        slug: fork_slug(args, index),
        keep: true,
        keep_unready: false,
    };
    let acquired = Leases::new(ctx)
        .acquire(&new, &progress, interrupt, &|_| {})
        .await?;
    progress.finish();
    let lease = acquired.lease;
    let workdir = args.workdir.clone().unwrap_or_else(|| lease.workdir());
    let placed = match &source.archive {
        Some(archive) => {
            let mode = RestoreMode { clear: true };
            workspace_archive::restore(&lease.target(), archive, &workdir, mode)
                .await
                .map(drop)
                .map_err(archive_error)
        }
        None => relocate(&lease, &record.workdir, &workdir).await,
    };
    if let Err(e) = placed {
        release(&lease).await;
        return Err(e);
    }
    output::err(format!(
        "checkpoint forked id={} lease={} slug={}{} workdir={workdir}",
        record.id,
        lease.record.lease_id,
        lease.record.slug,
        match record.kind {
            Kind::AwsAmi => format!(" image={}", record.native.image_id),
            _ => String::new(),
        }
    ));
    Ok((lease, workdir))
}

/// On a lease booted from an image: the saved workdir (the source lease's path) moves to this
/// lease's, unless something is there already.
async fn relocate(lease: &Lease<'_>, saved: &str, workdir: &str) -> CliResult<()> {
    if saved.is_empty() || saved == workdir {
        return Ok(());
    }
    let (src, dst) = (sh_quote(saved), sh_quote(workdir));
    let script = format!(
        "if test -d {src} && ! test -e {dst}; then mkdir -p \"$(dirname {dst})\" && mv {src} {dst}; fi"
    );
    let doing = format!("move the checkpoint's workdir to {workdir}");
    native::run_script(lease, &script, &doing).await
}

/// Runs the command on fork `index` exactly as `crabbox run --id <fork> --keep -- …` would
/// (sync, run, output streamed), releases the fork afterwards with `--keep=false`, and prints
/// the fork's result line; returns its exit code. A run Crabbox itself could not carry out
/// (a failed sync, say) is reported here and counts with its own exit code, so the next forks
/// still run; so does a fork that could not be released after a command that succeeded.
async fn run_on(args: &ForkArgs, lease: &Lease<'_>, index: u32) -> u8 {
    let (id, slug) = (&lease.record.lease_id, &lease.record.slug);
    let values = Placeholders {
        index,
        total: args.count,
        lease: Some(id),
        slug: Some(slug),
    };
    let command = run::Args::on_lease(id, values.fill(&args.command));
    let mut exit = match Box::pin(run::run(command)).await {
        Ok(code) => code,
        Err(e) => {
            output::err(e.report().trim_end());
            e.code
        }
    };
    if !args.keep && !release(lease).await && exit == 0 {
        exit = ExitStatus::Remote.code();
    }
    output::err(format!(
        "fork {index}/{} lease={id} slug={slug} exit={exit}",
        args.count
    ));
    exit
}

/// Releases a fork, warning (with how to release it by hand) when it cannot be; whether it
/// was released.
async fn release(lease: &Lease<'_>) -> bool {
    let Err(e) = lease.stop().await else {
        return true;
    };
    let id = &lease.record.lease_id;
    output::warn(format!("could not release {id}: {}", e.report().trim_end()));
    output::err(format!(
        "hint: the lease is still held; release it with `crabbox stop {id}`"
    ));
    false
}

/// The forks made: JSON on stdout after all of them (`exitCode` when a command ran), or one
/// `forked …` line each.
fn report(args: &ForkArgs, record: &Record, forked: &[Forked]) {
    if args.json {
        let forks: Vec<_> = forked
            .iter()
            .map(|f| {
                let mut fork = json!({"lease": f.lease, "slug": f.slug, "workdir": f.workdir});
                if let Some(code) = f.exit {
                    fork["exitCode"] = json!(code);
                }
                fork
            })
            .collect();
        output::json(
            &json!({"checkpoint": record.id, "kind": record.kind.to_string(), "forks": forks}),
        );
        return;
    }
    for f in forked {
        output::out(format!(
            "forked lease={} slug={} workdir={}{}",
            f.lease,
            f.slug,
            f.workdir,
            f.exit
                .map(|code| format!(" exit={code}"))
                .unwrap_or_default()
        ));
    }
}

/// 0 when every command succeeded (or none ran); otherwise the exit code of the first fork
/// whose command failed, or 130 when Ctrl-C stopped the forks without a command failing.
fn exit_code(forked: &[Forked], interrupted: bool) -> u8 {
    forked
        .iter()
        .filter_map(|f| f.exit)
        .find(|&code| code != 0)
        .unwrap_or(if interrupted {
            ExitStatus::Interrupted.code()
        } else {
            0
        })
}

/// What the placeholders of one fork's command stand for; `None` leaves that placeholder as
/// written (a dry run has no lease yet).
struct Placeholders<'a> {
    index: u32,
    total: u32,
    lease: Option<&'a str>,
    slug: Option<&'a str>,
}

impl Placeholders<'_> {
    /// Every word of `command` with the placeholders filled in, in one pass (a value that
    /// happens to contain `{{…}}` is not filled in again); unknown `{{…}}` stay as written.
    fn fill(&self, command: &[String]) -> Vec<String> {
        command.iter().map(|word| self.fill_word(word)).collect()
    }

    fn fill_word(&self, word: &str) -> String {
        let (index, total) = (self.index.to_string(), self.total.to_string());
        let values = [
            ("{{index}}", Some(index.as_str())),
            ("{{total}}", Some(total.as_str())),
            ("{{lease}}", self.lease),
            ("{{slug}}", self.slug),
        ];
        let mut out = String::with_capacity(word.len());
        let mut rest = word;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            rest = &rest[start..];
            let known = values.iter().find_map(|(name, value)| {
                value
                    .filter(|_| rest.starts_with(name))
                    .map(|v| (v, name.len()))
            });
            let (text, len) = known.unwrap_or(("{", 1));
            out.push_str(text);
            rest = &rest[len..];
        }
        out.push_str(rest);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &[&str]) -> Vec<String> {
        text.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn placeholders_are_filled_in_every_word_once() {
        let values = Placeholders {
            index: 2,
            total: 3,
            lease: Some("cbx_0000000000ab"),
            slug: Some("fan-02"),
        };
        assert_eq!(
            values.fill(&words(&[
                "sh",
                "-c",
                "echo {{index}}/{{total}} {{slug}} {{lease}}; exit {{index}}",
                "{{{index}}}",
                "{{other}} {{index",
            ])),
            words(&[
                "sh",
                "-c",
                "echo 2/3 fan-02 cbx_0000000000ab; exit 2",
                "{2}",
                "{{other}} {{index",
            ])
        );
        let odd = Placeholders {
            slug: Some("{{index}}"),
            ..values
        };
        assert_eq!(odd.fill(&words(&["{{slug}}"])), words(&["{{index}}"]));
    }

    #[test]
    fn a_dry_run_leaves_what_is_not_known_yet() {
        let values = Placeholders {
            index: 1,
            total: 2,
            lease: None,
            slug: None,
        };
        assert_eq!(
            values.fill(&words(&["{{index}} {{lease}} {{slug}}"])),
            words(&["1 {{lease}} {{slug}}"])
        );
    }

    #[test]
    fn the_first_failing_fork_decides_the_exit_code() {
        let fork = |exit| Forked {
            lease: String::new(),
            slug: String::new(),
            workdir: String::new(),
            exit,
        };
        assert_eq!(exit_code(&[fork(None), fork(None)], false), 0);
        assert_eq!(exit_code(&[fork(Some(0)), fork(Some(0))], false), 0);
        assert_eq!(
            exit_code(&[fork(Some(0)), fork(Some(3)), fork(Some(1))], false),
            3
        );
        assert_eq!(exit_code(&[fork(Some(0))], true), 130);
        assert_eq!(exit_code(&[fork(Some(4))], true), 4);
    }
}
