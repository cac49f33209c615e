//! Promoted runner images (spec/providers.md §4): which image a brokered lease of a scope
//! boots. A promotion is stored under the keys of its scope, all in one store transaction, and
//! every promotion is also kept as history (`image:aws:catalog:…`), so a rollback is another
//! promotion of an earlier image and `image list` can show what was promoted when.
//!
//! Scopes never overlap across targets: a macOS promotion is keyed by the mac type and never
//! replaces the Linux or Windows default, and a Linux promotion with an OS (`ubuntu:26.04`)
//! is found only by leases of that OS (or, region-less, of that OS in another region).

use serde::{Deserialize, Serialize};

/// The Linux OS selectors a promotion may be scoped to.
pub const LINUX_OSES: &[&str] = &["ubuntu:24.04", "ubuntu:26.04"];

/// The scope a promotion applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Scope {
    /// `linux`, `macos` or `windows`.
    pub target: String,
    /// `x86_64`, `arm64` (macOS: `x86_64_mac`, `arm64_mac`).
    pub architecture: String,
    pub region: String,
    /// Linux only: `ubuntu:24.04`, `ubuntu:26.04`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    /// macOS only: the mac instance type (`mac2.metal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_type: Option<String>,
}

/// A promotion that cannot be made, with the coordinator's error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeError {
    pub code: &'static str,
    pub message: String,
}

fn invalid(code: &'static str, message: impl Into<String>) -> ScopeError {
    ScopeError {
        code,
        message: message.into(),
    }
}

impl Scope {
    /// Checks a scope as a promotion request gives it.
    pub fn checked(self) -> Result<Self, ScopeError> {
        let region_ok = !self.region.is_empty()
            && self
                .region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !region_ok {
            return Err(invalid(
                "invalid_region",
                format!("not an AWS region: {:?}", self.region),
            ));
        }
        let target = self.target.as_str();
        if !["linux", "macos", "windows"].contains(&target) {
            return Err(invalid(
                "invalid_target",
                format!("unknown target {target:?} (linux, macos or windows)"),
            ));
        }
        if let Some(os) = &self.os {
            if target != "linux" {
                return Err(invalid(
                    "invalid_os",
                    "an os scope is for linux images only",
                ));
            }
            if !LINUX_OSES.contains(&os.as_str()) {
                return Err(invalid(
                    "invalid_os",
                    format!("unknown os {os:?} (known: {})", LINUX_OSES.join(", ")),
                ));
            }
        }
        match (target, &self.server_type) {
            ("macos", None) => Err(invalid(
                "invalid_server_type",
                "a macOS promotion needs --type (the mac instance type, e.g. mac2.metal)",
            )),
            ("macos", Some(_)) if !self.architecture.ends_with("_mac") => Err(invalid(
                "invalid_target",
                "a macOS promotion's architecture is x86_64_mac or arm64_mac",
            )),
            ("linux" | "windows", _) if self.architecture.ends_with("_mac") => Err(invalid(
                "invalid_target",
                format!("architecture {} is for macOS images", self.architecture),
            )),
            _ => Ok(self),
        }
    }

    /// The keys a promotion writes (besides its history entry), most specific first.
    pub fn promoted_keys(&self) -> Vec<String> {
        let (target, arch, region) = (self.target.as_str(), &self.architecture, &self.region);
        match (target, &self.os, &self.server_type) {
            ("macos", _, Some(server_type)) => {
                vec![format!(
                    "image:aws:promoted:macos:{arch}:{server_type}:{region}"
                )]
            }
            ("linux", Some(os), _) => {
                let mut keys = vec![
                    format!("image:aws:promoted:linux:{arch}:{os}:{region}"),
                    format!("image:aws:promoted:linux:{arch}:{os}"),
                ];
                if os == "ubuntu:24.04" && arch == "x86_64" {
                    keys.push(LEGACY_KEY.to_owned());
                }
                keys
            }
            _ => {
                let mut keys = vec![format!("image:aws:promoted:{target}:{arch}:{region}")];
                if target == "linux" && arch == "x86_64" {
                    keys.push(LEGACY_KEY.to_owned());
                }
                keys
            }
        }
    }

    /// The keys a lease of this scope looks its image up under, in order: the exact scoped
    /// key, then (Linux with an OS) the region-less OS key; then, for the old tool's default
    /// scope (Linux `x86_64`, no OS or 24.04), its legacy key.
    pub fn lookup_keys(&self) -> Vec<String> {
        let mut keys = self.promoted_keys();
        keys.retain(|k| k != LEGACY_KEY);
        let legacy_compatible = self.target == "linux"
            && self.architecture == "x86_64"
            && self.os.as_deref().is_none_or(|os| os == "ubuntu:24.04");
        if legacy_compatible {
            keys.push(LEGACY_KEY.to_owned());
        }
        keys
    }

