//! `crabbox login`, `logout` and `whoami` against a coordinator.
//!
//! `login --token-stdin` stores a shared token; without it the GitHub browser flow runs: the
//! coordinator returns an authorize URL, the browser comes back to a one-time listener on
//! 127.0.0.1, and the CLI polls with its private secret until the token is released. The
//! token is written to the user config (`CRABBOX_CONFIG` when set; dir 0700, file 0600, atomic
//! rename) and nowhere else.

use std::io::Read as _;
use std::time::Duration;

use crabbox_api::ExitStatus;
use crabbox_client::Client;
use crabbox_core::config::Secret;
use serde_json::json;
use sha2::Digest as _;

use crate::broker;
use crate::credentials::CliCredentials;
use crate::error::{CliError, CliResult, WithStatus};
use crate::{lease, output, paths, user_config};

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// Coordinator URL, e.g. `https://crabbox.example.com`.
    #[arg(long)]
    pub url: String,
    /// Provider to record as the default for brokered leases.
    #[arg(long)]
    pub provider: Option<String>,
    /// Print the login URL instead of opening a browser.
    #[arg(long = "no-browser")]
    pub no_browser: bool,
    /// Read a shared token from stdin instead of logging in with GitHub.
    #[arg(long = "token-stdin")]
    pub token_stdin: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct JsonArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the OS random source is unavailable");
    hex::encode(buf)
}

/// Waits for the browser to come back to `http://127.0.0.1:<port>/crabbox/oauth/<nonce>` and
/// returns the `confirmation` query value.
async fn wait_for_browser(listener: tokio::net::TcpListener, path: String) -> CliResult<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    loop {
        let (mut sock, _) = listener.accept().await.status(ExitStatus::Auth)?;
        let mut buf = vec![0u8; 8192];
        let n = sock.read(&mut buf).await.unwrap_or(0);
        let head = String::from_utf8_lossy(&buf[..n]).into_owned();
        let target = head.split_whitespace().nth(1).unwrap_or("").to_owned();
        let (req_path, query) = target.split_once('?').unwrap_or((&target, ""));
        let confirmation = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("confirmation="))
            .map(str::to_owned);
        let (status, body) = match (&confirmation, req_path == path) {
            (Some(_), true) => ("200 OK", "Crabbox login confirmed. You can close this tab."),
            _ => ("404 Not Found", "Not a Crabbox login callback."),
        };
        let _ = sock
            .write_all(
                format!(
                    "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
            .await;
        if let (Some(c), true) = (confirmation, req_path == path) {
            return Ok(c);
        }
    }
}

