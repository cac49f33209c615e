//! The check an archive passes before anything of it is applied to a workdir. It refuses what
//! could reach outside the workdir once extracted (absolute paths, `..`, paths through a
//! symlink, links that point out), what is not a file, directory or link, what belongs to the
//! lease (`PROTECTED_PATHS`), more than `MAX_ENTRIES` entries, and any stream that is not a
//! complete tar archive.
//!
//! Symlink targets are resolved lexically from the link's directory. That directory is real (an
//! entry through an earlier symlink is refused), so climbing out of it with `..` is exact;
//! climbing out of a path the target itself named is exact only if that path is not a symlink,
//! which is known at the end of the archive, so those climbs are checked there.

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;

use super::format::Format;
use super::tar_stream::{Entry, Kind, TarError, TarStream};
use super::{ArchiveError, MAX_ENTRIES, PROTECTED_PATHS, Refusal, SKIPPED_PATHS};

/// Memory the check may spend remembering symlinks and the climbs to verify at the end; a real
/// workspace needs a small fraction of it.
const MAX_TRACKED_BYTES: usize = 64 << 20;

/// What an archive holds, as counted by the check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Files, directories and links (not the metadata headers that name them).
    pub entries: u64,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hard_links: u64,
    /// The length of the tar stream once decompressed.
    pub uncompressed_bytes: u64,
}

/// Checks the archive file at `archive` (`.tar.zst`, or the Go system's `.tar.gz`) without
/// extracting anything. Memory stays bounded whatever the archive holds.
pub fn check(archive: &Path) -> Result<CheckReport, ArchiveError> {
    let (format, file) = Format::open(archive)?;
    let tar = format.decoder(file).map_err(ArchiveError::io(archive))?;
    walk(tar, archive)
}

/// Checks the uncompressed tar stream `tar` read from `archive`.
pub(super) fn walk(tar: impl Read, archive: &Path) -> Result<CheckReport, ArchiveError> {
    let invalid = |err: TarError| ArchiveError::invalid(archive, err.reason());
    let mut stream = TarStream::new(tar);
    let mut checker = Checker::default();
    while let Some(entry) = stream.next_entry().map_err(invalid)? {
        checker.entry(&entry)?;
    }
    let bytes = stream.finish().map_err(invalid)?;
    checker.finish(bytes)
}

/// The check's state while it walks an archive.
#[derive(Debug, Default)]
struct Checker {
    report: CheckReport,
    /// Every path that is a symlink at some point of the extraction (a hard link to a symlink
    /// is one too).
    symlinks: HashSet<Vec<u8>>,
    /// Paths that symlink targets climb out of: none may turn out to be a symlink.
    climbs: Vec<Climb>,
    /// Bytes held by `symlinks` and `climbs`.
    tracked: usize,
}

#[derive(Debug)]
struct Climb {
    from: Vec<u8>,
    entry: String,
    target: String,
}

impl Checker {
    fn entry(&mut self, entry: &Entry) -> Result<(), ArchiveError> {
        self.visit(entry).map_err(|reason| ArchiveError::Refused {
            entry: lossy(&entry.path),
            reason,
        })
    }

    fn visit(&mut self, entry: &Entry) -> Result<(), Refusal> {
        self.report.entries += 1;
        if self.report.entries > MAX_ENTRIES {
            return Err(Refusal::TooManyEntries);
        }
        let path = components(&entry.path)?;
        if path.is_empty() && entry.kind != Kind::Dir {
            return Err(Refusal::NotADirectory("the workdir"));
        }
        protected(&path, entry.kind)?;
        if let Some(link) = self.symlink_on(&path, entry.kind == Kind::Dir) {
            return Err(Refusal::ThroughSymlink(lossy(&link)));
        }
        match entry.kind {
            Kind::Special(typeflag) => Err(Refusal::Special(typeflag)),
            Kind::File => {
                self.report.files += 1;
                Ok(())
            }
            _ if entry.size != 0 => Err(Refusal::UnexpectedData),
            Kind::Dir => {
                self.report.dirs += 1;
                Ok(())
            }
            Kind::Symlink => {
                self.symlink(&path, entry)?;
                self.report.symlinks += 1;
                Ok(())
            }
            Kind::HardLink => {
                self.hard_link(&path, &entry.link)?;
                self.report.hard_links += 1;
                Ok(())
            }
        }
    }

