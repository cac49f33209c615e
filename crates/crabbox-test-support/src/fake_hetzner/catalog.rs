//! What every Hetzner project sees the same: locations, server types with their prices, and the
//! system images. Figures are close to Hetzner's public price list (net EUR, early 2026), not
//! exact: tests read them back, they do not check them against Hetzner.

use serde_json::{Value, json};

use super::listing::{self, Query};
use super::{Answer, ApiError};

/// A location and the one data centre the fake gives it.
#[derive(Debug)]
pub(super) struct Location {
    pub id: u64,
    pub name: &'static str,
    description: &'static str,
    country: &'static str,
    city: &'static str,
    latitude: f64,
    longitude: f64,
    network_zone: &'static str,
    datacenter_id: u64,
    pub datacenter: &'static str,
    /// Public IPv4 addresses are handed out from `<a>.<b>.0.0/16`.
    pub ipv4_prefix: [u8; 2],
    region: Region,
}

/// Where a location is: server types are offered, and priced, by region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Region {
    Europe,
    UnitedStates,
    Singapore,
}

impl Region {
    /// The price of a server type here, as a fraction of its European price.
    fn price_factor(self) -> (u64, u64) {
        match self {
            Self::Europe => (1, 1),
            Self::UnitedStates => (6, 5),
            Self::Singapore => (27, 20),
        }
    }

    /// Traffic included per month, in bytes, and the price of each further TB (1e-4 EUR).
    fn traffic(self) -> (u64, u64) {
        const TIB: u64 = 1 << 40;
        match self {
            Self::Europe => (20 * TIB, 1_0000),
            Self::UnitedStates => (TIB, 1_0000),
            Self::Singapore => (TIB / 2, 7_4000),
        }
    }
}

pub(super) static LOCATIONS: &[Location] = &[
    Location {
        id: 1,
        name: "fsn1",
        description: "Falkenstein DC Park 1",
        country: "DE",
        city: "Falkenstein",
        latitude: 50.47612,
        longitude: 12.370_071,
        network_zone: "eu-central",
        datacenter_id: 4,
        datacenter: "fsn1-dc14",
        ipv4_prefix: [49, 12],
        region: Region::Europe,
    },
    Location {
        id: 2,
        name: "nbg1",
        description: "Nuremberg DC Park 1",
        country: "DE",
        city: "Nuremberg",
        latitude: 49.452_102,
        longitude: 11.076_665,
        network_zone: "eu-central",
        datacenter_id: 2,
        datacenter: "nbg1-dc3",
        ipv4_prefix: [116, 203],
        region: Region::Europe,
    },
    Location {
        id: 3,
        name: "hel1",
        description: "Helsinki DC Park 1",
        country: "FI",
        city: "Helsinki",
        latitude: 60.169_855,
        longitude: 24.938_379,
        network_zone: "eu-central",
        datacenter_id: 3,
        datacenter: "hel1-dc2",
        ipv4_prefix: [95, 216],
        region: Region::Europe,
    },
    Location {
        id: 4,
        name: "ash",
        description: "Ashburn, VA",
        country: "US",
        city: "Ashburn, VA",
        latitude: 39.045_821,
        longitude: -77.487_073,
        network_zone: "us-east",
        datacenter_id: 5,
        datacenter: "ash-dc1",
        ipv4_prefix: [5, 161],
        region: Region::UnitedStates,
    },
    Location {
        id: 5,
        name: "hil",
        description: "Hillsboro, OR",
        country: "US",
        city: "Hillsboro, OR",
        latitude: 45.54222,
        longitude: -122.951_924,
        network_zone: "us-west",
        datacenter_id: 6,
        datacenter: "hil-dc1",
        ipv4_prefix: [5, 78],
        region: Region::UnitedStates,
    },
    Location {
        id: 6,
        name: "sin",
        description: "Singapore",
        country: "SG",
        city: "Singapore",
        latitude: 1.283_333,
        longitude: 103.833_333,
        network_zone: "ap-southeast",
        datacenter_id: 7,
        datacenter: "sin-dc1",
        ipv4_prefix: [5, 223],
        region: Region::Singapore,
    },
];

