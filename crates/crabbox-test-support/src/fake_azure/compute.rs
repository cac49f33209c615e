//! `Microsoft.Compute` virtual machines (create or update, tags update, get with
//! `$expand=instanceView`, instance view; delete is [`super::resources::delete`]) and their
//! extensions, following the "Virtual Machines" and "Virtual Machine Extensions" REST
//! references. The OS disk a create makes is [`super::disks`]'. `osProfile.customData` and
//! `adminPassword` are kept but never shown, as ARM never returns them.

use base64::Engine;
use serde_json::{Map, Value, json};

use super::arm::{Answer, Req, error, error_at, group_not_found, method_not_allowed, not_found};
use super::resources::{self, Put, begin_put, finish_put};
use super::state::{Action, Kind, Provisioning, Resource, State, Status, resource_id, timestamp};
use super::{disks, lro, skus};

/// The longest `customData` Azure takes (base64 characters).
const MAX_CUSTOM_DATA: usize = 87_380;

pub(super) fn render(state: &State, r: &Resource, expand_instance_view: bool) -> Value {
    let mut out = r.envelope();
    match r.kind {
        Kind::VirtualMachine => {
            let prefix = format!("{}/extensions/", r.key());
            let extensions: Vec<Value> = state
                .of_kind(Kind::Extension)
                .filter(|e| e.key().starts_with(&prefix))
                .map(|e| json!({"id": e.id}))
                .collect();
            if !extensions.is_empty() {
                out.insert("resources".into(), json!(extensions));
            }
            if expand_instance_view {
                out["properties"]["instanceView"] = instance_view_json(state, r);
            }
        }
        Kind::Disk => {
            let vm = state.vm_of_disk(&r.id);
            if let Some(vm) = vm {
                out.insert("managedBy".into(), json!(vm.id));
            }
            out["properties"]["diskState"] = json!(if vm.is_some() {
                "Attached"
            } else {
                "Unattached"
            });
        }
        _ => {}
    }
    Value::Object(out)
}

fn is_windows(properties: &Map<String, Value>) -> bool {
    let prop = |name: &str| properties.get(name).unwrap_or(&Value::Null);
    prop("osProfile").get("windowsConfiguration").is_some()
        || prop("storageProfile")["imageReference"]["publisher"]
            .as_str()
            .is_some_and(|p| p.to_ascii_lowercase().contains("windows"))
        || prop("storageProfile")["osDisk"]["osType"].as_str() == Some("Windows")
}

fn missing(parameter: &str) -> Answer {
    error_at(
        400,
        "InvalidParameter",
        format!("Required parameter '{parameter}' is missing (null)."),
        parameter,
    )
}

pub(super) fn put_vm(state: &mut State, req: &Req, group: &str, name: &str) -> Answer {
    let put = match begin_put(state, req, group, Kind::VirtualMachine, name) {
        Ok(put) => put,
        Err(refused) => return refused,
    };
    if put.existing.is_some() {
        return update_vm(state, req, put);
    }
    match create_vm(state, put) {
        Ok(vm) => finish_put(state, req, vm, true),
        Err(refused) => refused,
    }
}

