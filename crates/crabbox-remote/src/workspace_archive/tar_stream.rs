//! A streaming reader of tar headers that names each entry as GNU tar does when it extracts: a
//! pax `path`/`linkpath` wins over a GNU long name, which wins over the ustar name (joined to its
//! prefix only in POSIX ustar headers). Entry data is skipped, never held; metadata headers are
//! read into memory only up to a small cap. Where two sources of one name disagree, or a header
//! could be read two ways, the stream is refused rather than guessed at.

use std::io::{self, Read};

const BLOCK: u64 = 512;
/// GNU long names and link targets: far above any real path (`PATH_MAX` is 4096).
const MAX_LONG_NAME: u64 = 64 * 1024;
/// A pax extended header (names, times, and the odd extended attribute).
const MAX_PAX: u64 = 1024 * 1024;

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    File,
    Dir,
    Symlink,
    HardLink,
    /// Anything else, by its typeflag (devices, fifos, sparse files, ...).
    Special(u8),
}

/// One entry's header, with its final name and link target.
#[derive(Debug)]
pub(super) struct Entry {
    pub path: Vec<u8>,
    pub link: Vec<u8>,
    pub kind: Kind,
    /// Bytes of data that follow the header.
    pub size: u64,
}

/// Why the stream cannot be read.
#[derive(Debug)]
pub(super) enum TarError {
    /// Reading (decompressing) failed.
    Read(io::Error),
    /// The bytes are not a well-formed tar stream; the reason follows "the tar stream".
    Format(String),
}

impl TarError {
    fn format(reason: impl Into<String>) -> Self {
        TarError::Format(reason.into())
    }

    /// The reason, as the end of "<archive> is not a valid workspace archive: ...".
    pub(super) fn reason(&self) -> String {
        match self {
            TarError::Read(err) => format!("the compressed stream is truncated or corrupt ({err})"),
            TarError::Format(reason) => format!("the tar stream {reason}"),
        }
    }
}

/// Reads tar headers from an uncompressed stream.
#[derive(Debug)]
pub(super) struct TarStream<R> {
    input: R,
    /// Bytes consumed so far.
    offset: u64,
    /// Data (and padding) of the last entry, skipped before the next header.
    pending: u64,
}

/// Metadata headers collected for the next entry.
#[derive(Debug, Default)]
struct Meta {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<Pax>,
}

/// The keys of a pax header that matter to the check.
#[derive(Debug, Default)]
struct Pax {
    path: Option<Vec<u8>>,
    linkpath: Option<Vec<u8>>,
    size: Option<u64>,
    /// Any `GNU.sparse.*` key: GNU tar then takes the name and data layout from elsewhere.
    sparse: bool,
}

impl<R: Read> TarStream<R> {
    pub(super) fn new(input: R) -> Self {
        Self {
            input,
            offset: 0,
            pending: 0,
        }
    }

    /// The next entry, or `None` at the end-of-archive marker.
    pub(super) fn next_entry(&mut self) -> Result<Option<Entry>, TarError> {
        self.skip_pending()?;
        let mut meta = Meta::default();
        loop {
            let block = self.header()?;
            if block.iter().all(|&b| b == 0) {
                if meta.long_name.is_some() || meta.long_link.is_some() || meta.pax.is_some() {
                    return Err(TarError::format(
                        "ends after a metadata header with no entry",
                    ));
                }
                return Ok(None);
            }
            let size = number(&block[124..136]).ok_or_else(|| self.damaged())?;
            match block[156] {
                b'L' => set_once(&mut meta.long_name, self.metadata(size, MAX_LONG_NAME)?)?,
                b'K' => set_once(&mut meta.long_link, self.metadata(size, MAX_LONG_NAME)?)?,
                b'x' => set_once(&mut meta.pax, parse_pax(&self.metadata(size, MAX_PAX)?)?)?,
                b'g' => global(&parse_pax(&self.metadata(size, MAX_PAX)?)?)?,
                _ => return entry(&block, size, meta).map(|e| self.start(e)).map(Some),
            }
        }
    }

    /// Reads what follows the end-of-archive marker (padding) to the end, so a truncated or
    /// corrupt compressed stream is noticed; returns the length of the whole tar stream.
    pub(super) fn finish(mut self) -> Result<u64, TarError> {
        let rest = io::copy(&mut self.input, &mut io::sink()).map_err(TarError::Read)?;
        Ok(self.offset + rest)
    }

    fn start(&mut self, entry: Entry) -> Entry {
        self.pending = padded(entry.size);
        entry
    }

    fn skip_pending(&mut self) -> Result<(), TarError> {
        let want = std::mem::take(&mut self.pending);
        let skipped =
            io::copy(&mut (&mut self.input).take(want), &mut io::sink()).map_err(TarError::Read)?;
        self.offset += skipped;
        if skipped < want {
            return Err(TarError::format("ends in the middle of an entry's data"));
        }
        Ok(())
    }

