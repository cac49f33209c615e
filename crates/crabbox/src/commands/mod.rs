//! One module per subcommand; each has an `Args` struct and one `run` function.

pub mod cleanup;
pub mod completions;
pub mod config;
pub mod doctor;
pub mod init;
pub mod inspect;
pub mod list;
pub mod run;
pub mod ssh;
pub mod status;
pub mod stop;
pub mod sync_plan;
pub mod warmup;

use crate::cli::Command;
use crate::error::CliResult;

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
        Command::Cleanup(args) => cleanup::run(args).await,
        Command::SyncPlan(args) => sync_plan::run(&args),
        Command::Doctor(args) => Ok(doctor::run(&args)),
        Command::Config(cmd) => config::run(&cmd),
        Command::Init(args) => init::run(&args),
        Command::Completions(args) => Ok(completions::run(&args)),
        Command::Version => {
            crate::output::out(format!("crabbox {}", env!("CARGO_PKG_VERSION")));
            Ok(0)
        }
    }
}
