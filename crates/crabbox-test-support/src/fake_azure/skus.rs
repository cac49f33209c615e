//! The resource SKU catalogue (`GET /subscriptions/{sub}/providers/Microsoft.Compute/skus`,
//! the "Resource Skus - List" reference): every VM size of the Crabbox size tables
//! (spec/providers.md §2.3) in every location the fake serves, with the capabilities Crabbox
//! reads (`vCPUs`, `MemoryGB`, `EphemeralOSDiskSupported`, …) and the restrictions a test adds.
//! A few disk SKUs are listed too, so a client has to filter by `resourceType` as on Azure.

use std::sync::LazyLock;

use serde_json::{Value, json};

use super::arm::{Answer, Req, error_at};
use super::faults::{AzureError, ErrorContext};
use super::state::State;

/// The locations the fake serves.
pub const LOCATIONS: [&str; 5] = ["eastus", "eastus2", "westus2", "westeurope", "northeurope"];

/// One VM size.
#[derive(Debug, Clone)]
pub(super) struct Sku {
    pub name: String,
    pub family: &'static str,
    pub vcpus: u32,
    memory_gb: u32,
    /// A local (temp) disk, which ephemeral OS disks need.
    local_disk: bool,
    arm64: bool,
    /// v6 and Arm sizes boot only generation 2 images.
    gen2_only: bool,
}

static CATALOG: LazyLock<Vec<Sku>> = LazyLock::new(|| {
    const D: [u32; 8] = [2, 4, 8, 16, 32, 48, 64, 96];
    let mut out = Vec::new();
    let mut add = |name: String, family, vcpus, gib_per_vcpu, local_disk, arm64, gen2_only| {
        out.push(Sku {
            name,
            family,
            vcpus,
            memory_gb: vcpus * gib_per_vcpu,
            local_disk,
            arm64,
            gen2_only,
        });
    };
    for n in D {
        add(
            format!("Standard_D{n}ads_v6"),
            "standardDADSv6Family",
            n,
            4,
            true,
            false,
            true,
        );
        add(
            format!("Standard_D{n}as_v6"),
            "standardDASv6Family",
            n,
            4,
            false,
            false,
            true,
        );
        add(
            format!("Standard_D{n}ads_v5"),
            "standardDADSv5Family",
            n,
            4,
            true,
            false,
            false,
        );
        add(
            format!("Standard_D{n}ds_v5"),
            "standardDDSv5Family",
            n,
            4,
            true,
            false,
            false,
        );
        add(
            format!("Standard_D{n}pds_v6"),
            "standardDPDSv6Family",
            n,
            4,
            true,
            true,
            true,
        );
        add(
            format!("Standard_D{n}ps_v6"),
            "standardDPSv6Family",
            n,
            4,
            false,
            true,
            true,
        );
    }
    for n in D.into_iter().chain([128, 192]) {
        add(
            format!("Standard_D{n}ds_v6"),
            "standardDDSv6Family",
            n,
            4,
            true,
            false,
            true,
        );
    }
    for n in [2, 4, 8, 16, 32, 48, 64, 72] {
        add(
            format!("Standard_F{n}s_v2"),
            "standardFSv2Family",
            n,
            2,
            true,
            false,
            false,
        );
    }
    out
});

/// The size called `name` (any casing).
pub(super) fn find(name: &str) -> Option<&'static Sku> {
    CATALOG.iter().find(|s| s.name.eq_ignore_ascii_case(name))
}

/// The size's quota family and vCPUs.
pub(super) fn family(name: &str) -> Option<(String, u32)> {
    find(name).map(|s| (s.family.to_owned(), s.vcpus))
}

pub(super) fn is_location(location: &str) -> bool {
    LOCATIONS.iter().any(|l| l.eq_ignore_ascii_case(location))
}

fn restricted(state: &State, size: &str, location: &str) -> bool {
    state
        .restrictions
        .iter()
        .any(|(s, l)| s.eq_ignore_ascii_case(size) && l.eq_ignore_ascii_case(location))
}

/// The VM size check of a VM create: unknown sizes are `InvalidParameter` (400), sizes a
/// test restricted in the location `SkuNotAvailable` (409).
pub(super) fn check_size(
    state: &State,
    size: &str,
    location: &str,
    vm_id: &str,
) -> Result<&'static Sku, Answer> {
    let Some(sku) = find(size) else {
        let available: Vec<&str> = CATALOG.iter().map(|s| s.name.as_str()).collect();
        return Err(error_at(
            400,
            "InvalidParameter",
            format!(
                "The requested VM size {size} is not available in the current region. The sizes \
                 available in the current region are: {}. Find out more on the available VM \
                 sizes in each region at https://aka.ms/azure-regions.",
                available.join(",")
            ),
            "vmSize",
        ));
    };
    if restricted(state, size, location) {
        let e = AzureError::SkuNotAvailable;
        let ctx = ErrorContext {
            resource_id: vm_id.to_owned(),
            location: location.to_owned(),
            ..ErrorContext::default()
        };
        return Err(super::arm::error(e.status(), e.code(), e.message(&ctx)));
    }
    Ok(sku)
}

