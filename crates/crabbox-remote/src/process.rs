//! Process spawning: every child Crabbox starts goes through here. Children get their own
//! process group (so a terminal Ctrl-C reaches Crabbox, which decides what to forward), are
//! killed when their handle drops, and have stdout and stderr pumped separately.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Stdio;

use tokio::process::{Child, Command};

/// Error from running a local program.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("could not start `{program}`")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{program}` failed with exit code {code}: {stderr}")]
    Failed {
        program: String,
        code: i32,
        stderr: String,
    },
    #[error("io error talking to `{program}`")]
    Io {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

/// A command line about to run.
#[derive(Debug)]
pub struct Cmd {
    program: String,
    inner: Command,
}

/// Captured result of a finished command.
#[derive(Debug)]
pub struct Captured {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        let program_ref = program.as_ref();
        let mut inner = Command::new(program_ref);
        inner
            .kill_on_drop(true)
            .process_group(0)
            .stdin(Stdio::null());
        Self {
            program: program_ref.to_string_lossy().into_owned(),
            inner,
        }
    }

    #[must_use]
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.inner.args(args);
        self
    }

    #[must_use]
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.inner.arg(arg);
        self
    }

    #[must_use]
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.inner.current_dir(dir);
        self
    }

    #[must_use]
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.inner.env(key, value);
        self
    }

    #[must_use]
    pub fn stdin(mut self, stdin: Stdio) -> Self {
        self.inner.stdin(stdin);
        self
    }

    #[must_use]
    pub fn stdout(mut self, stdout: Stdio) -> Self {
        self.inner.stdout(stdout);
        self
    }

    #[must_use]
    pub fn stderr(mut self, stderr: Stdio) -> Self {
        self.inner.stderr(stderr);
        self
    }

    pub fn program(&self) -> &str {
        &self.program
    }

    /// Spawns the child with the stdio set so far.
    pub fn spawn(mut self) -> Result<(Child, String), ProcessError> {
        match self.inner.spawn() {
            Ok(child) => Ok((child, self.program)),
            Err(source) => Err(ProcessError::Spawn {
                program: self.program,
                source,
            }),
        }
    }

    /// Runs to completion capturing both streams; any exit code is returned, not an error.
    pub async fn capture(mut self, stdin: Option<Vec<u8>>) -> Result<Captured, ProcessError> {
        use tokio::io::AsyncWriteExt;
        self.inner.stdout(Stdio::piped()).stderr(Stdio::piped());
        if stdin.is_some() {
            self.inner.stdin(Stdio::piped());
        }
        let (mut child, program) = self.spawn()?;
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin was piped");
            let program = program.clone();
            // Feed stdin concurrently so a child that writes a lot before reading cannot block us.
            tokio::spawn(async move {
                if let Err(source) = pipe.write_all(&input).await {
                    let _ = ProcessError::Io { program, source };
                }
            });
        }
        let output = child
            .wait_with_output()
            .await
            .map_err(|source| ProcessError::Io {
                program: program.clone(),
                source,
            })?;
        Ok(Captured {
            code: exit_code(output.status),
            stdout: output.stdout,
            stderr: output.stderr,
        })
    }

    /// Runs to completion and fails unless the exit code is 0.
    pub async fn run_ok(self, stdin: Option<Vec<u8>>) -> Result<Captured, ProcessError> {
        let program = self.program.clone();
        let out = self.capture(stdin).await?;
        if out.code == 0 {
            Ok(out)
        } else {
            Err(ProcessError::Failed {
                program,
                code: out.code,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            })
        }
    }
}

/// The exit code of a finished child; death by signal N maps to 128+N like a shell does.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Starts a long-lived helper that outlives this process (the file watcher): no kill on drop,
/// stdio on `/dev/null` so it never holds a caller's pipes open, `/` as its working directory.
/// The helper leaves our session itself (`setsid`); a thread reaps it if it exits while we
/// still run.
pub fn spawn_detached(
    program: &Path,
    args: &[std::ffi::OsString],
    env: &[(std::ffi::OsString, std::ffi::OsString)],
) -> std::io::Result<u32> {
    let mut child = std::process::Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let pid = child.id();
    std::thread::spawn(move || child.wait());
    Ok(pid)
}

/// Sends SIGTERM to a process group (best effort).
pub fn terminate_group(pid: u32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid.cast_signed()) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::TERM);
    }
}

/// Sends a signal to one process (best effort); used to stop daemons by pid file.
pub fn signal_pid(pid: i32, kill: bool) -> bool {
    let Some(pid) = rustix::process::Pid::from_raw(pid) else {
        return false;
    };
    let signal = if kill {
        rustix::process::Signal::KILL
    } else {
        rustix::process::Signal::TERM
    };
    rustix::process::kill_process(pid, signal).is_ok()
}

/// Whether a process with this pid exists.
pub fn pid_alive(pid: i32) -> bool {
    let exists = rustix::process::Pid::from_raw(pid)
        .is_some_and(|pid| rustix::process::test_kill_process(pid).is_ok());
    // A daemon whose parent is an init that never reaps (common in containers) lingers as a
    // zombie: it is dead for our purposes.
    exists
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
}

/// Every descendant pid of `pid`, children before grandchildren (Linux: read from /proc;
/// elsewhere none are found).
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut parents: Vec<(i32, i32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Ok(p) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            let Some((_, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
                parents.push((p, ppid));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(current) = frontier.pop() {
        for (child, parent) in &parents {
            if *parent == current {
                out.push(*child);
                frontier.push(*child);
            }
        }
    }
    out
}

/// The effective user id of this process.
pub fn current_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}
