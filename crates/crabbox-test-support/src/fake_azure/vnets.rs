//! Virtual networks with their subnets and network security groups with their security rules
//! (the "Virtual Networks", "Subnets", "Network Security Groups" and "Security Rules"
//! references). A subnet or rule changed on its own is changed in its parent at once and
//! reported by an operation on the parent, as the network resource provider does.

use serde_json::{Value, json};

use super::arm::{self, Answer, Req, error, group_not_found};
use super::lro;
use super::network::{bad_request, check_ref, keep_guid, render_subnet, subnet_in_use};
use super::references::subnets;
use super::resources::{begin_put, finish_put};
use super::routes::Collection;
use super::state::{Action, Kind, Provisioning, Resource, State, new_etag, resource_id};

/// A subnet of a `PUT` (inline or its own), with its id and type.
fn subnet_from(state: &State, vnet: &Resource, name: &str, body: &Value) -> Result<Value, Answer> {
    let id = format!("{}/subnets/{name}", vnet.id);
    let mut properties = body["properties"].as_object().cloned().unwrap_or_default();
    properties.remove("provisioningState");
    properties.remove("ipConfigurations");
    check_ref(
        state,
        properties.get("networkSecurityGroup"),
        Kind::NetworkSecurityGroup,
        &vnet.location,
        &id,
    )?;
    Ok(json!({
        "name": name,
        "id": id,
        "etag": new_etag(),
        "type": "Microsoft.Network/virtualNetworks/subnets",
        "properties": properties,
    }))
}

pub(super) fn put_vnet(state: &mut State, req: &Req, group: &str, name: &str) -> Answer {
    let put = match begin_put(state, req, group, Kind::VirtualNetwork, name) {
        Ok(put) => put,
        Err(refused) => return refused,
    };
    let mut resource = put.resource;
    let mut new_subnets = Vec::new();
    for body in put
        .properties
        .get("subnets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(subnet_name) = body["name"].as_str() else {
            return bad_request("Every subnet of a virtual network needs a name.");
        };
        match subnet_from(state, &resource, subnet_name, body) {
            Ok(subnet) => new_subnets.push(subnet),
            Err(refused) => return refused,
        }
    }
    if let Some(old) = &put.existing {
        for subnet in subnets(old) {
            let kept = new_subnets.iter().any(|s| {
                s["name"].as_str().map(str::to_ascii_lowercase)
                    == subnet["name"].as_str().map(str::to_ascii_lowercase)
            });
            if let Some(refused) = subnet_in_use(state, subnet).filter(|_| !kept) {
                return refused;
            }
        }
    }
    resource.properties = put.properties;
    resource
        .properties
        .insert("subnets".into(), json!(new_subnets));
    keep_guid(&mut resource, put.existing.as_ref());
    finish_put(state, req, resource, put.existing.is_none())
}

/// A security rule of a `PUT`, checked for its priority.
fn rule_from(nsg_id: &str, name: &str, body: &Value) -> Result<Value, Answer> {
    let mut properties = body["properties"].as_object().cloned().unwrap_or_default();
    properties.remove("provisioningState");
    let priority = properties
        .get("priority")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    if !(100..=4096).contains(&priority) {
        return Err(error(
            400,
            "SecurityRuleInvalidPriority",
            format!(
                "Security rule has invalid Priority. Value provided: {priority} Allowed values: 100-4096."
            ),
        ));
    }
    for field in ["protocol", "access", "direction"] {
        if !properties.contains_key(field) {
            return Err(bad_request(format!(
                "Security rule {name} has no '{field}'."
            )));
        }
    }
    Ok(json!({
        "name": name,
        "id": format!("{nsg_id}/securityRules/{name}"),
        "etag": new_etag(),
        "type": "Microsoft.Network/networkSecurityGroups/securityRules",
        "properties": properties,
    }))
}

/// Two rules may not share a priority in one direction.
fn check_rule_conflicts(rules: &[Value]) -> Result<(), Answer> {
    for (i, a) in rules.iter().enumerate() {
        for b in &rules[i + 1..] {
            let same = |field: &str| {
                let (x, y) = (&a["properties"][field], &b["properties"][field]);
                match (x.as_str(), y.as_str()) {
                    (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
                    _ => x == y,
                }
            };
            if same("priority") && same("direction") {
                return Err(error(
                    400,
                    "SecurityRuleConflict",
                    format!(
                        "Security rule {} conflicts with rule {}. Rules cannot have the same \
                         Priority and Direction. To learn more, see aka.ms/nsgrules.",
                        b["name"].as_str().unwrap_or_default(),
                        a["name"].as_str().unwrap_or_default()
                    ),
                ));
            }
        }
    }
    Ok(())
}

pub(super) fn put_nsg(state: &mut State, req: &Req, group: &str, name: &str) -> Answer {
    let put = match begin_put(state, req, group, Kind::NetworkSecurityGroup, name) {
        Ok(put) => put,
        Err(refused) => return refused,
    };
    let mut resource = put.resource;
    let mut rules = Vec::new();
    for body in put
        .properties
        .get("securityRules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(rule_name) = body["name"].as_str() else {
            return bad_request("Every security rule needs a name.");
        };
        match rule_from(&resource.id, rule_name, body) {
            Ok(rule) => rules.push(rule),
            Err(refused) => return refused,
        }
    }
    if let Err(refused) = check_rule_conflicts(&rules) {
        return refused;
    }
    resource.properties = put.properties;
    resource.properties.remove("defaultSecurityRules");
    resource
        .properties
        .insert("securityRules".into(), json!(rules));
    keep_guid(&mut resource, put.existing.as_ref());
    finish_put(state, req, resource, put.existing.is_none())
}

