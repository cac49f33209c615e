//! Creating a lease on the coordinator: one create-attempt token per create, retried while
//! the answer is uncertain (the coordinator joins or replays, never doubles it), and canceled
//! on the coordinator when the user interrupts it.

use std::time::Duration;

use crabbox_api::ExitStatus;
use crabbox_api::coord::{LeaseRequest, LeaseState};
use crabbox_client::Client;
use crabbox_providers::{AcquireRequest, LeaseRecord};

use super::{UNCERTAIN_TRIES, record_from};
use crate::broker;
use crate::error::{CliError, CliResult};
use crate::interrupt::Interrupt;

/// Creates a lease on the coordinator. Failures keep the coordinator's answer, mapped to
/// the exit-code contract with a hint (cap, provider not configured, unreachable).
///
/// A first Ctrl-C/SIGTERM while the create is in flight (or while a replayed create is still
/// provisioning) abandons it and cancels the create attempt on the coordinator (spec §4.3): the
/// coordinator then releases a lease it already made for this attempt, or deletes the runner
/// when its provider call returns, so nothing is left running until the idle timeout.
pub async fn create_or_cancel(
    client: &Client,
    provider: Option<String>,
    req: &AcquireRequest,
    interrupt: &Interrupt,
) -> CliResult<LeaseRecord> {
    let token = attempt_token();
    tokio::select! {
        // A create that answered in the same instant is still canceled: the user asked to stop,
        // and cancel-create releases a lease already bound to this attempt.
        biased;
        () = interrupt.wait() => Err(cancel_create(client, req, &token).await),
        created = create_attempt(client, provider, req, &token) => created,
    }
}

/// A fresh create-attempt token (`createAttemptID`).
fn attempt_token() -> String {
    format!("cat_{}", broker::random_hex(16))
}

/// Cancels the create attempt `token` for `req` and says so; the error to exit with (130).
async fn cancel_create(client: &Client, req: &AcquireRequest, token: &str) -> CliError {
    let url = client.base_url();
    let id = &req.lease_id;
    let mut attempt = 0;
    let answer = loop {
        attempt += 1;
        match client.cancel_create(id, token).await {
            Err(e) if e.is_uncertain() && attempt < UNCERTAIN_TRIES => {
                tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
            }
            answer => break answer,
        }
    };
    match answer {
        Ok(body) => {
            // The coordinator returns the lease when it had already made one (now released).
            let state = body["lease"]["state"]
                .as_str()
                .map(|s| format!(" state={s}"))
                .unwrap_or_default();
            crate::output::err(format!("canceled lease={id} slug={}{state}", req.slug));
            CliError::msg(
                ExitStatus::Interrupted,
                format!("interrupted; the create of lease {id} was canceled"),
            )
        }
        Err(e) => CliError::new(
            ExitStatus::Interrupted,
            anyhow::Error::new(e).context(format!(
                "interrupted, and could not cancel the create of lease {id} on coordinator {url}"
            )),
        )
        .hint(format!(
            "the lease may still be created; check `crabbox list` and release it with \
             `crabbox stop {id}`"
        )),
    }
}

