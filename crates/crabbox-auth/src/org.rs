//! Org identities (spec coordinator §3.2). Records store an org *key*: `~1.` followed by the
//! unpadded base64url of the label, or `~0` when the caller has no org. Responses turn keys back
//! into labels. Records written before keys existed may hold a plain "legacy" label; those still
//! match in filters and accounting but never authorize a non-admin, because the old encoding was
//! lossy and cannot prove which org it meant.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The key stored for a caller without an org.
pub const MISSING_ORG_KEY: &str = "~0";
/// The label shown for [`MISSING_ORG_KEY`] (and for keys that cannot be decoded).
pub const MISSING_ORG_LABEL: &str = "unknown";

const CURRENT_PREFIX: &str = "~1.";

/// An org label that cannot be encoded as a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name} must be 1-63 printable ASCII characters without leading or trailing spaces")]
pub struct InvalidOrgLabel {
    /// Where the label came from (`x-crabbox-org`, `CRABBOX_DEFAULT_ORG`, `organization`).
    pub source_name: &'static str,
}

/// Checks that `label` can be encoded: 1–63 printable ASCII characters, no leading or trailing
/// space.
pub fn validate_label(label: &str, source_name: &'static str) -> Result<(), InvalidOrgLabel> {
    let printable = label.bytes().all(|b| (0x20..=0x7e).contains(&b));
    if label.is_empty()
        || label.len() > 63
        || label.starts_with(' ')
        || label.ends_with(' ')
        || !printable
    {
        return Err(InvalidOrgLabel { source_name });
    }
    Ok(())
}

/// The key for a label, or `None` when the label is not valid.
pub fn key_for_label(label: &str) -> Option<String> {
    validate_label(label, "organization").ok()?;
    Some(format!("{CURRENT_PREFIX}{}", URL_SAFE_NO_PAD.encode(label)))
}

/// The key for an authenticated caller's org label, where an empty label means "no org".
pub fn key_for_auth_label(
    label: &str,
    source_name: &'static str,
) -> Result<String, InvalidOrgLabel> {
    if label.is_empty() {
        return Ok(MISSING_ORG_KEY.to_owned());
    }
    validate_label(label, source_name)?;
    Ok(format!("{CURRENT_PREFIX}{}", URL_SAFE_NO_PAD.encode(label)))
}

/// Decodes a canonical current key (`~1.…`) back to its label. Legacy, missing and malformed
/// keys return `None`; so does any non-canonical spelling of a key, so that two different
/// strings can never stand for the same org.
pub fn label_from_key(key: &str) -> Option<String> {
    let encoded = key.strip_prefix(CURRENT_PREFIX)?;
    if encoded.is_empty()
        || encoded.len() % 4 == 1
        || !encoded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(encoded).ok()?;
    let label = String::from_utf8(bytes).ok()?;
    (key_for_label(&label).as_deref() == Some(key)).then_some(label)
}

/// The label to show for a stored key: `unknown` for the missing org, legacy labels as they
/// are, and `unknown` for anything undecodable.
pub fn label_for_key(key: &str) -> String {
    if key == MISSING_ORG_KEY {
        return MISSING_ORG_LABEL.to_owned();
    }
    if let Some(label) = label_from_key(key) {
        return label;
    }
    if is_legacy_key(key) {
        return key.to_owned();
    }
    MISSING_ORG_LABEL.to_owned()
}

/// The label carried in the trusted `x-crabbox-org` header: empty for the missing org.
pub fn auth_label_for_key(key: &str) -> Option<String> {
    if key == MISSING_ORG_KEY {
        return Some(String::new());
    }
    label_from_key(key)
}

/// Whether `key` is a current key (`~0` or a canonical `~1.` key).
pub fn is_current_key(key: &str) -> bool {
    key == MISSING_ORG_KEY || label_from_key(key).is_some()
}

/// Whether `key` is a plain legacy label (`^[a-zA-Z0-9_.@-]{1,63}$`).
pub fn is_legacy_key(key: &str) -> bool {
    (1..=63).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b'-'))
}

/// Same org for authorization: equal *and* current. Legacy values never match, not even
/// themselves.
pub fn same_org(left: &str, right: &str) -> bool {
    left == right && is_current_key(left)
}

