//! One `crabbox run` on a runner as a single remote exec: the session script takes the lease's
//! run lock, skips the sync when the fingerprint matches, otherwise receives the manifest on
//! stdin while rsync and git push use parallel channels of the same SSH connection, and then
//! runs the command. On the warm path with nothing to sync this is exactly one round trip.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::watch;

use crate::git_seed::GitSeed;
use crate::process::{Cmd, ProcessError, exit_code};
use crate::quote::sh_quote;
use crate::rsync::{RsyncOptions, rsync_args};
use crate::ssh::{CallOptions, SshTarget};

const SESSION_SCRIPT: &str = include_str!("scripts/session.sh");
const SYNC_HELPER: &str = include_str!("scripts/crabbox-sync.pl");
const PROTO: &str = "@@crabbox@@ ";

/// Exit code the session script uses when the run lock could not be taken in time.
const LOCK_BUSY: i32 = 75;

/// What one session should do.
#[derive(Debug, Clone, Default)]
pub struct SessionPlan {
    pub workdir: String,
    /// Remote directory for Crabbox's sync metadata (fingerprint, manifest, caches).
    pub meta: String,
    /// Remote lock file shared by every run on the lease.
    pub lock: String,
    pub lock_wait: Duration,
    pub shell: bool,
    pub full_resync: bool,
    pub sync_only: bool,
    pub no_sync: bool,
    /// Keep the runner's git coherent (init, push HEAD/index/base refs).
    pub git: bool,
    pub allow_mass_deletions: bool,
    pub env: Vec<(String, String)>,
    pub argv: Vec<String>,
}

/// The data a sync sends, prepared only when the runner asks for it.
#[derive(Debug, Clone)]
pub struct SyncPayload {
    pub local_root: PathBuf,
    /// Full sync: every synced path (NUL-separated); the runner prunes what is no longer in
    /// it. Delta sync: only the paths that may have changed and still exist.
    pub manifest: Vec<u8>,
    /// Delta sync instead of a full one (the runner is where this machine left it).
    pub delta: bool,
    /// Delta files packed as a tar, sent inline on the session (no second remote exec);
    /// `None` sends `manifest` with rsync.
    pub tar: Option<Vec<u8>>,
    pub deleted: Vec<u8>,
    pub files: usize,
    pub bytes: u64,
    pub rsync: RsyncOptions,
    pub git: Option<GitSeed>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The client-side halves of a sync: the fingerprint (computed while the connection starts) and
/// the payload (built only when the runner asks for a sync).
#[derive(Debug)]
pub struct SyncHooks<FP, F> {
    pub fingerprint: FP,
    pub prepare: F,
}

/// What the runner reported when it asked for a sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunnerSyncState {
    /// The fingerprint of the runner's last completed sync, if it is still valid.
    pub fingerprint: Option<String>,
}

/// Progress reported while a session runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    WaitingForLock,
    Skipped(String),
    Syncing { files: usize, bytes: u64 },
    Synced,
    CommandStarted,
}

/// Measured result of a session.
#[derive(Debug, Clone, Default)]
pub struct SessionOutcome {
    pub exit_code: i32,
    pub ran_command: bool,
    pub sync_skipped: bool,
    /// A sync completed in this session.
    pub synced: bool,
    /// The sync sent only the paths that could have changed.
    pub delta: bool,
    pub interrupted: bool,
    pub sync_ms: u64,
    pub command_ms: u64,
    pub phases: Vec<(String, u64)>,
}

/// Why a session failed before the command could report an exit code.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("lease busy: another run kept the lease's run lock for {0:?}")]
    LeaseBusy(Duration),
    #[error("sync failed: {0}")]
    Sync(String),
    #[error("remote operation failed: {0}")]
    Remote(String),
    #[error("lost the SSH connection to {host} (exit 255){detail}")]
    ConnectionLost { host: String, detail: String },
    #[error("could not prepare the sync")]
    Prepare(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("interrupted")]
    Interrupted,
}

