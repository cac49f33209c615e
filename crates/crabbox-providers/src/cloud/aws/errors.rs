//! EC2 error codes in the shared vocabulary (spec/providers.md §2.2). [`provider_error`] maps
//! any EC2 call's error; [`classify_launch`] adds what the fallback driver needs to know about
//! a refused `RunInstances`. The codes are matched exactly, never searched for in messages;
//! only the few codes that EC2 reuses for unrelated problems have their message read.

use crate::ProviderError;
use crate::cloud::attempt::{Category, Refusal};

/// Codes meaning the credentials or the account cannot make the call at all.
const AUTH: &[&str] = &[
    "AuthFailure",
    "Blocked",
    "ExpiredToken",
    "InvalidClientTokenId",
    "OptInRequired",
    "PendingVerification",
    "SignatureDoesNotMatch",
    "UnauthorizedOperation",
    "UnrecognizedClientException",
];

const THROTTLING: &[&str] = &[
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
];

const TRANSIENT: &[&str] = &[
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "Unavailable",
];

/// No room for the type here now. `SpotMaxPriceTooLow` is the spot market's way of saying
/// the same at the price we offer; on-demand may still have it.
const CAPACITY: &[&str] = &[
    "InsufficientInstanceCapacity",
    "InsufficientHostCapacity",
    "InsufficientCapacityOnHost",
    "UnfulfillableCapacity",
    "SpotMaxPriceTooLow",
];

/// Account limits. Spot and on-demand vCPUs are separate quotas.
const QUOTA: &[&str] = &["MaxSpotInstanceCountExceeded", "VcpuLimitExceeded"];

/// Any EC2 call's error code and message in the shared vocabulary. `operation` names the call
/// (`RunInstances`) for messages that would otherwise be a bare code. Codes of missing
/// resources (`*.NotFound`) become [`ProviderError::InvalidSpec`] here, since they name what
/// the request referred to; a caller for which "missing" means "already done" (terminating an
/// instance) checks [`is_not_found`] first.
pub fn provider_error(operation: &str, code: &str, message: &str) -> ProviderError {
    let detail = if message.is_empty() {
        format!("AWS {operation} failed ({code})")
    } else {
        format!("AWS {operation} failed ({code}): {message}")
    };
    if AUTH.contains(&code) {
        // The old tool's wording; the code tells an administrator which permission is missing.
        ProviderError::Auth(format!("AWS {operation} rejected request ({code})"))
    } else if THROTTLING.contains(&code) {
        ProviderError::RateLimited(detail)
    } else if TRANSIENT.contains(&code) {
        ProviderError::Transient(detail)
    } else if CAPACITY.contains(&code) {
        ProviderError::Capacity(detail)
    } else if QUOTA.contains(&code) {
        ProviderError::Quota(detail)
    } else {
        ProviderError::InvalidSpec(detail)
    }
}

/// Whether the code says the thing asked about does not exist (`InvalidInstanceID.NotFound`,
/// `InvalidKeyPair.NotFound`).
pub fn is_not_found(code: &str) -> bool {
    code.ends_with(".NotFound")
}

/// A refused `RunInstances`, classified for the fallback driver.
pub fn classify_launch(code: &str, message: &str) -> Refusal {
    let mentions_spot = message.to_ascii_lowercase().contains("spot");
    let (category, spot_recoverable) = if CAPACITY.contains(&code) {
        (Category::Capacity, true)
    } else if QUOTA.contains(&code) {
        (Category::Quota, true)
    } else if THROTTLING.contains(&code) {
        (Category::RateLimited, false)
    } else if TRANSIENT.contains(&code) {
        (Category::Transient, false)
    } else {
        match code {
            // The Mac Dedicated Host went away or is busy: another Mac type may have a host.
            "InvalidHostID.NotFound" => (Category::Capacity, false),
            // EC2 says `Unsupported` and `InvalidParameterValue` for a type not offered in
            // this zone or region, or not on the spot market; another type or market may be.
            "Unsupported" | "InvalidParameterValue" => (Category::Unsupported, mentions_spot),
            "InvalidParameterCombination" if restricts_the_type(message) => {
                (Category::Policy, mentions_spot)
            }
            _ => (Category::Fatal, false),
        }
    };
    let error = provider_error("RunInstances", code, message);
    Refusal::new(category, code, error).spot_recoverable(spot_recoverable)
}

