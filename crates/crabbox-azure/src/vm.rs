//! The resources of one lease (spec/providers.md §2.3): a static Standard public IP
//! `<name>-pip`, a NIC `<name>-nic` on the shared subnet and security group, and the VM
//! `<name>` with its managed OS disk `<name>-osdisk`, all in the lease group, tagged with the
//! lease's labels. Deleting goes VM (its NIC and disk go with it) → public IP, each followed
//! to its end and none read again; what Azure still holds for a moment (a NIC reserved for the
//! deleted VM, a disk not yet detached) is asked again until it lets go.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crabbox_core::config::Secret;
use crabbox_core::machine::Market;
use crabbox_providers::cloud::windows;
use serde_json::{Value, json};

use crate::arm::{Arm, CallError};
use crate::network::{self, NETWORK_API};

pub const COMPUTE_API: &str = "2024-07-01";

/// How long a delete is asked again while Azure still holds the resource.
const DELETE_PATIENCE: Duration = Duration::from_mins(3);

/// The codes of a delete Azure refuses only for now: the resource is still attached to, or
/// reserved for, something being deleted.
const STILL_HELD: &[&str] = &[
    "NicReservedForAnotherVm",
    "NicInUse",
    "PublicIPAddressCannotBeDeleted",
    "InUsePublicIpAddressCannotBeDeleted",
    "DiskInUse",
    "OperationNotAllowed",
    "AnotherOperationInProgress",
    "RetryableError",
];

/// The names of a lease's resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub vm: String,
    pub nic: String,
    pub pip: String,
    pub disk: String,
}

impl Names {
    pub fn of(vm: &str) -> Self {
        Self {
            vm: vm.to_owned(),
            nic: format!("{vm}-nic"),
            pip: format!("{vm}-pip"),
            disk: format!("{vm}-osdisk"),
        }
    }
}

/// Paths of a lease's resources in the lease group.
#[derive(Debug, Clone)]
pub struct Paths {
    pub vm: String,
    pub nic: String,
    pub pip: String,
    pub disk: String,
}

impl Paths {
    pub fn new(arm: &Arm, group: &str, names: &Names) -> Self {
        let group = arm.group_path(group);
        let compute = format!("{group}/providers/Microsoft.Compute");
        let network = format!("{group}/providers/Microsoft.Network");
        Self {
            vm: format!("{compute}/virtualMachines/{}", names.vm),
            nic: format!("{network}/networkInterfaces/{}", names.nic),
            pip: format!("{network}/publicIPAddresses/{}", names.pip),
            disk: format!("{compute}/disks/{}", names.disk),
        }
    }
}

/// The NIC and public IP of a lease, with the addresses Azure gave them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addresses {
    pub location: String,
    pub public: String,
    pub private: String,
}

/// Makes (or, asked again, keeps) the lease's NIC in `location`, and its public IP unless
/// the lease is reached at its private address (`public` false).
pub async fn create_network(
    arm: &Arm,
    paths: &Paths,
    location: &str,
    subnet: &network::Prepared,
    public: bool,
    tags: &BTreeMap<String, String>,
) -> Result<Addresses, CallError> {
    let pip = if public {
        arm.put(
            &paths.pip,
            NETWORK_API,
            &json!({
                "location": location,
                "tags": tags,
                "sku": {"name": "Standard"},
                "properties": {
                    "publicIPAllocationMethod": "Static",
                    "publicIPAddressVersion": "IPv4"
                }
            }),
        )
        .await?
    } else {
        Value::Null
    };
    let mut ip_configuration = json!({
        "privateIPAllocationMethod": "Dynamic",
        "subnet": {"id": subnet.subnet_id}
    });
    if public {
        ip_configuration["publicIPAddress"] = json!({"id": pip_id(&pip, &paths.pip)});
    }
    let nic = arm
        .put(
            &paths.nic,
            NETWORK_API,
            &json!({
                "location": location,
                "tags": tags,
                "properties": {
                    "networkSecurityGroup": {"id": subnet.nsg_id},
                    "ipConfigurations": [{
                        "name": "ipconfig1",
                        "properties": ip_configuration
                    }]
                }
            }),
        )
        .await?;
    Ok(Addresses {
        location: location.to_owned(),
        public: public_address(&pip),
        private: private_address(&nic),
    })
}

/// What a VM is made of, beyond its network.
#[derive(Debug, Clone)]
pub struct VmSpec<'a> {
    pub location: &'a str,
    pub size: &'a str,
    pub market: Market,
    /// `Publisher:Offer:SKU:Version`.
    pub image: &'a str,
    pub os_disk_sku: &'a str,
    pub ephemeral_os_disk: bool,
    pub os_profile: Value,
    pub tags: &'a BTreeMap<String, String>,
}

/// `PUT` of the VM, followed until it runs; the VM as Azure then describes it.
pub async fn create_vm(
    arm: &Arm,
    paths: &Paths,
    names: &Names,
    spec: &VmSpec<'_>,
) -> Result<Value, CallError> {
    let image = image_reference(spec.image);
    let mut os_disk = json!({
        "name": names.disk,
        "createOption": "FromImage",
        "caching": "ReadWrite",
        "deleteOption": "Delete",
        "managedDisk": {"storageAccountType": spec.os_disk_sku}
    });
    if spec.ephemeral_os_disk {
        os_disk["caching"] = json!("ReadOnly");
        os_disk["diffDiskSettings"] = json!({"option": "Local", "placement": "ResourceDisk"});
        os_disk["managedDisk"] = json!({"storageAccountType": "StandardSSD_LRS"});
    }
    let mut properties = json!({
        "hardwareProfile": {"vmSize": spec.size},
        "storageProfile": {"imageReference": image, "osDisk": os_disk},
        "osProfile": spec.os_profile,
        "networkProfile": {"networkInterfaces": [{
            "id": paths.nic,
            "properties": {"primary": true, "deleteOption": "Delete"}
        }]}
    });
    if spec.market == Market::Spot {
        properties["priority"] = json!("Spot");
        properties["evictionPolicy"] = json!("Delete");
        properties["billingProfile"] = json!({"maxPrice": -1});
    }
    let body = json!({
        "location": spec.location,
        "tags": spec.tags,
        "properties": properties
    });
    arm.put(&paths.vm, COMPUTE_API, &body).await
}

