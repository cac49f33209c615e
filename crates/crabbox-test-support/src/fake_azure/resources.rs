//! What every resource type shares: `GET` (with what other resources say about it), `DELETE`
//! (refused while something uses the resource, else a long-running operation), tags-only
//! `PATCH`es, lists with `nextLink` paging, and the first and last steps of a `PUT`.

use serde_json::{Map, Value, json};

use super::arm::{Answer, Req, error, group_not_found, location_required, not_found};
use super::groups::being_deleted;
use super::state::{Action, Kind, Provisioning, Resource, State, new_etag, resource_id};
use super::{compute, disks, lro, network, skus};

/// The resource as `GET` shows it, with what other resources say about it.
pub(super) fn render(state: &State, r: &Resource, expand_instance_view: bool) -> Value {
    match r.kind {
        Kind::VirtualMachine | Kind::Disk | Kind::Extension => {
            compute::render(state, r, expand_instance_view)
        }
        Kind::ResourceGroup => Value::Object(r.envelope()),
        _ => network::render(state, r),
    }
}

/// `GET` of one resource (`$expand=instanceView` for a VM's instance view).
pub(super) fn get(state: &mut State, req: &Req, group: &str, kind: Kind, name: &str) -> Answer {
    if state.group(group).is_none() {
        return group_not_found(group);
    }
    let id = resource_id(group, kind, name);
    lro::observe_resource(state, &id);
    let expand = req
        .query("$expand")
        .is_some_and(|e| e.eq_ignore_ascii_case("instanceView"));
    state.get(&id).map_or_else(
        || not_found(kind, name, group),
        |r| Answer::json(200, render(state, r, expand)),
    )
}

/// `DELETE`: 204 when there is nothing to delete, a refusal while something uses it, else
/// 202 with `Location` and `Azure-AsyncOperation`.
pub(super) fn delete(state: &mut State, req: &Req, group: &str, id: &str) -> Answer {
    if state.group(group).is_none() {
        return group_not_found(group);
    }
    lro::observe_resource(state, id);
    let Some(r) = state.get(id).cloned() else {
        return Answer::empty(204);
    };
    if let Some(op) = r
        .operation
        .clone()
        .filter(|_| r.state == Provisioning::Deleting)
    {
        return lro::accepted_delete(state, req, &op);
    }
    let blocked = match r.kind {
        Kind::Disk => disks::delete_blocker(state, &r),
        _ => network::delete_blocker(state, &r),
    };
    if let Some(refusal) = blocked {
        return refusal;
    }
    let deleting = state.get_mut(id).expect("the resource");
    deleting.state = Provisioning::Deleting;
    deleting.running = false;
    let op = lro::start(state, &r.key(), Action::Delete, req.failure.clone());
    lro::accepted_delete(state, req, &op)
}

/// A tags-only `PATCH`, answered at once with the updated resource.
pub(super) fn patch_tags(
    state: &mut State,
    req: &Req,
    group: &str,
    kind: Kind,
    name: &str,
) -> Answer {
    if state.group(group).is_none() {
        return group_not_found(group);
    }
    let id = resource_id(group, kind, name);
    lro::observe_resource(state, &id);
    let Some(r) = state.get_mut(&id) else {
        return not_found(kind, name, group);
    };
    if let Some(tags) = req.body["tags"].as_object() {
        r.tags.clone_from(tags);
    }
    let r = r.clone();
    Answer::json(200, render(state, &r, false))
}

