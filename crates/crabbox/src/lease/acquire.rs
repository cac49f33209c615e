//! A new lease, from request to ready: slug and per-lease key, the backend's create, the
//! claim (written before waiting, so a crash leaves something `list`/`cleanup` can see), and
//! the wait for SSH. A first Ctrl-C/SIGTERM undoes what was made and exits 130.

use std::time::{Duration, Instant};

use crabbox_api::{ExitStatus, LeaseId};
use crabbox_core::slug;
use crabbox_providers::{AcquireRequest, Capabilities, LeaseRecord, MachineChoice};
use crabbox_remote::keys;
use crabbox_remote::ssh::wait_ready;

use super::{Lease, Leases, runner};
use crate::error::{CliError, CliResult, WithStatus};
use crate::interrupt::Interrupt;
use crate::output::{self, Progress};
use crate::paths;

/// What the caller asks of a new lease beyond the configuration.
#[derive(Debug, Clone, Default)]
pub struct NewLease {
    /// `--slug`.
    pub slug: Option<String>,
    /// Keep the lease after the command (warmup, `run --keep`).
    pub keep: bool,
    /// Keep a runner that never became ready, to look into it (`run --keep`); otherwise it is
    /// released (warmup keeps leases, but not ones nobody can use).
    pub keep_unready: bool,
}

/// A new lease, ready, with how long the backend and the wait for SSH took.
#[derive(Debug)]
pub struct Acquired<'a> {
    pub lease: Lease<'a>,
    pub lease_time: Duration,
    pub ready_time: Duration,
}

