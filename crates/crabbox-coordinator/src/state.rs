//! Shared coordinator state handed to every handler and to the reconciler.

use std::collections::BTreeMap;
use std::sync::Arc;

use crabbox_providers::Provider;
use crabbox_store::Store;
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::config::Settings;
use crate::metrics::Metrics;

/// Everything a request needs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub inner: Arc<Inner>,
}

#[derive(Debug)]
pub struct Inner {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub settings: Settings,
    pub auth: crabbox_auth::Authenticator,
    pub github_login: Option<crabbox_auth::GithubLogin>,
    /// Providers this coordinator may provision on, by canonical name.
    pub providers: BTreeMap<String, Arc<dyn Provider>>,
    /// Random per process start; stamps provisioning records so a restarted coordinator can
    /// tell its own in-flight creates from interrupted ones.
    pub generation: String,
    /// Wakes the reconciler early (a release that owes a provider delete, a shutdown).
    pub reconcile_wake: Notify,
    pub metrics: Metrics,
    /// Whether this replica currently runs the reconciler.
    pub leader: std::sync::atomic::AtomicBool,
    /// Lease ids with a create task running in this process, and how many (retries of one
    /// create attempt may run side by side): a `provisioning` record of this generation that is
    /// not here lost its task (a panic, a failed final write) and is cleaned like one left by
    /// a crash.
    pub creating: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl AppState {
    pub fn now(&self) -> crabbox_api::coord::Timestamp {
        self.clock.now()
    }

    /// Hides configured secrets and credential-looking text in diagnostics.
    pub fn redact(&self, text: &str) -> String {
        let secrets: Vec<&str> = self.settings.secrets.iter().map(String::as_str).collect();
        crabbox_auth::secret::redact(text, &secrets)
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader
            .store(leader, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn is_leader(&self) -> bool {
        self.leader.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn provider(&self, name: &str) -> Option<&Arc<dyn Provider>> {
        self.providers.get(name)
    }

    /// Marks a create of `id` as running in this process until the guard is dropped (also
    /// when the task panics).
    pub fn creating(&self, id: &str) -> CreatingGuard {
        *self.creating_ids().entry(id.to_owned()).or_default() += 1;
        CreatingGuard {
            state: self.clone(),
            id: id.to_owned(),
        }
    }

    /// Whether a create of `id` is running in this process.
    pub fn is_creating(&self, id: &str) -> bool {
        self.creating_ids().contains_key(id)
    }

    fn creating_ids(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, usize>> {
        self.creating
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// See [`AppState::creating`].
#[derive(Debug)]
pub struct CreatingGuard {
    state: AppState,
    id: String,
}

impl Drop for CreatingGuard {
    fn drop(&mut self) {
        let mut ids = self.state.creating_ids();
        if let Some(n) = ids.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                ids.remove(&self.id);
            }
        }
    }
}

/// A random lowercase hex string of `bytes` bytes.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the OS random source is unavailable");
    hex::encode(buf)
}