/// `InvalidParameterCombination` is also EC2's answer to an account that may not launch the
/// type (free tier); only that reading is a refusal of the type rather than a bad request.
fn restricts_the_type(message: &str) -> bool {
    ["Free Tier", "eligible", "InstanceType", "instance type"]
        .iter()
        .any(|phrase| message.contains(phrase))
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::*;

    /// Every code the fallback cares about, with how it is treated, in one reviewed table.
    #[test]
    fn launch_refusals() {
        let cases = [
            (
                "InsufficientInstanceCapacity",
                "We currently do not have sufficient capacity.",
            ),
            ("UnfulfillableCapacity", "Unable to fulfill capacity."),
            (
                "SpotMaxPriceTooLow",
                "Your Spot request price of 0.1 is lower than the minimum.",
            ),
            (
                "MaxSpotInstanceCountExceeded",
                "Max spot instance count exceeded.",
            ),
            (
                "VcpuLimitExceeded",
                "You have requested more vCPU capacity than allowed.",
            ),
            (
                "InvalidHostID.NotFound",
                "The host ID 'h-0123' does not exist.",
            ),
            (
                "Unsupported",
                "The requested configuration is currently not supported.",
            ),
            (
                "Unsupported",
                "Spot instances are not supported for this instance type.",
            ),
            (
                "InvalidParameterValue",
                "Invalid value 'x9.large' for InstanceType.",
            ),
            (
                "InvalidParameterCombination",
                "The specified instance type is not eligible for Free Tier.",
            ),
            (
                "InvalidParameterCombination",
                "Network interfaces and subnet conflict.",
            ),
            ("RequestLimitExceeded", "Request limit exceeded."),
            ("InternalError", "An internal error has occurred."),
            (
                "AuthFailure",
                "AWS was not able to validate the provided access credentials",
            ),
            (
                "UnauthorizedOperation",
                "You are not authorized to perform this operation.",
            ),
            ("OptInRequired", "You are not subscribed to this service."),
            (
                "InvalidAMIID.NotFound",
                "The image id '[ami-1]' does not exist",
            ),
            (
                "IdempotentParameterMismatch",
                "Client token reused with other parameters.",
            ),
        ];
        let mut table = String::new();
        for (code, message) in cases {
            let refusal = classify_launch(code, message);
            let _ = writeln!(
                table,
                "{code:<29} {:<12} spot_recoverable={:<5} {:?}",
                refusal.category.as_str(),
                refusal.spot_recoverable,
                refusal.error
            );
        }
        insta::assert_snapshot!(table);
    }

    #[test]
    fn other_calls_map_codes_to_the_vocabulary() {
        assert!(is_not_found("InvalidInstanceID.NotFound") && !is_not_found("NotFoundish"));
        assert!(matches!(
            provider_error("RunInstances", "InvalidAMIID.NotFound", "no such image"),
            ProviderError::InvalidSpec(m)
                if m == "AWS RunInstances failed (InvalidAMIID.NotFound): no such image"
        ));
        assert!(matches!(
            provider_error("DescribeInstances", "Throttling", ""),
            ProviderError::RateLimited(m) if m == "AWS DescribeInstances failed (Throttling)"
        ));
        assert!(matches!(
            provider_error("CreateTags", "ExpiredToken", "token expired"),
            ProviderError::Auth(m) if m == "AWS CreateTags rejected request (ExpiredToken)"
        ));
    }
}
