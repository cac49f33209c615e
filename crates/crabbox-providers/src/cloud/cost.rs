//! What a runner costs per hour (spec/providers.md §2.10): an operator's rate for the type
//! (`CRABBOX_COST_RATES_JSON`), else the price the provider quoted (EC2 spot price history),
//! else a static table of the types the class tables use most, else a per-provider default.

use std::collections::BTreeMap;

/// Hourly USD of the types the old tool priced statically.
const STATIC_HOURLY_USD: &[(&str, &str, f64)] = &[
    ("hetzner", "cx53", 0.08),
    ("hetzner", "cpx62", 0.18),
    ("hetzner", "ccx33", 0.36),
    ("hetzner", "ccx43", 0.54),
    ("hetzner", "ccx53", 0.72),
    ("hetzner", "ccx63", 1.08),
    ("aws", "c7a.4xlarge", 0.75),
    ("aws", "c7a.8xlarge", 1.5),
    ("aws", "c7a.12xlarge", 2.25),
    ("aws", "c7a.16xlarge", 3.0),
    ("aws", "c7a.24xlarge", 4.5),
    ("aws", "c7a.32xlarge", 6.0),
    ("aws", "c7a.48xlarge", 9.0),
];

/// Operator rates, `{"<provider>:<type>": usd_per_hour}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CostRates(BTreeMap<String, f64>);

/// Why `CRABBOX_COST_RATES_JSON` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CostRatesError {
    #[error(
        "CRABBOX_COST_RATES_JSON is not a JSON object of rates ({0}); write it like {{\"aws:c7a.8xlarge\": 1.5}}"
    )]
    NotAnObject(String),
    #[error(
        "CRABBOX_COST_RATES_JSON key {0:?} is not \"<provider>:<type>\" (like \"aws:c7a.8xlarge\")"
    )]
    BadKey(String),
    #[error("CRABBOX_COST_RATES_JSON[{0:?}] must be a positive number of USD per hour")]
    BadRate(String),
}

impl CostRates {
    /// Reads the variable's text; empty text means no rates.
    pub fn parse(json: &str) -> Result<Self, CostRatesError> {
        if json.trim().is_empty() {
            return Ok(Self::default());
        }
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(json).map_err(|e| CostRatesError::NotAnObject(e.to_string()))?;
        let mut rates = BTreeMap::new();
        for (key, value) in map {
            let well_formed = key.split_once(':').is_some_and(|(provider, server_type)| {
                !provider.is_empty() && !server_type.is_empty()
            });
            if !well_formed {
                return Err(CostRatesError::BadKey(key));
            }
            match value.as_f64() {
                Some(rate) if rate.is_finite() && rate > 0.0 => {
                    rates.insert(key, rate);
                }
                _ => return Err(CostRatesError::BadRate(key)),
            }
        }
        Ok(Self(rates))
    }

    fn rate(&self, provider: &str, server_type: &str) -> Option<f64> {
        self.0.get(&format!("{provider}:{server_type}")).copied()
    }
}

/// Where an hourly price came from, for `warmup` and usage output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriceSource {
    Configured,
    Live,
    Table,
    Default,
}

/// An hourly price in USD and where it came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HourlyPrice {
    pub usd: f64,
    pub source: PriceSource,
}

/// The hourly price of one runner. `live` is what the provider quoted just now, if anything;
/// a price that is not a positive number is ignored.
pub fn hourly_price(
    provider: &str,
    server_type: &str,
    rates: &CostRates,
    live: Option<f64>,
) -> HourlyPrice {
    let price = |usd, source| HourlyPrice { usd, source };
    if let Some(usd) = rates.rate(provider, server_type) {
        return price(usd, PriceSource::Configured);
    }
    if let Some(usd) = live.filter(|usd| usd.is_finite() && *usd > 0.0) {
        return price(usd, PriceSource::Live);
    }
    let listed = STATIC_HOURLY_USD
        .iter()
        .find(|(p, t, _)| *p == provider && *t == server_type);
    if let Some((_, _, usd)) = listed {
        return price(*usd, PriceSource::Table);
    }
    let usd = match provider {
        "aws" => 3.0,
        // Runners on this machine or the team's own hosts cost nothing extra.
        "local" | "ssh" => 0.0,
        _ => 0.5,
    };
    price(usd, PriceSource::Default)
}

/// The most a lease can cost over its TTL, rounded to cents: `max(1 s, ttl)/3600 × hourly`.
pub fn reserved_usd(ttl_secs: u64, hourly_usd: f64) -> f64 {
    let usd = ttl_secs.max(1) as f64 / 3600.0 * hourly_usd;
    (usd * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_configured_live_table_default() {
        let rates = CostRates::parse(r#"{"aws:c7a.8xlarge": 1.25}"#).unwrap();
        let aws = |server_type, live| hourly_price("aws", server_type, &rates, live);
        assert_eq!(
            aws("c7a.8xlarge", Some(0.6)),
            HourlyPrice {
                usd: 1.25,
                source: PriceSource::Configured
            }
        );
        assert_eq!(
            aws("c7a.16xlarge", Some(0.6)),
            HourlyPrice {
                usd: 0.6,
                source: PriceSource::Live
            }
        );
        assert_eq!(aws("c7a.16xlarge", Some(0.0)).source, PriceSource::Table);
        assert!((aws("c7a.16xlarge", None).usd - 3.0).abs() < f64::EPSILON);
        assert_eq!(
            aws("m7i.large", None),
            HourlyPrice {
                usd: 3.0,
                source: PriceSource::Default
            }
        );
        let none = CostRates::default();
        assert!((hourly_price("hetzner", "ccx63", &none, None).usd - 1.08).abs() < f64::EPSILON);
        assert!((hourly_price("azure", "Standard_D4s_v5", &none, None).usd - 0.5).abs() < 1e-9);
        assert!(hourly_price("local", "local", &none, None).usd.abs() < f64::EPSILON);
    }

    #[test]
    fn bad_rates_say_what_and_how() {
        assert_eq!(CostRates::parse("  "), Ok(CostRates::default()));
        let not_json = CostRates::parse("aws=1").unwrap_err().to_string();
        assert!(
            not_json.starts_with("CRABBOX_COST_RATES_JSON is not a JSON object of rates (")
                && not_json.ends_with("write it like {\"aws:c7a.8xlarge\": 1.5}"),
            "{not_json}"
        );
        assert_eq!(
            CostRates::parse("[1]")
                .unwrap_err()
                .to_string()
                .split(" (")
                .next(),
            Some("CRABBOX_COST_RATES_JSON is not a JSON object of rates")
        );
        assert_eq!(
            CostRates::parse(r#"{"c7a.8xlarge": 1}"#),
            Err(CostRatesError::BadKey("c7a.8xlarge".into()))
        );
        for bad in ["0", "-1", "\"1.5\"", "null"] {
            assert_eq!(
                CostRates::parse(&format!(r#"{{"aws:t3.small": {bad}}}"#)),
                Err(CostRatesError::BadRate("aws:t3.small".into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn reserved_cost_covers_the_ttl() {
        assert!((reserved_usd(1200, 0.18) - 0.06).abs() < 1e-9);
        assert!((reserved_usd(5400, 9.0) - 13.5).abs() < 1e-9);
        assert!(
            reserved_usd(0, 3.0).abs() < 1e-9,
            "one second rounds to nothing"
        );
    }
}
