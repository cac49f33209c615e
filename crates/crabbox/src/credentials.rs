//! What the CLI sends the coordinator to say who it is (spec/cli-dataplane.md §5.2): the bearer
//! token, fixed or printed by `CRABBOX_COORDINATOR_TOKEN_COMMAND`, and the identity headers
//! `X-Crabbox-Owner` (`CRABBOX_OWNER`, else `GIT_AUTHOR_EMAIL`, else `GIT_COMMITTER_EMAIL`, else
//! `git config user.email`) and `X-Crabbox-Org` (`CRABBOX_ORG`). The coordinator honours those
//! headers for its admin token and ignores them otherwise (spec/coordinator.md §5.2).
//!
//! Programs run only when a request is made, through `crabbox_remote::process`. The token
//! travels from the command's stdout into the `Authorization` header and nowhere else: never in
//! an argv, an error message or a log line.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crabbox_client::{AuthHeaders, Credentials, CredentialsFuture};
use crabbox_core::config::{CoordinatorConfig, Secret};
use crabbox_remote::process::Cmd;
use tokio::io::AsyncReadExt as _;
use tokio::sync::{Mutex, OnceCell};

/// How long the token command may take.
const TOKEN_COMMAND_TIMEOUT: Duration = Duration::from_secs(15);
/// The most a token command may print.
const TOKEN_MAX_BYTES: usize = 16 * 1024;
/// A token command's answer is reused this long: a run posts a dozen events and a heartbeat a
/// minute, and running a password manager or cloud CLI for each would add its start-up time to
/// every one. Short enough for tokens that live an hour or less.
const TOKEN_REUSE: Duration = Duration::from_mins(1);

#[derive(Debug)]
enum Bearer {
    None,
    Fixed(Secret),
    Command {
        argv: Vec<String>,
        last: Mutex<Option<(Instant, Secret)>>,
    },
}

/// The CLI's [`Credentials`].
#[derive(Debug)]
pub struct CliCredentials {
    bearer: Bearer,
    /// Looked up on the first request (it may run git).
    owner: OnceCell<Option<String>>,
    org: Option<String>,
}

impl CliCredentials {
    fn with(bearer: Bearer) -> Arc<Self> {
        Arc::new(Self {
            bearer,
            owner: OnceCell::new(),
            org: env_value("CRABBOX_ORG"),
        })
    }

    /// A fixed token (or none), with the identity headers.
    pub fn token(token: Option<Secret>) -> Arc<Self> {
        Self::with(token.map_or(Bearer::None, Bearer::Fixed))
    }

    /// The configured credential: the token command when one is set (it wins over a token, as
    /// in the old tool), else the token.
    pub fn configured(coordinator: &CoordinatorConfig) -> Arc<Self> {
        match &coordinator.token_command {
            Some(argv) => Self::with(Bearer::Command {
                argv: argv.clone(),
                last: Mutex::new(None),
            }),
            None => Self::token(coordinator.token.clone()),
        }
    }

    async fn bearer(&self) -> Result<Option<String>, String> {
        match &self.bearer {
            Bearer::None => Ok(None),
            Bearer::Fixed(token) => Ok(Some(token.expose().to_owned())),
            Bearer::Command { argv, last } => {
                let mut last = last.lock().await;
                if let Some((at, token)) = last.as_ref()
                    && at.elapsed() < TOKEN_REUSE
                {
                    return Ok(Some(token.expose().to_owned()));
                }
                let token = run_token_command(argv).await?;
                let exposed = token.expose().to_owned();
                *last = Some((Instant::now(), token));
                Ok(Some(exposed))
            }
        }
    }
}

impl Credentials for CliCredentials {
    fn headers(&self) -> CredentialsFuture<'_> {
        Box::pin(async move {
            let bearer = self.bearer().await?;
            let owner = self.owner.get_or_init(owner).await.clone();
            Ok(AuthHeaders {
                bearer,
                owner,
                org: self.org.clone(),
            })
        })
    }
}

fn env_value(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// `CRABBOX_OWNER` → `GIT_AUTHOR_EMAIL` → `GIT_COMMITTER_EMAIL` → `git config user.email`.
async fn owner() -> Option<String> {
    if let Some(owner) = ["CRABBOX_OWNER", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"]
        .into_iter()
        .find_map(env_value)
    {
        return Some(owner);
    }
    let out = Cmd::new("git")
        .args(["config", "--get", "user.email"])
        .capture(None)
        .await
        .ok()?;
    let email = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.code == 0 && !email.is_empty()).then_some(email)
}

/// Runs the token command: stdin closed, stderr discarded (it may echo secrets), stdout read up
/// to the limit; it must exit 0 within the timeout and print exactly one line.
async fn run_token_command(argv: &[String]) -> Result<Secret, String> {
    let (program, rest) = argv.split_first().ok_or("the token command is empty")?;
    let named = format!("the coordinator token command `{program}`");
    let (mut child, _) = Cmd::new(program)
        .args(rest)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            let cause = std::error::Error::source(&e).map(ToString::to_string);
            format!("could not start {named}: {}", cause.unwrap_or_default())
        })?;
    let mut stdout = child.stdout.take().expect("stdout was piped");
    let finished = tokio::time::timeout(TOKEN_COMMAND_TIMEOUT, async {
        let mut buf = Vec::new();
        let limit = u64::try_from(TOKEN_MAX_BYTES).unwrap_or(u64::MAX) + 1;
        (&mut stdout).take(limit).read_to_end(&mut buf).await?;
        if buf.len() > TOKEN_MAX_BYTES {
            return Ok((buf, None));
        }
        child.wait().await.map(|status| (buf, Some(status)))
    })
    .await;
    // Dropping the child kills it (kill-on-drop): a command that overran or timed out is gone.
    let (out, status) = match finished {
        Err(_) => {
            return Err(format!(
                "{named} did not finish within {}s",
                TOKEN_COMMAND_TIMEOUT.as_secs()
            ));
        }
        Ok(Err(e)) => return Err(format!("could not read from {named}: {e}")),
        Ok(Ok((_, None))) => {
            return Err(format!(
                "{named} printed more than {} KiB",
                TOKEN_MAX_BYTES / 1024
            ));
        }
        Ok(Ok((out, Some(status)))) => (out, status),
    };
    if !status.success() {
        let code = crabbox_remote::process::exit_code(status);
        return Err(format!("{named} failed with exit code {code}"));
    }
    parse_token(&out).map_err(|problem| format!("{named} {problem}"))
}

/// One line: a trailing newline (and CR) is dropped; anything else around or inside is refused.
fn parse_token(out: &[u8]) -> Result<Secret, &'static str> {
    let text = std::str::from_utf8(out).map_err(|_| "printed something that is not UTF-8")?;
    let text = text.strip_suffix('\n').unwrap_or(text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    if text.is_empty() {
        return Err("printed no token");
    }
    if text.trim() != text || text.contains(['\r', '\n', '\0']) {
        return Err("must print exactly one line: the token");
    }
    Ok(Secret::new(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_one_line() {
        assert_eq!(parse_token(b"tok-1\n").unwrap().expose(), "tok-1");
        assert_eq!(parse_token(b"tok-1\r\n").unwrap().expose(), "tok-1");
        assert_eq!(parse_token(b"tok-1").unwrap().expose(), "tok-1");
        for bad in [&b""[..], b"\n", b"tok\nextra\n", b" tok\n", b"tok\0"] {
            assert!(parse_token(bad).is_err(), "{bad:?}");
        }
    }
}
