//! Lease plumbing shared by the commands: the command context (config, repo, state), acquiring
//! a new lease, resolving `--id`, the SSH target for a lease, and release (the JSON view is in
//! `lease_view`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crabbox_api::coord::Lease;
use crabbox_api::{ExitStatus, LeaseId};
use crabbox_core::slug;
use crabbox_providers::static_ssh::StaticHost;
use crabbox_providers::{
    AcquireRequest, ClaimStore, Health, LeaseRecord, Provider, ProviderConfig,
};
use crabbox_remote::ssh::{HostKeyPolicy, SshTarget, wait_ready};
use crabbox_remote::{keys, sync};

use crate::brokered;
use crate::cli::LeaseFlags;
use crate::error::{CliError, CliResult, WithStatus};
use crate::interrupt::Interrupt;
use crate::output::{self, Progress};
use crate::paths;
use crate::settings::Settings;
use crabbox_core::config::FlagValue;

pub use crate::lease_view::{claim_view, view};

/// Everything a command needs to know about where it runs.
#[derive(Debug)]
pub struct Ctx {
    pub settings: Settings,
    pub repo_root: PathBuf,
    pub repo_name: String,
    pub claims: ClaimStore,
    pub state_dir: PathBuf,
    /// The coordinator, when one is configured (brokered mode).
    pub broker: Option<crabbox_client::Client>,
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn git_toplevel(cwd: &Path) -> Option<PathBuf> {
    let out = std::process::Command::new("git")
        .current_dir(cwd)
        .args(["rev-parse", "--show-toplevel"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Builds the context: finds the repo, loads config, prints config warnings.
pub fn context(flags: Vec<FlagValue>) -> CliResult<Ctx> {
    let cwd = std::env::current_dir().status(ExitStatus::Usage)?;
    let git_root = git_toplevel(&cwd);
    let settings = Settings::load(&cwd, git_root.as_deref(), flags)?;
    for warning in settings.warnings() {
        output::warn(warning);
    }
    let repo_root = git_root.unwrap_or(cwd);
    let repo_name = repo_root
        .file_name()
        .map_or_else(|| "workspace".into(), |n| n.to_string_lossy().into_owned());
    let state_dir = paths::state_dir();
    let broker = crate::broker::client(&settings)?;
    Ok(Ctx {
        broker,
        claims: ClaimStore::new(&state_dir),
        settings,
        repo_root,
        repo_name,
        state_dir,
    })
}

/// Flags that override config keys.
pub fn lease_flag_values(flags: &LeaseFlags) -> Vec<FlagValue> {
    let mut out = Vec::new();
    let mut add = |key: &str, flag: &str, value: &Option<String>| {
        if let Some(v) = value {
            out.push(FlagValue::new(key, flag, v.clone()));
        }
    };
    add("provider", "--provider", &flags.provider);
    add("class", "--class", &flags.class);
    add("ttl", "--ttl", &flags.ttl);
    add("idleTimeout", "--idle-timeout", &flags.idle_timeout);
    add("static.host", "--static-host", &flags.static_host);
    add("static.user", "--static-user", &flags.static_user);
    add("static.port", "--static-port", &flags.static_port);
    add(
        "static.workRoot",
        "--static-work-root",
        &flags.static_work_root,
    );
    out
}

impl Ctx {
    pub fn provider_named(&self, name: &str) -> CliResult<Arc<dyn Provider>> {
        let cfg = self.settings.config();
        let fixed = &cfg.static_host;
        let static_host = StaticHost {
            id: fixed.id.clone(),
            name: fixed.name.clone(),
            host: fixed.host.clone(),
            user: fixed.user.clone().unwrap_or_else(|| cfg.ssh.user.clone()),
            port: fixed.port.unwrap_or(cfg.ssh.port),
            fallback_ports: cfg.ssh.fallback_ports.clone(),
            work_root: fixed
                .work_root
                .clone()
                .unwrap_or_else(|| cfg.work_root.clone()),
            key: Some(expand_home(&cfg.ssh.key)),
        };
        crabbox_providers::provider_for(name, &ProviderConfig { state_dir: self.state_dir.clone(), static_host })
            .status(ExitStatus::Usage)
            .map_err(|e| e.hint("set provider: local or provider: ssh (with static.host) in crabbox.yaml, or pass --provider"))
    }

    /// The provider new leases come from: the coordinator when one is configured (asking it
    /// for the provider named by flag, env or config, else its default), else the configured
    /// direct provider.
    pub fn provider(&self) -> CliResult<Arc<dyn Provider>> {
        if let Some(client) = &self.broker {
            return Ok(Arc::new(crate::broker::BrokerProvider::new(
                client.clone(),
                explicit_provider(self),
            )));
        }
        self.provider_named(&self.settings.config().provider.clone())
    }

    /// The provider that owns an existing lease. A brokered lease is served by the coordinator
    /// that created it, and only when that is the configured one (see [`brokered::client_for`]).
    pub fn provider_for(&self, record: &LeaseRecord) -> CliResult<Arc<dyn Provider>> {
        if crate::broker::is_brokered(record) {
            let client = brokered::client_for(self, record)?;
            return Ok(Arc::new(crate::broker::BrokerProvider::new(client, None)));
        }
        self.provider_named(&record.provider)
    }

    /// Remote workdir for this repo on a lease.
    pub fn workdir(&self, lease: &LeaseRecord) -> String {
        format!(
            "{}/{}/{}",
            lease.work_root.trim_end_matches('/'),
            lease.lease_id,
            self.repo_name
        )
    }
}

/// The provider to ask the coordinator for: the one named by flag, env or config, else `None`
/// (the coordinator's default).
/// The provider a user chose (flag, environment or config file), not the built-in default.
pub fn explicit_provider(ctx: &Ctx) -> Option<String> {
    (ctx.settings.origin("provider") != "default").then(|| ctx.settings.config().provider.clone())
}

fn expand_home(path: &str) -> String {
    match path.strip_prefix("~/") {
        Some(rest) => format!("{}/{rest}", std::env::var("HOME").unwrap_or_default()),
        None => path.to_owned(),
    }
}

/// The SSH target for a lease.
pub fn ssh_target(lease: &LeaseRecord) -> SshTarget {
    let key_dir = paths::lease_key_dir(&lease.lease_id);
    let known_hosts = key_dir.join("known_hosts");
    let key = match &lease.ssh_key {
        Some(key) => Some(PathBuf::from(expand_home(key))),
        None => Some(key_dir.join("id_ed25519")),
    };
    SshTarget {
        user: lease.ssh_user.clone(),
        host: lease.ssh_host.clone(),
        port: lease.ssh_port,
        fallback_ports: lease.ssh_fallback_ports.clone(),
        key,
        known_hosts,
        host_keys: HostKeyPolicy::AcceptNew,
        control_dir: Some(paths::control_dir()),
    }
}

/// Acquires a new lease and waits until it is ready. The claim is written before waiting so a
/// crash leaves something `list`/`cleanup` can see.
///
/// A first Ctrl-C/SIGTERM (`interrupt`) stops it with exit 130: a brokered create in flight is
/// canceled on the coordinator; a lease already made is released (even with `keep`: nobody has
/// it yet) and its claim and key forgotten.
pub async fn acquire(
    ctx: &Ctx,
    flags: &LeaseFlags,
    keep: bool,
    progress: &Progress,
    interrupt: &Interrupt,
    on_created: &(dyn Fn(&LeaseRecord) + Sync),
) -> CliResult<(LeaseRecord, Duration, Duration)> {
    let provider = ctx.provider()?;
    let lease_id = LeaseId::generate().to_string();
    let slug = match &flags.slug {
        Some(raw) => {
            let wanted = slug::requested_slug(raw).status(ExitStatus::Usage)?;
            if ctx.claims.slug_taken(&wanted) {
                return Err(CliError::msg(
                    ExitStatus::Usage,
                    format!("slug {wanted:?} is already used by another lease"),
                ));
            }
            wanted
        }
        None => slug::allocate_slug(&slug::slug_for_lease(&lease_id), &lease_id, |s| {
            ctx.claims.slug_taken(s)
        })
        .status(ExitStatus::Usage)?,
    };
    let key_dir = paths::lease_key_dir(&lease_id);
    let public_key = if provider.per_lease_key() {
        keys::ensure_ed25519(&key_dir, "id_ed25519", &format!("crabbox {lease_id}"))
            .status(ExitStatus::Failure)?
            .public_key()
            .status(ExitStatus::Failure)?
    } else {
        String::new()
    };
    let start = Instant::now();
    progress.phase(format!("provisioning {} lease {slug}", provider.name()));
    let req = AcquireRequest {
        lease_id: lease_id.clone(),
        slug,
        class: ctx.settings.config().class.clone(),
        public_key,
        ttl_secs: ctx.settings.config().ttl.as_secs(),
        idle_timeout_secs: ctx.settings.config().idle_timeout.as_secs(),
        keep,
    };
    let acquired = match &ctx.broker {
        Some(client) => {
            brokered::create_or_cancel(client, explicit_provider(ctx), &req, interrupt).await
        }
        None => provider.acquire(&req).await.map_err(|e| {
            let status = match e {
                crabbox_providers::ProviderError::InvalidSpec(_) => ExitStatus::Usage,
                _ => ExitStatus::Failure,
            };
            CliError::new(status, e)
        }),
    };
    let mut record = acquired.inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&key_dir);
    })?;
    let lease_time = start.elapsed();
    record.repo_root = Some(ctx.repo_root.display().to_string());
    if let Some(host_key) = &record.ssh_host_key {
        std::fs::create_dir_all(&key_dir).status(ExitStatus::Failure)?;
        let line = format!("[{}]:{} {host_key}\n", record.ssh_host, record.ssh_port);
        std::fs::write(key_dir.join("known_hosts"), line).status(ExitStatus::Failure)?;
    }
    ctx.claims.write(&record).status(ExitStatus::Failure)?;
    on_created(&record);
    // A direct provider's acquire is not abandoned midway (it may be starting a process);
    // a signal during it is acted on now that it returned.
    if interrupt.requested() {
        return Err(abandon(ctx, &record).await);
    }
    let ready_start = Instant::now();
    progress.phase(format!(
        "waiting for ssh on {}:{}",
        record.ssh_host, record.ssh_port
    ));
    let timeout = match ctx.settings.config().ready_timeout {
        Some(timeout) => timeout,
        None if record.provider == "local" => Duration::from_secs(30),
        None => Duration::from_mins(20),
    };
    let target = ssh_target(&record);
    let ready = tokio::select! {
        biased;
        () = interrupt.wait() => return Err(abandon(ctx, &record).await),
        ready = wait_ready(
            &target,
            "bootstrap",
            timeout,
            provider.ready_check(),
            |line| output::err(line),
        ) => ready,
    };
    match ready {
        Ok(port) => {
            if port != record.ssh_port {
                output::err(format!(
                    "using ssh port {port} for {} (configured {} not ready)",
                    record.ssh_host, record.ssh_port
                ));
                record.ssh_port = port;
                ctx.claims.write(&record).status(ExitStatus::Failure)?;
            }
        }
        Err(timeout_err) => {
            let detail = timeout_err.last_error.clone();
            if !keep {
                let _ = release(ctx, &record).await;
            }
            return Err(CliError::new(
                ExitStatus::Readiness,
                anyhow::Error::new(timeout_err)
                    .context(format!("lease {} never became ready", record.lease_id)),
            )
            .hint(if detail.is_empty() {
                "check that the host is up and reachable; `crabbox doctor` checks local tools"
                    .to_owned()
            } else {
                format!("last ssh error: {detail}")
            }));
        }
    }
    Ok((record, lease_time, ready_start.elapsed()))
}

/// Releases a lease made for an interrupted `acquire`, says so, and returns the error to exit
/// with (130). A release that fails keeps the claim and says how to retry.
async fn abandon(ctx: &Ctx, record: &LeaseRecord) -> CliError {
    let id = &record.lease_id;
    match release(ctx, record).await {
        Ok(()) => {
            output::err(format!("released lease={id} slug={}", record.slug));
            CliError::msg(
                ExitStatus::Interrupted,
                format!("interrupted; lease {id} was released before it was ready"),
            )
        }
        Err(err) => CliError::new(
            ExitStatus::Interrupted,
            err.error
                .context(format!("interrupted, and could not release lease {id}")),
        )
        .hint(format!(
            "the lease is still held; release it with `crabbox stop {id}`"
        )),
    }
}

/// `lease "<id>" not found` (exit 4) for a lease neither a claim nor a coordinator knows.
pub fn not_found(id: &str) -> CliError {
    CliError::msg(ExitStatus::NotFound, format!("lease {id:?} not found"))
        .hint("`crabbox list` shows the leases on this machine")
}

/// Resolves `--id` (lease id or slug) to a live lease.
pub async fn resolve(ctx: &Ctx, id: &str) -> CliResult<LeaseRecord> {
    let claim = ctx.claims.resolve(id).status(ExitStatus::Usage)?;
    let (mut record, lease, url) = match claim {
        Some(record) if !crate::broker::is_brokered(&record) => {
            return resolve_direct(ctx, record).await;
        }
        Some(record) => {
            let client = brokered::client_for(ctx, &record)?;
            let lease = brokered::fetch(&client, &record.lease_id, Some(&record)).await?;
            (record, lease, client.base_url().to_owned())
        }
        None => match &ctx.broker {
            Some(client) => {
                let (record, lease) = adopt_brokered(ctx, client, id).await?;
                (record, lease, client.base_url().to_owned())
            }
            None => return Err(not_found(id)),
        },
    };
    if !lease.is_live() {
        return Err(CliError::msg(
            ExitStatus::NotFound,
            format!(
                "lease {} ({}) is gone: coordinator {url} reports it {}",
                record.lease_id,
                record.slug,
                lease.state.as_str()
            ),
        )
        .hint(format!(
            "run `crabbox stop {}` to forget it, then `crabbox warmup` for a new one",
            record.lease_id
        )));
    }
    brokered::refresh(&mut record, &lease);
    Ok(record)
}

/// Fails with `status` and a hint when the direct lease's provider says its runner is gone.
pub async fn ensure_runner(ctx: &Ctx, record: &LeaseRecord, status: ExitStatus) -> CliResult<()> {
    let provider = ctx.provider_for(record)?;
    if let Health::Gone(reason) = provider.health(record).await {
        return Err(CliError::msg(
            status,
            format!(
                "lease {} ({}) is gone: {reason}",
                record.lease_id, record.slug
            ),
        )
        .hint(format!(
            "run `crabbox stop {}` to forget it, then `crabbox warmup` for a new one",
            record.lease_id
        )));
    }
    Ok(())
}

/// A direct lease: its provider says whether the runner is still there.
async fn resolve_direct(ctx: &Ctx, record: LeaseRecord) -> CliResult<LeaseRecord> {
    ensure_runner(ctx, &record, ExitStatus::Remote).await?;
    if now_secs() >= record.expires_at() {
        output::warn(format!(
            "lease {} is past its TTL or idle timeout; `crabbox cleanup` would release it",
            record.lease_id
        ));
    }
    Ok(record)
}

/// A coordinator lease this machine has no claim for (another shell, or a claim cleaned up):
/// usable when its per-lease key is here.
async fn adopt_brokered(
    ctx: &Ctx,
    client: &crabbox_client::Client,
    id: &str,
) -> CliResult<(LeaseRecord, Lease)> {
    let lease = brokered::fetch(client, id, None).await?;
    let key_dir = paths::lease_key_dir(&lease.id);
    if !key_dir.join("id_ed25519").is_file() {
        return Err(CliError::msg(
            ExitStatus::Usage,
            format!(
                "lease {} was created on another machine; its SSH key is not here",
                lease.id
            ),
        )
        .hint("run from the machine that leased it, or `crabbox warmup` a new one"));
    }
    let mut record = crate::broker::record_from(&lease, client.base_url());
    record.repo_root = Some(ctx.repo_root.display().to_string());
    if let Some(host_key) = &record.ssh_host_key {
        let line = format!("[{}]:{} {host_key}\n", record.ssh_host, record.ssh_port);
        std::fs::write(key_dir.join("known_hosts"), line).status(ExitStatus::Failure)?;
    }
    if lease.is_live() {
        ctx.claims.write(&record).status(ExitStatus::Failure)?;
    }
    Ok((record, lease))
}

/// Marks a lease used now (refreshes the idle timer).
pub fn touch(ctx: &Ctx, record: &mut LeaseRecord) {
    record.last_touched_at = now_secs();
    let id = record.lease_id.clone();
    let updated = record.clone();
    let _ = ctx.claims.with_lock(&id, || ctx.claims.write(&updated));
}

/// What [`release_lease`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    /// A direct lease: its runner was deleted.
    Deleted,
    /// A brokered lease: the coordinator released it.
    Brokered(brokered::Released),
}

