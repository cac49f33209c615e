//! `--verify`: whether what a record points at on this machine is still there. An archive
//! must exist, be a file and have the recorded size; recipes have nothing to check; native
//! kinds are only checked against their provider, which this module does not reach.

use std::path::Path;

use serde::Serialize;

use super::record::Record;
use super::store::Store;

/// What verification found for one checkpoint (JSON: `localState` etc., stable strings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Audit {
    /// `available`, `missing_archive`, `invalid_archive`, `size_mismatch`, `metadata_only`
    /// (recipes) or `metadata_available` (native: the record is fine, the provider unasked).
    pub local_state: &'static str,
    /// `not_applicable` for local kinds, `unchecked` for native ones.
    pub provider_state: &'static str,
    /// `restore_or_fork`, `delete_or_recreate`, `inspect` or `fork_or_delete`.
    pub next_action: &'static str,
    /// What is wrong, naming the file; absent when nothing is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Audit {
    fn local(local_state: &'static str, next_action: &'static str, error: Option<String>) -> Self {
        Audit {
            local_state,
            provider_state: "not_applicable",
            next_action,
            error,
        }
    }

    /// One short phrase for the table: `ok`, the problem, or what was not checked.
    pub fn summary(&self) -> String {
        match (&self.error, self.provider_state) {
            (Some(error), _) => error.clone(),
            (None, "unchecked") => "ok (provider not checked)".to_owned(),
            (None, _) => "ok".to_owned(),
        }
    }
}

/// Checks `record` against the files in `store`.
pub fn verify(store: &Store, record: &Record) -> Audit {
    if record.kind.is_native() {
        return Audit {
            local_state: "metadata_available",
            provider_state: "unchecked",
            next_action: "fork_or_delete",
            error: None,
        };
    }
    let Some(path) = store.archive_file(record) else {
        return Audit::local("metadata_only", "inspect", None);
    };
    check_archive(&path, record.archive_bytes)
}

fn check_archive(path: &Path, recorded: u64) -> Audit {
    let bad = |state, error: String| Audit::local(state, "delete_or_recreate", Some(error));
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bad(
            "missing_archive",
            format!("missing archive {}", path.display()),
        ),
        Err(e) => bad(
            "invalid_archive",
            format!("unreadable archive {}: {e}", path.display()),
        ),
        Ok(meta) if !meta.is_file() => bad(
            "invalid_archive",
            format!("archive {} is not a file", path.display()),
        ),
        // Records that never stored a size (0) are judged by presence alone.
        Ok(meta) if recorded != 0 && meta.len() != recorded => bad(
            "size_mismatch",
            format!(
                "archive {} is {} bytes, the record says {recorded}",
                path.display(),
                meta.len()
            ),
        ),
        Ok(_) => Audit::local("available", "restore_or_fork", None),
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::checkpoint::record::Kind;
    use crate::checkpoint::store::ARCHIVE_FILE;

    #[test]
    fn archives_must_exist_with_their_size() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::at(tmp.path());
        let mut record = Record::new(Kind::WorkspaceArchive, SystemTime::now());
        record.archive_path = ARCHIVE_FILE.into();
        record.archive_bytes = 5;
        let reservation = store.reserve(&record).unwrap();
        let audit = verify(&store, &record);
        assert_eq!(audit.local_state, "missing_archive");
        assert!(
            audit.summary().starts_with("missing archive /"),
            "{audit:?}"
        );
        std::fs::write(reservation.dir().join(ARCHIVE_FILE), b"1234").unwrap();
        assert_eq!(verify(&store, &record).local_state, "size_mismatch");
        std::fs::write(reservation.dir().join(ARCHIVE_FILE), b"12345").unwrap();
        let audit = verify(&store, &record);
        assert!(
            audit.error.is_none() && audit.summary() == "ok",
            "{audit:?}"
        );
        reservation.commit();
    }

    #[test]
    fn recipes_and_native_kinds_have_no_local_archive_to_check() {
        let store = Store::at("/nonexistent");
        let recipe = Record::new(Kind::Recipe, SystemTime::now());
        assert_eq!(verify(&store, &recipe).summary(), "ok");
        let native = Record::new(Kind::AwsAmi, SystemTime::now());
        assert_eq!(verify(&store, &native).provider_state, "unchecked");
    }
}
