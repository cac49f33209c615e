//! The Hetzner Cloud provider (spec/providers.md §2.1), on a small typed client of the Hetzner
//! Cloud API over reqwest. The `hcloud` crate is generated from the OpenAPI document and
//! returns neither the API's error codes nor its response headers, and both matter here:
//! fallback reads the codes, and pacing reads the `RateLimit-*` headers to slow down before
//! the API says 429. It uses the shared cloud model of `crabbox_providers::cloud` for classes,
//! fallback, labels, cloud-init and cost; everything here talks to Hetzner.

pub mod api;
pub mod client;
mod create;
pub mod provider;
pub mod settings;

pub use provider::HetznerProvider;
pub use settings::HetznerSettings;