impl Location {
    /// The location named `key` or with id `key`.
    pub fn find(key: &str) -> Option<&'static Self> {
        LOCATIONS
            .iter()
            .find(|l| l.name == key || l.id.to_string() == key)
    }

    /// The location of the data centre named `key` (`fsn1-dc14`) or with id `key`.
    pub fn of_datacenter(key: &str) -> Option<&'static Self> {
        LOCATIONS
            .iter()
            .find(|l| l.datacenter == key || l.datacenter_id.to_string() == key)
    }

    pub fn json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "country": self.country,
            "city": self.city,
            "latitude": self.latitude,
            "longitude": self.longitude,
            "network_zone": self.network_zone,
        })
    }

    /// The server's `datacenter` (deprecated by Hetzner, still sent and still read).
    pub fn datacenter_json(&self) -> Value {
        json!({
            "id": self.datacenter_id,
            "name": self.datacenter,
            "description": format!("{} DC {}", self.city, self.datacenter_id),
            "location": self.json(),
        })
    }
}

/// A server type. Prices are European, net, in 1e-4 EUR.
#[derive(Debug)]
pub(super) struct ServerType {
    pub id: u64,
    pub name: &'static str,
    pub cores: u32,
    pub memory_gb: u32,
    pub disk_gb: u64,
    dedicated: bool,
    pub architecture: &'static str,
    /// Offered in Europe only (the Intel cost-optimized and the Arm types).
    europe_only: bool,
    monthly: u64,
    hourly: u64,
}

const fn st(
    id: u64,
    name: &'static str,
    (cores, memory_gb, disk_gb): (u32, u32, u64),
    architecture: &'static str,
    (dedicated, europe_only): (bool, bool),
    (monthly, hourly): (u64, u64),
) -> ServerType {
    ServerType {
        id,
        name,
        cores,
        memory_gb,
        disk_gb,
        dedicated,
        architecture,
        europe_only,
        monthly,
        hourly,
    }
}

const SHARED_EU: (bool, bool) = (false, true);
const SHARED: (bool, bool) = (false, false);
const DEDICATED: (bool, bool) = (true, false);

pub(super) static SERVER_TYPES: &[ServerType] = &[
    st(45, "cax11", (2, 4, 40), "arm", SHARED_EU, (3_7900, 61)),
    st(93, "cax21", (4, 8, 80), "arm", SHARED_EU, (6_4900, 104)),
    st(94, "cax31", (8, 16, 160), "arm", SHARED_EU, (12_4900, 200)),
    st(95, "cax41", (16, 32, 320), "arm", SHARED_EU, (24_4900, 393)),
    st(96, "ccx13", (2, 8, 80), "x86", DEDICATED, (12_4900, 200)),
    st(97, "ccx23", (4, 16, 160), "x86", DEDICATED, (24_4900, 393)),
    st(98, "ccx33", (8, 32, 240), "x86", DEDICATED, (48_4900, 777)),
    st(
        99,
        "ccx43",
        (16, 64, 360),
        "x86",
        DEDICATED,
        (96_4900, 1546),
    ),
    st(
        100,
        "ccx53",
        (32, 128, 600),
        "x86",
        DEDICATED,
        (192_4900, 3085),
    ),
    st(
        101,
        "ccx63",
        (48, 192, 960),
        "x86",
        DEDICATED,
        (288_4900, 4623),
    ),
    st(114, "cx23", (2, 4, 40), "x86", SHARED_EU, (2_9900, 48)),
    st(115, "cx33", (4, 8, 80), "x86", SHARED_EU, (4_9900, 80)),
    st(116, "cx43", (8, 16, 160), "x86", SHARED_EU, (9_4900, 152)),
    st(117, "cx53", (16, 32, 320), "x86", SHARED_EU, (17_4900, 280)),
    st(118, "cpx22", (2, 4, 80), "x86", SHARED, (5_9900, 96)),
    st(119, "cpx32", (4, 8, 160), "x86", SHARED, (10_4900, 168)),
    st(120, "cpx42", (8, 16, 320), "x86", SHARED, (19_4900, 312)),
    st(121, "cpx52", (12, 24, 480), "x86", SHARED, (27_4900, 440)),
    st(122, "cpx62", (16, 32, 640), "x86", SHARED, (38_4900, 617)),
];

