//! Tar streams written by hand, byte by byte, so a test can build archives no tar tool would:
//! entries named `../x`, devices, a million empty files.

use std::io::Write;

/// A POSIX ustar header.
pub fn header(name: &str, typeflag: u8, size: u64, link: &str, mode: u32) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    for (at, value) in [
        (100, u64::from(mode)),
        (108, 0),
        (116, 0),
        (329, 0),
        (337, 0),
    ] {
        h[at..at + 8].copy_from_slice(format!("{value:07o}\0").as_bytes());
    }
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(format!("{:011o}\0", 1_700_000_000).as_bytes());
    h[156] = typeflag;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..265].copy_from_slice(b"ustar\x0000");
    h[265..269].copy_from_slice(b"root");
    h[297..301].copy_from_slice(b"root");
    seal(&mut h);
    h
}

/// Writes the header's checksum.
pub fn seal(h: &mut [u8; 512]) {
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

/// A tar stream built entry by entry.
#[derive(Default)]
pub struct Tarball(Vec<u8>);

impl Tarball {
    pub fn new() -> Self {
        Self::default().dir("./")
    }

    pub fn dir(self, name: &str) -> Self {
        self.entry(&header(name, b'5', 0, "", 0o755), b"")
    }

    pub fn file(self, name: &str, data: &[u8]) -> Self {
        self.entry(&header(name, b'0', data.len() as u64, "", 0o644), data)
    }

    pub fn symlink(self, name: &str, target: &str) -> Self {
        self.entry(&header(name, b'2', 0, target, 0o777), b"")
    }

    pub fn hard_link(self, name: &str, target: &str) -> Self {
        self.entry(&header(name, b'1', 0, target, 0o644), b"")
    }

    /// A device, fifo or other entry of type `typeflag`.
    pub fn special(self, name: &str, typeflag: u8) -> Self {
        self.entry(&header(name, typeflag, 0, "", 0o644), b"")
    }

    fn entry(mut self, header: &[u8; 512], data: &[u8]) -> Self {
        self.0.extend_from_slice(header);
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().next_multiple_of(512), 0);
        self
    }

    /// The stream with its end-of-archive marker, padded to a whole record as tar pads it.
    pub fn finish(mut self) -> Vec<u8> {
        self.0.resize(self.0.len() + 1024, 0);
        self.0.resize(self.0.len().next_multiple_of(10240), 0);
        self.0
    }

    pub fn zstd(self) -> Vec<u8> {
        zstd::encode_all(&self.finish()[..], 3).unwrap()
    }

    /// A well-compressed stream of a tar that just stops, without its end-of-archive marker.
    pub fn zstd_without_end(self) -> Vec<u8> {
        zstd::encode_all(&self.0[..], 3).unwrap()
    }
}

/// A `.tar.zst` of `count` empty entries, streamed into the encoder: the same header with a new
/// name each time (`name(i)`), its checksum adjusted by the name's bytes.
pub fn many_entries(count: u32, typeflag: u8, name: impl Fn(u32) -> String) -> Vec<u8> {
    let template = header("", typeflag, 0, "", 0o755);
    let base: u32 = template.iter().map(|&b| u32::from(b)).sum::<u32>()
        - template[148..156]
            .iter()
            .map(|&b| u32::from(b))
            .sum::<u32>()
        + 8 * u32::from(b' ');
    let mut encoder = zstd::Encoder::new(Vec::new(), 1).unwrap();
    let mut h = template;
    for i in 0..count {
        let name = name(i);
        h[..100].fill(0);
        h[..name.len()].copy_from_slice(name.as_bytes());
        let sum = base + name.bytes().map(u32::from).sum::<u32>();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        encoder.write_all(&h).unwrap();
    }
    encoder.write_all(&[0; 1024]).unwrap();
    encoder.finish().unwrap()
}
