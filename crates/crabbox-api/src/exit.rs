//! The exit-code contract (spec/cli-dataplane.md §0.3). Automation matches on these numbers,
//! so they never change meaning.

/// Exit codes Crabbox itself uses. `run` otherwise passes the remote command's code through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// Success.
    Ok,
    /// Generic failure (doctor found problems, unclassified errors).
    Failure,
    /// Usage, configuration or validation error.
    Usage,
    /// Authentication or authorization failure.
    Auth,
    /// Lease, claim or provider resource not found; identity conflict.
    NotFound,
    /// Readiness or wait timeout.
    Readiness,
    /// Sync failure.
    Sync,
    /// Remote SSH operation failure.
    Remote,
    /// Interrupted by Ctrl-C / SIGTERM.
    Interrupted,
}

impl ExitStatus {
    /// The process exit code.
    pub const fn code(self) -> u8 {
        match self {
            ExitStatus::Ok => 0,
            ExitStatus::Failure => 1,
            ExitStatus::Usage => 2,
            ExitStatus::Auth => 3,
            ExitStatus::NotFound => 4,
            ExitStatus::Readiness => 5,
            ExitStatus::Sync => 6,
            ExitStatus::Remote => 7,
            ExitStatus::Interrupted => 130,
        }
    }
}
