//! One try at launching a machine, as the lease records it (`provisioningAttempts[]`,
//! spec/coordinator.md §2.2), and [`Refusal`], the way a provider tells the fallback driver
//! why a try failed: an error of the shared vocabulary plus what fallback needs to know.

use std::fmt;

use crabbox_core::machine::Market;
use serde::{Deserialize, Serialize};

use crate::ProviderError;

/// Why a try failed, as far as fallback is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// The cloud has no room for this type here now.
    Capacity,
    /// An account limit (vCPUs, spot instances) is reached.
    Quota,
    /// This type (or market) is not offered here.
    Unsupported,
    /// The account may not launch this type (free-tier restrictions and the like).
    Policy,
    /// Something this region lacks, such as an image for the architecture.
    Region,
    /// Nothing else will work either: bad credentials, a malformed request.
    Fatal,
    /// The API asked us to slow down.
    RateLimited,
    /// The API failed in a way that may pass (5xx, a dropped connection).
    Transient,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Capacity => "capacity",
            Self::Quota => "quota",
            Self::Unsupported => "unsupported",
            Self::Policy => "policy",
            Self::Region => "region",
            Self::Fatal => "fatal",
            Self::RateLimited => "rate_limited",
            Self::Transient => "transient",
        }
    }

    /// A refusal of this plan that another type, market or region may not meet.
    pub fn moves_on(self) -> bool {
        matches!(
            self,
            Self::Capacity | Self::Quota | Self::Unsupported | Self::Policy | Self::Region
        )
    }

    /// A failure of the API rather than of the plan: the same plan is tried again.
    pub fn retries(self) -> bool {
        matches!(self, Self::RateLimited | Self::Transient)
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One try, in the shape of the coordinator lease's `provisioningAttempts[]` entries
/// (`region`, `serverType`, `market`, `category`, `message`), plus the provider's error code
/// and how long the call took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProvisioningAttempt {
    pub region: String,
    pub server_type: String,
    pub market: Market,
    pub category: Category,
    /// The provider's own code (`InsufficientInstanceCapacity`); empty when it gave none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub duration_ms: u64,
}

impl fmt::Display for ProvisioningAttempt {
    /// `c7a.48xlarge spot in eu-west-1: InsufficientInstanceCapacity (capacity)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.code.is_empty() {
            &self.message
        } else {
            &self.code
        };
        write!(
            f,
            "{} {} in {}: {what} ({})",
            self.server_type, self.market, self.region, self.category
        )
    }
}

/// Why one try failed: the error in the shared vocabulary, how fallback treats it, the
/// provider's code, and whether the same type may still be had on-demand.
#[derive(Debug)]
pub struct Refusal {
    pub error: ProviderError,
    pub category: Category,
    pub code: String,
    /// A spot refusal that on-demand capacity may not share (capacity, quota, spot price).
    pub spot_recoverable: bool,
}

impl Refusal {
    pub fn new(category: Category, code: impl Into<String>, error: ProviderError) -> Self {
        Self {
            error,
            category,
            code: code.into(),
            spot_recoverable: false,
        }
    }

    /// Marks the refusal as one that on-demand capacity may not share.
    #[must_use]
    pub fn spot_recoverable(mut self, recoverable: bool) -> Self {
        self.spot_recoverable = recoverable;
        self
    }
}

/// A provider without codes of its own still gets fallback: the error's kind is its category.
impl From<ProviderError> for Refusal {
    fn from(error: ProviderError) -> Self {
        let category = match &error {
            ProviderError::Capacity(_) => Category::Capacity,
            ProviderError::Quota(_) => Category::Quota,
            ProviderError::RateLimited(_) => Category::RateLimited,
            ProviderError::Transient(_) => Category::Transient,
            ProviderError::NotFound(_)
            | ProviderError::InvalidSpec(_)
            | ProviderError::Auth(_)
            | ProviderError::Io { .. } => Category::Fatal,
        };
        let recoverable = matches!(category, Category::Capacity | Category::Quota);
        Self::new(category, "", error).spot_recoverable(recoverable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_uses_the_coordinator_field_names() {
        let attempt = ProvisioningAttempt {
            region: "eu-west-1".into(),
            server_type: "c7a.48xlarge".into(),
            market: Market::OnDemand,
            category: Category::RateLimited,
            code: "RequestLimitExceeded".into(),
            message: "Request limit exceeded.".into(),
            duration_ms: 12,
        };
        let json = serde_json::to_value(&attempt).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"region": "eu-west-1", "serverType": "c7a.48xlarge",
                "market": "on-demand", "category": "rate_limited", "code": "RequestLimitExceeded",
                "message": "Request limit exceeded.", "durationMs": 12})
        );
        // Records the old coordinator wrote (no code, no duration) still read.
        let old: ProvisioningAttempt = serde_json::from_str(
            r#"{"region":"us-east-1","serverType":"c7a.8xlarge","market":"spot","category":"quota","message":"quota L-34B43A08 in us-east-1 is 32 vCPUs; c7a.8xlarge needs 32 vCPUs"}"#,
        )
        .unwrap();
        assert_eq!((old.category, old.duration_ms), (Category::Quota, 0));
        assert!(!serde_json::to_string(&old).unwrap().contains("\"code\""));
    }

    #[test]
    fn plain_provider_errors_classify_by_kind() {
        let capacity = Refusal::from(ProviderError::Capacity("full".into()));
        assert_eq!(capacity.category, Category::Capacity);
        assert!(capacity.spot_recoverable && capacity.category.moves_on());
        let auth = Refusal::from(ProviderError::Auth("bad key".into()));
        assert_eq!(auth.category, Category::Fatal);
        assert!(!auth.category.moves_on() && !auth.category.retries());
        assert!(
            Refusal::from(ProviderError::RateLimited("slow".into()))
                .category
                .retries()
        );
    }
}
