//! `crabbox`: parse, run the command, report errors, exit with the contract's code.

mod broker;
mod checkpoint;
mod cli;
mod clouds;
mod commands;
mod compat;
mod credentials;
mod error;
mod interrupt;
mod lease;
mod output;
mod paths;
mod run_record;
mod settings;
mod syncprep;
mod syncstate;
mod user_config;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = compat::normalize(
        &<cli::Cli as clap::CommandFactory>::command(),
        std::env::args_os().collect(),
    );
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() { 2 } else { 0 };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    // The watcher daemon is single-threaded blocking code that lives for up to half an hour:
    // no runtime (and no idle worker threads) for it.
    if let cli::Command::Watch(args) = &cli.command {
        return ExitCode::from(commands::watch::run(args));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    match runtime.block_on(cli::dispatch(cli.command)) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            output::err(err.report().trim_end());
            ExitCode::from(err.code)
        }
    }
}
