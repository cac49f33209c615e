//! The model every cloud provider shares (docs/design/cloud-providers.md): which machine types
//! a class means on a platform, how capacity is bought and where, the order in which types,
//! markets and regions are tried with every attempt recorded, the names and labels of what a
//! lease creates and when it may be cleaned up, the Linux cloud-init that boots a runner, and
//! what a runner costs. Pure code: nothing here talks to a network or spawns a process; the
//! provider crates call it with what their APIs returned.
//!
//! Each cloud's data (class tables, type shapes, error codes) is a module of its own (`aws`,
//! `hetzner`); Azure adds its own beside them and reuses everything else.

pub mod attempt;
pub mod aws;
pub mod azure;
pub mod capacity;
pub mod class;
pub mod cloud_init;
pub mod cost;
pub mod desktop;
pub mod fallback;
pub mod hetzner;
pub mod labels;
pub mod macos;
pub mod names;
pub mod windows;

pub use attempt::{Category, ProvisioningAttempt, Refusal};
pub use capacity::CapacityPlan;
pub use class::{
    Candidates, Catalog, ClassTable, MachineRequest, MachineShape, Platform, SpecError,
};

/// What readiness runs on a cloud runner once SSH answers: the bootstrap's ready script of the
/// lease's target (`target` label; PowerShell on Windows, `crabbox-ready` elsewhere).
pub fn ready_check(record: &crate::LeaseRecord) -> &'static str {
    if record.target() == Some(crabbox_core::machine::TargetOs::Windows) {
        windows::READY_CHECK
    } else {
        cloud_init::READY_CHECK
    }
}

pub use fallback::{
    Backoff, Pacing, ProvisionFailure, Provisioned, SystemPacing, TryPlan, provision,
};
