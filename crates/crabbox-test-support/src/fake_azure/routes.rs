//! Which endpoint a request path names, and the route string tests count and fault it by.
//! Resource Manager compares path segments (`resourcegroups`, `Microsoft.Network`, names)
//! without regard to case, so the matching here does too; names keep the client's casing.

use super::state::Kind;

/// The endpoint a request is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Target {
    /// `POST /{tenant}/oauth2/v2.0/token`.
    Token {
        tenant: String,
    },
    /// `GET /{tenant}/v2.0/.well-known/openid-configuration`.
    OpenIdConfiguration {
        tenant: String,
    },
    /// `GET /common/discovery/instance`.
    InstanceDiscovery,
    /// `/subscriptions/{sub}`.
    Subscription,
    /// `/subscriptions/{sub}/resourcegroups/{group}`.
    Group {
        group: String,
    },
    /// A top-level resource.
    Resource {
        group: String,
        kind: Kind,
        name: String,
    },
    /// A child of a resource: a subnet, a security rule, a VM extension.
    Child {
        group: String,
        kind: Kind,
        name: String,
        collection: Collection,
        child: String,
    },
    /// A VM's `instanceView`.
    InstanceView {
        group: String,
        name: String,
    },
    /// The resources of a type, in a group or in the whole subscription.
    List {
        group: Option<String>,
        kind: Kind,
    },
    /// `/subscriptions/{sub}/providers/Microsoft.Compute/skus`.
    Skus,
    /// `…/providers/{namespace}/locations/{location}/operations/{id}`: an operation's status,
    /// or its result when asked with `monitor=true` (compute's `Location` URL).
    Operation {
        id: String,
    },
    /// `…/locations/{location}/operationResults/{id}` (network) or
    /// `/subscriptions/{sub}/operationresults/{id}` (resource groups): an operation's result.
    OperationResult {
        id: String,
    },
    /// A provider type the fake does not serve.
    UnknownType {
        namespace: String,
        ty: String,
    },
    Unknown,
}

/// The children served under a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Collection {
    Subnets,
    SecurityRules,
    Extensions,
}

impl Collection {
    pub fn segment(self) -> &'static str {
        match self {
            Self::Subnets => "subnets",
            Self::SecurityRules => "securityRules",
            Self::Extensions => "extensions",
        }
    }

    fn of(parent: Kind, segment: &str) -> Option<Self> {
        let child = [Self::Subnets, Self::SecurityRules, Self::Extensions]
            .into_iter()
            .find(|c| c.segment().eq_ignore_ascii_case(segment))?;
        let parent_ok = matches!(
            (child, parent),
            (Self::Subnets, Kind::VirtualNetwork)
                | (Self::SecurityRules, Kind::NetworkSecurityGroup)
                | (Self::Extensions, Kind::VirtualMachine)
        );
        parent_ok.then_some(child)
    }
}

impl Target {
    pub fn is_identity(&self) -> bool {
        matches!(
            self,
            Self::Token { .. } | Self::OpenIdConfiguration { .. } | Self::InstanceDiscovery
        )
    }
}

/// The subscription a path names (if it is an ARM path) and its target.
pub(super) fn parse(path: &str, monitor: bool) -> (Option<String>, Target) {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let is = |i: usize, word: &str| {
        segments
            .get(i)
            .is_some_and(|s| s.eq_ignore_ascii_case(word))
    };
    match segments.as_slice() {
        [tenant, "oauth2", "v2.0", "token"] => {
            return (
                None,
                Target::Token {
                    tenant: (*tenant).to_owned(),
                },
            );
        }
        [tenant, "v2.0", ".well-known", "openid-configuration"] => {
            let tenant = (*tenant).to_owned();
            return (None, Target::OpenIdConfiguration { tenant });
        }
        ["common", "discovery", "instance"] => return (None, Target::InstanceDiscovery),
        _ => {}
    }
    if !is(0, "subscriptions") || segments.len() < 2 {
        return (None, Target::Unknown);
    }
    let subscription = Some(segments[1].to_owned());
    let rest = &segments[2..];
    let target = if is(2, "resourcegroups") {
        group_target(&rest[1..])
    } else if is(2, "providers") {
        provider_target(&rest[1..], monitor)
    } else if is(2, "operationresults") && rest.len() == 2 {
        Target::OperationResult {
            id: rest[1].to_owned(),
        }
    } else if rest.is_empty() {
        Target::Subscription
    } else {
        Target::Unknown
    };
    (subscription, target)
}

