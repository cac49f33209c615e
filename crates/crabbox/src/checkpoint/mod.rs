//! Checkpoints: saved, reusable runner state kept as local records (spec providers.md §3).
//! A record names what was saved (a workspace archive beside it, a provider image or
//! snapshot, or only a recipe) and where it came from. This module owns the record format,
//! the store on disk, verification of local archives and the prune selection; the commands
//! live in `commands::checkpoint`, and provider calls in [`native`].

pub mod native;
pub mod prune;
pub mod record;
pub mod store;
pub mod verify;

pub use prune::{KindClass, PruneFilter, parse_age};
pub use record::Record;
pub use store::Store;
pub use verify::{Audit, verify};
