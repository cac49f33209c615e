//! What moto (5.2.6) lacks around EBS snapshots, supplied by the proxy in the shapes of the
//! EC2 API reference:
//!
//! - **Snapshot tags in `CreateImage`.** EC2 tags the new image's snapshots with a
//!   `TagSpecification.N` of resource type `snapshot` (API reference: `CreateImage`); moto
//!   raises `NotImplementedError` (HTTP 500) for one. The proxy forwards the call without it,
//!   then tags the image's snapshots itself with moto's `DescribeImages` and `CreateTags`.
//! - **Fast snapshot restore**, which moto does not implement at all: the proxy keeps the
//!   state per snapshot and zone and answers `EnableFastSnapshotRestores`,
//!   `DescribeFastSnapshotRestores` and `DisableFastSnapshotRestores` (API reference pages of
//!   those names, and of `EnableFastSnapshotRestoreSuccessItem`,
//!   `EnableFastSnapshotRestoreErrorItem`, `EnableFastSnapshotRestoreStateErrorItem` and
//!   `DescribeFastSnapshotRestoreSuccessItem`). As moto's images are available at once, a
//!   restore is ready at once: `Enable…` answers `enabling` and later reads say `enabled`;
//!   `Disable…` answers `disabling` and the restore is gone. A snapshot moto does not know
//!   is an error item `InvalidSnapshot.NotFound`, a zone moto's region lacks one
//!   `InvalidParameterValue` (the reference leaves these codes open). `Describe…` filters by
//!   `snapshot-id`, `availability-zone` and `state`, and answers in one page.
//! - **`DeleteSnapshot` of a snapshot with fast restores** fails with `InvalidSnapshot.InUse`,
//!   as EC2 does until they are disabled in every zone.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use http_body_util::{BodyExt, Full};
use hyper::Response;
use hyper::body::Bytes;
use hyper::http::request::Parts;

use super::{Call, Shared, forward, xml_answer, xml_escape};
use crate::moto::ACCOUNT_ID;

type Reply = std::io::Result<Option<Response<Full<Bytes>>>>;

/// Fast snapshot restores that are on, by snapshot and zone.
#[derive(Debug, Default)]
pub(super) struct Restores(BTreeSet<(String, String)>);

/// The proxy's own answer to `call`, or `None` to let moto answer it.
pub(super) async fn answer(shared: &Shared, parts: &Parts, body: &Bytes, call: &Call) -> Reply {
    match call.action.as_str() {
        "CreateImage" if !snapshot_specs(call).is_empty() => {
            create_image(shared, parts, body, call).await
        }
        "EnableFastSnapshotRestores" => enable(shared, parts, call).await,
        "DescribeFastSnapshotRestores" => Ok(Some(describe(shared, call))),
        "DisableFastSnapshotRestores" => Ok(Some(disable(shared, call))),
        "DeleteSnapshot" => Ok(in_use(shared, call)),
        _ => Ok(None),
    }
}

/// The `N` of every `TagSpecification.N` for snapshots.
fn snapshot_specs(call: &Call) -> BTreeSet<String> {
    call.params
        .iter()
        .filter(|(_, v)| v == "snapshot")
        .filter_map(|(k, _)| {
            let n = k.strip_prefix("TagSpecification.")?;
            n.strip_suffix(".ResourceType").map(str::to_owned)
        })
        .collect()
}

/// `CreateImage` to moto without the snapshot tags, which are then put on the image's snapshots.
async fn create_image(shared: &Shared, parts: &Parts, body: &Bytes, call: &Call) -> Reply {
    let (form, tags) = without_snapshot_tags(body, &snapshot_specs(call));
    let created = forward(shared, parts, Bytes::from(form)).await?;
    let status = created.status().as_u16();
    let created = created
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let image = texts(&String::from_utf8_lossy(&created), "imageId");
    if let (200, Some(image)) = (status, image.first()) {
        let described = ask(shared, parts, "DescribeImages", &[("ImageId.1", image)]).await?;
        let mut params: Vec<(String, String)> = Vec::new();
        for (i, snapshot) in texts(&described, "snapshotId").iter().enumerate() {
            params.push((format!("ResourceId.{}", i + 1), snapshot.clone()));
        }
        for (i, (key, value)) in tags.values().enumerate() {
            params.push((format!("Tag.{}.Key", i + 1), key.clone()));
            params.push((format!("Tag.{}.Value", i + 1), value.clone()));
        }
        let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (&**k, &**v)).collect();
        ask(shared, parts, "CreateTags", &params).await?;
    }
    Ok(Some(xml_answer(status, created)))
}

