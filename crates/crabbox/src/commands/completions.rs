//! `crabbox completions <shell>`.

use clap::CommandFactory;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: clap_complete::Shell,
}

pub fn run(args: &Args) -> u8 {
    let mut cmd = visible(&crate::cli::Cli::command());
    clap_complete::generate(args.shell, &mut cmd, "crabbox", &mut std::io::stdout());
    0
}

/// The command tree without hidden subcommands (the watcher daemon's `__watch`), which
/// `clap_complete` would otherwise offer.
fn visible(full: &clap::Command) -> clap::Command {
    let subcommands: Vec<clap::Command> = full
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    let mut cmd = clap::Command::new("crabbox")
        .version(env!("CARGO_PKG_VERSION"))
        .propagate_version(true)
        .subcommands(subcommands);
    if let Some(about) = full.get_about() {
        cmd = cmd.about(about.clone());
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_subcommands_are_not_completed() {
        let mut script = Vec::new();
        let mut cmd = visible(&crate::cli::Cli::command());
        clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, "crabbox", &mut script);
        let script = String::from_utf8(script).unwrap();
        assert!(script.contains("sync-plan") && script.contains("doctor"));
        assert!(!script.contains("__watch"));
    }
}
