//! The network every Azure lease shares (spec/providers.md §2.3): the resource group, the
//! virtual network with its subnet, and the network security group whose Crabbox rules let SSH
//! in on each port from each allowed source. Each is adopted when it exists and carries
//! `managed_by=crabbox` in the right location, created when it does not, and refused otherwise
//! (Crabbox never takes over someone else's network). The group's rules that are not
//! Crabbox's are kept; Crabbox's (`crabbox-ssh-<port>-<i>`) are brought to exactly the wanted
//! ones at the first free priorities from 100 up, and the group is written only when they
//! differ.

use std::collections::BTreeSet;

use crabbox_providers::ProviderError;
use serde_json::{Value, json};

use crate::arm::Arm;

pub const GROUPS_API: &str = "2021-04-01";
pub const NETWORK_API: &str = "2024-05-01";

/// The prefix of Crabbox's security rules.
const RULE_PREFIX: &str = "crabbox-ssh-";
const VNET_PREFIX: &str = "10.42.0.0/16";
const SUBNET_PREFIX: &str = "10.42.0.0/24";

/// Names and location of the shared network.
#[derive(Debug, Clone)]
pub struct Network {
    pub group: String,
    pub location: String,
    pub vnet: String,
    pub subnet: String,
    pub nsg: String,
}

/// Where SSH may come from: the configured sources (exactly those), or this machine's
/// detected address (added to what is there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSources {
    pub cidrs: Vec<String>,
    pub detected: bool,
}

/// What a lease's NIC refers to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Prepared {
    pub subnet_id: String,
    pub nsg_id: String,
}

/// Brings the shared network to what leases need.
pub async fn ensure(
    arm: &Arm,
    net: &Network,
    sources: &SshSources,
    ports: &[u16],
) -> Result<Prepared, ProviderError> {
    let group = arm.group_path(&net.group);
    if arm.get(&group, GROUPS_API).await?.is_none() {
        arm.put(
            &group,
            GROUPS_API,
            &json!({"location": net.location, "tags": tags()}),
        )
        .await?;
    }
    let vnet_path = format!(
        "{group}/providers/Microsoft.Network/virtualNetworks/{}",
        net.vnet
    );
    let vnet = if let Some(vnet) = arm.get(&vnet_path, NETWORK_API).await? {
        adoptable(
            "virtual network",
            &net.vnet,
            "CRABBOX_AZURE_VNET",
            &vnet,
            net,
        )?
    } else {
        let body = json!({
            "location": net.location,
            "tags": tags(),
            "properties": {
                "addressSpace": {"addressPrefixes": [VNET_PREFIX]},
                "subnets": [{"name": net.subnet, "properties": {"addressPrefix": SUBNET_PREFIX}}]
            }
        });
        arm.put(&vnet_path, NETWORK_API, &body).await?
    };
    let has_subnet = vnet["properties"]["subnets"]
        .as_array()
        .is_some_and(|subnets| subnets.iter().any(|s| s["name"] == net.subnet.as_str()));
    if !has_subnet {
        return Err(ProviderError::InvalidSpec(format!(
            "virtual network {} has no subnet {}; set CRABBOX_AZURE_SUBNET to one of its subnets",
            net.vnet, net.subnet
        )));
    }
    let nsg_path = format!(
        "{group}/providers/Microsoft.Network/networkSecurityGroups/{}",
        net.nsg
    );
    let existing = match arm.get(&nsg_path, NETWORK_API).await? {
        Some(nsg) => Some(adoptable(
            "network security group",
            &net.nsg,
            "CRABBOX_AZURE_NSG",
            &nsg,
            net,
        )?),
        None => None,
    };
    let current: Vec<Value> = existing
        .as_ref()
        .and_then(|nsg| nsg["properties"]["securityRules"].as_array().cloned())
        .unwrap_or_default();
    if let Some(rules) = wanted_rules(&current, sources, ports)? {
        let body = json!({
            "location": net.location,
            "tags": tags(),
            "properties": {"securityRules": rules}
        });
        arm.put(&nsg_path, NETWORK_API, &body).await?;
    }
    Ok(Prepared {
        subnet_id: format!("{vnet_path}/subnets/{}", net.subnet),
        nsg_id: nsg_path,
    })
}

