//! Amazon EC2's data for the shared cloud model: the class tables, what an instance type's
//! name says about the machine, and how EC2 error codes map onto the shared error vocabulary.
//! The AWS provider crate calls these with what the SDK returned.

pub mod classes;
pub mod errors;
pub mod shape;

pub use classes::CATALOG;
