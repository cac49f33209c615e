//! What does not change from one lease to the next in a region: the security group (for the
//! SSH sources it was brought to), the image per architecture, the vCPU quotas, the spot
//! prices. Kept for a short time (10 minutes) so that a warm create is the key import and the
//! launch: in memory (the coordinator's process), and in direct mode also in a file of the
//! state directory (`aws/<region>.json`, 0600), since every CLI command is a new process.
//! A launch refused because a cached group or image went away forgets the region
//! ([`Cache::forget`]) and is tried again with fresh look-ups.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long facts are trusted.
pub const TTL: Duration = Duration::from_mins(10);

/// One region's facts, as last looked up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegionFacts {
    /// Unix seconds when the facts were first looked up.
    pub saved_at: u64,
    /// The security group id and the sources and ports its SSH rules were brought to.
    #[serde(default)]
    pub security_group: Option<(String, String)>,
    /// Image id by architecture.
    #[serde(default)]
    pub images: BTreeMap<String, String>,
    /// Applied vCPU quota by market (`None`: Service Quotas does not know it).
    #[serde(default)]
    pub quotas: BTreeMap<String, Option<f64>>,
    /// Spot price by instance type.
    #[serde(default)]
    pub spot_prices: BTreeMap<String, f64>,
}

/// The facts of every region this provider used lately.
#[derive(Debug)]
pub struct Cache {
    dir: Option<PathBuf>,
    memory: Mutex<BTreeMap<String, RegionFacts>>,
}

impl Cache {
    /// A cache in memory, and in `dir` when given.
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self {
            dir,
            memory: Mutex::new(BTreeMap::new()),
        }
    }

    /// The region's facts if they are younger than [`TTL`], else empty ones.
    pub fn get(&self, region: &str) -> RegionFacts {
        let now = now_secs();
        let fresh = |f: &RegionFacts| now.saturating_sub(f.saved_at) < TTL.as_secs();
        if let Some(facts) = self.lock().get(region).filter(|f| fresh(f)) {
            return facts.clone();
        }
        let from_file = self
            .file(region)
            .and_then(|path| std::fs::read(path).ok())
            .and_then(|bytes| serde_json::from_slice::<RegionFacts>(&bytes).ok())
            .filter(fresh);
        let facts = from_file.unwrap_or_else(|| RegionFacts {
            saved_at: now,
            ..RegionFacts::default()
        });
        self.lock().insert(region.to_owned(), facts.clone());
        facts
    }

    /// Records what `update` adds to the region's facts.
    pub fn update(&self, region: &str, update: impl FnOnce(&mut RegionFacts)) {
        let mut facts = self.get(region);
        update(&mut facts);
        self.lock().insert(region.to_owned(), facts.clone());
        if let Some(path) = self.file(region)
            && let Err(e) = write_private(&path, &facts)
        {
            tracing::debug!(path = %path.display(), error = %e, "could not save AWS region facts");
        }
    }

    /// Forgets the region's facts (one of them proved stale).
    pub fn forget(&self, region: &str) {
        self.lock().remove(region);
        if let Some(path) = self.file(region) {
            let _ = std::fs::remove_file(path);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, RegionFacts>> {
        self.memory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The region's file; none for a region name that is not a plain word.
    fn file(&self, region: &str) -> Option<PathBuf> {
        let plain = !region.is_empty()
            && region
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-');
        Some(self.dir.as_ref()?.join(format!("{region}.json"))).filter(|_| plain)
    }
}

/// Writes the file atomically, private to this user.
fn write_private(path: &std::path::Path, facts: &RegionFacts) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
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
    file.write_all(&serde_json::to_vec(facts).map_err(std::io::Error::other)?)?;
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

    #[test]
    fn facts_survive_a_new_process_until_they_are_forgotten() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(Some(dir.path().join("aws")));
        cache.update("eu-west-1", |f| {
            f.images.insert("x86_64".into(), "ami-1".into());
        });
        let file = dir.path().join("aws/eu-west-1.json");
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let again = Cache::new(Some(dir.path().join("aws")));
        assert_eq!(again.get("eu-west-1").images["x86_64"], "ami-1");
        again.forget("eu-west-1");
        assert!(
            Cache::new(Some(dir.path().join("aws")))
                .get("eu-west-1")
                .images
                .is_empty()
        );
        // Old facts are not trusted.
        let old = RegionFacts {
            saved_at: 1,
            ..RegionFacts::default()
        };
        write_private(
            &file,
            &RegionFacts {
                images: [("x86_64".into(), "ami-2".into())].into(),
                ..old
            },
        )
        .unwrap();
        assert!(
            Cache::new(Some(dir.path().join("aws")))
                .get("eu-west-1")
                .images
                .is_empty()
        );
        // A region name that is not a plain word never becomes a path.
        assert_eq!(Cache::new(Some(dir.path().into())).file("../x"), None);
    }
}