fn tags() -> Value {
    json!({"crabbox": "true", "managed_by": "crabbox"})
}

/// `resource` when Crabbox may use it: tagged `managed_by=crabbox`, in the lease's location.
fn adoptable(
    what: &str,
    name: &str,
    variable: &str,
    resource: &Value,
    net: &Network,
) -> Result<Value, ProviderError> {
    if resource["tags"]["managed_by"] != "crabbox" {
        return Err(ProviderError::InvalidSpec(format!(
            "refusing to use {what} {name} in resource group {}: it is not tagged \
             managed_by=crabbox (someone else's); set {variable} to another name and Crabbox \
             creates its own",
            net.group
        )));
    }
    let location = resource["location"].as_str().unwrap_or_default();
    if !location.eq_ignore_ascii_case(&net.location) {
        return Err(ProviderError::InvalidSpec(format!(
            "{what} {name} is in {location}, not in {}; set {variable} to another name, or \
             CRABBOX_AZURE_LOCATION to {location}",
            net.location
        )));
    }
    Ok(resource.clone())
}

/// The group's rules with Crabbox's brought to one allow rule per port and source, or `None`
/// when they already are exactly that.
fn wanted_rules(
    current: &[Value],
    sources: &SshSources,
    ports: &[u16],
) -> Result<Option<Vec<Value>>, ProviderError> {
    let is_ours = |rule: &&Value| {
        rule["name"]
            .as_str()
            .is_some_and(|name| name.starts_with(RULE_PREFIX))
    };
    let mut cidrs: BTreeSet<String> = sources.cidrs.iter().cloned().collect();
    if sources.detected {
        // A detected address joins those other machines' leases use, never replaces them.
        cidrs.extend(
            current
                .iter()
                .filter(is_ours)
                .filter_map(|r| r["properties"]["sourceAddressPrefix"].as_str())
                .map(str::to_owned),
        );
    }
    let wanted: BTreeSet<(u16, String)> = ports
        .iter()
        .flat_map(|port| cidrs.iter().map(move |cidr| (*port, cidr.clone())))
        .collect();
    let have: BTreeSet<(u16, String)> = current
        .iter()
        .filter(is_ours)
        .filter_map(|rule| {
            let properties = &rule["properties"];
            let port = properties["destinationPortRange"].as_str()?.parse().ok()?;
            let source = properties["sourceAddressPrefix"].as_str()?.to_owned();
            Some((port, source))
        })
        .collect();
    if have == wanted && current.iter().filter(is_ours).count() == wanted.len() {
        return Ok(None);
    }
    let mut rules: Vec<Value> = current.iter().filter(|r| !is_ours(r)).cloned().collect();
    let taken: BTreeSet<u64> = rules
        .iter()
        .filter(|r| r["properties"]["direction"] == "Inbound")
        .filter_map(|r| r["properties"]["priority"].as_u64())
        .collect();
    let mut free = (100u64..=4096).filter(|p| !taken.contains(p));
    for (port, cidr) in &wanted {
        let priority = free.next().ok_or_else(|| {
            ProviderError::InvalidSpec(
                "the network security group has no free inbound priority left for Crabbox's \
                 SSH rules; remove unused rules or set CRABBOX_AZURE_NSG to another name"
                    .into(),
            )
        })?;
        // The i-th source of this port (`wanted` is ordered by port, then source).
        let i = wanted.iter().filter(|(p, c)| p == port && c < cidr).count();
        rules.push(json!({
            "name": format!("{RULE_PREFIX}{port}-{i}"),
            "properties": {
                "protocol": "Tcp",
                "sourcePortRange": "*",
                "destinationPortRange": port.to_string(),
                "sourceAddressPrefix": cidr,
                "destinationAddressPrefix": "*",
                "access": "Allow",
                "priority": priority,
                "direction": "Inbound",
                "description": "Crabbox SSH"
            }
        }));
    }
    Ok(Some(rules))
}

/// Where this machine's public address is looked up when no CIDR is configured.
const CHECKIP_URL: &str = "https://checkip.amazonaws.com";

