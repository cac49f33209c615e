//! Per-lease ed25519 keys, generated in-process (no `ssh-keygen` round trip) and stored 0600.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ssh_key::{Algorithm, LineEnding, PrivateKey};

/// Error creating or reading a key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("could not generate an ed25519 key")]
    Generate(#[source] ssh_key::Error),
    #[error("could not write key file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not read public key {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Paths of a key pair on disk.
#[derive(Debug, Clone)]
pub struct KeyPair {
    pub private: PathBuf,
    pub public: PathBuf,
}

impl KeyPair {
    pub fn public_key(&self) -> Result<String, KeyError> {
        fs::read_to_string(&self.public)
            .map(|s| s.trim().to_owned())
            .map_err(|source| KeyError::Read {
                path: self.public.clone(),
                source,
            })
    }
}

fn write_private(path: &Path, contents: &[u8], mode: u32) -> Result<(), KeyError> {
    let err = |source| KeyError::Write {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    file.write_all(contents).map_err(err)?;
    file.sync_all().map_err(err)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).map_err(err)?;
    fs::rename(&tmp, path).map_err(err)
}

/// Creates `dir` (0700) and an ed25519 key pair named `file_name` in it, unless one exists.
pub fn ensure_ed25519(dir: &Path, file_name: &str, comment: &str) -> Result<KeyPair, KeyError> {
    let pair = KeyPair {
        private: dir.join(file_name),
        public: dir.join(format!("{file_name}.pub")),
    };
    if pair.private.exists() && pair.public.exists() {
        return Ok(pair);
    }
    fs::create_dir_all(dir).map_err(|source| KeyError::Write {
        path: dir.to_owned(),
        source,
    })?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|source| {
        KeyError::Write {
            path: dir.to_owned(),
            source,
        }
    })?;
    let mut key = PrivateKey::random(&mut rand_core::OsRng, Algorithm::Ed25519)
        .map_err(KeyError::Generate)?;
    key.set_comment(comment);
    let private = key.to_openssh(LineEnding::LF).map_err(KeyError::Generate)?;
    let public = key.public_key().to_openssh().map_err(KeyError::Generate)?;
    write_private(&pair.private, private.as_bytes(), 0o600)?;
    write_private(&pair.public, format!("{public}\n").as_bytes(), 0o644)?;
    Ok(pair)
}
