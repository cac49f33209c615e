//! The labels (tags) every cloud resource of a lease carries (spec/providers.md §1.12), and
//! the cleanup decision read from them. Labels are how `list` finds runners across processes
//! and how cleanup knows what it may delete, so their keys and formats match the old tool's.

use std::collections::BTreeMap;

use crabbox_core::machine::{Market, TargetOs, WindowsMode};
use crabbox_core::slug::normalize_slug;

use super::names::provider_key_name;

/// The longest label value: Hetzner and GCP labels stop at 63 characters.
const MAX_VALUE: usize = 63;

/// A `running` or `provisioning` runner is in use; it is cleaned up only this long after it
/// expired, in case its heartbeats stopped while a command still runs.
const BUSY_GRACE_SECS: u64 = 12 * 3600;

/// Defaults for labels that lack a duration (spec Appendix A).
const DEFAULT_IDLE_SECS: u64 = 30 * 60;
const DEFAULT_TTL_SECS: u64 = 90 * 60;

/// What the labels of a new lease say.
#[derive(Debug, Clone, Copy)]
pub struct LeaseLabels<'a> {
    pub provider: &'a str,
    pub lease_id: &'a str,
    pub slug: &'a str,
    pub class: &'a str,
    pub profile: &'a str,
    pub server_type: &'a str,
    pub target: TargetOs,
    pub windows_mode: WindowsMode,
    /// For clouds with markets (aws, azure).
    pub market: Option<Market>,
    pub keep: bool,
    /// Unix seconds.
    pub created_at: u64,
    pub ttl_secs: u64,
    pub idle_timeout_secs: u64,
}

impl LeaseLabels<'_> {
    /// The canonical label set, state `leased`, every value sanitised.
    pub fn render(&self) -> BTreeMap<String, String> {
        let expires_at = expires_at(
            self.created_at,
            self.created_at,
            self.ttl_secs,
            self.idle_timeout_secs,
        );
        let mut labels: BTreeMap<String, String> = [
            ("crabbox", "true".to_owned()),
            ("created_by", "crabbox".to_owned()),
            ("provider", self.provider.to_owned()),
            ("lease", self.lease_id.to_owned()),
            ("slug", normalize_slug(self.slug)),
            ("class", self.class.to_owned()),
            ("profile", self.profile.to_owned()),
            ("server_type", self.server_type.to_owned()),
            ("target", self.target.as_str().to_owned()),
            (
                "provider_key",
                provider_key_name(self.lease_id).unwrap_or_default(),
            ),
            ("keep", self.keep.to_string()),
            ("state", "leased".to_owned()),
            ("created_at", self.created_at.to_string()),
            ("last_touched_at", self.created_at.to_string()),
            ("expires_at", expires_at.to_string()),
            ("idle_timeout", seconds(self.idle_timeout_secs)),
            ("idle_timeout_secs", seconds(self.idle_timeout_secs)),
            ("ttl_secs", seconds(self.ttl_secs)),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect();
        if let Some(market) = self.market {
            labels.insert("market".into(), market.as_str().into());
        }
        if self.target == TargetOs::Windows {
            labels.insert("windows_mode".into(), self.windows_mode.as_str().into());
        }
        sanitize(labels)
    }
}

/// A heartbeat's labels: the new state (if any), `last_touched_at = now` and the expiry
/// recomputed from the lease's own durations.
pub fn touch(
    labels: &BTreeMap<String, String>,
    state: Option<&str>,
    now: u64,
) -> BTreeMap<String, String> {
    let mut next = labels.clone();
    if let Some(state) = state {
        next.insert("state".into(), state.into());
    }
    let created_at = unix_seconds(labels.get("created_at")).unwrap_or(now);
    let idle = unix_seconds(labels.get("idle_timeout_secs"))
        .or_else(|| unix_seconds(labels.get("idle_timeout")))
        .unwrap_or(DEFAULT_IDLE_SECS);
    let ttl = unix_seconds(labels.get("ttl_secs")).unwrap_or(DEFAULT_TTL_SECS);
    for (key, value) in [
        ("created_at", created_at),
        ("last_touched_at", now),
        ("idle_timeout", idle),
        ("idle_timeout_secs", idle),
        ("ttl_secs", ttl),
        ("expires_at", expires_at(created_at, now, ttl, idle)),
    ] {
        next.insert(key.into(), value.to_string());
    }
    sanitize(next)
}

