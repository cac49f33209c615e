//! A stateful fake of the Hetzner Cloud API, served over real HTTP on 127.0.0.1, for the
//! Hetzner provider's tests. Its base URL ends in `/v1`, as `HCLOUD_ENDPOINT` takes it.
//!
//! It follows Hetzner's public API reference (<https://docs.hetzner.cloud/reference/cloud>):
//! the general sections "Authentication", "Errors", "Rate Limiting", "Pagination", "Sorting",
//! "Label Selector" and "Actions", and the operations "SSH Keys" (list, create, get, update,
//! delete), "Servers" (list, create, get, update, delete), "Server Actions" (get an action of
//! a server, create image), "Actions" (get, get multiple), "Images" (list, get, update,
//! delete), "Server Types" and "Locations" (list, get). Paths, status codes and JSON shapes are
//! the reference's; field names and error details were checked against its published OpenAPI
//! document and hcloud-go's `schema` package.
//!
//! - **Auth**: `Authorization: Bearer <token>` with [`FakeHetzner::TOKEN`]; anything else is
//!   `401 unauthorized` ("unable to authenticate").
//! - **Errors** all have Hetzner's shape, `{"error": {"code", "message", "details"}}`:
//!   `400 invalid_input` (with `details.fields: [{name, messages}]`), `400 json_error`,
//!   `401 unauthorized`, `403 forbidden`, `404 not_found`, `409 uniqueness_error`,
//!   `429 rate_limit_exceeded`; tests inject any other (see [`Fault`]).
//! - **State**: SSH keys (fingerprint = MD5 of the key blob), servers (`initializing` until
//!   their `create_server` action is done, with a unique public-looking IPv4 of their
//!   location's range), snapshots, and actions that finish after being polled (see
//!   [`FakeHetzner::set_action_polls`]). Server types (with per-location prices), locations
//!   and Ubuntu system images are a fixed catalogue.
//! - **Rate limiting**: `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` on every
//!   answer; 3600 requests per hour, refilled one request per second.
//! - **Faults**: refusals with any status and code, and lost replies (the request is carried
//!   out, the connection closes without an answer), matched by route and body field.
//!
//! Tests read what was asked ([`FakeHetzner::calls`], [`FakeHetzner::count`] by route, such as
//! `"POST /servers"` or `"GET /servers/{id}"`) and what exists ([`FakeHetzner::servers`]), and
//! can change the world behind the client's back ([`FakeHetzner::remove_server`]).
//! [`FakeHetzner::cloud`] hands the servers to the boot emulator, which boots the running ones.
//!
//! Not emulated: networks, volumes, firewalls, placement groups, primary IPs (a request naming
//! any is `404 not_found`), server power actions, and locking of servers by running actions.
//! The fake runs on a runtime of its own, so a test may block its thread while it serves.

mod api_error;
mod catalog;
mod images;
mod labels;
mod listing;
mod md5;
mod rate_limit;
mod serve;
mod servers;
mod ssh_keys;
mod state;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;

use crate::boot_emulator::{Cloud, CloudFuture, Machine};
use api_error::{Answer, ApiError};
use state::State;

/// What a fault does to a matching request.
#[derive(Debug, Clone, PartialEq)]
enum Effect {
    Refuse(ApiError),
    DropReply,
}

/// A fault for the next `times` requests of a route (with a body field of a given value, when
/// set). Faults apply after authentication and rate limiting, in the order injected.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    route: String,
    field: Option<(String, String)>,
    times: usize,
    effect: Effect,
}

impl Fault {
    /// Answer the next request of `route` (`"POST /servers"`) with `status` and Hetzner's error
    /// body; the request is not carried out. Statuses of the reference's codes:
    /// `resource_limit_exceeded` 403, `resource_unavailable` 412 ("error during placement"),
    /// `rate_limit_exceeded` 429, `server_error` 500, `unavailable`/`maintenance` 503,
    /// `timeout` 504; the reference gives none for `placement_error` (412 is a fair guess).
    pub fn refuse(route: &str, status: u16, code: &str, message: &str) -> Self {
        Self::new(route, Effect::Refuse(ApiError::new(status, code, message)))
    }