impl SessionPlan {
    /// The remote command string: `exec bash -c <script> crabbox <args…>`.
    pub fn remote_command(&self) -> String {
        let mut flags = Vec::new();
        for (on, name) in [
            (self.full_resync, "full-resync"),
            (self.sync_only, "sync-only"),
            (self.no_sync, "no-sync"),
            (self.git, "git"),
            (self.allow_mass_deletions, "allow-mass-deletions"),
        ] {
            if on {
                flags.push(name);
            }
        }
        let mut words = vec![
            self.workdir.clone(),
            self.meta.clone(),
            self.lock.clone(),
            self.lock_wait.as_secs().to_string(),
            if self.shell { "shell" } else { "argv" }.to_owned(),
            flags.join(","),
            SYNC_HELPER.to_owned(),
        ];
        if self.shell {
            words.push(self.argv.join(" "));
        } else {
            words.extend(self.argv.iter().cloned());
        }
        // Debian's bash sources ~/.bashrc for any top-level shell started by sshd (SHLVL < 2).
        // The login shell already paid that once; a high SHLVL keeps our bash from paying it
        // again on every run (the script resets SHLVL before starting the command).
        let mut remote = format!("SHLVL=8 exec bash -c {} crabbox", sh_quote(SESSION_SCRIPT));
        for word in &words {
            remote.push(' ');
            remote.push_str(&sh_quote(word));
        }
        remote
    }
}

fn ms(since: Instant) -> u64 {
    since.elapsed().as_millis() as u64
}

