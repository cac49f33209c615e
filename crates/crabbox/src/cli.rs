//! The command tree, and the dispatch of a parsed command to its module.

use clap::{Parser, Subcommand};

use crate::commands::{
    admin, checkpoint, cleanup, completions, config, coordinator, doctor, heartbeat, history,
    image, init, inspect, list, login, run, screenshot, ssh, status, stop, sync_plan, usage, vnc,
    warmup, watch,
};
use crate::error::CliResult;

/// Crabbox: warm a box, sync the diff, run the suite.
#[derive(Debug, Parser)]
#[command(name = "crabbox", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Lease a runner, sync the tree, run a command there and release the runner.
    Run(run::Args),
    /// Lease a runner and keep it warm for later `run --id` calls.
    Warmup(warmup::Args),
    /// Release a lease and delete its runner.
    #[command(alias = "release")]
    Stop(stop::Args),
    /// List leases known on this machine.
    List(list::Args),
    /// Show one lease's state.
    Status(status::Args),
    /// Show every detail of one lease.
    Inspect(inspect::Args),
    /// Print the ssh command line for a lease.
    Ssh(ssh::Args),
    /// Save a PNG of a desktop lease's screen.
    Screenshot(screenshot::Args),
    /// Forward a local port to a desktop lease's VNC server until Ctrl-C.
    Vnc(vnc::Args),
    /// Touch a lease once now (with the runner's telemetry) and print its new expiry.
    Heartbeat(heartbeat::Args),
    /// Release direct leases past their TTL or idle timeout.
    Cleanup(cleanup::Args),
    /// Show what a sync of this directory would send (no lease needed).
    SyncPlan(sync_plan::Args),
    /// Check tools, config and keys; say what to fix.
    Doctor(doctor::Args),
    /// Show or locate configuration.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Write a starter .crabbox.yaml.
    Init(init::Args),
    /// Log in to a coordinator (GitHub in the browser, or --token-stdin).
    Login(login::LoginArgs),
    /// Forget the coordinator token.
    Logout(login::JsonArgs),
    /// Show who the coordinator thinks you are.
    Whoami(login::JsonArgs),
    /// List recorded runs (coordinator).
    History(history::HistoryArgs),
    /// Print a recorded run's log (coordinator).
    Logs(history::LogsArgs),
    /// Print a recorded run's events (coordinator).
    Events(history::EventsArgs),
    /// Show this month's usage and cost caps (coordinator).
    Usage(usage::Args),
    /// Checkpoints: saved, reusable runner state (create, list, inspect, fork, restore, delete, prune).
    #[command(subcommand)]
    Checkpoint(checkpoint::CheckpointCommand),
    /// Runner images: create, promote, fast snapshot restore, delete, list (admin token).
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Coordinator administration (admin token).
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Run the coordinator (`crabbox coordinator serve`).
    #[command(subcommand)]
    Coordinator(coordinator::CoordinatorCommand),
    /// Print shell completions.
    Completions(completions::Args),
    /// Print the version.
    Version,
    /// The file watcher daemon for one sync root (started by Crabbox itself).
    #[command(name = "__watch", hide = true)]
    Watch(watch::Args),
}

/// Runs a parsed command and returns the process exit code.
pub async fn dispatch(command: Command) -> CliResult<u8> {
    match command {
        Command::Run(args) => run::run(args).await,
        Command::Warmup(args) => warmup::run(args).await,
        Command::Stop(args) => stop::run(args).await,
        Command::List(args) => list::run(args).await,
        Command::Status(args) => status::run(args).await,
        Command::Inspect(args) => inspect::run(args).await,
        Command::Ssh(args) => ssh::run(args).await,
        Command::Screenshot(args) => screenshot::run(args).await,
        Command::Vnc(args) => vnc::run(args).await,
        Command::Heartbeat(args) => heartbeat::run(args).await,
        Command::Cleanup(args) => cleanup::run(args).await,
        Command::SyncPlan(args) => sync_plan::run(&args),
        Command::Doctor(args) => Ok(doctor::run(&args).await),
        Command::Config(cmd) => config::run(&cmd),
        Command::Init(args) => init::run(&args),
        Command::Completions(args) => Ok(completions::run(
            &args,
            &<Cli as clap::CommandFactory>::command(),
        )),
        Command::Login(args) => login::login(args).await,
        Command::Logout(args) => login::logout(&args),
        Command::Whoami(args) => login::whoami(args).await,
        Command::History(args) => history::history(args).await,
        Command::Logs(args) => history::logs(args).await,
        Command::Events(args) => history::events(args).await,
        Command::Usage(args) => usage::run(args).await,
        Command::Checkpoint(cmd) => checkpoint::run(cmd).await,
        Command::Image(cmd) => image::run(cmd).await,
        Command::Admin(cmd) => admin::run(cmd).await,
        Command::Coordinator(cmd) => coordinator::run(cmd).await,
        Command::Watch(args) => Ok(watch::run(&args)),
        Command::Version => {
            crate::output::out(format!("crabbox {}", env!("CARGO_PKG_VERSION")));
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn hidden_subcommands_are_not_completed() {
        let mut script = Vec::new();
        let mut cmd = completions::visible(&Cli::command());
        clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, "crabbox", &mut script);
        let script = String::from_utf8(script).unwrap();
        assert!(script.contains("sync-plan") && script.contains("doctor"));
        assert!(!script.contains("__watch"));
    }
}
