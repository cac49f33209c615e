//! The local checkpoint store: `<state>/checkpoints/<id>/checkpoint.json` plus, for archives,
//! the tarball beside it (spec providers.md §3.3). Directories are private (0700), records
//! are 0600 and replaced atomically (temp file, fsync, rename), a create reserves its
//! directory first so two creates can never share an id, and a create that fails leaves
//! nothing behind.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crabbox_api::ExitStatus;

use super::record::{Record, is_valid_id};
use crate::error::{CliError, CliResult};

/// The record's file name inside its directory.
pub const RECORD_FILE: &str = "checkpoint.json";
/// The archive name this version writes.
pub const ARCHIVE_FILE: &str = "workspace.tar.zst";
/// The archive name the Go tool wrote (and the default of its records without `archivePath`).
pub const LEGACY_ARCHIVE_FILE: &str = "workspace.tar.gz";

/// The checkpoints directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// A checkpoint directory that could not be read, and why.
#[derive(Debug)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// Everything a scan of the store found.
#[derive(Debug, Default)]
pub struct Listing {
    /// Newest `createdAt` first, ties by id descending.
    pub records: Vec<Record>,
    pub skipped: Vec<Skipped>,
}

fn io_error(doing: &str, path: &Path, e: std::io::Error) -> CliError {
    CliError::new(
        ExitStatus::Failure,
        anyhow::Error::new(e).context(format!("could not {doing} {}", path.display())),
    )
}

fn is_not_found(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound
}

impl Store {
    /// The store under the state directory (`$XDG_STATE_HOME/crabbox/checkpoints`).
    pub fn open() -> Self {
        Self::at(crate::paths::state_dir().join("checkpoints"))
    }

    /// A store rooted at `dir` (tests, and tools that keep checkpoints elsewhere).
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    #[cfg(test)]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory of checkpoint `id` (which may not exist).
    pub fn record_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Where `record`'s archive is: `archivePath` in its directory (an absolute path as the
    /// Go tool allowed), `workspace.tar.gz` for an archive record that names none, and `None`
    /// for records without one.
    pub fn archive_file(&self, record: &Record) -> Option<PathBuf> {
        let name = record.archive_path.trim();
        if name.is_empty() {
            return record
                .kind
                .is_archive()
                .then(|| self.record_dir(&record.id).join(LEGACY_ARCHIVE_FILE));
        }
        Some(self.record_dir(&record.id).join(name))
    }

    fn checked_id(id: &str) -> CliResult<String> {
        let id = id.trim();
        if is_valid_id(id) {
            return Ok(id.to_owned());
        }
        Err(CliError::msg(
            ExitStatus::Usage,
            format!("{id:?} is not a checkpoint id (they look like chk_0123456789abcdef)"),
        )
        .hint("run `crabbox checkpoint list` to see the checkpoints on this machine"))
    }

    fn not_found(&self, id: &str) -> CliError {
        CliError::msg(
            ExitStatus::Usage,
            format!("checkpoint {id} not found in {}", self.dir.display()),
        )
        .hint("run `crabbox checkpoint list` to see the checkpoints on this machine")
    }

