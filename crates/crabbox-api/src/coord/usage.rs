//! Usage summary, cost limits and `whoami` (spec coordinator §2.1, §7).

use serde::{Deserialize, Serialize};

/// `GET /v1/whoami`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Whoami {
    pub owner: String,
    pub org: String,
    pub auth: String,
    pub admin: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_expires_at: Option<String>,
}

/// One group of a usage summary (`byOwner`, `byOrg`, …).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct UsageGroup {
    pub key: String,
    pub leases: u64,
    pub active_leases: u64,
    pub runtime_seconds: u64,
    #[serde(rename = "estimatedUSD")]
    pub estimated_usd: f64,
    #[serde(rename = "reservedUSD")]
    pub reserved_usd: f64,
}

/// `usage` in `GET /v1/usage`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct UsageSummary {
    pub month: String,
    pub scope: String,
    pub owner: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    pub leases: u64,
    pub active_leases: u64,
    pub runtime_seconds: u64,
    #[serde(rename = "estimatedUSD")]
    pub estimated_usd: f64,
    #[serde(rename = "reservedUSD")]
    pub reserved_usd: f64,
    pub by_owner: Vec<UsageGroup>,
    pub by_org: Vec<UsageGroup>,
    pub by_provider: Vec<UsageGroup>,
    pub by_server_type: Vec<UsageGroup>,
}

/// `limits` in `GET /v1/usage`; `0` means off.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct CostLimits {
    pub max_active_leases: u64,
    pub max_active_leases_per_owner: u64,
    pub max_active_leases_per_org: u64,
    pub capacity_admin_owners: Vec<String>,
    pub max_active_leases_per_capacity_admin: u64,
    #[serde(rename = "maxMonthlyUSD")]
    pub max_monthly_usd: f64,
    #[serde(rename = "maxMonthlyUSDPerOwner")]
    pub max_monthly_usd_per_owner: f64,
    #[serde(rename = "maxMonthlyUSDPerOrg")]
    pub max_monthly_usd_per_org: f64,
}