/// The labels a record carries when it was made from its runner: a provider that replaces a
/// runner's labels whole (Hetzner, Azure) writes a heartbeat from them; a record without them
/// (rebuilt from a coordinator's lease) has the runner's read first.
pub fn is_whole_set(labels: &BTreeMap<String, String>) -> bool {
    [
        "crabbox",
        "created_by",
        "provider",
        "lease",
        "slug",
        "keep",
        "created_at",
    ]
    .iter()
    .all(|key| labels.contains_key(*key))
}

/// A heartbeat's labels for a runner whose labels are `current`: the lease's idle timeout
/// (`heartbeat --idle-timeout` may change it), the clock touched.
pub fn heartbeat(
    mut current: BTreeMap<String, String>,
    idle_timeout_secs: u64,
    now: u64,
) -> BTreeMap<String, String> {
    current.insert("idle_timeout_secs".into(), idle_timeout_secs.to_string());
    current.remove("idle_timeout");
    touch(&current, None, now)
}

/// `min(last_touched + idle, created + ttl)`; a zero TTL means none.
fn expires_at(created_at: u64, last_touched_at: u64, ttl: u64, idle: u64) -> u64 {
    let idle_expiry = last_touched_at.saturating_add(idle);
    if ttl == 0 {
        idle_expiry
    } else {
        idle_expiry.min(created_at.saturating_add(ttl))
    }
}

/// Zero renders empty, which sanitising turns into `unknown`, as the old tool wrote it.
fn seconds(value: u64) -> String {
    if value == 0 {
        String::new()
    } else {
        value.to_string()
    }
}

fn unix_seconds(value: Option<&String>) -> Option<u64> {
    value?.trim().parse().ok().filter(|seconds| *seconds > 0)
}

/// Every value sanitised except `work_root`, which is a path and read back as one.
pub fn sanitize(labels: BTreeMap<String, String>) -> BTreeMap<String, String> {
    labels
        .into_iter()
        .map(|(key, value)| {
            let value = if key == "work_root" {
                value
            } else {
                sanitize_value(&value)
            };
            (key, value)
        })
        .collect()
}

