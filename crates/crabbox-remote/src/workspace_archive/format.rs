//! Which compression an archive file uses, told by its first bytes rather than its name.

use std::fs::File;
use std::io::{self, Read, Seek};
use std::path::Path;

use super::ArchiveError;

/// The first bytes of a zstd frame.
pub(super) const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
/// The first bytes of a gzip member.
const GZIP_MAGIC: [u8; 2] = [0x1F, 0x8B];

/// The compression of an archive file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    /// `.tar.zst`, what Crabbox writes.
    Zstd,
    /// `.tar.gz`, what the Go system wrote.
    Gzip,
}

impl Format {
    /// Opens `path` and tells its format; the file is returned positioned at its start.
    pub(super) fn open(path: &Path) -> Result<(Format, File), ArchiveError> {
        let mut file = File::open(path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => ArchiveError::Missing(path.to_owned()),
            _ => ArchiveError::Io {
                path: path.to_owned(),
                source,
            },
        })?;
        let mut head = [0u8; 4];
        let len = read_up_to(&mut file, &mut head).map_err(ArchiveError::io(path))?;
        file.rewind().map_err(ArchiveError::io(path))?;
        let format = if head[..len] == ZSTD_MAGIC {
            Format::Zstd
        } else if head[..len].starts_with(&GZIP_MAGIC) {
            Format::Gzip
        } else {
            return Err(ArchiveError::invalid(
                path,
                "it is neither a zstd nor a gzip compressed tar",
            ));
        };
        Ok((format, file))
    }

    /// A reader of the tar stream inside `compressed`. Concatenated frames (zstd) and members
    /// (gzip) are read as one stream, as `zstd -d` and `gzip -d` on the runner read them.
    pub(super) fn decoder<'a>(self, compressed: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Format::Zstd => Box::new(zstd::stream::read::Decoder::new(compressed)?),
            Format::Gzip => Box::new(flate2::read::MultiGzDecoder::new(compressed)),
        })
    }
}

/// Reads until `buf` is full or the input ends; returns how much was read.
pub(super) fn read_up_to(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut len = 0;
    while len < buf.len() {
        match input.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(len)
}
