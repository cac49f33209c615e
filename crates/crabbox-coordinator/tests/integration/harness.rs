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
                "-X",
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
            // The coordinator is on 127.0.0.1: a proxy set up on the machine must not be asked.
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
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

    /// `POST /v1/runs/{id}/finish` with `body`.
    pub async fn finish(&self, who: Who<'_>, id: &str, body: Value) -> (u16, Value) {
        self.call("POST", &format!("/v1/runs/{id}/finish"), who, Some(body))
            .await
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

/// A real sshd standing in for one `ssh` pool host, with the coordinator's pool key, the
/// authorized-keys file lease keys go to, and a work root.
#[derive(Debug)]
pub struct SshPool {
    pub dir: tempfile::TempDir,
    pub user: String,
    pub sshd_port: u16,
}

impl SshPool {
    pub async fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("cbx-pool")
            .tempdir()
            .unwrap();
        let user = crabbox_providers::local::current_user();
        let pool_key =
            crabbox_remote::keys::ensure_ed25519(dir.path(), "pool_key", "pool").unwrap();
        let sshd = crabbox_remote::sshd::start(
            &dir.path().join("host"),
            &user,
            &pool_key.public_key().unwrap(),
        )
        .await
        .unwrap();
        Self {
            dir,
            user,
            sshd_port: sshd.port,
        }
    }

    /// `user@127.0.0.1:port`, a pool entry for a host listening on `port`.
    pub fn entry(&self, port: u16) -> String {
        format!("{}@127.0.0.1:{port}", self.user)
    }

    pub fn keys_file(&self) -> PathBuf {
        self.dir.path().join("host/authorized_keys")
    }

    pub fn work_root(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// Coordinator flags offering `local` and `ssh`, the pool being `entries`.
    pub fn flags(&self, entries: &[String]) -> Vec<String> {
        vec![
            "--providers".into(),
            "local,ssh".into(),
            "--ssh-pool".into(),
            entries.join(","),
            "--ssh-pool-key".into(),
            self.dir.path().join("pool_key").display().to_string(),
            "--ssh-pool-authorized-keys".into(),
            self.keys_file().display().to_string(),
            "--ssh-pool-work-root".into(),
            self.work_root().display().to_string(),
        ]
    }

    pub async fn stop(&self) {
        crabbox_remote::sshd::stop(&self.dir.path().join("host")).await;
    }
}

/// What a [`Gate`] does with the next connection.
#[derive(Debug, Clone, Copy)]
pub enum Pass {
    /// Forward it to the real sshd.
    Open,
    /// Close it at once, as a host that dies mid-handshake.
    Slam,
}

/// A TCP gate in front of a real sshd: every connection waits until the test decides, in
/// arrival order, whether it goes through or is closed, so a test can act while a provider
/// call is in flight.
#[derive(Debug)]
pub struct Gate {
    pub port: u16,
    arrivals: tokio::sync::mpsc::UnboundedReceiver<()>,
    decisions: tokio::sync::mpsc::UnboundedSender<Pass>,
    task: tokio::task::JoinHandle<()>,
}

impl Gate {
    pub async fn start(target_port: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (arrived, arrivals) = tokio::sync::mpsc::unbounded_channel();
        let (decisions, queue) = tokio::sync::mpsc::unbounded_channel::<Pass>();
        let queue = Arc::new(tokio::sync::Mutex::new(queue));
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                let _ = arrived.send(());
                let queue = queue.clone();
                conns.spawn(async move {
                    let decision = queue.lock().await.recv().await;
                    if let Some(Pass::Open) = decision
                        && let Ok(mut sshd) =
                            tokio::net::TcpStream::connect(("127.0.0.1", target_port)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut sshd).await;
                    }
                });
            }
        });
        Self {
            port,
            arrivals,
            decisions,
            task,
        }
    }

    /// Waits for the next connection to arrive.
    pub async fn arrival(&mut self) {
        tokio::time::timeout(std::time::Duration::from_secs(30), self.arrivals.recv())
            .await
            .expect("no connection reached the gate")
            .unwrap();
    }

    /// Decides the next waiting (or future) connection.
    pub fn pass(&self, pass: Pass) {
        self.decisions.send(pass).unwrap();
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.task.abort();
    }
}
