//! The first ssh call of a restore: the runner extracts the archive into a fresh staging
//! directory while this side checks the same bytes.
//!
//! The runner is sent only bytes the check has read past: each time the check asks for more
//! input, everything it was given before goes out. A decoder asks for input only once it has
//! handed out everything it could decode, so every complete tar header the runner can see has
//! already been checked, and a refused entry never reaches the runner. (The stage is thrown away
//! after a refusal all the same; the workdir is only ever touched by the second call.)

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::mpsc;

use crate::process::exit_code;
use crate::ssh::SshTarget;

use super::check::walk;
use super::format::Format;
use super::{ArchiveError, CheckReport, blocking, remote};

const RECEIVE_SCRIPT: &str = include_str!("scripts/receive.sh");
const ACTION: &str = "extracting the archive";
/// Bytes gathered before they go to the runner in one write.
const CHUNK: usize = 256 * 1024;
/// How long the runner gets to stop after its input was cut short before ssh is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// What was received into the stage.
#[derive(Debug)]
pub(super) struct Received {
    pub report: CheckReport,
    /// Archive bytes sent to the runner.
    pub sent: u64,
}

/// What the runner is sent: the archive file as it is, or (when the runner has no zstd) the
/// plain tar inside it.
#[derive(Debug, Clone, Copy)]
enum Stream {
    AsIs(Format),
    Plain,
}

impl Stream {
    /// The line that tells the receive script what follows.
    fn header(self) -> &'static [u8] {
        match self {
            Stream::AsIs(Format::Zstd) => b"zst\n",
            Stream::AsIs(Format::Gzip) => b"gz\n",
            Stream::Plain => b"tar\n",
        }
    }
}

/// Extracts the archive (`file`, opened as `format`) into `stage` on the runner, checking it on
/// the way. The check's refusal wins over whatever the runner said.
pub(super) async fn receive(
    target: &SshTarget,
    archive: &Path,
    (format, file): (Format, File),
    stage: &str,
) -> Result<Received, ArchiveError> {
    let mut child = remote::bash(target, RECEIVE_SCRIPT, &[stage])
        .stdin(Stdio::piped())
        .spawn()
        .map_err(remote::broken(target, ACTION))?
        .0;
    let stderr = remote::stderr_tail(&mut child);
    let stdin = child.stdin.take().expect("stdin was piped");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout was piped"));
    let Some(runner_has_zstd) = handshake(&mut stdout).await else {
        drop(stdin);
        let status = wait(&mut child, Some(STOP_GRACE)).await;
        return Err(failure(target, status, &stderr.await.unwrap_or_default()));
    };
    let stream = match format {
        Format::Zstd if !runner_has_zstd => Stream::Plain,
        _ => Stream::AsIs(format),
    };
    let (chunks, released) = mpsc::channel(4);
    let path = archive.to_owned();
    let (checked, sent) = tokio::join!(
        blocking(move || check_and_send(file, &path, format, stream, chunks)),
        forward(stdin, stream.header(), released),
    );
    let status = wait(&mut child, checked.is_err().then_some(STOP_GRACE)).await;
    match (checked?, status) {
        (Some(report), Ok(status)) if status.success() => Ok(Received {
            report,
            sent: sent.unwrap_or_default(),
        }),
        (_, status) => Err(failure(target, status, &stderr.await.unwrap_or_default())),
    }
}

/// Waits for the script's ready line: whether the runner has zstd; `None` if the script ended
/// (failed) first. Lines before it (a chatty shell startup) are skipped.
async fn handshake(stdout: &mut BufReader<ChildStdout>) -> Option<bool> {
    let mut limited = stdout.take(64 * 1024);
    let mut line = String::new();
    loop {
        line.clear();
        if limited.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        match line.trim_end() {
            "crabbox-ready zstd" => return Some(true),
            "crabbox-ready plain" => return Some(false),
            _ => {}
        }
    }
}

/// Writes the stream header, then every chunk the check releases, to the runner; closes its
/// stdin once the check is done. Returns the archive bytes sent.
async fn forward(
    mut stdin: ChildStdin,
    header: &[u8],
    mut released: mpsc::Receiver<Vec<u8>>,
) -> io::Result<u64> {
    stdin.write_all(header).await?;
    let mut sent = 0;
    while let Some(chunk) = released.recv().await {
        stdin.write_all(&chunk).await?;
        sent += chunk.len() as u64;
    }
    stdin.shutdown().await?;
    Ok(sent)
}

/// Checks the archive while releasing what the check has read past to the runner. `Ok(None)`:
/// the runner stopped reading first (its own error says why).
fn check_and_send(
    file: File,
    archive: &Path,
    format: Format,
    stream: Stream,
    chunks: mpsc::Sender<Vec<u8>>,
) -> Result<Option<CheckReport>, ArchiveError> {
    match stream {
        Stream::AsIs(_) => {
            let mut release = Release::new(file, chunks);
            let checked = format
                .decoder(&mut release)
                .map_err(ArchiveError::io(archive))
                .and_then(|tar| walk(tar, archive));
            release.conclude(checked)
        }
        Stream::Plain => {
            let tar = format.decoder(file).map_err(ArchiveError::io(archive))?;
            let mut release = Release::new(tar, chunks);
            let checked = walk(&mut release, archive);
            release.conclude(checked)
        }
    }
}

