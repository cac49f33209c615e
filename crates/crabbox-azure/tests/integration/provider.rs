//! The Azure provider in process, against the stateful Azure fake over HTTPS, in a
//! loopback-only network namespace: the provider conformance suite, the fallbacks, and the
//! failures only a cloud has. (The whole CLI path, SSH included, is in
//! crates/crabbox/tests/integration/azure.rs.)

use crabbox_azure::{AzureProvider, AzureSettings};
use crabbox_core::machine::Market;
use crabbox_providers::conformance::{Promises, lifecycle};
use crabbox_providers::{AcquireRequest, MachineChoice, Provider as _, ProviderError};
use crabbox_test_support::fake_azure::{AzureError, FakeAzure, Fault};
use crabbox_test_support::loopback_only;

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl crabbox";

/// The settings of the default configuration, pointed at `fake`, SSH allowed from a
/// documentation range, `extra` locations after `eastus`.
fn settings(fake: &FakeAzure, extra: &[&str]) -> AzureSettings {
    let env: Vec<(&str, String)> = fake.env();
    let lookup = |name: &str| env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone());
    let inputs = crabbox_core::config::ConfigInputs {
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .chain([(
                "CRABBOX_AZURE_SSH_CIDRS".to_owned(),
                "198.51.100.0/24".to_owned(),
            )])
            .collect(),
        ..crabbox_core::config::ConfigInputs::default()
    };
    let resolved = crabbox_core::config::resolve(&inputs).unwrap();
    let mut settings = AzureSettings::from_config(
        resolved.config(),
        crabbox_providers::cloud::cost::CostRates::default(),
        lookup,
    );
    settings.capacity.regions = extra.iter().map(|l| (*l).to_owned()).collect();
    settings
}

