//! The AWS provider's runner images ([`crabbox_providers::images::Images`]): AMIs of a lease's
//! instance, described, listed, deleted with their snapshots, and fast snapshot restore, each
//! in the image's region (the provider's own when none is given). The EC2 calls are
//! [`crate::images`]'.

use async_trait::async_trait;
use crabbox_providers::images::{FsrState, Images, ProviderImage};
use crabbox_providers::{LeaseRecord, ProviderError};

use crate::images::{self, ImageInfo};
use crate::provider::AwsProvider;

impl AwsProvider {
    async fn ec2_in(&self, region: Option<&str>) -> aws_sdk_ec2::Client {
        let region = region
            .filter(|r| !r.is_empty())
            .map_or_else(|| self.settings().region.clone(), str::to_owned);
        self.aws().await.ec2(&region)
    }
}

fn provider_image(info: ImageInfo) -> ProviderImage {
    ProviderImage {
        source_lease: info.tags.get("lease").cloned().unwrap_or_default(),
        id: info.id,
        name: info.name,
        provider: "aws".into(),
        state: info.state,
        region: info.region,
        architecture: info.architecture,
        created_at: info.created_at,
        owned: info.owned_by_crabbox,
        snapshot_ids: info.snapshot_ids,
    }
}

fn fsr_state(state: images::FsrState) -> FsrState {
    FsrState {
        snapshot_id: state.snapshot_id,
        zone: state.zone,
        state: state.state,
    }
}

#[async_trait]
impl Images for AwsProvider {
    fn home_region(&self) -> String {
        self.settings().region.clone()
    }

    fn pinned_image(&self) -> Option<String> {
        self.settings().ami.clone()
    }

    async fn create_image(
        &self,
        lease: &LeaseRecord,
        name: &str,
        no_reboot: bool,
    ) -> Result<ProviderImage, ProviderError> {
        let region = self.region_of(lease);
        let ec2 = self.ec2_in(Some(&region)).await;
        let id =
            images::create_image(&ec2, &lease.server_id, name, no_reboot, &lease.lease_id).await?;
        let info = images::describe(&ec2, &id).await?.ok_or_else(|| {
            ProviderError::Transient(format!("image {id} was made but EC2 does not show it yet"))
        })?;
        Ok(provider_image(info))
    }

    async fn image(
        &self,
        id: &str,
        region: Option<&str>,
    ) -> Result<Option<ProviderImage>, ProviderError> {
        let ec2 = self.ec2_in(region).await;
        Ok(images::describe(&ec2, id).await?.map(provider_image))
    }

    async fn images(&self, region: Option<&str>) -> Result<Vec<ProviderImage>, ProviderError> {
        let ec2 = self.ec2_in(region).await;
        let mut found: Vec<ProviderImage> = images::list(&ec2)
            .await?
            .into_iter()
            .map(provider_image)
            .collect();
        found.sort_by(|a, b| b.created_at.cmp(&a.created_at));
        Ok(found)
    }

    async fn delete_image(
        &self,
        id: &str,
        region: Option<&str>,
    ) -> Result<Vec<String>, ProviderError> {
        let ec2 = self.ec2_in(region).await;
        let report = images::delete(&ec2, id).await?;
        let mut deleted = Vec::new();
        if report.deregistered {
            deleted.push(report.id);
        }
        deleted.extend(report.deleted_snapshots);
        Ok(deleted)
    }

    async fn enable_fsr(
        &self,
        id: &str,
        region: Option<&str>,
        zones: &[String],
    ) -> Result<Vec<FsrState>, ProviderError> {
        let ec2 = self.ec2_in(region).await;
        Ok(images::enable_fsr(&ec2, id, zones)
            .await?
            .into_iter()
            .map(fsr_state)
            .collect())
    }

    async fn fsr_status(
        &self,
        id: &str,
        region: Option<&str>,
        zones: &[String],
    ) -> Result<Vec<FsrState>, ProviderError> {
        let ec2 = self.ec2_in(region).await;
        Ok(images::fsr_status(&ec2, id, zones)
            .await?
            .into_iter()
            .map(fsr_state)
            .collect())
    }
}
