//! `crabbox config show|path`.

use clap::Subcommand;

use crate::error::CliResult;
use crate::lease;
use crate::output;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print every resolved value with where it came from.
    Show {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the user config file path.
    Path,
}

pub fn run(cmd: &ConfigCommand) -> CliResult<u8> {
    match cmd {
        ConfigCommand::Path => output::out(crate::paths::user_config_file().display().to_string()),
        ConfigCommand::Show { json } => {
            let json = *json;
            let ctx = lease::context(Vec::new())?;
            if json {
                output::json(&ctx.settings.show_json());
            } else {
                output::out(ctx.settings.show_text().trim_end());
            }
        }
    }
    Ok(0)
}
