//! Every AWS action the provider calls, in one list. Each SDK call names its [`Action`] (the
//! call cannot be written without it, see `client::call`), and the least-privilege IAM policy
//! of `admin providers policy --provider aws` is generated from the same list, so the two
//! cannot drift apart. The integration tests check it from the outside too: every action the
//! fault proxy sees during a lease's life is in the policy.

use serde_json::{Value, json};

/// One AWS API action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    AllocateHosts,
    AuthorizeSecurityGroupIngress,
    CreateImage,
    CreateSecurityGroup,
    CreateTags,
    DeleteKeyPair,
    DeleteSnapshot,
    DeregisterImage,
    DescribeFastSnapshotRestores,
    DescribeHosts,
    DescribeImages,
    DescribeInstanceTypeOfferings,
    DescribeInstances,
    DescribeKeyPairs,
    DescribeSecurityGroups,
    DescribeSnapshots,
    DescribeSpotPriceHistory,
    DescribeSubnets,
    DescribeVpcs,
    DisableFastSnapshotRestores,
    EnableFastSnapshotRestores,
    GetConsoleOutput,
    GetSpotPlacementScores,
    ImportKeyPair,
    ReleaseHosts,
    RevokeSecurityGroupIngress,
    RunInstances,
    TerminateInstances,
    GetCallerIdentity,
    GetServiceQuota,
    ListServiceQuotas,
}

impl Action {
    /// Every action, in the policy's order.
    pub const ALL: &'static [Action] = &[
        Self::AllocateHosts,
        Self::AuthorizeSecurityGroupIngress,
        Self::CreateImage,
        Self::CreateSecurityGroup,
        Self::CreateTags,
        Self::DeleteKeyPair,
        Self::DeleteSnapshot,
        Self::DeregisterImage,
        Self::DescribeFastSnapshotRestores,
        Self::DescribeHosts,
        Self::DescribeImages,
        Self::DescribeInstanceTypeOfferings,
        Self::DescribeInstances,
        Self::DescribeKeyPairs,
        Self::DescribeSecurityGroups,
        Self::DescribeSnapshots,
        Self::DescribeSpotPriceHistory,
        Self::DescribeSubnets,
        Self::DescribeVpcs,
        Self::DisableFastSnapshotRestores,
        Self::EnableFastSnapshotRestores,
        Self::GetConsoleOutput,
        Self::GetSpotPlacementScores,
        Self::ImportKeyPair,
        Self::ReleaseHosts,
        Self::RevokeSecurityGroupIngress,
        Self::RunInstances,
        Self::TerminateInstances,
        Self::GetCallerIdentity,
        Self::GetServiceQuota,
        Self::ListServiceQuotas,
    ];

    /// The Dedicated Host lifecycle of EC2 Mac (`crate::hosts`), whose IAM policy
    /// (`hosts::host_policy`) is printed apart from the runners' so that an operator grants
    /// it knowingly: allocating a host is paid for 24 hours at least.
    pub const HOSTS: &'static [Action] = &[
        Self::DescribeHosts,
        Self::DescribeInstanceTypeOfferings,
        Self::AllocateHosts,
        Self::ReleaseHosts,
        Self::GetServiceQuota,
        Self::ListServiceQuotas,
    ];

    /// The API operation's name, as EC2's `Action=` parameter and error messages spell it.
    pub fn operation(self) -> &'static str {
        self.iam().split_once(':').map_or("", |(_, op)| op)
    }

    /// The IAM action (`ec2:RunInstances`).
    pub fn iam(self) -> &'static str {
        match self {
            Self::AllocateHosts => "ec2:AllocateHosts",
            Self::AuthorizeSecurityGroupIngress => "ec2:AuthorizeSecurityGroupIngress",
            Self::CreateImage => "ec2:CreateImage",
            Self::CreateSecurityGroup => "ec2:CreateSecurityGroup",
            Self::CreateTags => "ec2:CreateTags",
            Self::DeleteKeyPair => "ec2:DeleteKeyPair",
            Self::DeleteSnapshot => "ec2:DeleteSnapshot",
            Self::DeregisterImage => "ec2:DeregisterImage",
            Self::DescribeFastSnapshotRestores => "ec2:DescribeFastSnapshotRestores",
            Self::DescribeHosts => "ec2:DescribeHosts",
            Self::DescribeImages => "ec2:DescribeImages",
            Self::DescribeInstanceTypeOfferings => "ec2:DescribeInstanceTypeOfferings",
            Self::DescribeInstances => "ec2:DescribeInstances",
            Self::DescribeKeyPairs => "ec2:DescribeKeyPairs",
            Self::DescribeSecurityGroups => "ec2:DescribeSecurityGroups",
            Self::DescribeSnapshots => "ec2:DescribeSnapshots",
            Self::DescribeSpotPriceHistory => "ec2:DescribeSpotPriceHistory",
            Self::DescribeSubnets => "ec2:DescribeSubnets",
            Self::DescribeVpcs => "ec2:DescribeVpcs",
            Self::DisableFastSnapshotRestores => "ec2:DisableFastSnapshotRestores",
            Self::EnableFastSnapshotRestores => "ec2:EnableFastSnapshotRestores",
            Self::GetConsoleOutput => "ec2:GetConsoleOutput",
            Self::GetSpotPlacementScores => "ec2:GetSpotPlacementScores",
            Self::ImportKeyPair => "ec2:ImportKeyPair",
            Self::ReleaseHosts => "ec2:ReleaseHosts",
            Self::RevokeSecurityGroupIngress => "ec2:RevokeSecurityGroupIngress",
            Self::RunInstances => "ec2:RunInstances",
            Self::TerminateInstances => "ec2:TerminateInstances",
            Self::GetCallerIdentity => "sts:GetCallerIdentity",
            Self::GetServiceQuota => "servicequotas:GetServiceQuota",
            Self::ListServiceQuotas => "servicequotas:ListServiceQuotas",
        }
    }
}

