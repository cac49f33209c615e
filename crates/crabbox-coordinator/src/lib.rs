//! The Crabbox coordinator (`crabbox coordinator serve`): the `/v1` HTTP API with the existing
//! paths and JSON field names, lease lifecycle over providers, run history, usage and caps,
//! a reconciler that expires and cleans leases, and `/metrics`.
//!
//! Storage is behind `crabbox_store::Store`: SQLite (default, one process) or PostgreSQL
//! (several replicas). Every state change is a compare-and-swap on the record's version; no
//! request holds a lock across provider I/O, and exactly one replica runs the reconciler.

pub mod access;
pub mod admin;
pub mod caps;
pub mod clock;
pub mod config;
pub mod error;
pub mod images;
pub mod leases;
pub mod lifecycle;
pub mod login;
pub mod metrics;
pub mod openapi;
pub mod promotions;
pub mod providers;
pub mod reconciler;
pub mod request;
pub mod router;
pub mod runs;
pub mod service;
pub mod ssh_pool;
pub mod state;
pub mod usage;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use crabbox_store::Store;
use tokio_util::sync::CancellationToken;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{ServeArgs, Settings};
pub use state::AppState;

/// The default state directory: `$XDG_STATE_HOME/crabbox/coordinator`.
pub fn default_state_dir() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("crabbox").join("coordinator")
}

/// Opens the configured store: PostgreSQL for `postgres://` URLs, SQLite otherwise.
pub async fn open_store(
    args: &ServeArgs,
    state_dir: &std::path::Path,
) -> anyhow::Result<Arc<dyn Store>> {
    let url = args
        .database_url
        .clone()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| state_dir.join("coordinator.db").display().to_string());
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return open_postgres(&url, args).await;
    }
    let path = url.strip_prefix("sqlite://").unwrap_or(&url);
    let options = crabbox_store_sqlite::SqliteOptions {
        quick_check: !args.skip_sqlite_check,
    };
    let store = crabbox_store_sqlite::SqliteStore::open_with(std::path::Path::new(path), options)
        .await
        .map_err(|e| {
            let recovery = match &e {
                crabbox_store::StoreError::Damaged(_) => format!(
                    "the SQLite database {path} is damaged: restore it from a backup (and \
                     delete {path}-wal and {path}-shm beside it, which belong to the damaged \
                     file), or move those files aside to start with an empty database, or \
                     run on PostgreSQL with --database-url"
                ),
                _ => format!("could not open the SQLite store at {path}"),
            };
            anyhow::Error::new(e).context(recovery)
        })?;
    Ok(Arc::new(store))
}

async fn open_postgres(url: &str, args: &ServeArgs) -> anyhow::Result<Arc<dyn Store>> {
    let store = crabbox_store_postgres::PgStore::connect(
        url,
        crabbox_store_postgres::PgOptions {
            schema: args.database_schema.clone(),
            max_connections: args.database_pool_size,
            acquire_timeout: Duration::from_millis(args.database_connect_timeout_ms),
        },
    )
    .await
    .context("could not open the PostgreSQL store")?;
    Ok(Arc::new(store))
}