    fn symlink(&mut self, path: &[&[u8]], entry: &Entry) -> Result<(), Refusal> {
        let target = &entry.link[..];
        let outside = || Refusal::SymlinkOutside(lossy(target));
        if target.is_empty() {
            return Err(Refusal::EmptyLink);
        }
        if target.starts_with(b"/") {
            return Err(outside());
        }
        let mut at: Vec<&[u8]> = path[..path.len() - 1].to_vec();
        // How many of the last components of `at` the target itself named.
        let mut named = 0;
        for part in target.split(|&b| b == b'/') {
            match part {
                b"" | b"." => {}
                b".." if named > 0 => {
                    self.climb(&at, entry)?;
                    at.pop();
                    named -= 1;
                }
                b".." => {
                    at.pop().ok_or_else(outside)?;
                }
                _ => {
                    at.push(part);
                    named += 1;
                }
            }
        }
        self.remember(path)
    }

    fn hard_link(&mut self, path: &[&[u8]], target: &[u8]) -> Result<(), Refusal> {
        if target.is_empty() {
            return Err(Refusal::EmptyLink);
        }
        let outside = || Refusal::HardLinkOutside(lossy(target));
        let to = components(target).map_err(|_| outside())?;
        if to.is_empty() {
            return Err(outside());
        }
        // Linking a path through a symlink would link whatever the symlink points at.
        if let Some(link) = self.symlink_on(&to, false) {
            return Err(Refusal::ThroughSymlink(lossy(&link)));
        }
        if self.symlinks.contains(&to.join(&b'/')) {
            self.remember(path)?;
        }
        Ok(())
    }

    /// The first symlink `path` passes through (or is, with `itself`).
    fn symlink_on(&self, path: &[&[u8]], itself: bool) -> Option<Vec<u8>> {
        if self.symlinks.is_empty() {
            return None;
        }
        let through = if itself {
            path.len()
        } else {
            path.len().saturating_sub(1)
        };
        let mut prefix = Vec::new();
        for (i, part) in path[..through].iter().enumerate() {
            if i > 0 {
                prefix.push(b'/');
            }
            prefix.extend_from_slice(part);
            if self.symlinks.contains(&prefix) {
                return Some(prefix);
            }
        }
        None
    }

    fn remember(&mut self, path: &[&[u8]]) -> Result<(), Refusal> {
        let path = path.join(&b'/');
        self.track(path.len())?;
        self.symlinks.insert(path);
        Ok(())
    }

    fn climb(&mut self, from: &[&[u8]], entry: &Entry) -> Result<(), Refusal> {
        let climb = Climb {
            from: from.join(&b'/'),
            entry: lossy(&entry.path),
            target: lossy(&entry.link),
        };
        self.track(climb.from.len() + climb.entry.len() + climb.target.len())?;
        self.climbs.push(climb);
        Ok(())
    }

    fn track(&mut self, bytes: usize) -> Result<(), Refusal> {
        self.tracked += bytes + 32;
        if self.tracked > MAX_TRACKED_BYTES {
            return Err(Refusal::TooManyLinks);
        }
        Ok(())
    }

    fn finish(mut self, uncompressed_bytes: u64) -> Result<CheckReport, ArchiveError> {
        for climb in &self.climbs {
            let from: Vec<&[u8]> = climb.from.split(|&b| b == b'/').collect();
            if let Some(via) = self.symlink_on(&from, true) {
                return Err(ArchiveError::Refused {
                    entry: climb.entry.clone(),
                    reason: Refusal::SymlinkClimbs {
                        target: climb.target.clone(),
                        via: lossy(&via),
                    },
                });
            }
        }
        self.report.uncompressed_bytes = uncompressed_bytes;
        Ok(self.report)
    }
}

/// The components of an entry path, without `.` and empty ones (`./a//b` is `a/b`); `..` and
/// absolute paths are refused, as GNU tar refuses them by default.
fn components(path: &[u8]) -> Result<Vec<&[u8]>, Refusal> {
    if path.starts_with(b"/") {
        return Err(Refusal::Absolute);
    }
    let mut parts = Vec::new();
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(Refusal::Escapes),
            _ => parts.push(part),
        }
    }
    Ok(parts)
}

