//! Where spot capacity is likeliest (spec/providers.md §2.2): with a spot market and two or
//! more capacity regions, `GetSpotPlacementScores` rates the regions for the candidate types,
//! and the best one is tried first. The scores are advice: a failed call is a warning and the
//! configured order stands.

use aws_sdk_ec2::types::TargetCapacityUnitType;

use crate::client::call;
use crate::policy::Action;

/// `regions` with the best-scored one first (ties by name), the rest in their order. Asked
/// in the first region (the API rates every region from any one).
pub async fn best_region_first(
    ec2: &aws_sdk_ec2::Client,
    types: &[String],
    regions: &[String],
) -> Vec<String> {
    // Advice is asked once: a create does not wait on retries for it.
    let once = aws_sdk_ec2::config::Builder::default()
        .retry_config(aws_sdk_ec2::config::retry::RetryConfig::disabled());
    let asked = call(
        Action::GetSpotPlacementScores,
        ec2.get_spot_placement_scores()
            .set_instance_types(Some(types.to_vec()))
            .set_region_names(Some(regions.to_vec()))
            .target_capacity(1)
            .target_capacity_unit_type(TargetCapacityUnitType::Units)
            .customize()
            .config_override(once)
            .send(),
    )
    .await;
    let scores: Vec<(String, i32)> = match asked {
        Ok(out) => out
            .spot_placement_scores()
            .iter()
            .filter_map(|s| Some((s.region()?.to_owned(), s.score()?)))
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e.error, "spot placement scores unavailable; regions keep their order");
            return regions.to_vec();
        }
    };
    reorder(regions, &scores)
}

/// The pure half of [`best_region_first`]: only regions of the plan can be chosen.
fn reorder(regions: &[String], scores: &[(String, i32)]) -> Vec<String> {
    let best = scores
        .iter()
        .filter(|(region, _)| regions.contains(region))
        .max_by(|(ra, a), (rb, b)| a.cmp(b).then_with(|| rb.cmp(ra)));
    let mut out = regions.to_vec();
    if let Some((region, _)) = best
        && let Some(at) = out.iter().position(|r| r == region)
    {
        let chosen = out.remove(at);
        out.insert(0, chosen);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_best_scored_region_goes_first_ties_by_name_strangers_ignored() {
        let regions = strings(&["eu-west-1", "us-east-1", "us-west-2"]);
        let score = |r: &str, s| (r.to_owned(), s);
        assert_eq!(
            reorder(&regions, &[score("eu-west-1", 3), score("us-west-2", 9)]),
            strings(&["us-west-2", "eu-west-1", "us-east-1"])
        );
        assert_eq!(
            reorder(&regions, &[score("us-west-2", 5), score("us-east-1", 5)]),
            strings(&["us-east-1", "eu-west-1", "us-west-2"])
        );
        assert_eq!(
            reorder(&regions, &[score("ap-south-1", 10)]),
            regions,
            "a region outside the plan is never chosen"
        );
        assert_eq!(reorder(&regions, &[]), regions);
    }
}