/// The OS profile of a Linux VM: the SSH user with the lease's key and no password, the
/// cloud-init as custom data.
pub fn linux_os_profile(name: &str, user: &str, public_key: &str, cloud_init: &str) -> Value {
    use base64::Engine as _;
    json!({
        "computerName": name,
        "adminUsername": user,
        "customData": base64::engine::general_purpose::STANDARD.encode(cloud_init),
        "linuxConfiguration": {
            "disablePasswordAuthentication": true,
            "ssh": {"publicKeys": [{
                "path": format!("/home/{user}/.ssh/authorized_keys"),
                "keyData": public_key.trim()
            }]}
        }
    })
}

/// The OS profile of a Windows VM: Azure's admin with a password nobody uses, the VM agent
/// on (it runs the bootstrap extension), the bootstrap script as custom data.
pub fn windows_os_profile(computer_name: &str, password: &Secret, script: &str) -> Value {
    use base64::Engine as _;
    json!({
        "computerName": computer_name,
        "adminUsername": windows::AZURE_ADMIN_USER,
        "adminPassword": password.expose(),
        "customData": base64::engine::general_purpose::STANDARD.encode(script),
        "allowExtensionOperations": true,
        "windowsConfiguration": {
            "enableAutomaticUpdates": false,
            "provisionVMAgent": true
        }
    })
}

/// `PUT` of the bootstrap extension (`CustomScriptExtension`), followed until the script ran.
pub async fn run_bootstrap_extension(
    arm: &Arm,
    paths: &Paths,
    location: &str,
) -> Result<Value, CallError> {
    let path = format!("{}/extensions/{}", paths.vm, windows::AZURE_EXTENSION_NAME);
    arm.put(
        &path,
        COMPUTE_API,
        &windows::custom_script_extension(location),
    )
    .await
}

/// Deletes the lease's resources, VM first. A VM Crabbox made takes its NIC and OS disk with
/// it (their `deleteOption`), so then only the public IP is left to delete; without a VM (a
/// create that died before it, or a VM deleted by hand) each of NIC, public IP and disk is
/// deleted, none read again.
pub async fn delete_all(arm: &Arm, paths: &Paths) -> Result<(), CallError> {
    let had_vm = delete(arm, &paths.vm, COMPUTE_API).await?;
    if !had_vm {
        delete(arm, &paths.nic, NETWORK_API).await?;
    }
    delete(arm, &paths.pip, NETWORK_API).await?;
    if !had_vm {
        delete(arm, &paths.disk, COMPUTE_API).await?;
    }
    Ok(())
}

/// Deletes the VM and its disk (a failed create's: a VM whose create failed keeps its disk),
/// leaving the public IP for the next try.
pub async fn delete_vm(arm: &Arm, paths: &Paths) -> Result<(), CallError> {
    delete(arm, &paths.vm, COMPUTE_API).await?;
    delete(arm, &paths.disk, COMPUTE_API).await?;
    Ok(())
}

/// Deletes the NIC and public IP (a location the create moved away from).
pub async fn delete_network(arm: &Arm, paths: &Paths) -> Result<(), CallError> {
    delete(arm, &paths.nic, NETWORK_API).await?;
    delete(arm, &paths.pip, NETWORK_API).await?;
    Ok(())
}

/// One delete, asked again while Azure still holds the resource; whether there was one.
async fn delete(arm: &Arm, path: &str, api_version: &str) -> Result<bool, CallError> {
    let deadline = Instant::now() + DELETE_PATIENCE;
    let mut wait = Duration::from_millis(500);
    loop {
        match arm.delete(path, api_version).await {
            Err(e) if STILL_HELD.contains(&e.code()) && Instant::now() < deadline => {
                tracing::debug!(error = ?e, "Azure still holds a resource; deleting it again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(10));
            }
            outcome => return outcome,
        }
    }
}

/// `Publisher:Offer:SKU:Version` as an image reference.
fn image_reference(image: &str) -> Value {
    let parts: Vec<&str> = image.split(':').collect();
    match parts.as_slice() {
        [publisher, offer, sku, version] => json!({
            "publisher": publisher, "offer": offer, "sku": sku, "version": version
        }),
        // A resource id of a managed image or gallery image version.
        _ => json!({"id": image}),
    }
}

fn pip_id(pip: &Value, path: &str) -> String {
    pip["id"].as_str().unwrap_or(path).to_owned()
}

pub fn public_address(pip: &Value) -> String {
    pip["properties"]["ipAddress"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

pub fn private_address(nic: &Value) -> String {
    nic["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Whether `image` is a usable image: four `:`-separated parts or a resource id.
pub fn valid_image(image: &str) -> bool {
    let parts: Vec<&str> = image.split(':').collect();
    (parts.len() == 4 && parts.iter().all(|p| !p.trim().is_empty()))
        || (image.starts_with("/subscriptions/") && !image.contains(':'))
}
