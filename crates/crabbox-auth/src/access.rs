//! Authorization rules (spec coordinator §5.5, runs §2.3) as pure functions.
//!
//! Non-admins are only ever related to a record through *current* org keys: legacy keys are
//! lossy and cannot prove anything, and the missing org (`~0`) never matches an org share.

use crabbox_api::coord::{Lease, Run};

use crate::org::{self, MISSING_ORG_KEY};
use crate::principal::Principal;

/// The part of a caller the rules look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity<'a> {
    pub owner: &'a str,
    /// The caller's org key.
    pub org_key: &'a str,
    pub admin: bool,
}

impl<'a> From<&'a Principal> for Identity<'a> {
    fn from(p: &'a Principal) -> Self {
        Self {
            owner: &p.owner,
            org_key: &p.org_key,
            admin: p.admin,
        }
    }
}

impl Identity<'_> {
    /// The same caller judged by non-admin rules.
    #[must_use]
    pub fn without_admin(self) -> Self {
        Self {
            admin: false,
            ..self
        }
    }
}

/// A caller's relation to a lease, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Owner,
    Manage,
    Use,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Manage => "manage",
            Self::Use => "use",
        }
    }
}

fn share_role(value: &str) -> Option<Role> {
    match value {
        "manage" => Some(Role::Manage),
        "use" => Some(Role::Use),
        _ => None,
    }
}

/// The caller's role on `lease`, if any.
pub fn lease_role(who: Identity<'_>, lease: &Lease) -> Option<Role> {
    if who.admin {
        return Some(Role::Owner);
    }
    if !org::is_current_key(&lease.org) || !org::is_current_key(who.org_key) {
        return None;
    }
    let same_org = org::same_org(&lease.org, who.org_key);
    if lease.owner == who.owner && same_org {
        return Some(Role::Owner);
    }
    let share = lease.share.as_ref()?;
    let caller = who.owner.trim().to_lowercase();
    let user_role = share
        .users
        .iter()
        .filter(|(user, _)| user.trim().to_lowercase() == caller && !caller.is_empty())
        .filter_map(|(_, role)| share_role(role))
        .min();
    let org_role = if same_org && lease.org != MISSING_ORG_KEY {
        share.org.as_deref().and_then(share_role)
    } else {
        None
    };
    [user_role, org_role].into_iter().flatten().min()
}

/// Visible: listed, fetched, resolved by slug. Invisible resources answer 404.
pub fn can_see_lease(who: Identity<'_>, lease: &Lease) -> bool {
    lease_role(who, lease).is_some()
}

/// Manageable: heartbeat, release, share and the other mutations. Visible but not manageable
/// answers 403.
pub fn can_manage_lease(who: Identity<'_>, lease: &Lease) -> bool {
    matches!(lease_role(who, lease), Some(Role::Owner | Role::Manage))
}

/// Owner-only lease details (provider access refresh, Daytona token).
pub fn is_lease_owner(who: Identity<'_>, lease: &Lease) -> bool {
    lease_role(who, lease) == Some(Role::Owner)
}

/// Writer: admin, or the run's own owner and org.
pub fn can_write_run(who: Identity<'_>, run: &Run) -> bool {
    who.admin || (run.owner == who.owner && org::same_org(&run.org, who.org_key))
}

/// Reader: a writer, or an owner of any lease the run used (`leaseOwners`) for read-only
/// audit access, or — for legacy runs with no `leaseOwners` — the owner of `run.leaseID`,
/// which the caller passes as `lease` when it has it. Lease shares grant nothing here.
pub fn can_read_run(who: Identity<'_>, run: &Run, lease: Option<&Lease>) -> bool {
    if can_write_run(who, run) {
        return true;
    }
    if run
        .lease_owners
        .iter()
        .any(|o| o.owner == who.owner && org::same_org(&o.org, who.org_key))
    {
        return true;
    }
    run.lease_owners.is_empty()
        && lease.is_some_and(|l| {
            l.id == run.lease_id && l.owner == who.owner && org::same_org(&l.org, who.org_key)
        })
}

/// Usage reports: a non-admin sees only their own owner and org.
pub fn can_read_usage(who: Identity<'_>, owner: &str, org_key: &str) -> bool {
    who.admin || (owner == who.owner && org::same_org(org_key, who.org_key))
}

#[cfg(test)]
mod tests {
    use crabbox_api::coord::{LeaseOwner, Share};

    use super::*;

    fn key(label: &str) -> String {
        org::key_for_label(label).unwrap()
    }

    fn lease(owner: &str, org: &str) -> Lease {
        Lease {
            id: "cbx_000000000001".into(),
            owner: owner.into(),
            org: org.into(),
            ..Lease::default()
        }
    }

    fn shared(mut l: Lease, users: &[(&str, &str)], org_role: Option<&str>) -> Lease {
        l.share = Some(Share {
            users: users
                .iter()
                .map(|(u, r)| ((*u).to_owned(), (*r).to_owned()))
                .collect(),
            org: org_role.map(str::to_owned),
            ..Share::default()
        });
        l
    }

    fn who<'a>(owner: &'a str, org_key: &'a str) -> Identity<'a> {
        Identity {
            owner,
            org_key,
            admin: false,
        }
    }

