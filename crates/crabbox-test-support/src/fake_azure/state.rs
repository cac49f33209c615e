//! The Azure fake's state: resources keyed by their lowercased ARM id (Resource Manager
//! compares ids without regard to case), long-running operations, issued tokens, the faults
//! and the call record. References between resources (a NIC's VM, a public IP's NIC, a disk's
//! VM) are never stored twice: they are derived from the referring resource when rendered.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use serde_json::{Map, Value, json};

use super::SUBSCRIPTION_ID;
use super::arm::Failure;
use super::faults::{Call, Fault};

/// The resource types the fake serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    ResourceGroup,
    VirtualNetwork,
    NetworkSecurityGroup,
    PublicIpAddress,
    NetworkInterface,
    VirtualMachine,
    Disk,
    Extension,
}

impl Kind {
    pub const TOP_LEVEL: [Kind; 6] = [
        Kind::VirtualNetwork,
        Kind::NetworkSecurityGroup,
        Kind::PublicIpAddress,
        Kind::NetworkInterface,
        Kind::VirtualMachine,
        Kind::Disk,
    ];

    /// The kind named by a provider namespace and type, compared without regard to case.
    pub fn from_path(namespace: &str, ty: &str) -> Option<Kind> {
        Self::TOP_LEVEL.into_iter().find(|k| {
            k.namespace().eq_ignore_ascii_case(namespace) && k.segment().eq_ignore_ascii_case(ty)
        })
    }

    pub fn namespace(self) -> &'static str {
        match self {
            Kind::ResourceGroup => "Microsoft.Resources",
            Kind::VirtualNetwork
            | Kind::NetworkSecurityGroup
            | Kind::PublicIpAddress
            | Kind::NetworkInterface => "Microsoft.Network",
            Kind::VirtualMachine | Kind::Disk | Kind::Extension => "Microsoft.Compute",
        }
    }

    /// The type's path segment, which is also its name in route strings.
    pub fn segment(self) -> &'static str {
        match self {
            Kind::ResourceGroup => "resourceGroups",
            Kind::VirtualNetwork => "virtualNetworks",
            Kind::NetworkSecurityGroup => "networkSecurityGroups",
            Kind::PublicIpAddress => "publicIPAddresses",
            Kind::NetworkInterface => "networkInterfaces",
            Kind::VirtualMachine => "virtualMachines",
            Kind::Disk => "disks",
            Kind::Extension => "extensions",
        }
    }

    /// The ARM `type` field.
    pub fn resource_type(self) -> String {
        match self {
            Kind::Extension => "Microsoft.Compute/virtualMachines/extensions".to_owned(),
            _ => format!("{}/{}", self.namespace(), self.segment()),
        }
    }

    /// The network resource provider shows etags and reports creation as `Updating`.
    pub fn is_network(self) -> bool {
        self.namespace() == "Microsoft.Network"
    }
}

/// A resource's `provisioningState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Provisioning {
    Creating,
    Updating,
    Deleting,
    Succeeded,
    Failed,
}

impl Provisioning {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "Creating",
            Self::Updating => "Updating",
            Self::Deleting => "Deleting",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
        }
    }
}

/// One resource as the fake keeps it.
#[derive(Debug, Clone)]
pub(super) struct Resource {
    pub kind: Kind,
    /// The id as shown, in the casing it was created with.
    pub id: String,
    pub name: String,
    /// The resource group's name as it was created.
    pub group: String,
    pub location: String,
    pub tags: Map<String, Value>,
    /// `properties` without `provisioningState`, which [`Resource::state`] holds.
    pub properties: Map<String, Value>,
    /// Other top-level fields (`sku`, `zones`, `plan`).
    pub extra: Map<String, Value>,
    pub state: Provisioning,
    /// The VM's `osProfile.customData` (base64), never shown, as ARM never returns it.
    pub custom_data: Option<String>,
    /// The operation in progress on it, if any.
    pub operation: Option<String>,
    /// A VM's power state: up from its create's success until its delete starts (a tags
    /// update does not stop it).
    pub running: bool,
    pub etag: String,
}

