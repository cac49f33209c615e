//! The Azure fake over real HTTPS: clients trust it by its own CA only; the identity platform's client credentials grant, ARM's
//! front-door checks, the create and delete chains with their long-running operations, the
//! refusals Azure makes on its own and the faults a test injects, and the boot emulator
//! booting a VM the fake holds.

use std::net::Ipv4Addr;
use std::time::Duration;

use base64::Engine;
use crabbox_remote::keys;
use crabbox_test_support::boot_emulator::BootEmulator;
use crabbox_test_support::fake_azure::{
    ARM_SCOPE, AzureError, CLIENT_ID, CLIENT_SECRET, FakeAzure, Fault, SUBSCRIPTION_ID, TENANT_ID,
};
use crabbox_test_support::loopback_only;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

const RG: &str = "crabbox-leases";
const LOCATION: &str = "eastus";
const NETWORK_API: &str = "2024-05-01";
const COMPUTE_API: &str = "2024-11-01";

/// The fake and a client holding one of its tokens.
struct Arm {
    fake: FakeAzure,
    http: reqwest::Client,
    token: String,
}

/// A client that trusts the fake's CA (as the product does through `SSL_CERT_FILE`).
fn http(fake: &FakeAzure) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(fake.ca_pem().as_bytes()).unwrap();
    reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(ca)
        .build()
        .unwrap()
}

async fn token(fake: &FakeAzure, secret: &str) -> Response {
    http(fake)
        .post(fake.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", secret),
            ("scope", ARM_SCOPE),
        ])
        .send()
        .await
        .unwrap()
}

/// `/subscriptions/{sub}/resourceGroups/{RG}/providers/{path}`.
fn id(path: &str) -> String {
    format!("/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{RG}/providers/{path}")
}

fn api_version(path: &str) -> &'static str {
    if path.contains("Microsoft.Network") {
        NETWORK_API
    } else if path.contains("Microsoft.Compute") {
        COMPUTE_API
    } else {
        "2022-09-01"
    }
}

impl Arm {
    async fn start() -> Self {
        let fake = FakeAzure::start();
        let answer: Value = token(&fake, CLIENT_SECRET).await.json().await.unwrap();
        let token = answer["access_token"].as_str().unwrap().to_owned();
        Self {
            http: http(&fake),
            fake,
            token,
        }
    }