/// `GET`/`PUT`/`DELETE` of a subnet or a security rule. A change is made to the parent at
/// once and reported by an operation on the parent, as the network resource provider does.
pub(super) fn child(
    state: &mut State,
    req: &Req,
    group: &str,
    kind: Kind,
    parent: &str,
    collection: Collection,
    child: &str,
) -> Answer {
    let Some(group) = state.group(group).map(|g| g.name.clone()) else {
        return group_not_found(group);
    };
    let parent_id = resource_id(&group, kind, parent);
    lro::observe_resource(state, &parent_id);
    let Some(parent_resource) = state.get(&parent_id).cloned() else {
        return match req.method.as_str() {
            "DELETE" => Answer::empty(204),
            "PUT" => error(
                404,
                "ParentResourceNotFound",
                format!(
                    "Failed to perform 'write' on resource(s) of type '{}/{}', because the \
                     parent resource '{parent_id}' could not be found.",
                    kind.resource_type(),
                    collection.segment()
                ),
            ),
            _ => arm::not_found(kind, parent, &group),
        };
    };
    let field = match collection {
        Collection::Subnets => "subnets",
        _ => "securityRules",
    };
    let mut items = parent_resource
        .properties
        .get(field)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let position = items.iter().position(|i| {
        i["name"]
            .as_str()
            .is_some_and(|n| n.eq_ignore_ascii_case(child))
    });
    let child_id = format!("{parent_id}/{}/{child}", collection.segment());
    match req.method.as_str() {
        "GET" => match position {
            Some(i) => Answer::json(
                200,
                render_child(state, &parent_resource, collection, &items[i]),
            ),
            None => error(404, "NotFound", format!("Resource {child_id} not found.")),
        },
        "PUT" => {
            if let Some(op) = parent_resource.operation.clone() {
                return lro::another_in_progress(state, req, &op);
            }
            let built = match collection {
                Collection::Subnets => subnet_from(state, &parent_resource, child, &req.body),
                _ => rule_from(&parent_id, child, &req.body),
            };
            let item = match built {
                Ok(item) => item,
                Err(refused) => return refused,
            };
            let created = position.is_none();
            match position {
                Some(i) => items[i] = item,
                None => items.push(item),
            }
            if collection == Collection::SecurityRules
                && let Err(refused) = check_rule_conflicts(&items)
            {
                return refused;
            }
            let op = change_parent(state, req, &parent_id, field, items);
            let parent_now = state.get(&parent_id).expect("the parent").clone();
            let shown = subnets_or_rules(&parent_now, field)
                .find(|i| {
                    i["name"]
                        .as_str()
                        .is_some_and(|n| n.eq_ignore_ascii_case(child))
                })
                .cloned()
                .unwrap_or(Value::Null);
            let body = render_child(state, &parent_now, collection, &shown);
            lro::accepted_put(state, req, &op, if created { 201 } else { 200 }, body)
        }
        "DELETE" => {
            let Some(i) = position else {
                return Answer::empty(204);
            };
            if collection == Collection::Subnets
                && let Some(refused) = subnet_in_use(state, &items[i])
            {
                return refused;
            }
            if let Some(op) = parent_resource.operation.clone() {
                return lro::another_in_progress(state, req, &op);
            }
            items.remove(i);
            let op = change_parent(state, req, &parent_id, field, items);
            lro::accepted_delete(state, req, &op)
        }
        method => arm::method_not_allowed(method),
    }
}

fn subnets_or_rules<'a>(parent: &'a Resource, field: &str) -> impl Iterator<Item = &'a Value> {
    parent
        .properties
        .get(field)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn render_child(state: &State, parent: &Resource, collection: Collection, item: &Value) -> Value {
    if collection == Collection::Subnets {
        render_subnet(state, parent, item)
    } else {
        let mut out = item.clone();
        out["properties"]["provisioningState"] = json!(parent.state.as_str());
        out
    }
}

/// Replaces the parent's children and starts the operation that reports the change.
fn change_parent(
    state: &mut State,
    req: &Req,
    parent_id: &str,
    field: &str,
    items: Vec<Value>,
) -> String {
    let parent = state.get_mut(parent_id).expect("the parent");
    parent
        .properties
        .insert(field.to_owned(), Value::Array(items));
    parent.state = Provisioning::Updating;
    parent.etag = new_etag();
    let k = parent.key();
    lro::start(state, &k, Action::Put, req.failure.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_of_one_priority_and_direction_conflict() {
        let rule = |name: &str, priority: u32, direction: &str| json!({"name": name, "properties": {"priority": priority, "direction": direction}});
        assert!(
            check_rule_conflicts(&[rule("a", 100, "Inbound"), rule("b", 100, "Outbound")]).is_ok()
        );
        assert!(
            check_rule_conflicts(&[rule("a", 100, "Inbound"), rule("b", 100, "Inbound")]).is_err()
        );
    }
}
