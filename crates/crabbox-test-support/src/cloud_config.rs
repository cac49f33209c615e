//! The part of a `#cloud-config` document the boot emulator acts on: the login user and the
//! keys authorised for it. Everything else (packages, `write_files`, `runcmd`) is what a real
//! boot would do and the emulator does in its own way.
//!
//! An EC2 Mac has no cloud-init: Amazon's `ec2-macos-init` runs user data that starts with
//! `#!` as a script. Crabbox's Mac script names the user and the key in its first assignments
//! (`crabbox_user=…`, `crabbox_public_key=…`, shell words); those are read the same way.
//!
//! Windows on EC2 runs `<powershell>…</powershell>` user data with `EC2Launch`; on Azure the
//! VM agent runs the script from the custom data as it is. Crabbox's Windows bootstrap sets `$user = '…'` and `$publicKey = '…'` (PowerShell literals) at its
//! top; those are read, and the runner is marked Windows.

use serde_yaml::Value;

/// The first line of Crabbox's Windows bootstrap.
const WINDOWS_BOOTSTRAP: &str = "# Crabbox Windows runner bootstrap.";

/// What the emulator takes from user data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudConfig {
    /// The first user the document creates (`users: [{name: …}]`), if any.
    pub user: Option<String>,
    /// Every authorised key, the users' `ssh_authorized_keys` and the top-level ones.
    pub authorized_keys: Vec<String>,
    /// The user data is a Windows bootstrap (`<powershell>`).
    pub windows: bool,
}

/// Reads user data as cloud-init would; an error says why cloud-init would not take it.
pub fn parse(user_data: &str) -> Result<CloudConfig, String> {
    if user_data.starts_with("#!") {
        return parse_script(user_data);
    }
    // EC2 wraps the Windows bootstrap in `<powershell>` tags; Azure takes it as it is.
    if user_data.starts_with("<powershell>") || user_data.starts_with(WINDOWS_BOOTSTRAP) {
        return parse_powershell(user_data);
    }
    if !user_data.starts_with("#cloud-config") {
        let first = user_data.lines().next().unwrap_or("");
        return Err(format!(
            "user data does not start with #cloud-config (first line: {first:?})"
        ));
    }
    let doc: Value =
        serde_yaml::from_str(user_data).map_err(|e| format!("user data is not YAML: {e}"))?;
    let mut user = None;
    let mut authorized_keys = keys(&doc);
    for entry in doc
        .get("users")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        // `- default` names the image's default user; only mappings create one.
        let Some(name) = entry.get("name").and_then(Value::as_str) else {
            continue;
        };
        user.get_or_insert_with(|| name.to_owned());
        authorized_keys.extend(keys(entry));
    }
    if authorized_keys.is_empty() {
        return Err("user data authorises no SSH key (ssh_authorized_keys)".to_owned());
    }
    Ok(CloudConfig {
        user,
        authorized_keys,
        windows: false,
    })
}

/// The user and key of a Mac bootstrap script.
fn parse_script(script: &str) -> Result<CloudConfig, String> {
    let assigned = |name: &str| {
        script
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
            .map(shell_word)
    };
    let user = assigned("crabbox_user");
    let key = assigned("crabbox_public_key")
        .filter(|k| !k.is_empty())
        .ok_or("the user data script authorises no SSH key (crabbox_public_key=)")?;
    Ok(CloudConfig {
        user,
        authorized_keys: vec![key],
        windows: false,
    })
}

/// The user and key of a Windows bootstrap: `$user = 'name'` and `$publicKey = '…'` lines,
/// single-quoted PowerShell literals (`''` is one quote).
fn parse_powershell(script: &str) -> Result<CloudConfig, String> {
    let assigned = |name: &str| {
        script.lines().find_map(|line| {
            let literal = line.strip_prefix(name)?.strip_prefix(" = '")?;
            let literal = literal.strip_suffix('\'')?;
            Some(literal.replace("''", "'"))
        })
    };
    let key = assigned("$publicKey")
        .filter(|k| !k.is_empty())
        .ok_or("the PowerShell user data authorises no SSH key ($publicKey = '…')")?;
    Ok(CloudConfig {
        user: assigned("$user"),
        authorized_keys: vec![key],
        windows: true,
    })
}

/// One shell word as the shell reads it: quoted parts literal, `\\x` outside quotes an `x`.
fn shell_word(word: &str) -> String {
    let (mut out, mut quoted, mut chars) = (String::new(), false, word.trim().chars());
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('\'', _) => quoted = !quoted,
            ('\\', false) => out.extend(chars.next()),
            (c, _) => out.push(c),
        }
    }
    out
}

/// The `ssh_authorized_keys` (or `ssh-authorized-keys`) of a mapping.
fn keys(mapping: &Value) -> Vec<String> {
    ["ssh_authorized_keys", "ssh-authorized-keys"]
        .iter()
        .filter_map(|field| mapping.get(field).and_then(Value::as_sequence))
        .flatten()
        .filter_map(Value::as_str)
        .map(|key| key.trim().to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_user_and_key_of_a_mac_script() {
        let script = "#!/bin/bash\nset -euo pipefail\ncrabbox_user=ec2-user\n\
                      crabbox_public_key='ssh-ed25519 AAAA it'\\''s\n";
        let config = parse(script).unwrap();
        assert_eq!(config.user.as_deref(), Some("ec2-user"));
        assert_eq!(config.authorized_keys, ["ssh-ed25519 AAAA it's"]);
        assert!(parse("#!/bin/bash\necho hi\n").is_err());
    }

    #[test]
    fn takes_the_user_and_key_of_a_windows_bootstrap() {
        let data = "<powershell>\n$ErrorActionPreference = 'Stop'\n$user = 'crabbox'\n\
                    $publicKey = 'ssh-ed25519 AAAA it''s'\n</powershell>\n";
        let config = parse(data).unwrap();
        assert_eq!(config.user.as_deref(), Some("crabbox"));
        assert_eq!(config.authorized_keys, ["ssh-ed25519 AAAA it's"]);
        assert!(config.windows);
        assert!(parse("<powershell>\nWrite-Host hi\n</powershell>\n").is_err());
    }

    #[test]
    fn takes_the_user_and_its_keys() {
        let doc = "#cloud-config\npackage_update: false\nusers:\n  - default\n  - name: crabbox\n    \
                   groups: sudo\n    ssh_authorized_keys:\n      - ssh-ed25519 AAAA lease\n";
        assert_eq!(
            parse(doc),
            Ok(CloudConfig {
                user: Some("crabbox".to_owned()),
                authorized_keys: vec!["ssh-ed25519 AAAA lease".to_owned()],
                windows: false,
            })
        );
    }

    #[test]
    fn refuses_what_cloud_init_would_not_boot_with() {
        assert!(parse("echo hi\n").unwrap_err().contains("#cloud-config"));
        assert!(
            parse("#cloud-config\nusers: [")
                .unwrap_err()
                .contains("not YAML")
        );
        assert!(
            parse("#cloud-config\nusers:\n  - name: crabbox\n")
                .unwrap_err()
                .contains("no SSH key")
        );
    }
}
