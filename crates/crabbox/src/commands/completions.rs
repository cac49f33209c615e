//! `crabbox completions <shell>`.

#[derive(Debug, clap::Args)]
pub struct Args {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: clap_complete::Shell,
}

/// Prints the completion script for `full`, the whole command tree.
pub fn run(args: &Args, full: &clap::Command) -> u8 {
    let mut cmd = visible(full);
    clap_complete::generate(args.shell, &mut cmd, "crabbox", &mut std::io::stdout());
    0
}

/// `full` without hidden subcommands (the watcher daemon's `__watch`), which
/// `clap_complete` would otherwise offer.
pub fn visible(full: &clap::Command) -> clap::Command {
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
