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
