//! The run's output as the record keeps it: the last 8 MiB for the finish (sent in ≤64 KiB
//! `logChunks`), and the [`Tee`] that copies each stream into it and into live output events.

use std::sync::{Arc, Mutex};

use super::EventSink;

/// Finish splits the log into pieces of at most this size; the preview is its last piece.
const LOG_CHUNK: usize = 64 * 1024;

/// `text` in pieces of at most `max` bytes, cut on character boundaries.
pub(super) fn split_utf8(text: &str, max: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = rest.len().min(max);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (piece, tail) = rest.split_at(cut);
        pieces.push(piece);
        rest = tail;
    }
    pieces
}

/// The finish body's `logChunks`: the log in ≤64 KiB pieces (spec §4.11).
pub(super) fn log_chunks(text: &str) -> Vec<String> {
    split_utf8(text, LOG_CHUNK)
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// The finish body's `log` preview: the last ≤64 KiB of the log, cut on a character boundary.
pub(super) fn log_preview(text: &str) -> &str {
    let mut start = text.len().saturating_sub(LOG_CHUNK);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// The last 8 MiB of a run's output (stdout and stderr interleaved), for the run record.
#[derive(Debug, Clone, Default)]
pub struct LogTail {
    inner: Arc<Mutex<(Vec<u8>, u64)>>,
}

/// What the coordinator keeps of a log.
pub const LOG_TAIL_BYTES: usize = 8 * 1024 * 1024;

impl LogTail {
    pub fn push(&self, bytes: &[u8]) {
        let mut guard = self.inner.lock().expect("log tail lock");
        let (buf, total) = &mut *guard;
        *total += bytes.len() as u64;
        buf.extend_from_slice(bytes);
        if buf.len() > LOG_TAIL_BYTES * 2 {
            let cut = buf.len() - LOG_TAIL_BYTES;
            buf.drain(..cut);
        }
    }

    /// `(text, truncated)`: the kept tail as UTF-8 (lossy at a cut boundary).
    pub fn take(&self) -> (String, bool) {
        let guard = self.inner.lock().expect("log tail lock");
        let (buf, total) = &*guard;
        let start = buf.len().saturating_sub(LOG_TAIL_BYTES);
        (
            String::from_utf8_lossy(&buf[start..]).into_owned(),
            *total > LOG_TAIL_BYTES as u64,
        )
    }
}

/// Where a [`Tee`] copies what it writes: the log tail and live output events of one stream.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    pub log: Option<LogTail>,
    pub events: Option<(EventSink, &'static str)>,
}

/// Forwards writes to `inner` and copies them into a [`Recording`].
#[derive(Debug)]
pub struct Tee<W> {
    inner: W,
    copy: Recording,
}

impl<W> Tee<W> {
    pub fn new(inner: W, copy: Recording) -> Self {
        Self { inner, copy }
    }
}

impl<W: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Tee<W> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let poll = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = &poll {
            if let Some(tail) = &self.copy.log {
                tail.push(&buf[..*n]);
            }
            if let Some((sink, stream)) = &self.copy.events {
                sink.output(stream, &buf[..*n]);
            }
        }
        poll
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_are_bounded_and_cut_on_character_boundaries() {
        let text = "é".repeat(5);
        let pieces = split_utf8(&text, 3);
        assert!(pieces.iter().all(|p| p.len() <= 3 && !p.is_empty()));
        assert_eq!(pieces.concat(), text);
        assert!(split_utf8("", 3).is_empty());
        let log = "x".repeat(LOG_CHUNK * 2 + 5);
        let chunks = log_chunks(&log);
        assert_eq!(
            chunks.iter().map(String::len).collect::<Vec<_>>(),
            [LOG_CHUNK, LOG_CHUNK, 5]
        );
        assert_eq!(log_preview(&log).len(), LOG_CHUNK);
        assert_eq!(log_preview("short"), "short");
        let wide = "é".repeat(LOG_CHUNK);
        assert!(log_preview(&wide).len() <= LOG_CHUNK && log_preview(&wide).starts_with('é'));
    }
}
