//! The AWS EC2 provider (spec/providers.md §2.2), on the official AWS SDK for Rust: EC2 for
//! runners, key pairs and the security group, STS for the caller's identity, Service Quotas
//! for the vCPU preflight. It uses the shared cloud model of `crabbox_providers::cloud` for
//! classes, fallback, labels, cloud-init and cost; everything here talks to AWS.

pub mod cache;
pub mod client;
mod create;
pub mod hosts;
pub mod identity;
pub mod image;
pub mod images;
pub mod imaging;
pub mod instances;
pub mod keys;
pub mod mac;
pub mod network;
mod placement;
pub mod policy;
pub mod provider;
pub mod settings;
pub mod windows;

pub use provider::AwsProvider;
pub use settings::AwsSettings;