fn provider(fake: &FakeAzure, extra: &[&str]) -> AzureProvider {
    AzureProvider::new(settings(fake, extra)).unwrap()
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

/// The lease resources left in the fake: VMs, NICs, public IPs, disks.
fn lease_resources(fake: &FakeAzure) -> Vec<String> {
    fake.resources()
        .into_iter()
        .filter(|r| {
            [
                "Microsoft.Compute/virtualMachines",
                "Microsoft.Compute/disks",
                "Microsoft.Network/networkInterfaces",
                "Microsoft.Network/publicIPAddresses",
            ]
            .iter()
            .any(|t| r.resource_type.eq_ignore_ascii_case(t))
        })
        .map(|r| format!("{} {}", r.resource_type, r.name))
        .collect()
}

fn routes(fake: &FakeAzure) -> Vec<String> {
    fake.calls().iter().map(|c| c.route.clone()).collect()
}

#[tokio::test]
async fn azure_provider_conforms_and_a_lease_is_a_public_ip_a_nic_and_a_vm() {
    loopback_only!();
    let fake = FakeAzure::start();
    let provider = provider(&fake, &[]);
    let record = provider
        .acquire(&request("cbx_00000000a000"))
        .await
        .unwrap();
    let first = routes(&fake);
    assert_eq!(first.len(), 25, "the first create's calls: {first:?}");
    assert_eq!(
        fake.count("PUT resourceGroups"),
        1,
        "the shared network is made"
    );
    assert_eq!(fake.count("PUT virtualNetworks"), 1);
    assert_eq!(fake.count("PUT networkSecurityGroups"), 1);
    assert_eq!(fake.count("PUT publicIPAddresses"), 1);
    assert_eq!(fake.count("PUT networkInterfaces"), 1);
    assert_eq!(fake.count("PUT virtualMachines"), 1);
    let vm = fake.vm(&record.server_id).expect("the VM");
    assert_eq!(vm.vm_size, "Standard_D32ads_v6", "standard's first size");
    assert_eq!(vm.priority.as_deref(), Some("Spot"), "spot by default");
    assert_eq!(vm.tags["lease"], "cbx_00000000a000");
    assert_eq!(vm.tags["market"], "spot");
    assert_eq!(record.ssh_host, vm.public_ip.unwrap().to_string());
    let cloud_init = vm.user_data().unwrap();
    assert!(cloud_init.starts_with("#cloud-config"), "{cloud_init}");
    assert!(
        cloud_init.contains(KEY),
        "the lease's key in the cloud-init"
    );
    assert_eq!(record.labels["azure_location"], "eastus");
    assert_eq!(record.price_source, "default", "{record:?}");

    // The second lease uses the network as remembered: no reads, no writes of it.
    fake.reset_calls();
    let second = provider
        .acquire(&request("cbx_00000000a001"))
        .await
        .unwrap();
    let calls = routes(&fake);
    assert_eq!(calls.len(), 12, "a create's calls: {calls:?}");
    for shared in ["resourceGroups", "virtualNetworks", "networkSecurityGroups"] {
        assert_eq!(
            fake.count(&format!("GET {shared}")),
            0,
            "{shared}: {calls:?}"
        );
        assert_eq!(
            fake.count(&format!("PUT {shared}")),
            0,
            "{shared}: {calls:?}"
        );
    }
    // Per lease: one PUT of each resource, followed to its end, then read once.
    for (route, n) in [
        ("PUT publicIPAddresses", 1),
        ("PUT networkInterfaces", 1),
        ("PUT virtualMachines", 1),
        ("GET virtualMachines", 1),
    ] {
        assert_eq!(fake.count(route), n, "{route}: {calls:?}");
    }
    fake.reset_calls();
    provider.release(&second).await.unwrap();
    let calls = routes(&fake);
    assert_eq!(calls.len(), 6, "a release's calls: {calls:?}");
    // The VM takes its NIC and disk with it: then only the public IP is left to delete.
    for (route, n) in [
        ("DELETE virtualMachines", 1),
        ("DELETE networkInterfaces", 0),
        ("DELETE publicIPAddresses", 1),
        ("DELETE disks", 0),
    ] {
        assert_eq!(fake.count(route), n, "{route}: {calls:?}");
    }
    assert_eq!(
        fake.count("GET virtualMachines"),
        0,
        "nothing deleted is read again"
    );
    assert_eq!(fake.count("GET publicIPAddresses"), 0);
    provider.release(&record).await.unwrap();
    assert!(
        lease_resources(&fake).is_empty(),
        "{:?}",
        lease_resources(&fake)
    );

    // The remembered security group deleted behind the provider's back: the NIC that names
    // it is refused, the network is brought back, and the lease is made all the same.
    let nsg = fake
        .resources()
        .into_iter()
        .find(|r| r.resource_type.ends_with("networkSecurityGroups"))
        .expect("the shared security group");
    assert!(fake.remove(&nsg.id));
    fake.reset_calls();
    let third = provider
        .acquire(&request("cbx_00000000a003"))
        .await
        .unwrap();
    let calls = routes(&fake);
    assert_eq!(
        fake.count("PUT networkSecurityGroups"),
        1,
        "made again: {calls:?}"
    );
    assert_eq!(fake.count("PUT virtualMachines"), 1, "{calls:?}");
    provider.release(&third).await.unwrap();

    let promises = Promises {
        lists: true,
        deletes: true,
        adopts: false,
    };
    let record = lifecycle(&provider, &request("cbx_00000000a002"), promises).await;
    assert_eq!(record.server_type, "Standard_D32ads_v6");
    assert_policy_lists(&fake);
    assert!(
        lease_resources(&fake).is_empty(),
        "{:?}",
        lease_resources(&fake)
    );
}

#[tokio::test]
async fn spot_refusals_fall_back_to_on_demand_then_locations_and_every_try_is_recorded() {
    loopback_only!();
    let fake = FakeAzure::start();
    let provider = provider(&fake, &["westus2"]);
    // No spot capacity anywhere; no standard capacity at all in eastus.
    fake.inject(
        Fault::refuse("PUT virtualMachines", AzureError::AllocationFailed)
            .when("/properties/priority", "Spot")
            .times(100),
    );
    fake.inject(
        Fault::refuse("PUT virtualMachines", AzureError::SkuNotAvailable)
            .when("/location", "eastus")
            .times(100),
    );
    let mut req = request("cbx_00000000a003");
    req.class = "tiny".into();
    let record = provider.acquire(&req).await.unwrap();
    let tried: Vec<String> = record
        .provisioning_attempts
        .iter()
        .map(|a| format!("{}@{} {} {}", a.server_type, a.region, a.market, a.code))
        .collect();
    // In each location every size on spot, then every size on-demand (spec §2.3).
    let sizes = [
        "Standard_D2ads_v6",
        "Standard_D2ds_v6",
        "Standard_D2ads_v5",
        "Standard_D2ds_v5",
        "Standard_F2s_v2",
    ];
    let mut expected: Vec<String> = Vec::new();
    for (location, market, code) in [
        ("eastus", "spot", "AllocationFailed"),
        ("eastus", "on-demand", "SkuNotAvailable"),
        ("westus2", "spot", "AllocationFailed"),
    ] {
        expected.extend(
            sizes
                .iter()
                .map(|s| format!("{s}@{location} {market} {code}")),
        );
    }
    assert_eq!(tried, expected);
    let vm = fake.vm(&record.server_id).unwrap();
    assert_eq!(vm.location, "westus2");
    assert_eq!(vm.vm_size, "Standard_D2ads_v6");
    assert_eq!(vm.tags["market"], "on-demand");
    assert_ne!(vm.priority.as_deref(), Some("Spot"));
    // Each location has its own network; the lease's IP and NIC moved with it.
    let names: Vec<String> = fake.resources().into_iter().map(|r| r.name).collect();
    assert!(
        names.contains(&"crabbox-vnet-westus2".to_owned()),
        "{names:?}"
    );
    let left = lease_resources(&fake);
    assert_eq!(left.len(), 4, "the VM, its disk, NIC and IP only: {left:?}");
    provider.release(&record).await.unwrap();
    assert!(
        lease_resources(&fake).is_empty(),
        "{:?}",
        lease_resources(&fake)
    );
}

#[tokio::test]
async fn a_create_that_everything_refuses_or_a_bad_request_leaves_nothing() {
    loopback_only!();
    let fake = FakeAzure::start();
    let provider = provider(&fake, &[]);
    fake.inject(Fault::refuse("PUT virtualMachines", AzureError::QuotaExceeded).times(100));
    let mut req = request("cbx_00000000a004");
    req.machine.market = Some(Market::OnDemand);
    let err = provider.acquire(&req).await.unwrap_err();
    assert!(matches!(err, ProviderError::Quota(_)), "{err}");
    assert!(
        lease_resources(&fake).is_empty(),
        "{:?}",
        lease_resources(&fake)
    );

    // A size this build does not know is refused before any call.
    let fake = FakeAzure::start();
    let provider = self::provider(&fake, &[]);
    let mut req = request("cbx_00000000a005");
    req.class = "c7a.large".into();
    let err = provider.acquire(&req).await.unwrap_err();
    assert!(err.to_string().contains("unknown class"), "{err}");
    assert!(fake.calls().is_empty(), "{:?}", routes(&fake));

    // No subscription: says which variable to set, before any call.
    let mut no_subscription = settings(&fake, &[]);
    no_subscription.subscription_id = None;
    let err = AzureProvider::new(no_subscription)
        .unwrap()
        .acquire(&request("cbx_00000000a006"))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Auth(_)), "{err}");
    assert!(err.to_string().contains("AZURE_SUBSCRIPTION_ID"), "{err}");

    // A wrong secret: Entra's reason and the variables, never the secret.
    let mut wrong_secret = settings(&fake, &[]);
    wrong_secret
        .env
        .insert("AZURE_CLIENT_SECRET".into(), "not-the-secret".into());
    let err = AzureProvider::new(wrong_secret)
        .unwrap()
        .acquire(&request("cbx_00000000a007"))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Auth(_)), "{err}");
    assert!(err.to_string().contains("AZURE_CLIENT_SECRET"), "{err}");
    assert!(!err.to_string().contains("not-the-secret"), "{err}");

    // An image that is not Publisher:Offer:SKU:Version.
    let mut bad_image = settings(&fake, &[]);
    bad_image.image = Some("ubuntu-24.04".into());
    let err = AzureProvider::new(bad_image)
        .unwrap()
        .acquire(&request("cbx_00000000a008"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("CRABBOX_AZURE_IMAGE"), "{err}");
    assert!(
        lease_resources(&fake).is_empty(),
        "{:?}",
        lease_resources(&fake)
    );
}