impl Sku {
    pub fn ephemeral_os_disk(&self) -> bool {
        self.local_disk
    }

    fn json(&self, location: &str, restricted: bool) -> Value {
        let yes_no = |b: bool| if b { "True" } else { "False" };
        let capabilities = [
            (
                "MaxResourceVolumeMB",
                if self.local_disk {
                    (self.vcpus * 38_400).to_string()
                } else {
                    "0".to_owned()
                },
            ),
            ("OSVhdSizeMB", "1047552".to_owned()),
            ("vCPUs", self.vcpus.to_string()),
            ("MemoryPreservingMaintenanceSupported", "True".to_owned()),
            (
                "HyperVGenerations",
                if self.gen2_only { "V2" } else { "V1,V2" }.to_owned(),
            ),
            ("MemoryGB", self.memory_gb.to_string()),
            (
                "MaxDataDiskCount",
                (self.vcpus * 2).clamp(4, 64).to_string(),
            ),
            (
                "CpuArchitectureType",
                if self.arm64 { "Arm64" } else { "x64" }.to_owned(),
            ),
            ("LowPriorityCapable", "True".to_owned()),
            ("PremiumIO", "True".to_owned()),
            ("VMDeploymentTypes", "IaaS".to_owned()),
            ("vCPUsAvailable", self.vcpus.to_string()),
            (
                "vCPUsPerCore",
                if self.arm64 { "1" } else { "2" }.to_owned(),
            ),
            (
                "EphemeralOSDiskSupported",
                yes_no(self.local_disk).to_owned(),
            ),
            ("EncryptionAtHostSupported", "True".to_owned()),
            ("AcceleratedNetworkingEnabled", "True".to_owned()),
            ("RdmaEnabled", "False".to_owned()),
            (
                "MaxNetworkInterfaces",
                (self.vcpus / 2).clamp(2, 8).to_string(),
            ),
        ];
        let restrictions = if restricted {
            json!([{
                "type": "Location",
                "values": [location],
                "restrictionInfo": {"locations": [location]},
                "reasonCode": "NotAvailableForSubscription"
            }])
        } else {
            json!([])
        };
        json!({
            "resourceType": "virtualMachines",
            "name": self.name,
            "tier": "Standard",
            "size": self.name.trim_start_matches("Standard_"),
            "family": self.family,
            "locations": [location],
            "locationInfo": [{"location": location, "zones": ["1", "2", "3"], "zoneDetails": []}],
            "capabilities": capabilities
                .iter()
                .map(|(name, value)| json!({"name": name, "value": value}))
                .collect::<Vec<_>>(),
            "restrictions": restrictions,
        })
    }
}

fn disk_sku(name: &str, tier: &str, location: &str) -> Value {
    json!({
        "resourceType": "disks",
        "name": name,
        "tier": tier,
        "size": "E10",
        "family": "StandardSSDZRS",
        "locations": [location],
        "locationInfo": [{"location": location, "zones": ["1", "2", "3"], "zoneDetails": []}],
        "capabilities": [{"name": "MaxSizeGiB", "value": "32767"}, {"name": "MinSizeGiB", "value": "0"}],
        "restrictions": []
    })
}

/// The location of a `$filter=location eq '<location>'`, if the filter is one.
fn filter_location(filter: &str) -> Option<String> {
    let lowered = filter.to_ascii_lowercase();
    let rest = lowered.trim().strip_prefix("location")?.trim_start();
    let rest = rest.strip_prefix("eq")?.trim_start().strip_prefix('\'')?;
    Some(rest.split('\'').next()?.to_owned())
}

/// `GET …/providers/Microsoft.Compute/skus[?$filter=location eq '<location>']`: one entry
/// per SKU and location, in one page.
pub(super) fn list(state: &State, req: &Req) -> Answer {
    let only = req.query("$filter").and_then(filter_location);
    let mut value = Vec::new();
    for location in LOCATIONS {
        if only.as_deref().is_some_and(|l| l != location) {
            continue;
        }
        for sku in CATALOG.iter() {
            value.push(sku.json(location, restricted(state, &sku.name, location)));
        }
        for (name, tier) in [
            ("Standard_LRS", "Standard"),
            ("StandardSSD_LRS", "Standard"),
            ("Premium_LRS", "Premium"),
        ] {
            value.push(disk_sku(name, tier, location));
        }
    }
    Answer::json(200, json!({"value": value}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_filters_are_read() {
        assert_eq!(
            filter_location("location eq 'eastus'").as_deref(),
            Some("eastus")
        );
        assert_eq!(
            filter_location("Location eq 'WestEurope'").as_deref(),
            Some("westeurope")
        );
        assert_eq!(filter_location("name eq 'x'"), None);
    }

    #[test]
    fn the_catalogue_has_every_size_of_the_tables() {
        for size in [
            "Standard_D2ads_v6",
            "Standard_F72s_v2",
            "Standard_D192ds_v6",
            "Standard_D96pds_v6",
            "Standard_D8as_v6",
        ] {
            assert!(find(size).is_some(), "{size}");
        }
        assert!(!find("Standard_D8as_v6").unwrap().ephemeral_os_disk());
    }
}
