//! Public IP addresses and network interfaces (the "Public IP Addresses" and "Network
//! Interfaces" references): a public IP gets its address when its create completes; a NIC's
//! ip configurations reference a subnet, a public IP and the NIC a security group, all
//! checked, and get a private address from the subnet, the lowest free one after the five
//! Azure reserves.

use std::net::Ipv4Addr;

use serde_json::{Value, json};

use super::arm::{Answer, Req, error};
use super::network::{bad_request, check_ref, invalid_reference, keep_guid};
use super::references::{ip_configurations, ref_id};
use super::resources::{begin_put, finish_put};
use super::state::{Kind, Resource, State, key, new_etag};

pub(super) fn put_public_ip(state: &mut State, req: &Req, group: &str, name: &str) -> Answer {
    let put = match begin_put(state, req, group, Kind::PublicIpAddress, name) {
        Ok(put) => put,
        Err(refused) => return refused,
    };
    let mut resource = put.resource;
    resource
        .extra
        .entry("sku")
        .or_insert_with(|| json!({"name": "Standard", "tier": "Regional"}));
    let standard = resource.extra["sku"]["name"].as_str() != Some("Basic");
    let mut properties = put.properties;
    properties.remove("ipConfiguration");
    properties.remove("ipAddress");
    properties
        .entry("publicIPAddressVersion")
        .or_insert(json!("IPv4"));
    properties
        .entry("publicIPAllocationMethod")
        .or_insert(json!(if standard { "Static" } else { "Dynamic" }));
    properties.entry("idleTimeoutInMinutes").or_insert(json!(4));
    properties.entry("ipTags").or_insert(json!([]));
    if let Some(address) = put
        .existing
        .as_ref()
        .and_then(|r| r.properties.get("ipAddress"))
    {
        properties.insert("ipAddress".into(), address.clone());
    }
    resource.properties = properties;
    keep_guid(&mut resource, put.existing.as_ref());
    finish_put(state, req, resource, put.existing.is_none())
}

pub(super) fn put_nic(state: &mut State, req: &Req, group: &str, name: &str) -> Answer {
    let put = match begin_put(state, req, group, Kind::NetworkInterface, name) {
        Ok(put) => put,
        Err(refused) => return refused,
    };
    let mut resource = put.resource;
    let (id, location) = (resource.id.clone(), resource.location.clone());
    if let Err(refused) = check_ref(
        state,
        put.properties.get("networkSecurityGroup"),
        Kind::NetworkSecurityGroup,
        &location,
        &id,
    ) {
        return refused;
    }
    let bodies = put
        .properties
        .get("ipConfigurations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if bodies.is_empty() {
        return bad_request(format!(
            "Network interface {id} must have at least one IP configuration."
        ));
    }
    let mut configs: Vec<Value> = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        match ip_configuration(state, &resource, put.existing.as_ref(), i, body, &configs) {
            Ok(config) => configs.push(config),
            Err(refused) => return refused,
        }
    }
    let mut properties = put.properties;
    for derived in ["virtualMachine", "macAddress", "primary"] {
        properties.remove(derived);
    }
    properties.insert("ipConfigurations".into(), json!(configs));
    properties
        .entry("enableAcceleratedNetworking")
        .or_insert(json!(false));
    properties
        .entry("enableIPForwarding")
        .or_insert(json!(false));
    properties.entry("nicType").or_insert(json!("Standard"));
    resource.properties = properties;
    keep_guid(&mut resource, put.existing.as_ref());
    finish_put(state, req, resource, put.existing.is_none())
}