impl ServerType {
    /// The type named `key` or with id `key`.
    pub fn find(key: &str) -> Option<&'static Self> {
        SERVER_TYPES
            .iter()
            .find(|t| t.name == key || t.id.to_string() == key)
    }

    pub fn available_in(&self, location: &Location) -> bool {
        !self.europe_only || location.region == Region::Europe
    }

    /// The locations that offer this type, the first being where a server lands when its
    /// request names none.
    pub fn locations(&self) -> impl Iterator<Item = &'static Location> {
        LOCATIONS.iter().filter(|l| self.available_in(l))
    }

    pub fn json(&self) -> Value {
        let prices: Vec<Value> = self.locations().map(|l| self.price(l)).collect();
        let locations: Vec<Value> = self
            .locations()
            .map(|l| json!({"id": l.id, "name": l.name, "deprecation": null}))
            .collect();
        json!({
            "id": self.id,
            "name": self.name,
            "description": self.name.to_uppercase(),
            "category": if self.dedicated { "Dedicated vCPU" } else { "Shared vCPU" },
            "cores": self.cores,
            "memory": f64::from(self.memory_gb),
            "disk": self.disk_gb,
            "deprecated": false,
            "deprecation": null,
            "prices": prices,
            "storage_type": "local",
            "cpu_type": if self.dedicated { "dedicated" } else { "shared" },
            "architecture": self.architecture,
            "included_traffic": 0,
            "locations": locations,
        })
    }

    /// The type's price at `location`, as Hetzner writes prices: decimal strings, gross with
    /// German VAT (19 %).
    fn price(&self, location: &Location) -> Value {
        let (num, den) = location.region.price_factor();
        let local = |net: u64| (net * num + den / 2) / den;
        let (included, per_tb) = location.region.traffic();
        json!({
            "location": location.name,
            "price_hourly": amount(local(self.hourly)),
            "price_monthly": amount(local(self.monthly)),
            "included_traffic": included,
            "price_per_tb_traffic": amount(per_tb),
        })
    }
}

/// `{"net", "gross"}` for a net amount in 1e-4 EUR: ten decimals net, sixteen gross, the
/// precision Hetzner answers with.
fn amount(net: u64) -> Value {
    let gross = net * 119; // 1e-6 EUR
    json!({
        "net": format!("{}.{:010}", net / 10_000, (net % 10_000) * 1_000_000),
        "gross": format!("{}.{:016}", gross / 1_000_000, (gross % 1_000_000) * 10_000_000_000),
    })
}

/// A system image the fake starts with: (id, name, architecture, OS version, description).
pub(super) static SYSTEM_IMAGES: &[(u64, &str, &str, &str, &str)] = &[
    (67_794_396, "ubuntu-22.04", "x86", "22.04", "Ubuntu 22.04"),
    (103_908_070, "ubuntu-22.04", "arm", "22.04", "Ubuntu 22.04"),
    (161_547_269, "ubuntu-24.04", "x86", "24.04", "Ubuntu 24.04"),
    (161_547_270, "ubuntu-24.04", "arm", "24.04", "Ubuntu 24.04"),
];

/// `GET /server_types` (filter: `name`).
pub(super) fn list_server_types(query: Query<'_>) -> Answer {
    let mut types: Vec<Value> = SERVER_TYPES.iter().map(ServerType::json).collect();
    listing::filter(&mut types, query, &[("name", "name")])?;
    listing::page(types, "server_types", query)
}

pub(super) fn get_server_type(id: u64) -> Answer {
    let found = SERVER_TYPES.iter().find(|t| t.id == id);
    let server_type = found.ok_or_else(|| ApiError::not_found("server_type"))?;
    Ok((200, json!({"server_type": server_type.json()})))
}

/// `GET /locations` (filter: `name`).
pub(super) fn list_locations(query: Query<'_>) -> Answer {
    let mut locations: Vec<Value> = LOCATIONS.iter().map(Location::json).collect();
    listing::filter(&mut locations, query, &[("name", "name")])?;
    listing::page(locations, "locations", query)
}

pub(super) fn get_location(id: u64) -> Answer {
    let found = LOCATIONS.iter().find(|l| l.id == id);
    let location = found.ok_or_else(|| ApiError::not_found("location"))?;
    Ok((200, json!({"location": location.json()})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_decimal_strings_with_vat_in_the_gross() {
        assert_eq!(
            amount(48),
            json!({"net": "0.0048000000", "gross": "0.0057120000000000"})
        );
        assert_eq!(
            amount(2_9900),
            json!({"net": "2.9900000000", "gross": "3.5581000000000000"})
        );
    }

    #[test]
    fn arm_and_cost_optimized_types_are_european_only() {
        let ash = Location::find("ash").unwrap();
        assert!(!ServerType::find("cax11").unwrap().available_in(ash));
        assert!(!ServerType::find("cx23").unwrap().available_in(ash));
        assert!(ServerType::find("ccx13").unwrap().available_in(ash));
        let cpx = ServerType::find("cpx22").unwrap().json();
        assert_eq!(cpx["prices"].as_array().unwrap().len(), LOCATIONS.len());
        assert_eq!(cpx["prices"][3]["location"], "ash");
        assert_eq!(cpx["prices"][3]["price_monthly"]["net"], "7.1880000000");
    }
}