    /// Creates `checkpoints/` (0700) if needed.
    fn ensure_root(&self) -> CliResult<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| io_error("create", &self.dir, e))?;
        // Kept private even if something loosened it: records name leases and resources.
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| io_error("protect", &self.dir, e))
    }

    /// Claims `record.id`'s directory (0700; an existing one is an error, never reused) and
    /// writes the record into it. The directory is removed again when the reservation is
    /// dropped without [`Reservation::commit`].
    pub fn reserve(&self, record: &Record) -> CliResult<Reservation> {
        let id = Self::checked_id(&record.id)?;
        self.ensure_root()?;
        let dir = self.record_dir(&id);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    CliError::msg(
                        ExitStatus::Failure,
                        format!("checkpoint {id} already exists at {}", dir.display()),
                    )
                } else {
                    io_error("create", &dir, e)
                }
            })?;
        let reservation = Reservation {
            dir,
            id,
            committed: false,
        };
        reservation.write(record)?;
        Ok(reservation)
    }

    /// Replaces the record of an existing checkpoint.
    pub fn write(&self, record: &Record) -> CliResult<()> {
        let id = Self::checked_id(&record.id)?;
        let dir = self.record_dir(&id);
        if !dir.is_dir() {
            return Err(self.not_found(&id));
        }
        write_record(&dir, record)
    }

    /// Reads checkpoint `id`.
    pub fn get(&self, id: &str) -> CliResult<Record> {
        let id = Self::checked_id(id)?;
        let dir = self.record_dir(&id);
        match std::fs::metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(self.not_found(&id)),
            Err(e) if is_not_found(&e) => return Err(self.not_found(&id)),
            Err(e) => return Err(io_error("read", &dir, e)),
        }
        read_record(&dir, &id).map_err(|reason| {
            CliError::msg(
                ExitStatus::Usage,
                format!("checkpoint {id} is unreadable: {reason}"),
            )
            .hint(format!(
                "`crabbox checkpoint delete {id} --local-only` forgets it (its provider resource, if any, stays)"
            ))
        })
    }

    /// Every readable checkpoint, newest first, and the directories that could not be read.
    pub fn scan(&self) -> CliResult<Listing> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if is_not_found(&e) => return Ok(Listing::default()),
            Err(e) => return Err(io_error("read", &self.dir, e)),
        };
        let mut listing = Listing::default();
        for entry in entries {
            let entry = entry.map_err(|e| io_error("read", &self.dir, e))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            // Hidden names are directories being deleted (see `remove`) or stray temp files.
            if name.starts_with('.') || !path.is_dir() {
                continue;
            }
            match read_record(&path, &name) {
                Ok(record) => listing.records.push(record),
                Err(reason) => listing.skipped.push(Skipped { path, reason }),
            }
        }
        listing
            .records
            .sort_by(|a, b| b.created().cmp(&a.created()).then_with(|| b.id.cmp(&a.id)));
        Ok(listing)
    }

    /// Every readable checkpoint, newest first; each unreadable one is a warning on stderr.
    pub fn list(&self) -> CliResult<Vec<Record>> {
        let listing = self.scan()?;
        for skipped in &listing.skipped {
            crate::output::warn(format!(
                "skipping checkpoint {}: {}",
                skipped.path.display(),
                skipped.reason
            ));
        }
        Ok(listing.records)
    }

    /// Records a successful fork or restore of `id` now.
    pub fn touch_used(&self, id: &str) -> CliResult<Record> {
        let mut record = self.get(id)?;
        record.touch(SystemTime::now());
        self.write(&record)?;
        Ok(record)
    }

    /// Deletes checkpoint `id`'s directory: its record, its archive and anything else in it.
    /// The directory is first renamed to a hidden name, so a crash half-way leaves a
    /// directory `list` ignores rather than a record whose archive is half gone.
    pub fn remove(&self, id: &str) -> CliResult<()> {
        let id = Self::checked_id(id)?;
        let dir = self.record_dir(&id);
        let mut nonce = [0u8; 4];
        getrandom::fill(&mut nonce).expect("the OS random source is unavailable");
        let doomed = self
            .dir
            .join(format!(".{id}.deleting-{}", hex::encode(nonce)));
        match std::fs::rename(&dir, &doomed) {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => return Err(self.not_found(&id)),
            Err(e) => return Err(io_error("delete", &dir, e)),
        }
        std::fs::remove_dir_all(&doomed).map_err(|e| io_error("delete", &doomed, e))
    }
}

/// Reads and checks the record in `dir`, which must be checkpoint `id`'s. The error is a
/// reason fragment naming the file.
fn read_record(dir: &Path, id: &str) -> Result<Record, String> {
    let path = dir.join(RECORD_FILE);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if is_not_found(&e) => return Err(format!("{} is missing", path.display())),
        Err(e) => return Err(format!("could not read {}: {e}", path.display())),
    };
    let record = Record::from_json(&text)
        .map_err(|e| format!("{} is not a checkpoint record: {e}", path.display()))?;
    if record.id != id {
        return Err(format!(
            "{} records id {:?}, not its directory's name {id}",
            path.display(),
            record.id
        ));
    }
    Ok(record)
}

/// Writes `record` into `dir` atomically: a 0600 temp file in the same directory, synced,
/// renamed over `checkpoint.json`, then the directory synced so the rename is durable.
fn write_record(dir: &Path, record: &Record) -> CliResult<()> {
    let path = dir.join(RECORD_FILE);
    let mut tmp = tempfile::Builder::new()
        .prefix(".checkpoint-")
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(|e| io_error("write", &path, e))?;
    tmp.write_all(&record.to_json())
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| io_error("write", &path, e))?;
    tmp.persist(&path)
        .map_err(|e| io_error("write", &path, e.error))?;
    if let Ok(handle) = std::fs::File::open(dir) {
        let _ = handle.sync_all();
    }
    Ok(())
}

