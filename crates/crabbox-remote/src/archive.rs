//! Small tar archives of chosen paths, made by the system `tar`.

use std::path::Path;

use crate::process::{Cmd, ProcessError};

/// A tar of `paths` (relative to `root`), without recursing into directories.
pub async fn tar_paths(root: &Path, paths: &[String]) -> Result<Vec<u8>, ProcessError> {
    let mut list = Vec::new();
    for p in paths {
        list.extend_from_slice(p.as_bytes());
        list.push(0);
    }
    let out = Cmd::new("tar")
        .current_dir(root)
        .args(["-c", "-f", "-", "--null", "--no-recursion", "-T", "-"])
        .run_ok(Some(list))
        .await?;
    Ok(out.stdout)
}
