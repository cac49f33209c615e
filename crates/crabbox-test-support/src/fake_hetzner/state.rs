//! The fake's project: its servers, SSH keys, images and actions, the test's knobs, and the
//! calls seen. Handlers run with it locked, one request at a time.
//!
//! Actions follow the reference's "Actions" section: they start `running` at progress 0 and end
//! `success` at 100 with `finished` set. Here time does not move them, reading them does: the
//! N-th read (`GET /actions/{id}`, `GET /actions?id=`, `GET /servers/{id}/actions/{action_id}`)
//! sees the action done, N being [`super::FakeHetzner::set_action_polls`] (1 unless set; 0 makes
//! actions finish as they start); a read of a server counts as a read of the actions bringing
//! it up. What the action does to its resources (a server starts
//! running, a snapshot becomes available) happens when it finishes.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde_json::{Value, json};

use super::images::Image;
use super::listing::Query;
use super::rate_limit::Budget;
use super::servers::Server;
use super::ssh_keys::SshKey;
use super::{Answer, ApiError, Call, Fault};

#[derive(Debug)]
pub(super) struct State {
    pub servers: BTreeMap<u64, Server>,
    pub ssh_keys: BTreeMap<u64, SshKey>,
    pub images: BTreeMap<u64, Image>,
    pub actions: BTreeMap<u64, Action>,
    /// Reads after which an action is done.
    pub action_polls: u32,
    pub budget: Budget,
    pub calls: Vec<Call>,
    pub faults: Vec<Fault>,
    next_id: BTreeMap<&'static str, u64>,
    /// Public addresses handed out so far; none is ever handed out twice.
    hosts: u32,
}

impl State {
    pub fn new() -> Self {
        Self {
            servers: BTreeMap::new(),
            ssh_keys: BTreeMap::new(),
            images: super::images::system_images(),
            actions: BTreeMap::new(),
            action_polls: 1,
            budget: Budget::new(3600),
            calls: Vec::new(),
            faults: Vec::new(),
            next_id: BTreeMap::new(),
            hosts: 0,
        }
    }

    /// A new id for a resource of `kind`; each kind counts from its own, Hetzner-sized base.
    pub fn new_id(&mut self, kind: &'static str) -> u64 {
        let base = match kind {
            "server" => 62_000_000,
            "ssh_key" => 21_000_000,
            "image" => 310_000_000,
            "primary_ip" => 84_000_000,
            _ => 1_400_000_000,
        };
        let next = self.next_id.entry(kind).or_insert(base);
        *next += 1;
        *next
    }

    /// A fresh public IPv4 address in `prefix`/16, never `.0` or `.255`.
    pub fn new_ipv4(&mut self, prefix: [u8; 2]) -> Ipv4Addr {
        self.hosts += 1;
        let [third, fourth] = [(self.hosts / 254) % 256, self.hosts % 254 + 1].map(|b| b as u8);
        Ipv4Addr::new(prefix[0], prefix[1], third, fourth)
    }

    /// Starts an action on `resources` that does `then` when it finishes.
    pub fn start_action(
        &mut self,
        command: &'static str,
        resources: Vec<(u64, &'static str)>,
        then: Then,
    ) -> u64 {
        let id = self.new_id("action");
        self.actions.insert(
            id,
            Action {
                id,
                command,
                status: "running",
                progress: 0,
                started: now(),
                finished: None,
                resources,
                reads: 0,
                then,
            },
        );
        if self.action_polls == 0 {
            self.finish(id);
        }
        id
    }

    /// The action as a client reading it now sees it (the read counts).
    pub fn read_action(&mut self, id: u64) -> Option<Value> {
        let polls = self.action_polls;
        let action = self.actions.get_mut(&id)?;
        if action.status == "running" {
            action.reads += 1;
            if action.reads >= polls {
                self.finish(id);
            } else {
                action.progress = 100 * action.reads / polls;
            }
        }
        self.actions.get(&id).map(Action::json)
    }

    /// Counts a read of the server as a read of each running action that brings it up.
    pub fn observe_server(&mut self, server: u64) {
        let running: Vec<u64> = self
            .actions
            .values()
            .filter(|a| a.status == "running")
            .filter(|a| matches!(a.then, Then::ServerUp { server: s, .. } if s == server))
            .map(|a| a.id)
            .collect();
        for id in running {
            self.read_action(id);
        }
    }

    fn finish(&mut self, id: u64) {
        let Some(action) = self.actions.get_mut(&id) else {
            return;
        };
        action.status = "success";
        action.progress = 100;
        action.finished = Some(now());
        match action.then {
            Then::Nothing => {}
            Then::ServerUp { server, running } => {
                if let Some(s) = self.servers.get_mut(&server)
                    && s.status == "initializing"
                {
                    if running { "running" } else { "off" }.clone_into(&mut s.status);
                }
            }
            Then::ImageReady(image) => {
                if let Some(i) = self.images.get_mut(&image) {
                    i.ready();
                }
            }
        }
    }
}

/// What an action does when it finishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Then {
    Nothing,
    /// The server leaves `initializing`: `running`, or `off` when it was not to be started.
    ServerUp {
        server: u64,
        running: bool,
    },
    /// The snapshot becomes `available`.
    ImageReady(u64),
}

#[derive(Debug)]
pub(super) struct Action {
    id: u64,
    command: &'static str,
    status: &'static str,
    progress: u32,
    started: String,
    finished: Option<String>,
    resources: Vec<(u64, &'static str)>,
    reads: u32,
    then: Then,
}

impl Action {
    pub fn json(&self) -> Value {
        let resources: Vec<Value> = self
            .resources
            .iter()
            .map(|(id, kind)| json!({"id": id, "type": kind}))
            .collect();
        json!({
            "id": self.id,
            "command": self.command,
            "status": self.status,
            "progress": self.progress,
            "started": self.started,
            "finished": self.finished,
            "resources": resources,
            "error": null,
        })
    }

    pub fn concerns(&self, id: u64, kind: &'static str) -> bool {
        self.resources.contains(&(id, kind))
    }
}

/// `GET /actions/{id}`.
pub(super) fn get_action(state: &mut State, id: u64) -> Answer {
    let action = state
        .read_action(id)
        .ok_or_else(|| ApiError::not_found("action"))?;
    Ok((200, json!({ "action": action })))
}

/// `GET /actions?id=…`: the actions asked for (the reference removed listing all of them).
pub(super) fn list_actions(state: &mut State, query: Query<'_>) -> Answer {
    let mut actions = Vec::new();
    for id in query.all("id") {
        let id: u64 = id
            .parse()
            .map_err(|_| ApiError::invalid_field("id", "must be an integer"))?;
        actions.extend(state.read_action(id));
    }
    if actions.is_empty() && query.all("id").is_empty() {
        return Err(ApiError::invalid_field("id", "at least one id is required"));
    }
    super::listing::page(actions, "actions", query)
}

/// Now, as Hetzner writes times (RFC 3339, whole seconds, UTC).
pub(super) fn now() -> String {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(since_epoch.as_secs())
}

/// `secs` after the UNIX epoch as `YYYY-MM-DDTHH:MM:SSZ` (days to a civil date as in Howard
/// Hinnant's `civil_from_days`, for dates after 1970).
fn rfc3339(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let z = days + 719_468;
    let (era, doe) = (z / 146_097, z % 146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn times_are_rfc_3339_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_454_197_800), "2016-01-30T23:50:00Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }
}
