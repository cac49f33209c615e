//! The watcher's wire protocol: one question, one answer, one connection each. The client
//! sends the line `generation`; the daemon drains its inotify queue and answers with one line
//! of JSON. Draining first is what makes the answer a barrier: inotify queues an event inside
//! the system call that made the change, so every change that completed before the question
//! was asked is counted in the generation that comes back.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Bump when a field changes meaning; clients treat any other version as no answer.
pub const PROTOCOL_VERSION: u32 = 1;
/// The one question.
pub const QUESTION: &str = "generation";
/// Longest line either side accepts.
pub const MAX_LINE: u64 = 4096;

/// The daemon's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Answer {
    pub version: u32,
    /// Random per daemon instance: a generation means nothing to another instance.
    pub nonce: String,
    pub pid: u32,
    /// Every watch is installed and no event was lost since; only then does `generation` count.
    pub ready: bool,
    /// Changes seen under the root since the daemon started (never decreases).
    pub generation: u64,
    /// Directories watched.
    pub watches: u64,
    /// Why the daemon is not ready (watch limit, unsupported file system, overflow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broken: Option<String>,
}

/// Why no usable answer came back.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// No daemon listens on the socket (missing file, or a dead daemon's leftover).
    #[error("no watcher is running")]
    Absent,
    #[error("could not talk to the watcher")]
    Io(#[source] std::io::Error),
    #[error("the watcher's answer was not understood")]
    Garbage,
}

/// Asks the daemon listening on `socket` for its generation, waiting at most `timeout` for
/// each read and write.
pub fn ask(socket: &Path, timeout: Duration) -> Result<Answer, AskError> {
    let mut stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => AskError::Absent,
        _ => AskError::Io(e),
    })?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(AskError::Io)?;
    stream
        .write_all(format!("{QUESTION}\n").as_bytes())
        .map_err(AskError::Io)?;
    let mut line = String::new();
    BufReader::new(stream.take(MAX_LINE))
        .read_line(&mut line)
        .map_err(AskError::Io)?;
    let answer: Answer = serde_json::from_str(line.trim_end()).map_err(|_| AskError::Garbage)?;
    if answer.version != PROTOCOL_VERSION {
        return Err(AskError::Garbage);
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    fn serve_once(listener: &UnixListener, reply: &'static str) -> std::thread::JoinHandle<String> {
        let listener = listener.try_clone().unwrap();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut question = String::new();
            BufReader::new(&stream).read_line(&mut question).unwrap();
            (&stream).write_all(reply.as_bytes()).unwrap();
            question
        })
    }

    #[test]
    fn answers_garbage_and_absent_daemons() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("sock");
        assert!(matches!(
            ask(&socket, Duration::from_secs(1)),
            Err(AskError::Absent)
        ));
        let listener = UnixListener::bind(&socket).unwrap();
        let server = serve_once(
            &listener,
            "{\"version\":1,\"nonce\":\"n\",\"pid\":7,\"ready\":true,\"generation\":3,\"watches\":2}\n",
        );
        let answer = ask(&socket, Duration::from_secs(1)).unwrap();
        assert_eq!(server.join().unwrap(), "generation\n");
        assert_eq!((answer.generation, answer.ready), (3, true));
        assert_eq!(answer.broken, None);

        let server = serve_once(&listener, "hello\n");
        assert!(matches!(
            ask(&socket, Duration::from_secs(1)),
            Err(AskError::Garbage)
        ));
        server.join().unwrap();
        let server = serve_once(
            &listener,
            "{\"version\":2,\"nonce\":\"n\",\"pid\":7,\"ready\":true,\"generation\":3,\"watches\":2}\n",
        );
        assert!(matches!(
            ask(&socket, Duration::from_secs(1)),
            Err(AskError::Garbage)
        ));
        server.join().unwrap();

        // A leftover socket file with nobody listening is the same as no daemon.
        drop(listener);
        assert!(socket.exists());
        assert!(matches!(
            ask(&socket, Duration::from_secs(1)),
            Err(AskError::Absent)
        ));
    }

    #[test]
    fn a_silent_daemon_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("sock");
        let _listener = UnixListener::bind(&socket).unwrap();
        assert!(matches!(
            ask(&socket, Duration::from_millis(20)),
            Err(AskError::Io(_))
        ));
    }
}
