//! `/servers`: create (validated as the reference's "Create a Server" describes the request),
//! list, read, update, delete, read a server's action, and take a snapshot of it.
//!
//! A new server is `initializing` until its `create_server` action finishes, then `running`
//! (or `off` with `start_after_create: false`). Deleting one takes it out of every list at
//! once and answers with its `delete_server` action.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde_json::{Value, json};

use super::catalog::{Location, ServerType};
use super::images::Image;
use super::listing::{self, Query};
use super::ssh_keys::{optional_string, required_string};
use super::state::{State, Then, now};
use super::{Answer, ApiError, labels};

/// The reference limits `user_data` to 32 KiB.
const USER_DATA_LIMIT: usize = 32 * 1024;

#[derive(Debug)]
#[expect(
    clippy::struct_field_names,
    reason = "the fields are named as the API names them"
)]
pub(super) struct Server {
    pub id: u64,
    pub name: String,
    pub status: String,
    created: String,
    labels: BTreeMap<String, String>,
    server_type: &'static ServerType,
    pub location: &'static Location,
    image: u64,
    /// The primary IPv4's id and address.
    pub ipv4: Option<(u64, Ipv4Addr)>,
    /// The primary IPv6's id and /64.
    ipv6: Option<(u64, String)>,
    /// Given as plain text, as Hetzner takes it.
    pub user_data: Option<String>,
}

/// The server as the API shows it.
pub(super) fn json(state: &State, server: &Server) -> Value {
    let ipv4 = server.ipv4.map(|(id, ip)| {
        let [a, b, c, d] = ip.octets();
        json!({
            "id": id,
            "ip": ip.to_string(),
            "blocked": false,
            "dns_ptr": format!("static.{d}.{c}.{b}.{a}.clients.your-server.de"),
        })
    });
    let ipv6 = server
        .ipv6
        .as_ref()
        .map(|(id, net)| json!({"id": id, "ip": net, "blocked": false, "dns_ptr": []}));
    json!({
        "id": server.id,
        "name": server.name,
        "status": server.status,
        "created": server.created,
        "labels": server.labels,
        "server_type": server.server_type.json(),
        "image": state.images.get(&server.image).map(Image::json),
        "location": server.location.json(),
        "datacenter": server.location.datacenter_json(),
        "public_net": {
            "ipv4": ipv4,
            "ipv6": ipv6,
            "floating_ips": [],
            "firewalls": [],
        },
        "private_net": [],
        "primary_disk_size": server.server_type.disk_gb,
        "included_traffic": 0,
        "ingoing_traffic": null,
        "outgoing_traffic": null,
        "backup_window": null,
        "rescue_enabled": false,
        "locked": false,
        "iso": null,
        "protection": {"delete": false, "rebuild": false},
        "placement_group": null,
        "volumes": [],
        "load_balancers": [],
    })
}

fn find(state: &State, id: u64) -> Result<&Server, ApiError> {
    state
        .servers
        .get(&id)
        .ok_or_else(|| ApiError::not_found("server"))
}

pub(super) fn list(state: &State, query: Query<'_>) -> Answer {
    let mut servers: Vec<Value> = state.servers.values().map(|s| json(state, s)).collect();
    listing::filter(
        &mut servers,
        query,
        &[("name", "name"), ("status", "status")],
    )?;
    listing::page(servers, "servers", query)
}

/// `GET /servers/{id}`. Reading a server also counts as a read of its running actions: on
/// Hetzner a server comes up as time passes whether or not anyone follows its action, so a
/// client that polls only the server must see it come up too.
pub(super) fn get(state: &mut State, id: u64) -> Answer {
    state.observe_server(id);
    Ok((200, json!({"server": json(state, find(state, id)?)})))
}

/// `GET /servers/{id}/actions/{action_id}`: an action of this server (also after the server
/// is gone, so its `delete_server` action can be followed).
pub(super) fn action(state: &mut State, id: u64, action_id: u64) -> Answer {
    let concerns = state
        .actions
        .get(&action_id)
        .is_some_and(|a| a.concerns(id, "server"));
    if !concerns {
        return Err(ApiError::not_found("action"));
    }
    super::state::get_action(state, action_id)
}

/// A string field that may also be given as a number (an id or a name).
fn id_or_name(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Whether `name` is a hostname as RFC 1123 has it: dot-separated labels of letters, digits
/// and dashes, none starting or ending with a dash.
fn valid_hostname(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn checked_name<'a>(
    state: &State,
    name: &'a str,
    except: Option<u64>,
) -> Result<&'a str, ApiError> {
    if !valid_hostname(name) {
        return Err(ApiError::invalid_field(
            "name",
            "must be a valid hostname (RFC 1123)",
        ));
    }
    if state
        .servers
        .values()
        .any(|s| s.name == name && Some(s.id) != except)
    {
        return Err(ApiError::uniqueness("name", "server name is already used"));
    }
    Ok(name)
}