/// What follows `resourcegroups/`.
fn group_target(rest: &[&str]) -> Target {
    let Some((group, rest)) = rest.split_first() else {
        return Target::Unknown;
    };
    let group = (*group).to_owned();
    if rest.is_empty() {
        return Target::Group { group };
    }
    if rest.len() < 3 || !rest[0].eq_ignore_ascii_case("providers") {
        return Target::Unknown;
    }
    let (namespace, ty) = (rest[1], rest[2]);
    let Some(kind) = Kind::from_path(namespace, ty) else {
        let (namespace, ty) = (namespace.to_owned(), ty.to_owned());
        return Target::UnknownType { namespace, ty };
    };
    match &rest[3..] {
        [] => Target::List {
            group: Some(group),
            kind,
        },
        [name] => Target::Resource {
            group,
            kind,
            name: (*name).to_owned(),
        },
        [name, view]
            if kind == Kind::VirtualMachine && view.eq_ignore_ascii_case("instanceView") =>
        {
            Target::InstanceView {
                group,
                name: (*name).to_owned(),
            }
        }
        [name, collection, child] => match Collection::of(kind, collection) {
            Some(collection) => Target::Child {
                group,
                kind,
                name: (*name).to_owned(),
                collection,
                child: (*child).to_owned(),
            },
            None => Target::Unknown,
        },
        _ => Target::Unknown,
    }
}

/// What follows `/subscriptions/{sub}/providers/`.
fn provider_target(rest: &[&str], monitor: bool) -> Target {
    match rest {
        [namespace, skus]
            if namespace.eq_ignore_ascii_case("Microsoft.Compute")
                && skus.eq_ignore_ascii_case("skus") =>
        {
            Target::Skus
        }
        [namespace, ty] => match Kind::from_path(namespace, ty) {
            Some(kind) => Target::List { group: None, kind },
            None => Target::UnknownType {
                namespace: (*namespace).to_owned(),
                ty: (*ty).to_owned(),
            },
        },
        [_, locations, _, operations, id] if locations.eq_ignore_ascii_case("locations") => {
            let id = (*id).to_owned();
            let results = operations.eq_ignore_ascii_case("operationResults")
                || (operations.eq_ignore_ascii_case("operations") && monitor);
            if results {
                Target::OperationResult { id }
            } else if operations.eq_ignore_ascii_case("operations") {
                Target::Operation { id }
            } else {
                Target::Unknown
            }
        }
        _ => Target::Unknown,
    }
}

/// The route string of a request: `"{METHOD} {what}"`, e.g. `PUT virtualMachines`,
/// `LIST virtualMachines`, `GET operations`, `POST token`.
pub(super) fn route(method: &str, target: &Target) -> String {
    let what = match target {
        Target::Token { .. } => "token",
        Target::OpenIdConfiguration { .. } => "openid-configuration",
        Target::InstanceDiscovery => "instance-discovery",
        Target::Subscription => "subscriptions",
        Target::Group { .. } => "resourceGroups",
        Target::Resource { kind, .. } => kind.segment(),
        Target::Child { collection, .. } => collection.segment(),
        Target::InstanceView { .. } => "instanceView",
        Target::List { kind, .. } => return format!("LIST {}", kind.segment()),
        Target::Skus => "skus",
        Target::Operation { .. } => "operations",
        Target::OperationResult { .. } => "operationResults",
        Target::UnknownType { .. } | Target::Unknown => "unknown",
    };
    format!("{method} {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_match_without_regard_to_case() {
        let (sub, target) = parse(
            "/SUBSCRIPTIONS/s1/resourcegroups/Rg/providers/microsoft.compute/VIRTUALMACHINES/vm1",
            false,
        );
        assert_eq!(sub.as_deref(), Some("s1"));
        assert_eq!(
            target,
            Target::Resource {
                group: "Rg".into(),
                kind: Kind::VirtualMachine,
                name: "vm1".into()
            }
        );
        assert_eq!(route("PUT", &target), "PUT virtualMachines");
    }

    #[test]
    fn compute_monitor_urls_are_operation_results() {
        let path = "/subscriptions/s/providers/Microsoft.Compute/locations/eastus/operations/x";
        assert_eq!(parse(path, false).1, Target::Operation { id: "x".into() });
        assert_eq!(
            parse(path, true).1,
            Target::OperationResult { id: "x".into() }
        );
    }

    #[test]
    fn children_only_under_their_parent_type() {
        let subnet = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/virtualNetworks/v/subnets/a";
        assert!(matches!(
            parse(subnet, false).1,
            Target::Child {
                collection: Collection::Subnets,
                ..
            }
        ));
        let wrong = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/publicIPAddresses/v/subnets/a";
        assert_eq!(parse(wrong, false).1, Target::Unknown);
    }
}
