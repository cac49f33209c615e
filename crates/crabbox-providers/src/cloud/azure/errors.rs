//! Azure error codes in the shared vocabulary (spec/providers.md §2.3). Resource Manager
//! answers `{"error": {"code", "message", "details"}}`, a long-running operation that ends
//! `Failed` carries the same `error` in its status (allocation failures arrive that way), and
//! the identity platform's token endpoint answers `{"error": "invalid_client", …}`.
//! [`provider_error`] maps any call's error; [`classify_create`] adds what the fallback driver
//! needs about a refused VM create. Codes are matched exactly; only the codes Azure reuses for
//! unrelated problems (`OperationNotAllowed`, `InvalidParameter`) have their message read.

use crate::ProviderError;
use crate::cloud::attempt::{Category, Refusal};

/// The credentials are wrong or expired, the principal may not do this, or the subscription
/// is not one it can see. The last two are the identity platform's (OAuth) codes.
const AUTH: &[&str] = &[
    "AuthenticationFailed",
    "AuthenticationFailedInvalidHeader",
    "AuthorizationFailed",
    "ExpiredAuthenticationToken",
    "InvalidAuthenticationToken",
    "InvalidAuthenticationTokenTenant",
    "LinkedAuthorizationFailed",
    "SubscriptionNotFound",
    "invalid_client",
    "unauthorized_client",
];

/// Resource Manager's throttling, per subscription, tenant or resource provider.
const THROTTLING: &[&str] = &[
    "ResourceRequestsThrottled",
    "SubscriptionRequestsThrottled",
    "TenantRequestsThrottled",
    "TooManyRequests",
];

/// Failures that may pass: the same request may be sent again. `AnotherOperationInProgress`
/// is a resource still busy with an earlier change.
const TRANSIENT: &[&str] = &[
    "AnotherOperationInProgress",
    "GatewayTimeout",
    "InternalOperationError",
    "InternalServerError",
    "RetryableError",
    "ServiceUnavailable",
];

/// No room for the size here now. `SkuNotAvailable` is both a size restricted for capacity in
/// the location and, by Azure's Spot error-code page, no Spot capacity for it; a Spot price
/// above our maximum is the spot market's way of saying the same (we bid the on-demand price,
/// so it should not come).
const CAPACITY: &[&str] = &[
    "AllocationFailed",
    "OverconstrainedAllocationRequest",
    "SkuNotAvailable",
    "SpotPriceGreaterThanProvidedMaxPrice",
    "ZonalAllocationFailed",
];

/// The thing asked about does not exist (or its group or parent does not).
const NOT_FOUND: &[&str] = &[
    "NotFound",
    "ParentResourceNotFound",
    "ResourceGroupNotFound",
    "ResourceNotFound",
];

/// Any call's error in the shared vocabulary; `what` names the call (`PUT virtualMachines`).
/// `status` is the HTTP status, or 0 for an error read from a long-running operation's status,
/// which has none of its own; an empty code or message is left out of the text.
pub fn provider_error(what: &str, status: u16, code: &str, message: &str) -> ProviderError {
    let said = describe(status, code, message);
    let detail = format!("Azure {what} failed{said}");
    if AUTH.contains(&code) || status == 401 {
        let refused = format!("Azure {what} was refused{said}");
        ProviderError::Auth(format!(
            "{}; check AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET and \
             AZURE_SUBSCRIPTION_ID (a service principal with a role such as Contributor on the \
             subscription)",
            refused.trim_end_matches('.')
        ))
    } else if THROTTLING.contains(&code) || status == 429 {
        ProviderError::RateLimited(detail)
    } else if TRANSIENT.contains(&code) || status >= 500 {
        ProviderError::Transient(detail)
    } else if CAPACITY.contains(&code) {
        ProviderError::Capacity(detail)
    } else if is_quota(code, message) {
        ProviderError::Quota(detail)
    } else if is_not_found(status, code) {
        ProviderError::NotFound(detail)
    } else {
        ProviderError::InvalidSpec(detail)
    }
}