    /// Carry out the next request of `route`, then close the connection without answering.
    pub fn drop_reply(route: &str) -> Self {
        Self::new(route, Effect::DropReply)
    }

    fn new(route: &str, effect: Effect) -> Self {
        Self {
            route: route.to_owned(),
            field: None,
            times: 1,
            effect,
        }
    }

    /// Only requests whose JSON body has `field` (dots for nesting: `labels.pool`) equal to
    /// `value` (numbers and booleans as written in JSON).
    #[must_use]
    pub fn when(mut self, field: &str, value: &str) -> Self {
        self.field = Some((field.to_owned(), value.to_owned()));
        self
    }

    /// The next `n` matching requests instead of one.
    #[must_use]
    pub fn times(mut self, n: usize) -> Self {
        self.times = n;
        self
    }

    fn matches(&self, route: &str, body: &Value) -> bool {
        self.times > 0
            && self.route == route
            && self.field.as_ref().is_none_or(|(path, value)| {
                let found = path
                    .split('.')
                    .fold(body, |v, part| v.get(part).unwrap_or(&Value::Null));
                match found {
                    Value::String(s) => s == value,
                    Value::Null => false,
                    other => value.parse::<Value>().is_ok_and(|v| v == *other),
                }
            })
    }
}

/// One request that reached the fake, whatever became of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub method: String,
    /// The path as sent (`/v1/servers/42`).
    pub path: String,
    /// The route it matched (`GET /servers/{id}`), or `METHOD <path without /v1>` if none.
    pub route: String,
    /// The query parameters, decoded, in the order sent.
    pub query: Vec<(String, String)>,
    /// The JSON body (`null` when empty; a string when it was not JSON).
    pub body: Value,
}

type Shared = Arc<Mutex<State>>;

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.lock().expect("fake Hetzner state")
}

/// The running fake. Dropping it stops it.
#[derive(Debug)]
pub struct FakeHetzner {
    addr: SocketAddr,
    shared: Shared,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for FakeHetzner {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl FakeHetzner {
    /// The one API token the fake accepts.
    pub const TOKEN: &'static str = "hcloud-fake-token-0123456789abcdefghijklmnopqrstuvwxyz";

    /// Starts the fake on a free 127.0.0.1 port.
    pub fn start() -> Self {
        let shared: Shared = Arc::new(Mutex::new(State::new()));
        let runtime = crate::background_runtime("fake-hetzner");
        let (listener, addr) = crate::loopback_listener("Hetzner fake");
        let served = Arc::clone(&shared);
        crate::serve_http(&runtime, listener, move |req| {
            serve::handle(Arc::clone(&served), req)
        });
        Self {
            addr,
            shared,
            runtime: Some(runtime),
        }
    }

    /// `http://127.0.0.1:<port>/v1`, for `HCLOUD_ENDPOINT`.
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.shared)
    }

    /// Actions are done on their `n`-th read (1 unless set); 0 makes them done as they start.
    pub fn set_action_polls(&self, n: u32) {
        self.state().action_polls = n;
    }

    /// A budget of `limit` requests per hour with `remaining` left now, refilling one request
    /// every `3600 s / limit`.
    pub fn set_rate_limit(&self, limit: u32, remaining: u32) {
        self.state().budget.set(limit, remaining);
    }

    /// Refills one request every `every` instead (after [`FakeHetzner::set_rate_limit`]), so a
    /// test can see a spent budget come back.
    pub fn set_rate_limit_refill(&self, every: Duration) {
        self.state().budget.set_refill_every(every);
    }

    /// Adds a fault; the first injected fault that matches a request applies.
    pub fn inject(&self, fault: Fault) {
        self.state().faults.push(fault);
    }