/// A label value every cloud accepts: `[A-Za-z0-9_.-]`, other characters as `_`, at most 63
/// characters, no leading or trailing `_.-`, and `unknown` rather than empty.
pub fn sanitize_value(value: &str) -> String {
    let kept: String = value
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(MAX_VALUE)
        .collect();
    let trimmed = kept.trim_matches(['_', '.', '-']);
    if trimmed.is_empty() {
        "unknown".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// Whether cleanup may delete a runner, and why, for its `delete server …` or `skip server …`
/// line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanupDecision {
    pub delete: bool,
    pub reason: String,
}

impl CleanupDecision {
    fn delete(reason: impl Into<String>) -> Self {
        Self {
            delete: true,
            reason: reason.into(),
        }
    }

    fn keep(reason: impl Into<String>) -> Self {
        Self {
            delete: false,
            reason: reason.into(),
        }
    }
}

/// The cleanup rule (spec/providers.md §1.12), from a runner's labels at `now` (Unix seconds).
pub fn should_cleanup_server(labels: &BTreeMap<String, String>, now: u64) -> CleanupDecision {
    if labels.is_empty() {
        return CleanupDecision::keep("missing labels");
    }
    if labels
        .get("keep")
        .is_some_and(|keep| keep.eq_ignore_ascii_case("true"))
    {
        return CleanupDecision::keep("keep=true");
    }
    let state = labels
        .get("state")
        .map(|state| state.to_ascii_lowercase())
        .unwrap_or_default();
    let expiry = unix_seconds(labels.get("expires_at")).or_else(|| unix_seconds(labels.get("ttl")));
    match state.as_str() {
        "running" | "provisioning" => match expiry {
            Some(expires) if now > expires.saturating_add(BUSY_GRACE_SECS) => {
                CleanupDecision::delete(format!("stale state={state}"))
            }
            _ => CleanupDecision::keep(format!("state={state}")),
        },
        "leased" | "ready" | "active" => match expiry {
            Some(expires) if now > expires => {
                CleanupDecision::delete(format!("expired state={state}"))
            }
            _ => CleanupDecision::keep(format!("state={state}")),
        },
        "failed" | "released" | "expired" => CleanupDecision::delete(format!("state={state}")),
        _ => match expiry {
            None => CleanupDecision::keep("missing expires_at"),
            Some(expires) if now < expires => CleanupDecision::keep("not expired"),
            Some(_) => CleanupDecision::delete("expired"),
        },
    }
}

/// How long past its TTL an unclaimed runner is left alone.
pub const ORPHAN_GRACE_SECS: u64 = 10 * 60;

/// Whether `cleanup` may delete a runner no local claim accounts for. Another machine may hold
/// it (direct leases are known only to the machine that made them) and keep it alive with
/// heartbeats that do not reach the labels, so the idle expiry in the labels proves nothing;
/// its TTL does: no lease outlives `created_at + ttl_secs`. So: never with `keep=true`; at
/// once when the labels say it ended (`failed`, `released`, `expired`); else only
/// [`ORPHAN_GRACE_SECS`] past its TTL; never without the labels to tell.
pub fn should_cleanup_orphan(labels: &BTreeMap<String, String>, now: u64) -> CleanupDecision {
    if labels
        .get("keep")
        .is_some_and(|keep| keep.eq_ignore_ascii_case("true"))
    {
        return CleanupDecision::keep("orphan keep=true");
    }
    let state = labels.get("state").map(|s| s.to_ascii_lowercase());
    if let Some(state) = state.filter(|s| matches!(s.as_str(), "failed" | "released" | "expired")) {
        return CleanupDecision::delete(format!("orphan state={state}"));
    }
    let created = unix_seconds(labels.get("created_at"));
    let ttl = unix_seconds(labels.get("ttl_secs"));
    match created.zip(ttl) {
        Some((created, ttl)) if now > created + ttl + ORPHAN_GRACE_SECS => {
            CleanupDecision::delete("orphan past its ttl")
        }
        Some(_) => CleanupDecision::keep("orphan within its ttl"),
        None => CleanupDecision::keep("orphan without created_at/ttl_secs labels"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_790_000_000;

    /// Labels, whether cleanup deletes, and the reason it gives.
    type Case<'a> = (&'a [(&'a str, &'a str)], bool, &'a str);

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_new_lease_carries_the_canonical_set() {
        let labels = LeaseLabels {
            provider: "aws",
            lease_id: "cbx_abcdef123456",
            slug: "Blue Lobster",
            class: "beast",
            profile: "default",
            server_type: "c7a.48xlarge",
            target: TargetOs::Windows,
            windows_mode: WindowsMode::Wsl2,
            market: Some(Market::OnDemand),
            keep: false,
            created_at: NOW,
            ttl_secs: 5400,
            idle_timeout_secs: 1800,
        }
        .render();
        insta::assert_debug_snapshot!(labels);
    }

    #[test]
    fn values_are_sanitised_except_the_work_root() {
        assert_eq!(sanitize_value("peter@example.com"), "peter_example.com");
        assert_eq!(sanitize_value("  "), "unknown");
        assert_eq!(sanitize_value("--é--"), "unknown");
        assert_eq!(sanitize_value(&"a".repeat(80)).len(), 63);
        assert_eq!(
            sanitize_value(&format!("{}!b", "a".repeat(62))),
            "a".repeat(62)
        );
        let out = sanitize(labels(&[("work_root", "/work/my box"), ("owner", "a b")]));
        assert_eq!(out["work_root"], "/work/my box");
        assert_eq!(out["owner"], "a_b");
    }

    #[test]
    fn touch_moves_the_idle_expiry_and_keeps_the_ttl_cap() {
        let before = labels(&[
            ("state", "leased"),
            ("created_at", &NOW.to_string()),
            ("idle_timeout_secs", "1800"),
            ("ttl_secs", "5400"),
        ]);
        let after = touch(&before, Some("running"), NOW + 600);
        assert_eq!(after["state"], "running");
        assert_eq!(after["last_touched_at"], (NOW + 600).to_string());
        assert_eq!(after["expires_at"], (NOW + 2400).to_string());
        let late = touch(&before, None, NOW + 5000);
        assert_eq!(late["state"], "leased");
        assert_eq!(
            late["expires_at"],
            (NOW + 5400).to_string(),
            "capped by the TTL"
        );
        // Labels without durations get the defaults.
        let bare = touch(&labels(&[]), None, NOW);
        assert_eq!(bare["expires_at"], (NOW + 1800).to_string());
    }

    #[test]
    fn cleanup_follows_the_rule() {
        let expired = (NOW - 10).to_string();
        let future = (NOW + 10).to_string();
        let long_ago = (NOW - BUSY_GRACE_SECS - 10).to_string();
        let cases: [Case<'_>; 12] = [
            (&[], false, "missing labels"),
            (&[("keep", "TRUE"), ("state", "failed")], false, "keep=true"),
            (
                &[("state", "running"), ("expires_at", &expired)],
                false,
                "state=running",
            ),
            (
                &[("state", "running"), ("expires_at", &long_ago)],
                true,
                "stale state=running",
            ),
            (&[("state", "provisioning")], false, "state=provisioning"),
            (
                &[("state", "ready"), ("expires_at", &future)],
                false,
                "state=ready",
            ),
            (
                &[("state", "Leased"), ("expires_at", &expired)],
                true,
                "expired state=leased",
            ),
            (
                &[("state", "active"), ("ttl", &expired)],
                true,
                "expired state=active",
            ),
            (&[("state", "released")], true, "state=released"),
            (&[("state", "odd")], false, "missing expires_at"),
            (&[("expires_at", &future)], false, "not expired"),
            (&[("expires_at", &NOW.to_string())], true, "expired"),
        ];
        for (pairs, delete, reason) in cases {
            let decision = should_cleanup_server(&labels(pairs), NOW);
            assert_eq!(
                decision,
                CleanupDecision {
                    delete,
                    reason: reason.into()
                },
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn orphans_are_deleted_only_past_their_ttl_and_never_with_keep() {
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let live = labels(&[
            ("state", "ready"),
            ("created_at", "1000"),
            ("ttl_secs", "5400"),
            ("expires_at", "2800"),
        ]);
        // Past its idle expiry but within its TTL: another machine may be using it.
        assert!(!should_cleanup_orphan(&live, 3000).delete);
        assert!(!should_cleanup_orphan(&live, 1000 + 5400 + ORPHAN_GRACE_SECS).delete);
        let past = should_cleanup_orphan(&live, 1000 + 5400 + ORPHAN_GRACE_SECS + 1);
        assert!(past.delete, "{}", past.reason);
        let mut kept = live.clone();
        kept.insert("keep".into(), "true".into());
        assert!(!should_cleanup_orphan(&kept, u64::MAX / 2).delete);
        assert!(should_cleanup_orphan(&labels(&[("state", "failed")]), 0).delete);
        assert!(!should_cleanup_orphan(&labels(&[("state", "ready")]), u64::MAX / 2).delete);
    }
}