async fn push_git(
    target: &SshTarget,
    payload: &SyncPayload,
    workdir: &str,
    pushed: &str,
) -> Result<(), SessionError> {
    let Some(seed) = &payload.git else {
        return Ok(());
    };
    if seed.key() == pushed {
        return Ok(());
    }
    let out = Cmd::new("git")
        .current_dir(&payload.local_root)
        .env("GIT_SSH_COMMAND", target.transport_command())
        .args([
            "push",
            "--quiet",
            "--no-verify",
            &format!("{}:{workdir}", target.destination()),
        ])
        .args(seed.refspecs())
        .capture(None)
        .await?;
    if out.code == 0 {
        Ok(())
    } else {
        Err(SessionError::Sync(format!(
            "git push to the runner failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

async fn run_rsync(
    target: &SshTarget,
    payload: &SyncPayload,
    workdir: &str,
) -> Result<(), SessionError> {
    if payload.tar.is_some() || payload.manifest.is_empty() {
        return Ok(());
    }
    let list = payload.manifest.clone();
    let out = Cmd::new("rsync")
        .args(rsync_args(
            target,
            &payload.local_root,
            workdir,
            payload.rsync,
        ))
        .capture(Some(list))
        .await?;
    // 24 = some files vanished before they could be transferred: the user edited the tree
    // during the sync; the next fingerprint will differ and resync them.
    if out.code == 0 || out.code == 24 {
        Ok(())
    } else {
        Err(SessionError::Sync(format!(
            "rsync failed with exit code {}: {}",
            out.code,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Runs the session. `prepare_sync` is called only if the runner needs a sync.
pub async fn run_session<FP, F, Fut, O, E>(
    target: &SshTarget,
    plan: &SessionPlan,
    hooks: SyncHooks<FP, F>,
    mut on_event: impl FnMut(SessionEvent),
    mut stdout: O,
    mut stderr: E,
    mut cancel: watch::Receiver<bool>,
) -> Result<SessionOutcome, SessionError>
where
    FP: std::future::Future<Output = Result<String, BoxError>>,
    F: FnOnce(RunnerSyncState) -> Fut,
    Fut:
        std::future::Future<Output = Result<SyncPayload, Box<dyn std::error::Error + Send + Sync>>>,
    O: AsyncWrite + Unpin + Send + 'static,
    E: AsyncWrite + Unpin + Send + 'static,
{
    let start = Instant::now();
    let (mut child, _) = target
        .command(CallOptions::default(), &plan.remote_command())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take();
    let mut child_stderr = child.stderr.take().expect("stderr was piped");
    let err_pump = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut child_stderr, &mut stderr).await;
        let _ = stderr.flush().await;
    });
    let mut reader = BufReader::new(child.stdout.take().expect("stdout was piped"));
    let mut outcome = SessionOutcome::default();
    // The fingerprint is computed while ssh starts the session; the script waits for it.
    let fingerprint = match hooks.fingerprint.await {
        Ok(fp) => fp,
        Err(err) => {
            drop(stdin.take());
            let _ = child.kill().await;
            return Err(SessionError::Prepare(err));
        }
    };
    if let Some(pipe) = stdin.as_mut() {
        let mut head = format!("{fingerprint}\n").into_bytes();
        for (key, value) in &plan.env {
            head.extend_from_slice(format!("{key}={value}\0").as_bytes());
        }
        head.push(0);
        let _ = pipe.write_all(&head).await;
        let _ = pipe.flush().await;
    }
    let prepare_sync = hooks.prepare;
    let mut prepare = Some(prepare_sync);
    let mut payload: Option<SyncPayload> = None;
    let mut remote_error: Option<(String, String)> = None;
    let mut sync_started: Option<Instant> = None;
    let mut pushed = String::new();
    let mut line = String::new();
    let mut saw_exec = false;
    let mut sync_only_done = false;

    loop {
        line.clear();
        let read = tokio::select! {
            read = reader.read_line(&mut line) => read.map_err(|source| ProcessError::Io { program: "ssh".into(), source })?,
            _ = cancel.changed() => {
                drop(stdin.take());
                outcome.interrupted = true;
                break;
            }
        };
        if read == 0 {
            break;
        }
        let Some(msg) = line.trim_end().strip_prefix(PROTO) else {
            // Not ours (a login banner, say): pass it through.
            stdout.write_all(line.as_bytes()).await.ok();
            continue;
        };
        let (verb, rest) = msg.split_once(' ').unwrap_or((msg, ""));
        match verb {
            "waiting" => on_event(SessionEvent::WaitingForLock),
            "skipped" => {
                outcome.sync_skipped = true;
                on_event(SessionEvent::Skipped(rest.to_owned()));
            }
            "sync" => {
                let mut fields = rest.split(' ');
                fields.next().unwrap_or("-").clone_into(&mut pushed);
                let runner = RunnerSyncState {
                    fingerprint: fields
                        .next()
                        .filter(|f| *f != "-" && !f.is_empty())
                        .map(str::to_owned),
                };
                sync_started = Some(Instant::now());
                let prep = Instant::now();
                let p = (prepare.take().expect("sync requested once"))(runner)
                    .await
                    .map_err(SessionError::Prepare)?;
                outcome.delta = p.delta;
                outcome.phases.push(("manifest".into(), ms(prep)));
                on_event(SessionEvent::Syncing {
                    files: p.files,
                    bytes: p.bytes,
                });
                let tar = p.tar.as_deref().unwrap_or_default();
                let header = format!(
                    "{} {} {} {}\n",
                    if p.delta { "delta" } else { "full" },
                    p.manifest.len(),
                    p.deleted.len(),
                    tar.len()
                );
                if let Some(pipe) = stdin.as_mut() {
                    let write = async {
                        pipe.write_all(header.as_bytes()).await?;
                        pipe.write_all(&p.manifest).await?;
                        pipe.write_all(&p.deleted).await?;
                        pipe.write_all(tar).await?;
                        pipe.flush().await
                    };
                    if write.await.is_err() {
                        // The script died; its error line or exit code explains why.
                    }
                }
                payload = Some(p);
            }
            "ready" => {
                let p = payload.as_ref().expect("manifest sent before ready");
                let transfer = Instant::now();
                let timed = |start: Instant, r| (ms(start), r);
                let ((rsync_ms, rsync), (push_ms, push)) = tokio::join!(
                    async { timed(transfer, run_rsync(target, p, &plan.workdir).await) },
                    async { timed(transfer, push_git(target, p, &plan.workdir, &pushed).await) }
                );
                let name = match (p.delta, p.tar.is_some()) {
                    (true, true) => "inline_delta",
                    (true, false) => "rsync_delta",
                    _ => "rsync",
                };
                outcome.phases.push((name.into(), rsync_ms));
                if p.git.is_some() {
                    outcome.phases.push(("git_push".into(), push_ms));
                }
                let result = rsync.and(push);
                let line = match (&result, &p.git) {
                    (Ok(()), Some(seed)) => seed.synced_line(),
                    (Ok(()), None) => "synced - - - - -\n".to_owned(),
                    (Err(_), _) => "abort\n".to_owned(),
                };
                if let Some(pipe) = stdin.as_mut() {
                    let _ = pipe.write_all(line.as_bytes()).await;
                    let _ = pipe.flush().await;
                }
                if let Err(err) = result {
                    drop(stdin.take());
                    let _ = child.wait().await;
                    let _ = err_pump.await;
                    return Err(err);
                }
            }
            "synced" => {
                outcome.synced = true;
                if let Some(t) = sync_started {
                    outcome.sync_ms = ms(t);
                }
                on_event(SessionEvent::Synced);
            }
            "done" => sync_only_done = true,
            "error" => {
                let (kind, text) = rest.split_once(' ').unwrap_or((rest, ""));
                remote_error = Some((kind.to_owned(), text.replace('_', " ")));
            }
            "exec" => {
                saw_exec = true;
                break;
            }
            _ => {}
        }
    }

    let command_start = Instant::now();
    if saw_exec {
        on_event(SessionEvent::CommandStarted);
        outcome.ran_command = true;
        {
            let copy = tokio::io::copy(&mut reader, &mut stdout);
            tokio::pin!(copy);
            tokio::select! {
                _ = &mut copy => {}
                _ = cancel.changed() => {
                    outcome.interrupted = true;
                    // Closing the lifeline makes the session script kill the command's process group.
                    drop(stdin.take());
                    let _ = tokio::time::timeout(Duration::from_secs(5), &mut copy).await;
                }
            }
        }
        let _ = stdout.flush().await;
    }
    drop(stdin.take());
    let status = if let Ok(status) = tokio::time::timeout(
        Duration::from_secs(if outcome.interrupted { 5 } else { 3600 * 24 }),
        child.wait(),
    )
    .await
    {
        status.map_err(|source| ProcessError::Io {
            program: "ssh".into(),
            source,
        })?
    } else {
        let _ = child.kill().await;
        child.wait().await.map_err(|source| ProcessError::Io {
            program: "ssh".into(),
            source,
        })?
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), err_pump).await;
    let code = exit_code(status);
    outcome.command_ms = if saw_exec { ms(command_start) } else { 0 };
    outcome.exit_code = code;
    if outcome.interrupted {
        return Err(SessionError::Interrupted);
    }
    if saw_exec {
        if code == 255 && !target.master_alive().await {
            return Err(SessionError::ConnectionLost {
                host: target.host.clone(),
                detail: String::new(),
            });
        }
        return Ok(outcome);
    }
    if sync_only_done && code == 0 {
        outcome.command_ms = 0;
        let _ = start;
        return Ok(outcome);
    }
    match remote_error {
        Some((kind, _)) if kind == "locked" || code == LOCK_BUSY => {
            Err(SessionError::LeaseBusy(plan.lock_wait))
        }
        Some((kind, text)) if kind == "sync" => Err(SessionError::Sync(text)),
        Some((_, text)) => Err(SessionError::Remote(text)),
        None if code == 66 => Err(SessionError::Sync(
            "mass-deletion guard refused the sync".into(),
        )),
        None if code == 255 => Err(SessionError::ConnectionLost {
            host: target.host.clone(),
            detail: String::new(),
        }),
        None => Err(SessionError::Remote(format!(
            "session script exited with code {code} before the command started"
        ))),
    }
}