/// Builds providers from the flags.
fn build_providers<S: std::hash::BuildHasher>(
    args: &ServeArgs,
    state_dir: &std::path::Path,
    store: &Arc<dyn Store>,
    env: &HashMap<String, String, S>,
    cost_rates: &crabbox_providers::cloud::cost::CostRates,
) -> anyhow::Result<BTreeMap<String, Arc<dyn crabbox_providers::Provider>>> {
    // Only the cloud providers read the environment and the prices.
    #[cfg(not(any(feature = "aws", feature = "azure", feature = "hetzner")))]
    let _ = (env, cost_rates);
    let mut out: BTreeMap<String, Arc<dyn crabbox_providers::Provider>> = BTreeMap::new();
    for raw in &args.providers {
        let name = providers::canonical_name(raw);
        match name.as_str() {
            "" => {}
            "local" => {
                out.insert(
                    name,
                    Arc::new(crabbox_providers::local::LocalProvider::new(state_dir)),
                );
            }
            "ssh" => {
                let hosts = args
                    .ssh_pool
                    .iter()
                    .filter(|h| !h.trim().is_empty())
                    .map(|h| ssh_pool::PoolHost::parse(h))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(anyhow::Error::msg)?;
                anyhow::ensure!(
                    !hosts.is_empty(),
                    "provider ssh needs pool hosts: --ssh-pool user@host[:port],… (CRABBOX_SSH_POOL)"
                );
                if let Some(key) = &args.ssh_pool_key {
                    std::fs::File::open(key).with_context(|| {
                        format!(
                            "--ssh-pool-key {} (CRABBOX_SSH_POOL_KEY) cannot be read",
                            key.display()
                        )
                    })?;
                }
                out.insert(
                    name,
                    Arc::new(ssh_pool::SshPoolProvider {
                        hosts,
                        key: args.ssh_pool_key.clone(),
                        work_root: args.ssh_pool_work_root.clone(),
                        authorized_keys: args.ssh_pool_authorized_keys.clone(),
                        known_hosts: state_dir.join("ssh-pool-known_hosts"),
                        store: store.clone(),
                    }),
                );
            }
            #[cfg(feature = "aws")]
            "aws" => {
                out.insert(name, Arc::new(aws_provider(env, cost_rates)?));
            }
            #[cfg(feature = "azure")]
            "azure" => {
                out.insert(name, Arc::new(azure_provider(env, cost_rates)?));
            }
            #[cfg(feature = "hetzner")]
            "hetzner" => {
                out.insert(name, Arc::new(hetzner_provider(env, cost_rates)?));
            }
            other => {
                let built: Vec<&str> = ["local", "ssh"]
                    .into_iter()
                    .chain(cfg!(feature = "aws").then_some("aws"))
                    .chain(cfg!(feature = "azure").then_some("azure"))
                    .chain(cfg!(feature = "hetzner").then_some("hetzner"))
                    .collect();
                let why = if matches!(other, "aws" | "azure" | "hetzner") {
                    format!(" (built without the {other} feature)")
                } else {
                    " yet".to_owned()
                };
                anyhow::bail!(
                    "provider {other:?} cannot run inside this coordinator{why} (available: {})",
                    built.join(", ")
                )
            }
        }
    }
    anyhow::ensure!(!out.is_empty(), "--providers names no provider");
    Ok(out)
}

/// The AWS provider with the coordinator's settings: the same `CRABBOX_AWS_*`,
/// `CRABBOX_CAPACITY_*`, `CRABBOX_SSH_*` and `AWS_REGION` variables the CLI reads, from the
/// coordinator's environment (no configuration files); credentials from the SDK's chain.
#[cfg(feature = "aws")]
fn aws_provider<S: std::hash::BuildHasher>(
    env: &HashMap<String, String, S>,
    cost_rates: &crabbox_providers::cloud::cost::CostRates,
) -> anyhow::Result<crabbox_aws::AwsProvider> {
    let inputs = crabbox_core::config::ConfigInputs {
        env: env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        ..Default::default()
    };
    let resolved =
        crabbox_core::config::resolve(&inputs).map_err(|e| anyhow::anyhow!("provider aws: {e}"))?;
    let settings = crabbox_aws::AwsSettings::from_config(resolved.config(), cost_rates.clone());
    Ok(crabbox_aws::AwsProvider::new(settings))
}

