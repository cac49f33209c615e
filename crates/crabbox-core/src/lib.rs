//! The Crabbox domain without IO: the configuration model and its layering, friendly slugs,
//! Go-compatible durations, the lease expiry math, and URLs shown without their credentials.
//! Nothing here spawns processes, touches the network or reads files; callers hand in file
//! contents and environment maps.

pub mod config;
pub mod duration;
pub mod redact;
pub mod slug;
