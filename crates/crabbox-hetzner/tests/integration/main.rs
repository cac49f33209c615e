//! The Hetzner provider in process, against the stateful Hetzner fake, in a loopback-only
//! network namespace: the provider conformance suite, and the failures only a cloud has.
//! (The whole CLI path, SSH included, is in crates/crabbox/tests/integration/hetzner.rs.)

use std::time::Duration;

use crabbox_core::config::Secret;
use crabbox_hetzner::{HetznerProvider, HetznerSettings};
use crabbox_providers::conformance::{Promises, lifecycle};
use crabbox_providers::{AcquireRequest, MachineChoice, Provider as _, ProviderError};
use crabbox_test_support::fake_hetzner::{FakeHetzner, Fault};
use crabbox_test_support::loopback_only;

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl crabbox";

/// A provider configured in code for `fake`, with `extra` locations after `fsn1`.
fn provider(fake: &FakeHetzner, extra: &[&str]) -> HetznerProvider {
    let defaults =
        crabbox_core::config::resolve(&crabbox_core::config::ConfigInputs::default()).unwrap();
    let mut settings = HetznerSettings::from_config(
        defaults.config(),
        crabbox_providers::cloud::cost::CostRates::default(),
        |name| (name == "HCLOUD_TOKEN").then(|| FakeHetzner::TOKEN.to_owned()),
    );
    settings.endpoint = fake.url();
    settings.capacity.regions = extra.iter().map(|l| (*l).to_owned()).collect();
    HetznerProvider::new(settings).unwrap()
}

fn request(lease_id: &str) -> AcquireRequest {
    AcquireRequest {
        lease_id: lease_id.into(),
        slug: "conformance".into(),
        class: "standard".into(),
        public_key: KEY.into(),
        ttl_secs: 600,
        idle_timeout_secs: 300,
        keep: false,
        machine: MachineChoice::default(),
        capabilities: crabbox_providers::Capabilities::default(),
    }
}