/// Whether the error says the thing asked about does not exist, so that deleting it is already
/// done. A 404 without a code counts; a 404 with another code (`SubscriptionNotFound`,
/// `InvalidResourceType`) names a wrong request instead.
pub fn is_not_found(status: u16, code: &str) -> bool {
    NOT_FOUND.contains(&code) || (status == 404 && code.is_empty())
}

/// A refused VM create (`PUT …/virtualMachines/{name}` or its operation), classified for the
/// fallback driver. The spec's retryable codes (`SkuNotAvailable`, `QuotaExceeded`,
/// `OperationNotAllowed`, `AllocationFailed`, `ZonalAllocationFailed`,
/// `OverconstrainedAllocationRequest`, `NotAvailableForSubscription`) move on to the next size
/// or location; throttling and API failures retry the same plan; anything else stops.
pub fn classify_create(status: u16, code: &str, message: &str) -> Refusal {
    let mentions_spot = message.to_ascii_lowercase().contains("spot");
    let (category, spot_recoverable) = if CAPACITY.contains(&code) {
        (Category::Capacity, true)
    } else if is_quota(code, message) {
        // Spot VMs draw on a quota of their own (low-priority vCPUs), so on-demand may fit.
        (Category::Quota, true)
    } else if THROTTLING.contains(&code) || status == 429 {
        (Category::RateLimited, false)
    } else if TRANSIENT.contains(&code) || status >= 500 {
        (Category::Transient, false)
    } else {
        match code {
            // The size is restricted for this subscription in the location, or Azure Policy
            // denied the VM, most often through an allowed-sizes or allowed-locations
            // assignment: another size or location may pass.
            "NotAvailableForSubscription" | "RequestDisallowedByPolicy" => {
                (Category::Policy, false)
            }
            // Spot is not sold for this size, or not to this subscription: on-demand may be.
            "AzureSpotIsNotSupportedForThisVMSize" => (Category::Unsupported, true),
            "AzureSpotFeatureNotEnabledForSubscription" => (Category::Policy, true),
            // Other than quota, Azure says this for a size or a Spot request the location
            // will not take.
            "OperationNotAllowed" => (Category::Unsupported, mentions_spot),
            "InvalidParameter" if not_offered_here(message) => (Category::Unsupported, false),
            _ => (Category::Fatal, false),
        }
    };
    let error = provider_error("PUT virtualMachines", status, code, message);
    Refusal::new(category, code, error).spot_recoverable(spot_recoverable)
}

/// `QuotaExceeded`, or the compute resource provider's `OperationNotAllowed` for the same
/// ("…results in exceeding approved standardDADSv6Family Cores quota…").
fn is_quota(code: &str, message: &str) -> bool {
    code == "QuotaExceeded"
        || (code == "OperationNotAllowed" && message.to_ascii_lowercase().contains("quota"))
}

/// `InvalidParameter` is also Azure's answer to a size the region does not sell ("The
/// requested VM size `Standard_D3` is not available in the current region"); only that reading
/// is a refusal of the size rather than a bad request.
fn not_offered_here(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("vm size") && lower.contains("not available")
}