    /// The next 512-byte header, with its checksum verified (an all-zero block is returned
    /// as is: it marks the end).
    fn header(&mut self) -> Result<[u8; 512], TarError> {
        let mut block = [0u8; 512];
        let len = super::format::read_up_to(&mut self.input, &mut block).map_err(TarError::Read)?;
        self.offset += len as u64;
        match len {
            0 => Err(TarError::format("ends without an end-of-archive marker")),
            512 if block.iter().all(|&b| b == 0) || checksum_ok(&block) => Ok(block),
            512 => Err(self.damaged()),
            _ => Err(TarError::format("ends in the middle of a header")),
        }
    }

    fn damaged(&self) -> TarError {
        TarError::format(format!(
            "has a damaged tar header at byte {}",
            self.offset - BLOCK
        ))
    }

    /// The data of a metadata header (a long name or a pax header), at most `cap` bytes.
    fn metadata(&mut self, size: u64, cap: u64) -> Result<Vec<u8>, TarError> {
        if size > cap {
            return Err(TarError::format(format!(
                "has a {size}-byte metadata header (the limit is {cap})"
            )));
        }
        let mut data = vec![0u8; size as usize];
        let len = super::format::read_up_to(&mut self.input, &mut data).map_err(TarError::Read)?;
        self.offset += len as u64;
        if len < data.len() {
            return Err(TarError::format("ends in the middle of a metadata header"));
        }
        self.pending = padded(size) - size;
        self.skip_pending()?;
        Ok(data)
    }
}

/// Builds the entry a header describes from the header and the metadata before it.
fn entry(block: &[u8; 512], header_size: u64, meta: Meta) -> Result<Entry, TarError> {
    let pax = meta.pax.unwrap_or_default();
    let path = one_name(pax.path, meta.long_name, ustar_name(block))?;
    let link = one_name(
        pax.linkpath,
        meta.long_link,
        cstr(&block[157..257]).to_vec(),
    )?;
    let regular = matches!(block[156], b'0' | b'\0' | b'7');
    let kind = match block[156] {
        // GNU tar extracts a "file" whose name ends in a slash as a directory (a BSD habit).
        _ if regular && path.ends_with(b"/") => Kind::Dir,
        _ if regular && pax.sparse => Kind::Special(b'S'),
        _ if regular => Kind::File,
        b'1' => Kind::HardLink,
        b'2' => Kind::Symlink,
        b'5' => Kind::Dir,
        other => Kind::Special(other),
    };
    Ok(Entry {
        path,
        link,
        kind,
        size: pax.size.unwrap_or(header_size),
    })
}

/// The one name an entry has: the pax name, else the GNU long name, else the header's own.
/// A pax name and a long name that disagree would let two readers see two different archives.
fn one_name(
    pax: Option<Vec<u8>>,
    long: Option<Vec<u8>>,
    header: Vec<u8>,
) -> Result<Vec<u8>, TarError> {
    let pax = pax.map(|name| cstr(&name).to_vec());
    let long = long.map(|name| cstr(&name).to_vec());
    match (pax, long) {
        (Some(pax), Some(long)) if pax != long => Err(TarError::format(format!(
            "gives one entry two names ({:?} and {:?})",
            String::from_utf8_lossy(&pax),
            String::from_utf8_lossy(&long)
        ))),
        (Some(name), _) | (None, Some(name)) => Ok(name),
        (None, None) => Ok(header),
    }
}

/// The header's name: `prefix/name` in a POSIX ustar header, else just the name field.
fn ustar_name(block: &[u8; 512]) -> Vec<u8> {
    let name = cstr(&block[..100]);
    let prefix = cstr(&block[345..500]);
    if &block[257..263] == b"ustar\0" && !prefix.is_empty() {
        [prefix, b"/", name].concat()
    } else {
        name.to_vec()
    }
}

fn set_once<T>(slot: &mut Option<T>, value: T) -> Result<(), TarError> {
    if slot.is_some() {
        return Err(TarError::format(
            "has two metadata headers of one kind for one entry",
        ));
    }
    *slot = Some(value);
    Ok(())
}

/// A pax global header applies to every later entry: one that renames or resizes them is refused.
fn global(pax: &Pax) -> Result<(), TarError> {
    if pax.path.is_some() || pax.linkpath.is_some() || pax.size.is_some() || pax.sparse {
        return Err(TarError::format(
            "has a pax global header that renames or resizes entries",
        ));
    }
    Ok(())
}

