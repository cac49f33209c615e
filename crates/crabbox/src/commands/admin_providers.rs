//! `crabbox admin providers identity|policy --provider aws|azure|hetzner`: who this machine's
//! provider credentials are (AWS: STS `GetCallerIdentity`, with the IAM principal a policy
//! attaches to; Azure: the subscription the credential reaches; Hetzner, which has no identity
//! API: the project the token reaches and how many Crabbox servers it holds), and what the
//! credentials must allow: AWS's least-privilege IAM policy, Azure's custom role, Hetzner's
//! token kind and the calls it is used for, each generated from the provider's own list of
//! calls. Both work with this machine's credentials (the identity a
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
        /// linux (default), or macos: the runners' policy and the Dedicated Host lifecycle's.
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
        } => match known(&provider)? {
            Known::Aws => identity(region, json).await,
            Known::Azure => azure_identity(json).await,
            Known::Hetzner => hetzner_identity(json).await,
        },
        ProvidersCommand::Policy {
            provider, target, ..
        } => {
            match known(&provider)? {
                Known::Hetzner => {
                    output::json(&hetzner_policy()?);
                    return Ok(0);
                }
                Known::Azure => {
                    output::json(&azure_policy()?);
                    return Ok(0);
                }
                Known::Aws => {}
            }
            let policy = match target.as_deref().map(str::to_ascii_lowercase).as_deref() {
                None | Some("linux") => policy_document()?,
                // The runners' policy and the Dedicated Host lifecycle's, in one document.
                Some("macos") => mac_policy_document()?,
                Some(other) => {
                    return Err(CliError::msg(
                        ExitStatus::Usage,
                        format!("no AWS policy for target {other:?} in this build (linux, macos)"),
                    ));
                }
            };
            output::json(&policy);
            Ok(0)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    Aws,
    Azure,
    Hetzner,
}

fn known(provider: &str) -> CliResult<Known> {
    match provider.trim().to_ascii_lowercase().as_str() {
        "aws" => Ok(Known::Aws),
        "azure" => Ok(Known::Azure),
        "hetzner" => Ok(Known::Hetzner),
        _ => Err(CliError::msg(
            ExitStatus::Usage,
            format!("admin providers knows providers aws, azure and hetzner, not {provider:?}"),
        )),
    }
}

/// The custom role an Azure service principal needs, for the configured subscription.
#[cfg(feature = "azure")]
fn azure_policy() -> CliResult<serde_json::Value> {
    let ctx = crate::lease::context(Vec::new())?;
    let subscription = ctx.settings.config().azure.subscription_id.clone();
    Ok(crabbox_azure::policy::role_definition(
        subscription.as_deref(),
    ))
}

#[cfg(feature = "azure")]
async fn azure_identity(json: bool) -> CliResult<u8> {
    let ctx = crate::lease::context(Vec::new())?;
    let provider = crate::clouds::azure_provider(ctx.settings.config())?;
    let who = provider.identity().await.map_err(|e| {
        let status = match e {
            crabbox_providers::ProviderError::Auth(_) => ExitStatus::Auth,
            _ => ExitStatus::Failure,
        };
        CliError::new(status, e)
    })?;
    if json {
        output::json(&who);
    } else {
        let text = |key: &str| who[key].as_str().unwrap_or_default().to_owned();
        output::out(format!(
            "subscription={} name={:?} state={} tenant={} client={} credential={}",
            text("subscriptionId"),
            text("subscriptionName"),
            text("state"),
            text("tenantId"),
            text("clientId"),
            text("credential"),
        ));
    }
    Ok(0)
}

#[cfg(not(feature = "azure"))]
fn azure_policy() -> CliResult<serde_json::Value> {
    Err(no_azure())
}

#[cfg(not(feature = "azure"))]
#[expect(clippy::unused_async, reason = "the azure build's identity awaits")]
async fn azure_identity(_json: bool) -> CliResult<u8> {
    Err(no_azure())
}

#[cfg(not(feature = "azure"))]
fn no_azure() -> CliError {
    CliError::msg(
        ExitStatus::Usage,
        "this crabbox was built without Azure support (cargo feature `azure`)",
    )
}

/// What a Hetzner token must be, and the calls it is used for.
#[cfg(feature = "hetzner")]
#[expect(
    clippy::unnecessary_wraps,
    reason = "the build without the hetzner feature fails here"
)]
fn hetzner_policy() -> CliResult<serde_json::Value> {
    Ok(serde_json::json!({
        "provider": "hetzner",
        "token": "read-write",
        "scope": "project",
        "note": "Hetzner Cloud API tokens are per project and either read-only or read-write; \
                 Crabbox needs read-write. Use a project that holds only Crabbox runners, or \
                 accept that the token can change everything in it.",
        "calls": crabbox_hetzner::api::CALLS,
    }))
}

#[cfg(feature = "hetzner")]
async fn hetzner_identity(json: bool) -> CliResult<u8> {
    use crabbox_providers::Provider as _;
    let ctx = crate::lease::context(Vec::new())?;
    let provider = crate::clouds::hetzner_provider(ctx.settings.config())?;
    let source = crabbox_hetzner::settings::TOKEN_VARS
        .iter()
        .find(|name| std::env::var(name).is_ok_and(|v| !v.trim().is_empty()))
        .copied()
        .unwrap_or("");
    let endpoint = provider.settings().endpoint.clone();
    let leases = provider.inventory().await.map_err(|e| {
        let status = match e {
            crabbox_providers::ProviderError::Auth(_) => ExitStatus::Auth,
            _ => ExitStatus::Failure,
        };
        CliError::new(status, e)
    })?;
    if json {
        output::json(&serde_json::json!({
            "provider": "hetzner",
            "endpoint": endpoint,
            "tokenFrom": source,
            "crabboxServers": leases.len(),
        }));
    } else {
        output::out(format!(
            "token={source} endpoint={endpoint} crabbox_servers={} (Hetzner has no identity \
             API: the token reaches its project)",
            leases.len()
        ));
    }
    Ok(0)
}

#[cfg(not(feature = "hetzner"))]
fn hetzner_policy() -> CliResult<serde_json::Value> {
    Err(no_hetzner())
}

#[cfg(not(feature = "hetzner"))]
#[expect(clippy::unused_async, reason = "the hetzner build's identity awaits")]
async fn hetzner_identity(_json: bool) -> CliResult<u8> {
    Err(no_hetzner())
}

#[cfg(not(feature = "hetzner"))]
fn no_hetzner() -> CliError {
    CliError::msg(
        ExitStatus::Usage,
        "this crabbox was built without Hetzner support (cargo feature `hetzner`)",
    )
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
#[expect(
    clippy::unnecessary_wraps,
    reason = "the build without the aws feature fails here"
)]
fn mac_policy_document() -> CliResult<serde_json::Value> {
    let mut policy = crabbox_aws::policy::policy_document();
    let hosts = crabbox_aws::hosts::host_policy();
    if let (Some(statements), Some(more)) = (
        policy["Statement"].as_array_mut(),
        hosts["Statement"].as_array(),
    ) {
        statements.extend(more.iter().cloned());
    }
    Ok(policy)
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
fn mac_policy_document() -> CliResult<serde_json::Value> {
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
