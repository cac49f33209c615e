//! What the `Microsoft.Network` resources share: how the network resource provider shows
//! them (etags, derived references, the default security rules), how it checks references
//! (`InvalidResourceReference`) and why it refuses a delete (`NicInUse`,
//! `PublicIPAddressCannotBeDeleted`, `InUseNetworkSecurityGroupCannotBeDeleted`,
//! `InUseSubnetCannotBeDeleted`). The types themselves are in [`super::vnets`] and
//! [`super::interfaces`].

use serde_json::{Value, json};

use super::arm::{Answer, error};
use super::references::{ip_configurations, ref_id, subnets};
use super::state::{Kind, Resource, State, key};

/// The resource as the network resource provider shows it.
pub(super) fn render(state: &State, r: &Resource) -> Value {
    let mut out = r.envelope();
    let props = out["properties"].as_object_mut().expect("properties");
    let children_state = json!(r.state.as_str());
    match r.kind {
        Kind::VirtualNetwork => {
            let rendered: Vec<Value> = subnets(r).map(|s| render_subnet(state, r, s)).collect();
            props.insert("subnets".into(), json!(rendered));
        }
        Kind::NetworkSecurityGroup => {
            let rules = props
                .get("securityRules")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let rules: Vec<Value> = rules
                .into_iter()
                .map(|mut rule| {
                    rule["properties"]["provisioningState"] = children_state.clone();
                    rule
                })
                .collect();
            props.insert("securityRules".into(), json!(rules));
            props.insert("defaultSecurityRules".into(), default_rules(&r.id));
            let users = state.users_of_nsg(&r.id);
            let (subnets, nics): (Vec<String>, Vec<String>) = users
                .into_iter()
                .partition(|id| id.to_ascii_lowercase().contains("/subnets/"));
            let refs = |ids: Vec<String>| {
                json!(
                    ids.into_iter()
                        .map(|id| json!({"id": id}))
                        .collect::<Vec<_>>()
                )
            };
            if !nics.is_empty() {
                props.insert("networkInterfaces".into(), refs(nics));
            }
            if !subnets.is_empty() {
                props.insert("subnets".into(), refs(subnets));
            }
        }
        Kind::PublicIpAddress => {
            if let Some(config) = state.ip_configuration_of_pip(&r.id, None) {
                props.insert("ipConfiguration".into(), json!({"id": config}));
            }
        }
        Kind::NetworkInterface => {
            let configs: Vec<Value> = ip_configurations(r)
                .cloned()
                .map(|mut c| {
                    c["properties"]["provisioningState"] = children_state.clone();
                    c
                })
                .collect();
            props.insert("ipConfigurations".into(), json!(configs));
            if let Some(vm) = state.vm_of_nic(&r.id, None) {
                props.insert("virtualMachine".into(), json!({"id": vm.id}));
                props.insert("macAddress".into(), json!(mac_address(&r.id)));
                props.insert("primary".into(), json!(true));
            }
        }
        _ => {}
    }
    Value::Object(out)
}

pub(super) fn render_subnet(state: &State, vnet: &Resource, subnet: &Value) -> Value {
    let mut out = subnet.clone();
    out["properties"]["provisioningState"] = json!(vnet.state.as_str());
    let configs = state.ip_configurations_in_subnet(subnet["id"].as_str().unwrap_or_default());
    if !configs.is_empty() {
        out["properties"]["ipConfigurations"] = json!(
            configs
                .into_iter()
                .map(|id| json!({"id": id}))
                .collect::<Vec<_>>()
        );
    }
    out
}

/// A stable, Azure-looking MAC address for a NIC.
fn mac_address(id: &str) -> String {
    let hash = key(id)
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    let b = hash.to_be_bytes();
    format!("00-0D-3A-{:02X}-{:02X}-{:02X}", b[1], b[2], b[3])
}

