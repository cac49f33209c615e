//! Every AWS action the provider calls, in one list. Each SDK call names its [`Action`] (the
//! call cannot be written without it, see `client::call`), and the least-privilege IAM policy
//! of `admin providers policy --provider aws` is generated from the same list, so the two
//! cannot drift apart. The integration tests check it from the outside too: every action the
//! fault proxy sees during a lease's life is in the policy.

use serde_json::{Value, json};

/// One AWS API action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    AuthorizeSecurityGroupIngress,
    CreateImage,
    CreateSecurityGroup,
    CreateTags,
    DeleteKeyPair,
    DeleteSnapshot,
    DeregisterImage,
    DescribeFastSnapshotRestores,
    DescribeImages,
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
    RevokeSecurityGroupIngress,
    RunInstances,
    TerminateInstances,
    GetCallerIdentity,
    GetServiceQuota,
}

impl Action {
    /// Every action, in the policy's order.
    pub const ALL: &'static [Action] = &[
        Self::AuthorizeSecurityGroupIngress,
        Self::CreateImage,
        Self::CreateSecurityGroup,
        Self::CreateTags,
        Self::DeleteKeyPair,
        Self::DeleteSnapshot,
        Self::DeregisterImage,
        Self::DescribeFastSnapshotRestores,
        Self::DescribeImages,
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
        Self::RevokeSecurityGroupIngress,
        Self::RunInstances,
        Self::TerminateInstances,
        Self::GetCallerIdentity,
        Self::GetServiceQuota,
    ];

    /// The API operation's name, as EC2's `Action=` parameter and error messages spell it.
    pub fn operation(self) -> &'static str {
        self.iam().split_once(':').map_or("", |(_, op)| op)
    }

    /// The IAM action (`ec2:RunInstances`).
    pub fn iam(self) -> &'static str {
        match self {
            Self::AuthorizeSecurityGroupIngress => "ec2:AuthorizeSecurityGroupIngress",
            Self::CreateImage => "ec2:CreateImage",
            Self::CreateSecurityGroup => "ec2:CreateSecurityGroup",
            Self::CreateTags => "ec2:CreateTags",
            Self::DeleteKeyPair => "ec2:DeleteKeyPair",
            Self::DeleteSnapshot => "ec2:DeleteSnapshot",
            Self::DeregisterImage => "ec2:DeregisterImage",
            Self::DescribeFastSnapshotRestores => "ec2:DescribeFastSnapshotRestores",
            Self::DescribeImages => "ec2:DescribeImages",
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
            Self::RevokeSecurityGroupIngress => "ec2:RevokeSecurityGroupIngress",
            Self::RunInstances => "ec2:RunInstances",
            Self::TerminateInstances => "ec2:TerminateInstances",
            Self::GetCallerIdentity => "sts:GetCallerIdentity",
            Self::GetServiceQuota => "servicequotas:GetServiceQuota",
        }
    }
}

/// The IAM policy document for exactly the calls the provider makes. Spot launches need the
/// service-linked role for spot, which EC2 creates on first use when the caller may
/// (`iam:CreateServiceLinkedRole` limited to that service).
pub fn policy_document() -> Value {
    let actions: Vec<&str> = Action::ALL.iter().map(|a| a.iam()).collect();
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
        assert_eq!(listed, Action::ALL.len());
    }
}
