use crabbox_test_support::ec2_query::{Ec2Answer, Ec2Query};
use crabbox_test_support::fault_proxy::{Ec2Error, Fault, FaultProxy};
use crabbox_test_support::loopback_only;
use crabbox_test_support::moto::{Moto, newest_ubuntu_image};

/// moto with the fault proxy in front, and a client that talks to the proxy.
pub struct Cloud {
    pub moto: Moto,
    pub proxy: FaultProxy,
    pub ec2: Ec2Query,
}

impl Cloud {
    pub fn start() -> Self {
        let moto = Moto::start();
        let proxy = FaultProxy::start(&moto.url());
        let ec2 = Ec2Query::new(&proxy.url(), moto.region());
        Self { moto, proxy, ec2 }
    }
}

/// A `RunInstances` of one `instance_type` on the seeded Ubuntu image.
pub async fn run_instance(
    ec2: &Ec2Query,
    instance_type: &str,
    extra: &[(&str, &str)],
) -> Ec2Answer {
    let image = newest_ubuntu_image("24.04", "x86_64").id;
    let mut params = vec![
        ("ImageId", image),
        ("InstanceType", instance_type),
        ("MinCount", "1"),
        ("MaxCount", "1"),
    ];
    params.extend_from_slice(extra);
    ec2.call("RunInstances", &params)
        .await
        .expect("RunInstances sent")
}

/// The ids of the instances moto holds.
pub async fn instance_ids(moto: &Moto) -> Vec<String> {
    let direct = Ec2Query::new(&moto.url(), moto.region());
    direct.ok("DescribeInstances", &[]).await.all("instanceId")
}

/// The child element `tag` of `node`.
fn child<'a, 'i>(node: roxmltree::Node<'a, 'i>, tag: &str) -> roxmltree::Node<'a, 'i> {
    node.children()
        .find(|c| c.has_tag_name(tag))
        .unwrap_or_else(|| panic!("no {tag} in {}", node.tag_name().name()))
}

#[tokio::test]
async fn refusals_come_back_in_ec2_shape_and_only_for_matching_calls() {
    loopback_only!();
    let Cloud { moto, proxy, ec2 } = Cloud::start();
    proxy.inject(
        Fault::refuse("RunInstances", Ec2Error::InsufficientInstanceCapacity)
            .when("InstanceType", "c7a.48xlarge")
            .times(2),
    );

    // Another type is not refused; the chosen one twice; then moto answers again.
    assert_eq!(run_instance(&ec2, "t3.small", &[]).await.status, 200);
    for _ in 0..2 {
        let refused = run_instance(&ec2, "c7a.48xlarge", &[]).await;
        assert_eq!(refused.status, 500, "{}", refused.body);
        assert_eq!(
            refused.error_code().as_deref(),
            Some("InsufficientInstanceCapacity")
        );
        assert!(refused.body.starts_with("<?xml"), "{}", refused.body);
        // EC2's shape: Response > Errors > Error > Code and Message, then RequestID.
        let doc = roxmltree::Document::parse(&refused.body).unwrap();
        let root = doc.root_element();
        assert!(root.has_tag_name("Response"));
        let error = child(child(root, "Errors"), "Error");
        assert_eq!(
            child(error, "Code").text(),
            Some("InsufficientInstanceCapacity")
        );
        assert!(
            child(root, "RequestID")
                .text()
                .is_some_and(|id| !id.is_empty())
        );
        assert!(refused.first("Message").unwrap().contains("c7a.48xlarge"));
    }
    assert_eq!(run_instance(&ec2, "c7a.48xlarge", &[]).await.status, 200);
    assert!(proxy.faults_spent());
    assert_eq!(
        proxy.count("RunInstances"),
        4,
        "refused calls are counted too"
    );
    assert_eq!(
        instance_ids(&moto).await.len(),
        2,
        "refused calls never reached moto"
    );
}

