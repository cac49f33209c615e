//! What does not change from one lease to the next in a region: the security group (for the
//! SSH sources it was brought to), the image per architecture, the vCPU quotas, the spot
//! prices. Remembered for a short time by the shared [`FactsCache`] (in memory, and in direct
//! mode in `<state>/aws/<region>.json`), so that a warm create is the key import and the
//! launch. A launch refused because a remembered group or image went away forgets the region
//! and is tried again with fresh look-ups.

use std::collections::BTreeMap;

use crabbox_providers::facts::FactsCache;
use serde::{Deserialize, Serialize};

/// One region's facts, as last looked up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegionFacts {
    /// The security group id and the sources and ports its SSH rules were brought to.
    #[serde(default)]
    pub security_group: Option<(String, String)>,
    /// Image id by architecture.
    #[serde(default)]
    pub images: BTreeMap<String, String>,
    /// Applied vCPU quota by market (`None`: Service Quotas does not know it).
    #[serde(default)]
    pub quotas: BTreeMap<String, Option<f64>>,
    /// Spot price by instance type.
    #[serde(default)]
    pub spot_prices: BTreeMap<String, f64>,
}

/// The facts of every region this provider used lately.
pub type Cache = FactsCache<RegionFacts>;
