//! Archiving a runner's workdir into a local `.tar.zst`. The runner's tar (and zstd, when it has
//! it) do the work; this side only moves bytes from the ssh pipe into `<dest>.tmp` (compressing
//! a plain tar on the way) and renames the file into place once the runner said it succeeded.
//! Nothing is decompressed or checked here: that is what `check` and `restore` are for.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Child;

use crate::process::exit_code;
use crate::ssh::SshTarget;

use super::format::{ZSTD_MAGIC, read_up_to};
use super::{ArchiveError, PROTECTED_PATHS, blocking, remote};

const CREATE_SCRIPT: &str = include_str!("scripts/create.sh");
/// The create script's exit code when the workdir does not exist.
const NO_WORKDIR: i32 = 72;
/// The zstd level for a plain tar compressed here (the runner's zstd uses the same).
const LEVEL: i32 = 3;
const ACTION: &str = "archiving the workdir";

/// What `create` stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveStats {
    /// Size of the archive file.
    pub bytes: u64,
}

/// Archives `workdir` on the runner into `dest` (a `.tar.zst`; its directory must exist),
/// leaving out the lease's own paths (`PROTECTED_PATHS`). `dest` appears only complete: on any
/// failure, or when the returned future is dropped, the partial `<dest>.tmp` is removed.
pub async fn create(
    target: &SshTarget,
    workdir: &str,
    dest: &Path,
) -> Result<ArchiveStats, ArchiveError> {
    let partial = Partial::create(dest)?;
    let out = partial
        .file
        .try_clone()
        .map_err(ArchiveError::io(&partial.path))?;
    let mut child = spawn(target, workdir, out)?;
    let stderr = remote::stderr_tail(&mut child);
    let status = child.wait().await;
    let status = status.map_err(|e| remote::lost(target, ACTION, e))?;
    match exit_code(status) {
        0 => {}
        NO_WORKDIR => {
            return Err(ArchiveError::MissingWorkdir {
                host: target.host.clone(),
                workdir: workdir.to_owned(),
            });
        }
        code => {
            let tail = stderr.await.unwrap_or_default();
            return Err(remote::failed(target, ACTION, code, &tail));
        }
    }
    let path = partial.path.clone();
    let bytes = blocking(move || compress_plain(&path))
        .await
        .map_err(ArchiveError::io(&partial.path))?;
    if bytes == 0 {
        return Err(remote::remote_error(
            target,
            ACTION,
            "the runner sent an empty archive".into(),
            None,
        ));
    }
    partial.commit(dest).map(|()| ArchiveStats { bytes })
}

/// Starts the create script with its stdout on `out` (the archive file itself, as a shell
/// redirection would: no copy through this process): `tar` of the workdir, without the lease's
/// paths.
fn spawn(target: &SshTarget, workdir: &str, out: File) -> Result<Child, ArchiveError> {
    let excludes = PROTECTED_PATHS.map(|p| format!("--exclude=./{p}"));
    let mut args = vec![workdir];
    args.extend(excludes.iter().map(String::as_str));
    let (child, _) = remote::bash(target, CREATE_SCRIPT, &args)
        .stdout(Stdio::from(out))
        .spawn()
        .map_err(remote::broken(target, ACTION))?;
    Ok(child)
}

/// A runner without zstd sent a plain tar: compresses the file into `<file>.zst` and puts it
/// in its place. Returns the archive's size (0: the runner sent nothing).
fn compress_plain(path: &Path) -> io::Result<u64> {
    let mut from = File::open(path)?;
    let mut head = [0u8; 4];
    let len = read_up_to(&mut from, &mut head)?;
    if len == 0 || head == ZSTD_MAGIC {
        return Ok(std::fs::metadata(path)?.len());
    }
    let mut packed = path.as_os_str().to_owned();
    packed.push(".zst");
    let packed = PathBuf::from(packed);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&packed)?;
        let mut encoder = zstd::stream::write::Encoder::new(&mut file, LEVEL)?;
        encoder.write_all(&head[..len])?;
        io::copy(&mut from, &mut encoder)?;
        encoder.finish()?;
        std::fs::rename(&packed, path)?;
        Ok(std::fs::metadata(path)?.len())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&packed);
    }
    result
}

/// `<dest>.tmp` while it is written: removed on drop unless committed.
#[derive(Debug)]
struct Partial {
    path: PathBuf,
    file: File,
    committed: bool,
}

impl Partial {
    /// Creates `<dest>.tmp` with mode 0600, replacing one a crashed run left behind.
    fn create(dest: &Path) -> Result<Self, ArchiveError> {
        let mut path = dest.as_os_str().to_owned();
        path.push(".tmp");
        let path = PathBuf::from(path);
        match std::fs::remove_file(&path) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => {
                return Err(ArchiveError::io(&path)(err));
            }
            _ => {}
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(ArchiveError::io(&path))?;
        Ok(Self {
            path,
            file,
            committed: false,
        })
    }

    /// Renames the complete file to `dest`. It is not flushed to disk first: that would cost
    /// as much as writing the archive again, and an archive torn by a crash is refused by the
    /// check on restore (truncated stream, no end marker) and flagged by `--verify` (size).
    fn commit(mut self, dest: &Path) -> Result<(), ArchiveError> {
        std::fs::rename(&self.path, dest).map_err(ArchiveError::io(dest))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::noise;
    use super::*;

    /// `compress_plain` of a file holding `input`: what the archive file then holds.
    fn stored(input: &[u8]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("archive.tmp");
        std::fs::write(&path, input).unwrap();
        let len = compress_plain(&path).unwrap();
        let out = std::fs::read(&path).unwrap();
        assert_eq!(len, out.len() as u64);
        assert!(
            !dir.path().join("archive.tmp.zst").exists(),
            "nothing left beside it"
        );
        out
    }

    #[test]
    fn a_plain_tar_is_compressed_here_and_zstd_is_kept_as_it_is() {
        let plain = noise(100_000);
        let archive = stored(&plain);
        assert_eq!(archive[..4], ZSTD_MAGIC);
        assert!(zstd::decode_all(&archive[..]).unwrap() == plain);

        let compressed = zstd::encode_all(&plain[..], 3).unwrap();
        assert!(stored(&compressed) == compressed);
        assert!(stored(b"").is_empty());
    }
}
