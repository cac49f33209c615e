//! crabbox-azure against the stateful Azure fake over HTTPS (its throwaway CA trusted through
//! `SSL_CERT_FILE`), in a loopback-only network namespace.

mod provider;

use crabbox_azure::credential::Credential;
use crabbox_azure::transport::{Transport, http_client};
use crabbox_providers::ProviderError;
use crabbox_test_support::fake_azure::FakeAzure;
use crabbox_test_support::loopback_only;

/// The fake's environment, with `changes` on top (an empty value unsets).
fn env_of(fake: &FakeAzure, changes: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let mut env: Vec<(String, String)> = fake
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.clone()))
        .collect();
    for (k, v) in changes {
        env.retain(|(name, _)| name != k);
        env.push(((*k).to_owned(), (*v).to_owned()));
    }
    move |name: &str| {
        env.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    }
}

#[tokio::test]
async fn a_service_principal_gets_an_arm_token_over_https_from_the_configured_authority() {
    loopback_only!();
    let fake = FakeAzure::start();
    let env = env_of(&fake, &[]);
    let transport = Transport(http_client(&env).unwrap());
    let credential = Credential::from_env(&env, &transport).unwrap();
    assert_eq!(credential.kind, "client-secret");
    let token = credential.arm_token().await.unwrap();
    assert!(!token.secret().is_empty());
    assert_eq!(fake.count("POST token"), 1);
    // Cached until it expires.
    credential.arm_token().await.unwrap();
    assert_eq!(fake.count("POST token"), 1);
}

#[tokio::test]
async fn a_wrong_secret_or_an_untrusted_authority_is_an_auth_error_that_says_what_to_set() {
    loopback_only!();
    let fake = FakeAzure::start();
    let env = env_of(&fake, &[("AZURE_CLIENT_SECRET", "not-the-secret")]);
    let transport = Transport(http_client(&env).unwrap());
    let err = Credential::from_env(&env, &transport)
        .unwrap()
        .arm_token()
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Auth(_)), "{err}");
    let text = err.to_string();
    assert!(text.contains("AADSTS7000215"), "Entra's reason: {text}");
    assert!(text.contains("AZURE_CLIENT_SECRET"), "the hint: {text}");
    assert!(
        !text.contains("not-the-secret"),
        "the secret never prints: {text}"
    );

    // Without the CA the fake's certificate is not trusted: no token, nothing sent.
    let env = env_of(&fake, &[("SSL_CERT_FILE", "")]);
    let transport = Transport(http_client(&env).unwrap());
    let err = Credential::from_env(&env, &transport)
        .unwrap()
        .arm_token()
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Auth(_)), "{err}");
}

#[tokio::test]
async fn a_plain_http_authority_is_refused_before_any_request() {
    loopback_only!();
    let fake = FakeAzure::start();
    let plain = fake.authority_url().replacen("https://", "http://", 1);
    let env = env_of(&fake, &[("AZURE_AUTHORITY_HOST", &plain)]);
    let transport = Transport(http_client(&env).unwrap());
    let err = Credential::from_env(&env, &transport).unwrap_err();
    assert!(err.to_string().contains("HTTPS"), "{err}");
    assert_eq!(fake.count("POST token"), 0);
}

/// An ARM client of the fake's subscription.
fn arm(fake: &FakeAzure) -> crabbox_azure::arm::Arm {
    let env = env_of(fake, &[]);
    let http = http_client(&env).unwrap();
    let credential = Credential::from_env(&env, &Transport(http.clone())).unwrap();
    crabbox_azure::arm::Arm::new(
        http,
        &fake.arm_url(),
        crabbox_test_support::fake_azure::SUBSCRIPTION_ID,
        credential,
    )
}

const NETWORK: &str = "2024-05-01";
const GROUPS: &str = "2021-04-01";

#[tokio::test]
async fn writes_follow_their_operations_and_deletes_never_read_what_they_deleted() {
    use crabbox_test_support::fake_azure::{AzureError, Fault};
    use serde_json::json;
    loopback_only!();
    let fake = FakeAzure::start();
    let arm = arm(&fake);
    let group = arm.group_path("crabbox-leases");
    assert_eq!(arm.get(&group, GROUPS).await.unwrap(), None, "not yet");
    arm.put(
        &group,
        GROUPS,
        &json!({"location": "eastus", "tags": {"managed_by": "crabbox"}}),
    )
    .await
    .unwrap();
    assert!(arm.get(&group, GROUPS).await.unwrap().is_some());

    let pip = format!("{group}/providers/Microsoft.Network/publicIPAddresses/lease-pip");
    let body = json!({"location": "eastus", "sku": {"name": "Standard"},
                      "properties": {"publicIPAllocationMethod": "Static"}});
    // Throttled first: waited out and repeated.
    fake.inject(Fault::refuse(
        "PUT publicIPAddresses",
        AzureError::Throttled,
    ));
    let made = arm.put(&pip, NETWORK, &body).await.unwrap();
    assert_eq!(fake.count("PUT publicIPAddresses"), 2);
    assert_eq!(made["properties"]["provisioningState"], "Succeeded");
    let address = made["properties"]["ipAddress"].as_str().unwrap_or_default();
    assert!(
        !address.is_empty(),
        "the address, once the operation ended: {made}"
    );
    assert!(
        fake.count("GET operations") >= 1,
        "the operation was followed"
    );

    fake.reset_calls();
    arm.delete(&pip, NETWORK).await.unwrap();
    assert_eq!(
        fake.count("GET publicIPAddresses"),
        0,
        "a deleted resource is not read again"
    );
    assert!(
        fake.resources()
            .iter()
            .all(|r| !r.id.ends_with("lease-pip"))
    );
    arm.delete(&pip, NETWORK).await.unwrap();

    // An error keeps ARM's code, mapped to the shared vocabulary.
    fake.inject(Fault::refuse(
        "PUT publicIPAddresses",
        AzureError::QuotaExceeded,
    ));
    let err = arm.put(&pip, NETWORK, &body).await.unwrap_err();
    assert_eq!(err.code(), AzureError::QuotaExceeded.code());
    assert!(matches!(ProviderError::from(err), ProviderError::Quota(_)));
}

