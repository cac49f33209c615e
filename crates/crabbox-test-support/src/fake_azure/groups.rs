//! Resource groups (the "Resource Groups" reference: create or update, get, check existence,
//! tags update, delete as a long-running operation that takes the group's resources with it)
//! and the subscription itself.

use serde_json::{Value, json};

use super::arm::{Answer, Req, error, group_not_found, location_required, method_not_allowed};
use super::state::{Action, Kind, Provisioning, Resource, State, group_id};
use super::{SUBSCRIPTION_ID, lro, skus};

pub(super) fn subscription() -> Answer {
    Answer::json(
        200,
        json!({
            "id": format!("/subscriptions/{SUBSCRIPTION_ID}"),
            "authorizationSource": "RoleBased",
            "managedByTenants": [],
            "subscriptionId": SUBSCRIPTION_ID,
            "tenantId": super::TENANT_ID,
            "displayName": "Crabbox fake subscription",
            "state": "Enabled",
            "subscriptionPolicies": {
                "locationPlacementId": "Public_2014-09-01",
                "quotaId": "PayAsYouGo_2014-09-01",
                "spendingLimit": "Off"
            }
        }),
    )
}

pub(super) fn resource_group(state: &mut State, req: &Req, group: &str) -> Answer {
    let id = group_id(group);
    lro::observe_resource(state, &id);
    let existing = state.get(&id).cloned();
    match req.method.as_str() {
        "GET" => existing.map_or_else(
            || group_not_found(group),
            |r| Answer::json(200, Value::Object(r.envelope())),
        ),
        "HEAD" => Answer::empty(if existing.is_some() { 204 } else { 404 }),
        "PUT" => put_group(state, req, group, existing),
        "PATCH" => match existing {
            None => group_not_found(group),
            Some(mut r) => {
                if let Some(tags) = req.body["tags"].as_object() {
                    r.tags.clone_from(tags);
                }
                let body = Value::Object(r.envelope());
                state.resources.insert(r.key(), r);
                Answer::json(200, body)
            }
        },
        "DELETE" => match existing {
            None => group_not_found(group),
            Some(r) => {
                if let Some(op) = r
                    .operation
                    .clone()
                    .filter(|_| r.state == Provisioning::Deleting)
                {
                    return lro::accepted_delete(state, req, &op);
                }
                state.get_mut(&id).expect("the group").state = Provisioning::Deleting;
                let op = lro::start(state, &id, Action::Delete, req.failure.clone());
                lro::accepted_delete(state, req, &op)
            }
        },
        method => method_not_allowed(method),
    }
}

fn put_group(state: &mut State, req: &Req, group: &str, existing: Option<Resource>) -> Answer {
    let Some(location) = req.body["location"].as_str() else {
        return location_required();
    };
    if !skus::is_location(location) {
        return error(
            400,
            "LocationNotAvailableForResourceGroup",
            format!(
                "The provided location '{location}' is not available for resource group. List of \
                 available regions is '{}'.",
                skus::LOCATIONS.join(",")
            ),
        );
    }
    let created = existing.is_none();
    let mut group_resource = match existing {
        Some(r) if r.state == Provisioning::Deleting => return being_deleted(group),
        Some(r) if !r.location.eq_ignore_ascii_case(location) => {
            return error(
                409,
                "InvalidResourceGroupLocation",
                format!(
                    "Invalid resource group location '{location}'. The Resource group already \
                     exists in location '{}'.",
                    r.location
                ),
            );
        }
        Some(r) => r,
        None => Resource::new(Kind::ResourceGroup, group_id(group), group, group, location),
    };
    group_resource.tags = req.body["tags"].as_object().cloned().unwrap_or_default();
    let body = Value::Object(group_resource.envelope());
    state.resources.insert(group_resource.key(), group_resource);
    Answer::json(if created { 201 } else { 200 }, body)
}

pub(super) fn being_deleted(group: &str) -> Answer {
    error(
        409,
        "ResourceGroupBeingDeleted",
        format!(
            "The resource group '{group}' is in deprovisioning state and cannot perform this operation."
        ),
    )
}