/// Same org for query filters, which may select an exact legacy bucket. Never use this to
/// authorize.
pub fn matches_for_filter(left: &str, right: &str) -> bool {
    same_org(left, right) || (is_legacy_key(left) && is_legacy_key(right) && left == right)
}

/// Same org for cost accounting: a legacy bucket counts toward every current org it could have
/// stood for, so an ambiguous old record can over-count but never slip past a cap.
pub fn matches_for_accounting(left: &str, right: &str) -> bool {
    if same_org(left, right) {
        return true;
    }
    let (left_legacy, right_legacy) = (is_legacy_key(left), is_legacy_key(right));
    if left_legacy && right_legacy {
        return left == right;
    }
    if !left_legacy && !right_legacy {
        return false;
    }
    let (legacy, current) = if left_legacy {
        (left, right)
    } else {
        (right, left)
    };
    let label = if current == MISSING_ORG_KEY {
        Some(MISSING_ORG_LABEL.to_owned())
    } else {
        label_from_key(current)
    };
    label.is_some_and(|label| legacy_key(&label) == legacy)
}

/// How the old coordinator stored a label before keys existed.
fn legacy_key(label: &str) -> String {
    let mapped: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect();
    if mapped.is_empty() {
        MISSING_ORG_LABEL.to_owned()
    } else {
        mapped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_labels() {
        let key = key_for_label("openclaw").unwrap();
        assert_eq!(key, "~1.b3BlbmNsYXc");
        assert_eq!(label_from_key(&key).as_deref(), Some("openclaw"));
        assert_eq!(label_for_key(&key), "openclaw");
        let odd = key_for_label("Acme Corp/ß?").map(|_| ());
        assert_eq!(odd, None, "non-ASCII labels are refused");
        let spaced = key_for_label("Acme Corp!").unwrap();
        assert_eq!(label_for_key(&spaced), "Acme Corp!");
    }

    #[test]
    fn invalid_labels_are_refused() {
        for bad in ["", " lead", "trail ", "tab\there", &"x".repeat(64)] {
            assert_eq!(key_for_label(bad), None, "{bad:?}");
        }
        assert!(key_for_label(&"x".repeat(63)).is_some());
        let err = key_for_auth_label(" x", "x-crabbox-org").unwrap_err();
        assert_eq!(
            err.to_string(),
            "x-crabbox-org must be 1-63 printable ASCII characters without leading or trailing spaces"
        );
        assert_eq!(key_for_auth_label("", "x").unwrap(), MISSING_ORG_KEY);
    }

    #[test]
    fn missing_org_is_not_the_literal_unknown() {
        assert_eq!(label_for_key(MISSING_ORG_KEY), "unknown");
        let unknown = key_for_label("unknown").unwrap();
        assert_ne!(unknown, MISSING_ORG_KEY);
        assert!(!same_org(&unknown, MISSING_ORG_KEY));
        assert_eq!(auth_label_for_key(MISSING_ORG_KEY).as_deref(), Some(""));
    }

    #[test]
    fn legacy_labels_display_but_never_authorize() {
        assert!(is_legacy_key("openclaw"));
        assert!(!is_current_key("openclaw"));
        assert_eq!(label_for_key("openclaw"), "openclaw");
        assert!(!same_org("openclaw", "openclaw"));
        assert!(matches_for_filter("openclaw", "openclaw"));
        let current = key_for_label("openclaw").unwrap();
        assert!(matches_for_accounting("openclaw", &current));
        assert!(matches_for_accounting(&current, "openclaw"));
        assert!(!matches_for_filter("openclaw", &current));
        let spaced = key_for_label("open claw").unwrap();
        assert!(matches_for_accounting("open_claw", &spaced));
        assert!(matches_for_accounting("unknown", MISSING_ORG_KEY));
        assert_eq!(label_for_key("~1.!!"), "unknown");
    }

    #[test]
    fn non_canonical_keys_are_not_current() {
        // "a" encodes to "YQ"; a trailing pad or a second spelling is not canonical.
        assert!(is_current_key("~1.YQ"));
        assert!(!is_current_key("~1.YQ=="));
        assert!(!is_current_key("~1.YR"));
        assert!(!is_current_key("~1."));
        assert!(!is_current_key("~1.Y"));
    }
}