/// The form of a `CreateImage` without its snapshot tag specifications (the others numbered
/// from 1 again), and the tags those specified, by their `N.M`.
fn without_snapshot_tags(
    body: &[u8],
    specs: &BTreeSet<String>,
) -> (String, BTreeMap<String, (String, String)>) {
    let mut tags: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut kept: Vec<String> = Vec::new();
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in url::form_urlencoded::parse(body) {
        let Some((n, rest)) = key
            .strip_prefix("TagSpecification.")
            .and_then(|r| r.split_once('.'))
        else {
            form.append_pair(&key, &value);
            continue;
        };
        if specs.contains(n) {
            // `Tag.M.Key` / `Tag.M.Value`.
            if let Some((m, field)) = rest.strip_prefix("Tag.").and_then(|r| r.split_once('.')) {
                let tag = tags.entry(format!("{n}.{m}")).or_default();
                if field == "Key" {
                    tag.0 = value.into_owned();
                } else {
                    tag.1 = value.into_owned();
                }
            }
            continue;
        }
        if !kept.iter().any(|k| k == n) {
            kept.push(n.to_owned());
        }
        let index = kept.iter().position(|k| k == n).unwrap_or(0) + 1;
        form.append_pair(&format!("TagSpecification.{index}.{rest}"), &value);
    }
    (form.finish(), tags)
}

/// `EnableFastSnapshotRestores`: every `SourceSnapshotId.N` in every `AvailabilityZone.N`.
async fn enable(shared: &Shared, parts: &Parts, call: &Call) -> Reply {
    let zones_here = texts(
        &ask(shared, parts, "DescribeAvailabilityZones", &[]).await?,
        "zoneName",
    );
    let mut successful = String::new();
    let mut unsuccessful = String::new();
    for snapshot in list(call, "SourceSnapshotId") {
        let known = ask(
            shared,
            parts,
            "DescribeSnapshots",
            &[("SnapshotId.1", snapshot)],
        )
        .await?;
        let known = texts(&known, "snapshotId").iter().any(|s| s == snapshot);
        let mut errors = String::new();
        for zone in list(call, "AvailabilityZone") {
            let refused = if !known {
                Some((
                    "InvalidSnapshot.NotFound",
                    format!("The snapshot '{snapshot}' does not exist."),
                ))
            } else if !zones_here.iter().any(|z| z == zone) {
                Some((
                    "InvalidParameterValue",
                    format!("Invalid availability zone: [{zone}]"),
                ))
            } else {
                None
            };
            if let Some((code, message)) = refused {
                let _ = write!(
                    errors,
                    "<item><availabilityZone>{}</availabilityZone><error><code>{code}</code>\
                     <message>{}</message></error></item>",
                    xml_escape(zone),
                    xml_escape(&message)
                );
                continue;
            }
            let key = (snapshot.to_owned(), zone.to_owned());
            let new = shared
                .state
                .lock()
                .expect("proxy state")
                .restores
                .0
                .insert(key);
            let state = if new { "enabling" } else { "enabled" };
            successful.push_str(&restore_item(snapshot, zone, state));
        }
        if !errors.is_empty() {
            let _ = write!(
                unsuccessful,
                "<item><snapshotId>{}</snapshotId><fastSnapshotRestoreStateErrorSet>{errors}\
                 </fastSnapshotRestoreStateErrorSet></item>",
                xml_escape(snapshot)
            );
        }
    }
    Ok(Some(response(
        "EnableFastSnapshotRestores",
        &format!(
            "<successful>{successful}</successful><unsuccessful>{unsuccessful}</unsuccessful>"
        ),
    )))
}

/// `DescribeFastSnapshotRestores`, with its `snapshot-id`, `availability-zone` and `state`
/// filters.
fn describe(shared: &Shared, call: &Call) -> Response<Full<Bytes>> {
    let filters = filters(call);
    let passes = |name: &str, value: &str| {
        filters
            .get(name)
            .is_none_or(|values| values.iter().any(|v| v == value))
    };
    let restores = shared.state.lock().expect("proxy state").restores.0.clone();
    let mut items = String::new();
    for (snapshot, zone) in &restores {
        if passes("snapshot-id", snapshot)
            && passes("availability-zone", zone)
            && passes("state", "enabled")
        {
            items.push_str(&restore_item(snapshot, zone, "enabled"));
        }
    }
    response(
        "DescribeFastSnapshotRestores",
        &format!("<fastSnapshotRestoreSet>{items}</fastSnapshotRestoreSet>"),
    )
}