    /// Whether every injected fault has been used up.
    pub fn faults_spent(&self) -> bool {
        self.state().faults.iter().all(|f| f.times == 0)
    }

    /// Requests of `route` (`"POST /servers"`, `"GET /servers/{id}"`), refused, dropped and
    /// unauthenticated ones included.
    pub fn count(&self, route: &str) -> usize {
        self.state()
            .calls
            .iter()
            .filter(|c| c.route == route)
            .count()
    }

    /// Every request so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// Forgets the requests so far (to count one phase of a test alone).
    pub fn reset_calls(&self) {
        self.state().calls.clear();
    }

    /// The servers, as `GET /servers` shows them (oldest first).
    pub fn servers(&self) -> Vec<Value> {
        let state = self.state();
        state
            .servers
            .values()
            .map(|s| servers::json(&state, s))
            .collect()
    }

    /// One server as `GET /servers/{id}` shows it.
    pub fn server(&self, id: u64) -> Option<Value> {
        let state = self.state();
        state.servers.get(&id).map(|s| servers::json(&state, s))
    }

    /// The `user_data` server `id` was created with.
    pub fn user_data(&self, id: u64) -> Option<String> {
        self.state().servers.get(&id)?.user_data.clone()
    }

    /// The SSH keys, as `GET /ssh_keys` shows them.
    pub fn ssh_keys(&self) -> Vec<Value> {
        self.state()
            .ssh_keys
            .values()
            .map(ssh_keys::SshKey::json)
            .collect()
    }

    /// The images, as `GET /images` shows them: the system images, then the snapshots.
    pub fn images(&self) -> Vec<Value> {
        self.state()
            .images
            .values()
            .map(images::Image::json)
            .collect()
    }

    /// Deletes server `id` behind the client's back (no action, no call); false if there was
    /// none.
    pub fn remove_server(&self, id: u64) -> bool {
        self.state().servers.remove(&id).is_some()
    }

    /// Sets server `id`'s status (`off`, `stopping`, `unknown`…) behind the client's back;
    /// false if there is no such server.
    pub fn set_server_status(&self, id: u64, status: &str) -> bool {
        let mut state = self.state();
        let Some(server) = state.servers.get_mut(&id) else {
            return false;
        };
        status.clone_into(&mut server.status);
        true
    }

    /// The servers as a [`Cloud`] for the boot emulator: read straight from the fake's state,
    /// never over HTTP, so they are not counted as calls.
    pub fn cloud(&self) -> HetznerCloud {
        HetznerCloud {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The fake's servers as the boot emulator sees them: id (as text), location, running or not,
/// public IPv4, and the `user_data` they were created with.
#[derive(Debug, Clone)]
pub struct HetznerCloud {
    shared: Shared,
}

impl Cloud for HetznerCloud {
    fn machines(&self) -> CloudFuture<'_, Result<Vec<Machine>, String>> {
        let machines = lock(&self.shared)
            .servers
            .values()
            .map(|s| Machine {
                id: s.id.to_string(),
                region: s.location.name.to_owned(),
                running: s.status == "running",
                public_ip: s.ipv4.map(|(_, ip)| ip),
                private_ip: None::<Ipv4Addr>,
            })
            .collect();
        Box::pin(std::future::ready(Ok(machines)))
    }

    fn user_data<'a>(&'a self, machine: &'a Machine) -> CloudFuture<'a, Result<String, String>> {
        let state = lock(&self.shared);
        let server = machine
            .id
            .parse()
            .ok()
            .and_then(|id| state.servers.get(&id));
        let user_data = match server {
            None => Err(format!("server {} is gone", machine.id)),
            Some(s) => s
                .user_data
                .clone()
                .ok_or_else(|| format!("server {} was created without user_data", machine.id)),
        };
        Box::pin(std::future::ready(user_data))
    }
}
