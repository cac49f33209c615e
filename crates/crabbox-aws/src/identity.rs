//! Who the credentials are (`admin providers identity`) and what the account may launch
//! (the vCPU quotas `doctor` reports).

use crabbox_core::machine::Market;
use crabbox_providers::ProviderError;

use crate::client::{Aws, call};
use crate::policy::Action;

/// STS `GetCallerIdentity`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Identity {
    pub account: String,
    pub arn: String,
    #[serde(rename = "userID")]
    pub user_id: String,
}

pub async fn caller_identity(aws: &Aws) -> Result<Identity, ProviderError> {
    let out = call(
        Action::GetCallerIdentity,
        aws.sts().get_caller_identity().send(),
    )
    .await?;
    Ok(Identity {
        account: out.account().unwrap_or_default().to_owned(),
        arn: out.arn().unwrap_or_default().to_owned(),
        user_id: out.user_id().unwrap_or_default().to_owned(),
    })
}

/// The Service Quotas code of the account's vCPU limit for standard instances of a market.
pub fn vcpu_quota_code(market: Market) -> &'static str {
    match market {
        Market::Spot => "L-34B43A08",
        Market::OnDemand => "L-1216C47A",
    }
}

/// The applied vCPU quota of `market` in `region`; `Ok(None)` when Service Quotas does not
/// know it (a partition or emulator without EC2 quotas).
pub async fn vcpu_quota(
    aws: &Aws,
    region: &str,
    market: Market,
) -> Result<Option<f64>, ProviderError> {
    let found = call(
        Action::GetServiceQuota,
        aws.quotas(region)
            .get_service_quota()
            .service_code("ec2")
            .quota_code(vcpu_quota_code(market))
            .send(),
    )
    .await;
    match found {
        Ok(out) => Ok(out
            .quota()
            .and_then(aws_sdk_servicequotas::types::ServiceQuota::value)),
        Err(e) if e.code == "NoSuchResourceException" => Ok(None),
        Err(e) => Err(e.error),
    }
}

/// The IAM principal a policy is attached to for an identity: the user, or for an assumed
/// role the role (not the session).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PolicyTarget {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub name: String,
}

/// Reads the principal from a caller ARN (`arn:aws:iam::1:user/ci`,
/// `arn:aws:sts::1:assumed-role/Deploy/session`); `None` for the root user and other shapes.
pub fn policy_target(arn: &str) -> Option<PolicyTarget> {
    let resource = arn.splitn(6, ':').nth(5)?;
    let mut parts = resource.split('/');
    let kind = parts.next()?;
    let name = match kind {
        // A user may have a path: `user/engineering/ci`; the name is the last part.
        "user" => resource.rsplit('/').next()?,
        "assumed-role" | "role" => parts.next()?,
        _ => return None,
    };
    let kind = if kind == "user" { "user" } else { "role" };
    (!name.is_empty()).then(|| PolicyTarget {
        kind,
        name: name.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_targets_from_caller_arns() {
        let target = |arn| policy_target(arn).map(|t| format!("{} {}", t.kind, t.name));
        assert_eq!(
            target("arn:aws:iam::123456789012:user/ci").as_deref(),
            Some("user ci")
        );
        assert_eq!(
            target("arn:aws:iam::123456789012:user/eng/ci").as_deref(),
            Some("user ci")
        );
        assert_eq!(
            target("arn:aws:sts::123456789012:assumed-role/Deploy/alice@example.com").as_deref(),
            Some("role Deploy")
        );
        assert_eq!(target("arn:aws:iam::123456789012:root"), None);
        assert_eq!(target("not an arn"), None);
    }
}