async fn github_login(
    client: &Client,
    provider: Option<&str>,
    no_browser: bool,
) -> CliResult<String> {
    let secret = random_hex(32);
    let secret_hash = hex::encode(sha2::Sha256::digest(secret.as_bytes()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .status(ExitStatus::Auth)?;
    let port = listener.local_addr().status(ExitStatus::Auth)?.port();
    let path = format!("/crabbox/oauth/{}", random_hex(32));
    let mut body = json!({
        "pollSecretHash": secret_hash,
        "loopbackRedirectURI": format!("http://127.0.0.1:{port}{path}"),
    });
    if let Some(p) = provider {
        body["provider"] = json!(p);
    }
    let started = client
        .github_start(&body)
        .await
        .map_err(|e| broker::cli_error(e, "could not start the GitHub login"))?;
    let login_id = started["loginID"].as_str().unwrap_or_default().to_owned();
    let url = started["url"].as_str().unwrap_or_default().to_owned();
    if no_browser || open_browser(&url).is_err() {
        output::err(format!("open this URL to log in:\n  {url}"));
    } else {
        output::err(format!("opened your browser to log in (or open {url})"));
    }
    let confirmation =
        tokio::time::timeout(Duration::from_mins(10), wait_for_browser(listener, path))
            .await
            .map_err(|_| CliError::msg(ExitStatus::Auth, "login timed out after 10 minutes"))??;
    for _ in 0..60 {
        let polled = client
            .github_poll(&json!({"loginID": login_id, "pollSecret": secret, "browserConfirmation": confirmation}))
            .await
            .map_err(|e| broker::cli_error(e, "GitHub login failed"))?;
        match polled["status"].as_str() {
            Some("complete") => {
                return polled["token"].as_str().map(str::to_owned).ok_or_else(|| {
                    CliError::msg(
                        ExitStatus::Auth,
                        "the coordinator completed the login without a token",
                    )
                });
            }
            Some("expired") => {
                return Err(CliError::msg(
                    ExitStatus::Auth,
                    "the login expired; run `crabbox login` again",
                ));
            }
            Some("failed") => {
                return Err(CliError::msg(
                    ExitStatus::Auth,
                    format!(
                        "GitHub login failed: {}",
                        polled["error"].as_str().unwrap_or("unknown")
                    ),
                ));
            }
            _ => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
    Err(CliError::msg(
        ExitStatus::Auth,
        "the login did not complete",
    ))
}

fn open_browser(url: &str) -> std::io::Result<()> {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    std::process::Command::new(opener)
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(drop)
}

pub async fn login(args: LoginArgs) -> CliResult<u8> {
    let token = if args.token_stdin {
        let mut t = String::new();
        std::io::stdin()
            .read_to_string(&mut t)
            .status(ExitStatus::Usage)?;
        let t = t.trim().to_owned();
        if t.is_empty() {
            return Err(CliError::msg(ExitStatus::Usage, "no token on stdin"));
        }
        t
    } else {
        let anonymous =
            Client::new(&args.url, None).map_err(|e| CliError::new(ExitStatus::Usage, e))?;
        github_login(&anonymous, args.provider.as_deref(), args.no_browser).await?
    };
    // The check sends what later commands will: this token and the identity headers.
    let credentials = CliCredentials::token(Some(Secret::new(token.clone())));
    let client = Client::new(&args.url, None)
        .map_err(|e| CliError::new(ExitStatus::Usage, e))?
        .with_credentials(credentials);
    let me = client
        .whoami()
        .await
        .map_err(|e| broker::cli_error(e, "the coordinator did not accept the credential"))?;
    let path = paths::user_config_file();
    let mut map = user_config::read(&path)?;
    user_config::set_broker(&mut map, "url", Some(args.url.trim().trim_end_matches('/')));
    user_config::set_broker(&mut map, "token", Some(&token));
    if let Some(p) = &args.provider {
        // Both spellings, as the old tool writes them: a top-level `provider` left in the file
        // would otherwise win over `broker.provider`.
        user_config::set_broker(&mut map, "provider", Some(p));
        map.insert("provider".into(), p.as_str().into());
    }
    user_config::write(&path, &map)?;
    if args.json {
        output::json(
            &json!({"broker": client.base_url(), "provider": args.provider, "user": me.owner, "org": me.org, "auth": me.auth, "config": path}),
        );
    } else {
        output::out(format!(
            "logged in broker={} provider={} user={} org={} config={}",
            client.base_url(),
            args.provider.as_deref().unwrap_or("-"),
            me.owner,
            me.org,
            path.display()
        ));
    }
    Ok(0)
}

pub fn logout(args: &JsonArgs) -> CliResult<u8> {
    let path = paths::user_config_file();
    let mut map = user_config::read(&path)?;
    user_config::set_broker(&mut map, "token", None);
    user_config::write(&path, &map)?;
    if args.json {
        output::json(&json!({"config": path, "brokerAuth": "missing"}));
    } else {
        output::out(format!(
            "logged out config={} broker_auth=missing",
            path.display()
        ));
    }
    Ok(0)
}

pub async fn whoami(args: JsonArgs) -> CliResult<u8> {
    let ctx = lease::context(Vec::new())?;
    let client = broker::require(&ctx.settings, "whoami")?;
    let me = client
        .whoami()
        .await
        .map_err(|e| broker::cli_error(e, "whoami failed"))?;
    if args.json {
        output::json(&me);
    } else {
        output::out(format!(
            "user={} org={} auth={} admin={} broker={}",
            me.owner,
            me.org,
            me.auth,
            me.admin,
            client.base_url()
        ));
    }
    Ok(0)
}
