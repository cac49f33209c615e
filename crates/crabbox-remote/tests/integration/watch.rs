//! The file watcher with a real daemon on real git repositories. The daemon is this test
//! binary started again with `watch::daemon_process` as its only test, which serves the root
//! and watch directory named at the end of its command line.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crabbox_remote::process::signal_pid;
use crabbox_remote::sync::{self, FingerprintOptions, LocalState, ManifestOptions};
use crabbox_remote::watch::{self, Answer, Launcher, Lookup, Source, Watch, WatchDir};
use crabbox_test_support::{git, git_repo, write};

const DAEMON_ENV: &str = "CRABBOX_TEST_WATCH_DAEMON";

/// The daemon, when this binary was started as one; a no-op in a normal test run.
#[test]
fn daemon_process() {
    if std::env::var_os(DAEMON_ENV).is_none() {
        return;
    }
    let args: Vec<OsString> = std::env::args_os().collect();
    let [.., root, dir] = args.as_slice() else {
        panic!("daemon_process needs <root> <dir>");
    };
    let dir = WatchDir::existing(PathBuf::from(dir)).expect("watch dir");
    let opts = watch::daemon::DaemonOptions::new(PathBuf::from(root), dir);
    let log = opts.dir.path().join("debug.log");
    let _ = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&log)
        .and_then(|mut f| {
            use std::io::Write;
            writeln!(f, "start {}", std::process::id())
        });
    let r = watch::daemon::serve(&opts);
    let _ = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&log)
        .and_then(|mut f| {
            use std::io::Write;
            writeln!(f, "end {} {r:?}", std::process::id())
        });
    r.expect("daemon runs");
}

struct Fixture {
    _state: tempfile::TempDir,
    state_dir: PathBuf,
    repo_dir: tempfile::TempDir,
    scope: ManifestOptions,
}

impl Fixture {
    fn new() -> Self {
        let state = tempfile::tempdir().unwrap();
        let repo_dir = tempfile::tempdir().unwrap();
        let root = repo_dir.path().join("repo");
        git_repo(
            &root,
            &[
                (".gitignore", "*.tmp\n"),
                ("src/main.rs", "fn main() {}\n"),
                ("README.md", "hello\n"),
                ("run.sh", "#!/bin/sh\n"),
            ],
        );
        let scope = ManifestOptions::load(&root, &[], &[]).unwrap();
        Self {
            state_dir: state.path().to_owned(),
            _state: state,
            repo_dir,
            scope,
        }
    }

    fn root(&self) -> PathBuf {
        self.repo_dir.path().join("repo")
    }

    /// A fresh `Watch` (it may start one daemon) with a generous timeout for a busy machine.
    fn watch(&self) -> Watch {
        let mut watch = Watch::new(
            self.state_dir.clone(),
            Launcher {
                program: std::env::current_exe().unwrap(),
                args: ["--exact", "watch::daemon_process", "--nocapture"]
                    .map(OsString::from)
                    .to_vec(),
                env: vec![(DAEMON_ENV.into(), "1".into())],
            },
        );
        watch.timeout = Duration::from_secs(5);
        watch
    }

