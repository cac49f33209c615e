//! `/images`: the system images every project sees (Ubuntu 22.04 and 24.04, x86 and Arm, as
//! one name per architecture, the way Hetzner lists them) and the project's snapshots.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::catalog::SYSTEM_IMAGES;
use super::listing::{self, Query};
use super::ssh_keys::optional_string;
use super::state::State;
use super::{Answer, ApiError, labels};

#[derive(Debug)]
#[expect(
    clippy::struct_field_names,
    reason = "the fields are named as the API names them"
)]
pub(super) struct Image {
    pub id: u64,
    /// `system`, `snapshot` or `backup`.
    pub kind: &'static str,
    /// `available` or `creating`.
    pub status: &'static str,
    pub name: Option<String>,
    pub description: String,
    image_size: Option<f64>,
    pub disk_size: u64,
    pub created: String,
    pub created_from: Option<(u64, String)>,
    pub bound_to: Option<u64>,
    pub os_flavor: String,
    pub os_version: Option<String>,
    pub architecture: &'static str,
    pub labels: BTreeMap<String, String>,
}

impl Image {
    /// A snapshot (or backup) being taken of a server: `creating` until its action finishes.
    pub fn taking(id: u64, kind: &'static str, disk_size: u64, architecture: &'static str) -> Self {
        Self {
            id,
            kind,
            status: "creating",
            name: None,
            description: String::new(),
            image_size: None,
            disk_size,
            created: super::state::now(),
            created_from: None,
            bound_to: None,
            os_flavor: "unknown".to_owned(),
            os_version: None,
            architecture,
            labels: BTreeMap::new(),
        }
    }

    /// The snapshot is taken: it is available, and has a size (compressed, so well under the
    /// disk's).
    pub fn ready(&mut self) {
        self.status = "available";
        self.image_size = Some((self.disk_size as f64 / 40.0 * 100.0).round() / 100.0);
    }

    pub fn json(&self) -> Value {
        json!({
            "id": self.id,
            "type": self.kind,
            "status": self.status,
            "name": self.name,
            "description": self.description,
            "image_size": self.image_size,
            "disk_size": self.disk_size,
            "created": self.created,
            "created_from": self.created_from.as_ref().map(|(id, name)| json!({"id": id, "name": name})),
            "bound_to": self.bound_to,
            "os_flavor": self.os_flavor,
            "os_version": self.os_version,
            "architecture": self.architecture,
            "rapid_deploy": self.kind == "system",
            "protection": {"delete": false},
            "deprecated": null,
            "deleted": null,
            "labels": self.labels,
        })
    }
}

/// The images a new project sees.
pub(super) fn system_images() -> BTreeMap<u64, Image> {
    SYSTEM_IMAGES
        .iter()
        .map(|&(id, name, architecture, version, description)| {
            let image = Image {
                id,
                kind: "system",
                status: "available",
                name: Some(name.to_owned()),
                description: description.to_owned(),
                image_size: None,
                disk_size: 5,
                created: "2024-04-25T12:00:00Z".to_owned(),
                created_from: None,
                bound_to: None,
                os_flavor: "ubuntu".to_owned(),
                os_version: Some(version.to_owned()),
                architecture,
                labels: BTreeMap::new(),
            };
            (id, image)
        })
        .collect()
}

pub(super) fn list(state: &State, query: Query<'_>) -> Answer {
    let mut images: Vec<Value> = state.images.values().map(Image::json).collect();
    listing::filter(
        &mut images,
        query,
        &[
            ("name", "name"),
            ("type", "type"),
            ("status", "status"),
            ("architecture", "architecture"),
            ("bound_to", "bound_to"),
        ],
    )?;
    listing::page(images, "images", query)
}

pub(super) fn get(state: &State, id: u64) -> Answer {
    let image = state
        .images
        .get(&id)
        .ok_or_else(|| ApiError::not_found("image"))?;
    Ok((200, json!({"image": image.json()})))
}

/// `PUT /images/{id}`: description, `type: snapshot` (turns a backup into a snapshot), labels.
pub(super) fn update(state: &mut State, id: u64, body: &Value) -> Answer {
    let image = state
        .images
        .get(&id)
        .ok_or_else(|| ApiError::not_found("image"))?;
    if image.kind == "system" {
        return Err(ApiError::new(
            403,
            "forbidden",
            "system images cannot be changed",
        ));
    }
    let description = optional_string(body, "description")?;
    let kind = match optional_string(body, "type")? {
        None => None,
        Some("snapshot") => Some("snapshot"),
        Some(_) => return Err(ApiError::invalid_field("type", "must be \"snapshot\"")),
    };
    let labels = match body.get("labels") {
        Some(value) => Some(labels::from_request(value)?),
        None => None,
    };
    let image = state.images.get_mut(&id).expect("checked above");
    if let Some(description) = description {
        description.clone_into(&mut image.description);
    }
    if let Some(kind) = kind {
        image.kind = kind;
        image.bound_to = None;
    }
    if let Some(labels) = labels {
        image.labels = labels;
    }
    Ok((200, json!({"image": image.json()})))
}

pub(super) fn delete(state: &mut State, id: u64) -> Answer {
    let image = state
        .images
        .get(&id)
        .ok_or_else(|| ApiError::not_found("image"))?;
    if image.kind == "system" {
        return Err(ApiError::new(
            403,
            "forbidden",
            "system images cannot be deleted",
        ));
    }
    state.images.remove(&id);
    Ok((204, Value::Null))
}