    #[test]
    fn owner_needs_same_owner_and_org() {
        let oc = key("openclaw");
        let l = lease("peter", &oc);
        assert_eq!(lease_role(who("peter", &oc), &l), Some(Role::Owner));
        assert_eq!(lease_role(who("peter", &key("acme")), &l), None);
        assert_eq!(lease_role(who("paul", &oc), &l), None);
        let admin = Identity {
            admin: true,
            ..who("root", MISSING_ORG_KEY)
        };
        assert_eq!(lease_role(admin, &l), Some(Role::Owner));
        assert_eq!(lease_role(admin.without_admin(), &l), None);
    }

    #[test]
    fn shares_grant_manage_over_use() {
        let oc = key("openclaw");
        let l = shared(
            lease("peter", &oc),
            &[("GitHub:7 ", "use"), ("github:8", "manage")],
            Some("use"),
        );
        assert_eq!(lease_role(who("github:7", &oc), &l), Some(Role::Use));
        assert_eq!(lease_role(who("github:8", &oc), &l), Some(Role::Manage));
        assert_eq!(
            lease_role(who("github:9", &oc), &l),
            Some(Role::Use),
            "org share"
        );
        assert_eq!(lease_role(who("github:9", &key("acme")), &l), None);
        assert_eq!(
            lease_role(who("github:7", &key("acme")), &l),
            Some(Role::Use),
            "user shares cross orgs"
        );
        let org_manage = shared(lease("peter", &oc), &[("github:7", "use")], Some("manage"));
        assert_eq!(
            lease_role(who("github:7", &oc), &org_manage),
            Some(Role::Manage)
        );
        assert!(can_manage_lease(who("github:7", &oc), &org_manage));
        assert!(!can_manage_lease(who("github:7", &oc), &l));
        assert!(can_see_lease(who("github:7", &oc), &l));
        assert!(!is_lease_owner(who("github:8", &oc), &l));
        let bogus = shared(lease("peter", &oc), &[("github:7", "owner")], None);
        assert_eq!(lease_role(who("github:7", &oc), &bogus), None);
    }

    #[test]
    fn missing_org_never_matches_org_shares() {
        let l = shared(lease("peter", MISSING_ORG_KEY), &[], Some("manage"));
        assert_eq!(lease_role(who("paul", MISSING_ORG_KEY), &l), None);
        assert_eq!(
            lease_role(who("peter", MISSING_ORG_KEY), &l),
            Some(Role::Owner)
        );
    }

    #[test]
    fn legacy_orgs_never_authorize_non_admins() {
        let l = shared(
            lease("peter", "openclaw"),
            &[("paul", "manage")],
            Some("manage"),
        );
        assert_eq!(lease_role(who("peter", "openclaw"), &l), None);
        assert_eq!(lease_role(who("paul", &key("openclaw")), &l), None);
        let current = shared(
            lease("peter", &key("openclaw")),
            &[("paul", "manage")],
            None,
        );
        assert_eq!(
            lease_role(who("paul", "openclaw"), &current),
            None,
            "legacy caller org"
        );
        let admin = Identity {
            admin: true,
            ..who("x", "openclaw")
        };
        assert_eq!(lease_role(admin, &l), Some(Role::Owner));
    }

    #[test]
    fn run_readers_and_writers() {
        let oc = key("openclaw");
        let run = Run {
            id: "run_000000000001".into(),
            lease_id: "cbx_000000000001".into(),
            owner: "peter".into(),
            org: oc.clone(),
            lease_owners: vec![LeaseOwner {
                owner: "paul".into(),
                org: oc.clone(),
            }],
            ..Run::default()
        };
        assert!(can_write_run(who("peter", &oc), &run));
        assert!(can_read_run(who("peter", &oc), &run, None));
        assert!(!can_write_run(who("paul", &oc), &run));
        assert!(
            can_read_run(who("paul", &oc), &run, None),
            "lease owners audit"
        );
        assert!(!can_read_run(who("paul", &key("acme")), &run, None));
        assert!(!can_read_run(who("mary", &oc), &run, None));
        let admin = Identity {
            admin: true,
            ..who("root", MISSING_ORG_KEY)
        };
        assert!(can_write_run(admin, &run) && can_read_run(admin, &run, None));

        // A share on the lease grants nothing on the run.
        let l = shared(lease("paul", &oc), &[("mary", "manage")], Some("manage"));
        assert!(!can_read_run(who("mary", &oc), &run, Some(&l)));

        // Legacy runs without leaseOwners fall back to the lease's owner.
        let legacy = Run {
            lease_owners: Vec::new(),
            ..run.clone()
        };
        assert!(can_read_run(
            who("paul", &oc),
            &legacy,
            Some(&lease("paul", &oc))
        ));
        assert!(!can_read_run(who("paul", &oc), &legacy, None));
        let mut other = lease("paul", &oc);
        other.id = "cbx_000000000002".into();
        assert!(!can_read_run(who("paul", &oc), &legacy, Some(&other)));

        // Legacy run orgs authorize nobody but admins.
        let old = Run {
            org: "openclaw".into(),
            ..run
        };
        assert!(!can_write_run(who("peter", "openclaw"), &old));
    }

    #[test]
    fn usage_scope() {
        let oc = key("openclaw");
        assert!(can_read_usage(who("peter", &oc), "peter", &oc));
        assert!(!can_read_usage(who("peter", &oc), "paul", &oc));
        assert!(!can_read_usage(who("peter", &oc), "peter", &key("acme")));
    }
}
