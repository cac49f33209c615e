//! The watcher daemon (`crabbox __watch <root> <dir>`): one per sync root, single-threaded,
//! blocking. It polls its inotify descriptor, its listening socket and a signal pipe; counts
//! changes as they arrive; and answers each question after draining the queue once more.
//!
//! It gives up its place rather than guess: a lost event (queue overflow) or a changed set of
//! git directories rebuilds every watch and bumps the generation; a full watch table or a
//! network file system (where other machines' writes raise no events) make it answer "not
//! ready" until it exits. It exits after `idle` without a question, when the root is deleted,
//! moved or replaced, when its socket is taken away, and on SIGTERM/SIGINT/SIGHUP, removing
//! its socket. An exclusive `flock` on the directory's lock file keeps it alone per root.

use std::fs::OpenOptions;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::{FlockOperation, flock};

use super::WatchDir;
use super::protocol::{Answer, MAX_LINE, PROTOCOL_VERSION, QUESTION};
use super::tree::{BuildError, Tree};

/// Exit after this long without a question.
pub const DEFAULT_IDLE: Duration = Duration::from_mins(30);
/// Overrides [`DEFAULT_IDLE`] (whole seconds), for tests and benches.
pub const IDLE_ENV: &str = "CRABBOX_WATCH_IDLE_SECS";
/// A daemon that hit the watch limit tries again at most this often.
const RETRY_AFTER: Duration = Duration::from_mins(5);
/// How often the daemon wakes without events to check its socket is still its own.
const HOUSEKEEPING: Duration = Duration::from_secs(30);
/// How long a connected client may take to send its question.
const CLIENT_TIMEOUT: Duration = Duration::from_millis(200);

/// File systems where changes can come from elsewhere (other machines, a FUSE daemon's
/// backend) without raising inotify events here: NFS, SMB/CIFS, FUSE (sshfs, virtiofs), 9p,
/// Ceph, AFS, Coda.
const REMOTE_FS_MAGIC: &[u64] = &[
    0x6969,
    0x517b,
    0xfe53_4d42,
    0xff53_4d42,
    0x6573_5546,
    0x0102_1997,
    0x00c3_6400,
    0x5346_414f,
    0x7375_7245,
];

/// How the daemon ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Another daemon holds the root's lock.
    AlreadyRunning,
    Idle,
    RootGone,
    Signal,
    /// The socket file was removed or replaced.
    SocketGone,
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("could not set up the watcher in {path}")]
    Setup {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the watcher's event loop failed")]
    Poll(#[source] io::Error),
}

/// What the daemon serves.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// Canonical sync root.
    pub root: PathBuf,
    pub dir: WatchDir,
    pub idle: Duration,
}

impl DaemonOptions {
    /// Options with the idle time from [`IDLE_ENV`], else [`DEFAULT_IDLE`].
    pub fn new(root: PathBuf, dir: WatchDir) -> Self {
        let idle = std::env::var(IDLE_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(DEFAULT_IDLE, Duration::from_secs);
        Self { root, dir, idle }
    }
}

struct Daemon {
    root: PathBuf,
    nonce: String,
    generation: u64,
    tree: Option<Tree>,
    broken: Option<String>,
    /// When the watches were last (re)built after a failure; `None` when retrying is futile.
    retry_from: Option<Instant>,
    exit: Option<Exit>,
}

fn setup_error(path: &Path) -> impl FnOnce(io::Error) -> DaemonError + '_ {
    move |source| DaemonError::Setup {
        path: path.to_owned(),
        source,
    }
}

/// Runs the daemon until it exits.
pub fn serve(opts: &DaemonOptions) -> Result<Exit, DaemonError> {
    // Leave the spawning terminal's session: no SIGHUP or Ctrl-C from it reaches us.
    let _ = rustix::process::setsid();
    let lock_path = opts.dir.lock_file();
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(setup_error(&lock_path))?;
    if flock(&lock, FlockOperation::NonBlockingLockExclusive).is_err() {
        return Ok(Exit::AlreadyRunning);
    }
    // Holding the lock, any socket file is a dead daemon's leftover.
    let socket = opts.dir.socket();
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket).map_err(setup_error(&socket))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
        .map_err(setup_error(&socket))?;
    let socket_ino = std::fs::symlink_metadata(&socket)
        .map_err(setup_error(&socket))?
        .ino();
    listener
        .set_nonblocking(true)
        .map_err(setup_error(&socket))?;
    let (signals, signal_writer) = UnixStream::pair().map_err(setup_error(&socket))?;
    signals
        .set_nonblocking(true)
        .map_err(setup_error(&socket))?;
    for signal in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ] {
        let writer = signal_writer.try_clone().map_err(setup_error(&socket))?;
        signal_hook::low_level::pipe::register(signal, writer).map_err(setup_error(&socket))?;
    }

    let mut daemon = Daemon {
        root: opts.root.clone(),
        nonce: nonce(),
        generation: 0,
        tree: None,
        broken: None,
        retry_from: None,
        exit: None,
    };
    daemon.start();
    let result = daemon.run(&listener, &signals, &socket, socket_ino, opts.idle);
    if std::fs::symlink_metadata(&socket).is_ok_and(|m| m.ino() == socket_ino) {
        let _ = std::fs::remove_file(&socket);
    }
    drop(lock);
    result
}

