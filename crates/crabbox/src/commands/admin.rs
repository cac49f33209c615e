//! `crabbox admin leases|release|delete` (coordinator admin token required).

use crabbox_api::coord::ReleaseRequest;
use crabbox_client::query;

use crate::broker;
use crate::error::CliResult;
use crate::{lease, output};

#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// List every lease the coordinator knows.
    Leases {
        /// provisioning, active, released, expired, failed or live.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        owner: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Release any lease (its runner is deleted unless --keep-server).
    Release {
        id: String,
        #[arg(long = "keep-server")]
        keep_server: bool,
        #[arg(long)]
        json: bool,
    },
    /// Delete a lease's runner now and wait for the provider.
    Delete {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

fn lease_line(l: &crabbox_api::coord::Lease) -> String {
    format!(
        "{:<16} {:<24} {:<12} {:<8} owner={} org={} host={}:{} expires={}",
        l.id,
        l.slug,
        l.state.as_str(),
        l.provider,
        l.owner,
        l.org,
        l.host,
        l.ssh_port,
        l.expires_at
    )
}

pub async fn run(cmd: AdminCommand) -> CliResult<u8> {
    let ctx = lease::context(Vec::new())?;
    let client = broker::require_admin(&ctx.settings)?;
    match cmd {
        AdminCommand::Leases {
            state,
            owner,
            limit,
            json,
        } => {
            let q = query(&[
                ("state", state),
                ("owner", owner),
                ("limit", Some(limit.to_string())),
            ]);
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
        AdminCommand::Release {
            id,
            keep_server,
            json,
        } => {
            let lease = client
                .admin_release(
                    &id,
                    &ReleaseRequest {
                        expected_provider: None,
                        delete: Some(!keep_server),
                    },
                )
                .await
                .map_err(|e| broker::cli_error(e, &format!("could not release {id}")))?;
            if json {
                output::json(&lease);
            } else {
                output::out(format!(
                    "released {} slug={} state={}",
                    lease.id,
                    lease.slug,
                    lease.state.as_str()
                ));
            }
        }
        AdminCommand::Delete { id, json } => {
            let lease = client
                .admin_delete(&id)
                .await
                .map_err(|e| broker::cli_error(e, &format!("could not delete {id}")))?;
            if json {
                output::json(&lease);
            } else {
                output::out(format!(
                    "deleted runner of {} slug={} state={}",
                    lease.id,
                    lease.slug,
                    lease.state.as_str()
                ));
            }
        }
    }
    Ok(0)
}
