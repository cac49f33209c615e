//! Argument compatibility with the Go CLI, whose flag parser accepted `-flag` as well as
//! `--flag`, and `--flag=false` for booleans. Rewrites argv into clap's dialect before parsing;
//! everything after the command's first positional word (or after `--`) is left alone, so a
//! remote command's own flags are never touched.

use std::ffi::OsString;

use clap::{ArgAction, Command};

/// Rewrites Go-style flags for the subcommand named in `args`.
pub fn normalize(cmd: &Command, args: Vec<OsString>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut iter = args.into_iter();
    out.extend(iter.next());
    let mut current = cmd.clone();
    let mut in_flags = true;
    let mut expects_value = false;
    for arg in iter {
        let Some(text) = arg.to_str().map(str::to_owned) else {
            out.push(arg);
            continue;
        };
        if !in_flags || text == "--" {
            in_flags = false;
            out.push(arg);
            continue;
        }
        if expects_value {
            expects_value = false;
            out.push(arg);
            continue;
        }
        if !text.starts_with('-') {
            // A subcommand name descends; any other word is the first positional.
            if let Some(sub) = current.find_subcommand(&text).cloned() {
                current = sub;
            } else {
                in_flags = false;
            }
            out.push(arg);
            continue;
        }
        let long = if text.starts_with("--") {
            text.clone()
        } else if text.len() > 2 && text.as_bytes()[1].is_ascii_alphabetic() {
            format!("-{text}")
        } else {
            out.push(arg);
            continue;
        };
        let (name, value) = match long[2..].split_once('=') {
            Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
            None => (long[2..].to_owned(), None),
        };
        let Some(spec) = current.get_arguments().find(|a| {
            a.get_long() == Some(name.as_str())
                || a.get_all_aliases()
                    .is_some_and(|al| al.contains(&name.as_str()))
        }) else {
            out.push(arg);
            continue;
        };
        match (spec.get_action(), value.as_deref()) {
            (ArgAction::SetTrue, Some("false" | "0")) => {}
            (ArgAction::SetTrue, Some("true" | "1")) => out.push(format!("--{name}").into()),
            (ArgAction::SetTrue | ArgAction::Help | ArgAction::Version, _) | (_, Some(_)) => {
                out.push(long.into());
            }
            (_, None) => {
                expects_value = true;
                out.push(long.into());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn norm(args: &[&str]) -> Vec<String> {
        let args = args.iter().map(OsString::from).collect();
        normalize(&crate::cli::Cli::command(), args)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn go_style_flags_become_clap_flags() {
        assert_eq!(
            norm(&[
                "crabbox",
                "run",
                "-id",
                "blue-crab",
                "-keep=false",
                "-shell=true",
                "--",
                "ls",
                "-la"
            ]),
            [
                "crabbox",
                "run",
                "--id",
                "blue-crab",
                "--shell",
                "--",
                "ls",
                "-la"
            ]
        );
        assert_eq!(
            norm(&["crabbox", "run", "--ttl=2h", "make", "-j4", "-keep"]),
            ["crabbox", "run", "--ttl=2h", "make", "-j4", "-keep"]
        );
        assert_eq!(
            norm(&["crabbox", "config", "show", "-json"]),
            ["crabbox", "config", "show", "--json"]
        );
        assert_eq!(norm(&["crabbox", "run", "-h"]), ["crabbox", "run", "-h"]);
    }
}
