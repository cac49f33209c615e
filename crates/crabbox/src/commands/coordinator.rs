//! `crabbox coordinator serve`: the coordinator in this same binary.

use crabbox_api::ExitStatus;

use crate::error::{CliError, CliResult};

#[derive(Debug, clap::Subcommand)]
pub enum CoordinatorCommand {
    /// Serve the /v1 API (SQLite by default; --database-url postgres://… for several replicas).
    Serve(crabbox_coordinator::ServeArgs),
}

pub async fn run(cmd: CoordinatorCommand) -> CliResult<u8> {
    match cmd {
        CoordinatorCommand::Serve(args) => {
            crabbox_coordinator::serve(args).await.map_err(|e| {
                CliError::new(ExitStatus::Failure, e)
                    .hint("`crabbox coordinator serve --help` lists every setting")
            })?;
            Ok(0)
        }
    }
}