/// The IAM policy document for exactly the calls the provider makes. Spot launches need the
/// service-linked role for spot, which EC2 creates on first use when the caller may
/// (`iam:CreateServiceLinkedRole` limited to that service).
pub fn policy_document() -> Value {
    // The Dedicated Host lifecycle is granted apart (`hosts::host_policy`, `--target macos`):
    // allocating a host is paid for a day at least. The quota read runners need stays.
    let actions: Vec<&str> = Action::ALL
        .iter()
        .filter(|a| !Action::HOSTS.contains(a) || **a == Action::GetServiceQuota)
        .map(|a| a.iam())
        .collect();
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "CrabboxRunners",
                "Effect": "Allow",
                "Action": actions,
                "Resource": "*"
            },
            {
                "Sid": "CrabboxSpotServiceLinkedRole",
                "Effect": "Allow",
                "Action": "iam:CreateServiceLinkedRole",
                "Resource": "*",
                "Condition": {"StringEquals": {"iam:AWSServiceName": "spot.amazonaws.com"}}
            }
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_is_listed_once_and_named_by_its_service() {
        let mut seen = std::collections::BTreeSet::new();
        for action in Action::ALL {
            assert!(seen.insert(*action), "{action:?} listed twice");
            let (service, op) = action.iam().split_once(':').unwrap();
            assert!(["ec2", "sts", "servicequotas"].contains(&service));
            assert_eq!(format!("{action:?}"), op);
        }
        let listed = policy_document()["Statement"][0]["Action"]
            .as_array()
            .unwrap()
            .len();
        // All but the host lifecycle's own (the quota read is the runners' too).
        assert_eq!(listed, Action::ALL.len() - (Action::HOSTS.len() - 1));
    }

    #[test]
    fn the_host_lifecycle_is_part_of_every_action() {
        for action in Action::HOSTS {
            assert!(
                Action::ALL.contains(action),
                "{action:?} is not in Action::ALL"
            );
        }
    }
}
