//! Hetzner Cloud's data for the shared cloud model (spec/providers.md §2.1): the class tables,
//! what a server type's name says about the machine, and how Hetzner's error codes map onto
//! the shared error vocabulary. The Hetzner provider crate calls these with what its API
//! returned.

pub mod classes;
pub mod errors;

pub use classes::CATALOG;
