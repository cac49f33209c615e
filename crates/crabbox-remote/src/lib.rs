//! The only Crabbox crate that spawns processes: the OpenSSH client (one `ControlMaster` per
//! lease), rsync, git, sshd and the file watcher daemon. It also owns the sync manifest, its
//! fingerprint (and the watcher that lets it skip `git status`) and the remote scripts that run
//! on a runner. It does not decide *which* lease to use or how to report
//! progress: callers pass plans in and get typed results and errors back.

pub mod archive;
pub mod desktop;
pub mod git_seed;
pub mod keys;
pub mod process;
pub mod quote;
pub mod rsync;
pub mod session;
pub mod ssh;
pub mod sshd;
pub mod sync;
pub mod watch;
pub mod workspace_archive;
