//! `crabbox admin leases|release|delete` (coordinator admin token required), with the flags,
//! defaults and output of spec/cli-dataplane.md §1.20: `release` keeps the runner unless
//! `--delete`, and `delete` does nothing without `--force`.

use std::time::Duration;

use crabbox_api::ExitStatus;
use crabbox_api::coord::{Lease, ReleaseRequest};
use crabbox_client::query;
use crabbox_core::duration::format_duration;

use crate::broker;
use crate::error::{CliError, CliResult};
use crate::{lease, output};

#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// List every lease the coordinator knows.
    Leases {
        /// provisioning, active, released, expired, failed or live.
        #[arg(long)]
        state: Option<String>,
        /// Only this owner's leases.
        #[arg(long)]
        owner: Option<String>,
        /// Only this org's leases.
        #[arg(long)]
        org: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Release any lease; its runner is kept unless --delete.
    Release {
        #[command(flatten)]
        id: LeaseId,
        /// Delete the runner while releasing.
        #[arg(long)]
        delete: bool,
        #[arg(long)]
        json: bool,
    },
    /// Provider credentials' identity and the IAM policy they need (no coordinator needed).
    #[command(subcommand, alias = "provider")]
    Providers(super::admin_providers::ProvidersCommand),
    /// EC2 Mac Dedicated Hosts: offerings, quota, list, allocate (dry run unless --yes),
    /// release, policy (this machine's AWS credentials).
    #[command(subcommand, alias = "mac-hosts")]
    Hosts(super::admin_hosts::HostsCommand),
    /// Delete a lease's runner now and wait for the provider (requires --force).
    Delete {
        #[command(flatten)]
        id: LeaseId,
        /// Confirm the deletion.
        #[arg(long)]
        force: bool,
        #[arg(long)]
        json: bool,
    },
}

/// A lease id or slug, as the argument or `--id` (the old tool accepts both).
#[derive(Debug, clap::Args)]
pub struct LeaseId {
    /// Lease id or slug.
    #[arg(value_name = "ID", conflicts_with = "flag")]
    positional: Option<String>,
    /// Lease id or slug.
    #[arg(long = "id", value_name = "ID")]
    flag: Option<String>,
}

impl LeaseId {
    fn get(self, usage: &str) -> CliResult<String> {
        self.flag
            .or(self.positional)
            .filter(|id| !id.trim().is_empty())
            .ok_or_else(|| CliError::msg(ExitStatus::Usage, format!("usage: {usage}")))
    }
}

fn blank(text: &str) -> &str {
    if text.is_empty() { "-" } else { text }
}

/// One `admin leases` row, in the old tool's columns.
fn lease_line(l: &Lease) -> String {
    let idle = match l.idle_timeout_seconds {
        0 => String::new(),
        secs => format_duration(Duration::from_secs(secs)),
    };
    let expires = l.expires_at.to_string();
    format!(
        "{:<16} {:<16} {:<8} {:<10} {:<14} {:<24} owner={} org={} idle={} expires={}",
        l.id,
        blank(&l.slug),
        l.provider,
        l.state.as_str(),
        l.server_type,
        l.host,
        l.owner,
        l.org,
        idle,
        blank(&expires)
    )
}

pub async fn run(cmd: AdminCommand) -> CliResult<u8> {
    let cmd = match cmd {
        AdminCommand::Providers(cmd) => return super::admin_providers::run(cmd).await,
        AdminCommand::Hosts(cmd) => return super::admin_hosts::run(cmd).await,
        other => other,
    };
    // Check the arguments before anything touches the network.
    let cmd = Checked::new(cmd)?;
    let ctx = lease::context(Vec::new())?;
    let client = broker::require_admin(&ctx.settings)?;
    match cmd {
        Checked::Leases { query: q, json } => {
            let leases = client
                .admin_leases(&q)
                .await
                .map_err(|e| broker::cli_error(e, "could not list leases"))?;
            if json {
                output::json(&leases);
            } else {
                for l in &leases {
                    output::out(lease_line(l));
                }
            }
        }
        Checked::Release { id, delete, json } => {
            let req = ReleaseRequest {
                expected_provider: None,
                delete: Some(delete),
            };
            let lease = client
                .admin_release(&id, &req)
                .await
                .map_err(|e| broker::cli_error(e, &format!("could not release {id}")))?;
            if json {
                output::json(&lease);
            } else {
                output::out(format!(
                    "released {} slug={} state={} delete={delete}",
                    lease.id,
                    blank(&lease.slug),
                    lease.state.as_str()
                ));
            }
        }
        Checked::Delete { id, json } => {
            let lease = client
                .admin_delete(&id)
                .await
                .map_err(|e| broker::cli_error(e, &format!("could not delete {id}")))?;
            if json {
                output::json(&lease);
            } else {
                output::out(format!(
                    "deleted {} slug={} state={}",
                    lease.id,
                    blank(&lease.slug),
                    lease.state.as_str()
                ));
            }
        }
    }
    Ok(0)
}

/// A command whose arguments passed the checks the coordinator cannot make.
enum Checked {
    Leases {
        query: String,
        json: bool,
    },
    Release {
        id: String,
        delete: bool,
        json: bool,
    },
    Delete {
        id: String,
        json: bool,
    },
}

impl Checked {
    fn new(cmd: AdminCommand) -> CliResult<Self> {
        Ok(match cmd {
            AdminCommand::Leases {
                state,
                owner,
                org,
                limit,
                json,
            } => Self::Leases {
                query: query(&[
                    ("state", state),
                    ("owner", owner),
                    ("org", org),
                    (
                        "limit",
                        Some(limit).filter(|l| *l > 0).map(|l| l.to_string()),
                    ),
                ]),
                json,
            },
            AdminCommand::Release { id, delete, json } => Self::Release {
                id: id.get("crabbox admin release <lease-id-or-slug> [--delete] [--json]")?,
                delete,
                json,
            },
            AdminCommand::Delete { id, force, json } => {
                let id = id.get("crabbox admin delete <lease-id-or-slug> --force [--json]")?;
                if !force {
                    return Err(
                        CliError::msg(ExitStatus::Usage, "admin delete requires --force").hint(
                            format!(
                                "`crabbox admin delete {id} --force` deletes its runner now; \
                                 `crabbox admin release {id}` only ends the lease"
                            ),
                        ),
                    );
                }
                Self::Delete { id, json }
            }
            AdminCommand::Providers(_) | AdminCommand::Hosts(_) => {
                unreachable!("admin providers and hosts are run before the checks")
            }
        })
    }
}
