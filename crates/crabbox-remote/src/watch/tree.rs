//! The inotify watches over one sync root: every directory under the root, and the git
//! directories it uses when they live elsewhere (linked worktrees, submodules), except git's
//! object stores. Turns the event queue into a count of changes.
//!
//! Watches are on directories, so an event names the directory and the entry that changed.
//! A new directory is watched first and read second: anything created in it before the watch
//! existed is found by the read (and was preceded by the directory's own creation event, which
//! the parent's watch counted), anything after by the watch.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use rustix::io::Errno;

/// What is watched on every directory. `ONLYDIR | DONT_FOLLOW` keep a path that was swapped
/// for a file or a symlink from being watched; `EXCL_UNLINK` drops events from files that are
/// already unlinked (they are no longer part of the tree).
const MASK: WatchFlags = WatchFlags::CREATE
    .union(WatchFlags::DELETE)
    .union(WatchFlags::MODIFY)
    .union(WatchFlags::ATTRIB)
    .union(WatchFlags::MOVED_FROM)
    .union(WatchFlags::MOVED_TO)
    .union(WatchFlags::CLOSE_WRITE)
    .union(WatchFlags::DELETE_SELF)
    .union(WatchFlags::MOVE_SELF)
    .union(WatchFlags::ONLYDIR)
    .union(WatchFlags::DONT_FOLLOW)
    .union(WatchFlags::EXCL_UNLINK);

/// Why the tree could not be (re)built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// `ENOSPC` from `inotify_add_watch`: the per-user watch limit.
    #[error("inotify watch limit reached (fs.inotify.max_user_watches={})", max_user_watches().map_or_else(|| "?".to_owned(), |n| n.to_string()))]
    Limit,
    #[error("could not watch {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// `fs.inotify.max_user_watches`, when readable.
pub fn max_user_watches() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// What one drain of the event queue found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Events that can change what `git status` or a walk reports.
    pub changes: u64,
    /// Events were lost or the set of watched trees changed: rebuild from scratch.
    pub rebuild: bool,
    /// The root itself was deleted, moved or unmounted.
    pub root_gone: bool,
}

#[derive(Debug)]
struct Node {
    path: PathBuf,
    /// Inside a git directory, where `*.lock` files are git's own transient locks.
    git: bool,
}

/// A watched top-level directory: the root, or a git directory outside it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Anchor {
    path: PathBuf,
    git: bool,
    id: (u64, u64),
}

/// The watches of one root.
#[derive(Debug)]
pub struct Tree {
    fd: OwnedFd,
    root: PathBuf,
    anchors: Vec<Anchor>,
    nodes: HashMap<i32, Node>,
    root_wd: i32,
}