/// Releases a lease: closes its SSH master, deletes the runner, forgets the claim and keys.
pub async fn release(ctx: &Ctx, record: &LeaseRecord) -> CliResult<()> {
    release_lease(ctx, record).await.map(drop)
}

/// [`release`], saying what happened. A brokered lease is released through the coordinator
/// that created it; the claim is forgotten only once that coordinator confirmed the release
/// or answered that it no longer has the lease.
pub async fn release_lease(ctx: &Ctx, record: &LeaseRecord) -> CliResult<Released> {
    let outcome = if crate::broker::is_brokered(record) {
        let client = brokered::client_for(ctx, record)?;
        ssh_target(record).close_master().await;
        let admin = crate::broker::require_admin(&ctx.settings).ok();
        Released::Brokered(brokered::release(&client, record, admin.as_ref()).await?)
    } else {
        ssh_target(record).close_master().await;
        let provider = ctx.provider_for(record)?;
        provider.release(record).await.status(ExitStatus::Remote)?;
        Released::Deleted
    };
    ctx.claims
        .remove(&record.lease_id)
        .status(ExitStatus::Failure)?;
    let _ = std::fs::remove_dir_all(paths::lease_key_dir(&record.lease_id));
    crate::syncstate::forget(&ctx.state_dir, &record.lease_id);
    Ok(outcome)
}

/// The sync scope of this repo: built-in and configured excludes, `.crabboxignore` and the
/// `sync.include` whitelist.
pub fn sync_scope(ctx: &Ctx) -> CliResult<sync::ManifestOptions> {
    let sync = &ctx.settings.config().sync;
    sync::ManifestOptions::load(&ctx.repo_root, &sync.exclude, &sync.include).map_err(|e| {
        CliError::new(ExitStatus::Sync, e).hint("make .crabboxignore readable, or remove it")
    })
}
