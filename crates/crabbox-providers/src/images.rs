//! Runner images a provider makes from a lease and boots leases from (spec/providers.md §4):
//! the operations `crabbox image create|promote|fsr-status|delete|list` need, for providers
//! with native images (AWS AMIs). A provider offers them through [`crate::Provider::images`].

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{LeaseRecord, ProviderError};

/// An image as the provider describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderImage {
    /// `ami-…`.
    pub id: String,
    pub name: String,
    pub provider: String,
    /// `pending`, `available`, `failed`, …
    pub state: String,
    pub region: String,
    /// `x86_64`, `arm64` (`x86_64_mac`, `arm64_mac` for macOS images).
    pub architecture: String,
    /// RFC 3339, as the provider says.
    pub created_at: String,
    /// Made by Crabbox (its tags say so): only such images are deleted.
    pub owned: bool,
    /// The lease it was made from, when Crabbox made it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_lease: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshot_ids: Vec<String>,
}

/// Fast snapshot restore of one snapshot in one availability zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FsrState {
    pub snapshot_id: String,
    pub zone: String,
    /// `enabling`, `optimizing`, `enabled`, `disabling`, `disabled`.
    pub state: String,
}

/// What a provider with native images can do with them. `region` is where the image lives;
/// `None` means the provider's own region.
#[async_trait]
pub trait Images: Send + Sync {
    /// The region leases are made in first (`aws.region`), the scope of their promotions.
    fn home_region(&self) -> String;

    /// The image every lease boots whatever is promoted (`CRABBOX_AWS_AMI` on this side).
    fn pinned_image(&self) -> Option<String>;

    /// Starts an image of the lease's runner (`no_reboot`: without stopping it first).
    async fn create_image(
        &self,
        lease: &LeaseRecord,
        name: &str,
        no_reboot: bool,
    ) -> Result<ProviderImage, ProviderError>;

    /// The image, or `None` when the provider has no such image.
    async fn image(
        &self,
        id: &str,
        region: Option<&str>,
    ) -> Result<Option<ProviderImage>, ProviderError>;

    /// The images Crabbox made, newest first.
    async fn images(&self, region: Option<&str>) -> Result<Vec<ProviderImage>, ProviderError>;

    /// Deletes an image Crabbox made and everything behind it (its snapshots); refuses one
    /// it did not make. Returns the ids deleted.
    async fn delete_image(
        &self,
        id: &str,
        region: Option<&str>,
    ) -> Result<Vec<String>, ProviderError>;

    /// Enables fast snapshot restore of the image's snapshots in `zones`.
    async fn enable_fsr(
        &self,
        id: &str,
        region: Option<&str>,
        zones: &[String],
    ) -> Result<Vec<FsrState>, ProviderError>;

    /// Fast snapshot restore of the image's snapshots (in `zones`, or every zone when empty).
    async fn fsr_status(
        &self,
        id: &str,
        region: Option<&str>,
        zones: &[String],
    ) -> Result<Vec<FsrState>, ProviderError>;
}