/// The six rules every network security group has.
fn default_rules(nsg_id: &str) -> Value {
    let rule = |name: &str,
                priority: u32,
                direction: &str,
                access: &str,
                source: &str,
                destination: &str,
                description: &str| {
        json!({
            "name": name,
            "id": format!("{nsg_id}/defaultSecurityRules/{name}"),
            "type": "Microsoft.Network/networkSecurityGroups/defaultSecurityRules",
            "properties": {
                "provisioningState": "Succeeded",
                "description": description,
                "protocol": "*",
                "sourcePortRange": "*",
                "destinationPortRange": "*",
                "sourceAddressPrefix": source,
                "destinationAddressPrefix": destination,
                "access": access,
                "priority": priority,
                "direction": direction
            }
        })
    };
    json!([
        rule(
            "AllowVnetInBound",
            65000,
            "Inbound",
            "Allow",
            "VirtualNetwork",
            "VirtualNetwork",
            "Allow inbound traffic from all VMs in VNET"
        ),
        rule(
            "AllowAzureLoadBalancerInBound",
            65001,
            "Inbound",
            "Allow",
            "AzureLoadBalancer",
            "*",
            "Allow inbound traffic from azure load balancer"
        ),
        rule(
            "DenyAllInBound",
            65500,
            "Inbound",
            "Deny",
            "*",
            "*",
            "Deny all inbound traffic"
        ),
        rule(
            "AllowVnetOutBound",
            65000,
            "Outbound",
            "Allow",
            "VirtualNetwork",
            "VirtualNetwork",
            "Allow outbound traffic from all VMs to all VMs in VNET"
        ),
        rule(
            "AllowInternetOutBound",
            65001,
            "Outbound",
            "Allow",
            "*",
            "Internet",
            "Allow outbound traffic from all VMs to Internet"
        ),
        rule(
            "DenyAllOutBound",
            65500,
            "Outbound",
            "Deny",
            "*",
            "*",
            "Deny all outbound traffic"
        ),
    ])
}

/// The refusal of a reference to a resource that does not exist (or is elsewhere).
pub(super) fn invalid_reference(referenced: &str, by: &str) -> Answer {
    error(
        400,
        "InvalidResourceReference",
        format!(
            "Resource {referenced} referenced by resource {by} was not found. Please make sure \
             that the referenced resource exists, and that both resources are in the same region."
        ),
    )
}

pub(super) fn bad_request(message: impl Into<String>) -> Answer {
    error(400, "InvalidRequestFormat", message)
}

/// Checks an optional `{"id": …}` reference to a resource of `kind` in `location`.
pub(super) fn check_ref(
    state: &State,
    reference: Option<&Value>,
    kind: Kind,
    location: &str,
    by: &str,
) -> Result<(), Answer> {
    let Some(id) = reference.and_then(ref_id) else {
        return Ok(());
    };
    match state.get(id) {
        Some(r) if r.kind == kind && r.location.eq_ignore_ascii_case(location) => Ok(()),
        _ => Err(invalid_reference(id, by)),
    }
}

pub(super) fn subnet_in_use(state: &State, subnet: &Value) -> Option<Answer> {
    let id = subnet["id"].as_str()?;
    let user = state.ip_configurations_in_subnet(id).into_iter().next()?;
    Some(error(
        400,
        "InUseSubnetCannotBeDeleted",
        format!(
            "Subnet {} is in use by {user} and cannot be deleted. In order to delete the subnet, \
             delete all the resources within the subnet. See aka.ms/deletesubnet.",
            subnet["name"].as_str().unwrap_or_default()
        ),
    ))
}

pub(super) fn keep_guid(resource: &mut Resource, existing: Option<&Resource>) {
    let guid = existing
        .and_then(|r| r.properties.get("resourceGuid").cloned())
        .unwrap_or_else(|| json!(uuid::Uuid::new_v4().to_string()));
    resource.properties.insert("resourceGuid".into(), guid);
}

/// Why a network resource cannot be deleted now, if it cannot.
pub(super) fn delete_blocker(state: &State, r: &Resource) -> Option<Answer> {
    match r.kind {
        Kind::NetworkInterface => state.vm_of_nic(&r.id, None).map(|vm| {
            error(
                400,
                "NicInUse",
                format!(
                    "Network Interface {} is used by existing resource {}. In order to delete the \
                     network interface, it must be dissociated from the resource. To learn more, \
                     see aka.ms/deletenic.",
                    r.id, vm.id
                ),
            )
        }),
        Kind::PublicIpAddress => state.ip_configuration_of_pip(&r.id, None).map(|config| {
            error(
                400,
                "PublicIPAddressCannotBeDeleted",
                format!(
                    "Public IP address {} can not be deleted since it is still allocated to \
                     resource {config}. In order to delete the public IP, disassociate/detach the \
                     Public IP address from the resource.  To learn how to do this, see \
                     aka.ms/deletepublicip.",
                    r.id
                ),
            )
        }),
        Kind::NetworkSecurityGroup => {
            let users = state.users_of_nsg(&r.id);
            (!users.is_empty()).then(|| {
                error(
                    400,
                    "InUseNetworkSecurityGroupCannotBeDeleted",
                    format!(
                        "Network security group {} cannot be deleted because it is in use by the \
                         following resources: {}. In order to delete the Network security group, \
                         remove the association with the resource(s). To learn how to do this, \
                         see aka.ms/deletensg.",
                        r.id,
                        users.join(", ")
                    ),
                )
            })
        }
        Kind::VirtualNetwork => subnets(r).find_map(|s| subnet_in_use(state, s)),
        _ => None,
    }
}
