//! What a cloud provider looked up once and may trust for a short time (10 minutes): facts that
//! do not change from one lease to the next, per region or location (AWS: the security group,
//! images, quotas, spot prices; Azure: the shared network). Kept in memory (a coordinator's
//! process), and in direct mode also in a file of the state directory (`<dir>/<key>.json`,
//! 0600, written atomically), since every CLI command is a new process. A provider whose call
//! proves a remembered fact stale forgets the key ([`FactsCache::forget`]) and looks again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// How long facts are trusted.
pub const TTL: Duration = Duration::from_mins(10);

/// One key's facts and when they were first looked up (Unix seconds).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry<T> {
    saved_at: u64,
    #[serde(flatten)]
    facts: T,
}

/// The facts of every key a provider used lately.
#[derive(Debug)]
pub struct FactsCache<T> {
    dir: Option<PathBuf>,
    memory: Mutex<BTreeMap<String, Entry<T>>>,
}

impl<T: Clone + Default + Serialize + DeserializeOwned> FactsCache<T> {
    /// A cache in memory, and in `dir` when given.
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self {
            dir,
            memory: Mutex::new(BTreeMap::new()),
        }
    }

    /// The key's facts if they are younger than [`TTL`], else empty ones.
    pub fn get(&self, key: &str) -> T {
        self.entry(key).facts
    }

    /// Records what `update` adds to the key's facts. A file that cannot be written is only
    /// a lost shortcut: the next process looks again.
    pub fn update(&self, key: &str, update: impl FnOnce(&mut T)) {
        let mut entry = self.entry(key);
        update(&mut entry.facts);
        self.lock().insert(key.to_owned(), entry.clone());
        if let Some(path) = self.file(key)
            && let Err(e) = write_private(&path, &entry)
        {
            tracing::debug!(path = %path.display(), error = %e, "could not save provider facts");
        }
    }

    /// Forgets the key's facts (one of them proved stale).
    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
        if let Some(path) = self.file(key) {
            let _ = std::fs::remove_file(path);
        }
    }

    fn entry(&self, key: &str) -> Entry<T> {
        let now = now_secs();
        let fresh = |e: &Entry<T>| now.saturating_sub(e.saved_at) < TTL.as_secs();
        if let Some(entry) = self.lock().get(key).filter(|e| fresh(e)) {
            return entry.clone();
        }
        let from_file = self
            .file(key)
            .and_then(|path| std::fs::read(path).ok())
            .and_then(|bytes| serde_json::from_slice::<Entry<T>>(&bytes).ok())
            .filter(fresh);
        let entry = from_file.unwrap_or_else(|| Entry {
            saved_at: now,
            facts: T::default(),
        });
        self.lock().insert(key.to_owned(), entry.clone());
        entry
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry<T>>> {
        self.memory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The key's file; none for a key that is not a plain word (a region or location name).
    fn file(&self, key: &str) -> Option<PathBuf> {
        let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        Some(self.dir.as_ref()?.join(format!("{key}.json"))).filter(|_| plain)
    }
}

/// Writes the file atomically, private to this user.
fn write_private<T: Serialize>(path: &Path, entry: &Entry<T>) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        std::process::id()
    ));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(&serde_json::to_vec(entry).map_err(std::io::Error::other)?)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    struct Images {
        #[serde(default)]
        images: BTreeMap<String, String>,
    }

    fn cache(dir: &Path) -> FactsCache<Images> {
        FactsCache::new(Some(dir.join("aws")))
    }

    #[test]
    fn facts_survive_a_new_process_until_they_are_forgotten_or_old() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        cache(dir.path()).update("eu-west-1", |f| {
            f.images.insert("x86_64".into(), "ami-1".into());
        });
        let file = dir.path().join("aws/eu-west-1.json");
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let again = cache(dir.path());
        assert_eq!(again.get("eu-west-1").images["x86_64"], "ami-1");
        again.forget("eu-west-1");
        assert!(cache(dir.path()).get("eu-west-1").images.is_empty());
        // Old facts are not trusted.
        let old = Entry {
            saved_at: 1,
            facts: Images {
                images: [("x86_64".into(), "ami-2".into())].into(),
            },
        };
        write_private(&file, &old).unwrap();
        assert!(cache(dir.path()).get("eu-west-1").images.is_empty());
        // A key that is not a plain word never becomes a path.
        assert_eq!(cache(dir.path()).file("../x"), None);
    }
}
