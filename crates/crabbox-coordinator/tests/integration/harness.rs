//! Starts an in-process coordinator on 127.0.0.1:0 and talks to it with reqwest.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser as _;
use crabbox_api::coord::Timestamp;
use crabbox_coordinator::{ManualClock, Running, ServeArgs};
use serde_json::{Value, json};

pub const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789";
pub const SHARED_TOKEN: &str = "shared-token-for-tests-0123456789";
pub const USER_HEADER: &str = "x-test-user";

#[derive(clap::Parser, Debug)]
struct Wrapper {
    #[command(flatten)]
    args: ServeArgs,
}

#[derive(Debug)]
pub struct Coord {
    pub running: Option<Running>,
    pub clock: ManualClock,
    pub base: String,
    /// The temp dir holding the state dir; `None` for a replica sharing another's.
    pub dir: Option<Arc<tempfile::TempDir>>,
    state_dir: PathBuf,
    pub http: reqwest::Client,
    env: HashMap<String, String>,
    flags: Vec<String>,
    /// The PostgreSQL schema this coordinator (and its replicas) use, dropped with the last.
    pg: Option<Arc<PgSchema>>,
}

/// The PostgreSQL server tests use (127.0.0.1:5432, trust auth), overridable like the store
/// crate's tests.
pub fn database_url() -> String {
    std::env::var("CRABBOX_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A schema of its own on the test PostgreSQL server, dropped when the last coordinator using
/// it is.
#[derive(Debug)]
pub struct PgSchema(pub String);

impl PgSchema {
    fn fresh() -> Self {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Self(format!(
            "cbx_coord_t_{:x}_{nanos:x}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ))
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        // The name came from `fresh`: plain lowercase identifier characters.
        let _ = std::process::Command::new("psql")
            .args([
                database_url().as_str(),
                "-q",
                "-c",
                &format!("drop schema if exists {} cascade", self.0),
            ])
            .output();
    }
}

/// A caller: a proxy-asserted user, the admin token, the shared token or nobody.
#[derive(Debug, Clone, Copy)]
pub enum Who<'a> {
    User(&'a str),
    Admin,
    Shared,
    Anonymous,
}

pub const ALICE: Who<'static> = Who::User("alice@example.com");
pub const BOB: Who<'static> = Who::User("bob@example.com");

pub fn public_key() -> String {
    // Any valid OpenSSH ed25519 public key line works: tests that ssh in use their own.
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDQ4PxYkQ3H0y6Tq0r7WnZ1x0a0n4gkTzK8cZ6vX3bS2 test".into()
}

pub fn base_env() -> HashMap<String, String> {
    [
        ("CRABBOX_ADMIN_TOKEN", ADMIN_TOKEN),
        ("CRABBOX_SHARED_TOKEN", SHARED_TOKEN),
        ("CRABBOX_SHARED_OWNER", "team@example.com"),
        ("CRABBOX_DEFAULT_ORG", "example-org"),
        ("CRABBOX_TRUSTED_PROXY_CIDRS", "127.0.0.1/32"),
        ("CRABBOX_TRUSTED_USER_HEADER", USER_HEADER),
        ("CRABBOX_TRUSTED_USER_ORG", "example-org"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

impl Coord {
    pub async fn start() -> Self {
        Self::start_with(base_env(), &[]).await
    }

    pub async fn start_with(env: HashMap<String, String>, flags: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("cbx-coord")
            .tempdir()
            .unwrap();
        let flags: Vec<String> = flags.iter().map(|s| (*s).to_owned()).collect();
        Self::launch(env, flags, Some(Arc::new(dir)), None, None).await
    }

    /// A coordinator on its own fresh schema of the test PostgreSQL server.
    pub async fn start_postgres(env: HashMap<String, String>, flags: &[&str]) -> Self {
        let schema = Arc::new(PgSchema::fresh());
        let dir = tempfile::Builder::new()
            .prefix("cbx-coord")
            .tempdir()
            .unwrap();
        let mut all = vec![
            "--database-url".to_owned(),
            database_url(),
            "--database-schema".to_owned(),
            schema.0.clone(),
        ];
        all.extend(flags.iter().map(|s| (*s).to_owned()));
        Self::launch(env, all, Some(Arc::new(dir)), None, Some(schema)).await
    }

    /// A second replica: same database, settings and state dir (so `local` runners are
    /// shared), its own process generation, HTTP listener and clock.
    pub async fn replica(&self) -> Self {
        Self::launch(
            self.env.clone(),
            self.flags.clone(),
            self.dir.clone(),
            Some(self.state_dir.clone()),
            self.pg.clone(),
        )
        .await
    }

    async fn launch(
        env: HashMap<String, String>,
        flags: Vec<String>,
        dir: Option<Arc<tempfile::TempDir>>,
        state_dir: Option<PathBuf>,
        pg: Option<Arc<PgSchema>>,
    ) -> Self {
        let state_dir = state_dir.unwrap_or_else(|| dir.as_ref().unwrap().path().join("state"));
        let mut argv = vec![
            "serve".to_owned(),
            "--state-dir".to_owned(),
            state_dir.display().to_string(),
            "--provisioning-settle-seconds".to_owned(),
            "60".to_owned(),
        ];
        argv.extend(flags.iter().cloned());
        let serve_args = Wrapper::try_parse_from(argv).unwrap().args;
        let clock = ManualClock::new(Timestamp::now());
        let state = crabbox_coordinator::build_state(&serve_args, &env, Arc::new(clock.clone()))
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        // The reconciler loop is not started: tests drive passes with the manual clock.
        let running = crabbox_coordinator::spawn(state, listener, false).unwrap();
        let base = format!("http://{}", running.addr);
        Self {
            running: Some(running),
            clock,
            base,
            dir,
            state_dir,
            http: reqwest::Client::new(),
            env,
            flags,
            pg,
        }
    }

    pub fn state(&self) -> &crabbox_coordinator::AppState {
        &self.running.as_ref().unwrap().state
    }

    pub fn state_dir(&self) -> PathBuf {
        self.state_dir.clone()
    }

    /// Number of local runner directories (one per live sshd the provider made).
    pub fn runner_dirs(&self) -> usize {
        std::fs::read_dir(self.state_dir().join("local")).map_or(0, Iterator::count)
    }

    /// One reconciler pass at the manual clock's time.
    pub async fn reconcile(&self) -> crabbox_coordinator::reconciler::PassReport {
        let mut total = crabbox_coordinator::reconciler::PassReport::default();
        loop {
            let (report, more) = crabbox_coordinator::reconciler::pass(self.state(), true)
                .await
                .unwrap();
            total.expired += report.expired;
            total.deleted += report.deleted;
            total.failed_cleanups += report.failed_cleanups;
            total.recovered += report.recovered;
            total.orphans_deleted += report.orphans_deleted;
            if !more {
                return total;
            }
        }
    }

    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        who: Who<'_>,
    ) -> reqwest::RequestBuilder {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        req = match who {
            Who::User(name) => req.header(USER_HEADER, name),
            Who::Admin => req.bearer_auth(ADMIN_TOKEN),
            Who::Shared => req.bearer_auth(SHARED_TOKEN),
            Who::Anonymous => req,
        };
        req
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        who: Who<'_>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.request(method, path, who);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    pub async fn create(&self, who: Who<'_>, extra: Value) -> (u16, Value) {
        let mut body = json!({"provider": "local", "sshPublicKey": public_key(), "ttlSeconds": 3600, "idleTimeoutSeconds": 600});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        self.call("POST", "/v1/leases", who, Some(body)).await
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown(std::time::Duration::from_secs(10))
                .await
                .unwrap();
        }
        // Kill any sshd a failing test left behind (once the last replica sharing them stops).
        if self.dir.as_ref().is_some_and(|d| Arc::strong_count(d) > 1) {
            return;
        }
        if let Ok(entries) = std::fs::read_dir(self.state_dir().join("local")) {
            for e in entries.flatten() {
                crabbox_remote::sshd::stop(&e.path().join("sshd")).await;
            }
        }
    }
}
