//! References between resources, always derived from the referring resource: the subnet an
//! id names, the VM that lists a NIC or a disk, the NIC configuration that holds a public IP,
//! the users of a security group, a VM's addresses.

use std::net::Ipv4Addr;

use serde_json::Value;

use super::state::{Kind, Resource, State, key, split_child};

impl State {
    /// The virtual network and the subnet (its JSON) that `id` names.
    pub fn subnet(&self, id: &str) -> Option<(&Resource, &Value)> {
        let (vnet, name) = split_child(id, "subnets")?;
        let vnet = self.get(&vnet)?;
        let subnet = subnets(vnet).find(|s| {
            s["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(&name))
        })?;
        Some((vnet, subnet))
    }

    /// The VM that lists the NIC `nic_id`, other than `except`.
    pub fn vm_of_nic(&self, nic_id: &str, except: Option<&str>) -> Option<&Resource> {
        let nic = key(nic_id);
        self.of_kind(Kind::VirtualMachine)
            .filter(|vm| except.is_none_or(|e| key(e) != vm.key()))
            .find(|vm| nic_ids(vm).iter().any(|id| key(id) == nic))
    }

    /// The NIC ip configuration that uses the public IP `pip_id`, other than on NIC `except`.
    pub fn ip_configuration_of_pip(&self, pip_id: &str, except: Option<&str>) -> Option<String> {
        let pip = key(pip_id);
        self.of_kind(Kind::NetworkInterface)
            .filter(|nic| except.is_none_or(|e| key(e) != nic.key()))
            .flat_map(ip_configurations)
            .find(|c| ref_id(&c["properties"]["publicIPAddress"]).is_some_and(|id| key(id) == pip))
            .and_then(|c| c["id"].as_str().map(str::to_owned))
    }

    /// The ip configurations (ids) placed in the subnet `subnet_id`.
    pub fn ip_configurations_in_subnet(&self, subnet_id: &str) -> Vec<String> {
        let subnet = key(subnet_id);
        self.of_kind(Kind::NetworkInterface)
            .flat_map(ip_configurations)
            .filter(|c| ref_id(&c["properties"]["subnet"]).is_some_and(|id| key(id) == subnet))
            .filter_map(|c| c["id"].as_str().map(str::to_owned))
            .collect()
    }

    /// The VM whose OS disk is the managed disk `disk_id`.
    pub fn vm_of_disk(&self, disk_id: &str) -> Option<&Resource> {
        let disk = key(disk_id);
        self.of_kind(Kind::VirtualMachine).find(|vm| {
            vm.prop("storageProfile")["osDisk"]["managedDisk"]["id"]
                .as_str()
                .is_some_and(|id| key(id) == disk)
        })
    }

    /// The NICs and subnets that use the network security group `nsg_id`.
    pub fn users_of_nsg(&self, nsg_id: &str) -> Vec<String> {
        let nsg = key(nsg_id);
        let refers =
            |reference: Option<&Value>| reference.and_then(ref_id).is_some_and(|id| key(id) == nsg);
        let mut users = Vec::new();
        for r in self.resources.values() {
            match r.kind {
                Kind::NetworkInterface if refers(r.properties.get("networkSecurityGroup")) => {
                    users.push(r.id.clone());
                }
                Kind::VirtualNetwork => {
                    for subnet in subnets(r) {
                        if refers(subnet["properties"].get("networkSecurityGroup")) {
                            users.extend(subnet["id"].as_str().map(str::to_owned));
                        }
                    }
                }
                _ => {}
            }
        }
        users
    }

    /// The VM's primary NIC's public and private addresses.
    pub fn vm_addresses(&self, vm: &Resource) -> (Option<Ipv4Addr>, Option<Ipv4Addr>) {
        let Some(nic) = nic_ids(vm).first().and_then(|id| self.get(id)) else {
            return (None, None);
        };
        let Some(config) = ip_configurations(nic).next() else {
            return (None, None);
        };
        let private = config["properties"]["privateIPAddress"]
            .as_str()
            .and_then(|ip| ip.parse().ok());
        let public = ref_id(&config["properties"]["publicIPAddress"])
            .and_then(|id| self.get(id))
            .and_then(|pip| pip.properties.get("ipAddress")?.as_str()?.parse().ok());
        (public, private)
    }
}

/// The NIC ids a VM lists, primary first.
pub(super) fn nic_ids(vm: &Resource) -> Vec<String> {
    let mut nics: Vec<&Value> = vm.prop("networkProfile")["networkInterfaces"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    nics.sort_by_key(|n| n["properties"]["primary"].as_bool() != Some(true));
    nics.iter()
        .filter_map(|n| n["id"].as_str().map(str::to_owned))
        .collect()
}

/// A virtual network's subnets.
pub(super) fn subnets(vnet: &Resource) -> impl Iterator<Item = &Value> {
    vnet.properties
        .get("subnets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// A NIC's ip configurations, primary first as stored.
pub(super) fn ip_configurations(nic: &Resource) -> impl Iterator<Item = &Value> {
    nic.properties
        .get("ipConfigurations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// The `id` of a `{"id": …}` reference.
pub(super) fn ref_id(reference: &Value) -> Option<&str> {
    reference.get("id")?.as_str()
}