/// A well-formed ed25519 public key line of its own for each `n` (every lease has its own
/// key, and Hetzner refuses a second key with the same fingerprint).
fn ed25519_public_key(n: u8) -> String {
    use base64::Engine as _;
    let mut blob = Vec::new();
    for part in [b"ssh-ed25519".as_slice(), &[n; 32]] {
        blob.extend_from_slice(&u32::try_from(part.len()).unwrap().to_be_bytes());
        blob.extend_from_slice(part);
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(blob);
    format!("ssh-ed25519 {encoded} lease-{n}")
}

fn count(fake: &FakeHetzner, routes: &[&str]) -> Vec<(String, usize)> {
    routes
        .iter()
        .map(|r| ((*r).to_owned(), fake.count(r)))
        .collect()
}

fn expect(pairs: &[(&str, usize)]) -> Vec<(String, usize)> {
    pairs.iter().map(|(r, n)| ((*r).to_owned(), *n)).collect()
}

#[tokio::test]
async fn hetzner_provider_conforms_with_four_calls_per_create_and_two_per_release() {
    loopback_only!();
    let fake = FakeHetzner::start();
    let provider = provider(&fake, &[]);
    let routes = [
        "POST /ssh_keys",
        "POST /servers",
        "GET /actions/{id}",
        "GET /server_types",
        "DELETE /ssh_keys/{id}",
        "DELETE /servers/{id}",
    ];
    let record = provider
        .acquire(&request("cbx_00000000b000"))
        .await
        .unwrap();
    assert_eq!(
        count(&fake, &routes),
        expect(&[
            ("POST /ssh_keys", 1),
            ("POST /servers", 1),
            ("GET /actions/{id}", 1),
            ("GET /server_types", 1),
            ("DELETE /ssh_keys/{id}", 0),
            ("DELETE /servers/{id}", 0),
        ]),
        "{:?}",
        fake.calls()
    );
    assert_eq!(fake.calls().len(), 4, "nothing else: {:?}", fake.calls());
    // The live price: the fake's gross EUR price of ccx33 in fsn1, times 1.08.
    let server_type = fake.servers()[0]["server_type"].clone();
    let eur: f64 = server_type["prices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["location"] == "fsn1")
        .unwrap()["price_hourly"]["gross"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (record.hourly_usd.unwrap() - eur * 1.08).abs() < 1e-9,
        "{record:?}"
    );
    assert_eq!(record.price_source, "live");
    fake.reset_calls();
    provider.release(&record).await.unwrap();
    assert_eq!(fake.calls().len(), 2, "release: {:?}", fake.calls());
    assert_eq!(fake.count("DELETE /ssh_keys/{id}"), 1);
    assert_eq!(fake.count("DELETE /servers/{id}"), 1);

    let promises = Promises {
        lists: true,
        deletes: true,
        adopts: false,
    };
    let record = lifecycle(&provider, &request("cbx_00000000b001"), promises).await;
    assert_eq!(record.server_type, "ccx33");
    assert!(
        record
            .labels
            .get("hetzner_location")
            .is_some_and(|l| l == "fsn1")
    );
    assert!(fake.servers().is_empty());
    assert!(fake.ssh_keys().is_empty());
}

#[tokio::test]
async fn refused_types_fall_back_then_the_next_location_and_every_try_is_recorded() {
    loopback_only!();
    let fake = FakeHetzner::start();
    let provider = provider(&fake, &["nbg1"]);
    fake.inject(
        Fault::refuse(
            "POST /servers",
            412,
            "resource_unavailable",
            "error during placement",
        )
        .when("server_type", "ccx33"),
    );
    fake.inject(
        Fault::refuse(
            "POST /servers",
            403,
            "resource_limit_exceeded",
            "dedicated core limit exceeded",
        )
        .when("server_type", "cpx62"),
    );
    fake.inject(
        Fault::refuse(
            "POST /servers",
            412,
            "resource_unavailable",
            "error during placement",
        )
        .when("location", "fsn1")
        .times(10),
    );
    let record = provider
        .acquire(&request("cbx_00000000b002"))
        .await
        .unwrap();
    assert_eq!(
        record.server_type, "ccx33",
        "the first type, in the next location"
    );
    assert_eq!(record.labels["hetzner_location"], "nbg1");
    let tried: Vec<String> = record
        .provisioning_attempts
        .iter()
        .map(|a| format!("{}@{} {} {}", a.server_type, a.region, a.category, a.code))
        .collect();
    assert_eq!(
        tried,
        [
            "ccx33@fsn1 capacity resource_unavailable",
            "cpx62@fsn1 quota resource_limit_exceeded",
            "cx53@fsn1 capacity resource_unavailable",
        ]
    );
    provider.release(&record).await.unwrap();
    assert!(fake.servers().is_empty() && fake.ssh_keys().is_empty());
}

#[tokio::test]
async fn a_create_that_everything_refuses_or_a_bad_request_leaves_nothing() {
    loopback_only!();
    let fake = FakeHetzner::start();
    let provider = provider(&fake, &[]);
    fake.inject(
        Fault::refuse(
            "POST /servers",
            412,
            "resource_unavailable",
            "error during placement",
        )
        .times(3),
    );
    let err = provider
        .acquire(&request("cbx_00000000b003"))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Capacity(_)), "{err}");
    assert_eq!(
        fake.count("POST /servers"),
        3,
        "standard: ccx33, cpx62, cx53"
    );
    assert!(fake.servers().is_empty());
    assert!(fake.ssh_keys().is_empty(), "the uploaded key is deleted");

    // A type this build does not know is refused before any call; one Hetzner does not
    // sell stops at the first refusal, and says so.
    fake.reset_calls();
    let mut req = request("cbx_00000000b004");
    req.class = "c7a.large".into();
    let err = provider.acquire(&req).await.unwrap_err();
    assert!(err.to_string().contains("unknown class"), "{err}");
    assert!(fake.calls().is_empty());
    let mut req = request("cbx_00000000b005");
    req.machine.server_type = Some("ccx99".into());
    let err = provider.acquire(&req).await.unwrap_err();
    assert!(matches!(err, ProviderError::InvalidSpec(_)), "{err}");
    assert!(err.to_string().contains("server_type"), "{err}");
    assert_eq!(fake.count("POST /servers"), 1);
    assert!(fake.servers().is_empty() && fake.ssh_keys().is_empty());

    // Spot does not exist on Hetzner.
    let mut req = request("cbx_00000000b006");
    req.machine.market = Some(crabbox_core::machine::Market::Spot);
    let err = provider.acquire(&req).await.unwrap_err();
    assert!(err.to_string().contains("no spot market"), "{err}");
}