impl Resource {
    pub fn new(kind: Kind, id: String, name: &str, group: &str, location: &str) -> Self {
        Self {
            kind,
            id,
            name: name.to_owned(),
            group: group.to_owned(),
            location: location.to_owned(),
            tags: Map::new(),
            properties: Map::new(),
            extra: Map::new(),
            state: Provisioning::Succeeded,
            custom_data: None,
            operation: None,
            running: false,
            etag: new_etag(),
        }
    }

    pub fn key(&self) -> String {
        key(&self.id)
    }

    /// `properties.<name>`, `Null` when absent.
    pub fn prop(&self, name: &str) -> &Value {
        self.properties.get(name).unwrap_or(&Value::Null)
    }

    /// The common envelope: id, name, type, location, tags, etag (network), the extra
    /// top-level fields and the properties with `provisioningState`.
    pub fn envelope(&self) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert("name".into(), json!(self.name));
        out.insert("id".into(), json!(self.id));
        out.insert("type".into(), json!(self.kind.resource_type()));
        if self.kind.is_network() {
            out.insert("etag".into(), json!(self.etag));
        }
        out.insert("location".into(), json!(self.location));
        out.insert("tags".into(), Value::Object(self.tags.clone()));
        for (k, v) in &self.extra {
            out.insert(k.clone(), v.clone());
        }
        let mut properties = self.properties.clone();
        properties.insert("provisioningState".into(), json!(self.state.as_str()));
        out.insert("properties".into(), Value::Object(properties));
        out
    }
}

/// What an operation does when it completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    /// A create or update: the resource becomes `Succeeded`.
    Put,
    /// A tags update: the resource returns to the state it had.
    Patch(Provisioning),
    /// The resource (and what goes with it) is removed.
    Delete,
}

/// A long-running operation's status, as its `Azure-AsyncOperation` URL reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    InProgress,
    Succeeded,
    Failed,
    Canceled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "InProgress",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::Canceled => "Canceled",
        }
    }
}

/// A long-running operation: in progress for a number of observations, then done.
#[derive(Debug, Clone)]
pub(super) struct Operation {
    pub id: String,
    /// The key of the resource it acts on.
    pub resource: String,
    /// The provider namespace whose `locations/{location}/operations` URL reports it.
    pub namespace: &'static str,
    pub location: String,
    pub action: Action,
    /// The error it ends with, if it is to fail.
    pub failure: Option<Failure>,
    /// Observations answered `InProgress` so far, and how many it takes.
    pub seen: u32,
    pub polls: u32,
    pub status: Status,
    pub start: String,
    pub end: Option<String>,
}

/// A token the fake issued.
#[derive(Debug, Clone)]
pub(super) struct Token {
    pub expired: bool,
    pub expires_on: u64,
}

#[derive(Debug)]
pub(super) struct State {
    /// `https://127.0.0.1:<port>`: the authority host and the ARM endpoint.
    pub base: String,
    pub tokens: HashMap<String, Token>,
    pub resources: BTreeMap<String, Resource>,
    pub operations: HashMap<String, Operation>,
    pub faults: Vec<Fault>,
    pub calls: Vec<Call>,
    pub lro_polls: u32,
    pub retry_after: u32,
    pub page_size: usize,
    /// (size, location), lowercased: SKUs a test restricted.
    pub restrictions: Vec<(String, String)>,
    pub public_ips: u32,
    /// Remaining subscription reads, writes and deletes, for the rate-limit headers.
    pub remaining: [u32; 3],
}

impl State {
    pub fn new(base: String) -> Self {
        Self {
            base,
            tokens: HashMap::new(),
            resources: BTreeMap::new(),
            operations: HashMap::new(),
            faults: Vec::new(),
            calls: Vec::new(),
            lro_polls: 1,
            retry_after: 0,
            page_size: 2,
            restrictions: Vec::new(),
            public_ips: 0,
            remaining: [12_000, 1_200, 15_000],
        }
    }

