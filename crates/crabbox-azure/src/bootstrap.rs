//! What a VM boots with and what may be asked of it: the checks a create makes before
//! anything is made, the OS profile (Linux: the SSH user, the lease's key and the Crabbox
//! cloud-init; Windows: Azure's required admin and the Windows bootstrap as custom data), and
//! the work root commands run in.

use crabbox_core::machine::{TargetOs, WindowsMode};
use crabbox_providers::cloud::cloud_init::LinuxCloudInit;
use crabbox_providers::cloud::windows::{self, WindowsBootstrap};
use crabbox_providers::{AcquireRequest, Capabilities, ProviderError};
use serde_json::Value;

use crate::settings::AzureSettings;
use crate::vm;

/// What this version cannot lease yet, refused before anything is made.
pub fn check_supported(
    settings: &AzureSettings,
    caps: &Capabilities,
    target: TargetOs,
) -> Result<(), ProviderError> {
    if settings.backend != "vm" {
        return Err(ProviderError::InvalidSpec(format!(
            "azure backend {:?} is not supported by this version (vm is); set \
             CRABBOX_AZURE_BACKEND=vm",
            settings.backend
        )));
    }
    if settings.os_disk == "ephemeral-preview" {
        return Err(ProviderError::InvalidSpec(
            "azure.osDisk ephemeral-preview is not supported by this version; use managed \
             or ephemeral"
                .into(),
        ));
    }
    if target == TargetOs::Windows && !caps.asked().is_empty() {
        return Err(ProviderError::InvalidSpec(
            "a desktop or browser on a Windows lease is not supported by this version (on \
             linux it is)"
                .into(),
        ));
    }
    match (target, settings.windows_mode) {
        (TargetOs::Linux, _) | (TargetOs::Windows, WindowsMode::Normal) => Ok(()),
        (TargetOs::Windows, mode) => Err(ProviderError::InvalidSpec(format!(
            "windows mode {mode} on azure is not supported by this version (normal is)"
        ))),
        (target, _) => Err(ProviderError::InvalidSpec(format!(
            "target {target} is not offered on azure (linux and windows are)"
        ))),
    }
}

/// The VM's OS profile: on Linux the SSH user with the lease's key and the cloud-init; on
/// Windows the admin Azure requires (a random password nobody uses) and the bootstrap,
/// which the bootstrap extension runs, that makes the SSH user with the lease's key.
pub fn os_profile(
    settings: &AzureSettings,
    name: &str,
    req: &AcquireRequest,
    ports: &[u16],
    target: TargetOs,
) -> Result<Value, ProviderError> {
    let invalid = |e: String| ProviderError::InvalidSpec(e);
    if target == TargetOs::Windows {
        let script = WindowsBootstrap {
            user: &settings.ssh_user,
            public_key: &req.public_key,
            work_root: work_root(settings, target),
            ssh_ports: ports,
        }
        .render()
        .map_err(|e| invalid(e.to_string()))?;
        return Ok(vm::windows_os_profile(
            &windows_computer_name(&req.lease_id),
            &windows::admin_password(),
            &script,
        ));
    }
    let optional =
        crabbox_providers::cloud::desktop::for_lease(&req.capabilities, &settings.ssh_user)?;
    let cloud_init = LinuxCloudInit {
        user: &settings.ssh_user,
        public_key: &req.public_key,
        work_root: &settings.work_root,
        ssh_ports: ports,
        units: &optional.units,
    }
    .render()
    .map_err(|e| invalid(e.to_string()))?;
    Ok(vm::linux_os_profile(
        name,
        &settings.ssh_user,
        &req.public_key,
        &cloud_init,
    ))
}

/// Where commands run: on Windows a Windows path (the configured one when it is one).
pub fn work_root(settings: &AzureSettings, target: TargetOs) -> &str {
    if target == TargetOs::Windows {
        windows::work_root(&settings.work_root)
    } else {
        &settings.work_root
    }
}

/// A Windows computer name (at most 15 characters): `cbx` and the lease id's hex.
fn windows_computer_name(lease_id: &str) -> String {
    let hex: String = lease_id
        .trim_start_matches("cbx_")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect();
    format!("cbx{hex}")
}
