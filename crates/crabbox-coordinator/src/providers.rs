//! Providers inside the coordinator: the same `Provider` trait as direct mode, with the
//! mapping between provider records and coordinator lease records.

use axum::http::StatusCode;
use crabbox_api::coord::Lease;
use crabbox_providers::{AcquireRequest, LeaseRecord, ProviderError};

/// Provider names the coordinator knows of, configured or not.
const KNOWN: &[&str] = &[
    "local",
    "ssh",
    "hetzner",
    "aws",
    "azure",
    "gcp",
    "daytona",
    "islo",
    "blacksmith",
];

pub fn canonical_name(raw: &str) -> String {
    match raw.trim().to_ascii_lowercase().as_str() {
        "google" => "gcp".into(),
        "static" | "static-ssh" => "ssh".into(),
        other => other.to_owned(),
    }
}

pub fn is_known(name: &str) -> bool {
    KNOWN.contains(&name)
}

/// The settings a provider needs before this coordinator can offer it.
pub fn missing_settings(name: &str) -> Vec<&'static str> {
    match name {
        "ssh" => vec!["CRABBOX_SSH_POOL"],
        "hetzner" => vec!["HETZNER_TOKEN"],
        "aws" => vec!["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
        "azure" => vec![
            "AZURE_TENANT_ID",
            "AZURE_CLIENT_ID",
            "AZURE_CLIENT_SECRET",
            "AZURE_SUBSCRIPTION_ID",
        ],
        "daytona" => vec!["DAYTONA_CRABBOX_KEY"],
        _ => vec![],
    }
}

pub fn acquire_request(lease: &Lease, public_key: &str) -> AcquireRequest {
    AcquireRequest {
        lease_id: lease.id.clone(),
        slug: lease.slug.clone(),
        class: lease.class.clone(),
        public_key: public_key.trim().to_owned(),
        ttl_secs: lease.ttl_seconds,
        idle_timeout_secs: lease.idle_timeout_seconds,
        keep: lease.keep,
        machine: crabbox_providers::MachineChoice {
            server_type: (!lease.requested_server_type.is_empty())
                .then(|| lease.requested_server_type.clone()),
            market: lease
                .extra
                .get("market")
                .and_then(serde_json::Value::as_str)
                .and_then(|m| crabbox_core::machine::Market::parse(m).ok()),
            architecture: lease
                .extra
                .get("architecture")
                .and_then(serde_json::Value::as_str)
                .and_then(|a| crabbox_core::machine::Architecture::parse(a).ok()),
            image: match (
                lease
                    .extra
                    .get("imageID")
                    .and_then(serde_json::Value::as_str),
                lease
                    .extra
                    .get("imageRegion")
                    .and_then(serde_json::Value::as_str),
            ) {
                (Some(id), Some(region)) => Some(crabbox_providers::ImageChoice {
                    id: id.to_owned(),
                    region: region.to_owned(),
                }),
                _ => None,
            },
            target: crabbox_core::machine::TargetOs::parse(&lease.target).ok(),
            host_id: lease
                .extra
                .get("hostId")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned),
        },
        capabilities: crabbox_providers::Capabilities {
            desktop: lease.desktop,
            desktop_env: (!lease.desktop_env.is_empty()).then(|| lease.desktop_env.clone()),
            browser: lease.browser,
            code: lease.code,
        },
    }
}

/// Copies what the provider made onto the lease.
pub fn apply_record(lease: &mut Lease, record: &LeaseRecord) {
    lease.cloud_id.clone_from(&record.server_id);
    lease.server_id = record.server_id.parse().unwrap_or(0);
    lease.server_name = crabbox_providers::cloud::names::resource_name(&lease.id, &lease.slug);
    lease.host.clone_from(&record.ssh_host);
    lease.ssh_user.clone_from(&record.ssh_user);
    lease.ssh_port = record.ssh_port.to_string();
    lease.ssh_fallback_ports = record
        .ssh_fallback_ports
        .iter()
        .map(ToString::to_string)
        .collect();
    lease.ssh_host_key.clone_from(&record.ssh_host_key);
    lease.work_root.clone_from(&record.work_root);
    lease.server_type.clone_from(&record.server_type);
    if let Some(region) = ["aws_region", "azure_location", "hetzner_location"]
        .iter()
        .find_map(|label| record.labels.get(*label))
    {
        lease.region.clone_from(region);
    }
    // Where a runner's desktop and browser are, when they are not where a cloud runner's are.
    for (label, key) in [
        ("desktop_display", "desktopDisplay"),
        ("vnc_port", "vncPort"),
        ("vnc_password_file", "vncPasswordFile"),
        ("browser_bin", "browserBin"),
    ] {
        if let Some(value) = record.labels.get(label) {
            lease.extra.insert(key.into(), value.clone().into());
        }
    }
    if let Some(market) = record.labels.get("market") {
        lease.extra.insert("market".into(), market.clone().into());
    }
    if !record.provisioning_attempts.is_empty() {
        lease.extra.insert(
            "provisioningAttempts".into(),
            serde_json::to_value(&record.provisioning_attempts).unwrap_or_default(),
        );
    }
}

/// Rebuilds the provider's view of a lease, for health checks and deletes.
pub fn record_for(lease: &Lease) -> LeaseRecord {
    LeaseRecord::from_coordinator(lease)
}

pub fn status_for(e: &ProviderError) -> StatusCode {
    match e {
        ProviderError::InvalidSpec(_) => StatusCode::BAD_REQUEST,
        ProviderError::Capacity(_) | ProviderError::Transient(_) | ProviderError::Io { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        ProviderError::Quota(_) | ProviderError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
        ProviderError::Auth(_) => StatusCode::BAD_GATEWAY,
        ProviderError::NotFound(_) => StatusCode::NOT_FOUND,
    }
}

pub fn code_for(e: &ProviderError) -> &'static str {
    match e {
        ProviderError::InvalidSpec(_) => "invalid_request",
        ProviderError::Capacity(_) => "provider_capacity",
        ProviderError::Quota(_) => "provider_quota",
        ProviderError::RateLimited(_) => "provider_rate_limited",
        ProviderError::Auth(_) => "provider_auth_failed",
        ProviderError::NotFound(_) => "not_found",
        ProviderError::Transient(_) | ProviderError::Io { .. } => "provider_unavailable",
    }
}