    /// The history key of `image_id`'s promotion in this scope.
    pub fn catalog_key(&self, image_id: &str) -> String {
        let scope = self
            .promoted_keys()
            .into_iter()
            .next()
            .unwrap_or_default()
            .trim_start_matches("image:aws:promoted:")
            .to_owned();
        format!("image:aws:catalog:{scope}:{image_id}")
    }
}

/// The key the old tool kept its one default image under.
pub const LEGACY_KEY: &str = "image:aws:promoted";

/// Where every promoted key starts.
pub const PROMOTED_PREFIX: &str = "image:aws:promoted";
/// Where every history entry starts.
pub const CATALOG_PREFIX: &str = "image:aws:catalog:";

/// A stored promotion: the image as the provider described it, the scope, when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Promotion {
    /// The image id (`ami-…`).
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub provider: String,
    #[serde(flatten)]
    pub scope: Scope,
    /// RFC 3339.
    pub promoted_at: String,
    /// Who promoted it (the admin's owner).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub promoted_by: String,
    /// Fast snapshot restore, when enabled at promotion: snapshot, zone, state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fast_snapshot_restores: Vec<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(target: &str, arch: &str, os: Option<&str>, server_type: Option<&str>) -> Scope {
        Scope {
            target: target.into(),
            architecture: arch.into(),
            region: "eu-west-1".into(),
            os: os.map(str::to_owned),
            server_type: server_type.map(str::to_owned),
        }
    }

    #[test]
    fn each_scope_has_its_own_keys_and_macos_never_touches_linux_or_windows() {
        assert_eq!(
            scope("linux", "x86_64", None, None).promoted_keys(),
            [
                "image:aws:promoted:linux:x86_64:eu-west-1",
                "image:aws:promoted"
            ]
        );
        assert_eq!(
            scope("linux", "x86_64", Some("ubuntu:26.04"), None).promoted_keys(),
            [
                "image:aws:promoted:linux:x86_64:ubuntu:26.04:eu-west-1",
                "image:aws:promoted:linux:x86_64:ubuntu:26.04"
            ]
        );
        assert_eq!(
            scope("windows", "x86_64", None, None).promoted_keys(),
            ["image:aws:promoted:windows:x86_64:eu-west-1"]
        );
        let mac = scope("macos", "arm64_mac", None, Some("mac2.metal"));
        assert_eq!(
            mac.promoted_keys(),
            ["image:aws:promoted:macos:arm64_mac:mac2.metal:eu-west-1"]
        );
        assert!(!mac.lookup_keys().contains(&LEGACY_KEY.to_owned()));
        assert_eq!(
            mac.catalog_key("ami-1"),
            "image:aws:catalog:macos:arm64_mac:mac2.metal:eu-west-1:ami-1"
        );
    }

    #[test]
    fn lookups_fall_back_to_the_region_less_os_key_then_the_legacy_key() {
        assert_eq!(
            scope("linux", "x86_64", Some("ubuntu:24.04"), None).lookup_keys(),
            [
                "image:aws:promoted:linux:x86_64:ubuntu:24.04:eu-west-1",
                "image:aws:promoted:linux:x86_64:ubuntu:24.04",
                "image:aws:promoted"
            ]
        );
        // 26.04 and arm64 leases never take the old tool's x86_64 24.04 default.
        assert!(
            !scope("linux", "x86_64", Some("ubuntu:26.04"), None)
                .lookup_keys()
                .contains(&LEGACY_KEY.to_owned())
        );
        assert!(
            !scope("linux", "arm64", None, None)
                .lookup_keys()
                .contains(&LEGACY_KEY.to_owned())
        );
    }

    #[test]
    fn unparsable_scopes_are_refused_with_the_spec_codes() {
        let code = |s: Scope| s.checked().unwrap_err().code;
        assert_eq!(
            code(scope("macos", "arm64_mac", None, None)),
            "invalid_server_type"
        );
        assert_eq!(
            code(scope("linux", "x86_64", Some("debian:12"), None)),
            "invalid_os"
        );
        assert_eq!(
            code(scope("windows", "x86_64", Some("ubuntu:24.04"), None)),
            "invalid_os"
        );
        let mut bad_region = scope("linux", "x86_64", None, None);
        bad_region.region = "EU West".into();
        assert_eq!(code(bad_region), "invalid_region");
        assert_eq!(
            code(scope("linux", "arm64_mac", None, None)),
            "invalid_target"
        );
        assert!(
            scope("linux", "arm64", Some("ubuntu:26.04"), None)
                .checked()
                .is_ok()
        );
    }
}