fn dev_ino(path: &Path) -> io::Result<(u64, u64)> {
    let meta = std::fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

/// Git directories a work tree at `root` uses that are not inside it: where a `.git` file
/// (a linked worktree's or a submodule's git dir) or a `.git` symlink points, and its
/// `commondir`. The walk never follows symlinks, so a linked `.git` counts as outside.
pub fn external_git_dirs(root: &Path) -> Vec<PathBuf> {
    let dot_git = root.join(".git");
    if std::fs::symlink_metadata(&dot_git).is_ok_and(|m| m.is_dir()) {
        return Vec::new();
    }
    let Some(git_dir) = crate::sync::git_dir(root).and_then(|d| d.canonicalize().ok()) else {
        return Vec::new();
    };
    let mut dirs = vec![git_dir.clone()];
    if let Ok(common) = std::fs::read_to_string(git_dir.join("commondir"))
        && let Ok(common) = git_dir.join(common.trim()).canonicalize()
    {
        dirs.push(common);
    }
    // Watching a directory covers everything below it.
    let mut out: Vec<PathBuf> = Vec::new();
    for dir in &dirs {
        let covered = dir.starts_with(root) || dirs.iter().any(|o| o != dir && dir.starts_with(o));
        if !covered && !out.contains(dir) {
            out.push(dir.clone());
        }
    }
    out
}

/// Git's object store (`objects` next to `HEAD` in a git directory): objects are written
/// ahead of the index or ref update that makes them matter, and that update is watched.
fn is_object_store(parent: &Path, name: &OsStr, git: bool) -> bool {
    git && name == "objects" && parent.join("HEAD").is_file()
}

impl Tree {
    /// Watches every directory under `root` and its external git directories.
    pub fn build(root: &Path) -> Result<Self, BuildError> {
        let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK).map_err(|e| {
            BuildError::Io {
                path: root.to_owned(),
                source: e.into(),
            }
        })?;
        let mut anchors = vec![(root.to_owned(), false)];
        anchors.extend(external_git_dirs(root).into_iter().map(|d| (d, true)));
        let mut tree = Self {
            fd,
            root: root.to_owned(),
            anchors: Vec::new(),
            nodes: HashMap::new(),
            root_wd: -1,
        };
        for (path, git) in anchors {
            let id = dev_ino(&path).map_err(|source| BuildError::Io {
                path: path.clone(),
                source,
            })?;
            let wd = tree.add_tree(&path, git)?;
            if path == root {
                tree.root_wd = wd.ok_or_else(|| BuildError::Io {
                    path: path.clone(),
                    source: io::Error::from(io::ErrorKind::NotFound),
                })?;
            }
            tree.anchors.push(Anchor { path, git, id });
        }
        Ok(tree)
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// How many directories are watched.
    pub fn watches(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the root is still the directory that was watched (not replaced, not moved
    /// away with another one put in its place) and the external git directories are the same.
    pub fn root_intact(&self) -> bool {
        self.anchors
            .iter()
            .filter(|a| !a.git)
            .all(|a| dev_ino(&a.path).is_ok_and(|id| id == a.id))
    }

    /// Whether the external git directories are still the ones watched.
    pub fn git_dirs_intact(&self) -> bool {
        let now = external_git_dirs(&self.root);
        let watched: Vec<&PathBuf> = self
            .anchors
            .iter()
            .filter(|a| a.git)
            .map(|a| &a.path)
            .collect();
        now.iter().collect::<Vec<_>>() == watched
            && self
                .anchors
                .iter()
                .filter(|a| a.git)
                .all(|a| dev_ino(&a.path).is_ok_and(|id| id == a.id))
    }

    /// Watches `dir` and every directory below it; returns the watch of `dir` itself (`None`
    /// when it vanished or cannot be read, which its parent's events account for).
    fn add_tree(&mut self, dir: &Path, git: bool) -> Result<Option<i32>, BuildError> {
        let mut first = None;
        let mut stack = vec![(dir.to_owned(), git)];
        while let Some((path, git)) = stack.pop() {
            let wd = match inotify::add_watch(&self.fd, &path, MASK) {
                Ok(wd) => wd,
                // Gone, replaced by a non-directory, or unreadable: a later event (its
                // deletion, or the chmod that makes it readable) brings it back here.
                Err(Errno::NOENT | Errno::NOTDIR | Errno::ACCESS | Errno::LOOP) => continue,
                Err(Errno::NOSPC) => return Err(BuildError::Limit),
                Err(e) => {
                    return Err(BuildError::Io {
                        path,
                        source: e.into(),
                    });
                }
            };
            if first.is_none() {
                first = Some(wd);
            }
            // The same inode under a known path is already watched with its subtree; under a
            // new path it was moved, and its subtree's paths are refreshed below.
            if self.nodes.get(&wd).is_some_and(|n| n.path == path) {
                continue;
            }
            let Ok(entries) = std::fs::read_dir(&path) else {
                self.nodes.insert(wd, Node { path, git });
                continue;
            };
            for entry in entries.flatten() {
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let name = entry.file_name();
                if is_object_store(&path, &name, git) {
                    continue;
                }
                let child_git = git || name == ".git";
                stack.push((path.join(&name), child_git));
            }
            self.nodes.insert(wd, Node { path, git });
        }
        Ok(first)
    }

    /// Reads every queued event without blocking and counts the ones that matter.
    pub fn drain(&mut self) -> Result<Drained, BuildError> {
        let mut drained = Drained::default();
        let mut new_dirs: Vec<(PathBuf, bool)> = Vec::new();
        let mut buf = [MaybeUninit::<u8>::uninit(); 16 * 1024];
        let mut reader = inotify::Reader::new(&self.fd, &mut buf);
        loop {
            let event = match reader.next() {
                Ok(event) => event,
                Err(Errno::AGAIN | Errno::INTR) => break,
                Err(e) => {
                    return Err(BuildError::Io {
                        path: self.root.clone(),
                        source: e.into(),
                    });
                }
            };
            let flags = event.events();
            if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
                drained.rebuild = true;
                continue;
            }
            let wd = event.wd();
            if flags.contains(ReadFlags::IGNORED) {
                // The directory is gone (its deletion was counted) or unmounted.
                self.nodes.remove(&wd);
                continue;
            }
            if wd == self.root_wd
                && flags
                    .intersects(ReadFlags::DELETE_SELF | ReadFlags::MOVE_SELF | ReadFlags::UNMOUNT)
            {
                drained.root_gone = true;
            }
            if flags.contains(ReadFlags::UNMOUNT) {
                drained.rebuild = true;
            }
            let name = event.file_name().map(|n| OsStr::from_bytes(n.to_bytes()));
            let node = self.nodes.get(&wd);
            // Git takes `<file>.lock`, writes it and renames it onto `<file>`: the rename is
            // the change, the lock's own create/write/delete never is (our `git status` takes
            // `index.lock` on every run). Only inside git directories: `Cargo.lock` in the work
            // tree is a file like any other.
            if let (Some(node), Some(name)) = (node, name)
                && node.git
                && name.as_bytes().ends_with(b".lock")
            {
                continue;
            }
            drained.changes += 1;
            if let (Some(node), Some(name)) = (node, name) {
                if wd == self.root_wd && name == ".git" {
                    // A `.git` file (re)pointed at another git directory changes what to watch.
                    drained.rebuild |= !self.git_dirs_intact();
                }
                if flags.contains(ReadFlags::ISDIR)
                    && flags.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO | ReadFlags::ATTRIB)
                    && !is_object_store(&node.path, name, node.git)
                {
                    new_dirs.push((node.path.join(name), node.git || name == ".git"));
                }
            }
        }
        for (dir, git) in new_dirs {
            self.add_tree(&dir, git)?;
        }
        Ok(drained)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settle(tree: &mut Tree) -> Drained {
        tree.drain().unwrap()
    }

    #[test]
    fn counts_changes_and_follows_new_directories() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        let mut tree = Tree::build(&root).unwrap();
        assert_eq!(tree.watches(), 3);
        assert_eq!(settle(&mut tree), Drained::default());

        std::fs::write(root.join("a/b/f.txt"), "x").unwrap();
        assert!(settle(&mut tree).changes > 0);
        // A directory and a file in it, created before the daemon looks: the file is found
        // by reading the new directory, and the directory's creation counted already.
        std::fs::create_dir_all(root.join("n/m")).unwrap();
        assert!(settle(&mut tree).changes > 0);
        assert_eq!(tree.watches(), 5);
        std::fs::write(root.join("n/m/g.txt"), "y").unwrap();
        assert!(settle(&mut tree).changes > 0);
        // A moved directory keeps its watches under the new path.
        std::fs::rename(root.join("n"), root.join("renamed")).unwrap();
        assert!(settle(&mut tree).changes > 0);
        std::fs::create_dir(root.join("renamed/m/new")).unwrap();
        assert!(settle(&mut tree).changes > 0);
        assert!(
            tree.nodes
                .values()
                .any(|n| n.path == root.join("renamed/m/new"))
        );
        std::fs::remove_dir_all(root.join("renamed")).unwrap();
        assert!(settle(&mut tree).changes > 0);
        assert_eq!(tree.watches(), 3);
    }

    #[test]
    fn git_locks_and_objects_do_not_count_but_work_tree_locks_do() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join(".git/objects/ab")).unwrap();
        std::fs::create_dir_all(root.join(".git/refs/heads")).unwrap();
        std::fs::write(root.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
        let mut tree = Tree::build(&root).unwrap();
        settle(&mut tree);
        std::fs::write(root.join(".git/index.lock"), "x").unwrap();
        std::fs::remove_file(root.join(".git/index.lock")).unwrap();
        std::fs::write(root.join(".git/objects/ab/cdef"), "blob").unwrap();
        assert_eq!(settle(&mut tree).changes, 0);
        std::fs::write(root.join(".git/index.lock"), "x").unwrap();
        std::fs::rename(root.join(".git/index.lock"), root.join(".git/index")).unwrap();
        assert_eq!(settle(&mut tree).changes, 1, "the rename onto index");
        std::fs::write(root.join("Cargo.lock"), "x").unwrap();
        assert!(settle(&mut tree).changes > 0);
    }

    #[test]
    fn git_directories_outside_the_root_are_watched() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let root = base.join("root");
        let elsewhere = base.join("elsewhere/.git");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(elsewhere.join("refs")).unwrap();
        std::fs::write(elsewhere.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        std::os::unix::fs::symlink(&elsewhere, root.join(".git")).unwrap();
        assert_eq!(external_git_dirs(&root), std::slice::from_ref(&elsewhere));
        let mut tree = Tree::build(&root).unwrap();
        settle(&mut tree);
        std::fs::write(elsewhere.join("index"), "x").unwrap();
        assert!(
            settle(&mut tree).changes > 0,
            "the linked git directory is watched"
        );

        // A `.git` file, as in a linked worktree: its git dir and the common dir.
        let worktree = base.join("worktree");
        let wt_git = elsewhere.join("worktrees/wt");
        std::fs::create_dir_all(&worktree).unwrap();
        std::fs::create_dir_all(&wt_git).unwrap();
        std::fs::write(wt_git.join("commondir"), "../..\n").unwrap();
        std::fs::write(
            worktree.join(".git"),
            format!("gitdir: {}\n", wt_git.display()),
        )
        .unwrap();
        assert_eq!(external_git_dirs(&worktree), [elsewhere]);
    }

    #[test]
    fn root_deletion_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let mut tree = Tree::build(&root).unwrap();
        assert!(tree.root_intact());
        std::fs::remove_dir(&root).unwrap();
        assert!(settle(&mut tree).root_gone);
        assert!(!tree.root_intact());
    }
}
