//! A stateful fake of Azure Resource Manager and the Microsoft Entra token endpoint, served
//! over real HTTPS on 127.0.0.1 (one ephemeral port for both) from a runtime of its own, for
//! tests of the Azure provider. Paths, status codes, headers and JSON shapes follow
//! Microsoft's public references:
//!
//! - "Microsoft identity platform and the OAuth 2.0 client credentials flow" (token request,
//!   response and error shapes), with the `AADSTS` codes the identity platform's error
//!   reference lists (7000215 wrong secret, 90002 unknown tenant, 700016 unknown client,
//!   1002012 scope without `/.default`, 500011 unknown resource);
//! - "Azure REST API reference: Resource Groups", "Virtual Networks", "Subnets", "Network
//!   Security Groups", "Security Rules", "Public IP Addresses", "Network Interfaces",
//!   "Virtual Machines", "Disks", "Virtual Machine Extensions", "Resource Skus - List";
//! - "Track asynchronous Azure operations" (`Azure-AsyncOperation`, `Location`,
//!   `Retry-After`, the status body) and "Understand how Azure Resource Manager throttles
//!   requests" (`x-ms-ratelimit-remaining-subscription-*`, 429 with `Retry-After`);
//! - ARM's common error codes as its troubleshooting pages and the Azure SDKs' issue trackers
//!   quote them (`MissingApiVersionParameter`, `AuthenticationFailed`,
//!   `InvalidAuthenticationToken`, `SubscriptionNotFound`, `ResourceGroupNotFound`,
//!   `ResourceNotFound`, `SkuNotAvailable`, `AllocationFailed`, `NicInUse`,
//!   `PublicIPAddressCannotBeDeleted`, `OperationNotAllowed` for an attached disk,
//!   `InvalidResourceReference`).
//!
//! **TLS**: Azure is HTTPS-only, and Microsoft's `azure_identity` refuses an authority host
//! that is not `https://`, so the fake is too. Its certificate (for `127.0.0.1` and
//! `localhost`) comes from a CA of its own ([`crate::tls::TestCa`]), whose PEM file is
//! [`FakeAzure::ca_file`]: [`FakeAzure::env`] passes it as `SSL_CERT_FILE`, and a client
//! built in a test adds [`FakeAzure::ca_pem`] as a root. Every URL the fake hands out
//! (`Azure-AsyncOperation`, `Location`, `nextLink`, the identity platform's metadata) is
//! `https://` too.
//!
//! **Identity** ([`FakeAzure::authority_url`], for `AZURE_AUTHORITY_HOST`): `POST
//! /{tenant}/oauth2/v2.0/token` (client credentials, secret in the form or HTTP Basic; scope
//! `https://management.azure.com/.default`), `GET /{tenant}/v2.0/.well-known/openid-configuration`
//! and `GET /common/discovery/instance`. Only [`TENANT_ID`], [`CLIENT_ID`] and
//! [`CLIENT_SECRET`] get a token; ARM takes only tokens the fake issued.
//!
//! **Resource Manager** ([`FakeAzure::arm_url`], for `CRABBOX_AZURE_ARM_ENDPOINT`), under
//! `/subscriptions/`[`SUBSCRIPTION_ID`]: resource groups; `Microsoft.Network`
//! `virtualNetworks` (+ `subnets`), `networkSecurityGroups` (+ `securityRules`),
//! `publicIPAddresses`, `networkInterfaces`; `Microsoft.Compute` `virtualMachines` (+
//! `extensions`, `instanceView`), `disks`, `skus`; lists of every type per group (and per
//! subscription) with `nextLink` paging. Every call needs `api-version` and the token, in
//! that order, as on ARM; path segments compare without regard to case.
//!
//! **Long-running operations**: creates and updates answer 201/200 with
//! `Azure-AsyncOperation` and `provisioningState` `Creating` (compute) or `Updating`
//! (network); deletes answer 202 with `Location` and `Azure-AsyncOperation` (a resource
//! group's with `Location` only). Time does not pass in the fake, observations do: an
//! operation is `InProgress` for [`FakeAzure::set_lro_polls`] observations (default 1) and
//! ends at the next, `Succeeded`, or `Failed` with `error{code, message}` when a fault says
//! so. A poll of either URL is an observation, and so is any request addressed to the
//! resource (its `GET`, a retried `PUT`), as a client re-reading a resource sees it finish on
//! Azure. `Location` polls answer 202 until the end, then 200 (compute, groups) or 204
//! (network). `Retry-After` is [`FakeAzure::set_retry_after`] seconds (default 0) on every
//! accepted or in-progress answer. A change while an operation runs on the resource is
//! `AnotherOperationInProgress` (409); a delete preempts a create.
//!
//! **What stays and what goes**: a delete is refused while something uses the resource
//! (`NicInUse`, `PublicIPAddressCannotBeDeleted`, `InUseSubnetCannotBeDeleted`,
//! `InUseNetworkSecurityGroupCannotBeDeleted`, 400; an attached disk `OperationNotAllowed`,
//! 409); a VM's OS disk and NICs stay after it unless their `deleteOption` is `Delete`; a VM
//! whose create failed keeps its OS disk, as a failed VM on Azure does; deleting what does
//! not exist is 204.
//!
//! **Routes**, by which calls are counted ([`FakeAzure::count`]) and faulted ([`Fault`]):
//! `"{METHOD} {what}"` where `what` is the resource type's path segment for one resource
//! (`PUT virtualMachines`, `GET publicIPAddresses`, `DELETE disks`, `PATCH virtualMachines`,
//! `PUT extensions`, `PUT subnets`, `PUT securityRules`, `GET instanceView`), `LIST <type>`
//! for a list (`LIST virtualMachines`), `GET skus`, `PUT resourceGroups`, `GET operations`
//! (an `Azure-AsyncOperation` poll), `GET operationResults` (a `Location` poll, compute's
//! `?monitor=true` ones included), `GET subscriptions`, and `POST token`,
//! `GET openid-configuration`, `GET instance-discovery` for the identity platform.
//!
//! **The boot emulator** sees the fake's VMs through [`FakeAzure::cloud`], straight from its
//! state (not over HTTP, not counted): each VM by name, running once its create succeeded and
//! until its delete starts, with its NIC's public and private addresses and its decoded
//! `customData` as user data.