impl<'a> Leases<'a> {
    /// Acquires a new lease and waits until it is ready. `on_created` hears of the lease as
    /// soon as it exists, before the wait.
    ///
    /// A first Ctrl-C/SIGTERM (`interrupt`) stops it with exit 130: a brokered create in
    /// flight is canceled on the coordinator; a lease already made is released (even with
    /// `keep`: nobody has it yet) and its claim and key forgotten.
    pub async fn acquire(
        &self,
        new: &NewLease,
        progress: &Progress,
        interrupt: &Interrupt,
        on_created: &(dyn Fn(&LeaseRecord) + Sync),
    ) -> CliResult<Acquired<'a>> {
        let req = self.request(new)?;
        let key_dir = paths::lease_key_dir(&req.lease_id);
        let start = Instant::now();
        progress.phase(format!(
            "provisioning {} lease {}",
            self.home.name(),
            req.slug
        ));
        let created = self.home.create(&req, interrupt).await;
        let mut record = created.inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&key_dir);
        })?;
        let lease_time = start.elapsed();
        record.repo_root = Some(self.ctx.repo_root.display().to_string());
        record.ssh_proxy = self.ctx.ssh_proxy();
        runner::pin_host_key(&record).status(ExitStatus::Failure)?;
        self.ctx.claims.write(&record).status(ExitStatus::Failure)?;
        on_created(&record);
        let mut lease = Lease::of(self.ctx, record);
        // A direct provider's create is not abandoned midway (it may be starting a process);
        // a signal during it is acted on now that it returned.
        if interrupt.requested() {
            return Err(abandon(&lease).await);
        }
        let ready_start = Instant::now();
        self.wait_ready(&mut lease, new.keep_unready, progress, interrupt)
            .await?;
        Ok(Acquired {
            lease,
            lease_time,
            ready_time: ready_start.elapsed(),
        })
    }

    /// The request: a fresh lease id, the slug (`--slug` or one derived from the id, never
    /// one a claim here uses), the per-lease key when the backend wants one, and the
    /// configured class and lifetimes.
    fn request(&self, new: &NewLease) -> CliResult<AcquireRequest> {
        let claims = &self.ctx.claims;
        let lease_id = LeaseId::generate().to_string();
        let slug = match &new.slug {
            Some(raw) => {
                let wanted = slug::requested_slug(raw).status(ExitStatus::Usage)?;
                if claims.slug_taken(&wanted) {
                    return Err(CliError::msg(
                        ExitStatus::Usage,
                        format!("slug {wanted:?} is already used by another lease"),
                    ));
                }
                wanted
            }
            None => slug::allocate_slug(&slug::slug_for_lease(&lease_id), &lease_id, |s| {
                claims.slug_taken(s)
            })
            .status(ExitStatus::Usage)?,
        };
        let public_key = if self.home.per_lease_key() {
            let key_dir = paths::lease_key_dir(&lease_id);
            keys::ensure_ed25519(&key_dir, "id_ed25519", &format!("crabbox {lease_id}"))
                .status(ExitStatus::Failure)?
                .public_key()
                .status(ExitStatus::Failure)?
        } else {
            String::new()
        };
        let config = self.ctx.settings.config();
        Ok(AcquireRequest {
            lease_id,
            slug,
            class: config.class.clone(),
            public_key,
            ttl_secs: config.ttl.as_secs(),
            idle_timeout_secs: config.idle_timeout.as_secs(),
            keep: new.keep,
            machine: MachineChoice {
                server_type: config.server_type.clone(),
                // Only a market the user chose: a provider without markets (Hetzner) refuses
                // a chosen spot market, and the default is each provider's own.
                market: (self.ctx.settings.origin("capacity.market") != "default")
                    .then_some(config.capacity.market),
                architecture: Some(config.architecture),
                // `CRABBOX_AWS_AMI`: a direct lease boots it anyway; a brokered one asks the
                // coordinator for it (an admin's choice). Promotions are the coordinator's.
                image: config
                    .aws
                    .ami
                    .clone()
                    .filter(|_| config.provider == "aws")
                    .map(|id| crabbox_providers::ImageChoice {
                        id,
                        region: config.aws.region.clone(),
                    }),
                target: Some(config.target),
                host_id: config
                    .aws
                    .mac_host_id
                    .clone()
                    .filter(|_| config.provider == "aws"),
            },
            capabilities: Capabilities {
                desktop: config.capabilities.desktop,
                // Only a desktop the user chose: each provider has its own default.
                desktop_env: (self.ctx.settings.origin("desktopEnv") != "default")
                    .then(|| config.capabilities.desktop_env.clone()),
                browser: config.capabilities.browser,
                code: config.capabilities.code,
            },
        })
    }

    /// Waits until the new lease answers SSH (and the backend's ready check passes). A lease
    /// that never does is released unless `keep` (exit 5, with the last ssh error as hint).
    async fn wait_ready(
        &self,
        lease: &mut Lease<'a>,
        keep: bool,
        progress: &Progress,
        interrupt: &Interrupt,
    ) -> CliResult<()> {
        let record = &lease.record;
        progress.phase(format!(
            "waiting for ssh on {}:{}",
            record.ssh_host, record.ssh_port
        ));
        let timeout = match self.ctx.settings.config().ready_timeout {
            Some(timeout) => timeout,
            None if record.provider == "local" => Duration::from_secs(30),
            // A cloud desktop installs a desktop environment first (spec/providers.md §5).
            None if record.labels.get("desktop").is_some_and(|d| d == "true") => {
                Duration::from_mins(45)
            }
            None => Duration::from_mins(20),
        };
        let target = lease.target();
        let ready = tokio::select! {
            biased;
            () = interrupt.wait() => return Err(abandon(lease).await),
            ready = wait_ready(
                &target,
                "bootstrap",
                timeout,
                self.home.ready_check(&lease.record),
                |line| output::err(line),
            ) => ready,
        };
        match ready {
            Ok(port) if port != lease.record.ssh_port => {
                output::err(format!(
                    "using ssh port {port} for {} (configured {} not ready)",
                    lease.record.ssh_host, lease.record.ssh_port
                ));
                lease.record.ssh_port = port;
                self.ctx
                    .claims
                    .write(&lease.record)
                    .status(ExitStatus::Failure)?;
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(timeout_err) => {
                let detail = timeout_err.last_error.clone();
                let boot_log = self.home.boot_log(&lease.record).await;
                if !keep {
                    let _ = lease.release().await;
                }
                Err(CliError::new(
                    ExitStatus::Readiness,
                    anyhow::Error::new(timeout_err).context(format!(
                        "lease {} never became ready",
                        lease.record.lease_id
                    )),
                )
                .hint(match (boot_log, detail.is_empty()) {
                    (Some(log), _) => format!(
                        "the runner's console output ends with:\n{log}{}",
                        if detail.is_empty() {
                            String::new()
                        } else {
                            format!("\nlast ssh error: {detail}")
                        }
                    ),
                    (None, true) => "check that the host is up and reachable; `crabbox doctor` \
                                     checks local tools"
                        .to_owned(),
                    (None, false) => format!("last ssh error: {detail}"),
                }))
            }
        }
    }
}

/// Releases a lease made for an interrupted acquire, says so, and returns the error to exit
/// with (130). A release that fails keeps the claim and says how to retry.
async fn abandon(lease: &Lease<'_>) -> CliError {
    let id = &lease.record.lease_id;
    match lease.release().await {
        Ok(_) => {
            output::err(format!("released lease={id} slug={}", lease.record.slug));
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