/// Refuses entries in the lease's own environment and scripts, and anything but a directory on
/// the way to any protected path
/// (a `.crabbox` file or symlink would replace the lease's state when merged).
fn protected(path: &[&[u8]], kind: Kind) -> Result<(), Refusal> {
    let Some(first) = path.first() else {
        return Ok(());
    };
    if !PROTECTED_PATHS
        .iter()
        .any(|root| root.split('/').next().map(str::as_bytes) == Some(*first))
    {
        return Ok(());
    }
    let joined = path.join(&b'/');
    for root in PROTECTED_PATHS {
        let bytes = root.as_bytes();
        if joined.starts_with(bytes) && joined.get(bytes.len()).is_none_or(|&b| b == b'/') {
            // Left out by the runner's tar (receive.sh), not refused.
            if SKIPPED_PATHS.contains(&root) {
                return Ok(());
            }
            return Err(Refusal::Protected(root));
        }
        if kind != Kind::Dir && bytes.starts_with(&joined) && bytes[joined.len()] == b'/' {
            return Err(Refusal::NotADirectory(&root[..joined.len()]));
        }
    }
    Ok(())
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: Kind, path: &str, link: &str) -> Entry {
        Entry {
            path: path.into(),
            link: link.into(),
            kind,
            size: 0,
        }
    }

    /// Runs the entries through a checker: the first refusal as "entry: reason", or "ok".
    fn verdict(entries: &[Entry]) -> String {
        let mut checker = Checker::default();
        for e in entries {
            if let Err(err) = checker.entry(e) {
                return err.to_string();
            }
        }
        checker
            .finish(0)
            .map_or_else(|e| e.to_string(), |_| "ok".into())
    }

    #[test]
    fn symlinks_resolve_from_their_directory() {
        let link = |path: &str, target: &str| verdict(&[entry(Kind::Symlink, path, target)]);
        assert_eq!(link("./sub/up", ".."), "ok");
        assert_eq!(link("./sub/deep", "../a/./b/../c"), "ok");
        assert_eq!(
            link("./a", ".."),
            r#"archive entry "./a" is a symlink to "..", outside the workdir"#
        );
        assert_eq!(
            link("./sub/a", "x/../../.."),
            r#"archive entry "./sub/a" is a symlink to "x/../../..", outside the workdir"#
        );
    }

    #[test]
    fn a_climb_out_of_a_symlink_is_refused_whichever_comes_first() {
        let up = entry(Kind::Symlink, "x/up", "..");
        let out = entry(Kind::Symlink, "out", "x/up/..");
        let refused = r#"archive entry "out" is a symlink to "x/up/..", which climbs out of the symlink "x/up""#;
        assert_eq!(verdict(&[entry(Kind::Dir, "x", ""), up, out]), refused);
        let up = entry(Kind::Symlink, "x/up", "..");
        let out = entry(Kind::Symlink, "out", "x/up/..");
        assert_eq!(verdict(&[out, entry(Kind::Dir, "x", ""), up]), refused);
    }

    #[test]
    fn the_lease_state_is_refused() {
        assert_eq!(
            verdict(&[entry(Kind::File, "./.crabbox/env/token", "")]),
            r#"archive entry "./.crabbox/env/token" is inside .crabbox/env, which belongs to the lease and is never restored"#
        );
        assert_eq!(
            verdict(&[entry(Kind::Symlink, ".crabbox", "elsewhere")]),
            r#"archive entry ".crabbox" would replace .crabbox with something that is not a directory"#
        );
        assert_eq!(
            verdict(&[entry(Kind::File, ".crabbox/sync-manifest", "")]),
            "ok"
        );
    }

    #[test]
    fn a_hard_link_to_a_symlink_is_a_symlink() {
        let entries = [
            entry(Kind::Dir, "sub", ""),
            entry(Kind::Symlink, "s", "sub"),
            entry(Kind::HardLink, "h", "./s"),
            entry(Kind::File, "h/f", ""),
        ];
        assert_eq!(
            verdict(&entries),
            r#"archive entry "h/f" passes through the symlink "h""#
        );
    }
}
