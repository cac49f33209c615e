//! `crabbox checkpoint list|inspect|delete|prune` (spec providers.md §3.5, §3.8): the local
//! checkpoint records, whether their archives are intact, and their deletion: a native
//! checkpoint's provider resource goes first and its record only after that succeeded. The
//! commands that touch a lease are in `checkpoint_lease` (create, restore) and
//! `checkpoint_fork`.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::checkpoint::record::is_valid_id;
use crate::checkpoint::{self, Audit, KindClass, PruneFilter, Record, Store, native};
use crate::error::{CliError, CliResult};
use crate::output;

#[derive(Debug, clap::Subcommand)]
pub enum CheckpointCommand {
    /// Save a lease's workdir (archive), its instance's image (native) or its recipe.
    Create(Box<super::checkpoint_lease::CreateArgs>),
    /// Lease new runners that start from a checkpoint (and run a command on each).
    Fork(Box<super::checkpoint_fork::ForkArgs>),
    /// Put an archived workdir back into a lease (replacing it unless --clear=false).
    Restore(super::checkpoint_lease::RestoreArgs),
    /// The checkpoints recorded on this machine, newest first.
    List(ListArgs),
    /// Every detail of one checkpoint.
    Inspect(InspectArgs),
    /// Delete a checkpoint: its provider resource first, then its local record.
    Delete(DeleteArgs),
    /// Delete the checkpoints created, or last used, longer ago than an age.
    Prune(PruneArgs),
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Check that each archive is present with its recorded size.
    #[arg(long)]
    pub verify: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The checkpoint id (chk_…).
    pub id: String,
    /// Check that its archive is present with its recorded size.
    #[arg(long)]
    pub verify: bool,
    /// Print JSON (the record itself).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// The checkpoint id (chk_…).
    pub id: String,
    /// Forget the local record only; a provider image or snapshot is left alone.
    #[arg(long = "local-only")]
    pub local_only: bool,
    /// Say what would be deleted, and delete nothing.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("age")
        .args(["older_than", "unused_for"])
        .required(true)
        .multiple(true)
))]
pub struct PruneArgs {
    /// Checkpoints created longer ago than this (30m, 12h, 7d).
    #[arg(long = "older-than", value_name = "AGE", value_parser = checkpoint::parse_age)]
    pub older_than: Option<Duration>,
    /// Checkpoints not forked or restored for this long (30m, 12h, 7d).
    #[arg(long = "unused-for", value_name = "AGE", value_parser = checkpoint::parse_age)]
    pub unused_for: Option<Duration>,
    /// Only checkpoints of this kind.
    #[arg(long, value_enum)]
    pub kind: Option<KindClass>,
    /// Forget native checkpoints' records without deleting their provider resources.
    #[arg(long = "local-only")]
    pub local_only: bool,
    /// Say what would be deleted, and delete nothing.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(cmd: CheckpointCommand) -> CliResult<u8> {
    let store = Store::open();
    match cmd {
        CheckpointCommand::Create(args) => super::checkpoint_lease::create(*args).await,
        CheckpointCommand::Fork(args) => super::checkpoint_fork::fork(*args).await,
        CheckpointCommand::Restore(args) => super::checkpoint_lease::restore(args).await,
        CheckpointCommand::List(args) => list(&store, &args),
        CheckpointCommand::Inspect(args) => inspect(&store, &args),
        CheckpointCommand::Delete(args) => delete(&store, &args).await,
        CheckpointCommand::Prune(args) => prune(&store, &args).await,
    }
}

/// A record with its verification (`--verify --json`).
#[derive(Debug, Serialize)]
struct Verified<'a> {
    record: &'a Record,
    #[serde(flatten)]
    audit: Audit,
}

/// One deleted (or, in a dry run, deletable) checkpoint.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Deleted {
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// Absent when the record could not be read (`delete --local-only` of a broken one).
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_used_at: Option<String>,
    /// The provider resource deleted with it (absent when none was, or there is none).
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<String>,
}