/// A reader that hands its input to the check and releases it to the runner one read later.
struct Release<R> {
    input: R,
    held: Vec<u8>,
    /// `None` once the runner stopped taking chunks.
    chunks: Option<mpsc::Sender<Vec<u8>>>,
}

impl<R: Read> Release<R> {
    fn new(input: R, chunks: mpsc::Sender<Vec<u8>>) -> Self {
        Self {
            input,
            held: Vec::with_capacity(2 * CHUNK),
            chunks: Some(chunks),
        }
    }

    fn release(&mut self) -> io::Result<()> {
        let chunk = std::mem::replace(&mut self.held, Vec::with_capacity(2 * CHUNK));
        match &self.chunks {
            Some(chunks) if chunks.blocking_send(chunk).is_ok() => Ok(()),
            _ => {
                self.chunks = None;
                Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the runner stopped reading",
                ))
            }
        }
    }

    /// After the check: on success, sends the rest of the input and what is still held.
    fn conclude(
        mut self,
        checked: Result<CheckReport, ArchiveError>,
    ) -> Result<Option<CheckReport>, ArchiveError> {
        if self.chunks.is_none() {
            return Ok(None);
        }
        let report = checked?;
        // The check read the stream to its end; anything after it goes too, as the file has it.
        let rest = io::copy(&mut self.input, &mut self.held);
        Ok(rest.and_then(|_| self.release()).ok().map(|()| report))
    }
}

impl<R: Read> Read for Release<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Everything read before this call has been looked at by the check: it may go.
        if self.held.len() >= CHUNK {
            self.release()?;
        }
        let n = self.input.read(buf)?;
        self.held.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

/// Waits for ssh to exit; with a `grace`, kills it when it takes longer.
async fn wait(child: &mut Child, grace: Option<Duration>) -> io::Result<ExitStatus> {
    if let Some(grace) = grace {
        if let Ok(status) = tokio::time::timeout(grace, child.wait()).await {
            return status;
        }
        child.start_kill()?;
    }
    child.wait().await
}

fn failure(target: &SshTarget, status: io::Result<ExitStatus>, stderr: &str) -> ArchiveError {
    match status {
        Ok(status) => remote::failed(target, ACTION, exit_code(status), stderr),
        Err(err) => remote::lost(target, ACTION, err),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{noise, tar};
    use super::*;

    /// Runs `check_and_send` on `archive`: its result and everything it released.
    fn released(
        archive: &[u8],
        format: Format,
        stream: Stream,
    ) -> (Result<Option<CheckReport>, ArchiveError>, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("archive");
        std::fs::write(&path, archive).unwrap();
        let (chunks, mut released) = mpsc::channel::<Vec<u8>>(4);
        let runner = std::thread::spawn(move || {
            let mut received = Vec::new();
            while let Some(chunk) = released.blocking_recv() {
                received.extend_from_slice(&chunk);
            }
            received
        });
        let file = File::open(&path).unwrap();
        let result = check_and_send(file, &path, format, stream, chunks);
        (result, runner.join().unwrap())
    }

    #[test]
    fn a_valid_archive_is_sent_whole_as_it_is_or_decompressed() {
        let big = noise(3 * CHUNK);
        let plain = tar(&[("./", b'5', b""), ("./big", b'0', &big)]);
        let zst = zstd::encode_all(&plain[..], 3).unwrap();

        let (result, sent) = released(&zst, Format::Zstd, Stream::AsIs(Format::Zstd));
        assert_eq!(result.unwrap().unwrap().files, 1);
        assert!(sent == zst, "the file goes as it is");

        let (result, sent) = released(&zst, Format::Zstd, Stream::Plain);
        assert_eq!(result.unwrap().unwrap().files, 1);
        assert!(sent == plain, "the tar inside it goes");
    }

    #[test]
    fn the_runner_never_sees_a_refused_entry() {
        let big = noise(3 * CHUNK);
        let plain = tar(&[("./big", b'0', &big), ("../x", b'0', b"escaped")]);
        let zst = zstd::encode_all(&plain[..], 3).unwrap();
        let refused_header = b"../x\0\0\0\0";
        let seen = |tar: &[u8]| tar.windows(8).any(|w| w == refused_header);
        assert!(seen(&plain));

        let (result, sent) = released(&zst, Format::Zstd, Stream::Plain);
        assert!(result.is_err());
        assert!(
            sent.len() > CHUNK,
            "what was checked went on: {}",
            sent.len()
        );
        assert!(!seen(&sent));

        let (result, sent) = released(&zst, Format::Zstd, Stream::AsIs(Format::Zstd));
        assert!(result.is_err());
        let mut decoded = Vec::new();
        let mut unzstd = zstd::stream::read::Decoder::new(&sent[..]).unwrap();
        let _ = unzstd.read_to_end(&mut decoded);
        assert!(
            decoded.len() > CHUNK,
            "what was checked went on: {}",
            decoded.len()
        );
        assert!(!seen(&decoded));
    }
}