#[tokio::test]
async fn a_create_retried_after_a_lost_reply_takes_the_server_it_made() {
    loopback_only!();
    let fake = FakeHetzner::start();
    let provider = provider(&fake, &[]);
    fake.inject(Fault::drop_reply("POST /servers"));
    let record = provider
        .acquire(&request("cbx_00000000b007"))
        .await
        .unwrap();
    assert_eq!(fake.count("POST /servers"), 2, "the retry met the name");
    let servers = fake.servers();
    assert_eq!(servers.len(), 1, "one runner: {servers:?}");
    assert_eq!(record.server_id, servers[0]["id"].to_string());
    provider.release(&record).await.unwrap();
    assert!(fake.servers().is_empty() && fake.ssh_keys().is_empty());
}

#[tokio::test]
async fn a_spent_rate_limit_is_waited_for_before_the_api_says_429() {
    loopback_only!();
    let fake = FakeHetzner::start();
    let provider = provider(&fake, &[]);
    // 36000 an hour: one request back every 100 ms; two left.
    fake.set_rate_limit(36_000, 2);
    fake.set_rate_limit_refill(Duration::from_millis(100));
    let record = provider
        .acquire(&request("cbx_00000000b008"))
        .await
        .unwrap();
    assert_eq!(
        fake.calls().len(),
        4,
        "no request was refused and repeated: {:?}",
        fake.calls()
    );
    // Throttled anyway (another client spent the budget): waited out and repeated.
    fake.reset_calls();
    fake.inject(
        Fault::refuse(
            "DELETE /servers/{id}",
            429,
            "rate_limit_exceeded",
            "limit reached",
        )
        .times(2),
    );
    provider.release(&record).await.unwrap();
    assert_eq!(fake.count("DELETE /servers/{id}"), 3);
    assert!(fake.servers().is_empty());
}

#[tokio::test]
async fn a_bad_token_is_an_auth_error_that_names_the_variable_and_creates_nothing() {
    loopback_only!();
    let fake = FakeHetzner::start();
    let mut settings = provider(&fake, &[]).settings().clone();
    settings.token = Some(Secret::new("not-the-token"));
    let provider = HetznerProvider::new(settings.clone()).unwrap();
    let err = provider
        .acquire(&request("cbx_00000000b009"))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Auth(_)), "{err}");
    assert!(err.to_string().contains("HCLOUD_TOKEN"), "{err}");
    assert!(
        !format!("{provider:?}").contains("not-the-token"),
        "the token never prints"
    );
    settings.token = None;
    let err = HetznerProvider::new(settings)
        .unwrap()
        .acquire(&request("cbx_00000000b010"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("set HCLOUD_TOKEN"), "{err}");
    assert!(fake.servers().is_empty() && fake.ssh_keys().is_empty());
}

#[tokio::test]
async fn listing_follows_every_page_and_heartbeats_keep_the_other_labels() {
    loopback_only!();
    let fake = FakeHetzner::start();
    let provider = provider(&fake, &[]);
    let mut records = Vec::new();
    for n in 0..55u8 {
        let mut req = request(&format!("cbx_0000000{:05x}", 0xc000 + u32::from(n)));
        req.class = "tiny".into();
        req.public_key = ed25519_public_key(n);
        records.push(provider.acquire(&req).await.unwrap());
    }
    let ids = provider.inventory().await.unwrap();
    assert_eq!(ids.len(), 55, "two pages of 50");
    let before = fake.server(records[0].server_id.parse().unwrap()).unwrap();
    provider.touch(&records[0]).await.unwrap();
    let after = fake.server(records[0].server_id.parse().unwrap()).unwrap();
    assert_eq!(after["labels"]["lease"], before["labels"]["lease"]);
    assert_eq!(after["labels"]["crabbox"], "true");
    assert!(
        after["labels"]["last_touched_at"].as_str().unwrap()
            >= before["labels"]["last_touched_at"].as_str().unwrap()
    );
    for record in &records {
        provider.release(record).await.unwrap();
    }
    assert!(provider.inventory().await.unwrap().is_empty());
    assert!(fake.servers().is_empty() && fake.ssh_keys().is_empty());
}