/// A reserved checkpoint directory. Dropped without [`Reservation::commit`] (a failed or
/// interrupted create), it removes the directory and everything written into it.
#[derive(Debug)]
#[must_use = "a reservation is rolled back when dropped; commit it once the checkpoint is complete"]
pub struct Reservation {
    dir: PathBuf,
    id: String,
    committed: bool,
}

impl Reservation {
    /// The reserved directory: the archive goes here.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    #[cfg(test)]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Replaces the reserved checkpoint's record (same id).
    pub fn write(&self, record: &Record) -> CliResult<()> {
        if record.id != self.id {
            return Err(CliError::msg(
                ExitStatus::Failure,
                format!(
                    "record {} does not belong to reserved checkpoint {}",
                    record.id, self.id
                ),
            ));
        }
        write_record(&self.dir, record)
    }

    /// Keeps the directory: the checkpoint is complete (or a partial record must survive).
    pub fn commit(mut self) {
        self.committed = true;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::checkpoint::record::Kind;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn store() -> (tempfile::TempDir, Store) {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::at(tmp.path().join("state/checkpoints"));
        (tmp, store)
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().mode() & 0o777
    }

    #[test]
    fn a_dropped_reservation_leaves_nothing() {
        let (_tmp, store) = store();
        let record = Record::new(Kind::WorkspaceArchive, at(1_700_000_000));
        {
            let reservation = store.reserve(&record).unwrap();
            std::fs::write(reservation.dir().join(ARCHIVE_FILE), b"partial").unwrap();
            assert_eq!(store.get(&record.id).unwrap(), record);
        }
        assert!(!store.record_dir(&record.id).exists());
        assert!(store.list().unwrap().is_empty());
        assert_eq!(store.get(&record.id).unwrap_err().code, 2);
    }

    #[test]
    fn a_committed_reservation_stays_private_and_is_never_reused() {
        let (_tmp, store) = store();
        let mut record = Record::new(Kind::Recipe, at(1_700_000_000));
        let reservation = store.reserve(&record).unwrap();
        record.name = "after".into();
        reservation.write(&record).unwrap();
        let mut other = record.clone();
        other.id = crate::checkpoint::record::new_id();
        assert!(reservation.write(&other).is_err());
        assert_eq!(reservation.id(), record.id);
        reservation.commit();
        let dir = store.record_dir(&record.id);
        assert_eq!(mode(store.dir()), 0o700);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(RECORD_FILE)), 0o600);
        assert_eq!(store.get(&record.id).unwrap().name, "after");
        let err = store.reserve(&record).unwrap_err();
        assert!(err.error.to_string().contains("already exists"), "{err:?}");
        // The failed second reservation must not have removed the first one's directory.
        assert!(dir.join(RECORD_FILE).exists());
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, [RECORD_FILE]);
    }

    #[test]
    fn touch_and_remove() {
        let (_tmp, store) = store();
        let record = Record::new(Kind::Recipe, at(1_000_000_000));
        store.reserve(&record).unwrap().commit();
        let touched = store.touch_used(&record.id).unwrap();
        assert_eq!(touched.created_at, record.created_at);
        assert!(touched.last_used().unwrap() > record.last_used().unwrap());
        assert_eq!(store.get(&record.id).unwrap(), touched);
        store.remove(&record.id).unwrap();
        assert!(std::fs::read_dir(store.dir()).unwrap().next().is_none());
        assert_eq!(store.remove(&record.id).unwrap_err().code, 2);
        assert_eq!(store.get("../escape").unwrap_err().code, 2);
    }

    #[test]
    fn scan_orders_newest_first_and_reports_what_it_skips() {
        let (_tmp, store) = store();
        let mut ids = Vec::new();
        for (n, secs) in [(0, 100), (1, 300), (2, 300), (3, 200)] {
            let mut record = Record::new(Kind::Recipe, at(secs));
            record.id = format!("chk_{n:016x}");
            store.reserve(&record).unwrap().commit();
            ids.push(record.id);
        }
        std::fs::create_dir(store.dir().join("chk_empty")).unwrap();
        let listing = store.scan().unwrap();
        let order: Vec<&str> = listing.records.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(order, [&ids[2], &ids[1], &ids[3], &ids[0]]);
        assert_eq!(listing.skipped.len(), 1);
        assert!(listing.skipped[0].reason.contains("is missing"));
    }
}