/// The resources of `kind` in `group` (or the subscription), `page_size` at a time, with a
/// `nextLink` carrying a `$skiptoken` while there are more.
pub(super) fn list(state: &State, req: &Req, group: Option<&str>, kind: Kind) -> Answer {
    if let Some(group) = group
        && state.group(group).is_none()
    {
        return group_not_found(group);
    }
    let all: Vec<&Resource> = state
        .of_kind(kind)
        .filter(|r| group.is_none_or(|g| r.group.eq_ignore_ascii_case(g)))
        .collect();
    let skip: usize = req
        .query("$skiptoken")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let page: Vec<Value> = all
        .iter()
        .skip(skip)
        .take(state.page_size.max(1))
        .map(|r| render(state, r, false))
        .collect();
    let next = skip + page.len();
    let mut body = json!({"value": page});
    if next < all.len() {
        body["nextLink"] = json!(format!(
            "{}{}?api-version={}&$skiptoken={next}",
            state.base, req.path, req.api_version
        ));
    }
    Answer::json(200, body)
}

/// What every create-or-update starts with, once the request is found acceptable.
#[derive(Debug)]
pub(super) struct Put {
    pub id: String,
    pub existing: Option<Resource>,
    pub resource: Resource,
    pub properties: Map<String, Value>,
}

/// The checks every `PUT` of a top-level resource makes: the group exists and is not being
/// deleted, no operation is in progress on the resource, the location is given, served, and
/// the one it already has.
pub(super) fn begin_put(
    state: &mut State,
    req: &Req,
    group: &str,
    kind: Kind,
    name: &str,
) -> Result<Put, Answer> {
    let group_resource = state.group(group).ok_or_else(|| group_not_found(group))?;
    if group_resource.state == Provisioning::Deleting {
        return Err(being_deleted(group));
    }
    let group = group_resource.name.clone();
    let id = resource_id(&group, kind, name);
    lro::observe_resource(state, &id);
    let existing = state.get(&id).cloned();
    if let Some(op) = existing.as_ref().and_then(|r| r.operation.clone()) {
        return Err(lro::another_in_progress(state, req, &op));
    }
    if !req.body.is_object() {
        return Err(error(
            400,
            "InvalidRequestContent",
            "The request content was invalid and could not be deserialized.",
        ));
    }
    let location = req.body["location"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| existing.as_ref().map(|r| r.location.clone()))
        .ok_or_else(location_required)?;
    if !skus::is_location(&location) {
        return Err(error(
            400,
            "LocationNotAvailableForResourceType",
            format!(
                "The provided location '{location}' is not available for resource type '{}'. \
                 List of available regions for the resource type is '{}'.",
                kind.resource_type(),
                skus::LOCATIONS.join(",")
            ),
        ));
    }
    if let Some(old) = existing
        .as_ref()
        .filter(|r| !r.location.eq_ignore_ascii_case(&location))
    {
        return Err(error(
            409,
            "InvalidResourceLocation",
            format!(
                "The resource '{name}' already exists in location '{}' in resource group \
                 '{group}'. A resource with the same name cannot be created in location \
                 '{location}'. Please select a new resource name.",
                old.location
            ),
        ));
    }
    let mut resource = existing
        .clone()
        .unwrap_or_else(|| Resource::new(kind, id.clone(), name, &group, &location));
    resource.tags = req.body["tags"].as_object().cloned().unwrap_or_default();
    for field in ["sku", "zones", "plan", "identity", "extendedLocation"] {
        if let Some(value) = req.body.get(field) {
            resource.extra.insert(field.to_owned(), value.clone());
        }
    }
    let properties = req.body["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    Ok(Put {
        id,
        existing,
        resource,
        properties,
    })
}

/// Stores the resource as `Creating` (compute) / `Updating`, starts its operation and answers
/// 201 (created) or 200 (updated) with `Azure-AsyncOperation`.
pub(super) fn finish_put(
    state: &mut State,
    req: &Req,
    mut resource: Resource,
    created: bool,
) -> Answer {
    resource.state = if created && !resource.kind.is_network() {
        Provisioning::Creating
    } else {
        Provisioning::Updating
    };
    resource.etag = new_etag();
    let k = resource.key();
    state.resources.insert(k.clone(), resource);
    let op = lro::start(state, &k, Action::Put, req.failure.clone());
    let body = render(state, &state.resources[&k], false);
    lro::accepted_put(state, req, &op, if created { 201 } else { 200 }, body)
}
