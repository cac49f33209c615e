//! The checkpoint record, `checkpoint.json` (spec providers.md §3.3), as the Go tool wrote it
//! and as this one writes it. Fields this version does not know are kept in `extra` maps so a
//! read → write round trip never loses what a newer (or older) tool recorded.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `chk_` + 16 lowercase hex digits.
pub const ID_PREFIX: &str = "chk_";

/// A new random checkpoint id.
pub fn new_id() -> String {
    let mut buf = [0u8; 8];
    getrandom::fill(&mut buf).expect("the OS random source is unavailable");
    format!("{ID_PREFIX}{}", hex::encode(buf))
}

/// Whether `id` can name a checkpoint directory: `chk_` and then letters, digits, `-` or `_`.
/// Wider than what [`new_id`] makes because the old tool's docs showed other shapes, and
/// narrow enough that an id can never climb out of the store (`/`, `..`).
pub fn is_valid_id(id: &str) -> bool {
    id.strip_prefix(ID_PREFIX).is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// What a checkpoint holds (spec §3.1). Unknown kind strings survive as [`Kind::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum Kind {
    /// Metadata only; cannot be forked or restored.
    Recipe,
    /// A tarball of the workdir beside the record.
    WorkspaceArchive,
    AwsAmi,
    AwsEbsSnapshot,
    AzureOsDiskSnapshot,
    AzureManagedImage,
    GcpMachineImage,
    GcpDiskSnapshot,
    HetznerSnapshot,
    ParallelsSnapshot,
    Machine0Image,
    DockerCommit,
    Other(String),
}

impl Kind {
    /// Every kind this version knows, in the spec's order.
    pub const KNOWN: [Kind; 12] = [
        Kind::Recipe,
        Kind::WorkspaceArchive,
        Kind::AwsAmi,
        Kind::AwsEbsSnapshot,
        Kind::AzureOsDiskSnapshot,
        Kind::AzureManagedImage,
        Kind::GcpMachineImage,
        Kind::GcpDiskSnapshot,
        Kind::HetznerSnapshot,
        Kind::ParallelsSnapshot,
        Kind::Machine0Image,
        Kind::DockerCommit,
    ];

    pub fn as_str(&self) -> &str {
        match self {
            Kind::Recipe => "recipe",
            Kind::WorkspaceArchive => "workspace-archive",
            Kind::AwsAmi => "aws-ami",
            Kind::AwsEbsSnapshot => "aws-ebs-snapshot",
            Kind::AzureOsDiskSnapshot => "azure-os-disk-snapshot",
            Kind::AzureManagedImage => "azure-managed-image",
            Kind::GcpMachineImage => "gcp-machine-image",
            Kind::GcpDiskSnapshot => "gcp-disk-snapshot",
            Kind::HetznerSnapshot => "hetzner-snapshot",
            Kind::ParallelsSnapshot => "parallels-snapshot",
            Kind::Machine0Image => "machine0-image",
            Kind::DockerCommit => "docker-commit",
            Kind::Other(kind) => kind,
        }
    }

    /// A workspace tarball kept beside the record.
    pub fn is_archive(&self) -> bool {
        *self == Kind::WorkspaceArchive
    }

    /// A resource held by a provider (image, snapshot, committed container). A kind this
    /// version does not know counts as native: deleting it must not silently drop the only
    /// local trace of something a provider may still bill for.
    pub fn is_native(&self) -> bool {
        !matches!(self, Kind::Recipe | Kind::WorkspaceArchive)
    }
}

impl From<String> for Kind {
    fn from(s: String) -> Self {
        Kind::KNOWN
            .into_iter()
            .find(|k| k.as_str() == s)
            .unwrap_or(Kind::Other(s))
    }
}

impl From<Kind> for String {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Other(s) => s,
            known => known.as_str().to_owned(),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if passes a reference"
)]
fn is_false(b: &bool) -> bool {
    !*b
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if passes a reference"
)]
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The provider resource of a native checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Native {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub provider: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub state: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub region: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub account_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub project: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshot_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub direct: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub strategy: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_reboot: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Native {
    pub fn is_empty(&self) -> bool {
        *self == Native::default()
    }

    /// The id the provider knows the resource by: the image id, else the resource path, else
    /// the first snapshot. Empty when a create failed before the provider answered.
    pub fn resource_id(&self) -> &str {
        [self.image_id.as_str(), self.resource.as_str()]
            .into_iter()
            .chain(self.snapshot_ids.iter().map(String::as_str))
            .map(str::trim)
            .find(|id| !id.is_empty())
            .unwrap_or("")
    }
}

/// The repository the checkpoint was taken for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Repo {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub root: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub remote_url: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub head: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub base_ref: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Repo {
    pub fn is_empty(&self) -> bool {
        *self == Repo::default()
    }
}

