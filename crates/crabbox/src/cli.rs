//! The command tree.

use clap::{Args, Parser, Subcommand};

use crate::commands;

/// Crabbox: warm a box, sync the diff, run the suite.
#[derive(Debug, Parser)]
#[command(name = "crabbox", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Lease-shaping flags shared by `warmup` and `run`.
#[derive(Debug, Clone, Args, Default)]
pub struct LeaseFlags {
    /// Provider to lease from (`local`, `ssh`).
    #[arg(long)]
    pub provider: Option<String>,
    /// Machine class (tiny, small, standard, fast, large, beast).
    #[arg(long)]
    pub class: Option<String>,
    /// Maximum lifetime, Go syntax (e.g. 90m, 2h).
    #[arg(long)]
    pub ttl: Option<String>,
    /// Release after this long without use (e.g. 30m).
    #[arg(long = "idle-timeout")]
    pub idle_timeout: Option<String>,
    /// Requested slug for a new lease.
    #[arg(long)]
    pub slug: Option<String>,
    /// Static host for provider=ssh.
    #[arg(long = "static-host")]
    pub static_host: Option<String>,
    /// Static user for provider=ssh.
    #[arg(long = "static-user")]
    pub static_user: Option<String>,
    /// Static port for provider=ssh.
    #[arg(long = "static-port")]
    pub static_port: Option<String>,
    /// Static work root for provider=ssh.
    #[arg(long = "static-work-root")]
    pub static_work_root: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Lease a runner, sync the tree, run a command there and release the runner.
    Run(commands::run::Args),
    /// Lease a runner and keep it warm for later `run --id` calls.
    Warmup(commands::warmup::Args),
    /// Release a lease and delete its runner.
    #[command(alias = "release")]
    Stop(commands::stop::Args),
    /// List leases known on this machine.
    List(commands::list::Args),
    /// Show one lease's state.
    Status(commands::status::Args),
    /// Show every detail of one lease.
    Inspect(commands::inspect::Args),
    /// Print the ssh command line for a lease.
    Ssh(commands::ssh::Args),
    /// Touch a lease once now (with the runner's telemetry) and print its new expiry.
    Heartbeat(commands::heartbeat::Args),
    /// Release direct leases past their TTL or idle timeout.
    Cleanup(commands::cleanup::Args),
    /// Show what a sync of this directory would send (no lease needed).
    SyncPlan(commands::sync_plan::Args),
    /// Check tools, config and keys; say what to fix.
    Doctor(commands::doctor::Args),
    /// Show or locate configuration.
    #[command(subcommand)]
    Config(commands::config::ConfigCommand),
    /// Write a starter .crabbox.yaml.
    Init(commands::init::Args),
    /// Log in to a coordinator (GitHub in the browser, or --token-stdin).
    Login(commands::login::LoginArgs),
    /// Forget the coordinator token.
    Logout(commands::login::JsonArgs),
    /// Show who the coordinator thinks you are.
    Whoami(commands::login::JsonArgs),
    /// List recorded runs (coordinator).
    History(commands::history::HistoryArgs),
    /// Print a recorded run's log (coordinator).
    Logs(commands::history::LogsArgs),
    /// Print a recorded run's events (coordinator).
    Events(commands::history::EventsArgs),
    /// Show this month's usage and cost caps (coordinator).
    Usage(commands::usage::Args),
    /// Coordinator administration (admin token).
    #[command(subcommand)]
    Admin(commands::admin::AdminCommand),
    /// Run the coordinator (`crabbox coordinator serve`).
    #[command(subcommand)]
    Coordinator(commands::coordinator::CoordinatorCommand),
    /// Print shell completions.
    Completions(commands::completions::Args),
    /// Print the version.
    Version,
    /// The file watcher daemon for one sync root (started by Crabbox itself).
    #[command(name = "__watch", hide = true)]
    Watch(commands::watch::Args),
}
