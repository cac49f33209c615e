//! The Crabbox domain without IO: the configuration model and its layering, the words that
//! describe a machine (classes, targets, architectures, capacity markets), friendly slugs,
//! Go-compatible durations, the lease expiry math, and URLs shown without their credentials.
//! Nothing here spawns processes, touches the network or reads files; callers hand in file
//! contents and environment maps.

pub mod config;
pub mod duration;
pub mod machine;
pub mod redact;
pub mod slug;