/// The Hetzner provider with the coordinator's settings: `HCLOUD_TOKEN` and the same
/// `CRABBOX_HETZNER_*`, `HCLOUD_ENDPOINT`, `CRABBOX_CAPACITY_*` and `CRABBOX_SSH_*` variables
/// the CLI reads, from the coordinator's environment (no configuration files). A coordinator
/// asked to offer Hetzner without a token does not start.
#[cfg(feature = "hetzner")]
fn hetzner_provider<S: std::hash::BuildHasher>(
    env: &HashMap<String, String, S>,
    cost_rates: &crabbox_providers::cloud::cost::CostRates,
) -> anyhow::Result<crabbox_hetzner::HetznerProvider> {
    let inputs = crabbox_core::config::ConfigInputs {
        env: env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        ..Default::default()
    };
    let resolved = crabbox_core::config::resolve(&inputs)
        .map_err(|e| anyhow::anyhow!("provider hetzner: {e}"))?;
    let settings = crabbox_hetzner::HetznerSettings::from_config(
        resolved.config(),
        cost_rates.clone(),
        |name| env.get(name).cloned(),
    );
    anyhow::ensure!(
        settings.token.is_some(),
        "provider hetzner needs an API token: set HCLOUD_TOKEN in the coordinator's environment"
    );
    crabbox_hetzner::HetznerProvider::new(settings)
        .map_err(|e| anyhow::anyhow!("provider hetzner: {e}"))
}

/// The Azure provider with the coordinator's settings: the service principal
/// (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`), `AZURE_SUBSCRIPTION_ID` and
/// the same `CRABBOX_AZURE_*`, `CRABBOX_CAPACITY_*` and `CRABBOX_SSH_*` variables the CLI reads,
/// from the coordinator's environment (no configuration files). A coordinator asked to offer
/// Azure without a subscription does not start.
#[cfg(feature = "azure")]
fn azure_provider<S: std::hash::BuildHasher>(
    env: &HashMap<String, String, S>,
    cost_rates: &crabbox_providers::cloud::cost::CostRates,
) -> anyhow::Result<crabbox_azure::AzureProvider> {
    let inputs = crabbox_core::config::ConfigInputs {
        env: env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        ..Default::default()
    };
    let resolved = crabbox_core::config::resolve(&inputs)
        .map_err(|e| anyhow::anyhow!("provider azure: {e}"))?;
    let settings =
        crabbox_azure::AzureSettings::from_config(resolved.config(), cost_rates.clone(), |name| {
            env.get(name).cloned()
        });
    anyhow::ensure!(
        settings.subscription_id.is_some(),
        "provider azure needs a subscription: set AZURE_SUBSCRIPTION_ID (and the service \
         principal's AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET) in the \
         coordinator's environment"
    );
    crabbox_azure::AzureProvider::new(settings).map_err(|e| anyhow::anyhow!("provider azure: {e}"))
}

/// Builds the shared state from flags and an environment map.
pub async fn build_state<S: std::hash::BuildHasher>(
    args: &ServeArgs,
    env: &HashMap<String, String, S>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<AppState> {
    let state_dir = args.state_dir.clone().unwrap_or_else(default_state_dir);
    // Private to this user: it holds the database (run logs, login records) and runner keys.
    {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&state_dir)
            .with_context(|| format!("could not create {}", state_dir.display()))?;
    }
    let lookup = |k: &str| env.get(k).cloned();
    let (limits, cost_rates) = config::limits_from_env(&lookup).map_err(anyhow::Error::msg)?;
    let auth_config =
        crabbox_auth::AuthConfig::from_env(env.iter()).map_err(|e| anyhow::anyhow!("{e}"))?;
    for warning in &auth_config.warnings {
        tracing::warn!("{warning}");
    }
    let secrets = auth_config
        .secrets()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let store = open_store(args, &state_dir).await?;
    let providers = build_providers(args, &state_dir, &store, env, &cost_rates)?;
    let default_provider = match &args.default_provider {
        Some(p) => {
            let p = providers::canonical_name(p);
            anyhow::ensure!(
                providers.contains_key(&p),
                "--default-provider {p} is not one of --providers"
            );
            p
        }
        None => providers::canonical_name(&args.providers[0]),
    };
    let auth = crabbox_auth::Authenticator::new(auth_config);
    let github_login = Some(crabbox_auth::GithubLogin::new(
        &auth,
        Arc::new(crabbox_auth::StoreLoginStore(store.clone())),
    ));
    Ok(AppState {
        inner: Arc::new(state::Inner {
            store,
            clock,
            settings: Settings {
                default_provider,
                limits,
                cost_rates,
                run_retention_days: args.run_retention_days,
                settle_secs: i64::from(args.provisioning_settle_seconds),
                secrets,
            },
            auth,
            github_login,
            providers,
            generation: state::random_hex(16),
            reconcile_wake: tokio::sync::Notify::new(),
            metrics: metrics::Metrics::default(),
            leader: std::sync::atomic::AtomicBool::new(false),
            creating: std::sync::Mutex::default(),
        }),
    })
}

