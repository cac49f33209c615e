//! `/ssh_keys`: a project's SSH keys, unique by name and by fingerprint. The fingerprint is
//! Hetzner's: the MD5 of the key's blob as colon-separated hex (`b7:2f:…`), which is what
//! `ssh-keygen -E md5 -lf` prints after `MD5:`.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::{Value, json};

use super::listing::{self, Query};
use super::state::{State, now};
use super::{Answer, ApiError, labels, md5};

/// The key types OpenSSH writes and Hetzner accepts.
const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ssh-dss",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

#[derive(Debug)]
pub(super) struct SshKey {
    pub id: u64,
    pub name: String,
    fingerprint: String,
    public_key: String,
    labels: BTreeMap<String, String>,
    created: String,
}

impl SshKey {
    pub fn json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "fingerprint": self.fingerprint,
            "public_key": self.public_key,
            "labels": self.labels,
            "created": self.created,
        })
    }
}

/// The MD5 fingerprint of an OpenSSH public key line (`<type> <base64 blob> [comment]`), or
/// why it is not one.
pub(super) fn fingerprint(public_key: &str) -> Result<String, String> {
    let mut fields = public_key.split_whitespace();
    let (Some(kind), Some(encoded)) = (fields.next(), fields.next()) else {
        return Err("expected \"<type> <base64 key> [comment]\"".to_owned());
    };
    if !KEY_TYPES.contains(&kind) {
        return Err(format!("unsupported key type {kind:?}"));
    }
    let blob = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| format!("the key is not base64: {e}"))?;
    // The blob starts with its own type as an SSH string: a big-endian length, then the name.
    let named = blob
        .get(..4)
        .map(|len| u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize)
        .and_then(|len| blob.get(4..4 + len));
    if named != Some(kind.as_bytes()) {
        return Err(format!("the key data is not a {kind} key"));
    }
    let hex: Vec<String> = md5::digest(&blob)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(hex.join(":"))
}

pub(super) fn list(state: &State, query: Query<'_>) -> Answer {
    let mut keys: Vec<Value> = state.ssh_keys.values().map(SshKey::json).collect();
    listing::filter(
        &mut keys,
        query,
        &[("name", "name"), ("fingerprint", "fingerprint")],
    )?;
    listing::page(keys, "ssh_keys", query)
}

pub(super) fn get(state: &State, id: u64) -> Answer {
    let key = state
        .ssh_keys
        .get(&id)
        .ok_or_else(|| ApiError::not_found("ssh_key"))?;
    Ok((200, json!({"ssh_key": key.json()})))
}

pub(super) fn create(state: &mut State, body: &Value) -> Answer {
    let name = required_string(body, "name")?;
    let public_key = required_string(body, "public_key")?.trim().to_owned();
    let fingerprint =
        fingerprint(&public_key).map_err(|why| ApiError::invalid_field("public_key", &why))?;
    let labels = labels::from_request(&body["labels"])?;
    if state.ssh_keys.values().any(|k| k.name == name) {
        return Err(ApiError::uniqueness(
            "name",
            "SSH key with the same name already exists",
        ));
    }
    if state
        .ssh_keys
        .values()
        .any(|k| k.fingerprint == fingerprint)
    {
        return Err(ApiError::uniqueness(
            "public_key",
            "SSH key with the same fingerprint already exists",
        ));
    }
    let id = state.new_id("ssh_key");
    let key = SshKey {
        id,
        name: name.to_owned(),
        fingerprint,
        public_key,
        labels,
        created: now(),
    };
    let body = json!({"ssh_key": key.json()});
    state.ssh_keys.insert(id, key);
    Ok((201, body))
}

/// `PUT /ssh_keys/{id}`: a new name and/or labels (which replace the old ones).
pub(super) fn update(state: &mut State, id: u64, body: &Value) -> Answer {
    if !state.ssh_keys.contains_key(&id) {
        return Err(ApiError::not_found("ssh_key"));
    }
    let name = optional_string(body, "name")?;
    if let Some(name) = name
        && state
            .ssh_keys
            .values()
            .any(|k| k.name == name && k.id != id)
    {
        return Err(ApiError::uniqueness(
            "name",
            "SSH key with the same name already exists",
        ));
    }
    let labels = match body.get("labels") {
        Some(value) => Some(labels::from_request(value)?),
        None => None,
    };
    let key = state.ssh_keys.get_mut(&id).expect("checked above");
    if let Some(name) = name {
        name.clone_into(&mut key.name);
    }
    if let Some(labels) = labels {
        key.labels = labels;
    }
    Ok((200, json!({"ssh_key": key.json()})))
}

pub(super) fn delete(state: &mut State, id: u64) -> Answer {
    state
        .ssh_keys
        .remove(&id)
        .ok_or_else(|| ApiError::not_found("ssh_key"))?;
    Ok((204, Value::Null))
}

/// A required, non-empty string field of a request body.
pub(super) fn required_string<'a>(body: &'a Value, field: &str) -> Result<&'a str, ApiError> {
    match &body[field] {
        Value::Null => Err(ApiError::invalid_field(
            field,
            "Missing data for required field.",
        )),
        Value::String(s) if !s.trim().is_empty() => Ok(s),
        _ => Err(ApiError::invalid_field(field, "Not a valid string.")),
    }
}

/// An optional string field (absent or `null`: `None`).
pub(super) fn optional_string<'a>(
    body: &'a Value,
    field: &str,
) -> Result<Option<&'a str>, ApiError> {
    match &body[field] {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        _ => Err(ApiError::invalid_field(field, "Not a valid string.")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ssh-keygen -E md5 -lf` of this key prints
    /// `256 MD5:e5:a4:cc:ef:f9:a3:16:d9:4a:ac:f0:b5:5c:6f:65:41 test (ED25519)`.
    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIP8DYtQervPzqasCQF7mpmb2N2dj9gMPWoay09pG0Gv2 test";

    #[test]
    fn fingerprints_are_the_md5_of_the_key_blob() {
        assert_eq!(
            fingerprint(KEY).unwrap(),
            "e5:a4:cc:ef:f9:a3:16:d9:4a:ac:f0:b5:5c:6f:65:41"
        );
    }

    #[test]
    fn what_is_not_a_public_key_has_no_fingerprint() {
        for bad in [
            "",
            "ssh-ed25519",
            "ssh-foo AAAAC3NzaC1lZDI1NTE5AAAAIP8DYtQervPzqasCQF7mpmb2N2dj9gMPWoay09pG0Gv2",
            "ssh-ed25519 not*base64",
            "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIP8DYtQervPzqasCQF7mpmb2N2dj9gMPWoay09pG0Gv2",
        ] {
            assert!(fingerprint(bad).is_err(), "{bad:?}");
        }
    }
}
