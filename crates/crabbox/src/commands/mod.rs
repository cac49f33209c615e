//! One module per subcommand; each has an `Args` struct and one `run` function.

pub mod admin;
pub mod cleanup;
pub mod completions;
pub mod config;
pub mod coordinator;
pub mod doctor;
pub mod heartbeat;
pub mod history;
pub mod init;
pub mod inspect;
pub mod list;
pub mod login;
pub mod run;
pub mod ssh;
pub mod status;
pub mod stop;
pub mod sync_plan;
pub mod usage;
pub mod warmup;
pub mod watch;

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
        Command::Heartbeat(args) => heartbeat::run(args).await,
        Command::Cleanup(args) => cleanup::run(args).await,
        Command::SyncPlan(args) => sync_plan::run(&args),
        Command::Doctor(args) => Ok(doctor::run(&args).await),
        Command::Config(cmd) => config::run(&cmd),
        Command::Init(args) => init::run(&args),
        Command::Completions(args) => Ok(completions::run(&args)),
        Command::Login(args) => login::login(args).await,
        Command::Logout(args) => login::logout(&args),
        Command::Whoami(args) => login::whoami(args).await,
        Command::History(args) => history::history(args).await,
        Command::Logs(args) => history::logs(args).await,
        Command::Events(args) => history::events(args).await,
        Command::Usage(args) => usage::run(args).await,
        Command::Admin(cmd) => admin::run(cmd).await,
        Command::Coordinator(cmd) => coordinator::run(cmd).await,
        Command::Watch(args) => Ok(watch::run(&args)),
        Command::Version => {
            crate::output::out(format!("crabbox {}", env!("CARGO_PKG_VERSION")));
            Ok(0)
        }
    }
}