mod arm;
mod compute;
mod disks;
mod faults;
mod groups;
mod identity;
mod interfaces;
mod lro;
mod network;
mod references;
mod resources;
mod routes;
mod skus;
mod state;
mod vnets;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use serde_json::Value;

use crate::boot_emulator::{Cloud, CloudFuture, Machine};
use crate::tls::TestCa;
pub use faults::{AzureError, Call, Effect, Fault};
pub use skus::LOCATIONS;
use state::{Kind, Resource, State};

/// The directory (tenant) the fake's identity platform knows.
pub const TENANT_ID: &str = "0c8a6f1e-4b7d-4f2a-9c3e-5d1b2a7f8e90";
/// The app registration (service principal) that may ask for tokens.
pub const CLIENT_ID: &str = "5e2d7c9a-1f3b-4a6e-8d0c-9b7a6f5e4d3c";
/// Its client secret.
pub const CLIENT_SECRET: &str = "Fk8Q~crabbox.fake-azure_client-secret";
/// The only subscription; any other is `SubscriptionNotFound`.
pub const SUBSCRIPTION_ID: &str = "3f9e1d2c-6b5a-4c8d-9e0f-1a2b3c4d5e6f";
/// The scope a client asks a Resource Manager token for.
pub const ARM_SCOPE: &str = "https://management.azure.com/.default";

