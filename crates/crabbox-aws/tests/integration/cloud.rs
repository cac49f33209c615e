//! The AWS a test talks to: moto, the fault proxy in front of it, SDK clients through the
//! proxy (whose calls are the product's), and a raw client past it for setting scenes.

use crabbox_aws::client::{Aws, loader};
use crabbox_aws::policy::Action;
use crabbox_test_support::ec2_query::Ec2Query;
use crabbox_test_support::fault_proxy::FaultProxy;
use crabbox_test_support::moto::{ACCESS_KEY_ID, Moto, SECRET_ACCESS_KEY};

/// moto, the proxy, SDK clients through the proxy, and a raw client past it.
pub struct Cloud {
    _moto: Moto,
    pub proxy: FaultProxy,
    pub aws: Aws,
    pub ec2: aws_sdk_ec2::Client,
    pub region: String,
    pub moto: Ec2Query,
}

impl Cloud {
    pub async fn start() -> Self {
        let moto = Moto::start();
        let proxy = FaultProxy::start(&moto.url());
        let credentials = aws_credential_types::Credentials::new(
            ACCESS_KEY_ID,
            SECRET_ACCESS_KEY,
            None,
            None,
            "crabbox-tests",
        );
        let sdk = loader(moto.region())
            .endpoint_url(proxy.url())
            .credentials_provider(credentials)
            .load()
            .await;
        let aws = Aws::from_sdk_config(sdk);
        let ec2 = aws.ec2(moto.region());
        let direct = Ec2Query::new(&moto.url(), moto.region());
        Self {
            region: moto.region().to_owned(),
            _moto: moto,
            proxy,
            aws,
            ec2,
            moto: direct,
        }
    }

    /// The actions the proxy saw since the last look, in order; each must be in the policy.
    /// JSON-protocol calls are named `Service.Operation` there.
    pub fn take_calls(&self) -> Vec<String> {
        let calls: Vec<String> = self
            .proxy
            .calls()
            .into_iter()
            .map(|c| match c.action.rsplit_once('.') {
                Some((_, operation)) => operation.to_owned(),
                None => c.action,
            })
            .collect();
        for action in &calls {
            assert!(
                Action::ALL.iter().any(|a| a.operation() == action),
                "{action} is not in the IAM policy"
            );
        }
        self.proxy.reset_calls();
        calls
    }
}
