//! The configured coordinator (`coordinator` / `broker.url`): its HTTP client with the
//! configured credentials and identity headers, the admin client, and the mapping of its
//! failures to the exit-code contract with hints. Leasing through it is `crate::lease`.

use crabbox_api::ExitStatus;
use crabbox_client::{Client, ClientError};

use crate::error::{CliError, CliResult};
use crate::settings::Settings;

/// The configured coordinator client, if any (`broker.mode: registered` is direct mode). It
/// sends the configured token (or the token command's) and the identity headers.
pub fn client(settings: &Settings) -> CliResult<Option<Client>> {
    let coord = &settings.config().coordinator;
    let Some(url) = coord.url.clone().filter(|u| !u.trim().is_empty()) else {
        return Ok(None);
    };
    let client = Client::new(&url, None).map_err(|e| {
        CliError::new(ExitStatus::Usage, e).hint(
            "set coordinator: https://… in ~/.config/crabbox/config.yaml or CRABBOX_COORDINATOR",
        )
    })?;
    let credentials = crate::credentials::CliCredentials::configured(coord);
    Ok(Some(client.with_credentials(credentials)))
}

/// The coordinator client, or exit 2 saying one is needed.
pub fn require(settings: &Settings, what: &str) -> CliResult<Client> {
    client(settings)?.ok_or_else(|| {
        CliError::msg(
            ExitStatus::Usage,
            format!("{what} requires a configured coordinator"),
        )
        .hint("run `crabbox login --url https://…` or set CRABBOX_COORDINATOR")
    })
}

/// The admin client (`broker.adminToken` / `CRABBOX_COORDINATOR_ADMIN_TOKEN`), with the
/// identity headers (an admin token acts for the owner they name). The token command is not
/// used for admin calls.
pub fn require_admin(settings: &Settings) -> CliResult<Client> {
    let base = require(settings, "an admin command")?;
    let Some(token) = settings.config().coordinator.admin_token.as_ref() else {
        return Err(CliError::msg(
            ExitStatus::Usage,
            "admin command requires broker.adminToken or CRABBOX_COORDINATOR_ADMIN_TOKEN",
        ));
    };
    let credentials = crate::credentials::CliCredentials::token(Some(token.clone()));
    Ok(base.with_credentials(credentials))
}

/// Maps a coordinator failure to the exit-code contract with a hint.
pub fn cli_error(e: ClientError, doing: &str) -> CliError {
    error_at(e, doing, None)
}

/// [`cli_error`] for a known coordinator: hints name its URL.
pub fn error_at(e: ClientError, doing: &str, url: Option<&str>) -> CliError {
    let at = url.unwrap_or("<coordinator>");
    let status = match e.status() {
        Some(401 | 403) => ExitStatus::Auth,
        Some(404) => ExitStatus::NotFound,
        Some(400 | 409 | 424) => ExitStatus::Usage,
        _ => ExitStatus::Failure,
    };
    let hint = match (e.status(), e.code()) {
        (Some(401), _) => Some(format!(
            "run `crabbox login --url {at}` (or check CRABBOX_COORDINATOR_TOKEN)"
        )),
        (Some(403), _) => Some(
            "this login may not change that lease; its owner can share it with manage access"
                .to_owned(),
        ),
        (Some(404), _) => Some(format!(
            "`crabbox list` shows your leases on {at}; other users' leases are not visible to you"
        )),
        (Some(429), _) | (_, Some("cost_limit_exceeded")) => Some(
            "release a lease (`crabbox list`, `crabbox stop <id>`) or ask an admin to raise the \
             cap; `crabbox usage` shows the limits"
                .to_owned(),
        ),
        (_, Some("provider_not_configured")) => Some(
            "pick a provider this coordinator offers with --provider, or ask its admin to \
             configure this one"
                .to_owned(),
        ),
        (None, _) if matches!(e, ClientError::Transport { .. }) => Some(format!(
            "is the coordinator at {at} running and reachable? `crabbox whoami` or \
             `crabbox doctor` checks it"
        )),
        _ => None,
    };
    let mut err = CliError::new(status, anyhow::Error::new(e).context(doing.to_owned()));
    if let Some(h) = hint {
        err = err.hint(h);
    }
    err
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the OS random source is unavailable");
    hex::encode(buf)
}
