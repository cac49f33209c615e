//! One module per subcommand; each has an `Args` struct and one `run` function.

pub mod admin;
pub mod admin_hosts;
pub mod admin_providers;
pub mod cleanup;
pub mod completions;
pub mod config;
pub mod coordinator;
pub mod doctor;
pub mod heartbeat;
pub mod history;
pub mod image;
pub mod image_bake;
pub mod init;
pub mod inspect;
pub mod list;
pub mod login;
pub mod run;
pub mod screenshot;
pub mod ssh;
pub mod status;
pub mod stop;
pub mod sync_plan;
pub mod usage;
pub mod vnc;
pub mod warmup;
pub mod watch;