#[tokio::test]
async fn a_create_retried_after_a_lost_reply_makes_one_vm() {
    loopback_only!();
    let fake = FakeAzure::start();
    let provider = provider(&fake, &[]);
    fake.inject(Fault::drop_reply("PUT virtualMachines"));
    let record = provider
        .acquire(&request("cbx_00000000a009"))
        .await
        .unwrap();
    // Asked again (while the first create's operation still runs, Azure answers
    // AnotherOperationInProgress, which is asked again too).
    assert!(
        fake.count("PUT virtualMachines") >= 2,
        "{:?}",
        routes(&fake)
    );
    let vms: Vec<_> = fake
        .resources()
        .into_iter()
        .filter(|r| r.resource_type.ends_with("virtualMachines"))
        .collect();
    assert_eq!(vms.len(), 1, "one runner: {vms:?}");
    provider.release(&record).await.unwrap();
    assert!(
        lease_resources(&fake).is_empty(),
        "{:?}",
        lease_resources(&fake)
    );
}

#[tokio::test]
async fn listing_follows_every_page_heartbeats_keep_the_tags_and_orphans_are_released_by_lease() {
    loopback_only!();
    let fake = FakeAzure::start();
    fake.set_page_size(2);
    let provider = provider(&fake, &[]);
    let mut records = Vec::new();
    for n in 0..5u32 {
        let mut req = request(&format!("cbx_0000000{:05x}", 0xa100 + n));
        req.class = "tiny".into();
        records.push(provider.acquire(&req).await.unwrap());
    }
    let ids = provider.inventory().await.unwrap();
    assert_eq!(ids.len(), 5, "three pages of two: {ids:?}");
    let runners = provider.runners().await.unwrap();
    assert!(
        runners.iter().all(|r| !r.ssh_host.is_empty()),
        "{runners:?}"
    );
    let before = fake.vm(&records[0].server_id).unwrap().tags;
    provider.touch(&records[0]).await.unwrap();
    let after = fake.vm(&records[0].server_id).unwrap().tags;
    assert_eq!(after["lease"], before["lease"]);
    assert_eq!(after["crabbox"], "true");
    assert!(after["last_touched_at"] >= before["last_touched_at"]);
    // An orphan known only by its lease id.
    let orphan = crabbox_providers::LeaseRecord {
        lease_id: records[1].lease_id.clone(),
        provider: "azure".into(),
        ..Default::default()
    };
    provider.release(&orphan).await.unwrap();
    assert_eq!(provider.inventory().await.unwrap().len(), 4);
    // A create that died after its public IP and NIC, before its VM: listed by its lease,
    // and released by it.
    let vm = fake.vm(&records[2].server_id).unwrap();
    assert!(fake.remove(&vm.id), "the VM, behind the provider's back");
    assert!(
        lease_resources(&fake)
            .iter()
            .any(|r| r.ends_with(&format!("{}-pip", vm.name))),
        "its public IP stays"
    );
    assert!(
        provider
            .inventory()
            .await
            .unwrap()
            .contains(&records[2].lease_id)
    );
    let leftover = provider
        .runners()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.lease_id == records[2].lease_id)
        .expect("the leftover is a runner to judge");
    assert_eq!(leftover.state, "leftover");
    assert_eq!(leftover.labels["ttl_secs"], "600", "judged by its own tags");
    let half_made = crabbox_providers::LeaseRecord {
        lease_id: records[2].lease_id.clone(),
        provider: "azure".into(),
        ..Default::default()
    };
    provider.release(&half_made).await.unwrap();
    assert!(
        !lease_resources(&fake).iter().any(|r| r.contains(&vm.name)),
        "{:?}",
        lease_resources(&fake)
    );
    for record in &records {
        provider.release(record).await.unwrap();
    }
    assert!(provider.inventory().await.unwrap().is_empty());
    assert!(
        lease_resources(&fake).is_empty(),
        "{:?}",
        lease_resources(&fake)
    );
    assert_policy_lists(&fake);
}

