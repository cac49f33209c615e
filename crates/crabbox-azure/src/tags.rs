//! Lease labels as Azure tags and back: label keys that start with `windows` are stored as
//! `crabbox_windows…` tags (spec/providers.md §2.3), and a VM's location is kept in a label.

use std::collections::BTreeMap;

use serde_json::Value;

/// The tag a VM's location is kept in.
pub const LOCATION_LABEL: &str = "azure_location";

/// Labels as Azure tags: keys that start with `windows` are kept as `crabbox_windows…`.
pub fn tags_of(labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    labels
        .iter()
        .map(|(k, v)| {
            let key = if k.starts_with("windows") {
                format!("crabbox_{k}")
            } else {
                k.clone()
            };
            (key, v.clone())
        })
        .collect()
}

/// A resource's tags as labels (the inverse of [`tags_of`]).
pub fn labels_of(tags: &Value) -> BTreeMap<String, String> {
    tags.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            let key = k
                .strip_prefix("crabbox_")
                .filter(|k| k.starts_with("windows"));
            Some((key.unwrap_or(k).to_owned(), v.as_str()?.to_owned()))
        })
        .collect()
}
