//! The private directory a sync root's watcher lives in: its socket, its lock and the cached
//! fingerprint. One per canonical root, named by a hash of that path, mode 0700.

use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// `sun_path` holds 108 bytes on Linux (104 on BSDs); stay well below both.
const SOCKET_PATH_MAX: usize = 100;
const SOCKET: &str = "sock";

/// The per-root directory of a watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchDir {
    path: PathBuf,
}

impl WatchDir {
    /// The directory for the canonical `root` under `state_dir` (`<state>/watch/<hash>`), or
    /// under `$XDG_RUNTIME_DIR/crabbox/watch` or `/tmp/crabbox-<uid>/watch` when the socket path
    /// would be too long for a unix socket. Created 0700; refused when it is not a directory
    /// owned by this user and closed to everyone else.
    pub fn for_root(state_dir: &Path, root: &Path) -> io::Result<Self> {
        let name = root_hash(root);
        let primary = state_dir.join("watch").join(&name);
        let path = if fits(&primary) {
            primary
        } else {
            fallback_bases()
                .into_iter()
                .map(|base| base.join("watch").join(&name))
                .find(|p| fits(p))
                .ok_or_else(|| io::Error::other("no directory short enough for a unix socket"))?
        };
        create_private(&path)?;
        Ok(Self { path })
    }

    /// An existing directory, as the daemon is told it on its command line.
    pub fn existing(path: PathBuf) -> io::Result<Self> {
        check_private(&path)?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The daemon's listening socket.
    pub fn socket(&self) -> PathBuf {
        self.path.join(SOCKET)
    }

    /// Held with an exclusive `flock` by the one live daemon.
    pub fn lock_file(&self) -> PathBuf {
        self.path.join("lock")
    }

    /// The cached fingerprint.
    pub fn cache_file(&self) -> PathBuf {
        self.path.join("fingerprint.json")
    }
}

/// The first 16 hex digits of SHA-256 over the root path's bytes.
fn root_hash(root: &Path) -> String {
    let digest = Sha256::digest(root.as_os_str().as_encoded_bytes());
    hex::encode(&digest[..8])
}

fn fits(dir: &Path) -> bool {
    dir.join(SOCKET).as_os_str().len() < SOCKET_PATH_MAX
}

fn fallback_bases() -> Vec<PathBuf> {
    let mut bases = Vec::new();
    if let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        bases.push(PathBuf::from(runtime).join("crabbox"));
    }
    bases.push(PathBuf::from(format!(
        "/tmp/crabbox-{}",
        crate::process::current_uid()
    )));
    bases
}

/// Creates `dir` (and missing parents) 0700 and checks it.
fn create_private(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let meta = std::fs::symlink_metadata(dir)?;
    if meta.is_dir() && meta.uid() == crate::process::current_uid() && meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    check_private(dir)
}

/// A directory (not a link) owned by this user that nobody else can enter. Every ancestor up
/// to a shared base like `/tmp` is ours too when we created it; checking the leaf is what keeps
/// another user's pre-created directory from receiving our socket.
fn check_private(dir: &Path) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() || meta.uid() != crate::process::current_uid() || meta.mode() & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} is not a private directory of this user", dir.display()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_private_directory_per_root() {
        let state = tempfile::tempdir().unwrap();
        let a = WatchDir::for_root(state.path(), Path::new("/src/a")).unwrap();
        let b = WatchDir::for_root(state.path(), Path::new("/src/b")).unwrap();
        assert_ne!(a, b);
        assert_eq!(
            a,
            WatchDir::for_root(state.path(), Path::new("/src/a")).unwrap()
        );
        let meta = std::fs::metadata(a.path()).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o700);
        assert!(a.socket().starts_with(state.path().join("watch")));
    }

    #[test]
    fn long_state_dirs_fall_back_to_a_short_socket_path() {
        let state = tempfile::tempdir().unwrap();
        let deep = state.path().join("x".repeat(120));
        let dir = WatchDir::for_root(&deep, Path::new("/src/a")).unwrap();
        assert!(dir.socket().as_os_str().len() < SOCKET_PATH_MAX);
        assert!(!dir.path().starts_with(&deep));
    }

    #[test]
    fn directories_open_to_others_are_refused() {
        let state = tempfile::tempdir().unwrap();
        let open = state.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(WatchDir::existing(open.clone()).is_err());
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(WatchDir::existing(open).is_ok());
    }
}