/// The image a server of `server_type` gets for `key` (an id, or a name that has one image per
/// architecture).
fn resolve_image(state: &State, key: &str, server_type: &ServerType) -> Result<u64, ApiError> {
    let invalid = |why: &str| ApiError::invalid_field("image", why);
    let image = match key.parse::<u64>() {
        Ok(id) => state.images.get(&id),
        Err(_) => state
            .images
            .values()
            .find(|i| i.name.as_deref() == Some(key) && i.architecture == server_type.architecture),
    }
    .ok_or_else(|| invalid(&format!("image {key} not found")))?;
    if image.architecture != server_type.architecture {
        return Err(invalid(&format!(
            "image {key} is for {}, server type {} is {}",
            image.architecture, server_type.name, server_type.architecture
        )));
    }
    if image.status != "available" {
        return Err(invalid(&format!("image {key} is not available yet")));
    }
    Ok(image.id)
}

/// The SSH keys named (by id or name) in `ssh_keys`.
fn resolve_ssh_keys(state: &State, value: &Value) -> Result<Vec<u64>, ApiError> {
    let invalid = |why: &str| ApiError::invalid_field("ssh_keys", why);
    let items = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        _ => return Err(invalid("must be a list of ids or names")),
    };
    items
        .iter()
        .map(|item| {
            let key = id_or_name(item).ok_or_else(|| invalid("must be a list of ids or names"))?;
            state
                .ssh_keys
                .values()
                .find(|k| k.name == key || k.id.to_string() == key)
                .map(|k| k.id)
                .ok_or_else(|| invalid(&format!("SSH key {key} not found")))
        })
        .collect()
}

/// Where the server goes: `location`, else the deprecated `datacenter`, else the first
/// location that offers its type.
fn resolve_location(body: &Value, server_type: &ServerType) -> Result<&'static Location, ApiError> {
    let location = match (
        id_or_name(&body["location"]),
        id_or_name(&body["datacenter"]),
    ) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_field(
                "location",
                "location and datacenter are mutually exclusive",
            ));
        }
        (Some(key), None) => Location::find(&key).ok_or_else(|| {
            ApiError::invalid_field("location", &format!("location {key} not found"))
        })?,
        (None, Some(key)) => Location::of_datacenter(&key).ok_or_else(|| {
            ApiError::invalid_field("datacenter", &format!("datacenter {key} not found"))
        })?,
        (None, None) => server_type
            .locations()
            .next()
            .expect("every type is offered somewhere"),
    };
    if !server_type.available_in(location) {
        return Err(ApiError::new(
            400,
            "invalid_input",
            "unsupported location for server type",
        ));
    }
    Ok(location)
}

/// Networks, volumes, firewalls, placement groups and primary IPs: the fake has none, so any
/// the request names is not found.
fn refuse_unknown_attachments(body: &Value) -> Result<(), ApiError> {
    for (field, what) in [
        ("networks", "network"),
        ("volumes", "volume"),
        ("firewalls", "firewall"),
    ] {
        if body[field].as_array().is_some_and(|a| !a.is_empty()) {
            return Err(ApiError::not_found(what));
        }
    }
    if !body["placement_group"].is_null() {
        return Err(ApiError::not_found("placement_group"));
    }
    if !body["public_net"]["ipv4"].is_null() || !body["public_net"]["ipv6"].is_null() {
        return Err(ApiError::not_found("primary_ip"));
    }
    Ok(())
}

fn flag(body: &Value, field: &str, default: bool) -> Result<bool, ApiError> {
    let value = field
        .split('.')
        .fold(body, |v, part| v.get(part).unwrap_or(&Value::Null));
    match value {
        Value::Null => Ok(default),
        Value::Bool(b) => Ok(*b),
        _ => Err(ApiError::invalid_field(field, "Not a valid boolean.")),
    }
}