fn nonce() -> String {
    use rand_core::RngCore;
    let mut bytes = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl Daemon {
    fn start(&mut self) {
        match rustix::fs::statfs(&self.root) {
            Ok(fs) if REMOTE_FS_MAGIC.contains(&(fs.f_type as u64)) => {
                self.broken = Some(format!(
                    "{} is on a network or FUSE file system (type {:#x}); changes made through \
                     other mounts raise no events here",
                    self.root.display(),
                    fs.f_type
                ));
            }
            _ => self.rebuild(),
        }
    }

    /// Drops every watch and watches the tree again. The generation moves past every value
    /// answered before, so nothing cached across the gap can match.
    fn rebuild(&mut self) {
        self.tree = None;
        self.generation += 1;
        match Tree::build(&self.root) {
            Ok(tree) => {
                self.tree = Some(tree);
                self.broken = None;
                self.retry_from = None;
            }
            Err(BuildError::Io { path, source })
                if path == self.root && source.kind() == io::ErrorKind::NotFound =>
            {
                self.exit = Some(Exit::RootGone);
            }
            Err(e @ BuildError::Limit) => {
                self.broken = Some(e.to_string());
                self.retry_from = Some(Instant::now() + RETRY_AFTER);
            }
            Err(e) => {
                self.broken = Some(error_chain(&e));
                self.retry_from = Some(Instant::now() + RETRY_AFTER);
            }
        }
    }

    fn drain(&mut self) {
        let Some(tree) = &mut self.tree else { return };
        match tree.drain() {
            Ok(drained) => {
                self.generation += drained.changes;
                if drained.root_gone {
                    self.exit = Some(Exit::RootGone);
                } else if drained.rebuild {
                    self.rebuild();
                }
            }
            // A new directory could not be watched (watch limit): what happens inside it
            // from now on would go unseen.
            Err(BuildError::Limit) => {
                self.tree = None;
                self.generation += 1;
                self.broken = Some(BuildError::Limit.to_string());
                self.retry_from = Some(Instant::now() + RETRY_AFTER);
            }
            Err(_) => self.rebuild(),
        }
    }

    fn answer(&mut self) -> Answer {
        if self.tree.is_some() {
            self.drain();
            if self.tree.as_ref().is_some_and(|t| !t.root_intact()) {
                self.exit = Some(Exit::RootGone);
            }
        } else if self.retry_from.is_some_and(|at| Instant::now() >= at) {
            self.rebuild();
        }
        let ready = self.tree.is_some() && self.broken.is_none() && self.exit.is_none();
        Answer {
            version: PROTOCOL_VERSION,
            nonce: self.nonce.clone(),
            pid: std::process::id(),
            ready,
            generation: self.generation,
            watches: self.tree.as_ref().map_or(0, |t| t.watches() as u64),
            broken: if self.exit == Some(Exit::RootGone) {
                Some("the root was deleted or moved".to_owned())
            } else {
                self.broken.clone()
            },
        }
    }

    fn serve_client(&mut self, stream: &UnixStream) {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(CLIENT_TIMEOUT));
        let _ = stream.set_write_timeout(Some(CLIENT_TIMEOUT));
        let mut line = String::new();
        if BufReader::new(stream.take(MAX_LINE))
            .read_line(&mut line)
            .is_err()
            || line.trim_end() != QUESTION
        {
            return;
        }
        let answer = self.answer();
        let mut text = serde_json::to_string(&answer).expect("answers serialize");
        text.push('\n');
        // A client that gave up (timeout) is gone: nothing to do about a broken pipe.
        let _ = (&*stream).write_all(text.as_bytes());
    }

    fn run(
        &mut self,
        listener: &UnixListener,
        signals: &UnixStream,
        socket: &Path,
        socket_ino: u64,
        idle: Duration,
    ) -> Result<Exit, DaemonError> {
        let mut last_question = Instant::now();
        loop {
            if let Some(exit) = self.exit {
                return Ok(exit);
            }
            let now = Instant::now();
            let deadline = last_question + idle;
            if now >= deadline {
                return Ok(Exit::Idle);
            }
            let wait = (deadline - now).min(HOUSEKEEPING);
            let timeout = Timespec {
                tv_sec: wait.as_secs().cast_signed(),
                tv_nsec: i64::from(wait.subsec_nanos()),
            };
            let (signalled, events, clients) = {
                let mut fds = vec![
                    PollFd::new(signals, PollFlags::IN),
                    PollFd::new(listener, PollFlags::IN),
                ];
                if let Some(tree) = &self.tree {
                    fds.push(PollFd::from_borrowed_fd(tree.fd(), PollFlags::IN));
                }
                match poll(&mut fds, Some(&timeout)) {
                    Ok(_) | Err(rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(DaemonError::Poll(e.into())),
                }
                let ready = |fd: &PollFd<'_>| !fd.revents().is_empty();
                (
                    ready(&fds[0]),
                    fds.get(2).is_some_and(ready),
                    ready(&fds[1]),
                )
            };
            if signalled {
                return Ok(Exit::Signal);
            }
            if events {
                self.drain();
            }
            if clients {
                loop {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            last_question = Instant::now();
                            self.serve_client(&stream);
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
            }
            if !std::fs::symlink_metadata(socket).is_ok_and(|m| m.ino() == socket_ino) {
                return Ok(Exit::SocketGone);
            }
        }
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
