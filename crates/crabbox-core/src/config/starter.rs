//! The repo config that `crabbox init` writes: commented, valid, and limited to keys this
//! version reads, so a fresh repo resolves without warnings.

/// The `.crabbox.yaml` for a repository called `repo_name`.
pub fn starter_repo_config(repo_name: &str) -> String {
    // A JSON string is a valid YAML double-quoted scalar, so any repo name stays one value.
    let profile = serde_json::to_string(&format!("{repo_name}-check"))
        .expect("serializing a string cannot fail");
    format!(
        "\
# Crabbox settings for this repository.
# Precedence: flags > CRABBOX_* env > this file > user config > defaults.
# `crabbox config show` prints every value and where it came from.

# Where leases run. Without a provider, Crabbox uses `local` (an sshd on this machine);
# set ssh, aws, hetzner or azure to lease remote runners.
# provider: local

# Label for runs and leases; selects a profiles.<name> block when one exists.
profile: {profile}
# Machine size: tiny, small, standard, fast, large or beast.
class: beast
# Lease lifetime and idle release, in Go duration syntax.
ttl: 90m
idleTimeout: 30m

sync:
  # Remove remote files that Crabbox synced earlier and that are gone locally.
  delete: true
  gitSeed: true
  fingerprint: true
  timeout: 15m
  # Warn, then refuse, when a sync gets this large (sizes take units like 5GiB).
  warnFiles: 50000
  warnBytes: 5GiB
  failFiles: 150000
  failBytes: 20GiB
  # Paths never sent to the runner, in addition to .crabboxignore.
  exclude:
    - .cache
    - .turbo
    - dist
    - node_modules

env:
  # Local environment variables forwarded to the remote command.
  allow:
    - CI
    - NODE_OPTIONS

ssh:
  user: crabbox
  port: \"2222\"
  # Tried when the main port does not answer; [] disables.
  fallbackPorts:
    - \"22\"
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigInputs, Origin, resolve};

    #[test]
    fn starter_resolves_cleanly_to_the_documented_values() {
        for name in ["openclaw", "weird: name # \"quoted\"\n"] {
            let path = std::path::PathBuf::from("/repo/.crabbox.yaml");
            let inputs = ConfigInputs {
                repo: vec![(path.clone(), starter_repo_config(name))],
                ..ConfigInputs::default()
            };
            let resolved = resolve(&inputs).unwrap();
            assert!(resolved.warnings().is_empty(), "{:?}", resolved.warnings());
            let config = resolved.config();
            assert_eq!(config.profile, format!("{name}-check").trim());
            assert_eq!(config.provider, "local");
            assert_eq!(resolved.origin("provider"), Some(&Origin::Default));
            assert_eq!(
                config.sync.exclude,
                [".cache", ".turbo", "dist", "node_modules"]
            );
            assert_eq!(config.env_allow, ["CI", "NODE_OPTIONS"]);
            assert_eq!(
                (config.ssh.port, config.ssh.fallback_ports.as_slice()),
                (2222, &[22][..])
            );
            assert_eq!(config.sync.warn_bytes, 5 << 30);
            assert_eq!(resolved.origin("ssh.user"), Some(&Origin::Repo(path)));
        }
    }
}