/// Parses pax records (`<length> <key>=<value>\n`), keeping the keys that matter.
fn parse_pax(mut data: &[u8]) -> Result<Pax, TarError> {
    let malformed = || TarError::format("has a malformed pax header");
    let mut pax = Pax::default();
    while !data.is_empty() {
        let space = data.iter().position(|&b| b == b' ').ok_or_else(malformed)?;
        let len = decimal(&data[..space]).ok_or_else(malformed)? as usize;
        if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err(malformed());
        }
        let record = &data[space + 1..len - 1];
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(malformed)?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        match key {
            b"path" => pax.path = Some(value.to_vec()),
            b"linkpath" => pax.linkpath = Some(value.to_vec()),
            b"size" => pax.size = Some(decimal(value).ok_or_else(malformed)?),
            _ if key.starts_with(b"GNU.sparse.") => pax.sparse = true,
            _ => {}
        }
        data = &data[len..];
    }
    Ok(pax)
}

fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// A numeric header field: octal digits (after optional spaces, ended by a space or NUL), or
/// GNU's big-endian base-256 when the top bit of the first byte is set. Negative or blank
/// values are refused, as GNU tar refuses them.
fn number(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        if field[0] != 0x80 {
            return None;
        }
        return field[1..].iter().try_fold(0u64, |value, &b| {
            value.checked_mul(256)?.checked_add(u64::from(b))
        });
    }
    let start = field.iter().position(|&b| b != b' ')?;
    let digits = &field[start..];
    let end = digits
        .iter()
        .position(|&b| b == 0 || b == b' ')
        .unwrap_or(digits.len());
    if end == 0 || !digits[end..].iter().all(|&b| b == 0 || b == b' ') {
        return None;
    }
    digits[..end].iter().try_fold(0u64, |value, &b| {
        let digit = b.checked_sub(b'0').filter(|d| *d < 8)?;
        value.checked_mul(8)?.checked_add(u64::from(digit))
    })
}

/// Whether the header's checksum matches, summing bytes unsigned or (as some old tars did)
/// signed, with the checksum field itself counted as spaces.
fn checksum_ok(block: &[u8; 512]) -> bool {
    let Some(stored) = number(&block[148..156]) else {
        return false;
    };
    let unsigned = byte_sum(block) - byte_sum(&block[148..156]) + 8 * 32;
    if stored == unsigned {
        return true;
    }
    // Signed bytes: each byte of 128 or more counts 256 less.
    let high = |bytes: &[u8]| bytes.iter().filter(|&&b| b >= 128).count() as u64;
    let high = high(&block[..148]) + high(&block[156..]);
    stored.checked_add(256 * high) == Some(unsigned)
}

/// The sum of `bytes`, eight at a time: headers are summed once per entry, and a million-entry
/// archive has a million of them.
fn byte_sum(bytes: &[u8]) -> u64 {
    const LOW: u64 = 0x00ff_00ff_00ff_00ff;
    debug_assert!(
        bytes.len() <= 512,
        "16-bit lanes hold the sums of one header"
    );
    let mut chunks = bytes.chunks_exact(8);
    let mut pairs = 0u64;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        // Four 16-bit lanes, each the sum of two bytes: no lane overflows within 512 bytes.
        pairs += (word & LOW) + ((word >> 8) & LOW);
    }
    let lanes =
        (pairs & 0xffff) + ((pairs >> 16) & 0xffff) + ((pairs >> 32) & 0xffff) + (pairs >> 48);
    lanes
        + chunks
            .remainder()
            .iter()
            .map(|&b| u64::from(b))
            .sum::<u64>()
}

/// A NUL-terminated field as its bytes before the first NUL.
fn cstr(field: &[u8]) -> &[u8] {
    field
        .iter()
        .position(|&b| b == 0)
        .map_or(field, |end| &field[..end])
}

/// `size` rounded up to whole blocks (saturating: a size that large fails on the read anyway).
fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK).saturating_mul(BLOCK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_read_as_gnu_tar_reads_them() {
        assert_eq!(number(b"00000000644\0"), Some(0o644));
        assert_eq!(number(b"     644 \0\0\0"), Some(0o644));
        assert_eq!(number(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]), Some(256));
        assert_eq!(number(b"\0\0\0\0\0\0\0\0\0\0\0\0"), None);
        assert_eq!(number(b"0009\0\0\0\0\0\0\0\0"), None);
        assert_eq!(number(&[0xff; 12]), None);
    }

    #[test]
    fn pax_records_give_names_and_sizes() {
        let pax = parse_pax(b"16 path=a/b/c.d\n11 size=42\n19 GNU.sparse.map=\n").unwrap();
        assert_eq!(pax.path.as_deref(), Some(&b"a/b/c.d"[..]));
        assert_eq!(pax.size, Some(42));
        assert!(pax.sparse);
        assert!(parse_pax(b"99 path=x\n").is_err());
        assert!(parse_pax(b"8 pathx\n").is_err());
    }
}