#[tokio::test]
async fn a_windows_lease_boots_with_the_bootstrap_as_custom_data_run_by_the_extension() {
    loopback_only!();
    let fake = FakeAzure::start();
    let mut settings = settings(&fake, &[]);
    settings.target = crabbox_core::machine::TargetOs::Windows;
    let provider = AzureProvider::new(settings).unwrap();
    let mut req = request("cbx_00000000a00b");
    req.class = "tiny".into();
    let record = provider.acquire(&req).await.unwrap();
    assert!(
        provider.ready_check(&record).contains("crabbox-ready.ps1"),
        "readiness runs the Windows ready script"
    );
    let vm = fake.vm(&record.server_id).unwrap();
    assert_eq!(vm.vm_size, "Standard_D2ads_v6", "Windows' tiny size");
    let profile = &vm.body["properties"]["osProfile"];
    assert_eq!(profile["adminUsername"], "crabadmin");
    assert_eq!(profile["computerName"], "cbx00000000a00b");
    assert_eq!(profile["windowsConfiguration"]["provisionVMAgent"], true);
    assert!(profile.get("adminPassword").is_none(), "ARM never shows it");
    assert_eq!(
        vm.body["properties"]["storageProfile"]["imageReference"]["publisher"],
        "MicrosoftWindowsServer"
    );
    let script = vm.user_data().unwrap();
    assert!(
        script.contains("administrators_authorized_keys"),
        "{script}"
    );
    assert!(script.contains(KEY), "the lease's key");
    assert_eq!(fake.count("PUT extensions"), 1, "{:?}", routes(&fake));
    let extension = fake
        .calls()
        .into_iter()
        .find(|c| c.route == "PUT extensions")
        .unwrap();
    assert_eq!(extension.resource_name(), "crabbox-bootstrap");
    let command = extension.body["properties"]["protectedSettings"]["commandToExecute"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(command.contains("CustomData.bin"), "{command}");
    assert_eq!(record.work_root, r"C:\crabbox");
    assert_policy_lists(&fake);
    assert_eq!(vm.tags["target"], "windows");
    assert_eq!(
        vm.tags["crabbox_windows_mode"], "normal",
        "windows* tags are prefixed"
    );
    assert_eq!(record.labels["windows_mode"], "normal", "and read back");
    provider.release(&record).await.unwrap();
    assert!(
        lease_resources(&fake).is_empty(),
        "{:?}",
        lease_resources(&fake)
    );

    // WSL2 needs more than this bootstrap: refused before anything is made.
    let mut settings = self::settings(&fake, &[]);
    settings.target = crabbox_core::machine::TargetOs::Windows;
    settings.windows_mode = crabbox_core::machine::WindowsMode::Wsl2;
    fake.reset_calls();
    let err = AzureProvider::new(settings)
        .unwrap()
        .acquire(&request("cbx_00000000a00c"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("wsl2"), "{err}");
    assert!(fake.calls().is_empty());
}

/// Every call the fake saw is one `admin providers policy --provider azure` grants.
fn assert_policy_lists(fake: &FakeAzure) {
    for route in routes(fake) {
        assert!(
            crabbox_azure::policy::is_listed(&route),
            "{route} is not in crabbox_azure::policy::CALLS"
        );
    }
}

#[tokio::test]
async fn a_private_network_lease_has_no_public_ip_and_is_reached_at_its_private_address() {
    loopback_only!();
    let fake = FakeAzure::start();
    let mut settings = settings(&fake, &[]);
    settings.use_private_ip = true;
    let provider = AzureProvider::new(settings.clone()).unwrap();
    let record = provider
        .acquire(&request("cbx_00000000a00d"))
        .await
        .unwrap();
    assert_eq!(fake.count("PUT publicIPAddresses"), 0);
    let vm = fake.vm(&record.server_id).unwrap();
    assert_eq!(vm.public_ip, None);
    assert_eq!(record.ssh_host, vm.private_ip.unwrap().to_string());
    provider.release(&record).await.unwrap();
    assert!(
        lease_resources(&fake).is_empty(),
        "{:?}",
        lease_resources(&fake)
    );

    // Without configured sources there is no address to detect on a private network.
    settings.ssh_cidrs.clear();
    let err = AzureProvider::new(settings)
        .unwrap()
        .acquire(&request("cbx_00000000a00e"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("CRABBOX_AZURE_SSH_CIDRS"), "{err}");
}

#[tokio::test]
async fn a_desktop_lease_boots_with_the_desktop_and_browser_units_and_says_so() {
    loopback_only!();
    let fake = FakeAzure::start();
    let provider = provider(&fake, &[]);
    let mut req = request("cbx_00000000a00f");
    req.capabilities = crabbox_providers::Capabilities {
        desktop: true,
        desktop_env: None,
        browser: true,
        code: false,
    };
    let record = provider.acquire(&req).await.unwrap();
    let vm = fake.vm(&record.server_id).unwrap();
    let cloud_init = vm.user_data().unwrap();
    for part in ["crabbox-xvfb.service", "crabbox-browser", "127.0.0.1:5900"] {
        assert!(cloud_init.contains(part), "{part} in the cloud-init");
    }
    assert_eq!(vm.tags["desktop"], "true");
    assert_eq!(vm.tags["desktop_env"], "xfce");
    assert_eq!(vm.tags["browser"], "true");
    let desktop = crabbox_providers::LeaseDesktop::of(&record);
    assert_eq!(desktop.display.as_deref(), Some(":99"));
    assert_eq!(desktop.vnc_port, 5900);
    provider.release(&record).await.unwrap();

    // A desktop environment this version does not build: refused before any call.
    fake.reset_calls();
    req.lease_id = "cbx_00000000a010".into();
    req.capabilities.desktop_env = Some("wayland".into());
    let err = provider.acquire(&req).await.unwrap_err();
    assert!(err.to_string().contains("use xfce"), "{err}");
    assert!(fake.calls().is_empty(), "{:?}", routes(&fake));
}

#[tokio::test]
async fn an_interrupted_create_is_adopted_by_its_lease_id() {
    loopback_only!();
    let fake = FakeAzure::start();
    let provider = provider(&fake, &[]);
    let record = provider
        .acquire(&request("cbx_00000000a011"))
        .await
        .unwrap();
    // A coordinator that stopped after the create finds the lease's VM by its tag.
    let adopted = provider
        .adopt("cbx_00000000a011")
        .await
        .unwrap()
        .expect("the lease's VM");
    assert_eq!(adopted.server_id, record.server_id);
    assert_eq!(adopted.ssh_host, record.ssh_host);
    assert_eq!(
        provider.adopt("cbx_00000000a012").await.unwrap(),
        None,
        "no VM: none"
    );
    provider.release(&record).await.unwrap();
    assert_eq!(provider.adopt("cbx_00000000a011").await.unwrap(), None);
}
