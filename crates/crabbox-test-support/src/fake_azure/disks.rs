//! Managed disks (the "Disks" reference): the OS disk a VM create makes, unless ephemeral, as
//! a `Microsoft.Compute/disks` resource of its own, which stays when the VM goes (unless its
//! `deleteOption` is `Delete`) and cannot be deleted while a VM has it.

use serde_json::{Map, Value, json};

use super::arm::{Answer, error, error_at};
use super::skus;
use super::state::{Kind, Resource, State, resource_id, timestamp};

/// The VM's `storageProfile.osDisk` with Azure's defaults; a managed one gets the id of the
/// disk resource it will be.
pub(super) fn os_disk(
    state: &State,
    vm: &Resource,
    sku: &skus::Sku,
    storage: &Map<String, Value>,
    windows: bool,
) -> Result<Value, Answer> {
    let mut disk = storage
        .get("osDisk")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let ephemeral = disk
        .get("diffDiskSettings")
        .and_then(|d| d["option"].as_str())
        .is_some_and(|o| o.eq_ignore_ascii_case("Local"));
    let name = disk.get("name").and_then(Value::as_str).map_or_else(
        || format!("{}_OsDisk_1_{}", vm.name, uuid::Uuid::new_v4().simple()),
        str::to_owned,
    );
    disk.insert("name".into(), json!(name));
    disk.insert(
        "osType".into(),
        json!(if windows { "Windows" } else { "Linux" }),
    );
    disk.entry("createOption").or_insert(json!("FromImage"));
    disk.entry("caching")
        .or_insert(json!(if ephemeral { "ReadOnly" } else { "ReadWrite" }));
    disk.entry("diskSizeGB")
        .or_insert(json!(if windows { 127 } else { 30 }));
    disk.entry("deleteOption")
        .or_insert(json!(if ephemeral { "Delete" } else { "Detach" }));
    let mut managed = disk
        .get("managedDisk")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    managed
        .entry("storageAccountType")
        .or_insert(json!(if ephemeral {
            "StandardSSD_LRS"
        } else {
            "Premium_LRS"
        }));
    if ephemeral {
        if !sku.ephemeral_os_disk() {
            return Err(error_at(
                400,
                "InvalidParameter",
                format!(
                    "The virtual machine size {} does not support Ephemeral OS disk. Use a size \
                     with a local (temp) disk, see https://aka.ms/ephemeralosdisks.",
                    sku.name
                ),
                "osDisk.diffDiskSettings",
            ));
        }
        if !disk["caching"]
            .as_str()
            .is_some_and(|c| c.eq_ignore_ascii_case("ReadOnly"))
        {
            return Err(error_at(
                400,
                "InvalidParameter",
                "Ephemeral OS disks support only ReadOnly caching.",
                "osDisk.caching",
            ));
        }
    } else {
        let disk_id = resource_id(&vm.group, Kind::Disk, &name);
        if state.get(&disk_id).is_some() {
            return Err(error(
                409,
                "ConflictingUserInput",
                format!(
                    "Disk {name} already exists in resource group {}. Only CreateOption.Attach \
                     is supported.",
                    vm.group.to_ascii_uppercase()
                ),
            ));
        }
        managed.insert("id".into(), json!(disk_id));
    }
    disk.insert("managedDisk".into(), Value::Object(managed));
    Ok(Value::Object(disk))
}

/// The `Microsoft.Compute/disks` resource a managed OS disk is.
pub(super) fn managed_disk(
    vm: &Resource,
    id: &str,
    os_disk: &Value,
    storage: &Map<String, Value>,
) -> Resource {
    let name = os_disk["name"].as_str().unwrap_or_default();
    let mut disk = Resource::new(Kind::Disk, id.to_owned(), name, &vm.group, &vm.location);
    let account = os_disk["managedDisk"]["storageAccountType"]
        .as_str()
        .unwrap_or("Premium_LRS");
    let tier = if account.starts_with("Premium") {
        "Premium"
    } else {
        "Standard"
    };
    disk.extra
        .insert("sku".into(), json!({"name": account, "tier": tier}));
    if let Some(zones) = vm.extra.get("zones") {
        disk.extra.insert("zones".into(), zones.clone());
    }
    let image = storage.get("imageReference").unwrap_or(&Value::Null);
    let image_id = image["id"].as_str().map_or_else(
        || {
            format!(
                "/Subscriptions/{}/Providers/Microsoft.Compute/Locations/{}/Publishers/{}/ArtifactTypes/VMImage/Offers/{}/Skus/{}/Versions/{}",
                super::SUBSCRIPTION_ID,
                vm.location,
                image["publisher"].as_str().unwrap_or_default(),
                image["offer"].as_str().unwrap_or_default(),
                image["sku"].as_str().unwrap_or_default(),
                image["version"].as_str().unwrap_or("latest"),
            )
        },
        str::to_owned,
    );
    disk.properties = json!({
        "osType": os_disk["osType"],
        "hyperVGeneration": "V2",
        "creationData": {"createOption": "FromImage", "imageReference": {"id": image_id}},
        "diskSizeGB": os_disk["diskSizeGB"],
        "timeCreated": timestamp(),
        "uniqueId": uuid::Uuid::new_v4().to_string(),
        "encryption": {"type": "EncryptionAtRestWithPlatformKey"},
        "networkAccessPolicy": "AllowAll",
        "publicNetworkAccess": "Enabled",
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    disk
}

/// Why a compute resource cannot be deleted now: a disk attached to a VM.
pub(super) fn delete_blocker(state: &State, r: &Resource) -> Option<Answer> {
    if r.kind != Kind::Disk {
        return None;
    }
    let vm = state.vm_of_disk(&r.id)?;
    Some(error(
        409,
        "OperationNotAllowed",
        format!("Disk {} is attached to VM {}.", r.name, vm.id),
    ))
}
