//! The cloud providers this build includes, each behind a cargo feature (`aws`, on by
//! default), built from the resolved configuration. `local` and `ssh` come from
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
        _ => Ok(None),
    }
}

#[cfg(feature = "aws")]
fn aws(config: &Config) -> CliResult<Arc<dyn Provider>> {
    let settings = crabbox_aws::AwsSettings::from_config(config, cost_rates()?);
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

/// `CRABBOX_COST_RATES_JSON`: operator prices per provider and type.
#[cfg(feature = "aws")]
fn cost_rates() -> CliResult<crabbox_providers::cloud::cost::CostRates> {
    let text = std::env::var("CRABBOX_COST_RATES_JSON").unwrap_or_default();
    crabbox_providers::cloud::cost::CostRates::parse(&text)
        .map_err(|e| CliError::msg(ExitStatus::Usage, e.to_string()))
}
