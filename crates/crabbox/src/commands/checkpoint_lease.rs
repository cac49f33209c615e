//! `crabbox checkpoint create | restore` (spec providers.md §3.2, §3.4, §3.6): the checkpoint
//! commands that touch an existing lease. `create` saves a lease's workdir as a record under
//! the state directory: a `workspace.tar.zst` streamed from the runner, an AMI of its instance
//! (`aws-ami`), or only the recipe (metadata). `restore` puts an archive back into a lease's
//! workdir. `fork`, which leases new runners from a checkpoint, is in `checkpoint_fork`.

use std::time::{Duration, SystemTime};

use crabbox_api::ExitStatus;
use crabbox_remote::workspace_archive::{self, ArchiveError, RestoreMode};
use serde_json::json;

use crate::checkpoint::record::{Kind, Record, Repo};
use crate::checkpoint::store::ARCHIVE_FILE;
use crate::checkpoint::{Store, native};
use crate::error::{CliError, CliResult};
use crate::lease::{self, Lease, Leases};
use crate::output::{self, Progress};

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The lease to checkpoint (id or slug).
    #[arg(long)]
    pub id: String,
    /// A name for it (also the image name of a native checkpoint).
    #[arg(long)]
    pub name: Option<String>,
    /// auto (default), archive, native (ami, image) or recipe.
    #[arg(long, default_value = "auto")]
    pub mode: String,
    /// The native strategy: auto, image (ami) or disk-snapshot.
    #[arg(long, default_value = "auto")]
    pub strategy: String,
    /// The remote directory to save (default: this repository's workdir on the lease).
    #[arg(long)]
    pub workdir: Option<String>,
    /// Record only what the lease is (class, provider, repository): nothing to restore.
    #[arg(long = "recipe-only")]
    pub recipe_only: bool,
    /// Wait until a native image is available.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub wait: bool,
    #[arg(long = "wait-timeout", default_value = "45m")]
    pub wait_timeout: String,
    /// Image the instance without rebooting it.
    #[arg(long = "no-reboot", default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub no_reboot: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The checkpoint (chk_…).
    pub checkpoint: String,
    /// The lease to restore into (id or slug).
    #[arg(long)]
    pub id: String,
    /// The remote directory to restore into (default: this repository's workdir on the lease).
    #[arg(long)]
    pub workdir: Option<String>,
    /// Replace the workdir (default); `--clear=false` merges the archive into it.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub clear: bool,
    /// Check the archive and say what would change; change nothing.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    #[arg(long)]
    pub json: bool,
}

/// `checkpoint create`.
pub async fn create(args: CreateArgs) -> CliResult<u8> {
    let kind = choose_kind(&args)?;
    let ctx = lease::context(Vec::new())?;
    let lease = Leases::new(&ctx).resolve(&args.id).await?;
    lease::posix_only("checkpoint create", &lease.record)?;
    let workdir = args.workdir.clone().unwrap_or_else(|| lease.workdir());
    let mut record = Record::new(kind.clone(), SystemTime::now());
    describe_source(&mut record, &lease, &ctx, &workdir, args.name.as_deref()).await;
    let store = Store::open();
    let reservation = store.reserve(&record)?;
    match kind {
        Kind::WorkspaceArchive => {
            let dest = reservation.dir().join(ARCHIVE_FILE);
            let progress = Progress::start(args.json);
            progress.phase(format!("archiving {workdir} on {}", lease.record.lease_id));
            let stats = workspace_archive::create(&lease.target(), &workdir, &dest)
                .await
                .map_err(archive_error)?;
            progress.finish();
            record.archive_path = ARCHIVE_FILE.into();
            record.archive_bytes = stats.bytes;
        }
        Kind::AwsAmi => {
            let wait = args
                .wait
                .then(|| parse_wait(&args.wait_timeout))
                .transpose()?;
            let made = native::create(&lease, &mut record, args.no_reboot, wait).await;
            if let Err(e) = made {
                // An image the provider made is kept on record, so it can be found and deleted.
                if !record.native.image_id.is_empty() {
                    reservation.write(&record)?;
                    reservation.commit();
                }
                return Err(e);
            }
        }
        _ => {}
    }
    reservation.write(&record)?;
    reservation.commit();
    if args.json {
        output::json(&record);
    } else {
        output::out(format!(
            "checkpoint created id={} kind={} name={} lease={} workdir={}{}",
            record.id,
            record.kind,
            dash(&record.name),
            record.lease_id,
            record.workdir,
            match kind {
                Kind::WorkspaceArchive => format!(" bytes={}", record.archive_bytes),
                Kind::AwsAmi => format!(" image={}", record.native.image_id),
                _ => String::new(),
            }
        ));
    }
    Ok(0)
}

