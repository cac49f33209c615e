//! The run session against a real sshd.

use std::time::Duration;

use crabbox_remote::session::{SessionPlan, SyncHooks, SyncPayload, run_session};

use crate::runner;

#[tokio::test]
async fn session_syncs_then_skips_and_passes_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let target = runner(tmp.path()).await;
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("hello.txt"), "hi\n").unwrap();
    let work = tmp.path().join("work/repo");
    let plan = SessionPlan {
        workdir: work.display().to_string(),
        meta: work.join(".crabbox").display().to_string(),
        lock: tmp.path().join("work/run.lock").display().to_string(),
        lock_wait: Duration::from_secs(5),
        argv: vec![
            "sh".into(),
            "-c".into(),
            "cat hello.txt; echo err >&2; exit 42".into(),
        ],
        ..SessionPlan::default()
    };
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let mk = |_| {
        let src = src.clone();
        async move {
            Ok(SyncPayload {
                local_root: src,
                manifest: b"hello.txt\0".to_vec(),
                delta: false,
                tar: None,
                deleted: vec![],
                files: 1,
                bytes: 3,
                rsync: crabbox_remote::rsync::RsyncOptions::default(),
                git: None,
            })
        }
    };
    let (out, err) = (Buf::default(), Buf::default());
    let res = run_session(
        &target,
        &plan,
        SyncHooks {
            fingerprint: async { Ok("fp1".to_owned()) },
            prepare: mk,
        },
        |_| {},
        out.clone(),
        err.clone(),
        rx.clone(),
    )
    .await
    .unwrap();
    assert_eq!(res.exit_code, 42, "out={} err={}", out.text(), err.text());
    assert!(!res.sync_skipped);
    assert_eq!(out.text(), "hi\n");
    assert!(err.text().contains("err\n"), "{}", err.text());

    let (out, err) = (Buf::default(), Buf::default());
    let res = run_session(
        &target,
        &plan,
        SyncHooks {
            fingerprint: async { Ok("fp1".to_owned()) },
            prepare: mk,
        },
        |_| {},
        out.clone(),
        err.clone(),
        rx.clone(),
    )
    .await
    .unwrap();
    assert_eq!(res.exit_code, 42);
    assert!(res.sync_skipped);
    assert_eq!(out.text(), "hi\n");
}

#[derive(Clone, Default)]
struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Buf {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl tokio::io::AsyncWrite for Buf {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0.lock().unwrap().extend_from_slice(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