/// One `checkpoint.json`. Timestamps stay the strings they were written as (RFC 3339), so a
/// record another tool wrote is rewritten byte-for-byte in those fields; [`Record::created`]
/// and [`Record::last_used`] parse them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub kind: Kind,
    pub created_at: String,
    /// Empty in records of early Go versions; [`Record::from_json`] fills it from
    /// `createdAt`.
    #[serde(default)]
    pub last_used_at: String,
    #[serde(default)]
    pub crabbox_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub provider: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub lease_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub slug: String,
    #[serde(default, rename = "targetOS", skip_serializing_if = "String::is_empty")]
    pub target_os: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub windows_mode: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub desktop: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub server_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host_id: String,
    /// The source lease's remote workdir.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub workdir: String,
    /// The archive's file name in the checkpoint directory (`workspace.tar.zst`, or
    /// `workspace.tar.gz` from the Go tool).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub archive_path: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub archive_bytes: u64,
    #[serde(default, skip_serializing_if = "Native::is_empty")]
    pub native: Native,
    #[serde(default, skip_serializing_if = "Repo::is_empty")]
    pub repo: Repo,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Record {
    /// A fresh record of `kind` with a new id, created and last used `now`.
    pub fn new(kind: Kind, now: SystemTime) -> Self {
        let at = format_time(now);
        Record {
            id: new_id(),
            name: String::new(),
            kind,
            created_at: at.clone(),
            last_used_at: at,
            crabbox_version: env!("CARGO_PKG_VERSION").to_owned(),
            provider: String::new(),
            lease_id: String::new(),
            slug: String::new(),
            target_os: String::new(),
            windows_mode: String::new(),
            desktop: false,
            server_type: String::new(),
            host_id: String::new(),
            workdir: String::new(),
            archive_path: String::new(),
            archive_bytes: 0,
            native: Native::default(),
            repo: Repo::default(),
            extra: Map::new(),
        }
    }

    /// Parses a record, reading a missing `lastUsedAt` as `createdAt`.
    pub fn from_json(text: &[u8]) -> serde_json::Result<Self> {
        let mut record: Record = serde_json::from_slice(text)?;
        if record.last_used_at.trim().is_empty() {
            record.last_used_at.clone_from(&record.created_at);
        }
        Ok(record)
    }

    /// The record as written to disk: two-space indented, with a trailing newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut text = serde_json::to_vec_pretty(self).expect("records serialize");
        text.push(b'\n');
        text
    }

    pub fn created(&self) -> Option<SystemTime> {
        parse_time(&self.created_at)
    }

    pub fn last_used(&self) -> Option<SystemTime> {
        parse_time(&self.last_used_at)
    }

    /// Marks the record used `now` (a successful fork or restore).
    pub fn touch(&mut self, now: SystemTime) {
        self.last_used_at = format_time(now);
    }
}

/// `now` as RFC 3339 in UTC, whole seconds (what the Go tool wrote).
pub fn format_time(now: SystemTime) -> String {
    humantime::format_rfc3339_seconds(now).to_string()
}

