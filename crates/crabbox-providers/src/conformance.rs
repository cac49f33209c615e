//! The provider conformance suite (feature `conformance`): what every `Provider` must do, run by
//! each provider's own tests against the real thing (a real sshd for `local` and `ssh`, moto
//! behind the fault proxy for `aws`).
//!
//! [`lifecycle`]: acquire → the record describes a reachable runner → health says alive → the
//! inventory names the lease (for providers that list) → release → release again (a release is
//! idempotent) → health says gone and the inventory no longer names it (for providers that
//! delete). Cloud-specific cases (a create retried after a lost reply leaves one runner, an
//! interrupted or failed create leaves nothing) need the cloud's fault injection and live in
//! the provider's tests.

use crate::{AcquireRequest, Health, LeaseRecord, Provider};

/// What a provider promises beyond the common part.
#[derive(Debug, Clone, Copy)]
pub struct Promises {
    /// `inventory` and `runners` name its leases (managed runners).
    pub lists: bool,
    /// `release` deletes the runner, so `health` says gone afterwards (static hosts stay).
    pub deletes: bool,
    /// It adopts a machine that exists rather than making one (static hosts): the lease is
    /// named after the host, always kept, and its health is unknown without connecting.
    pub adopts: bool,
}

/// Runs the lifecycle case; panics with what went wrong. Returns the acquired record, already
/// released.
pub async fn lifecycle(
    provider: &dyn Provider,
    req: &AcquireRequest,
    promises: Promises,
) -> LeaseRecord {
    let name = provider.name();
    let record = provider
        .acquire(req)
        .await
        .unwrap_or_else(|e| panic!("{name}: acquire failed: {e}"));
    if !promises.adopts {
        assert_eq!(
            record.lease_id, req.lease_id,
            "{name}: the record's lease id"
        );
        assert_eq!(record.slug, req.slug, "{name}: the record's slug");
        assert_eq!(record.keep, req.keep, "{name}: keep is recorded");
    }
    assert_eq!(
        record.provider, name,
        "{name}: the record names its provider"
    );
    assert!(
        !record.ssh_host.is_empty(),
        "{name}: the record has an SSH host"
    );
    assert!(record.ssh_port > 0, "{name}: the record has an SSH port");
    assert!(
        !record.ssh_user.is_empty(),
        "{name}: the record has an SSH user"
    );
    assert!(
        !record.work_root.is_empty(),
        "{name}: the record has a work root"
    );
    let expected = if promises.adopts {
        Health::Unknown
    } else {
        Health::Alive
    };
    assert_eq!(
        provider.health(&record).await,
        expected,
        "{name}: a new runner's health"
    );
    if promises.lists {
        let ids = provider.inventory().await.expect("inventory");
        assert!(
            ids.contains(&req.lease_id),
            "{name}: the inventory names the new lease: {ids:?}"
        );
        let runners = provider.runners().await.expect("runners");
        assert!(
            runners.is_empty() || runners.iter().any(|r| r.lease_id == req.lease_id),
            "{name}: runners() names the new lease"
        );
    }
    provider
        .release(&record)
        .await
        .unwrap_or_else(|e| panic!("{name}: release failed: {e}"));
    provider
        .release(&record)
        .await
        .unwrap_or_else(|e| panic!("{name}: a second release must succeed too: {e}"));
    if promises.deletes {
        assert!(
            matches!(provider.health(&record).await, Health::Gone(_)),
            "{name}: a released runner is gone"
        );
    }
    if promises.lists {
        let ids = provider.inventory().await.expect("inventory");
        assert!(
            !ids.contains(&req.lease_id),
            "{name}: the inventory forgets a released lease: {ids:?}"
        );
    }
    record
}