#[tokio::test]
async fn each_error_has_ec2s_status_and_a_spot_fault_matches_spot_calls_only() {
    loopback_only!();
    let cloud = Cloud::start();
    let (proxy, ec2) = (&cloud.proxy, &cloud.ec2);
    let spot = [("InstanceMarketOptions.MarketType", "spot")];
    for (error, status) in [
        (Ec2Error::InsufficientInstanceCapacity, 500),
        (Ec2Error::SpotMaxPriceTooLow, 400),
        (Ec2Error::MaxSpotInstanceCountExceeded, 400),
        (Ec2Error::VcpuLimitExceeded, 400),
        (Ec2Error::Unsupported, 400),
        (Ec2Error::RequestLimitExceeded, 503),
    ] {
        proxy.inject(
            Fault::refuse("RunInstances", error).when("InstanceMarketOptions.MarketType", "spot"),
        );
        assert_eq!(
            run_instance(ec2, "c7a.large", &[]).await.status,
            200,
            "on-demand passes"
        );
        let refused = run_instance(ec2, "c7a.large", &spot).await;
        assert_eq!(refused.status, status, "{error:?}");
        assert_eq!(refused.error_code().as_deref(), Some(error.code()));
    }
    let spot_message = {
        proxy.inject(Fault::refuse(
            "RunInstances",
            Ec2Error::InsufficientInstanceCapacity,
        ));
        run_instance(ec2, "c7a.large", &spot)
            .await
            .first("Message")
            .unwrap()
    };
    assert!(spot_message.contains("Spot capacity"), "{spot_message}");
}

#[tokio::test]
async fn calls_are_counted_per_action_and_json_target() {
    loopback_only!();
    let cloud = Cloud::start();
    let (proxy, ec2) = (&cloud.proxy, &cloud.ec2);
    ec2.ok("DescribeVpcs", &[]).await;
    ec2.ok("DescribeVpcs", &[]).await;
    ec2.ok("DescribeSecurityGroups", &[("GroupName.1", "default")])
        .await;
    // A JSON-protocol service (Service Quotas) is counted by its X-Amz-Target.
    let status = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("{}/", proxy.url()))
        .header("X-Amz-Target", "ServiceQuotasV20190624.GetServiceQuota")
        .header("Content-Type", "application/x-amz-json-1.1")
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20250101/eu-west-1/servicequotas/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body(r#"{"ServiceCode":"ec2","QuotaCode":"L-1216C47A"}"#)
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.as_u16() >= 200, "moto answered through the proxy");
    assert_eq!(proxy.count("DescribeVpcs"), 2);
    assert_eq!(proxy.count("DescribeSecurityGroups"), 1);
    assert_eq!(proxy.count("ServiceQuotasV20190624.GetServiceQuota"), 1);
    let calls = proxy.calls();
    assert_eq!(calls[2].param("GroupName.1"), Some("default"));
    proxy.reset_calls();
    assert_eq!(proxy.count("DescribeVpcs"), 0);
}

#[tokio::test]
async fn run_instances_is_idempotent_by_client_token_as_on_ec2() {
    loopback_only!();
    let Cloud { moto, proxy, ec2 } = Cloud::start();
    let token = [("ClientToken", "cbx-lease-1")];

    let first = run_instance(&ec2, "t3.small", &token).await;
    let again = run_instance(&ec2, "t3.small", &token).await;
    assert_eq!(again.status, 200);
    assert_eq!(first.first("instanceId"), again.first("instanceId"));
    assert_eq!(instance_ids(&moto).await.len(), 1);

    let other = run_instance(&ec2, "t3.large", &token).await;
    assert_eq!(other.status, 400);
    assert_eq!(
        other.error_code().as_deref(),
        Some("IdempotentParameterMismatch")
    );

    // moto on its own launches again for the same token: the proxy is what makes it EC2-like.
    proxy.set_client_token_idempotency(false);
    run_instance(&ec2, "t3.small", &token).await;
    assert_eq!(instance_ids(&moto).await.len(), 2);
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_502_not_a_lost_reply() {
    loopback_only!();
    // Nothing listens on port 1 of this namespace's loopback.
    let proxy = FaultProxy::start("http://127.0.0.1:1");
    let answer = Ec2Query::new(&proxy.url(), "eu-west-1")
        .call("DescribeVpcs", &[])
        .await
        .expect("the proxy answers");
    assert_eq!(answer.status, 502, "{}", answer.body);
    assert!(
        answer.body.contains("upstream unreachable"),
        "{}",
        answer.body
    );
}
