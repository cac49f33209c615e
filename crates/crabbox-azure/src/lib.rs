//! The Azure VM provider (spec/providers.md §2.3): `azure_identity`'s credentials on an HTTP
//! transport of the tree's own ([`transport`]), the token they give for Azure Resource Manager
//! ([`credential`]), the ARM client with long-running operations, listings and ARM's errors
//! ([`arm`]), the network leases share ([`network`]), one lease's public IP, NIC and VM
//! ([`vm`]), and the [`provider::AzureProvider`] that leases them
//! (docs/design/cloud-providers.md, "Azure").

pub mod arm;
mod bootstrap;
mod create;
pub mod credential;
pub mod network;
pub mod policy;
pub mod provider;
pub mod settings;
mod tags;
pub mod transport;
pub mod vm;

pub use provider::AzureProvider;
pub use settings::AzureSettings;
