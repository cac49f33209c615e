//! How a lease's machine is bought and where (spec/providers.md §2.2): the market to try
//! first, whether spot refusals fall back to on-demand, the regions in the order they are
//! tried, and the availability zone to ask for in each.

use crabbox_core::config::CapacityConfig;
use crabbox_core::machine::{Market, MarketFallback};

use super::class::SpecError;

/// `primary` first, then `extra` in order, each once, blanks dropped: the regions (or
/// locations) a provider tries and lists.
pub fn ordered_regions(primary: &str, extra: &[String]) -> Vec<String> {
    let mut regions: Vec<String> = Vec::new();
    for region in std::iter::once(primary).chain(extra.iter().map(String::as_str)) {
        let region = region.trim();
        if !region.is_empty() && !regions.iter().any(|known| known == region) {
            regions.push(region.to_owned());
        }
    }
    regions
}

/// The SSH ports a runner's sshd listens on: `primary` first, then the fallbacks, each once.
pub fn ssh_ports(primary: u16, fallback: &[u16]) -> Vec<u16> {
    let mut ports = vec![primary];
    for port in fallback {
        if !ports.contains(port) {
            ports.push(*port);
        }
    }
    ports
}

/// The capacity side of a provisioning plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapacityPlan {
    pub market: Market,
    pub fallback: MarketFallback,
    /// Regions in the order they are tried: the provider's own first. Never empty.
    pub regions: Vec<String>,
    pub availability_zones: Vec<String>,
}

impl CapacityPlan {
    /// `primary` (the provider's configured region) first, then the extra regions in order,
    /// each once. Every zone must lie in one of the regions, or it could never be used.
    pub fn new(
        market: Market,
        fallback: MarketFallback,
        primary: &str,
        extra_regions: &[String],
        availability_zones: &[String],
    ) -> Result<Self, SpecError> {
        let regions = ordered_regions(primary, extra_regions);
        if regions.is_empty() {
            return Err(SpecError::NoRegion);
        }
        let zones: Vec<String> = availability_zones
            .iter()
            .map(|zone| zone.trim().to_owned())
            .filter(|zone| !zone.is_empty())
            .collect();
        let placed = |zone: &&String| regions.iter().any(|region| zone_is_in(zone, region));
        if let Some(stray) = zones.iter().find(|zone| !placed(zone)) {
            return Err(SpecError::StrayZone {
                zone: stray.clone(),
                regions: regions.join(", "),
            });
        }
        Ok(Self {
            market,
            fallback,
            regions,
            availability_zones: zones,
        })
    }

    /// The plan a direct-mode provider reads from the resolved configuration.
    pub fn from_config(primary: &str, capacity: &CapacityConfig) -> Result<Self, SpecError> {
        Self::new(
            capacity.market,
            capacity.fallback,
            primary,
            &capacity.regions,
            &capacity.availability_zones,
        )
    }

    /// The first configured zone in `region`, if any.
    pub fn zone_in(&self, region: &str) -> Option<&str> {
        self.availability_zones
            .iter()
            .find(|zone| zone_is_in(zone, region))
            .map(String::as_str)
    }

    /// The markets a lease may end up on, in the order they are tried (for quota checks).
    pub fn markets(&self) -> Vec<Market> {
        match (self.market, self.fallback.retries_on_demand()) {
            (Market::Spot, true) => vec![Market::Spot, Market::OnDemand],
            (market, _) => vec![market],
        }
    }

    /// Moves `region` to the front, for a provider that learned where capacity is best (EC2
    /// spot placement scores). Unknown regions are ignored.
    pub fn prefer_region(&mut self, region: &str) {
        if let Some(index) = self.regions.iter().position(|known| known == region) {
            let preferred = self.regions.remove(index);
            self.regions.insert(0, preferred);
        }
    }
}

/// Zones are named after their region plus a letter (`eu-west-1a`) or, for local zones, a
/// dashed suffix (`us-east-1-bos-1a`); `eu-west-11a` is not in `eu-west-1`.
fn zone_is_in(zone: &str, region: &str) -> bool {
    zone.strip_prefix(region)
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_lowercase() || c == '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| (*item).to_owned()).collect()
    }

    fn plan(primary: &str, extra: &[&str], zones: &[&str]) -> Result<CapacityPlan, SpecError> {
        CapacityPlan::new(
            Market::Spot,
            MarketFallback::DEFAULT,
            primary,
            &strings(extra),
            &strings(zones),
        )
    }

    #[test]
    fn regions_start_with_the_primary_each_once() {
        let plan = plan(
            "eu-west-1",
            &["us-east-1", "eu-west-1", " ", "us-west-2"],
            &[],
        )
        .unwrap();
        assert_eq!(plan.regions, ["eu-west-1", "us-east-1", "us-west-2"]);
        assert_eq!(plan.markets(), [Market::Spot, Market::OnDemand]);
        assert_eq!(self::plan(" ", &[], &[]), Err(SpecError::NoRegion));
    }

    #[test]
    fn zones_belong_to_a_region() {
        let plan = plan("eu-west-1", &["us-east-1"], &["us-east-1b", "eu-west-1c"]).unwrap();
        assert_eq!(plan.zone_in("us-east-1"), Some("us-east-1b"));
        assert_eq!(plan.zone_in("eu-west-1"), Some("eu-west-1c"));
        assert_eq!(plan.zone_in("eu-west-11"), None);
        let error = self::plan("eu-west-1", &[], &["us-east-1b"]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "availability zone \"us-east-1b\" is in none of the capacity regions (eu-west-1); \
             list its region in capacity.regions or drop the zone"
        );
        // A zone of a region whose name extends another's is not taken for the shorter one.
        assert!(self::plan("eu-west-1", &[], &["eu-west-11a"]).is_err());
        assert!(self::plan("us-east-1", &[], &["us-east-1-bos-1a"]).is_ok());
    }

    #[test]
    fn on_demand_or_no_fallback_is_one_market() {
        let on_demand =
            CapacityPlan::new(Market::OnDemand, MarketFallback::DEFAULT, "r", &[], &[]).unwrap();
        assert_eq!(on_demand.markets(), [Market::OnDemand]);
        let spot_only =
            CapacityPlan::new(Market::Spot, MarketFallback::None, "r", &[], &[]).unwrap();
        assert_eq!(spot_only.markets(), [Market::Spot]);
    }

    #[test]
    fn a_preferred_region_moves_to_the_front() {
        let mut plan = plan("a-1", &["b-1", "c-1"], &[]).unwrap();
        plan.prefer_region("c-1");
        plan.prefer_region("nowhere");
        assert_eq!(plan.regions, ["c-1", "a-1", "b-1"]);
    }
}
