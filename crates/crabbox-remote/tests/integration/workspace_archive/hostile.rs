//! Archives the check must refuse: each is refused by `check` with a message naming the entry,
//! and by `restore` with the workdir (and the directory around it) exactly as it was.

use std::path::{Path, PathBuf};

use super::tarball::{Tarball, many_entries};
use super::{Fixture, tree, write};
use crabbox_remote::workspace_archive::{self, RestoreMode};

/// An archive that starts like a real one (a root and a harmless file) before `hostile`.
fn after_a_good_start(hostile: impl FnOnce(Tarball) -> Tarball) -> Vec<u8> {
    hostile(Tarball::new().file("./ok.txt", b"fine\n")).zstd()
}

/// A valid archive cut in half: big enough that the cut falls inside the compressed stream.
fn truncated() -> Vec<u8> {
    let mut noise = Vec::with_capacity(1 << 20);
    let mut x: u32 = 1;
    for _ in 0..(1 << 20) {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        noise.push((x >> 16) as u8);
    }
    let mut archive = Tarball::new().file("./noise.bin", &noise).zstd();
    archive.truncate(archive.len() / 2);
    archive
}

fn cases() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    vec![
        (
            "dot-dot",
            after_a_good_start(|t| t.file("../x", b"escaped\n")),
            r#"archive entry "../x" escapes the workdir"#,
        ),
        (
            "absolute",
            after_a_good_start(|t| t.file("/etc/x", b"escaped\n")),
            r#"archive entry "/etc/x" is an absolute path"#,
        ),
        (
            "symlink-to-etc",
            after_a_good_start(|t| t.symlink("./etc", "/etc")),
            r#"archive entry "./etc" is a symlink to "/etc", outside the workdir"#,
        ),
        (
            "symlink-up",
            after_a_good_start(|t| t.dir("./sub").symlink("./sub/a", "../..")),
            r#"archive entry "./sub/a" is a symlink to "../..", outside the workdir"#,
        ),
        (
            "write-through-symlink",
            after_a_good_start(|t| {
                t.dir("./sub")
                    .symlink("./link", "sub")
                    .file("./link/f", b"through\n")
            }),
            r#"archive entry "./link/f" passes through the symlink "link""#,
        ),
        (
            "hard-link-out",
            after_a_good_start(|t| t.hard_link("./h", "../x")),
            r#"archive entry "./h" is a hard link to "../x", outside the workdir"#,
        ),
        (
            "char-device",
            after_a_good_start(|t| t.special("./null", b'3')),
            r#"archive entry "./null" is a character device"#,
        ),
        (
            "fifo",
            after_a_good_start(|t| t.special("./pipe", b'6')),
            r#"archive entry "./pipe" is a fifo"#,
        ),
        (
            "lease-state",
            after_a_good_start(|t| t.file("./.crabbox/env/token", b"stolen\n")),
            r#"archive entry "./.crabbox/env/token" is inside .crabbox/env"#,
        ),
        (
            "truncated",
            truncated(),
            "is not a valid workspace archive: the compressed stream is truncated or corrupt",
        ),
        (
            "no-end-marker",
            Tarball::new()
                .file("./ok.txt", b"fine\n")
                .zstd_without_end(),
            "the tar stream ends without an end-of-archive marker",
        ),
        (
            "not-an-archive",
            b"just some text\n".to_vec(),
            "is not a valid workspace archive: it is neither a zstd nor a gzip compressed tar",
        ),
    ]
}

/// A workdir with content, so "unchanged" means something.
fn workdir(fx: &Fixture) -> PathBuf {
    let wd = fx.path("runner/wd");
    write(&wd.join("keep.txt"), "mine\n", 0o644);
    write(&wd.join("sub/deeper.txt"), "mine too\n", 0o600);
    wd
}

/// `check` refuses the archive with `expected`, and so does `restore`, which leaves the
/// runner's directory (the workdir and everything next to it) as it was.
async fn refused_everywhere(fx: &Fixture, name: &str, archive: &[u8], expected: &str) {
    let path = fx.path(&format!("{name}.tar.zst"));
    std::fs::write(&path, archive).unwrap();
    let err = workspace_archive::check(&path).unwrap_err();
    assert!(err.is_bad_archive(), "{name}: {err:?}");
    assert!(err.to_string().contains(expected), "{name}: {err}");
    refused_by_restore(fx, name, &path, expected).await;
}

async fn refused_by_restore(fx: &Fixture, name: &str, archive: &Path, expected: &str) {
    let wd = workdir(fx);
    let before = tree(&fx.path("runner"));
    let err = workspace_archive::restore(
        &fx.target,
        archive,
        wd.to_str().unwrap(),
        RestoreMode { clear: true },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains(expected), "{name}: {err}");
    assert_eq!(tree(&fx.path("runner")), before, "{name}");
}

#[tokio::test]
async fn hostile_archives_are_refused_and_change_nothing() {
    let fx = Fixture::new().await;
    for (name, archive, expected) in cases() {
        refused_everywhere(&fx, name, &archive, expected).await;
    }
}

#[tokio::test]
async fn a_million_empty_entries_are_refused() {
    let fx = Fixture::new().await;
    let expected = "is past the limit of 500000 entries";
    let files = fx.path("files.tar.zst");
    std::fs::write(
        &files,
        many_entries(1_000_000, b'0', |i| format!("./f{i:07}")),
    )
    .unwrap();
    let err = workspace_archive::check(&files).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(r#"archive entry "./f0500000" {expected}"#)
    );
    // A restore extracts what the check has passed, up to the cap, before the stage is thrown
    // away: entries that all name the workdir itself keep the runner's part of this test cheap.
    let dirs = fx.path("dirs.tar.zst");
    std::fs::write(&dirs, many_entries(1_000_000, b'5', |_| "./".to_owned())).unwrap();
    refused_by_restore(&fx, "dirs", &dirs, expected).await;
}
