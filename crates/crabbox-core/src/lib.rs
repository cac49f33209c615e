//! The Crabbox domain without IO: the configuration model and its layering, friendly slugs,
//! Go-compatible durations and the lease expiry math. Nothing here spawns processes, touches
//! the network or reads files; callers hand in file contents and environment maps.

pub mod config;
pub mod duration;
pub mod slug;
