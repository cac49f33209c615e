//! The Azure VM provider (spec/providers.md §2.3), being built: `azure_identity`'s
//! credentials on an HTTP transport of the tree's own ([`transport`]), the token they give for
//! Azure Resource Manager ([`credential`]), and the ARM client with long-running operations,
//! listings and ARM's errors ([`arm`]), and the network leases share ([`network`]). The
//! per-lease resources and the `Provider` come next (docs/design/cloud-providers.md, "Azure"); the crate is not yet part
//! of the binary.

pub mod arm;
pub mod credential;
pub mod network;
pub mod transport;
