//! Wire types shared by the Crabbox CLI and (later) the coordinator: identifiers, the exit-code
//! contract and the JSON views printed by `--json`. This crate owns shapes and names, not
//! behaviour: nothing here performs IO beyond drawing random bytes for new identifiers.

pub mod coord;
pub mod exit;
pub mod ids;
pub mod view;

pub use exit::ExitStatus;
pub use ids::{LeaseId, RunId};
