//! Hetzner Cloud error codes in the shared vocabulary (spec/providers.md §2.1; the codes are
//! those of the API reference's "Errors" section). Every error body is
//! `{"error": {"code", "message", "details"}}`; [`provider_error`] maps any call's error and
//! [`classify_create`] adds what the fallback driver needs about a refused `POST /servers`.
//! Codes are matched exactly; only `invalid_input`, which Hetzner also uses for a type not
//! sold in a location, has its message read.

use crate::ProviderError;
use crate::cloud::attempt::{Category, Refusal};

/// The token is wrong, read-only, or may not do this.
const AUTH: &[&str] = &["unauthorized", "forbidden", "token_readonly"];

/// Failures of the API that may pass: the same request may be sent again.
const TRANSIENT: &[&str] = &[
    "server_error",
    "service_error",
    "unavailable",
    "maintenance",
    "timeout",
    "locked",
    "conflict",
];

/// No room for the type in the location now. The last three are the old tool's words for
/// the same, kept so its error texts fall back as they did.
const CAPACITY: &[&str] = &[
    "resource_unavailable",
    "placement_error",
    "server_type_not_available",
    "location_not_available",
];

/// The project's limits (servers, dedicated cores).
const QUOTA: &[&str] = &["resource_limit_exceeded", "dedicated_core_limit"];

/// Any call's error in the shared vocabulary; `what` names the call (`POST /servers`).
pub fn provider_error(what: &str, status: u16, code: &str, message: &str) -> ProviderError {
    let detail = format!("Hetzner {what} failed ({status} {code}): {message}");
    if AUTH.contains(&code) || status == 401 {
        ProviderError::Auth(format!(
            "Hetzner {what} was refused ({status} {code}): {message}; check HCLOUD_TOKEN \
             (a read-write API token of the project)"
        ))
    } else if code == "rate_limit_exceeded" || status == 429 {
        ProviderError::RateLimited(detail)
    } else if TRANSIENT.contains(&code) || status >= 500 {
        ProviderError::Transient(detail)
    } else if CAPACITY.contains(&code) {
        ProviderError::Capacity(detail)
    } else if QUOTA.contains(&code) {
        ProviderError::Quota(detail)
    } else if code == "not_found" {
        ProviderError::NotFound(detail)
    } else {
        ProviderError::InvalidSpec(format!("{detail}{}", setting_hint(message)))
    }
}

/// Which setting to check when Hetzner names the field it refused.
fn setting_hint(message: &str) -> &'static str {
    if message.contains("'location'") {
        "; check hetzner.location / CRABBOX_HETZNER_LOCATION (fsn1, nbg1, hel1, ash, hil, sin)"
    } else if message.contains("'image'") {
        "; check hetzner.image / CRABBOX_HETZNER_IMAGE (an image name like ubuntu-24.04, or a snapshot id)"
    } else if message.contains("'server_type'") {
        "; check --type / --class (Hetzner server types look like ccx33)"
    } else {
        ""
    }
}

/// A refused `POST /servers`, classified for the fallback driver: capacity and limits move
/// on to the next type or location, throttling and API failures retry the same plan, and
/// anything else (a bad image, a bad token) stops.
pub fn classify_create(status: u16, code: &str, message: &str) -> Refusal {
    let category = if CAPACITY.contains(&code) {
        Category::Capacity
    } else if QUOTA.contains(&code) {
        Category::Quota
    } else if code == "rate_limit_exceeded" || status == 429 {
        Category::RateLimited
    } else if TRANSIENT.contains(&code) || status >= 500 {
        Category::Transient
    } else if code == "invalid_input" && not_sold_here(message) {
        Category::Unsupported
    } else {
        Category::Fatal
    };
    let error = provider_error("POST /servers", status, code, message);
    Refusal::new(category, code, error)
}

/// Hetzner's `invalid_input` for a server type that this location does not sell (Arm and
/// cost-optimised types are EU-only) or that is deprecated.
fn not_sold_here(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("unsupported location for server type")
        || lower.contains("server type")
            && (lower.contains("deprecated") || lower.contains("not available"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_refusals_by_code() {
        let cases = [
            (
                412,
                "resource_unavailable",
                "error during placement",
                Category::Capacity,
            ),
            (412, "placement_error", "no space", Category::Capacity),
            (
                403,
                "resource_limit_exceeded",
                "dedicated core limit exceeded",
                Category::Quota,
            ),
            (403, "dedicated_core_limit", "limit", Category::Quota),
            (
                429,
                "rate_limit_exceeded",
                "limit of 3600 requests per hour",
                Category::RateLimited,
            ),
            (503, "unavailable", "try again", Category::Transient),
            (500, "", "bad gateway", Category::Transient),
            (
                400,
                "invalid_input",
                "unsupported location for server type",
                Category::Unsupported,
            ),
            (
                400,
                "invalid_input",
                "invalid input in field 'image'",
                Category::Fatal,
            ),
            (
                401,
                "unauthorized",
                "unable to authenticate",
                Category::Fatal,
            ),
            (
                409,
                "uniqueness_error",
                "server name is already used",
                Category::Fatal,
            ),
        ];
        for (status, code, message, category) in cases {
            assert_eq!(
                classify_create(status, code, message).category,
                category,
                "{code}: {message}"
            );
        }
    }

    #[test]
    fn errors_name_the_call_and_auth_says_what_to_check() {
        let auth = provider_error(
            "GET /servers",
            401,
            "unauthorized",
            "unable to authenticate",
        );
        assert!(matches!(auth, ProviderError::Auth(_)));
        assert!(auth.to_string().contains("HCLOUD_TOKEN"), "{auth}");
        let missing = provider_error(
            "GET /servers/7",
            404,
            "not_found",
            "server with ID '7' not found",
        );
        assert!(matches!(missing, ProviderError::NotFound(_)));
        assert!(missing.to_string().contains("GET /servers/7"), "{missing}");
    }
}