    /// The resource with ARM id `id` (any casing, relative or absolute).
    pub fn get(&self, id: &str) -> Option<&Resource> {
        self.resources.get(&key(id))
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Resource> {
        self.resources.get_mut(&key(id))
    }

    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Resource> {
        self.resources.values().filter(move |r| r.kind == kind)
    }

    /// The resource group called `name`.
    pub fn group(&self, name: &str) -> Option<&Resource> {
        self.get(&group_id(name))
    }

    /// Removes a resource and what goes with it: a VM's extensions, and its OS disk and NICs
    /// when their `deleteOption` is `Delete`; a resource group's every resource.
    pub fn remove(&mut self, id: &str) -> bool {
        let k = key(id);
        let Some(removed) = self.resources.remove(&k) else {
            return false;
        };
        match removed.kind {
            Kind::ResourceGroup => {
                let prefix = format!("{k}/");
                self.resources.retain(|key, _| !key.starts_with(&prefix));
            }
            Kind::VirtualMachine => {
                let prefix = format!("{k}/extensions/");
                self.resources.retain(|key, _| !key.starts_with(&prefix));
                let os_disk = &removed.prop("storageProfile")["osDisk"];
                if os_disk["deleteOption"].as_str() == Some("Delete")
                    && let Some(disk) = os_disk["managedDisk"]["id"].as_str()
                {
                    self.resources.remove(&key(disk));
                }
                for nic in removed.prop("networkProfile")["networkInterfaces"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    if nic["properties"]["deleteOption"].as_str() == Some("Delete")
                        && let Some(id) = nic["id"].as_str()
                    {
                        self.resources.remove(&key(id));
                    }
                }
            }
            _ => {}
        }
        true
    }

    /// A new public-looking address, never handed out before by this fake.
    pub fn next_public_ip(&mut self) -> Ipv4Addr {
        self.public_ips += 1;
        let n = self.public_ips;
        Ipv4Addr::new(
            20,
            42 + (n / 62_500) as u8,
            (n / 250 % 250) as u8,
            (n % 250 + 1) as u8,
        )
    }
}

/// The lookup key of an ARM id: path only, lowercased, without a trailing slash.
pub(super) fn key(id: &str) -> String {
    let path = id
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or(id);
    let path = path.split('?').next().unwrap_or(path);
    path.trim_end_matches('/').to_ascii_lowercase()
}

/// `(parent id, child name)` of `<parent>/<collection>/<name>`.
pub(super) fn split_child(id: &str, collection: &str) -> Option<(String, String)> {
    let lowered = id.to_ascii_lowercase();
    let marker = format!("/{}/", collection.to_ascii_lowercase());
    let at = lowered.rfind(&marker)?;
    let name = &id[at + marker.len()..];
    (!name.is_empty() && !name.contains('/')).then(|| (id[..at].to_owned(), name.to_owned()))
}

pub(super) fn group_id(group: &str) -> String {
    format!("/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{group}")
}

/// The id of a top-level resource of `kind` in `group`.
pub(super) fn resource_id(group: &str, kind: Kind, name: &str) -> String {
    format!(
        "{}/providers/{}/{}/{name}",
        group_id(group),
        kind.namespace(),
        kind.segment()
    )
}

pub(super) fn new_etag() -> String {
    format!("W/\"{}\"", uuid::Uuid::new_v4())
}

/// Seconds since the Unix epoch.
pub(super) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Now, as ARM writes times: RFC 3339 in UTC.
pub(super) fn timestamp() -> String {
    rfc3339(unix_now())
}

/// `secs` since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (civil-from-days, proleptic Gregorian).
pub(super) fn rfc3339(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_ignore_case_host_query_and_trailing_slash() {
        assert_eq!(
            key("https://127.0.0.1:1/subscriptions/A/resourceGroups/RG/?api-version=1"),
            "/subscriptions/a/resourcegroups/rg"
        );
    }

    #[test]
    fn children_split_off_their_parent() {
        assert_eq!(
            split_child("/x/virtualNetworks/v/Subnets/s1", "subnets"),
            Some(("/x/virtualNetworks/v".to_owned(), "s1".to_owned()))
        );
        assert_eq!(split_child("/x/virtualNetworks/v", "subnets"), None);
    }

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
    }
}
