//! The per-lease key pair: the lease's public key imported under `crabbox-cbx-<12 hex>` and
//! deleted with the lease. Only names of exactly that shape are ever deleted.

use aws_sdk_ec2::primitives::Blob;
use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use crabbox_providers::ProviderError;
use crabbox_providers::cloud::names::{is_provider_key_name, provider_key_name};

use crate::client::{CallError, call};
use crate::policy::Action;

/// Imports the lease's key; returns its name. A key of that name that holds the same public
/// key (a retried create) is taken as it is; one holding another key is an error.
pub async fn import(
    ec2: &aws_sdk_ec2::Client,
    lease_id: &str,
    public_key: &str,
) -> Result<String, ProviderError> {
    let name =
        provider_key_name(lease_id).map_err(|e| ProviderError::InvalidSpec(e.to_string()))?;
    let tags = TagSpecification::builder()
        .resource_type(ResourceType::KeyPair)
        .tags(Tag::builder().key("crabbox").value("true").build())
        .tags(Tag::builder().key("created_by").value("crabbox").build())
        .tags(Tag::builder().key("lease").value(lease_id).build())
        .build();
    let imported = call(
        Action::ImportKeyPair,
        ec2.import_key_pair()
            .key_name(&name)
            .public_key_material(Blob::new(public_key.trim().as_bytes()))
            .tag_specifications(tags)
            .send(),
    )
    .await;
    match imported {
        Ok(_) => Ok(name),
        Err(e) if e.code == "InvalidKeyPair.Duplicate" => {
            if holds(ec2, &name, public_key).await? {
                Ok(name)
            } else {
                Err(ProviderError::InvalidSpec(format!(
                    "AWS key pair {name} exists with another public key; delete it \
                     (`aws ec2 delete-key-pair --key-name {name}`) and try again"
                )))
            }
        }
        Err(e) => Err(e.error),
    }
}

/// Whether the key pair `name` holds `public_key` (the key's type and base64 body compared).
async fn holds(
    ec2: &aws_sdk_ec2::Client,
    name: &str,
    public_key: &str,
) -> Result<bool, ProviderError> {
    let found = call(
        Action::DescribeKeyPairs,
        ec2.describe_key_pairs()
            .key_names(name)
            .include_public_key(true)
            .send(),
    )
    .await?;
    let body = |key: &str| key.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    Ok(found
        .key_pairs()
        .iter()
        .filter_map(|k| k.public_key())
        .any(|k| body(k) == body(public_key)))
}

/// Deletes the key pair `name` if it is a per-lease key; one already gone is fine.
pub async fn delete(ec2: &aws_sdk_ec2::Client, name: &str) -> Result<(), ProviderError> {
    if !is_provider_key_name(name) {
        return Err(ProviderError::InvalidSpec(format!(
            "refusing to delete AWS key pair {name:?}: not a per-lease crabbox-cbx-… key"
        )));
    }
    // By name: EC2 accepts both, and moto deletes nothing when given only the id.
    match call(
        Action::DeleteKeyPair,
        ec2.delete_key_pair().key_name(name).send(),
    )
    .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(CallError { error, .. }) => Err(error),
    }
}