/// `DisableFastSnapshotRestores`: a restore that is off already reads `disabled`.
fn disable(shared: &Shared, call: &Call) -> Response<Full<Bytes>> {
    let mut items = String::new();
    for snapshot in list(call, "SourceSnapshotId") {
        for zone in list(call, "AvailabilityZone") {
            let key = (snapshot.to_owned(), zone.to_owned());
            let was_on = shared
                .state
                .lock()
                .expect("proxy state")
                .restores
                .0
                .remove(&key);
            let state = if was_on { "disabling" } else { "disabled" };
            items.push_str(&restore_item(snapshot, zone, state));
        }
    }
    response(
        "DisableFastSnapshotRestores",
        &format!("<successful>{items}</successful><unsuccessful/>"),
    )
}

/// EC2's refusal of a `DeleteSnapshot` while the snapshot has fast restores in some zone.
fn in_use(shared: &Shared, call: &Call) -> Option<Response<Full<Bytes>>> {
    let snapshot = call.param("SnapshotId")?;
    let zone = {
        let state = shared.state.lock().expect("proxy state");
        let found = state.restores.0.iter().find(|(s, _)| s == snapshot);
        found.map(|(_, zone)| zone.clone())?
    };
    let message = format!(
        "The snapshot {snapshot} is currently enabled for fast restores in {zone}. Fast \
         snapshot restores must be disabled within all Availability Zones before the snapshot \
         may be deleted."
    );
    Some(xml_answer(
        400,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>\
             <Code>InvalidSnapshot.InUse</Code><Message>{}</Message></Error></Errors>\
             <RequestID>{}</RequestID></Response>",
            xml_escape(&message),
            uuid::Uuid::new_v4()
        ),
    ))
}

/// One `…SuccessItem` (the three operations' items share these fields).
fn restore_item(snapshot: &str, zone: &str, state: &str) -> String {
    format!(
        "<item><snapshotId>{}</snapshotId><availabilityZone>{}</availabilityZone>\
         <state>{state}</state><stateTransitionReason>Client.UserInitiated</stateTransitionReason>\
         <ownerId>{ACCOUNT_ID}</ownerId></item>",
        xml_escape(snapshot),
        xml_escape(zone)
    )
}

/// `<{action}Response>` around `inner`, with a request id.
fn response(action: &str, inner: &str) -> Response<Full<Bytes>> {
    xml_answer(
        200,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{action}Response \
             xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>{}</requestId>\
             {inner}</{action}Response>",
            uuid::Uuid::new_v4()
        ),
    )
}

/// The values of a flattened list parameter (`AvailabilityZone.1`, `AvailabilityZone.2`…).
fn list<'a>(call: &'a Call, name: &str) -> Vec<&'a str> {
    call.params
        .iter()
        .filter(|(k, _)| {
            k.strip_prefix(name)
                .and_then(|r| r.strip_prefix('.'))
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|(_, v)| v.as_str())
        .collect()
}

/// `Filter.N.Name` and `Filter.N.Value.M`, by name.
fn filters(call: &Call) -> BTreeMap<String, Vec<String>> {
    let mut names = BTreeMap::new();
    let mut values: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, value) in &call.params {
        let Some((n, rest)) = key.strip_prefix("Filter.").and_then(|r| r.split_once('.')) else {
            continue;
        };
        if rest == "Name" {
            names.insert(n.to_owned(), value.clone());
        } else if rest.starts_with("Value.") {
            values.entry(n.to_owned()).or_default().push(value.clone());
        }
    }
    names
        .into_iter()
        .map(|(n, name)| (name, values.remove(&n).unwrap_or_default()))
        .collect()
}

/// Asks moto itself (with the call's own credentials, hence its region) and returns the body.
async fn ask(
    shared: &Shared,
    parts: &Parts,
    action: &str,
    params: &[(&str, &str)],
) -> std::io::Result<String> {
    let form = {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("Action", action)
            .append_pair("Version", "2016-11-15");
        for (key, value) in params {
            form.append_pair(key, value);
        }
        form.finish()
    };
    let answer = forward(shared, parts, Bytes::from(form)).await?;
    let body = answer
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// The texts of every element named `tag`.
fn texts(xml: &str, tag: &str) -> Vec<String> {
    let Ok(doc) = roxmltree::Document::parse(xml) else {
        return Vec::new();
    };
    doc.descendants()
        .filter(|n| n.has_tag_name(tag))
        .filter_map(|n| n.text().map(str::to_owned))
        .collect()
}
