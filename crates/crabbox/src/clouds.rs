//! The cloud providers this build includes, each behind a cargo feature (`aws`, `azure`,
//! `hetzner`, on by default), built from the resolved configuration. `local` and `ssh` come from
//! `crabbox_providers::provider_for`.

use std::sync::Arc;

use crabbox_api::ExitStatus;
use crabbox_core::config::Config;
use crabbox_providers::Provider;

use crate::error::{CliError, CliResult};

/// The cloud provider `name`, or `None` when `name` is not a cloud this module builds.
pub fn provider(name: &str, config: &Config) -> CliResult<Option<Arc<dyn Provider>>> {
    match name.trim().to_ascii_lowercase().as_str() {
        "aws" => aws(config).map(Some),
        "azure" => azure(config).map(Some),
        "hetzner" => hetzner(config).map(Some),
        _ => Ok(None),
    }
}

#[cfg(feature = "aws")]
fn aws(config: &Config) -> CliResult<Arc<dyn Provider>> {
    let mut settings = crabbox_aws::AwsSettings::from_config(config, cost_rates()?);
    settings.cache_dir = Some(crate::paths::state_dir().join("aws"));
    Ok(Arc::new(crabbox_aws::AwsProvider::new(settings)))
}

#[cfg(not(feature = "aws"))]
fn aws(_config: &Config) -> CliResult<Arc<dyn Provider>> {
    Err(CliError::msg(
        ExitStatus::Usage,
        "this crabbox was built without AWS support (cargo feature `aws`)",
    )
    .hint("build with `cargo build --features aws`, or use provider local or ssh"))
}

#[cfg(feature = "azure")]
fn azure(config: &Config) -> CliResult<Arc<dyn Provider>> {
    Ok(Arc::new(azure_provider(config)?))
}

/// The Azure provider itself, for the commands that read its settings too.
#[cfg(feature = "azure")]
pub(crate) fn azure_provider(config: &Config) -> CliResult<crabbox_azure::AzureProvider> {
    let mut settings = crabbox_azure::AzureSettings::from_config(config, cost_rates()?, |name| {
        std::env::var(name).ok()
    });
    settings.cache_dir = Some(crate::paths::state_dir().join("azure"));
    crabbox_azure::AzureProvider::new(settings)
        .map_err(|e| CliError::msg(ExitStatus::Usage, e.to_string()))
}

#[cfg(not(feature = "azure"))]
fn azure(_config: &Config) -> CliResult<Arc<dyn Provider>> {
    Err(CliError::msg(
        ExitStatus::Usage,
        "this crabbox was built without Azure support (cargo feature `azure`)",
    )
    .hint("build with `cargo build --features azure`, or use provider local or ssh"))
}

#[cfg(feature = "hetzner")]
fn hetzner(config: &Config) -> CliResult<Arc<dyn Provider>> {
    Ok(Arc::new(hetzner_provider(config)?))
}

/// The Hetzner provider itself, for the commands that read its settings too.
#[cfg(feature = "hetzner")]
pub(crate) fn hetzner_provider(config: &Config) -> CliResult<crabbox_hetzner::HetznerProvider> {
    let settings = crabbox_hetzner::HetznerSettings::from_config(config, cost_rates()?, |name| {
        std::env::var(name).ok()
    });
    crabbox_hetzner::HetznerProvider::new(settings)
        .map_err(|e| CliError::msg(ExitStatus::Usage, e.to_string()))
}

#[cfg(not(feature = "hetzner"))]
fn hetzner(_config: &Config) -> CliResult<Arc<dyn Provider>> {
    Err(CliError::msg(
        ExitStatus::Usage,
        "this crabbox was built without Hetzner support (cargo feature `hetzner`)",
    )
    .hint("build with `cargo build --features hetzner`, or use provider local or ssh"))
}

/// `CRABBOX_COST_RATES_JSON`: operator prices per provider and type.
#[cfg(any(feature = "aws", feature = "azure", feature = "hetzner"))]
fn cost_rates() -> CliResult<crabbox_providers::cloud::cost::CostRates> {
    let text = std::env::var("CRABBOX_COST_RATES_JSON").unwrap_or_default();
    crabbox_providers::cloud::cost::CostRates::parse(&text)
        .map_err(|e| CliError::msg(ExitStatus::Usage, e.to_string()))
}

/// One `doctor` line of a cloud provider.
#[derive(Debug)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub details: String,
    pub hint: String,
}

/// The checks of provider `name` when it is a cloud this build has; none otherwise.
#[cfg_attr(
    not(any(feature = "aws", feature = "azure", feature = "hetzner")),
    expect(clippy::unused_async, reason = "the cloud builds' checks await")
)]
pub async fn doctor(name: &str, config: &Config) -> Vec<Check> {
    match name {
        #[cfg(feature = "aws")]
        "aws" => aws_doctor(config).await,
        #[cfg(feature = "azure")]
        "azure" => azure_doctor(config).await,
        #[cfg(feature = "hetzner")]
        "hetzner" => hetzner_doctor(config).await,
        _ => {
            let _ = config;
            Vec::new()
        }
    }
}

