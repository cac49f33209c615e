//! The rsync command line for `--files-from` sync over the lease's SSH connection.

use std::path::Path;

use crate::ssh::SshTarget;

/// Options that change the rsync invocation.
#[derive(Debug, Clone, Copy, Default)]
pub struct RsyncOptions {
    pub checksum: bool,
    pub debug: bool,
}

/// argv (without `rsync`) that copies the NUL-separated manifest read from stdin from
/// `local_root` to `remote_dir` on the runner. Deletions and excludes are not rsync's job
/// here: the manifest is already filtered and the runner prunes what Crabbox synced before.
pub fn rsync_args(
    target: &SshTarget,
    local_root: &Path,
    remote_dir: &str,
    opts: RsyncOptions,
) -> Vec<String> {
    let mut args = vec![
        "-az".to_owned(),
        "-e".to_owned(),
        target.transport_command(),
    ];
    if opts.checksum {
        args.push("--checksum".to_owned());
    }
    args.push("--files-from=-".to_owned());
    args.push("--from0".to_owned());
    // Paths arrive verbatim through --files-from; --protect-args keeps spaces and unicode
    // away from the remote shell.
    args.push("--protect-args".to_owned());
    if opts.debug {
        args.extend(["--stats", "--itemize-changes"].map(str::to_owned));
    }
    let mut src = local_root.display().to_string();
    if !src.ends_with('/') {
        src.push('/');
    }
    args.push(src);
    args.push(format!(
        "{}:{}/",
        target.destination(),
        remote_dir.trim_end_matches('/')
    ));
    args
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::ssh::HostKeyPolicy;

    #[test]
    fn rsync_argv() {
        let target = SshTarget {
            user: "crabbox".into(),
            host: "203.0.113.7".into(),
            port: 2222,
            fallback_ports: vec![],
            key: Some(PathBuf::from("/keys/id_ed25519")),
            known_hosts: PathBuf::from("/keys/known_hosts"),
            host_keys: HostKeyPolicy::AcceptNew,
            control_dir: Some(PathBuf::from("/tmp/crabbox-1000")),
            proxy: None,
        };
        let args = rsync_args(
            &target,
            std::path::Path::new("/src/my repo"),
            "/work/crabbox/cbx_0123456789ab/repo",
            RsyncOptions {
                checksum: true,
                debug: false,
            },
        );
        insta::assert_snapshot!(args.join("\n"));
    }
}
