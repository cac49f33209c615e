//! The Azure VM provider (spec/providers.md §2.3), being built: `azure_identity`'s
//! credentials on an HTTP transport of the tree's own ([`transport`]), and the token they give
//! for Azure Resource Manager ([`credential`]). The ARM client, the shared network, the
//! per-lease resources and the `Provider` come next (docs/design/cloud-providers.md, "Azure").

pub mod credential;
pub mod transport;
