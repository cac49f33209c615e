//! The image a runner boots: `aws.ami` / `CRABBOX_AWS_AMI` when set, else the newest
//! Canonical Ubuntu 24.04 or 26.04 server image of the architecture (gp3, EBS, HVM).

use aws_sdk_ec2::types::Filter;
use crabbox_core::machine::Architecture;
use crabbox_providers::ProviderError;

use crate::client::call;
use crate::policy::Action;

/// Canonical's account, which publishes the Ubuntu images.
const CANONICAL: &str = "099720109477";

/// The image id to launch in this region.
pub async fn linux_image(
    ec2: &aws_sdk_ec2::Client,
    region: &str,
    architecture: Architecture,
) -> Result<String, ProviderError> {
    let (arch, suffix) = match architecture {
        Architecture::X86_64 => ("x86_64", "amd64"),
        Architecture::Arm64 => ("arm64", "arm64"),
    };
    let filter = |name: &str, values: &[String]| {
        Filter::builder()
            .name(name)
            .set_values(Some(values.to_vec()))
            .build()
    };
    let names: Vec<String> = ["noble-24.04", "resolute-26.04"]
        .iter()
        .map(|release| format!("ubuntu/images/hvm-ssd-gp3/ubuntu-{release}-{suffix}-server-*"))
        .collect();
    let found = call(
        Action::DescribeImages,
        ec2.describe_images()
            .owners(CANONICAL)
            .filters(filter("architecture", &[arch.to_owned()]))
            .filters(filter("name", &names))
            .filters(filter("root-device-type", &["ebs".to_owned()]))
            .filters(filter("virtualization-type", &["hvm".to_owned()]))
            .filters(filter("state", &["available".to_owned()]))
            .send(),
    )
    .await?;
    newest(&found).ok_or_else(|| {
        ProviderError::InvalidSpec(format!(
            "no AWS AMI found: no Ubuntu 24.04/26.04 {arch} image of Canonical is visible in \
                 {region}; set CRABBOX_AWS_AMI (or aws.ami) to an image id"
        ))
    })
}

/// The newest available image Amazon publishes under the name pattern `name` for the
/// architecture `arch` (macOS and Windows Server), if the region has one.
pub(crate) async fn newest_amazon(
    ec2: &aws_sdk_ec2::Client,
    name: &str,
    arch: &str,
) -> Result<Option<String>, ProviderError> {
    let filter = |key: &str, value: &str| Filter::builder().name(key).values(value).build();
    let found = call(
        Action::DescribeImages,
        ec2.describe_images()
            .owners("amazon")
            .filters(filter("name", name))
            .filters(filter("architecture", arch))
            .filters(filter("state", "available"))
            .send(),
    )
    .await?;
    Ok(newest(&found))
}

/// The id of the newest image `DescribeImages` returned (by `CreationDate`).
pub(crate) fn newest(
    found: &aws_sdk_ec2::operation::describe_images::DescribeImagesOutput,
) -> Option<String> {
    found
        .images()
        .iter()
        .filter(|image| image.image_id().is_some())
        .max_by(|a, b| a.creation_date().cmp(&b.creation_date()))
        .and_then(|image| image.image_id().map(str::to_owned))
}