/// `POST /servers`.
pub(super) fn create(state: &mut State, body: &Value) -> Answer {
    let name = required_string(body, "name")?;
    let type_key = id_or_name(&body["server_type"]).ok_or_else(|| {
        ApiError::invalid_field("server_type", "Missing data for required field.")
    })?;
    let server_type = ServerType::find(&type_key).ok_or_else(|| {
        ApiError::invalid_field("server_type", &format!("server type {type_key} not found"))
    })?;
    let image_key = id_or_name(&body["image"])
        .ok_or_else(|| ApiError::invalid_field("image", "Missing data for required field."))?;
    let location = resolve_location(body, server_type)?;
    let image = resolve_image(state, &image_key, server_type)?;
    let ssh_keys = resolve_ssh_keys(state, &body["ssh_keys"])?;
    let labels = labels::from_request(&body["labels"])?;
    let user_data = optional_string(body, "user_data")?.map(str::to_owned);
    if user_data
        .as_ref()
        .is_some_and(|u| u.len() > USER_DATA_LIMIT)
    {
        return Err(ApiError::invalid_field(
            "user_data",
            "must be at most 32 KiB",
        ));
    }
    let start = flag(body, "start_after_create", true)?;
    let (with_ipv4, with_ipv6) = (
        flag(body, "public_net.enable_ipv4", true)?,
        flag(body, "public_net.enable_ipv6", true)?,
    );
    refuse_unknown_attachments(body)?;
    let name = checked_name(state, name, None)?.to_owned();

    let id = state.new_id("server");
    let ipv4 = with_ipv4.then(|| {
        (
            state.new_id("primary_ip"),
            state.new_ipv4(location.ipv4_prefix),
        )
    });
    let ipv6 = with_ipv6.then(|| {
        let ip_id = state.new_id("primary_ip");
        (
            ip_id,
            format!("2a01:4f8:c0{:x}:{:x}::/64", location.id, ip_id % 0x1_0000),
        )
    });
    state.servers.insert(
        id,
        Server {
            id,
            name,
            status: "initializing".to_owned(),
            created: now(),
            labels,
            server_type,
            location,
            image,
            ipv4,
            ipv6,
            user_data,
        },
    );
    let resources = vec![(id, "server")];
    let create = state.start_action(
        "create_server",
        resources.clone(),
        Then::ServerUp {
            server: id,
            running: start,
        },
    );
    let mut next_actions = Vec::new();
    if start {
        next_actions.push(state.start_action("start_server", resources, Then::Nothing));
    }
    let action_json =
        |state: &State, id: &u64| state.actions.get(id).map(super::state::Action::json);
    let root_password = ssh_keys
        .is_empty()
        .then(|| uuid::Uuid::new_v4().simple().to_string()[..20].to_owned());
    let body = json!({
        "server": json(state, &state.servers[&id]),
        "action": action_json(state, &create),
        "next_actions": next_actions.iter().filter_map(|a| action_json(state, a)).collect::<Vec<_>>(),
        "root_password": root_password,
    });
    Ok((201, body))
}

/// `PUT /servers/{id}`: a new name and/or labels (which replace the old ones).
pub(super) fn update(state: &mut State, id: u64, body: &Value) -> Answer {
    find(state, id)?;
    let name = match optional_string(body, "name")? {
        Some(name) => Some(checked_name(state, name, Some(id))?.to_owned()),
        None => None,
    };
    let labels = match body.get("labels") {
        Some(value) => Some(labels::from_request(value)?),
        None => None,
    };
    let server = state.servers.get_mut(&id).expect("found above");
    if let Some(name) = name {
        server.name = name;
    }
    if let Some(labels) = labels {
        server.labels = labels;
    }
    get(state, id)
}

/// `DELETE /servers/{id}`.
pub(super) fn delete(state: &mut State, id: u64) -> Answer {
    find(state, id)?;
    state.servers.remove(&id);
    let action = state.start_action("delete_server", vec![(id, "server")], Then::Nothing);
    Ok((200, json!({"action": state.actions[&action].json()})))
}

/// `POST /servers/{id}/actions/create_image`: a snapshot (or backup) of the server's disk,
/// `creating` until the action finishes.
pub(super) fn create_image(state: &mut State, id: u64, body: &Value) -> Answer {
    let server = find(state, id)?;
    let kind = match optional_string(body, "type")? {
        None | Some("snapshot") => "snapshot",
        Some("backup") => "backup",
        Some(_) => {
            return Err(ApiError::invalid_field(
                "type",
                "must be \"snapshot\" or \"backup\"",
            ));
        }
    };
    let description = optional_string(body, "description")?
        .unwrap_or_default()
        .to_owned();
    let labels = labels::from_request(&body["labels"])?;
    let source = state.images.get(&server.image);
    let os = source.map(|i| (i.os_flavor.clone(), i.os_version.clone()));
    let (server_name, disk, architecture) = (
        server.name.clone(),
        server.server_type.disk_gb,
        server.server_type.architecture,
    );
    let image_id = state.new_id("image");
    let mut image = Image::taking(image_id, kind, disk, architecture);
    image.description = description;
    image.labels = labels;
    image.created_from = Some((id, server_name));
    image.bound_to = (kind == "backup").then_some(id);
    if let Some((flavor, version)) = os {
        image.os_flavor = flavor;
        image.os_version = version;
    }
    state.images.insert(image_id, image);
    let action = state.start_action(
        "create_image",
        vec![(id, "server")],
        Then::ImageReady(image_id),
    );
    Ok((
        201,
        json!({
            "image": state.images[&image_id].json(),
            "action": state.actions[&action].json(),
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_hostnames() {
        for good in ["cbx-1", "a", "lease.crabbox", "x1-y2"] {
            assert!(valid_hostname(good), "{good}");
        }
        for bad in ["", "-a", "a-", "a_b", "a..b", "has space", &"a".repeat(64)] {
            assert!(!valid_hostname(bad), "{bad}");
        }
    }
}
