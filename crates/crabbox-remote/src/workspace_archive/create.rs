//! Archiving a runner's workdir into a local `.tar.zst`. The runner's tar (and zstd, when it has
//! it) do the work; this side only moves bytes from the ssh pipe into `<dest>.tmp` (compressing
//! a plain tar on the way) and renames the file into place once the runner said it succeeded.
//! Nothing is decompressed or checked here: that is what `check` and `restore` are for.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

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
    let mut child = spawn(target, workdir)?;
    let stderr = remote::stderr_tail(&mut child);
    let stdout = child.stdout.take().expect("stdout was piped");
    let stdout = stdout
        .into_owned_fd()
        .map_err(|e| remote::lost(target, ACTION, e))?;
    let file = partial
        .file
        .try_clone()
        .map_err(ArchiveError::io(&partial.path))?;
    let copy = blocking(move || store(File::from(stdout), file));
    let (status, stored) = tokio::join!(child.wait(), copy);
    let status = status.map_err(|e| remote::lost(target, ACTION, e))?;
    let bytes = stored.map_err(ArchiveError::io(&partial.path))?;
    match exit_code(status) {
        0 if bytes == 0 => Err(remote::remote_error(
            target,
            ACTION,
            "the runner sent an empty archive".into(),
            None,
        )),
        0 => partial.commit(dest).map(|()| ArchiveStats { bytes }),
        NO_WORKDIR => Err(ArchiveError::MissingWorkdir {
            host: target.host.clone(),
            workdir: workdir.to_owned(),
        }),
        code => Err(remote::failed(
            target,
            ACTION,
            code,
            &stderr.await.unwrap_or_default(),
        )),
    }
}

/// Starts the create script: `tar` of the workdir, without the lease's paths, on its stdout.
fn spawn(target: &SshTarget, workdir: &str) -> Result<Child, ArchiveError> {
    let excludes = PROTECTED_PATHS.map(|p| format!("--exclude=./{p}"));
    let mut args = vec![workdir];
    args.extend(excludes.iter().map(String::as_str));
    let (child, _) = remote::bash(target, CREATE_SCRIPT, &args)
        .spawn()
        .map_err(remote::broken(target, ACTION))?;
    Ok(child)
}

/// Copies the runner's output into `file`: as is when it is zstd already, else through a zstd
/// encoder. Returns the size of the file.
fn store(mut from: File, mut file: File) -> io::Result<u64> {
    let mut head = [0u8; 4];
    let len = read_up_to(&mut from, &mut head)?;
    if len == 0 {
        return Ok(0);
    }
    if head == ZSTD_MAGIC {
        file.write_all(&head)?;
        // File to file: the kernel moves the bytes (splice), as a shell redirection would.
        io::copy(&mut from, &mut file)?;
    } else {
        let mut encoder = zstd::stream::write::Encoder::new(&mut file, LEVEL)?;
        encoder.write_all(&head[..len])?;
        io::copy(&mut from, &mut encoder)?;
        encoder.finish()?;
    }
    Ok(file.metadata()?.len())
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

    /// Flushes the file to disk and renames it to `dest`.
    fn commit(mut self, dest: &Path) -> Result<(), ArchiveError> {
        self.file.sync_all().map_err(ArchiveError::io(&self.path))?;
        std::fs::rename(&self.path, dest).map_err(ArchiveError::io(dest))?;
        self.committed = true;
        // The rename itself is durable once the directory is synced (best effort).
        if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
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

    /// `store` of `input`: what the archive file then holds.
    fn stored(input: &[u8]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("in"), input).unwrap();
        let from = File::open(dir.path().join("in")).unwrap();
        let to = File::create(dir.path().join("out")).unwrap();
        let len = store(from, to).unwrap();
        let out = std::fs::read(dir.path().join("out")).unwrap();
        assert_eq!(len, out.len() as u64);
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
