//! Native Windows leases on EC2 (spec/providers.md §2.2, "Targets"; `--target windows`,
//! `windows.mode: normal`): Amazon's newest Windows Server 2022 image, booted with the
//! Crabbox Windows bootstrap as `<powershell>` user data (`cloud::windows`), which `EC2Launch`
//! runs once at first boot: OpenSSH and Git for Windows, the lease's user with the lease's
//! key, sshd on the lease's ports, the work root `C:\crabbox`, and the ready script readiness
//! runs over SSH. This module says what a Windows lease may ask for, how it is reached, and
//! which image it boots.

use crabbox_core::machine::WindowsMode;
use crabbox_providers::cloud::windows::{self, WindowsBootstrap};
use crabbox_providers::{Capabilities, ProviderError};

use crate::settings::AwsSettings;

/// The name pattern of Amazon's Windows Server 2022 base images (English, full desktop).
pub const IMAGE_PATTERN: &str = "Windows_Server-2022-English-Full-Base-*";

/// Refuses what this build cannot give a Windows lease, before anything is made: WSL2 (the
/// nested-virtualisation mode) and desktops, browsers or code servers.
pub fn check(mode: WindowsMode, capabilities: &Capabilities) -> Result<(), ProviderError> {
    if mode != WindowsMode::Normal {
        return Err(ProviderError::InvalidSpec(format!(
            "windows mode {mode} on aws is not supported by this version (normal is); set \
             windows.mode: normal or CRABBOX_WINDOWS_MODE=normal"
        )));
    }
    if !capabilities.asked().is_empty() {
        return Err(ProviderError::InvalidSpec(
            "a desktop, browser or code server on a Windows lease is not supported by this \
             version (on linux it is); drop --desktop/--browser/--code"
                .into(),
        ));
    }
    Ok(())
}

/// The user, ports and work root a Windows lease is reached at: the configured SSH user
/// (the bootstrap makes it a local administrator holding the lease's key) on the configured
/// ports, and the configured work root when it is a Windows path, else `C:\crabbox`.
pub fn login(settings: &AwsSettings) -> (String, Vec<u16>, String) {
    let work_root = windows::work_root(&settings.work_root).to_owned();
    (settings.ssh_user.clone(), settings.ssh_ports(), work_root)
}

/// The lease's user data: the Windows bootstrap in `<powershell>` tags.
pub fn user_data(
    public_key: &str,
    (user, ports, work_root): &(String, Vec<u16>, String),
) -> Result<String, ProviderError> {
    let invalid = |e: windows::WindowsBootstrapError| ProviderError::InvalidSpec(e.to_string());
    let script = WindowsBootstrap {
        user,
        public_key,
        work_root,
        ssh_ports: ports,
    }
    .render()
    .map_err(invalid)?;
    windows::ec2_user_data(&script).map_err(invalid)
}

/// The newest of Amazon's Windows Server 2022 images in this region (`x86_64`: EC2 has no
/// arm64 Windows Server).
pub async fn image(ec2: &aws_sdk_ec2::Client, region: &str) -> Result<String, ProviderError> {
    let found = crate::image::newest_amazon(ec2, IMAGE_PATTERN, "x86_64").await?;
    found.ok_or_else(|| {
        ProviderError::InvalidSpec(format!(
            "no AWS AMI found: no Amazon Windows Server 2022 image ({IMAGE_PATTERN}) is visible \
             in {region}; set CRABBOX_AWS_AMI (or aws.ami) to an image id"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(work_root: &str) -> AwsSettings {
        let defaults =
            crabbox_core::config::resolve(&crabbox_core::config::ConfigInputs::default()).unwrap();
        let mut settings = AwsSettings::from_config(
            defaults.config(),
            crabbox_providers::cloud::cost::CostRates::default(),
        );
        work_root.clone_into(&mut settings.work_root);
        settings
    }

    #[test]
    fn a_windows_lease_is_reached_as_the_configured_user_in_a_windows_work_root() {
        let (user, ports, root) = login(&settings(crabbox_core::config::DEFAULT_WORK_ROOT));
        assert_eq!(user, crabbox_core::config::DEFAULT_SSH_USER);
        assert_eq!(ports, vec![2222, 22]);
        assert_eq!(
            root, r"C:\crabbox",
            "a POSIX work root is not a Windows path"
        );
        let (_, _, root) = login(&settings(r"D:\work"));
        assert_eq!(root, r"D:\work");
    }

    #[test]
    fn wsl2_and_desktops_are_refused_and_the_user_data_is_the_bootstrap() {
        let wsl = check(WindowsMode::Wsl2, &Capabilities::default()).unwrap_err();
        assert!(wsl.to_string().contains("windows mode wsl2"), "{wsl}");
        let desktop = Capabilities {
            desktop: true,
            ..Capabilities::default()
        };
        assert!(check(WindowsMode::Normal, &desktop).is_err());
        check(WindowsMode::Normal, &Capabilities::default()).unwrap();

        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIcrabbox cbx_abcdef123456";
        let login = login(&settings(crabbox_core::config::DEFAULT_WORK_ROOT));
        let data = user_data(key, &login).unwrap();
        assert!(data.starts_with("<powershell>\n") && data.ends_with("</powershell>\n"));
        assert!(data.contains(key), "the lease key is authorised");
        assert!(data.contains(r"'C:\crabbox'"), "the work root is made");
        assert!(data.len() < 16 * 1024, "EC2 takes 16 KiB of user data");
        let bad = (
            "user name with spaces".to_owned(),
            vec![22],
            r"C:\crabbox".to_owned(),
        );
        assert!(
            user_data(key, &bad).is_err(),
            "a user no bootstrap can make"
        );
    }
}