/// `aws-identity` (STS) and `aws-quota` (Service Quotas: the spot and on-demand vCPU limits
/// in the region against what the configured class's first type needs).
#[cfg(feature = "aws")]
async fn aws_doctor(config: &Config) -> Vec<Check> {
    use crabbox_aws::identity;
    use crabbox_core::machine::Market;
    let region = &config.aws.region;
    let aws = crabbox_aws::client::Aws::load(region).await;
    let mut checks = Vec::new();
    let who = identity::caller_identity(&aws).await;
    checks.push(Check {
        name: "aws-identity".into(),
        ok: who.is_ok(),
        details: match &who {
            Ok(who) => format!("account={} arn={} region={region}", who.account, who.arn),
            Err(e) => e.to_string(),
        },
        hint: "set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run `aws sso login`"
            .into(),
    });
    if who.is_err() {
        return checks;
    }
    let request = crabbox_providers::cloud::MachineRequest {
        class: &config.class,
        server_type: config.server_type.as_deref(),
        target: config.target,
        windows_mode: config.windows_mode,
        architecture: config.architecture,
    };
    let first = crabbox_providers::cloud::aws::CATALOG
        .candidates(&request)
        .ok()
        .and_then(|c| c.types.first().cloned());
    let needs = first
        .as_deref()
        .and_then(crabbox_providers::cloud::aws::shape::vcpus);
    for market in [Market::Spot, Market::OnDemand] {
        let quota = identity::vcpu_quota(&aws, region, market).await;
        let code = identity::vcpu_quota_code(market);
        let (ok, details) = match (&quota, needs) {
            (Ok(Some(have)), Some(needs)) if f64::from(needs) > *have => (
                false,
                format!(
                    "{market} vCPU quota {code} in {region} is {have}; {} needs {needs}",
                    first.clone().unwrap_or_default()
                ),
            ),
            (Ok(Some(have)), _) => (
                true,
                format!("{market} vCPU quota {code} in {region} is {have}"),
            ),
            (Ok(None), _) => (
                true,
                format!(
                    "{market} vCPU quota {code} in {region} is unknown (Service Quotas does not report it)"
                ),
            ),
            (Err(e), _) => (false, e.to_string()),
        };
        checks.push(Check {
            name: format!("aws-quota-{market}"),
            ok,
            details,
            hint: "request a quota increase in Service Quotas, or choose a smaller --class".into(),
        });
    }
    checks
}

/// `hetzner-auth` (the token reaches the project: one `GET /servers` of Crabbox's servers,
/// which also counts them) and `hetzner-type` (the configured class's first type and its
/// price in the location).
#[cfg(feature = "hetzner")]
async fn hetzner_doctor(config: &Config) -> Vec<Check> {
    use crabbox_providers::Provider as _;
    let Ok(provider) = hetzner_provider(config) else {
        return Vec::new();
    };
    let settings = provider.settings();
    let location = &settings.location;
    let leases = provider.inventory().await;
    let mut checks = vec![Check {
        name: "hetzner-auth".into(),
        ok: leases.is_ok(),
        details: match &leases {
            Ok(leases) => format!(
                "auth=ready endpoint={} location={location} leases={}",
                settings.endpoint,
                leases.len()
            ),
            Err(e) => e.to_string(),
        },
        hint: "set HCLOUD_TOKEN to a read-write API token of the project".into(),
    }];
    if leases.is_err() {
        return checks;
    }
    let request = crabbox_providers::cloud::MachineRequest {
        class: &config.class,
        server_type: config.server_type.as_deref(),
        target: config.target,
        windows_mode: config.windows_mode,
        architecture: config.architecture,
    };
    let first = crabbox_providers::cloud::hetzner::CATALOG
        .candidates(&request)
        .map(|c| c.types[0].clone());
    checks.push(Check {
        name: "hetzner-type".into(),
        ok: first.is_ok(),
        details: match &first {
            Ok(first) => format!("default_type={first} class={}", config.class),
            Err(e) => e.to_string(),
        },
        hint: "choose a class (tiny … beast) or a Hetzner server type".into(),
    });
    checks
}

/// `azure-auth` (the credentials reach the subscription: `GET /subscriptions/{id}`) and
/// `azure-size` (the configured class's first size).
#[cfg(feature = "azure")]
async fn azure_doctor(config: &Config) -> Vec<Check> {
    let provider = match azure_provider(config) {
        Ok(provider) => provider,
        Err(e) => {
            return vec![Check {
                name: "azure-auth".into(),
                ok: false,
                details: e.report(),
                hint: AZURE_AUTH_HINT.into(),
            }];
        }
    };
    let settings = provider.settings();
    let who = provider.identity().await;
    let mut checks = vec![Check {
        name: "azure-auth".into(),
        ok: who.is_ok(),
        details: match &who {
            Ok(who) => format!(
                "auth=ready credential={} subscription={} location={} group={}",
                provider.credential_kind(),
                who["subscriptionId"].as_str().unwrap_or_default(),
                settings.location,
                settings.resource_group
            ),
            Err(e) => e.to_string(),
        },
        hint: AZURE_AUTH_HINT.into(),
    }];
    if who.is_err() {
        return checks;
    }
    let request = crabbox_providers::cloud::MachineRequest {
        class: &config.class,
        server_type: config.server_type.as_deref(),
        target: config.target,
        windows_mode: config.windows_mode,
        architecture: config.architecture,
    };
    let first = crabbox_providers::cloud::azure::CATALOG
        .candidates(&request)
        .map(|c| c.types[0].clone());
    checks.push(Check {
        name: "azure-size".into(),
        ok: first.is_ok(),
        details: match &first {
            Ok(first) => format!("default_size={first} class={}", config.class),
            Err(e) => e.to_string(),
        },
        hint: "choose a class (tiny … beast) or an Azure VM size".into(),
    });
    checks
}

#[cfg(feature = "azure")]
const AZURE_AUTH_HINT: &str = "set AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET and \
     AZURE_SUBSCRIPTION_ID (a service principal), or sign in with `az login`";
