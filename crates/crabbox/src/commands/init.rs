//! `crabbox init`: write a starter `.crabbox.yaml`.

use std::path::PathBuf;

use crabbox_api::ExitStatus;

use crate::error::{CliError, CliResult, WithStatus};
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
    /// Where to write.
    #[arg(long, default_value = ".crabbox.yaml")]
    pub config: PathBuf,
}

pub fn run(args: &Args) -> CliResult<u8> {
    if args.config.exists() && !args.force {
        return Err(CliError::msg(
            ExitStatus::Usage,
            format!("{} already exists", args.config.display()),
        )
        .hint("pass --force to overwrite it"));
    }
    let cwd = std::env::current_dir().status(ExitStatus::Usage)?;
    let name = cwd
        .file_name()
        .map_or_else(|| "repo".into(), |n| n.to_string_lossy().into_owned());
    let tmp = args.config.with_extension("yaml.tmp");
    std::fs::write(&tmp, crabbox_core::config::starter_repo_config(&name))
        .status(ExitStatus::Failure)?;
    std::fs::rename(&tmp, &args.config).status(ExitStatus::Failure)?;
    output::out(format!("wrote {}", args.config.display()));
    Ok(0)
}