fn network() -> crabbox_azure::network::Network {
    crabbox_azure::network::Network {
        group: "crabbox-leases".into(),
        location: "eastus".into(),
        vnet: "crabbox-vnet".into(),
        subnet: "crabbox-subnet".into(),
        nsg: "crabbox-nsg".into(),
    }
}

#[tokio::test]
async fn the_shared_network_is_made_once_then_only_read_and_someone_elses_is_refused() {
    use crabbox_azure::network::{NETWORK_API, SshSources, ensure};
    use serde_json::json;
    loopback_only!();
    let fake = FakeAzure::start();
    let arm = arm(&fake);
    let net = network();
    let cidrs = SshSources {
        cidrs: vec!["198.51.100.7/32".to_owned()],
        detected: false,
    };
    let prepared = ensure(&arm, &net, &cidrs, &[2222, 22]).await.unwrap();
    assert!(
        prepared
            .subnet_id
            .ends_with("/virtualNetworks/crabbox-vnet/subnets/crabbox-subnet")
    );
    assert_eq!(fake.count("PUT resourceGroups"), 1);
    assert_eq!(fake.count("PUT virtualNetworks"), 1);
    assert_eq!(fake.count("PUT networkSecurityGroups"), 1);
    let nsg = arm
        .get(&prepared.nsg_id, NETWORK_API)
        .await
        .unwrap()
        .unwrap();
    let rules = nsg["properties"]["securityRules"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(rules.len(), 2, "{rules:?}");

    // The next create reads and writes nothing more.
    fake.reset_calls();
    ensure(&arm, &net, &cidrs, &[2222, 22]).await.unwrap();
    let writes = fake.calls().iter().filter(|c| c.method != "GET").count();
    assert_eq!(writes, 0, "{:?}", fake.calls());
    assert_eq!(fake.calls().len(), 3, "three reads: {:?}", fake.calls());

    // A rule someone else added stays; a new source replaces Crabbox's rules.
    let mut with_foreign = rules.clone();
    with_foreign.push(json!({"name": "allow-vpn", "properties": {"protocol": "Tcp",
        "sourcePortRange": "*", "destinationPortRange": "443", "sourceAddressPrefix": "10.0.0.0/8",
        "destinationAddressPrefix": "*", "access": "Allow", "priority": 300, "direction": "Inbound"}}));
    arm.put(
        &prepared.nsg_id,
        NETWORK_API,
        &json!({"location": "eastus", "tags": nsg["tags"],
        "properties": {"securityRules": with_foreign}}),
    )
    .await
    .unwrap();
    let moved = SshSources {
        cidrs: vec!["203.0.113.0/24".to_owned()],
        detected: false,
    };
    ensure(&arm, &net, &moved, &[2222, 22]).await.unwrap();
    let nsg = arm
        .get(&prepared.nsg_id, NETWORK_API)
        .await
        .unwrap()
        .unwrap();
    let text = nsg["properties"]["securityRules"].to_string();
    assert!(
        text.contains("allow-vpn") && text.contains("203.0.113.0/24"),
        "{text}"
    );
    assert!(!text.contains("198.51.100.7/32"), "{text}");

    // A network that is not Crabbox's is refused, and nothing is changed.
    let foreign = crabbox_azure::network::Network {
        vnet: "their-vnet".into(),
        ..network()
    };
    let vnet = format!(
        "{}/providers/Microsoft.Network/virtualNetworks/their-vnet",
        arm.group_path("crabbox-leases")
    );
    arm.put(
        &vnet,
        NETWORK_API,
        &json!({"location": "eastus", "properties": {
        "addressSpace": {"addressPrefixes": ["10.9.0.0/16"]},
        "subnets": [{"name": "crabbox-subnet", "properties": {"addressPrefix": "10.9.0.0/24"}}]}}),
    )
    .await
    .unwrap();
    fake.reset_calls();
    let err = ensure(&arm, &foreign, &cidrs, &[22]).await.unwrap_err();
    assert!(
        err.to_string().contains("not tagged managed_by=crabbox"),
        "{err}"
    );
    assert!(err.to_string().contains("CRABBOX_AZURE_VNET"), "{err}");
    assert!(
        fake.calls().iter().all(|c| c.method == "GET"),
        "{:?}",
        fake.calls()
    );
}