impl Deleted {
    fn of(record: &Record, local_only: bool) -> Self {
        let nonempty = |s: &str| Some(s.to_owned()).filter(|s| !s.is_empty());
        Deleted {
            id: record.id.clone(),
            name: nonempty(&record.name),
            kind: Some(record.kind.to_string()),
            created_at: Some(record.created_at.clone()),
            last_used_at: Some(record.last_used_at.clone()),
            resource: provider_resource(record, local_only).map(str::to_owned),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DeleteReport {
    deleted: Vec<Deleted>,
    dry_run: bool,
}

/// The provider resource deleting `record` deletes too: a native kind's recorded resource,
/// unless only the record is to go.
fn provider_resource(record: &Record, local_only: bool) -> Option<&str> {
    let id = record.native.resource_id();
    (record.kind.is_native() && !local_only && !id.is_empty()).then_some(id)
}

/// Deletes `record`: its provider resource first, then, only if that worked, its directory.
async fn delete_record(store: &Store, record: &Record, local_only: bool) -> CliResult<()> {
    if provider_resource(record, local_only).is_some() {
        native::delete(record).await?;
    }
    store.remove(&record.id)
}

fn dash(s: &str) -> &str {
    if s.trim().is_empty() { "-" } else { s }
}

/// `1536` → `1.5 KiB`.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn provider_of(record: &Record) -> &str {
    dash(if record.provider.is_empty() {
        &record.native.provider
    } else {
        &record.provider
    })
}

fn list(store: &Store, args: &ListArgs) -> CliResult<u8> {
    let records = store.list()?;
    if args.json {
        if args.verify {
            let audits: Vec<Verified> = records
                .iter()
                .map(|record| Verified {
                    record,
                    audit: checkpoint::verify(store, record),
                })
                .collect();
            output::json(&audits);
        } else {
            output::json(&records);
        }
        return Ok(0);
    }
    if records.is_empty() {
        output::err("no checkpoints; `crabbox checkpoint create --id <lease>` saves one");
        return Ok(0);
    }
    let mut header = vec![
        "ID",
        "NAME",
        "KIND",
        "PROVIDER",
        "LEASE",
        "CREATED",
        "LAST USED",
        "SIZE",
    ];
    if args.verify {
        header.push("VERIFY");
    }
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            let size = if r.kind.is_archive() {
                human_bytes(r.archive_bytes)
            } else {
                "-".to_owned()
            };
            let mut row = vec![
                r.id.clone(),
                dash(&r.name).to_owned(),
                r.kind.to_string(),
                provider_of(r).to_owned(),
                dash(&r.lease_id).to_owned(),
                dash(&r.created_at).to_owned(),
                dash(&r.last_used_at).to_owned(),
                size,
            ];
            if args.verify {
                row.push(checkpoint::verify(store, r).summary());
            }
            row
        })
        .collect();
    print_table(&header, &rows);
    Ok(0)
}

