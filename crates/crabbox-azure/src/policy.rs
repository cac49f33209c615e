//! The Azure RBAC permissions of exactly the calls this provider makes, from one list, so
//! `admin providers policy --provider azure` (a custom role definition) cannot drift from the
//! code: the tests check every call the fake saw against [`CALLS`].

use serde_json::{Value, json};

/// Each call (`METHOD type`, as the Azure fake names routes) with the permission it needs.
/// Joins are what a NIC's references need: the subnet, the security group, the public IP; a
/// VM's, its NIC.
pub const CALLS: &[(&str, &[&str])] = &[
    (
        "GET subscriptions",
        &["Microsoft.Resources/subscriptions/read"],
    ),
    (
        "GET resourceGroups",
        &["Microsoft.Resources/subscriptions/resourceGroups/read"],
    ),
    (
        "PUT resourceGroups",
        &["Microsoft.Resources/subscriptions/resourceGroups/write"],
    ),
    (
        "GET virtualNetworks",
        &["Microsoft.Network/virtualNetworks/read"],
    ),
    (
        "PUT virtualNetworks",
        &["Microsoft.Network/virtualNetworks/write"],
    ),
    (
        "GET networkSecurityGroups",
        &["Microsoft.Network/networkSecurityGroups/read"],
    ),
    (
        "PUT networkSecurityGroups",
        &["Microsoft.Network/networkSecurityGroups/write"],
    ),
    (
        "GET publicIPAddresses",
        &["Microsoft.Network/publicIPAddresses/read"],
    ),
    (
        "LIST publicIPAddresses",
        &["Microsoft.Network/publicIPAddresses/read"],
    ),
    (
        "PUT publicIPAddresses",
        &["Microsoft.Network/publicIPAddresses/write"],
    ),
    (
        "DELETE publicIPAddresses",
        &["Microsoft.Network/publicIPAddresses/delete"],
    ),
    (
        "GET networkInterfaces",
        &["Microsoft.Network/networkInterfaces/read"],
    ),
    (
        "LIST networkInterfaces",
        &["Microsoft.Network/networkInterfaces/read"],
    ),
    (
        "PUT networkInterfaces",
        &[
            "Microsoft.Network/networkInterfaces/write",
            "Microsoft.Network/virtualNetworks/subnets/join/action",
            "Microsoft.Network/networkSecurityGroups/join/action",
            "Microsoft.Network/publicIPAddresses/join/action",
        ],
    ),
    (
        "DELETE networkInterfaces",
        &["Microsoft.Network/networkInterfaces/delete"],
    ),
    (
        "GET virtualMachines",
        &["Microsoft.Compute/virtualMachines/read"],
    ),
    (
        "LIST virtualMachines",
        &["Microsoft.Compute/virtualMachines/read"],
    ),
    (
        "PUT virtualMachines",
        &[
            "Microsoft.Compute/virtualMachines/write",
            "Microsoft.Compute/disks/write",
            "Microsoft.Network/networkInterfaces/join/action",
        ],
    ),
    (
        "PATCH virtualMachines",
        &["Microsoft.Compute/virtualMachines/write"],
    ),
    (
        "DELETE virtualMachines",
        &["Microsoft.Compute/virtualMachines/delete"],
    ),
    (
        "GET extensions",
        &["Microsoft.Compute/virtualMachines/extensions/read"],
    ),
    (
        "PUT extensions",
        &["Microsoft.Compute/virtualMachines/extensions/write"],
    ),
    ("DELETE disks", &["Microsoft.Compute/disks/delete"]),
    (
        "GET operations",
        &[
            "Microsoft.Compute/locations/operations/read",
            "Microsoft.Network/locations/operations/read",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
        ],
    ),
    (
        "GET operationResults",
        &[
            "Microsoft.Compute/locations/operations/read",
            "Microsoft.Network/locations/operations/read",
        ],
    ),
];

/// A custom role definition (`az role definition create --role-definition @role.json`) with
/// the permissions of [`CALLS`], assignable in `subscription` (or `<subscription-id>`).
pub fn role_definition(subscription: Option<&str>) -> Value {
    let mut actions: Vec<&str> = CALLS.iter().flat_map(|(_, a)| a.iter().copied()).collect();
    actions.sort_unstable();
    actions.dedup();
    let scope = format!(
        "/subscriptions/{}",
        subscription.unwrap_or("<subscription-id>")
    );
    json!({
        "Name": "Crabbox runner leases",
        "IsCustom": true,
        "Description": "What Crabbox needs to lease Azure VMs: the shared network, and per lease a public IP, NIC, VM and its OS disk.",
        "Actions": actions,
        "NotActions": [],
        "AssignableScopes": [scope]
    })
}

/// Whether the fake's route `route` is a call [`CALLS`] lists (the token and the identity
/// platform's discovery need no permission).
pub fn is_listed(route: &str) -> bool {
    CALLS.iter().any(|(r, _)| r.eq_ignore_ascii_case(route))
        || [
            "POST token",
            "GET openid-configuration",
            "GET instance-discovery",
        ]
        .contains(&route)
}
