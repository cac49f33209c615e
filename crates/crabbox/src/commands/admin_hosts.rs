//! `crabbox admin hosts offerings|quota|list|allocate|release|policy --provider aws --target
//! macos --region R --type mac2.metal`: the EC2 Mac Dedicated Hosts macOS leases run on, with
//! this machine's AWS credentials (on a coordinator's host: the coordinator's identity).
//! `allocate` is a dry run (EC2's `DryRun`) unless `--yes`: a Mac host is paid for a day at
//! least. `release` refuses a host Crabbox did not allocate unless `--existing`.

use crabbox_api::ExitStatus;

use crate::error::{CliError, CliResult};

/// The flags every host command shares.
#[derive(Debug, clap::Args)]
pub struct Scope {
    #[arg(long, default_value = "aws")]
    pub provider: String,
    #[arg(long, default_value = "macos")]
    pub target: String,
    /// Default: aws.region.
    #[arg(long)]
    pub region: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum HostsCommand {
    /// The zones of the region that offer the Mac type.
    Offerings {
        #[command(flatten)]
        scope: Scope,
        #[arg(long = "type")]
        server_type: String,
    },
    /// The account's quota of Dedicated Hosts of the type's family, and how many it holds.
    Quota {
        #[command(flatten)]
        scope: Scope,
        #[arg(long = "type")]
        server_type: String,
    },
    /// The region's Dedicated Hosts.
    List {
        #[command(flatten)]
        scope: Scope,
        #[arg(long = "type")]
        server_type: Option<String>,
        /// Released hosts too.
        #[arg(long)]
        all: bool,
    },
    /// Allocate one host: a dry run unless --yes (the host is paid for 24 hours at least).
    Allocate {
        #[command(flatten)]
        scope: Scope,
        #[arg(long = "type")]
        server_type: String,
        /// The zone (default: the first one offering the type).
        #[arg(long)]
        zone: Option<String>,
        /// Allocate for real.
        #[arg(long, alias = "force")]
        yes: bool,
        /// Ask EC2 whether it would (the default without --yes).
        #[arg(long = "dry-run")]
        dry_run: bool,
    },
    /// Release a host Crabbox allocated.
    Release {
        #[command(flatten)]
        scope: Scope,
        host: String,
        /// Release a host Crabbox did not allocate.
        #[arg(long)]
        existing: bool,
    },
    /// The IAM policy of the Dedicated Host lifecycle.
    Policy {
        #[command(flatten)]
        scope: Scope,
    },
}

pub async fn run(cmd: HostsCommand) -> CliResult<u8> {
    let scope = match &cmd {
        HostsCommand::Offerings { scope, .. }
        | HostsCommand::Quota { scope, .. }
        | HostsCommand::List { scope, .. }
        | HostsCommand::Allocate { scope, .. }
        | HostsCommand::Release { scope, .. }
        | HostsCommand::Policy { scope } => scope,
    };
    if scope.provider != "aws" || scope.target != "macos" {
        return Err(CliError::msg(
            ExitStatus::Usage,
            format!(
                "Dedicated Hosts are EC2 Mac's: --provider aws --target macos, not {} {}",
                scope.provider, scope.target
            ),
        ));
    }
    Box::pin(aws(cmd)).await
}

#[cfg(not(feature = "aws"))]
#[expect(clippy::unused_async, reason = "the aws build's commands await")]
async fn aws(_cmd: HostsCommand) -> CliResult<u8> {
    Err(CliError::msg(
        ExitStatus::Usage,
        "this crabbox was built without AWS support (cargo feature `aws`)",
    ))
}

#[cfg(feature = "aws")]
async fn aws(cmd: HostsCommand) -> CliResult<u8> {
    use std::collections::BTreeMap;

    use crabbox_aws::hosts;

    use crate::output;
    let failed = |e: crabbox_providers::ProviderError| {
        let status = match e {
            crabbox_providers::ProviderError::Auth(_) => ExitStatus::Auth,
            crabbox_providers::ProviderError::InvalidSpec(_) => ExitStatus::Usage,
            _ => ExitStatus::Failure,
        };
        CliError::new(status, e)
    };
    let ctx = crate::lease::context(Vec::new())?;
    let region_of = |scope: &Scope| {
        scope
            .region
            .clone()
            .unwrap_or_else(|| ctx.settings.config().aws.region.clone())
    };
    let json_out = |json: bool, value: serde_json::Value, text: Vec<String>| {
        if json {
            output::json(&value);
        } else {
            for line in text {
                output::out(line);
            }
        }
    };
    match cmd {
        HostsCommand::Policy { .. } => output::json(&hosts::host_policy()),
        HostsCommand::Offerings { scope, server_type } => {
            let region = region_of(&scope);
            let aws = crabbox_aws::client::Aws::load(&region).await;
            let found = hosts::offerings(&aws.ec2(&region), &server_type)
                .await
                .map_err(failed)?;
            let text = found
                .iter()
                .map(|o| format!("{} zone={} region={region}", o.instance_type, o.zone))
                .collect();
            json_out(scope.json, serde_json::json!({ "offerings": found }), text);
        }
        HostsCommand::Quota { scope, server_type } => {
            let region = region_of(&scope);
            let aws = crabbox_aws::client::Aws::load(&region).await;
            let quota = hosts::quota(&aws, &region, &server_type)
                .await
                .map_err(failed)?;
            let text = vec![format!(
                "family={} quota={} allocated={} region={region} ({})",
                quota.family,
                quota
                    .value
                    .map_or_else(|| "unknown".to_owned(), |v| v.to_string()),
                quota.allocated,
                quota.quota_name
            )];
            json_out(scope.json, serde_json::json!({ "quota": quota }), text);
        }
        HostsCommand::List {
            scope,
            server_type,
            all,
        } => {
            let region = region_of(&scope);
            let aws = crabbox_aws::client::Aws::load(&region).await;
            let found = hosts::list(&aws.ec2(&region), server_type.as_deref(), all)
                .await
                .map_err(failed)?;
            let text = found
                .iter()
                .map(|h| {
                    format!(
                        "{} type={} zone={} state={} instances={} crabbox={}",
                        h.id,
                        h.instance_type,
                        h.zone,
                        h.state,
                        h.instances.len(),
                        h.owned_by_crabbox()
                    )
                })
                .collect();
            json_out(scope.json, serde_json::json!({ "hosts": found }), text);
        }
        HostsCommand::Allocate {
            scope,
            server_type,
            zone,
            yes,
            dry_run,
        } => {
            let region = region_of(&scope);
            let aws = crabbox_aws::client::Aws::load(&region).await;
            let ec2 = aws.ec2(&region);
            let zone = match zone {
                Some(zone) => zone,
                None => hosts::offerings(&ec2, &server_type)
                    .await
                    .map_err(failed)?
                    .first()
                    .map(|o| o.zone.clone())
                    .ok_or_else(|| {
                        CliError::msg(
                            ExitStatus::Failure,
                            format!("no zone of {region} offers {server_type}"),
                        )
                    })?,
            };
            let dry = dry_run || !yes;
            let outcome = hosts::allocate(&ec2, &zone, &server_type, dry, &BTreeMap::new())
                .await
                .map_err(failed)?;
            let text = vec![match &outcome {
                hosts::AllocateOutcome::WouldSucceed { .. } => format!(
                    "dry run: EC2 would allocate a {server_type} host in {zone}; add --yes to \
                     allocate it (paid for 24 hours at least)"
                ),
                hosts::AllocateOutcome::Allocated { host_id, .. } => {
                    format!("allocated {host_id} type={server_type} zone={zone}")
                }
            }];
            json_out(
                scope.json,
                serde_json::json!({ "dryRun": dry, "ok": true, "zone": zone, "result": outcome }),
                text,
            );
        }
        HostsCommand::Release {
            scope,
            host,
            existing,
        } => {
            let region = region_of(&scope);
            let aws = crabbox_aws::client::Aws::load(&region).await;
            let outcome = hosts::release(&aws.ec2(&region), &host, existing)
                .await
                .map_err(failed)?;
            let refused = matches!(outcome, hosts::ReleaseOutcome::Refused { .. });
            json_out(
                scope.json,
                serde_json::json!({ "result": outcome }),
                vec![format!("{outcome:?}")],
            );
            if refused {
                return Ok(ExitStatus::Failure.code());
            }
        }
    }
    Ok(0)
}
