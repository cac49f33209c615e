//! Coordinator wire types: the `/v1` JSON documents exchanged between the CLI, the coordinator
//! and its store. Field names are the existing coordinator's (camelCase, `leaseID`, `cloudID`),
//! so existing clients keep working. Fields this port does not model yet are kept verbatim in
//! `extra` maps and written back unchanged.

mod error;
mod lease;
pub mod number;
mod run;
mod telemetry;
mod time;
mod usage;

pub use error::ApiError;
pub use lease::{
    CreateAttempt, HeartbeatRequest, Lease, LeaseRequest, LeaseState, Lifecycle,
    RegistrationRequest, ReleaseRequest, Share,
};
pub use run::{
    LeaseOwner, Run, RunCreateRequest, RunEvent, RunEventRequest, RunFinishRequest, RunState,
    RunTelemetry, derived_phase,
};
pub use telemetry::{TELEMETRY_HISTORY_LIMIT, Telemetry};
pub use time::Timestamp;
pub use usage::{CostLimits, UsageGroup, UsageSummary, Whoami};
