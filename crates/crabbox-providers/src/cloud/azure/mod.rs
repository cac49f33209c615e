//! Azure's data for the shared cloud model (spec/providers.md §2.3): the VM size tables, what a
//! size's name says about the machine, and how Resource Manager's error codes map onto the
//! shared error vocabulary. The Azure provider crate calls these with what ARM returned.

pub mod classes;
pub mod errors;
pub mod shape;

pub use classes::CATALOG;
