//! What the runner's git needs to match the local repository: HEAD, the local index as a
//! commit, the branch and its upstream. Objects travel with `git push` over the lease's SSH
//! connection, so runners need no access to the origin remote.

use std::path::Path;

use crate::process::Cmd;

/// Git state pushed to the runner on a sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSeed {
    pub head: String,
    /// A commit whose tree is the local index, so staged changes stay staged remotely.
    pub index_commit: Option<String>,
    pub branch: Option<String>,
    /// Upstream branch name on origin (e.g. `main`), pushed as `refs/remotes/origin/<name>`.
    pub upstream: Option<String>,
    /// Base branch for `git diff origin/<base>` on the runner.
    pub base: Option<String>,
    /// Existing `refs/remotes/origin/*` refs (upstream and base) to push along, with their ids.
    pub tracking: Vec<(String, String)>,
}

async fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = Cmd::new("git")
        .current_dir(root)
        .args(args)
        .capture(None)
        .await
        .ok()?;
    (out.code == 0)
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Reads the seed from the repository at `root`; `None` for an unborn HEAD. The queries are
/// independent, so they run as two rounds of concurrent `git` calls rather than one after
/// another (this sits on the sync path of every changed run).
pub async fn read_seed(root: &Path, base_ref: Option<&str>) -> Option<GitSeed> {
    let base = async {
        match base_ref {
            Some(b) if !b.is_empty() => Some(b.trim_start_matches("origin/").to_owned()),
            _ => git(
                root,
                &["symbolic-ref", "-q", "--short", "refs/remotes/origin/HEAD"],
            )
            .await
            .and_then(|b| b.strip_prefix("origin/").map(str::to_owned)),
        }
    };
    let (head, branch, upstream, base, tree) = tokio::join!(
        git(root, &["rev-parse", "--verify", "-q", "HEAD^{commit}"]),
        git(root, &["symbolic-ref", "-q", "--short", "HEAD"]),
        git(
            root,
            &["rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{u}"],
        ),
        base,
        git(root, &["write-tree"]),
    );
    let head = head?;
    let upstream = upstream
        .filter(|_| branch.is_some())
        .and_then(|u| u.strip_prefix("origin/").map(str::to_owned));
    // A fixed identity and date make the index commit deterministic: an unchanged index
    // yields the same commit id and the push sends nothing.
    let index_commit = async {
        let out = Cmd::new("git")
            .current_dir(root)
            .args([
                "commit-tree",
                tree.as_deref()?,
                "-p",
                &head,
                "-m",
                "crabbox index",
            ])
            .env("GIT_AUTHOR_NAME", "crabbox")
            .env("GIT_AUTHOR_EMAIL", "crabbox@localhost")
            .env("GIT_COMMITTER_NAME", "crabbox")
            .env("GIT_COMMITTER_EMAIL", "crabbox@localhost")
            .env("GIT_AUTHOR_DATE", "1700000000 +0000")
            .env("GIT_COMMITTER_DATE", "1700000000 +0000")
            .capture(None)
            .await
            .ok()?;
        (out.code == 0).then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let tracking_ref = |name: Option<&String>| {
        let r = name.map(|n| format!("refs/remotes/origin/{n}"));
        async move {
            let r = r?;
            let id = git(root, &["rev-parse", "--verify", "-q", &r]).await?;
            Some((r, id))
        }
    };
    let same = upstream.is_some() && upstream == base;
    let (index_commit, up_ref, base_ref) = tokio::join!(
        index_commit,
        tracking_ref(upstream.as_ref()),
        tracking_ref(base.as_ref().filter(|_| !same)),
    );
    Some(GitSeed {
        head,
        index_commit,
        branch,
        upstream,
        base,
        tracking: up_ref.into_iter().chain(base_ref).collect(),
    })
}

impl GitSeed {
    /// Refspecs for `git push`.
    pub fn refspecs(&self) -> Vec<String> {
        let mut specs = vec![format!("+{}:refs/crabbox/head", self.head)];
        if let Some(index) = &self.index_commit {
            specs.push(format!("+{index}:refs/crabbox/index"));
        }
        specs.extend(self.tracking.iter().map(|(r, _)| format!("+{r}:{r}")));
        specs
    }

    /// Identity of everything a push would send; the runner remembers the last one, so an
    /// unchanged seed is not pushed again.
    pub fn key(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.head.as_bytes());
        h.update(self.index_commit.as_deref().unwrap_or("-").as_bytes());
        for (name, id) in &self.tracking {
            h.update(format!("\0{name}={id}").as_bytes());
        }
        hex::encode(&h.finalize()[..12])
    }

    /// The `synced …` line the session script reads after rsync.
    pub fn synced_line(&self) -> String {
        format!(
            "synced {} {} {} {} {}\n",
            self.head,
            self.index_commit.as_deref().unwrap_or("-"),
            self.branch.as_deref().unwrap_or("-"),
            self.upstream.as_deref().unwrap_or("-"),
            self.key(),
        )
    }
}

/// Whether `root` has the ref (used to push only remote-tracking refs that exist).
pub async fn has_ref(root: &Path, name: &str) -> bool {
    git(root, &["rev-parse", "--verify", "-q", name])
        .await
        .is_some()
}
