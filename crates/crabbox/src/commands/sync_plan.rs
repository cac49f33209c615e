//! `crabbox sync-plan`: what a sync of this directory would send, without a lease: file count
//! and bytes, the dirty delta, the large-sync guardrail verdict, protected tracked files, the
//! exclude rules in force and the largest files and directories.

use std::time::Instant;

use crabbox_api::ExitStatus;
use crabbox_core::config::Config;
use crabbox_remote::sync::{
    self, FingerprintOptions, GuardrailCheck, GuardrailOutcome, Limits, LocalState, Manifest,
    ManifestOptions, RuleOrigin,
};
use crabbox_remote::watch::Source;
use serde::Serialize;

use crate::commands::run::sync_limits;
use crate::error::{CliError, CliResult};
use crate::lease;
use crate::output;
use crate::syncprep;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many of the largest files and directories to list.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// A file count and its size.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Size {
    files: u64,
    bytes: u64,
    human_bytes: String,
}

impl Size {
    fn new(files: usize, bytes: u64) -> Self {
        Self {
            files: files as u64,
            bytes,
            human_bytes: sync::human_bytes(bytes),
        }
    }
}

/// One of the largest files (`files` is absent) or directories.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Row {
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    files: Option<u64>,
    bytes: u64,
    human_bytes: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Examples<T> {
    count: usize,
    examples: Vec<T>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ProtectedExample {
    path: String,
    pattern: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct GuardrailLimits {
    warn_files: u64,
    warn_bytes: u64,
    fail_files: u64,
    fail_bytes: u64,
}

/// One threshold that was reached.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Reason {
    /// `warning` or `failed`.
    status: &'static str,
    /// `files` or `bytes`.
    metric: &'static str,
    actual: u64,
    limit: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Guardrail {
    scope: &'static str,
    files: u64,
    bytes: u64,
    human_bytes: String,
    limits: GuardrailLimits,
    allow_large: bool,
    /// `ok`, `warning` or `failed`.
    status: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    reasons: Vec<Reason>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    origin: &'static str,
    rule: String,
}

/// The `--json` document.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SyncPlan {
    root: String,
    git: bool,
    candidate: Size,
    dirty_delta: Size,
    deleted_tracked_paths: usize,
    protected_tracked_files: Examples<ProtectedExample>,
    skipped_paths: Examples<String>,
    guardrail: Guardrail,
    exclude_rules: Vec<Rule>,
    include: Vec<String>,
    top_files: Vec<Row>,
    top_dirs: Vec<Row>,
    fingerprint: String,
    fingerprint_ms: u64,
    /// `watcher` (served from the file watcher's cache: git did not run) or `computed`.
    fingerprint_source: &'static str,
    manifest_ms: u64,
}

/// Every threshold the measured size reached; with `allow_large`, fail thresholds only warn.
fn reasons(check: &GuardrailCheck, limits: &Limits) -> Vec<Reason> {
    let metrics = [
        ("files", check.files, limits.warn_files, limits.fail_files),
        ("bytes", check.bytes, limits.warn_bytes, limits.fail_bytes),
    ];
    let reached = |limit: u64, actual: u64| limit > 0 && actual >= limit;
    metrics
        .into_iter()
        .filter_map(|(metric, actual, warn, fail)| {
            let (status, limit) = if reached(fail, actual) {
                (
                    if limits.allow_large {
                        "warning"
                    } else {
                        "failed"
                    },
                    fail,
                )
            } else if reached(warn, actual) {
                ("warning", warn)
            } else {
                return None;
            };
            Some(Reason {
                status,
                metric,
                actual,
                limit,
            })
        })
        .collect()
}

/// What was measured, and how long it took.
struct Measured {
    scope: ManifestOptions,
    state: LocalState,
    manifest: Manifest,
    fingerprint_ms: u64,
    fingerprint_source: Source,
    manifest_ms: u64,
}

fn plan(root: &std::path::Path, config: &Config, measured: &Measured, limit: usize) -> SyncPlan {
    let Measured {
        scope,
        state,
        manifest,
        fingerprint_ms,
        fingerprint_source,
        manifest_ms,
    } = measured;
    let limits = sync_limits(config, false);
    let check = sync::check_guardrails(manifest, Some(&state.dirty), &limits);
    let status = match check.outcome {
        GuardrailOutcome::Ok => "ok",
        GuardrailOutcome::Warn { .. } => "warning",
        GuardrailOutcome::Fail { .. } => "failed",
    };
    SyncPlan {
        root: root.display().to_string(),
        git: manifest.is_git,
        candidate: Size::new(manifest.files.len(), manifest.total_bytes),
        dirty_delta: Size::new(state.dirty.paths.len(), state.dirty.bytes),
        deleted_tracked_paths: manifest.deleted.len(),
        protected_tracked_files: Examples {
            count: manifest.protected_tracked.len(),
            examples: manifest
                .protected_tracked
                .iter()
                .take(limit)
                .map(|p| ProtectedExample {
                    path: p.path.clone(),
                    pattern: p.pattern.clone(),
                })
                .collect(),
        },
        skipped_paths: Examples {
            count: manifest.skipped.len(),
            examples: manifest.skipped.iter().take(limit).cloned().collect(),
        },
        guardrail: Guardrail {
            scope: check.scope.as_str(),
            files: check.files,
            bytes: check.bytes,
            human_bytes: sync::human_bytes(check.bytes),
            limits: GuardrailLimits {
                warn_files: limits.warn_files,
                warn_bytes: limits.warn_bytes,
                fail_files: limits.fail_files,
                fail_bytes: limits.fail_bytes,
            },
            allow_large: limits.allow_large,
            status,
            reasons: reasons(&check, &limits),
        },
        exclude_rules: scope
            .excludes
            .rules()
            .iter()
            .map(|r| Rule {
                origin: r.origin().as_str(),
                rule: r.text().to_owned(),
            })
            .collect(),
        include: config.sync.include.clone(),
        top_files: sync::top_files(manifest, limit)
            .into_iter()
            .map(|f| Row {
                path: f.path.clone(),
                files: None,
                bytes: f.size,
                human_bytes: sync::human_bytes(f.size),
            })
            .collect(),
        top_dirs: sync::top_dirs(manifest, limit)
            .into_iter()
            .map(|d| Row {
                human_bytes: sync::human_bytes(d.bytes),
                path: d.dir,
                files: Some(d.files),
                bytes: d.bytes,
            })
            .collect(),
        fingerprint: state.fingerprint.clone(),
        fingerprint_ms: *fingerprint_ms,
        fingerprint_source: fingerprint_source.as_str(),
        manifest_ms: *manifest_ms,
    }
}

pub fn run(args: &Args) -> CliResult<u8> {
    if args.limit == 0 {
        return Err(CliError::msg(
            ExitStatus::Usage,
            "sync-plan --limit must be positive",
        ));
    }
    let ctx = lease::context(Vec::new())?;
    let config = ctx.settings.config();
    let scope = ctx.sync_scope()?;
    let build_error = |e: sync::SyncError| {
        CliError::new(
            ExitStatus::Sync,
            anyhow::Error::new(e).context("could not build the sync file list"),
        )
    };
    // The same fingerprint `crabbox run` computes, timed the same way.
    let started = Instant::now();
    let extra = syncprep::fingerprint_extra(config);
    let opts = FingerprintOptions {
        scope: &scope,
        delete: config.sync.delete,
        checksum: config.sync.checksum,
        extra: &extra,
    };
    let watch = crate::commands::watch::settings(&ctx);
    let (state, fingerprint_source) =
        crabbox_remote::watch::local_state(&ctx.repo_root, &opts, watch.as_ref())
            .map_err(build_error)?;
    let fingerprint_ms = started.elapsed().as_millis() as u64;
    let started = Instant::now();
    let manifest = sync::build_manifest(&ctx.repo_root, &scope).map_err(build_error)?;
    let manifest_ms = started.elapsed().as_millis() as u64;

    let measured = Measured {
        scope,
        state,
        manifest,
        fingerprint_ms,
        fingerprint_source,
        manifest_ms,
    };
    let plan = plan(&ctx.repo_root, config, &measured, args.limit);
    if args.json {
        output::json(&plan);
    } else {
        print_human(&plan, &measured.scope);
    }
    Ok(0)
}

fn print_human(plan: &SyncPlan, scope: &sync::ManifestOptions) {
    let size = |s: &Size| format!("{} files, {}", s.files, s.human_bytes);
    output::out(format!("sync candidate: {}", size(&plan.candidate)));
    if plan.dirty_delta.files > 0 {
        output::out(format!("dirty delta: {}", size(&plan.dirty_delta)));
    }
    if plan.deleted_tracked_paths > 0 {
        output::out(format!(
            "deleted tracked paths: {}",
            plan.deleted_tracked_paths
        ));
    }
    let g = &plan.guardrail;
    let reasons: Vec<String> = g
        .reasons
        .iter()
        .map(|r| {
            let (actual, limit) = if r.metric == "bytes" {
                (sync::human_bytes(r.actual), sync::human_bytes(r.limit))
            } else {
                (r.actual.to_string(), r.limit.to_string())
            };
            format!("{} {actual} >= {limit} {}", r.status, r.metric)
        })
        .collect();
    output::out(format!(
        "guardrail: {} ({} {} files, {}{}{})",
        g.status,
        g.scope,
        g.files,
        g.human_bytes,
        if reasons.is_empty() { "" } else { "; " },
        reasons.join(", ")
    ));
    if plan.protected_tracked_files.count > 0 {
        output::out(format!(
            "protected tracked files: {} (kept although a built-in exclude matches)",
            plan.protected_tracked_files.count
        ));
        for p in &plan.protected_tracked_files.examples {
            output::out(format!("  {} ({})", p.path, p.pattern));
        }
    }
    if plan.skipped_paths.count > 0 {
        output::out(format!(
            "not syncable (not UTF-8 or outside the root): {}",
            plan.skipped_paths.count
        ));
        for p in &plan.skipped_paths.examples {
            output::out(format!("  {p}"));
        }
    }
    let user_rules: Vec<String> = scope
        .excludes
        .rules()
        .iter()
        .filter(|r| matches!(r.origin(), RuleOrigin::Config | RuleOrigin::Crabboxignore))
        .map(ToString::to_string)
        .collect();
    output::out(format!(
        "exclude rules: {} ({} your own; `--json` lists all)",
        plan.exclude_rules.len(),
        user_rules.len()
    ));
    for rule in &user_rules {
        output::out(format!("  {rule}"));
    }
    if !plan.include.is_empty() {
        output::out(format!("include only: {}", plan.include.join(", ")));
    }
    output::out("top files:");
    for row in &plan.top_files {
        output::out(format!("  {:<10} {}", row.human_bytes, row.path));
    }
    output::out("top dirs:");
    for row in &plan.top_dirs {
        output::out(format!(
            "  {:<10} {} ({} files)",
            row.human_bytes,
            row.path,
            row.files.unwrap_or_default()
        ));
    }
    let source = if plan.fingerprint_source == Source::Watcher.as_str() {
        " (file watcher: nothing changed)"
    } else {
        ""
    };
    output::out(format!(
        "fingerprint: {} ms{source}, manifest: {} ms",
        plan.fingerprint_ms, plan.manifest_ms
    ));
}
