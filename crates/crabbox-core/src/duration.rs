//! Go-compatible durations.