/// The kind `--mode`, `--strategy` and `--recipe-only` ask for (spec §3.2). In this build the
/// native kind is `aws-ami`, made when asked for (`--mode native|ami|image` or an explicit
/// `--strategy image`); `auto` is otherwise the workspace archive, which every POSIX lease
/// can make. A disk-snapshot strategy is not built.
fn choose_kind(args: &CreateArgs) -> CliResult<Kind> {
    if args.recipe_only {
        return Ok(Kind::Recipe);
    }
    let strategy = match args.strategy.as_str() {
        "auto" => None,
        "image" | "ami" | "machine-image" | "managed-image" => Some("image"),
        "disk-snapshot" | "snapshot" | "disk" | "disk_snapshot" => Some("disk"),
        other => {
            return Err(CliError::msg(
                ExitStatus::Usage,
                format!("unknown --strategy {other:?} (auto, image or disk-snapshot)"),
            ));
        }
    };
    if strategy == Some("disk") {
        return Err(CliError::msg(
            ExitStatus::Usage,
            "the disk-snapshot strategy is not built; use --strategy image (aws-ami) or --mode \
             archive",
        ));
    }
    match args.mode.as_str() {
        "auto" if strategy.is_some() => Ok(Kind::AwsAmi),
        "auto" | "archive" | "workspace" | "workspace-archive" => Ok(Kind::WorkspaceArchive),
        "native" | "provider-native" | "vm" | "ami" | "image" => Ok(Kind::AwsAmi),
        "recipe" => Ok(Kind::Recipe),
        "snapshot" | "disk-snapshot" | "disk" => Err(CliError::msg(
            ExitStatus::Usage,
            "disk-snapshot checkpoints are not built; use --mode native (an image) or archive",
        )),
        other => Err(CliError::msg(
            ExitStatus::Usage,
            format!("unknown --mode {other:?} (auto, archive, native or recipe)"),
        )),
    }
}

/// Where the checkpoint comes from: the lease, its workdir, this repository.
async fn describe_source(
    record: &mut Record,
    lease: &Lease<'_>,
    ctx: &lease::Ctx,
    workdir: &str,
    name: Option<&str>,
) {
    let source = &lease.record;
    name.unwrap_or_default().clone_into(&mut record.name);
    record.provider.clone_from(&source.provider);
    record.lease_id.clone_from(&source.lease_id);
    record.slug.clone_from(&source.slug);
    record.server_type.clone_from(&source.server_type);
    record.target_os = source
        .labels
        .get("target")
        .cloned()
        .unwrap_or_else(|| "linux".into());
    record.desktop = source.labels.get("desktop").is_some_and(|d| d == "true");
    workdir.clone_into(&mut record.workdir);
    let git = |args: &'static [&'static str]| {
        let root = ctx.repo_root.clone();
        async move {
            crabbox_remote::process::Cmd::new("git")
                .current_dir(root)
                .args(args)
                .capture(None)
                .await
                .ok()
                .filter(|out| out.code == 0)
                .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
                .unwrap_or_default()
        }
    };
    record.repo = Repo {
        root: ctx.repo_root.display().to_string(),
        name: ctx.repo_name.clone(),
        remote_url: git(&["remote", "get-url", "origin"]).await,
        head: git(&["rev-parse", "HEAD"]).await,
        ..Repo::default()
    };
}

