//! Local claims: one JSON file per lease under `<state>/claims/`, written atomically, guarded
//! by a lock file so concurrent crabbox processes never lose an update.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::record::LeaseRecord;

/// Largest claim file read (a claim is a few hundred bytes; anything larger is not ours).
const MAX_CLAIM_BYTES: u64 = 1024 * 1024;

/// Error reading or writing claims.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("could not access claim {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("claim {path} is not valid: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("{0:?} matches several leases ({1}); use the lease id")]
    Ambiguous(String, String),
}

/// The claim directory.
#[derive(Debug, Clone)]
pub struct ClaimStore {
    dir: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ClaimError + '_ {
    move |source| ClaimError::Io {
        path: path.to_owned(),
        source,
    }
}

impl ClaimStore {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("claims"),
        }
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    fn ensure_dir(&self) -> Result<(), ClaimError> {
        fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700)).map_err(io_err(&self.dir))
    }

    /// Runs `f` while holding the claim's lock file.
    pub fn with_lock<T>(
        &self,
        id: &str,
        f: impl FnOnce() -> Result<T, ClaimError>,
    ) -> Result<T, ClaimError> {
        self.ensure_dir()?;
        let lock_path = self.dir.join(format!("{id}.lock"));
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        lock.lock().map_err(io_err(&lock_path))?;
        let out = f();
        let _ = lock.unlock();
        out
    }

    /// Writes (creates or replaces) a claim atomically.
    pub fn write(&self, record: &LeaseRecord) -> Result<(), ClaimError> {
        self.ensure_dir()?;
        let path = self.path(&record.lease_id);
        let tmp = self
            .dir
            .join(format!(".{}.{}.tmp", record.lease_id, std::process::id()));
        let body = serde_json::to_vec_pretty(record).expect("lease records serialize");
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        file.write_all(&body).map_err(io_err(&tmp))?;
        file.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))
    }

    /// Reads one claim by lease id.
    pub fn read(&self, id: &str) -> Result<Option<LeaseRecord>, ClaimError> {
        let path = self.path(id);
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(ClaimError::Io { path, source }),
        };
        if meta.len() > MAX_CLAIM_BYTES {
            return Err(ClaimError::Invalid {
                path,
                reason: "larger than 1 MiB".into(),
            });
        }
        let body = fs::read(&path).map_err(io_err(&path))?;
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| ClaimError::Invalid {
                path,
                reason: e.to_string(),
            })
    }

    /// Removes a claim (missing is fine).
    pub fn remove(&self, id: &str) -> Result<(), ClaimError> {
        let path = self.path(id);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(ClaimError::Io { path, source }),
        }
        let _ = fs::remove_file(self.dir.join(format!("{id}.lock")));
        Ok(())
    }

    /// All readable claims, sorted by creation time. Unreadable files are skipped and
    /// returned as warnings.
    pub fn list(&self) -> (Vec<LeaseRecord>, Vec<String>) {
        let mut out = Vec::new();
        let mut warnings = Vec::new();
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return (out, warnings);
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".json") else {
                continue;
            };
            if id.starts_with('.') {
                continue;
            }
            match self.read(id) {
                Ok(Some(record)) => out.push(record),
                Ok(None) => {}
                Err(e) => warnings.push(e.to_string()),
            }
        }
        out.sort_by(|a, b| (a.created_at, &a.lease_id).cmp(&(b.created_at, &b.lease_id)));
        (out, warnings)
    }

    /// Resolves a lease id or slug to a claim.
    pub fn resolve(&self, id_or_slug: &str) -> Result<Option<LeaseRecord>, ClaimError> {
        if let Some(record) = self.read(id_or_slug)? {
            return Ok(Some(record));
        }
        let wanted = crabbox_core::slug::normalize_slug(id_or_slug);
        let (all, _) = self.list();
        let matches: Vec<LeaseRecord> = all.into_iter().filter(|r| r.slug == wanted).collect();
        match matches.len() {
            0 => Ok(None),
            1 => Ok(matches.into_iter().next()),
            _ => Err(ClaimError::Ambiguous(
                id_or_slug.to_owned(),
                matches
                    .iter()
                    .map(|r| r.lease_id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            )),
        }
    }

    /// Whether any claim uses this slug.
    pub fn slug_taken(&self, slug: &str) -> bool {
        self.list().0.iter().any(|r| r.slug == slug)
    }
}
