//! `crabbox admin providers identity|policy --provider aws`: who this machine's provider
//! credentials are (STS `GetCallerIdentity`, with the IAM principal a policy attaches to), and
//! the least-privilege IAM policy for exactly the calls the provider makes, generated from the
//! provider's own list of actions. Both work with this machine's credentials (the identity a
//! coordinator uses is its host's); the policy needs no credentials at all.

use crabbox_api::ExitStatus;

use crate::error::{CliError, CliResult};
use crate::output;

#[derive(Debug, clap::Subcommand)]
pub enum ProvidersCommand {
    /// Who the provider credentials are (AWS: STS `GetCallerIdentity`).
    Identity {
        #[arg(long, default_value = "aws")]
        provider: String,
        /// The region to ask in (default: aws.region).
        #[arg(long)]
        region: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The least-privilege IAM policy for the calls the provider makes.
    Policy {
        #[arg(long, default_value = "aws")]
        provider: String,
        /// linux (default); macos and windows are not supported by this build yet.
        #[arg(long)]
        target: Option<String>,
        /// The policy is JSON either way; accepted for symmetry with the other commands.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: ProvidersCommand) -> CliResult<u8> {
    match cmd {
        ProvidersCommand::Identity {
            provider,
            region,
            json,
        } => {
            only_aws(&provider)?;
            identity(region, json).await
        }
        ProvidersCommand::Policy {
            provider, target, ..
        } => {
            only_aws(&provider)?;
            if let Some(target) = target.filter(|t| !t.eq_ignore_ascii_case("linux")) {
                return Err(CliError::msg(
                    ExitStatus::Usage,
                    format!("no AWS policy for target {target:?} in this build (linux only)"),
                ));
            }
            let policy = policy_document()?;
            output::json(&policy);
            Ok(0)
        }
    }
}

fn only_aws(provider: &str) -> CliResult<()> {
    if provider.trim().eq_ignore_ascii_case("aws") {
        Ok(())
    } else {
        Err(CliError::msg(
            ExitStatus::Usage,
            format!("admin providers knows provider aws only, not {provider:?}"),
        ))
    }
}

#[cfg(feature = "aws")]
#[expect(
    clippy::unnecessary_wraps,
    reason = "the build without the aws feature fails here"
)]
fn policy_document() -> CliResult<serde_json::Value> {
    Ok(crabbox_aws::policy::policy_document())
}

#[cfg(feature = "aws")]
async fn identity(region: Option<String>, json: bool) -> CliResult<u8> {
    let ctx = crate::lease::context(Vec::new())?;
    let region = region.unwrap_or_else(|| ctx.settings.config().aws.region.clone());
    let aws = crabbox_aws::client::Aws::load(&region).await;
    let who = crabbox_aws::identity::caller_identity(&aws)
        .await
        .map_err(|e| {
            let status = match e {
                crabbox_providers::ProviderError::Auth(_) => ExitStatus::Auth,
                _ => ExitStatus::Failure,
            };
            CliError::new(status, e)
        })?;
    let target = crabbox_aws::identity::policy_target(&who.arn);
    if json {
        let mut value = serde_json::to_value(&who).unwrap_or_default();
        value["provider"] = "aws".into();
        value["region"] = region.into();
        if let Some(target) = target {
            value["policyTarget"] = serde_json::to_value(target).unwrap_or_default();
        }
        output::json(&value);
    } else {
        output::out(format!(
            "account={} arn={} region={region}",
            who.account, who.arn
        ));
        if let Some(t) = target {
            output::out(format!("attach policies to {} {}", t.kind, t.name));
        }
    }
    Ok(0)
}

#[cfg(not(feature = "aws"))]
fn policy_document() -> CliResult<serde_json::Value> {
    Err(no_aws())
}

#[cfg(not(feature = "aws"))]
#[expect(clippy::unused_async, reason = "the aws build's identity awaits")]
async fn identity(_region: Option<String>, _json: bool) -> CliResult<u8> {
    Err(no_aws())
}

#[cfg(not(feature = "aws"))]
fn no_aws() -> CliError {
    CliError::msg(
        ExitStatus::Usage,
        "this crabbox was built without AWS support (cargo feature `aws`)",
    )
}