/// Parses RFC 3339 with `Z` or a numeric offset (Go's `time.RFC3339` may carry either).
pub fn parse_time(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    if !text.is_ascii() {
        return None;
    }
    // `±HH:MM` at the end, after at least a full date and time (`2006-01-02T15:04:05+07:00`).
    if text.len() >= 25 {
        let (stamp, offset) = text.split_at(text.len() - 6);
        let ob = offset.as_bytes();
        if matches!(ob[0], b'+' | b'-') && ob[3] == b':' {
            let hours: u64 = offset[1..3].parse().ok()?;
            let minutes: u64 = offset[4..6].parse().ok()?;
            let shift = Duration::from_secs(hours * 3600 + minutes * 60);
            let local = humantime::parse_rfc3339_weak(stamp).ok()?;
            // Local time minus a positive offset is UTC.
            return if ob[0] == b'+' {
                local.checked_sub(shift)
            } else {
                local.checked_add(shift)
            };
        }
    }
    let stamp = text.strip_suffix('Z').or_else(|| text.strip_suffix('z'))?;
    humantime::parse_rfc3339_weak(stamp)
        .ok()
        .filter(|t| *t >= UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_chk_and_16_lowercase_hex() {
        let id = new_id();
        assert_eq!(id.len(), 4 + 16, "{id}");
        assert!(id.starts_with("chk_"));
        assert!(
            id[4..]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert!(is_valid_id(&id));
        assert_ne!(new_id(), id);
        for bad in ["", "chk_", "cbx_0123", "chk_../x", "chk_a/b", "chk_a b"] {
            assert!(!is_valid_id(bad), "{bad}");
        }
        assert!(is_valid_id("chk_0123456789ab"));
    }

    #[test]
    fn kinds_round_trip_and_classify() {
        for kind in Kind::KNOWN {
            assert_eq!(Kind::from(String::from(kind.clone())), kind);
        }
        assert!(Kind::WorkspaceArchive.is_archive() && !Kind::WorkspaceArchive.is_native());
        assert!(!Kind::Recipe.is_archive() && !Kind::Recipe.is_native());
        assert!(Kind::HetznerSnapshot.is_native() && Kind::AwsAmi.is_native());
        let other = Kind::from("future-thing".to_owned());
        assert_eq!(other, Kind::Other("future-thing".into()));
        assert!(other.is_native());
        assert_eq!(String::from(other), "future-thing");
    }

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let text = br#"{
            "id": "chk_00112233445566aa",
            "kind": "hetzner-snapshot",
            "createdAt": "2025-01-02T03:04:05Z",
            "crabboxVersion": "0.9.0",
            "ownership": {"mode": "coordinator", "origin": "https://c.example"},
            "retention": 42,
            "native": {"provider": "hetzner", "imageId": "123", "futureNative": [1, 2],
                       "metadata": {"lease": "cbx_0123456789ab"}},
            "repo": {"name": "app", "branch": "main"}
        }"#;
        let record = Record::from_json(text).unwrap();
        assert_eq!(record.kind, Kind::HetznerSnapshot);
        assert_eq!(record.last_used_at, "2025-01-02T03:04:05Z");
        assert_eq!(record.native.resource_id(), "123");
        let again = Record::from_json(&record.to_json()).unwrap();
        assert_eq!(again, record);
        let written: Value = serde_json::from_slice(&record.to_json()).unwrap();
        assert_eq!(written["ownership"]["origin"], "https://c.example");
        assert_eq!(written["retention"], 42);
        assert_eq!(written["native"]["futureNative"][1], 2);
        assert_eq!(written["native"]["metadata"]["lease"], "cbx_0123456789ab");
        assert_eq!(written["repo"]["branch"], "main");
        // Empty optional fields are left out; the always-present ones are not.
        let object = written.as_object().unwrap();
        for absent in ["name", "archivePath", "archiveBytes", "desktop", "workdir"] {
            assert!(!object.contains_key(absent), "{absent} written");
        }
        for present in ["id", "kind", "createdAt", "lastUsedAt", "crabboxVersion"] {
            assert!(object.contains_key(present), "{present} missing");
        }
    }

    #[test]
    fn a_new_record_omits_empty_sections() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let record = Record::new(Kind::Recipe, now);
        assert_eq!(record.created_at, "2023-11-14T22:13:20Z");
        assert_eq!(record.created_at, record.last_used_at);
        let written: Value = serde_json::from_slice(&record.to_json()).unwrap();
        assert!(written.get("native").is_none() && written.get("repo").is_none());
        assert_eq!(written["kind"], "recipe");
    }

    #[test]
    fn times_parse_with_z_or_an_offset() {
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Some(at));
        assert_eq!(parse_time("2023-11-15T00:13:20+02:00"), Some(at));
        assert_eq!(parse_time("2023-11-14T20:13:20-02:00"), Some(at));
        assert_eq!(
            parse_time("2023-11-14T22:13:20.5Z"),
            Some(at + Duration::from_millis(500))
        );
        for bad in ["", "yesterday", "2023-11-14", "2023-11-14T22:13:20+2:00"] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }
}
