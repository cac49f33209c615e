//! Lease lifetime math and the reconciler's schedule, as pure functions (spec §4.4, §4.5, §4.7).

use crabbox_api::coord::{Lease, LeaseState, Timestamp};
use crabbox_store::LeaseIndex;

/// Default and maximum lease lifetimes, in seconds.
pub const DEFAULT_TTL_SECS: u64 = 5400;
pub const DEFAULT_IDLE_SECS: u64 = 1800;
pub const MAX_LIFETIME_SECS: u64 = 86_400;
/// Registered leases default to a day.
pub const REGISTERED_DEFAULT_SECS: u64 = 86_400;
/// How long a cleanup claim fences other cleaners.
pub const CLEANUP_CLAIM_SECS: i64 = 30 * 60;
/// Delay before retrying a failed provider delete.
pub const CLEANUP_RETRY_SECS: i64 = 5 * 60;

/// `ttlSeconds`/`idleTimeoutSeconds` from a request: non-positive or non-finite → default,
/// truncated, capped at a day.
pub fn clamp_lifetime(raw: Option<f64>, default: u64) -> u64 {
    match raw {
        Some(v) if v.is_finite() && v >= 1.0 => (v.trunc() as u64).min(MAX_LIFETIME_SECS),
        _ => default,
    }
}

/// `min(created + ttl, lastTouched + idle)` for managed leases; sliding
/// `lastTouched + min(ttl, idle)` for registered ones.
pub fn expires_at(lease: &Lease) -> Timestamp {
    let ttl = i64::try_from(lease.ttl_seconds.max(1)).unwrap_or(i64::MAX / 2000);
    let idle = i64::try_from(lease.idle_timeout_seconds.max(1)).unwrap_or(i64::MAX / 2000);
    if lease.is_registered() {
        lease.last_touched_at.plus_secs(ttl.min(idle))
    } else {
        lease
            .created_at
            .plus_secs(ttl)
            .min(lease.last_touched_at.plus_secs(idle))
    }
}

/// Whether a non-live lease still owes a provider delete.
pub fn cleanup_pending(lease: &Lease) -> bool {
    !lease.is_live()
        && lease.release_deletes_server == Some(true)
        && !lease.cloud_id.is_empty()
        && (lease.cleanup_started_at.is_some() || lease.cleanup_error.is_some())
}

/// When the reconciler must next look at `lease`, given the provisioning settle window.
pub fn next_check_at(lease: &Lease, settle_secs: i64) -> Option<Timestamp> {
    let fence = lease.cleanup_claim_expires_at.or(lease
        .cleanup_started_at
        .map(|t| t.plus_secs(CLEANUP_CLAIM_SECS)));
    if lease.is_live() {
        let mut at = lease.expires_at;
        if let Some(retry) = lease.cleanup_retry_at {
            at = at.max(retry);
        }
        if let Some(claim) = fence {
            at = at.max(claim);
        }
        if lease.state == LeaseState::Provisioning
            && lease.cloud_id.is_empty()
            && let Some(started) = lease.provisioning_request_started_at
        {
            let base = lease.provisioning_recovery_observed_at.unwrap_or(started);
            at = at.min(base.plus_secs(settle_secs));
        }
        return Some(at);
    }
    if cleanup_pending(lease) {
        let mut at = lease.cleanup_retry_at.unwrap_or(Timestamp(0));
        if let Some(claim) = fence {
            at = at.max(claim);
        }
        return Some(at);
    }
    None
}

pub fn index(lease: &Lease, settle_secs: i64) -> LeaseIndex {
    LeaseIndex {
        next_check_at: next_check_at(lease, settle_secs),
    }
}

pub fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(created: i64, touched: i64, ttl: u64, idle: u64) -> Lease {
        Lease {
            id: "cbx_000000000001".into(),
            state: LeaseState::Active,
            created_at: Timestamp(created),
            last_touched_at: Timestamp(touched),
            ttl_seconds: ttl,
            idle_timeout_seconds: idle,
            ..Lease::default()
        }
    }

    #[test]
    fn expiry_is_the_earlier_of_ttl_and_idle() {
        assert_eq!(expires_at(&lease(0, 0, 5400, 1800)), Timestamp(1_800_000));
        // A heartbeat late in life cannot extend past the TTL.
        assert_eq!(
            expires_at(&lease(0, 5_000_000, 5400, 1800)),
            Timestamp(5_400_000)
        );
        let mut reg = lease(0, 10_000, 100, 50);
        reg.lifecycle = crabbox_api::coord::Lifecycle::Registered;
        assert_eq!(expires_at(&reg), Timestamp(60_000));
    }

    #[test]
    fn lifetimes_clamp() {
        assert_eq!(clamp_lifetime(None, 5400), 5400);
        assert_eq!(clamp_lifetime(Some(-3.0), 5400), 5400);
        assert_eq!(clamp_lifetime(Some(f64::NAN), 1800), 1800);
        assert_eq!(clamp_lifetime(Some(90.9), 1800), 90);
        assert_eq!(clamp_lifetime(Some(1e9), 1800), 86_400);
    }

    #[test]
    fn schedule_follows_expiry_retry_and_claims() {
        let mut l = lease(0, 0, 100, 100);
        l.expires_at = expires_at(&l);
        assert_eq!(next_check_at(&l, 300), Some(Timestamp(100_000)));
        l.cleanup_retry_at = Some(Timestamp(400_000));
        assert_eq!(next_check_at(&l, 300), Some(Timestamp(400_000)));
        l.state = LeaseState::Released;
        l.cleanup_retry_at = None;
        assert_eq!(next_check_at(&l, 300), None);
        l.release_deletes_server = Some(true);
        l.cloud_id = "x".into();
        l.cleanup_started_at = Some(Timestamp(7));
        l.cleanup_claim_expires_at = Some(Timestamp(7));
        assert_eq!(next_check_at(&l, 300), Some(Timestamp(7)));
    }
}