    /// A request to `path` (an ARM path, or an absolute URL the fake handed out).
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let url = if path.starts_with("http") {
            assert!(
                path.starts_with(&format!("{}/", self.fake.url())),
                "a URL the fake hands out is its own, https: {path}"
            );
            path.to_owned()
        } else {
            let sep = if path.contains('?') { '&' } else { '?' };
            format!(
                "{}{path}{sep}api-version={}",
                self.fake.arm_url(),
                api_version(path)
            )
        };
        self.http.request(method, url).bearer_auth(&self.token)
    }

    async fn get(&self, path: &str) -> Response {
        self.request(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap()
    }

    async fn put(&self, path: &str, body: &Value) -> Response {
        self.request(reqwest::Method::PUT, path)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    async fn delete(&self, path: &str) -> Response {
        self.request(reqwest::Method::DELETE, path)
            .send()
            .await
            .unwrap()
    }

    /// Polls the answer's `Azure-AsyncOperation` URL until the operation is over; its last
    /// status body, and how many polls said `InProgress`.
    async fn follow(&self, accepted: &Response) -> (Value, usize) {
        let url = header(accepted, "azure-asyncoperation");
        let mut in_progress = 0;
        loop {
            let poll = self.get(&url).await;
            assert_eq!(poll.status(), StatusCode::OK);
            let running = poll.headers().contains_key("retry-after");
            let status: Value = poll.json().await.unwrap();
            if status["status"] != "InProgress" {
                return (status, in_progress);
            }
            assert!(running, "an operation in progress says when to look again");
            in_progress += 1;
        }
    }

    /// Polls the answer's `Location` URL until it stops answering 202; the last status.
    async fn follow_location(&self, accepted: &Response) -> StatusCode {
        let mut url = header(accepted, "location");
        loop {
            let poll = self.get(&url).await;
            if poll.status() != StatusCode::ACCEPTED {
                return poll.status();
            }
            assert!(poll.headers().contains_key("retry-after"));
            url = header(&poll, "location");
        }
    }

    /// `PUT`, then the operation to its end: the resource as `GET` shows it afterwards.
    async fn create(&self, path: &str, body: &Value) -> Value {
        let accepted = self.put(path, body).await;
        assert!(
            accepted.status().is_success(),
            "PUT {path}: {}",
            accepted.status()
        );
        let (status, _) = self.follow(&accepted).await;
        assert_eq!(status["status"], "Succeeded", "PUT {path}: {status}");
        self.get(path).await.json().await.unwrap()
    }

    /// The network every VM of these tests uses: group, network with a subnet, security
    /// group with an SSH rule.
    async fn network(&self) {
        let group = format!("/subscriptions/{SUBSCRIPTION_ID}/resourcegroups/{RG}");
        let created = self
            .put(
                &group,
                &json!({"location": LOCATION, "tags": {"crabbox": "true"}}),
            )
            .await;
        assert_eq!(created.status(), StatusCode::CREATED);
        self.create(
            &id("Microsoft.Network/virtualNetworks/crabbox-vnet"),
            &json!({"location": LOCATION, "tags": {"managed_by": "crabbox"}, "properties": {
                "addressSpace": {"addressPrefixes": ["10.42.0.0/16"]},
                "subnets": [{"name": "crabbox-subnet", "properties": {"addressPrefix": "10.42.0.0/24"}}]
            }}),
        )
        .await;
        self.create(
            &id("Microsoft.Network/networkSecurityGroups/crabbox-nsg"),
            &json!({"location": LOCATION, "properties": {"securityRules": [{
                "name": "crabbox-ssh-22-0",
                "properties": {"protocol": "Tcp", "sourcePortRange": "*", "destinationPortRange": "22",
                    "sourceAddressPrefix": "203.0.113.7/32", "destinationAddressPrefix": "*",
                    "access": "Allow", "priority": 100, "direction": "Inbound"}
            }]}}),
        )
        .await;
    }

    /// A lease's public IP and NIC; the NIC as shown.
    async fn nic(&self, lease: &str) -> Value {
        let pip = self
            .create(
                &id(&format!("Microsoft.Network/publicIPAddresses/{lease}-pip")),
                &json!({"location": LOCATION, "sku": {"name": "Standard"},
                        "properties": {"publicIPAllocationMethod": "Static"}}),
            )
            .await;
        self.create(
            &id(&format!("Microsoft.Network/networkInterfaces/{lease}-nic")),
            &json!({"location": LOCATION, "properties": {
                "ipConfigurations": [{"name": "ipconfig1", "properties": {
                    "subnet": {"id": id("Microsoft.Network/virtualNetworks/crabbox-vnet/subnets/crabbox-subnet")},
                    "publicIPAddress": {"id": pip["id"]},
                    "privateIPAllocationMethod": "Dynamic"
                }}],
                "networkSecurityGroup": {"id": id("Microsoft.Network/networkSecurityGroups/crabbox-nsg")}
            }}),
        )
        .await
    }
}

fn header(response: &Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
        .to_owned()
}

/// A Linux VM as Crabbox creates one, on the lease's NIC.
fn vm_body(lease: &str, size: &str, custom_data: &str) -> Value {
    json!({
        "location": LOCATION,
        "tags": {"crabbox": "true", "lease": lease},
        "properties": {
            "hardwareProfile": {"vmSize": size},
            "storageProfile": {
                "imageReference": {"publisher": "Canonical", "offer": "ubuntu-26_04-lts", "sku": "server", "version": "latest"},
                "osDisk": {"name": format!("{lease}-osdisk"), "createOption": "FromImage", "caching": "ReadWrite",
                           "managedDisk": {"storageAccountType": "StandardSSD_LRS"}}
            },
            "osProfile": {
                "computerName": lease, "adminUsername": "crabbox", "customData": custom_data,
                "linuxConfiguration": {"disablePasswordAuthentication": true}
            },
            "networkProfile": {"networkInterfaces": [{"id": id(&format!("Microsoft.Network/networkInterfaces/{lease}-nic"))}]}
        }
    })
}

fn vm_path(lease: &str) -> String {
    id(&format!("Microsoft.Compute/virtualMachines/{lease}"))
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// The rustls error somewhere in `err`'s chain. An `io::Error`'s `source` skips the error it
/// wraps, so the chain goes through `get_ref` there.
fn rustls_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(err);
    while let Some(err) = next {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        next = match err.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

#[tokio::test]
async fn only_a_client_that_trusts_the_fakes_ca_gets_through() {
    let fake = FakeAzure::start();
    assert!(
        fake.url().starts_with("https://127.0.0.1:"),
        "{}",
        fake.url()
    );
    let env = fake.env();
    let cert_file = env.iter().find(|(k, _)| *k == "SSL_CERT_FILE").unwrap();
    assert_eq!(std::path::Path::new(&cert_file.1), fake.ca_file());
    assert_eq!(
        std::fs::read_to_string(fake.ca_file()).unwrap(),
        fake.ca_pem()
    );

    let untrusting = reqwest::Client::builder().no_proxy().build().unwrap();
    let refused = untrusting
        .post(fake.token_url())
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap_err();
    assert!(refused.is_connect(), "{refused:?}");
    assert_eq!(
        rustls_error(&refused),
        Some(&rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer
        )),
        "{refused:?}"
    );
    assert_eq!(fake.count("POST token"), 0, "no request got through");

    let granted = token(&fake, CLIENT_SECRET).await;
    assert_eq!(granted.status(), StatusCode::OK);
    // The certificate names `localhost` as well as 127.0.0.1.
    let port = fake.url().rsplit(':').next().unwrap().to_owned();
    let discovery: Value = http(&fake)
        .get(format!(
            "https://localhost:{port}/{TENANT_ID}/v2.0/.well-known/openid-configuration"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["token_endpoint"], fake.token_url());
}

#[tokio::test]
async fn the_token_endpoint_grants_client_credentials_and_arm_takes_only_its_tokens() {
    let arm = Arm::start().await;
    let granted: Value = token(&arm.fake, CLIENT_SECRET).await.json().await.unwrap();
    assert_eq!(granted["token_type"], "Bearer");
    assert_eq!(granted["expires_in"], 3599);
    assert_eq!(granted["ext_expires_in"], 3599);

    let refused = token(&arm.fake, "not-the-secret").await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["error"], "invalid_client");
    assert_eq!(refused["error_codes"], json!([7_000_215]));
    assert!(
        refused["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS7000215: ")
    );

    let elsewhere = http(&arm.fake)
        .post(format!(
            "{}/{}/oauth2/v2.0/token",
            arm.fake.authority_url(),
            uuid::Uuid::new_v4()
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("scope", ARM_SCOPE),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), StatusCode::BAD_REQUEST);
    let elsewhere: Value = elsewhere.json().await.unwrap();
    assert_eq!(elsewhere["error"], "invalid_request");
    assert_eq!(elsewhere["error_codes"], json!([90002]));

    let discovery: Value = http(&arm.fake)
        .get(format!(
            "{}/{TENANT_ID}/v2.0/.well-known/openid-configuration",
            arm.fake.authority_url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["token_endpoint"], arm.fake.token_url());

    let subscription = format!("/subscriptions/{SUBSCRIPTION_ID}");
    assert_eq!(arm.get(&subscription).await.status(), StatusCode::OK);
    let url = format!(
        "{}{subscription}?api-version=2022-12-01",
        arm.fake.arm_url()
    );
    let anonymous = http(&arm.fake).get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(header(&anonymous, "www-authenticate").starts_with("Bearer authorization_uri="));
    let anonymous: Value = anonymous.json().await.unwrap();
    assert_eq!(anonymous["error"]["code"], "AuthenticationFailed");
    let forged = http(&arm.fake)
        .get(&url)
        .bearer_auth("eyJforged")
        .send()
        .await
        .unwrap();
    let forged: Value = forged.json().await.unwrap();
    assert_eq!(forged["error"]["code"], "InvalidAuthenticationToken");
    assert_eq!(
        arm.fake.count("POST token"),
        4,
        "the client's own and three here"
    );
}

#[tokio::test]
async fn every_arm_call_needs_an_api_version_and_a_known_subscription() {
    let arm = Arm::start().await;
    let group = format!(
        "{}/subscriptions/{SUBSCRIPTION_ID}/resourcegroups/{RG}",
        arm.fake.arm_url()
    );
    // Asked before the token, as ARM does.
    let bare = http(&arm.fake).get(&group).send().await.unwrap();
    assert_eq!(bare.status(), StatusCode::BAD_REQUEST);
    let bare: Value = bare.json().await.unwrap();
    assert_eq!(bare["error"]["code"], "MissingApiVersionParameter");

    let missing = arm
        .get(&format!(
            "/subscriptions/{SUBSCRIPTION_ID}/resourcegroups/{RG}"
        ))
        .await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let missing: Value = missing.json().await.unwrap();
    assert_eq!(missing["error"]["code"], "ResourceGroupNotFound");

    let other = arm
        .get(&format!(
            "/subscriptions/{}/resourcegroups/{RG}",
            uuid::Uuid::new_v4()
        ))
        .await;
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
    let other: Value = other.json().await.unwrap();
    assert_eq!(other["error"]["code"], "SubscriptionNotFound");
}

#[tokio::test]
async fn a_vm_is_created_on_its_network_following_each_operation() {
    let arm = Arm::start().await;
    arm.network().await;
    let subnet: Value = arm
        .get(&id(
            "Microsoft.Network/virtualNetworks/crabbox-vnet/subnets/crabbox-subnet",
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(subnet["properties"]["addressPrefix"], "10.42.0.0/24");

    // A NIC on a subnet that does not exist is refused.
    let stray = arm
        .put(
            &id("Microsoft.Network/networkInterfaces/stray-nic"),
            &json!({"location": LOCATION, "properties": {"ipConfigurations": [{"name": "ipconfig1", "properties": {
                "subnet": {"id": id("Microsoft.Network/virtualNetworks/crabbox-vnet/subnets/nope")}}}]}}),
        )
        .await;
    assert_eq!(stray.status(), StatusCode::BAD_REQUEST);
    let stray: Value = stray.json().await.unwrap();
    assert_eq!(stray["error"]["code"], "InvalidResourceReference");

    // The public IP has its address once its create is over, not before.
    let pip_path = id("Microsoft.Network/publicIPAddresses/lease1-pip");
    let accepted = arm
        .put(
            &pip_path,
            &json!({"location": LOCATION, "sku": {"name": "Standard"}}),
        )
        .await;
    assert_eq!(accepted.status(), StatusCode::CREATED);
    assert_eq!(header(&accepted, "retry-after"), "0");
    let (status, in_progress) = arm.follow(&accepted).await;
    assert_eq!(
        (status["status"].as_str(), in_progress),
        (Some("Succeeded"), 1)
    );
    let pip: Value = arm.get(&pip_path).await.json().await.unwrap();
    let address: Ipv4Addr = pip["properties"]["ipAddress"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(!address.is_loopback() && !address.is_private(), "{address}");

    let nic = arm.nic("lease1").await;
    let config = &nic["properties"]["ipConfigurations"][0]["properties"];
    assert_eq!(config["privateIPAddress"], "10.42.0.4");

    let accepted = arm
        .put(
            &vm_path("lease1"),
            &vm_body("lease1", "Standard_D2ads_v6", &b64("#cloud-config\n")),
        )
        .await;
    assert_eq!(accepted.status(), StatusCode::CREATED);
    let shown: Value = accepted.json().await.unwrap();
    assert_eq!(shown["properties"]["provisioningState"], "Creating");
    let vm: Value = arm.get(&vm_path("lease1")).await.json().await.unwrap();
    assert_eq!(
        vm["properties"]["provisioningState"], "Creating",
        "one observation in progress"
    );
    let vm: Value = arm
        .get(&format!("{}?$expand=instanceView", vm_path("lease1")))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(vm["properties"]["provisioningState"], "Succeeded");
    assert!(
        vm["properties"]["osProfile"].get("customData").is_none(),
        "ARM never shows customData"
    );
    let statuses = &vm["properties"]["instanceView"]["statuses"];
    assert_eq!(statuses[1]["code"], "PowerState/running");

    let disk_id = vm["properties"]["storageProfile"]["osDisk"]["managedDisk"]["id"]
        .as_str()
        .unwrap();
    let disk: Value = arm.get(disk_id).await.json().await.unwrap();
    assert_eq!(disk["managedBy"], vm["id"]);
    assert_eq!(disk["properties"]["diskState"], "Attached");
    let nic: Value = arm
        .get(&id("Microsoft.Network/networkInterfaces/lease1-nic"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(nic["properties"]["virtualMachine"]["id"], vm["id"]);

    let held = arm.fake.vm("lease1").unwrap();
    assert_eq!(held.public_ip, Some(address));
    assert_eq!(held.private_ip, Some(Ipv4Addr::new(10, 42, 0, 4)));
    assert_eq!(held.user_data().as_deref(), Some("#cloud-config\n"));
    assert_eq!(arm.fake.count("PUT virtualMachines"), 1);
}

#[tokio::test]
async fn vm_lists_page_with_next_link() {
    let arm = Arm::start().await;
    arm.fake.set_lro_polls(0);
    arm.network().await;
    for lease in ["a", "b", "c"] {
        arm.nic(lease).await;
        arm.create(
            &vm_path(lease),
            &vm_body(lease, "Standard_F2s_v2", &b64("#cloud-config\n")),
        )
        .await;
    }
    let mut names = Vec::new();
    let mut page: Value = arm
        .get(&id("Microsoft.Compute/virtualMachines"))
        .await
        .json()
        .await
        .unwrap();
    loop {
        names.extend(
            page["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|vm| vm["name"].as_str().unwrap().to_owned()),
        );
        let Some(next) = page["nextLink"].as_str() else {
            break;
        };
        page = arm.get(next).await.json().await.unwrap();
    }
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(arm.fake.count("LIST virtualMachines"), 2);
}

#[tokio::test]
async fn a_vm_and_its_resources_are_deleted_in_order() {
    let arm = Arm::start().await;
    arm.fake.set_lro_polls(0);
    arm.network().await;
    arm.nic("lease1").await;
    let vm = arm
        .create(
            &vm_path("lease1"),
            &vm_body("lease1", "Standard_D2ads_v6", &b64("#cloud-config\n")),
        )
        .await;
    let nic_path = id("Microsoft.Network/networkInterfaces/lease1-nic");
    let pip_path = id("Microsoft.Network/publicIPAddresses/lease1-pip");
    let disk_path = id("Microsoft.Compute/disks/lease1-osdisk");

    // While the VM has them, its NIC and disk cannot go; while the NIC has it, the address.
    let refused: Value = arm.delete(&nic_path).await.json().await.unwrap();
    assert_eq!(refused["error"]["code"], "NicInUse");
    let refused = arm.delete(&disk_path).await;
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["error"]["code"], "OperationNotAllowed");
    let refused: Value = arm.delete(&pip_path).await.json().await.unwrap();
    assert_eq!(refused["error"]["code"], "PublicIPAddressCannotBeDeleted");

    arm.fake.set_lro_polls(1);
    let accepted = arm.delete(&vm_path("lease1")).await;
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    assert!(accepted.headers().contains_key("azure-asyncoperation"));
    assert_eq!(arm.follow_location(&accepted).await, StatusCode::OK);
    assert_eq!(
        arm.get(&vm_path("lease1")).await.status(),
        StatusCode::NOT_FOUND
    );
    let disk: Value = arm.get(&disk_path).await.json().await.unwrap();
    assert_eq!(
        disk["properties"]["diskState"], "Unattached",
        "the disk stays: deleteOption Detach"
    );

    for path in [&nic_path, &pip_path, &disk_path] {
        let accepted = arm.delete(path).await;
        assert_eq!(accepted.status(), StatusCode::ACCEPTED, "DELETE {path}");
        assert!(arm.follow_location(&accepted).await.is_success());
        assert_eq!(arm.get(path).await.status(), StatusCode::NOT_FOUND);
    }
    assert_eq!(
        arm.delete(&nic_path).await.status(),
        StatusCode::NO_CONTENT,
        "gone already"
    );
    let left: Vec<String> = arm
        .fake
        .resources()
        .into_iter()
        .map(|r| r.resource_type)
        .collect();
    assert_eq!(
        left,
        [
            "Microsoft.Resources/resourceGroups",
            "Microsoft.Network/networkSecurityGroups",
            "Microsoft.Network/virtualNetworks"
        ]
    );
    assert!(
        vm["id"]
            .as_str()
            .unwrap()
            .ends_with("/virtualMachines/lease1")
    );
}

#[tokio::test]
async fn sku_refusals_and_allocation_failures_come_as_azure_reports_them() {
    let arm = Arm::start().await;
    arm.fake.set_lro_polls(0);
    arm.network().await;
    arm.nic("lease1").await;
    let path = vm_path("lease1");
    arm.fake.inject(
        Fault::refuse("PUT virtualMachines", AzureError::SkuNotAvailable)
            .when("/properties/hardwareProfile/vmSize", "Standard_D2ads_v6"),
    );
    let refused = arm
        .put(
            &path,
            &vm_body("lease1", "Standard_D2ads_v6", &b64("#cloud-config\n")),
        )
        .await;
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["error"]["code"], "SkuNotAvailable");
    assert!(
        arm.fake.vm("lease1").is_none(),
        "a refused create makes nothing"
    );

    // The catalogue's own restriction, and a size that does not exist.
    arm.fake.restrict_sku("Standard_D2ds_v6", LOCATION);
    let skus: Value = arm.get(&format!("/subscriptions/{SUBSCRIPTION_ID}/providers/Microsoft.Compute/skus?$filter=location eq 'eastus'")).await.json().await.unwrap();
    let d2ds = skus["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "Standard_D2ds_v6")
        .unwrap();
    assert_eq!(
        d2ds["restrictions"][0]["reasonCode"],
        "NotAvailableForSubscription"
    );
    let capability = |name: &str| {
        d2ds["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()["value"]
            .clone()
    };
    assert_eq!(
        (capability("vCPUs"), capability("EphemeralOSDiskSupported")),
        (json!("2"), json!("True"))
    );
    let restricted: Value = arm
        .put(&path, &vm_body("lease1", "Standard_D2ds_v6", ""))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(restricted["error"]["code"], "SkuNotAvailable");
    let unknown: Value = arm
        .put(&path, &vm_body("lease1", "Standard_Z9000", ""))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(unknown["error"]["code"], "InvalidParameter");

    // Allocation failures are accepted, then the operation fails.
    arm.fake.inject(
        Fault::refuse("PUT virtualMachines", AzureError::AllocationFailed)
            .when("/properties/priority", "Spot"),
    );
    let mut spot = vm_body("lease1", "Standard_D2ads_v6", &b64("#cloud-config\n"));
    spot["properties"]["priority"] = json!("Spot");
    spot["properties"]["evictionPolicy"] = json!("Delete");
    let accepted = arm.put(&path, &spot).await;
    assert_eq!(accepted.status(), StatusCode::CREATED);
    let (status, _) = arm.follow(&accepted).await;
    assert_eq!(status["status"], "Failed");
    assert_eq!(status["error"]["code"], "AllocationFailed");
    let vm: Value = arm.get(&path).await.json().await.unwrap();
    assert_eq!(vm["properties"]["provisioningState"], "Failed");
    assert!(arm.fake.faults_spent());
}

#[tokio::test]
async fn a_dropped_reply_leaves_the_vm_created() {
    let arm = Arm::start().await;
    arm.network().await;
    arm.nic("lease1").await;
    arm.fake.inject(Fault::drop_reply("PUT virtualMachines"));
    let lost = arm
        .request(reqwest::Method::PUT, &vm_path("lease1"))
        .json(&vm_body(
            "lease1",
            "Standard_D2ads_v6",
            &b64("#cloud-config\n"),
        ))
        .send()
        .await;
    assert!(lost.is_err(), "no answer: {lost:?}");
    assert!(arm.fake.vm("lease1").is_some());
    let vm = arm.get(&vm_path("lease1")).await;
    assert_eq!(vm.status(), StatusCode::OK);
    assert_eq!(arm.fake.count("PUT virtualMachines"), 1);
}

#[tokio::test]
async fn throttled_calls_get_429_with_retry_after() {
    let arm = Arm::start().await;
    let path = format!("/subscriptions/{SUBSCRIPTION_ID}");
    let first = arm.get(&path).await;
    let remaining: u32 = header(&first, "x-ms-ratelimit-remaining-subscription-reads")
        .parse()
        .unwrap();
    arm.fake
        .inject(Fault::refuse("GET subscriptions", AzureError::Throttled).times(2));
    for _ in 0..2 {
        let throttled = arm.get(&path).await;
        assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(header(&throttled, "retry-after"), "1");
        let body: Value = throttled.json().await.unwrap();
        assert_eq!(body["error"]["code"], "SubscriptionRequestsThrottled");
    }
    let after = arm.get(&path).await;
    assert_eq!(after.status(), StatusCode::OK);
    let now: u32 = header(&after, "x-ms-ratelimit-remaining-subscription-reads")
        .parse()
        .unwrap();
    assert!(now < remaining);
}

#[tokio::test]
async fn the_boot_emulator_boots_a_vm_of_the_fake() {
    loopback_only!();
    let arm = Arm::start().await;
    arm.fake.set_lro_polls(0);
    let keys_dir = tempfile::tempdir().unwrap();
    let key = keys::ensure_ed25519(keys_dir.path(), "lease", "cbx-test").unwrap();
    let cloud_init = format!(
        "#cloud-config\nusers:\n  - name: crabbox\n    ssh_authorized_keys:\n      - {}\n",
        key.public_key().unwrap()
    );
    arm.network().await;
    let nic = arm.nic("lease1").await;
    let emulator = BootEmulator::watch(arm.fake.cloud());
    arm.create(
        &vm_path("lease1"),
        &vm_body("lease1", "Standard_D2ads_v6", &b64(&cloud_init)),
    )
    .await;

    let runner = emulator.wait_for_runner("lease1", Duration::from_secs(10));
    let pip_id = nic["properties"]["ipConfigurations"][0]["properties"]["publicIPAddress"]["id"]
        .as_str()
        .unwrap();
    let pip: Value = arm.get(pip_id).await.json().await.unwrap();
    assert_eq!(
        runner.address().to_string(),
        pip["properties"]["ipAddress"].as_str().unwrap()
    );
    assert_eq!(runner.user.as_deref(), Some("crabbox"));

    let accepted = arm.delete(&vm_path("lease1")).await;
    arm.follow_location(&accepted).await;
    emulator.wait_for_shutdown("lease1", Duration::from_secs(10));
}

#[tokio::test]
async fn delete_options_ephemeral_disks_and_group_deletes_decide_what_is_left() {
    let arm = Arm::start().await;
    arm.fake.set_lro_polls(0);
    arm.network().await;

    // A disk and NIC marked `Delete` go with their VM; the public IP stays.
    arm.nic("gone").await;
    let mut body = vm_body("gone", "Standard_D2ads_v6", &b64("#cloud-config\n"));
    body["properties"]["storageProfile"]["osDisk"]["deleteOption"] = json!("Delete");
    body["properties"]["networkProfile"]["networkInterfaces"][0]["properties"] =
        json!({"deleteOption": "Delete"});
    arm.create(&vm_path("gone"), &body).await;
    let accepted = arm.delete(&vm_path("gone")).await;
    assert_eq!(arm.follow(&accepted).await.0["status"], "Succeeded");
    for (path, left) in [
        (
            id("Microsoft.Compute/disks/gone-osdisk"),
            StatusCode::NOT_FOUND,
        ),
        (
            id("Microsoft.Network/networkInterfaces/gone-nic"),
            StatusCode::NOT_FOUND,
        ),
        (
            id("Microsoft.Network/publicIPAddresses/gone-pip"),
            StatusCode::OK,
        ),
    ] {
        assert_eq!(arm.get(&path).await.status(), left, "{path}");
    }

    // An ephemeral OS disk is no resource, and needs a size with a local disk.
    arm.nic("eph").await;
    let mut body = vm_body("eph", "Standard_D2as_v6", &b64("#cloud-config\n"));
    body["properties"]["storageProfile"]["osDisk"]["caching"] = json!("ReadOnly");
    body["properties"]["storageProfile"]["osDisk"]["diffDiskSettings"] = json!({"option": "Local"});
    let refused: Value = arm.put(&vm_path("eph"), &body).await.json().await.unwrap();
    assert_eq!(refused["error"]["code"], "InvalidParameter");
    body["properties"]["hardwareProfile"]["vmSize"] = json!("Standard_D2ads_v6");
    arm.create(&vm_path("eph"), &body).await;
    assert_eq!(arm.fake.vm("eph").unwrap().os_disk, None);
    assert!(
        !arm.fake
            .resources()
            .iter()
            .any(|r| r.resource_type == "Microsoft.Compute/disks")
    );

    // Behind the client's back: the VM is gone, so its NIC may go.
    assert!(arm.fake.remove(&vm_path("eph")));
    assert_eq!(
        arm.get(&vm_path("eph")).await.status(),
        StatusCode::NOT_FOUND
    );
    let nic = arm
        .delete(&id("Microsoft.Network/networkInterfaces/eph-nic"))
        .await;
    assert_eq!(nic.status(), StatusCode::ACCEPTED);

    // A group's delete reports by `Location` only, and takes everything in it.
    let group = format!("/subscriptions/{SUBSCRIPTION_ID}/resourcegroups/{RG}");
    let accepted = arm.delete(&group).await;
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    assert!(!accepted.headers().contains_key("azure-asyncoperation"));
    assert_eq!(arm.follow_location(&accepted).await, StatusCode::OK);
    assert_eq!(arm.fake.resources(), []);

    arm.fake.expire_tokens();
    let expired: Value = arm
        .get(&format!("/subscriptions/{SUBSCRIPTION_ID}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(expired["error"]["code"], "ExpiredAuthenticationToken");
}