/// ` (409 SkuNotAvailable): The requested size…`, without what is missing.
fn describe(status: u16, code: &str, message: &str) -> String {
    let status = (status != 0).then(|| status.to_string());
    let said: Vec<&str> = status
        .as_deref()
        .into_iter()
        .chain((!code.is_empty()).then_some(code))
        .collect();
    let mut out = if said.is_empty() {
        String::new()
    } else {
        format!(" ({})", said.join(" "))
    };
    if !message.is_empty() {
        out.push_str(": ");
        out.push_str(message);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::*;

    /// Every code the fallback cares about, with how it is treated, in one reviewed table.
    /// Messages are Azure's wording, shortened.
    #[test]
    fn create_refusals() {
        let cases = [
            (
                409,
                "SkuNotAvailable",
                "The requested VM size for resource 'Following SKUs have failed for Capacity \
                 Restrictions: Standard_D2ads_v6' is currently not available in location 'eastus'.",
            ),
            (
                0,
                "AllocationFailed",
                "Allocation failed. We do not have sufficient capacity for the requested VM size \
                 in this region.",
            ),
            (
                0,
                "ZonalAllocationFailed",
                "Allocation failed. We do not have sufficient capacity for the requested VM size \
                 in this zone.",
            ),
            (
                0,
                "OverconstrainedAllocationRequest",
                "Allocation failed. VM(s) with the following constraints cannot be allocated.",
            ),
            (
                409,
                "QuotaExceeded",
                "Operation could not be completed as it results in exceeding approved \
                 standardDADSv6Family Cores quota.",
            ),
            (
                409,
                "OperationNotAllowed",
                "Operation could not be completed as it results in exceeding approved \
                 LowPriorityCores quota.",
            ),
            (
                409,
                "OperationNotAllowed",
                "Unable to perform operation since the provided max price is lower than the \
                 current Spot price.",
            ),
            (
                409,
                "OperationNotAllowed",
                "The requested operation is not allowed in location 'eastus'.",
            ),
            (
                409,
                "NotAvailableForSubscription",
                "The requested VM size Standard_D192ds_v6 is not available for subscription \
                 '00000000' in location 'eastus'.",
            ),
            (
                409,
                "AzureSpotIsNotSupportedForThisVMSize",
                "Azure Spot Virtual Machine is not supported for this VM size Standard_F2s_v2.",
            ),
            (
                409,
                "AzureSpotFeatureNotEnabledForSubscription",
                "Subscription not enabled with Azure Spot Virtual Machine feature.",
            ),
            (
                403,
                "RequestDisallowedByPolicy",
                "Resource 'crabbox-1' was disallowed by policy 'Allowed virtual machine size SKUs'.",
            ),
            (
                400,
                "InvalidParameter",
                "The requested VM size Standard_D3 is not available in the current region.",
            ),
            (
                400,
                "InvalidParameter",
                "The value of parameter linuxConfiguration.ssh.publicKeys.keyData is invalid.",
            ),
            (
                429,
                "SubscriptionRequestsThrottled",
                "Number of 'write' requests for subscription '00000000' exceeded.",
            ),
            (429, "TooManyRequests", "Too many requests."),
            (
                500,
                "InternalServerError",
                "Encountered internal server error.",
            ),
            (
                409,
                "AnotherOperationInProgress",
                "Another operation on this or dependent resource is in progress.",
            ),
            (502, "", ""),
            (
                401,
                "ExpiredAuthenticationToken",
                "The access token has expired.",
            ),
            (
                403,
                "AuthorizationFailed",
                "The client does not have authorization to perform action \
                 'Microsoft.Compute/virtualMachines/write'.",
            ),
            (
                404,
                "NotFound",
                "Resource /subscriptions/0/resourceGroups/crabbox-leases/providers/\
                 Microsoft.Network/networkInterfaces/crabbox-1-nic not found.",
            ),
            (
                404,
                "PlatformImageNotFound",
                "The platform image 'Canonical:ubuntu-26_04-lts:server:latest' is not available.",
            ),
        ];
        let mut table = String::new();
        for (status, code, message) in cases {
            let refusal = classify_create(status, code, message);
            let _ = writeln!(
                table,
                "{status:>3} {code:<41} {:<12} spot_recoverable={:<5} {:?}",
                refusal.category.as_str(),
                refusal.spot_recoverable,
                refusal.error
            );
        }
        insta::assert_snapshot!(table);
    }

    #[test]
    fn any_call_maps_codes_to_the_vocabulary() {
        let kind = |status, code, message| match provider_error("GET x", status, code, message) {
            ProviderError::Auth(_) => "auth",
            ProviderError::RateLimited(_) => "rate_limited",
            ProviderError::Transient(_) => "transient",
            ProviderError::Capacity(_) => "capacity",
            ProviderError::Quota(_) => "quota",
            ProviderError::NotFound(_) => "not_found",
            ProviderError::InvalidSpec(_) => "invalid_spec",
            ProviderError::Io { .. } => "io",
        };
        let cases = [
            (401, "AuthenticationFailed", "", "auth"),
            (401, "InvalidAuthenticationToken", "", "auth"),
            (401, "ExpiredAuthenticationToken", "", "auth"),
            (403, "AuthorizationFailed", "", "auth"),
            (
                401,
                "invalid_client",
                "AADSTS7000215: Invalid client secret",
                "auth",
            ),
            (
                400,
                "unauthorized_client",
                "AADSTS700016: not found",
                "auth",
            ),
            (404, "SubscriptionNotFound", "", "auth"),
            (401, "", "", "auth"),
            (429, "SubscriptionRequestsThrottled", "", "rate_limited"),
            (429, "", "", "rate_limited"),
            (200, "TooManyRequests", "", "rate_limited"),
            (500, "InternalServerError", "", "transient"),
            (503, "ServiceUnavailable", "", "transient"),
            (409, "AnotherOperationInProgress", "", "transient"),
            (0, "RetryableError", "", "transient"),
            (504, "", "", "transient"),
            (409, "SkuNotAvailable", "", "capacity"),
            (0, "AllocationFailed", "", "capacity"),
            (0, "ZonalAllocationFailed", "", "capacity"),
            (0, "OverconstrainedAllocationRequest", "", "capacity"),
            (409, "QuotaExceeded", "", "quota"),
            (
                409,
                "OperationNotAllowed",
                "exceeding approved Cores Quota",
                "quota",
            ),
            (
                409,
                "OperationNotAllowed",
                "Disk is attached to VM",
                "invalid_spec",
            ),
            (404, "NotFound", "", "not_found"),
            (404, "ResourceNotFound", "", "not_found"),
            (404, "ResourceGroupNotFound", "", "not_found"),
            (404, "ParentResourceNotFound", "", "not_found"),
            (404, "", "", "not_found"),
            (404, "InvalidResourceType", "", "invalid_spec"),
            (409, "NotAvailableForSubscription", "", "invalid_spec"),
            (400, "InvalidParameter", "", "invalid_spec"),
        ];
        for (status, code, message, expected) in cases {
            assert_eq!(
                kind(status, code, message),
                expected,
                "{status} {code} {message}"
            );
        }
    }

    #[test]
    fn errors_name_the_call_and_auth_says_what_to_check() {
        let auth = provider_error(
            "PUT virtualMachines",
            403,
            "AuthorizationFailed",
            "The client does not have authorization",
        );
        let text = auth.to_string();
        for variable in [
            "AZURE_TENANT_ID",
            "AZURE_CLIENT_ID",
            "AZURE_CLIENT_SECRET",
            "AZURE_SUBSCRIPTION_ID",
        ] {
            assert!(text.contains(variable), "{text}");
        }
        assert!(
            text.contains("Azure PUT virtualMachines was refused (403 AuthorizationFailed)"),
            "{text}"
        );
        assert!(matches!(
            provider_error("GET publicIPAddresses", 404, "ResourceNotFound", "gone"),
            ProviderError::NotFound(m)
                if m == "Azure GET publicIPAddresses failed (404 ResourceNotFound): gone"
        ));
        assert!(matches!(
            provider_error("PUT virtualMachines", 0, "AllocationFailed", ""),
            ProviderError::Capacity(m) if m == "Azure PUT virtualMachines failed (AllocationFailed)"
        ));
        assert!(matches!(
            provider_error("DELETE disks", 502, "", ""),
            ProviderError::Transient(m) if m == "Azure DELETE disks failed (502)"
        ));
    }

    #[test]
    fn not_found_is_a_code_or_a_bare_404() {
        assert!(is_not_found(404, "ResourceNotFound"));
        assert!(is_not_found(404, "ResourceGroupNotFound"));
        assert!(is_not_found(0, "NotFound"));
        assert!(is_not_found(404, ""));
        assert!(!is_not_found(404, "SubscriptionNotFound"));
        assert!(!is_not_found(404, "PlatformImageNotFound"));
        assert!(!is_not_found(409, "AnotherOperationInProgress"));
    }
}