/// Where SSH is allowed from: the configured CIDRs, else this machine's public IPv4 address as
/// a /32, looked up with a short timeout. A private network has no public address
/// to detect: it needs them configured.
pub async fn ssh_sources(
    configured: &[String],
    private: bool,
) -> Result<SshSources, ProviderError> {
    if !configured.is_empty() {
        return Ok(SshSources {
            cidrs: configured.to_vec(),
            detected: false,
        });
    }
    if private {
        return Err(ProviderError::InvalidSpec(
            "azure.network private needs the sources SSH comes from: set \
             CRABBOX_AZURE_SSH_CIDRS (or azure.sshCIDRs), e.g. your VPN's range"
                .into(),
        ));
    }
    let looked_up = async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .map_err(|e| e.to_string())?;
        let text = client
            .get(CHECKIP_URL)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| e.without_url().to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        text.trim()
            .parse::<std::net::Ipv4Addr>()
            .map(|ip| format!("{ip}/32"))
            .map_err(|_| format!("it answered {:?}", text.trim()))
    };
    match looked_up.await {
        Ok(cidr) => Ok(SshSources {
            cidrs: vec![cidr],
            detected: true,
        }),
        Err(why) => Err(ProviderError::InvalidSpec(format!(
            "could not find this machine's public address to allow SSH from ({CHECKIP_URL}: \
             {why}); set CRABBOX_AZURE_SSH_CIDRS (or azure.sshCIDRs) to the CIDRs runners may \
             be reached from"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_and_priorities(rules: &[Value]) -> Vec<(String, u64)> {
        rules
            .iter()
            .map(|r| {
                (
                    r["name"].as_str().unwrap().to_owned(),
                    r["properties"]["priority"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    fn configured(cidrs: &[&str]) -> SshSources {
        SshSources {
            cidrs: cidrs.iter().map(|c| (*c).to_owned()).collect(),
            detected: false,
        }
    }

    #[test]
    fn crabbox_rules_take_free_priorities_and_leave_others_alone() {
        let foreign = json!({"name": "allow-vpn", "properties": {
            "priority": 100, "direction": "Inbound", "access": "Allow",
            "destinationPortRange": "443", "sourceAddressPrefix": "10.0.0.0/8"}});
        let sources = configured(&["198.51.100.7/32"]);
        let rules = wanted_rules(std::slice::from_ref(&foreign), &sources, &[2222, 22])
            .unwrap()
            .unwrap();
        assert_eq!(
            names_and_priorities(&rules),
            [
                ("allow-vpn".to_owned(), 100),
                ("crabbox-ssh-22-0".to_owned(), 101),
                ("crabbox-ssh-2222-0".to_owned(), 102),
            ]
        );
        assert_eq!(
            wanted_rules(&rules, &sources, &[2222, 22]).unwrap(),
            None,
            "already right"
        );
        // Configured sources are exactly those.
        let moved = configured(&["203.0.113.0/24"]);
        let replaced = wanted_rules(&rules, &moved, &[2222, 22]).unwrap().unwrap();
        assert_eq!(replaced.len(), 3);
        assert!(
            replaced
                .iter()
                .all(|r| r["properties"]["sourceAddressPrefix"] != "198.51.100.7/32")
        );
        // A detected address joins the others: another machine's leases stay reachable.
        let detected = SshSources {
            cidrs: vec!["203.0.113.9/32".to_owned()],
            detected: true,
        };
        let joined = wanted_rules(&rules, &detected, &[22]).unwrap().unwrap();
        let sources: Vec<&str> = joined
            .iter()
            .filter_map(|r| r["properties"]["sourceAddressPrefix"].as_str())
            .collect();
        assert!(sources.contains(&"198.51.100.7/32") && sources.contains(&"203.0.113.9/32"));
    }

    #[test]
    fn no_free_priority_is_an_error_not_a_silent_no_op() {
        let full: Vec<Value> = (100..=4096)
            .map(|p| json!({"name": format!("r{p}"), "properties": {"priority": p, "direction": "Inbound"}}))
            .collect();
        let err = wanted_rules(&full, &configured(&["198.51.100.7/32"]), &[22]).unwrap_err();
        assert!(
            err.to_string().contains("no free inbound priority"),
            "{err}"
        );
    }
}