/// Checks a new VM (size, NICs, OS profile, OS disk) and makes its managed OS disk.
fn create_vm(state: &mut State, put: Put) -> Result<Resource, Answer> {
    let Put {
        id,
        resource: mut vm,
        properties: mut props,
        ..
    } = put;
    let size = props
        .get("hardwareProfile")
        .and_then(|h| h["vmSize"].as_str())
        .ok_or_else(|| missing("hardwareProfile.vmSize"))?
        .to_owned();
    let sku = skus::check_size(state, &size, &vm.location, &id)?;
    let nics: Vec<String> = props
        .get("networkProfile")
        .and_then(|n| n["networkInterfaces"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|n| n["id"].as_str().map(str::to_owned))
        .collect();
    if nics.is_empty() {
        return Err(missing("networkProfile"));
    }
    for nic in &nics {
        if state
            .get(nic)
            .is_none_or(|r| r.kind != Kind::NetworkInterface)
        {
            return Err(error(404, "NotFound", format!("Resource {nic} not found.")));
        }
        if let Some(other) = state.vm_of_nic(nic, Some(&id)) {
            return Err(error(
                400,
                "NicInUse",
                format!(
                    "Network Interface {nic} is used by existing resource {}. In order to delete \
                     the network interface, it must be dissociated from the resource. To learn \
                     more, see aka.ms/deletenic.",
                    other.id
                ),
            ));
        }
    }
    let windows = is_windows(&props);
    let mut os_profile = props
        .get("osProfile")
        .and_then(Value::as_object)
        .cloned()
        .ok_or_else(|| missing("osProfile"))?;
    if !os_profile.contains_key("adminUsername") {
        return Err(missing("adminUsername"));
    }
    let custom_data = os_profile
        .remove("customData")
        .and_then(|c| c.as_str().map(str::to_owned));
    os_profile.remove("adminPassword");
    if let Some(data) = &custom_data {
        let decodes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .is_ok();
        if !decodes || data.len() > MAX_CUSTOM_DATA {
            return Err(error_at(
                400,
                "InvalidParameter",
                "Custom data in OSProfile must be in Base64 encoding and with a maximum length of \
                 87380 characters.",
                "customData",
            ));
        }
    }
    os_profile.entry("computerName").or_insert(json!(vm.name));
    os_profile.entry("secrets").or_insert(json!([]));
    os_profile
        .entry("allowExtensionOperations")
        .or_insert(json!(true));
    os_profile
        .entry("requireGuestProvisionSignal")
        .or_insert(json!(true));
    let mut storage = props
        .get("storageProfile")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let os_disk = disks::os_disk(state, &vm, sku, &storage, windows)?;
    let disk = os_disk["managedDisk"]["id"]
        .as_str()
        .map(|disk_id| disks::managed_disk(&vm, disk_id, &os_disk, &storage));
    storage.insert("osDisk".into(), os_disk);
    storage.entry("dataDisks").or_insert(json!([]));
    props.insert("storageProfile".into(), Value::Object(storage));
    props.insert("osProfile".into(), Value::Object(os_profile));
    props.insert("vmId".into(), json!(uuid::Uuid::new_v4().to_string()));
    props.insert("timeCreated".into(), json!(timestamp()));
    props.remove("instanceView");
    vm.properties = props;
    vm.custom_data = custom_data;
    if let Some(disk) = disk {
        state.resources.insert(disk.key(), disk);
    }
    Ok(vm)
}

/// A `PUT` of an existing VM: tags and the size may change, `customData` may not.
fn update_vm(state: &mut State, req: &Req, put: Put) -> Answer {
    let Put {
        id,
        resource: mut vm,
        properties,
        ..
    } = put;
    let given = |a: &str, b: &str| properties.get(a).and_then(|v| v[b].as_str());
    if let Some(data) = given("osProfile", "customData")
        && vm.custom_data.as_deref() != Some(data)
    {
        return error_at(
            409,
            "PropertyChangeNotAllowed",
            "Changing property 'customData' is not allowed.",
            "customData",
        );
    }
    if let Some(size) = given("hardwareProfile", "vmSize") {
        if let Err(refused) = skus::check_size(state, size, &vm.location, &id) {
            return refused;
        }
        vm.properties
            .insert("hardwareProfile".into(), json!({"vmSize": size}));
    }
    finish_put(state, req, vm, false)
}

/// `PATCH` of a VM (tags): 200 with `Updating` and `Azure-AsyncOperation`; when it completes
/// the VM is as it was (a failed VM stays failed).
pub(super) fn patch_vm(state: &mut State, req: &Req, group: &str, name: &str) -> Answer {
    let Some(group) = state.group(group).map(|g| g.name.clone()) else {
        return group_not_found(group);
    };
    let id = resource_id(&group, Kind::VirtualMachine, name);
    lro::observe_resource(state, &id);
    let Some(vm) = state.get_mut(&id) else {
        return not_found(Kind::VirtualMachine, name, &group);
    };
    if let Some(op) = vm.operation.clone() {
        return lro::another_in_progress(state, req, &op);
    }
    if let Some(tags) = req.body["tags"].as_object() {
        vm.tags.clone_from(tags);
    }
    let prior = vm.state;
    vm.state = Provisioning::Updating;
    let k = vm.key();
    let op = lro::start(state, &k, Action::Patch(prior), req.failure.clone());
    let body = render(state, &state.resources[&k], false);
    lro::accepted_put(state, req, &op, 200, body)
}

/// `GET`/`PUT`/`DELETE` of `…/virtualMachines/{vm}/extensions/{name}`.
pub(super) fn extension(
    state: &mut State,
    req: &Req,
    group: &str,
    vm_name: &str,
    name: &str,
) -> Answer {
    let Some(group) = state.group(group).map(|g| g.name.clone()) else {
        return group_not_found(group);
    };
    let vm_id = resource_id(&group, Kind::VirtualMachine, vm_name);
    lro::observe_resource(state, &vm_id);
    let Some(vm) = state.get(&vm_id).cloned() else {
        if req.method == "DELETE" {
            return Answer::empty(204);
        }
        return error(
            404,
            "ParentResourceNotFound",
            format!(
                "Can not perform requested operation on nested resource. Parent resource \
                 '{vm_name}' not found."
            ),
        );
    };
    let id = format!("{}/extensions/{name}", vm.id);
    lro::observe_resource(state, &id);
    match req.method.as_str() {
        "GET" => state.get(&id).map_or_else(
            || {
                error(
                    404,
                    "ResourceNotFound",
                    format!(
                        "The Resource 'Microsoft.Compute/virtualMachines/{vm_name}/extensions/{name}' \
                         under resource group '{group}' was not found. For more details please go \
                         to https://aka.ms/ARMResourceNotFoundFix"
                    ),
                )
            },
            |r| Answer::json(200, render(state, r, false)),
        ),
        "DELETE" => resources::delete(state, req, &group, &id),
        "PUT" => {
            let existing = state.get(&id).cloned();
            if let Some(op) = existing.as_ref().and_then(|r| r.operation.clone()) {
                return lro::another_in_progress(state, req, &op);
            }
            let location = req.body["location"].as_str().unwrap_or(&vm.location);
            let mut ext = existing
                .clone()
                .unwrap_or_else(|| Resource::new(Kind::Extension, id.clone(), name, &group, location));
            ext.tags = req.body["tags"].as_object().cloned().unwrap_or_default();
            let mut properties = req.body["properties"].as_object().cloned().unwrap_or_default();
            properties.remove("protectedSettings");
            properties.remove("provisioningState");
            ext.properties = properties;
            finish_put(state, req, ext, existing.is_none())
        }
        method => method_not_allowed(method),
    }
}

/// `GET …/virtualMachines/{vm}/instanceView`.
pub(super) fn instance_view(state: &mut State, group: &str, name: &str) -> Answer {
    let Some(group) = state.group(group).map(|g| g.name.clone()) else {
        return group_not_found(group);
    };
    let id = resource_id(&group, Kind::VirtualMachine, name);
    lro::observe_resource(state, &id);
    match state.get(&id) {
        Some(vm) => Answer::json(200, instance_view_json(state, vm)),
        None => not_found(Kind::VirtualMachine, name, &group),
    }
}

/// The provisioning and power states of a VM, as its instance view lists them.
fn instance_view_json(state: &State, vm: &Resource) -> Value {
    let now = timestamp();
    let provisioning = if vm.state == Provisioning::Failed {
        let failure = state
            .operations
            .values()
            .filter(|op| op.resource == vm.key() && op.status == Status::Failed)
            .max_by(|a, b| a.end.cmp(&b.end))
            .and_then(|op| op.failure.clone());
        let (code, message) = failure.map_or_else(
            || ("InternalError".to_owned(), String::new()),
            |f| (f.code, f.message),
        );
        json!({"code": format!("ProvisioningState/failed/{code}"), "level": "Error",
               "displayStatus": "Provisioning failed", "message": message, "time": now})
    } else {
        let state_name = vm.state.as_str();
        let display = if vm.state == Provisioning::Succeeded {
            "Provisioning succeeded"
        } else {
            state_name
        };
        json!({"code": format!("ProvisioningState/{}", state_name.to_ascii_lowercase()),
               "level": "Info", "displayStatus": display, "time": now})
    };
    let power = match vm.state {
        _ if vm.running => Some(("running", "VM running")),
        Provisioning::Creating => Some(("starting", "VM starting")),
        Provisioning::Deleting => Some(("stopping", "VM stopping")),
        _ => None,
    };
    let mut statuses = vec![provisioning];
    statuses.extend(power.map(|(code, display)| {
        json!({"code": format!("PowerState/{code}"), "level": "Info", "displayStatus": display})
    }));
    let computer_name = vm
        .properties
        .get("osProfile")
        .map_or(Value::Null, |p| p["computerName"].clone());
    json!({"computerName": computer_name, "statuses": statuses})
}