type Shared = Arc<Mutex<State>>;

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    // A test that failed while the fake served must not take the fake down with it.
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The running fake. Dropping it stops the server.
#[derive(Debug)]
pub struct FakeAzure {
    addr: SocketAddr,
    state: Shared,
    ca: TestCa,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for FakeAzure {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A resource as [`FakeAzure::resources`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeResource {
    pub id: String,
    /// `Microsoft.Compute/virtualMachines`, `Microsoft.Resources/resourceGroups`, …
    pub resource_type: String,
    pub name: String,
    pub resource_group: String,
    pub location: String,
    /// The string-valued tags.
    pub tags: BTreeMap<String, String>,
    pub provisioning_state: String,
}

/// A VM as the fake holds it, secrets included.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeVm {
    pub id: String,
    pub name: String,
    pub resource_group: String,
    pub location: String,
    pub vm_size: String,
    pub provisioning_state: String,
    pub tags: BTreeMap<String, String>,
    /// `properties.priority` (`Spot`, `Regular`), when given.
    pub priority: Option<String>,
    /// `osProfile.customData` as sent (base64), which ARM never shows.
    pub custom_data: Option<String>,
    /// The ids of its NICs, primary first.
    pub nics: Vec<String>,
    /// The id of its managed OS disk (none when ephemeral).
    pub os_disk: Option<String>,
    pub public_ip: Option<Ipv4Addr>,
    pub private_ip: Option<Ipv4Addr>,
    /// The VM as `GET` shows it.
    pub body: Value,
}

impl FakeVm {
    /// The decoded `customData` (the cloud-init document).
    pub fn user_data(&self) -> Option<String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(self.custom_data.as_ref()?)
            .ok()?;
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// The ARM id of a resource of `resource_type` (`Microsoft.Network/publicIPAddresses`) in
/// the fake's subscription.
pub fn resource_id(resource_group: &str, resource_type: &str, name: &str) -> String {
    format!(
        "/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{resource_group}/providers/{resource_type}/{name}"
    )
}

fn string_tags(tags: &serde_json::Map<String, Value>) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect()
}

impl FakeAzure {
    /// Starts the fake on a free 127.0.0.1 port. Works inside and outside a Tokio runtime.
    pub fn start() -> Self {
        let runtime = crate::background_runtime("fake-azure");
        let (listener, addr) = crate::loopback_listener("Azure fake");
        let ca = TestCa::new();
        let state: Shared = Arc::new(Mutex::new(State::new(format!("https://{addr}"))));
        let served = Arc::clone(&state);
        crate::serve_https(&runtime, listener, ca.server_config(), move |req| {
            handle(Arc::clone(&served), req)
        });
        Self {
            addr,
            state,
            ca,
            runtime: Some(runtime),
        }
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The PEM file of the CA that signed the fake's certificate (`SSL_CERT_FILE`). It is
    /// removed when the fake is dropped.
    pub fn ca_file(&self) -> &Path {
        self.ca.ca_file()
    }

    /// The CA certificate, PEM-encoded, for a client built in the test
    /// (`reqwest::Certificate::from_pem`).
    pub fn ca_pem(&self) -> &str {
        self.ca.ca_pem()
    }

    /// The identity platform's authority host (`AZURE_AUTHORITY_HOST`).
    pub fn authority_url(&self) -> String {
        self.url()
    }

    /// Resource Manager's endpoint (`CRABBOX_AZURE_ARM_ENDPOINT`).
    pub fn arm_url(&self) -> String {
        self.url()
    }

    /// The token endpoint of [`TENANT_ID`].
    pub fn token_url(&self) -> String {
        format!("{}/{TENANT_ID}/oauth2/v2.0/token", self.authority_url())
    }

    /// The environment a product process needs to use the fake with a client secret,
    /// `SSL_CERT_FILE` (the fake's CA) included.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SSL_CERT_FILE", self.ca_file().display().to_string()),
            ("AZURE_AUTHORITY_HOST", self.authority_url()),
            ("CRABBOX_AZURE_ARM_ENDPOINT", self.arm_url()),
            ("AZURE_TENANT_ID", TENANT_ID.to_owned()),
            ("AZURE_CLIENT_ID", CLIENT_ID.to_owned()),
            ("AZURE_CLIENT_SECRET", CLIENT_SECRET.to_owned()),
            ("CRABBOX_AZURE_SUBSCRIPTION_ID", SUBSCRIPTION_ID.to_owned()),
        ]
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Adds a fault; faults are tried in the order added, the first that matches applies.
    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Whether every injected fault has been used up.
    pub fn faults_spent(&self) -> bool {
        self.lock().faults.iter().all(Fault::spent)
    }

    /// How many calls of `route` reached the fake (refused and dropped ones included).
    pub fn count(&self, route: &str) -> usize {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.route.eq_ignore_ascii_case(route))
            .count()
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// Forgets the calls so far (to count one phase of a test alone).
    pub fn reset_calls(&self) {
        self.lock().calls.clear();
    }

    /// Everything that exists now, resource groups included, in id order.
    pub fn resources(&self) -> Vec<FakeResource> {
        self.lock()
            .resources
            .values()
            .map(|r| FakeResource {
                id: r.id.clone(),
                resource_type: r.kind.resource_type(),
                name: r.name.clone(),
                resource_group: r.group.clone(),
                location: r.location.clone(),
                tags: string_tags(&r.tags),
                provisioning_state: r.state.as_str().to_owned(),
            })
            .collect()
    }

    /// The VM called `name` (in any resource group).
    pub fn vm(&self, name: &str) -> Option<FakeVm> {
        let state = self.lock();
        let vm = state
            .of_kind(Kind::VirtualMachine)
            .find(|vm| vm.name.eq_ignore_ascii_case(name))?;
        let (public_ip, private_ip) = state.vm_addresses(vm);
        let body = resources::render(&state, vm, false);
        Some(FakeVm {
            id: vm.id.clone(),
            name: vm.name.clone(),
            resource_group: vm.group.clone(),
            location: vm.location.clone(),
            vm_size: vm.prop("hardwareProfile")["vmSize"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            provisioning_state: vm.state.as_str().to_owned(),
            tags: string_tags(&vm.tags),
            priority: vm.prop("priority").as_str().map(str::to_owned),
            custom_data: vm.custom_data.clone(),
            nics: references::nic_ids(vm),
            os_disk: vm.prop("storageProfile")["osDisk"]["managedDisk"]["id"]
                .as_str()
                .map(str::to_owned),
            public_ip,
            private_ip,
            body,
        })
    }

    /// Sets a tag of the VM called `name` behind the client's back (as someone editing it in
    /// the portal would). Whether there was such a VM.
    pub fn set_vm_tag(&self, name: &str, key: &str, value: &str) -> bool {
        let mut state = self.lock();
        let Some(key_of) = state
            .of_kind(Kind::VirtualMachine)
            .find(|vm| vm.name.eq_ignore_ascii_case(name))
            .map(Resource::key)
        else {
            return false;
        };
        if let Some(vm) = state.resources.get_mut(&key_of) {
            vm.tags
                .insert(key.to_owned(), Value::String(value.to_owned()));
        }
        true
    }

    /// Deletes the resource with ARM id `id` behind the client's back, at once and with what
    /// goes with it (a VM's extensions, and its disk and NICs marked `deleteOption: Delete`; a
    /// group's resources). Whether there was one.
    pub fn remove(&self, id: &str) -> bool {
        self.lock().remove(id)
    }

    /// How many observations an operation stays `InProgress` for (default 1).
    pub fn set_lro_polls(&self, n: u32) {
        self.lock().lro_polls = n;
    }

    /// The `Retry-After` seconds of accepted and in-progress answers (default 0).
    pub fn set_retry_after(&self, seconds: u32) {
        self.lock().retry_after = seconds;
    }

    /// How many resources a list page holds (default 2, so paging is exercised).
    pub fn set_page_size(&self, n: usize) {
        self.lock().page_size = n.max(1);
    }

    /// Restricts the VM size in the location for the subscription: the SKU list shows a
    /// `NotAvailableForSubscription` restriction and a VM create answers `SkuNotAvailable`.
    pub fn restrict_sku(&self, size: &str, location: &str) {
        self.lock()
            .restrictions
            .push((size.to_ascii_lowercase(), location.to_ascii_lowercase()));
    }

    /// Expires every token issued so far: ARM answers `ExpiredAuthenticationToken`.
    pub fn expire_tokens(&self) {
        for token in self.lock().tokens.values_mut() {
            token.expired = true;
        }
    }

    /// The fake's VMs for the boot emulator ([`crate::boot_emulator::BootEmulator::watch`]).
    pub fn cloud(&self) -> AzureCloud {
        AzureCloud {
            state: Arc::clone(&self.state),
        }
    }
}

/// The fake's VMs as a [`Cloud`], read from its state.
#[derive(Debug, Clone)]
pub struct AzureCloud {
    state: Shared,
}

impl Cloud for AzureCloud {
    fn machines(&self) -> CloudFuture<'_, Result<Vec<Machine>, String>> {
        let machines = {
            let state = lock(&self.state);
            state
                .of_kind(Kind::VirtualMachine)
                .map(|vm| {
                    let (public_ip, private_ip) = state.vm_addresses(vm);
                    Machine {
                        id: vm.name.clone(),
                        region: vm.location.clone(),
                        running: vm.running,
                        public_ip,
                        private_ip,
                    }
                })
                .collect()
        };
        Box::pin(async move { Ok(machines) })
    }

    fn user_data<'a>(&'a self, machine: &'a Machine) -> CloudFuture<'a, Result<String, String>> {
        let found = {
            let state = lock(&self.state);
            state
                .of_kind(Kind::VirtualMachine)
                .find(|vm| vm.name == machine.id)
                .map(|vm| vm.custom_data.clone())
        };
        Box::pin(async move {
            let encoded = found
                .ok_or("the VM is gone")?
                .ok_or("the VM has no customData")?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| format!("customData is not base64: {e}"))?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        })
    }
}

type Answered = crate::HttpAnswer;

async fn handle(state: Shared, req: Request<Incoming>) -> Answered {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let method = parts.method.as_str().to_owned();
    let (answer, drop_reply) = arm::dispatch(
        &mut lock(&state),
        &method,
        parts.uri.path(),
        parts.uri.query(),
        &parts.headers,
        &body,
    );
    if drop_reply {
        // hyper closes the connection without an answer when the service fails.
        return Err(std::io::Error::other("reply dropped by the Azure fake"));
    }
    let mut response = Response::builder().status(answer.status);
    for (name, value) in &answer.headers {
        response = response.header(name, value);
    }
    let body = match &answer.body {
        Some(json) if method != "HEAD" => {
            response = response.header("Content-Type", "application/json; charset=utf-8");
            Bytes::from(json.to_string())
        }
        _ => Bytes::new(),
    };
    response
        .body(Full::new(body))
        .map_err(std::io::Error::other)
}
