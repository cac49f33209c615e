//! Names of what a lease creates at a provider (spec/providers.md §1.12): the machine's name,
//! and the per-lease key pair whose exact shape is what makes deleting it safe.

use crabbox_api::ids::{IdError, LeaseId};
use crabbox_core::slug::{fnv1a32, normalize_slug};

/// `crabbox-<slug>-<fnv1a32(lease id) as 8 hex digits>`; without a slug, the lease id with
/// `_` as `-` (`crabbox-cbx-0123456789ab`). Both fit a 63-character DNS label.
pub fn resource_name(lease_id: &str, slug: &str) -> String {
    let slug = normalize_slug(slug);
    if slug.is_empty() {
        format!("crabbox-{}", lease_id.replace('_', "-"))
    } else {
        format!("crabbox-{slug}-{:08x}", fnv1a32(lease_id.as_bytes()))
    }
}

/// The provider key pair of one lease: `crabbox-cbx-<12 hex>`.
pub fn provider_key_name(lease_id: &str) -> Result<String, IdError> {
    let lease = LeaseId::parse(lease_id)?;
    Ok(format!("crabbox-{}", lease.as_str().replace('_', "-")))
}

/// Whether `name` is exactly a per-lease key pair name. Only such keys are ever deleted, so a
/// key a person made (`crabbox-steipete`) survives any cleanup.
pub fn is_provider_key_name(name: &str) -> bool {
    name.strip_prefix("crabbox-cbx-")
        .is_some_and(|hex| LeaseId::is_canonical(&format!("cbx_{hex}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names() {
        // The old tool's name for this lease, from its golden fixtures.
        assert_eq!(
            resource_name("cbx_abcdef123456", "blue-lobster"),
            "crabbox-blue-lobster-c80c2195"
        );
        assert_eq!(
            resource_name("cbx_abcdef123456", " Blue Lobster! "),
            "crabbox-blue-lobster-c80c2195"
        );
        assert_eq!(
            resource_name("cbx_abcdef123456", ""),
            "crabbox-cbx-abcdef123456"
        );
    }

    #[test]
    fn key_names_round_trip_and_nothing_else_passes() {
        let name = provider_key_name("cbx_abcdef123456").unwrap();
        assert_eq!(name, "crabbox-cbx-abcdef123456");
        assert!(is_provider_key_name(&name));
        assert!(provider_key_name("cbx_ABCDEF123456").is_err());
        for other in [
            "crabbox-steipete",
            "crabbox-cbx-abcdef12345",
            "crabbox-cbx-abcdef1234567",
            "crabbox-cbx-ABCDEF123456",
            "crabbox-cbx_abcdef123456",
            "xcrabbox-cbx-abcdef123456",
        ] {
            assert!(!is_provider_key_name(other), "{other}");
        }
    }
}