/// Left-aligned columns two spaces apart; the last column is not padded.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        let mut text = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            if i == last {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<w$}  ", w = widths[i]);
            }
        }
        output::out(text.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

fn inspect(store: &Store, args: &InspectArgs) -> CliResult<u8> {
    let record = store.get(&args.id)?;
    let audit = args.verify.then(|| checkpoint::verify(store, &record));
    if args.json {
        match audit {
            Some(audit) => output::json(&Verified {
                record: &record,
                audit,
            }),
            None => output::json(&record),
        }
        return Ok(0);
    }
    let archive = store
        .archive_file(&record)
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let mut lines = vec![
        ("id", record.id.clone()),
        ("kind", record.kind.to_string()),
        ("name", record.name.clone()),
        ("created", record.created_at.clone()),
        ("last_used", record.last_used_at.clone()),
        ("crabbox_version", record.crabbox_version.clone()),
        ("provider", provider_of(&record).to_owned()),
        ("lease", record.lease_id.clone()),
        ("slug", record.slug.clone()),
        ("target", record.target_os.clone()),
        ("windows_mode", record.windows_mode.clone()),
        ("desktop", record.desktop.to_string()),
        ("server_type", record.server_type.clone()),
        ("host_id", record.host_id.clone()),
        ("repo", record.repo.name.clone()),
        ("repo_root", record.repo.root.clone()),
        ("head", record.repo.head.clone()),
        ("base_ref", record.repo.base_ref.clone()),
        ("workdir", record.workdir.clone()),
        ("archive", archive),
    ];
    if record.kind.is_archive() {
        lines.push(("bytes", record.archive_bytes.to_string()));
    }
    if record.kind.is_native() {
        let n = &record.native;
        lines.extend([
            ("resource", n.resource_id().to_owned()),
            ("resource_name", n.name.clone()),
            ("resource_state", n.state.clone()),
            ("resource_region", n.region.clone()),
            ("resource_path", n.resource.clone()),
            ("account", n.account_id.clone()),
            ("project", n.project.clone()),
            ("architecture", n.architecture.clone()),
            ("snapshots", n.snapshot_ids.join(",")),
            ("strategy", n.strategy.clone()),
            ("direct", n.direct.to_string()),
            ("no_reboot", n.no_reboot.to_string()),
        ]);
    }
    for (key, value) in lines {
        output::out(format!("{key}={}", dash(&value)));
    }
    for (key, value) in &record.native.metadata {
        output::out(format!("metadata.{key}={}", dash(value)));
    }
    if let Some(audit) = audit {
        output::out(format!("local_state={}", audit.local_state));
        output::out(format!("provider_state={}", audit.provider_state));
        output::out(format!("next_action={}", audit.next_action));
        if let Some(error) = &audit.error {
            output::out(format!("verify_error={error}"));
        }
    }
    Ok(0)
}

async fn delete(store: &Store, args: &DeleteArgs) -> CliResult<u8> {
    let record = match store.get(&args.id) {
        Ok(record) => record,
        // An unreadable record can still be forgotten: that is what its error's hint offers.
        Err(err)
            if args.local_only
                && is_valid_id(args.id.trim())
                && store.record_dir(args.id.trim()).is_dir() =>
        {
            return forget_unreadable(store, args.id.trim(), args, &err);
        }
        Err(err) => return Err(err),
    };
    let deleted = Deleted::of(&record, args.local_only);
    if args.dry_run {
        if args.json {
            output::json(&DeleteReport {
                deleted: vec![deleted],
                dry_run: true,
            });
        } else {
            output::out(format!(
                "would delete checkpoint id={} kind={} provider={} resource={} local_only={}",
                record.id,
                record.kind,
                provider_of(&record),
                dash(record.native.resource_id()),
                args.local_only
            ));
        }
        return Ok(0);
    }
    delete_record(store, &record, args.local_only).await?;
    if args.json {
        output::json(&DeleteReport {
            deleted: vec![deleted],
            dry_run: false,
        });
    } else {
        output::out(format!("checkpoint deleted id={}", record.id));
    }
    Ok(0)
}

/// `delete --local-only` of a checkpoint whose record cannot be read: its directory goes.
fn forget_unreadable(store: &Store, id: &str, args: &DeleteArgs, err: &CliError) -> CliResult<u8> {
    output::warn(format!("{:#}", err.error));
    let deleted = Deleted {
        id: id.to_owned(),
        name: None,
        kind: None,
        created_at: None,
        last_used_at: None,
        resource: None,
    };
    if !args.dry_run {
        store.remove(id)?;
    }
    if args.json {
        output::json(&DeleteReport {
            deleted: vec![deleted],
            dry_run: args.dry_run,
        });
    } else if args.dry_run {
        output::out(format!(
            "would delete checkpoint id={id} kind=- provider=- resource=- local_only=true"
        ));
    } else {
        output::out(format!("checkpoint deleted id={id}"));
    }
    Ok(0)
}

async fn prune(store: &Store, args: &PruneArgs) -> CliResult<u8> {
    let filter = PruneFilter {
        older_than: args.older_than,
        unused_for: args.unused_for,
        kind: args.kind,
    };
    let (chosen, unjudged) = filter.select(store.list()?, SystemTime::now());
    for skipped in unjudged {
        output::warn(format!(
            "not pruning checkpoint {}: {}",
            skipped.id, skipped.reason
        ));
    }
    let mut deleted = Vec::new();
    let mut failed: Option<(usize, CliError)> = None;
    for record in &chosen {
        let line = format!(
            "id={} kind={} created={} last_used={}",
            record.id, record.kind, record.created_at, record.last_used_at
        );
        if !args.dry_run
            && let Err(err) = delete_record(store, record, args.local_only).await
        {
            output::warn(format!(
                "could not prune checkpoint {}: {:#}",
                record.id, err.error
            ));
            failed.get_or_insert((0, err)).0 += 1;
            continue;
        }
        if !args.json {
            let verb = if args.dry_run {
                "would delete"
            } else {
                "checkpoint pruned"
            };
            output::out(format!("{verb} {line}"));
        }
        deleted.push(Deleted::of(record, args.local_only));
    }
    if args.json {
        output::json(&DeleteReport {
            deleted,
            dry_run: args.dry_run,
        });
    } else if chosen.is_empty() {
        output::err("no checkpoints matched the prune filters");
    }
    match failed {
        None => Ok(0),
        Some((count, first)) => Err(CliError {
            code: first.code,
            error: anyhow::anyhow!(
                "{count} of {} matching checkpoints could not be pruned",
                chosen.len()
            ),
            hint: first.hint,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_a_person_would_write_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MiB");
    }
}