/// One create attempt token's create, with its retries and the wait for a replay still
/// provisioning.
async fn create_attempt(
    client: &Client,
    provider: Option<String>,
    req: &AcquireRequest,
    token: &str,
) -> CliResult<LeaseRecord> {
    let url = client.base_url();
    let body = LeaseRequest {
        lease_id: Some(req.lease_id.clone()),
        create_attempt_id: Some(token.to_owned()),
        slug: Some(req.slug.clone()),
        provider,
        class: Some(req.class.clone()).filter(|c| !c.is_empty()),
        ttl_seconds: Some(req.ttl_secs as f64),
        idle_timeout_seconds: Some(req.idle_timeout_secs as f64),
        keep: Some(req.keep),
        ssh_public_key: Some(req.public_key.clone()),
        server_type: req.machine.server_type.clone(),
        target: req
            .machine
            .target
            .filter(|t| *t != crabbox_core::machine::TargetOs::Linux)
            .map(|t| t.as_str().to_owned()),
        desktop: req.capabilities.desktop.then_some(true),
        desktop_env: req.capabilities.desktop_env.clone(),
        browser: req.capabilities.browser.then_some(true),
        code: req.capabilities.code.then_some(true),
        extra: machine_selectors(&req.machine),
        ..LeaseRequest::default()
    };
    // An uncertain answer (5xx, a dropped connection) is retried with the same attempt
    // token for up to 90 s: the coordinator joins or replays the create, never doubles it.
    // A coordinator that accepts no connection at all is given a few seconds only: waiting
    // 90 s in silence for a server that is not running helps nobody.
    let started = std::time::Instant::now();
    let (mut attempt, mut unreachable) = (0, 0);
    let lease = loop {
        attempt += 1;
        let e = match client.create_lease(&body).await {
            Ok(lease) => break lease,
            Err(e) if e.is_uncertain() => e,
            Err(e) => {
                return Err(broker::error_at(
                    e,
                    "the coordinator refused the lease",
                    Some(url),
                ));
            }
        };
        if e.never_connected() {
            unreachable += 1;
        } else {
            unreachable = 0;
        }
        let elapsed = started.elapsed();
        if unreachable >= CREATE_UNREACHABLE_TRIES || elapsed >= CREATE_RETRY_WINDOW {
            return Err(broker::error_at(e, "could not create a lease", Some(url)));
        }
        crate::output::warn(format!(
            "{e}; retrying the same create in {}s (attempt {attempt})",
            CREATE_RETRY_PAUSE.as_secs()
        ));
        tokio::time::sleep(CREATE_RETRY_PAUSE).await;
    };
    let mut lease = lease;
    // A replay of a create still provisioning: poll until it is active.
    while lease.state == LeaseState::Provisioning {
        tokio::time::sleep(Duration::from_secs(2)).await;
        lease = client.get_lease(&lease.id).await.map_err(|e| {
            broker::error_at(e, "could not follow the lease being provisioned", Some(url))
        })?;
    }
    if !lease.is_live() {
        return Err(CliError::msg(
            ExitStatus::Failure,
            format!(
                "the coordinator's lease {} is {}",
                lease.id,
                lease.state.as_str()
            ),
        ));
    }
    if let Some(id) = lease
        .extra
        .get("imageID")
        .and_then(serde_json::Value::as_str)
    {
        let field = |key: &str| {
            lease
                .extra
                .get(key)
                .and_then(serde_json::Value::as_str)
                .unwrap_or("-")
                .to_owned()
        };
        crate::output::err(format!(
            "image selected id={id} source={} region={} promoted_at={}",
            field("imageSource"),
            field("imageRegion"),
            field("imagePromotedAt")
        ));
    }
    Ok(record_from(&lease, url))
}

/// How long an uncertain create is retried, and how often.
const CREATE_RETRY_WINDOW: Duration = Duration::from_secs(90);
const CREATE_RETRY_PAUSE: Duration = Duration::from_secs(5);
/// Consecutive creates that could not connect to the coordinator at all before giving up.
const CREATE_UNREACHABLE_TRIES: u32 = 3;

/// `--market` and `--arch` as the create body's `capacity.market` and `architecture`.
fn machine_selectors(
    machine: &crabbox_providers::MachineChoice,
) -> serde_json::Map<String, serde_json::Value> {
    let mut extra = serde_json::Map::new();
    if let Some(market) = machine.market {
        extra.insert(
            "capacity".into(),
            serde_json::json!({ "market": market.as_str() }),
        );
    }
    if let Some(arch) = machine.architecture {
        extra.insert("architecture".into(), arch.as_str().into());
    }
    if let Some(image) = &machine.image {
        extra.insert("awsAMI".into(), image.id.clone().into());
        extra.insert("awsRegion".into(), image.region.clone().into());
    }
    if let Some(host) = &machine.host_id {
        extra.insert("awsMacHostID".into(), host.clone().into());
    }
    extra
}