/// A running coordinator (HTTP server + reconciler) inside this process.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    pub state: AppState,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    reconciler: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, drains in-flight requests, stops the reconciler after its current pass,
    /// then closes the store (a SQLite file is then complete by itself, without its log).
    pub async fn shutdown(self, timeout: Duration) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let drain = async {
            let served = self.server.await;
            if let Some(r) = self.reconciler {
                let _ = r.await;
            }
            served
        };
        let drained = tokio::time::timeout(timeout, drain).await;
        self.state.store.close().await;
        match drained {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(e.into()),
            Ok(Err(e)) => Err(anyhow::anyhow!("server task failed: {e}")),
            Err(_) => anyhow::bail!("shutdown did not finish within {timeout:?}"),
        }
    }
}

/// Serves `state` on `listener`; with `reconcile`, also runs the reconciler loop.
pub fn spawn(
    state: AppState,
    listener: tokio::net::TcpListener,
    reconcile: bool,
) -> anyhow::Result<Running> {
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let app = router::router(state.clone());
    let token = shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { token.cancelled().await })
        .await
    });
    let reconciler =
        reconcile.then(|| tokio::spawn(reconciler::run(state.clone(), shutdown.clone())));
    Ok(Running {
        addr,
        state,
        shutdown,
        server,
        reconciler,
    })
}

/// Logs to stderr, filtered by `CRABBOX_LOG` (default `info`); colours only on a terminal.
fn init_logging(format: &str) -> anyhow::Result<()> {
    use std::io::IsTerminal as _;
    let filter = match std::env::var("CRABBOX_LOG") {
        Ok(spec) if !spec.trim().is_empty() => tracing_subscriber::EnvFilter::try_new(&spec)
            .with_context(|| {
                format!(
                    "CRABBOX_LOG={spec:?} is not a log filter (try info, debug or crabbox=debug)"
                )
            })?,
        _ => tracing_subscriber::EnvFilter::new("info"),
    };
    // A log line that cannot be written is dropped. tracing-subscriber would otherwise report
    // it with `eprintln!`, which panics when stderr is a closed pipe (a log collector that
    // died): the coordinator would die of its own logging.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
    };
    Ok(())
}

/// `crabbox coordinator serve`: runs until SIGTERM/SIGINT, then shuts down gracefully.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(&args.log_format)?;
    // Installed before anything is served or announced: a supervisor may signal as soon as it
    // sees the listening line, and a signal with no handler yet would kill the process without
    // draining requests or closing the store.
    let stop = stop_signals()?;
    let env: HashMap<String, String> = std::env::vars().collect();
    let state = build_state(&args, &env, Arc::new(SystemClock)).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("could not listen on {}", args.listen))?;
    let running = spawn(state, listener, true)?;
    let url = format!("http://{}", running.addr);
    tracing::info!(%url, providers = %args.providers.join(","), "crabbox coordinator listening");
    // For scripts and tests that start the server on port 0 (in JSON, the line above has it).
    if args.log_format != "json" {
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "crabbox coordinator listening on {url}");
    }
    stop.await;
    tracing::info!("shutting down: draining requests and the reconciler");
    running
        .shutdown(Duration::from_millis(args.shutdown_timeout_ms))
        .await?;
    tracing::info!("coordinator stopped");
    Ok(())
}

/// Resolves at the first SIGTERM or SIGINT; the handlers are installed when this is called.
fn stop_signals() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("could not handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("could not handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