    fn opts(&self) -> FingerprintOptions<'_> {
        FingerprintOptions {
            scope: &self.scope,
            delete: true,
            checksum: false,
            extra: &[],
        }
    }

    fn dir(&self) -> WatchDir {
        WatchDir::for_root(&self.state_dir, &self.root().canonicalize().unwrap()).unwrap()
    }

    fn ask(&self) -> Option<Answer> {
        watch::status(&self.state_dir, &self.root()).unwrap()
    }

    /// Starts a daemon through a lookup and waits until it has every watch in place.
    fn start(&self) -> Answer {
        assert!(
            matches!(
                watch::lookup(&self.watch(), &self.root(), &self.opts()),
                Lookup::Miss(_)
            ),
            "no daemon yet: a lookup cannot hit"
        );
        self.wait_ready(None)
    }

    fn wait_ready(&self, not_nonce: Option<&str>) -> Answer {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = watch::status(&self.state_dir, &self.root());
            if let Ok(Some(answer)) = &status
                && answer.ready
                && Some(answer.nonce.as_str()) != not_nonce
            {
                return answer.clone();
            }
            assert!(
                Instant::now() < deadline,
                "the daemon never became ready: {status:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn fingerprint(&self, watch: &Watch) -> (LocalState, Source) {
        watch::local_state(&self.root(), &self.opts(), Some(watch)).unwrap()
    }

    /// What `git status` says now, computed without the watcher.
    fn truth(&self) -> LocalState {
        sync::local_state(&self.root(), &self.opts()).unwrap()
    }

    /// Looks up until the cache serves the state, checking every answer against the truth.
    /// Git rewrites the index on every `git status` while a tracked file's mtime falls in the
    /// index's own second ("racily clean" entries), and the daemon rightly counts each rewrite:
    /// that settles within about a second.
    fn settle(&self, watch: &Watch) -> LocalState {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (state, source) = self.fingerprint(watch);
            assert_eq!(state, self.truth());
            if source == Source::Watcher {
                return state;
            }
            assert!(
                Instant::now() < deadline,
                "the watcher never served a cached state"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Waits until the daemon (our child, reaped by `spawn_detached`'s thread) is gone entirely:
/// a killed process shows as a zombie while its other threads, which still hold its socket,
/// are exiting.
fn wait_gone(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "daemon {pid} is still running");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A change to the work tree or the repository.
type Step<'a> = Box<dyn Fn() + 'a>;

#[test]
fn cached_state_is_served_until_anything_changes() {
    let fx = Fixture::new();
    let root = fx.root();
    fx.start();
    let watch = fx.watch();
    let mut previous = fx.settle(&watch);
    assert_eq!(
        fx.fingerprint(&watch),
        (previous.clone(), Source::Watcher),
        "nothing changed: served without git"
    );
    write(&root, "scratch.txt", "untracked\n");
    previous = fx.settle(&watch);

    let steps: Vec<(&str, Step<'_>)> = vec![
        (
            "modify",
            Box::new(|| write(&root, "README.md", "changed\n")),
        ),
        ("create", Box::new(|| write(&root, "new.txt", "new\n"))),
        (
            "delete",
            Box::new(|| std::fs::remove_file(root.join("src/main.rs")).unwrap()),
        ),
        (
            "rename",
            Box::new(|| std::fs::rename(root.join("new.txt"), root.join("renamed.txt")).unwrap()),
        ),
        (
            "chmod",
            Box::new(|| {
                std::fs::set_permissions(
                    root.join("run.sh"),
                    std::fs::Permissions::from_mode(0o755),
                )
                .unwrap();
            }),
        ),
        (
            "new directory with a file, at once",
            Box::new(|| {
                std::fs::create_dir(root.join("fresh")).unwrap();
                std::fs::write(root.join("fresh/a.txt"), "a").unwrap();
            }),
        ),
        (
            "second file in the new directory",
            Box::new(|| write(&root, "fresh/b.txt", "b")),
        ),
        (
            "nested directories",
            Box::new(|| write(&root, "deep/er/still/c.txt", "c")),
        ),
        (
            "file in a nested new directory",
            Box::new(|| write(&root, "deep/er/still/d.txt", "d")),
        ),
        (
            "git add",
            Box::new(|| {
                git(&root, &["add", "renamed.txt"]);
            }),
        ),
        (
            "git commit",
            Box::new(|| {
                git(&root, &["add", "-A"]);
                git(&root, &["commit", "-q", "-m", "more"]);
            }),
        ),
        (
            "git checkout -b",
            Box::new(|| {
                git(&root, &["checkout", "-q", "-b", "topic"]);
            }),
        ),
        (
            ".gitignore edit",
            Box::new(|| write(&root, ".gitignore", "*.tmp\nscratch.txt\n")),
        ),
        (
            "another untracked file",
            Box::new(|| write(&root, "other.txt", "untracked\n")),
        ),
        (
            ".git/info/exclude edit",
            Box::new(|| write(&root, ".git/info/exclude", "other.txt\n")),
        ),
    ];
    for (what, change) in steps {
        change();
        let (state, source) = fx.fingerprint(&watch);
        assert_eq!(
            source,
            Source::Computed,
            "{what}: the cache was not invalidated"
        );
        assert_eq!(state, fx.truth(), "{what}");
        assert_ne!(
            state.fingerprint, previous.fingerprint,
            "{what} did not change the fingerprint"
        );
        previous = fx.settle(&watch);
    }
}

#[test]
fn a_change_made_while_computing_is_seen_next_time() {
    let fx = Fixture::new();
    let root = fx.root();
    fx.start();
    let watch = fx.watch();
    fx.settle(&watch);
    write(&root, "README.md", "first\n");
    let Lookup::Miss(pending) = watch::lookup(&watch, &root, &fx.opts()) else {
        panic!("a change was made: the lookup must miss");
    };
    let computed = fx.truth();
    // After git read the tree, before the result is stored.
    write(&root, "README.md", "second, longer\n");
    pending.store(&computed);
    let (state, source) = fx.fingerprint(&watch);
    assert_eq!(source, Source::Computed);
    assert_ne!(state, computed);
    assert_eq!(state, fx.truth());
}

#[test]
fn a_killed_daemon_means_computing_and_a_new_daemon() {
    let fx = Fixture::new();
    let first = fx.start();
    fx.settle(&fx.watch());
    assert!(signal_pid(first.pid.cast_signed(), true));
    wait_gone(first.pid);
    assert!(
        fx.dir().socket().exists(),
        "a killed daemon leaves its socket"
    );

    let watch = fx.watch();
    write(&fx.root(), "README.md", "while no daemon ran\n");
    let (state, source) = fx.fingerprint(&watch);
    assert_eq!((&state, source), (&fx.truth(), Source::Computed));
    let second = fx.wait_ready(Some(&first.nonce));
    assert_ne!(second.pid, first.pid);
    assert_eq!(fx.settle(&watch), fx.truth());
}

#[test]
fn one_daemon_per_root() {
    let fx = Fixture::new();
    let first = fx.start();
    let watch = fx.watch();
    let root = fx.root().canonicalize().unwrap();
    let mut args = watch.launcher.args.clone();
    args.extend([
        root.into_os_string(),
        fx.dir().path().as_os_str().to_owned(),
    ]);
    let pid = crabbox_remote::process::spawn_detached(
        &watch.launcher.program,
        &args,
        &watch.launcher.env,
    )
    .unwrap();
    wait_gone(pid);
    assert_eq!(fx.ask().unwrap().nonce, first.nonce);
}

#[test]
fn the_daemon_exits_when_its_root_is_deleted_or_on_sigterm() {
    let fx = Fixture::new();
    let answer = fx.start();
    let socket = fx.dir().socket();
    std::fs::remove_dir_all(fx.root()).unwrap();
    wait_gone(answer.pid);
    assert!(!socket.exists(), "the daemon removes its socket");

    let fx = Fixture::new();
    let answer = fx.start();
    assert!(signal_pid(answer.pid.cast_signed(), false));
    wait_gone(answer.pid);
    assert!(!fx.dir().socket().exists());
}

#[test]
fn plain_directories_are_watched_too() {
    let fx = Fixture::new();
    let root = fx.root();
    std::fs::remove_dir_all(root.join(".git")).unwrap();
    fx.start();
    let watch = fx.watch();
    let before = fx.settle(&watch);
    write(&root, "src/main.rs", "fn main() { changed() }\n");
    let (state, source) = fx.fingerprint(&watch);
    assert_eq!(source, Source::Computed);
    assert_ne!(state.fingerprint, before.fingerprint);
    assert_eq!(fx.settle(&watch), fx.truth());
}

#[test]
fn other_options_are_not_served_from_the_cache() {
    let fx = Fixture::new();
    fx.start();
    let watch = fx.watch();
    fx.settle(&watch);
    let extra = ["workdir=/elsewhere".to_owned()];
    let opts = FingerprintOptions {
        extra: &extra,
        ..fx.opts()
    };
    let (state, source) = watch::local_state(&fx.root(), &opts, Some(&watch)).unwrap();
    assert_eq!(source, Source::Computed);
    assert_eq!(state, sync::local_state(&fx.root(), &opts).unwrap());
}

/// A root reached through a symlink shares the daemon of its target.
#[test]
fn watch_dirs_are_per_canonical_root() {
    let fx = Fixture::new();
    let link = fx.repo_dir.path().join("link");
    std::os::unix::fs::symlink(fx.root(), &link).unwrap();
    let canonical = |p: &Path| WatchDir::for_root(&fx.state_dir, &p.canonicalize().unwrap());
    assert_eq!(canonical(&link).unwrap(), canonical(&fx.root()).unwrap());
}