/// One ip configuration of a NIC: its subnet and public IP checked, its private address
/// kept, given (static) or allocated (dynamic).
fn ip_configuration(
    state: &State,
    nic: &Resource,
    existing: Option<&Resource>,
    index: usize,
    body: &Value,
    earlier: &[Value],
) -> Result<Value, Answer> {
    let Some(name) = body["name"].as_str() else {
        return Err(bad_request("Every IP configuration needs a name."));
    };
    let id = format!("{}/ipConfigurations/{name}", nic.id);
    let mut properties = body["properties"].as_object().cloned().unwrap_or_default();
    properties.remove("provisioningState");
    let Some(subnet_id) = properties.get("subnet").and_then(ref_id).map(str::to_owned) else {
        return Err(bad_request(format!("IP configuration {id} has no subnet.")));
    };
    let prefix = match state.subnet(&subnet_id) {
        Some((vnet, subnet)) if vnet.location.eq_ignore_ascii_case(&nic.location) => {
            subnet["properties"]["addressPrefix"]
                .as_str()
                .unwrap_or("10.42.0.0/24")
                .to_owned()
        }
        _ => return Err(invalid_reference(&subnet_id, &id)),
    };
    check_ref(
        state,
        properties.get("publicIPAddress"),
        Kind::PublicIpAddress,
        &nic.location,
        &id,
    )?;
    if let Some(pip) = properties.get("publicIPAddress").and_then(ref_id)
        && let Some(user) = state.ip_configuration_of_pip(pip, Some(&nic.id))
    {
        return Err(error(
            400,
            "PublicIPAddressInUse",
            format!(
                "Resource {id} is referencing public IP address {pip} that is already allocated to resource {user}."
            ),
        ));
    }
    let method = properties
        .get("privateIPAllocationMethod")
        .and_then(Value::as_str)
        .unwrap_or("Dynamic")
        .to_owned();
    let kept = existing
        .into_iter()
        .flat_map(ip_configurations)
        .find(|c| {
            c["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
        .and_then(|c| {
            c["properties"]["privateIPAddress"]
                .as_str()
                .map(str::to_owned)
        });
    let given = properties
        .get("privateIPAddress")
        .and_then(Value::as_str)
        .filter(|_| method == "Static");
    let address = if let Some(address) = given.map(str::to_owned).or(kept) {
        address
    } else {
        let taken: Vec<String> = earlier
            .iter()
            .filter_map(|c| {
                c["properties"]["privateIPAddress"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        allocate(state, &subnet_id, &prefix, &nic.id, &taken).ok_or_else(|| {
            error(
                400,
                "SubnetIsFull",
                format!(
                    "Subnet {subnet_id} with address prefix {prefix} does not have enough \
                     capacity for 1 IP addresses."
                ),
            )
        })?
    };
    properties.insert("privateIPAddress".into(), json!(address));
    properties.insert("privateIPAllocationMethod".into(), json!(method));
    properties
        .entry("privateIPAddressVersion")
        .or_insert(json!("IPv4"));
    properties.entry("primary").or_insert(json!(index == 0));
    Ok(json!({
        "name": name,
        "id": id,
        "etag": new_etag(),
        "type": "Microsoft.Network/networkInterfaces/ipConfigurations",
        "properties": properties,
    }))
}

/// The lowest free address of the subnet, after the five Azure reserves (network, gateway,
/// two DNS, broadcast).
fn allocate(
    state: &State,
    subnet_id: &str,
    prefix: &str,
    nic_id: &str,
    taken: &[String],
) -> Option<String> {
    let (base, bits) = prefix.split_once('/')?;
    let base = u32::from(base.parse::<Ipv4Addr>().ok()?);
    let size = 1u32.checked_shl(32 - bits.parse::<u32>().ok()?.min(32))?;
    let subnet = key(subnet_id);
    let used: Vec<String> = state
        .of_kind(Kind::NetworkInterface)
        .filter(|n| n.key() != key(nic_id))
        .flat_map(ip_configurations)
        .filter(|c| ref_id(&c["properties"]["subnet"]).is_some_and(|id| key(id) == subnet))
        .filter_map(|c| {
            c["properties"]["privateIPAddress"]
                .as_str()
                .map(str::to_owned)
        })
        .chain(taken.iter().cloned())
        .collect();
    (4..size.saturating_sub(1))
        .map(|offset| Ipv4Addr::from(base + offset).to_string())
        .find(|ip| !used.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_start_after_the_reserved_ones() {
        let state = State::new("https://x".into());
        let ip = allocate(&state, "/s", "10.42.0.0/24", "/n", &[]);
        assert_eq!(ip.as_deref(), Some("10.42.0.4"));
        let next = allocate(&state, "/s", "10.42.0.0/24", "/n", &["10.42.0.4".into()]);
        assert_eq!(next.as_deref(), Some("10.42.0.5"));
    }
}