/// `checkpoint restore`: only archives restore in place; native checkpoints fork.
pub async fn restore(args: RestoreArgs) -> CliResult<u8> {
    let store = Store::open();
    let record = store.get(&args.checkpoint)?;
    let archive = archive_of(&store, &record)?;
    let ctx = lease::context(Vec::new())?;
    let lease = Leases::new(&ctx).resolve(&args.id).await?;
    lease::posix_only("checkpoint restore", &lease.record)?;
    let workdir = args.workdir.clone().unwrap_or_else(|| lease.workdir());
    let mode = RestoreMode { clear: args.clear };
    let target = lease.target();
    if args.dry_run {
        let plan = workspace_archive::plan(&target, &archive, &workdir, mode)
            .await
            .map_err(archive_error)?;
        if args.json {
            output::json(&json!({
                "dryRun": true, "checkpoint": record.id, "lease": lease.record.lease_id,
                "workdir": plan.workdir, "clear": plan.clear, "workdirExists": plan.workdir_exists,
                "entries": plan.check.entries,
            }));
        } else {
            output::out(format!(
                "would restore checkpoint {} into {}:{} entries={} clear={} (dry run: nothing changed)",
                record.id, lease.record.lease_id, plan.workdir, plan.check.entries, plan.clear
            ));
        }
        return Ok(0);
    }
    let stats = workspace_archive::restore(&target, &archive, &workdir, mode)
        .await
        .map_err(archive_error)?;
    store.touch_used(&record.id)?;
    if args.json {
        output::json(&json!({
            "checkpoint": record.id, "lease": lease.record.lease_id, "workdir": stats.workdir,
            "clear": stats.clear, "entries": stats.entries, "bytesSent": stats.bytes_sent,
        }));
    } else {
        output::out(format!(
            "checkpoint restored id={} lease={} workdir={} entries={} clear={}",
            record.id, lease.record.lease_id, stats.workdir, stats.entries, stats.clear
        ));
    }
    Ok(0)
}

/// The archive a restore or an archive fork sends; other kinds say what to do instead.
pub(super) fn archive_of(store: &Store, record: &Record) -> CliResult<std::path::PathBuf> {
    match &record.kind {
        Kind::WorkspaceArchive => {}
        Kind::Recipe => {
            return Err(CliError::msg(
                ExitStatus::Usage,
                format!(
                    "checkpoint {} is a recipe: it saved no state to restore",
                    record.id
                ),
            ));
        }
        kind => {
            return Err(CliError::msg(
                ExitStatus::Usage,
                format!(
                    "checkpoint {} is a {kind}: it restores by forking a new lease",
                    record.id
                ),
            )
            .hint(format!("crabbox checkpoint fork {}", record.id)));
        }
    }
    let path = store.archive_file(record).ok_or_else(|| {
        CliError::msg(
            ExitStatus::NotFound,
            format!("checkpoint {} names no archive file", record.id),
        )
    })?;
    if !path.is_file() {
        return Err(CliError::msg(
            ExitStatus::NotFound,
            format!(
                "checkpoint {}'s archive {} is missing",
                record.id,
                path.display()
            ),
        )
        .hint(format!(
            "forget it with `crabbox checkpoint delete {}`",
            record.id
        )));
    }
    Ok(path)
}

fn parse_wait(text: &str) -> CliResult<Duration> {
    crabbox_core::duration::parse_duration(text)
        .map_err(|e| CliError::msg(ExitStatus::Usage, format!("invalid --wait-timeout: {e}")))
}

/// An archive error as the CLI reports it: a refused or invalid archive is the input's fault
/// (exit 2, nothing changed), a missing one exit 4, the runner's failure exit 8.
pub(super) fn archive_error(e: ArchiveError) -> CliError {
    let status = match &e {
        ArchiveError::Refused { .. }
        | ArchiveError::Invalid { .. }
        | ArchiveError::InvalidWorkdir(_) => ExitStatus::Usage,
        ArchiveError::Missing(_) | ArchiveError::MissingWorkdir { .. } => ExitStatus::NotFound,
        _ => ExitStatus::Remote,
    };
    CliError::new(status, anyhow::Error::new(e))
}

fn dash(text: &str) -> &str {
    if text.is_empty() { "-" } else { text }
}
