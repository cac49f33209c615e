//! The runner's side of archives: the command lines that run the embedded scripts, the remote
//! stderr kept for error messages, and the errors a failed call becomes.

use std::process::Stdio;

use tokio::io::AsyncReadExt;
use tokio::process::Child;
use tokio::task::JoinHandle;

use crate::process::{Cmd, ProcessError};
use crate::quote::sh_quote;
use crate::ssh::{CallOptions, SshTarget};

use super::ArchiveError;

/// How much of the remote stderr an error keeps: its end, where the reason usually is.
const STDERR_TAIL: usize = 2000;

/// `script` run by bash on the runner with `args` as `$1...`, stdout and stderr piped.
pub(super) fn bash(target: &SshTarget, script: &str, args: &[&str]) -> Cmd {
    // As for the session script: a high SHLVL keeps Debian's bash from sourcing ~/.bashrc
    // again (it would also be free to print into the archive stream).
    remote(
        target,
        format!("SHLVL=8 exec bash -c {} crabbox", sh_quote(script)),
        args,
    )
}

/// `script` run by perl on the runner with `args` as `@ARGV`, stdout and stderr piped.
pub(super) fn perl(target: &SshTarget, script: &str, args: &[&str]) -> Cmd {
    remote(
        target,
        format!("exec perl -e {} --", sh_quote(script)),
        args,
    )
}

fn remote(target: &SshTarget, mut command: String, args: &[&str]) -> Cmd {
    for arg in args {
        command.push(' ');
        command.push_str(&sh_quote(arg));
    }
    target
        .command(CallOptions::default(), &command)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
}

/// Runs a short remote command to completion; its stdout when it exits 0.
pub(super) async fn run(
    target: &SshTarget,
    action: &'static str,
    cmd: Cmd,
) -> Result<String, ArchiveError> {
    let out = cmd.capture(None).await.map_err(broken(target, action))?;
    if out.code != 0 {
        return Err(failed(
            target,
            action,
            out.code,
            &String::from_utf8_lossy(&out.stderr),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Collects the end of a spawned child's stderr while it runs.
pub(super) fn stderr_tail(child: &mut Child) -> JoinHandle<String> {
    let mut pipe = child.stderr.take().expect("stderr was piped");
    tokio::spawn(async move {
        let mut kept = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = pipe.read(&mut buf).await {
            kept.extend_from_slice(&buf[..n]);
            if kept.len() > 2 * STDERR_TAIL {
                kept.drain(..kept.len() - STDERR_TAIL);
            }
        }
        String::from_utf8_lossy(&kept).into_owned()
    })
}

/// The error for a remote command that exited with `code`, keeping the end of its stderr.
pub(super) fn failed(
    target: &SshTarget,
    action: &'static str,
    code: i32,
    stderr: &str,
) -> ArchiveError {
    let stderr = stderr.trim();
    let start = stderr
        .char_indices()
        .map(|(i, _)| i)
        .find(|&i| stderr.len() - i <= STDERR_TAIL)
        .unwrap_or(stderr.len());
    let what = if code == 255 {
        "ssh exited with code 255".to_owned()
    } else {
        format!("exit code {code}")
    };
    let detail = match &stderr[start..] {
        "" => what,
        tail => format!("{what}: {tail}"),
    };
    remote_error(target, action, detail, None)
}

/// The error for a remote command that could not be run or waited for.
pub(super) fn broken<'a>(
    target: &'a SshTarget,
    action: &'static str,
) -> impl FnOnce(ProcessError) -> ArchiveError + 'a {
    move |source| remote_error(target, action, "could not run ssh".into(), Some(source))
}

pub(super) fn remote_error(
    target: &SshTarget,
    action: &'static str,
    detail: String,
    source: Option<ProcessError>,
) -> ArchiveError {
    ArchiveError::Remote {
        host: target.host.clone(),
        action,
        detail,
        source,
    }
}

/// The error for IO on a running ssh child (its pipes, waiting for it).
pub(super) fn lost(
    target: &SshTarget,
    action: &'static str,
    source: std::io::Error,
) -> ArchiveError {
    let source = ProcessError::Io {
        program: "ssh".into(),
        source,
    };
    remote_error(target, action, "lost track of ssh".into(), Some(source))
}
