//! The parts of Hetzner Cloud's objects Crabbox reads (API reference: Servers, Actions, SSH
//! Keys, Server Types), and the calls it makes, each named by its method and path.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crabbox_providers::ProviderError;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::client::{CallError, Hcloud};

/// Every call the provider makes, as `METHOD /path` with the API reference's placeholders.
/// Hetzner tokens are per project and either read-only or read-write, with no finer grain:
/// `admin providers policy --provider hetzner` lists these as what a read-write token is
/// used for, and the integration tests check every call the fake sees against this list.
pub const CALLS: &[&str] = &[
    "GET /servers",
    "POST /servers",
    "GET /servers/{id}",
    "PUT /servers/{id}",
    "DELETE /servers/{id}",
    "GET /actions/{id}",
    "GET /ssh_keys",
    "POST /ssh_keys",
    "DELETE /ssh_keys/{id}",
    "GET /server_types",
];

#[derive(Debug, Clone, Deserialize)]
pub struct Server {
    pub id: u64,
    pub name: String,
    /// `initializing`, `starting`, `running`, `stopping`, `off`, `deleting`, …
    pub status: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub public_net: PublicNet,
    #[serde(default)]
    pub server_type: Named,
    #[serde(default)]
    pub location: Option<Named>,
    #[serde(default)]
    pub datacenter: Option<Datacenter>,
}

impl Server {
    pub fn ipv4(&self) -> Option<&str> {
        self.public_net
            .ipv4
            .as_ref()
            .map(|v4| v4.ip.as_str())
            .filter(|ip| !ip.is_empty())
    }

    /// The location's name (`fsn1`), from `location` or the older `datacenter.location`.
    pub fn location(&self) -> String {
        self.location
            .as_ref()
            .or(self.datacenter.as_ref().map(|d| &d.location))
            .map(|l| l.name.clone())
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PublicNet {
    #[serde(default)]
    pub ipv4: Option<Ipv4>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Ipv4 {
    #[serde(default)]
    pub ip: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Named {
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Datacenter {
    #[serde(default)]
    pub location: Named,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Action {
    pub id: u64,
    /// `running`, `success` or `error`.
    pub status: String,
    #[serde(default)]
    pub error: Option<ActionError>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ActionError {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SshKey {
    pub id: u64,
    pub name: String,
    pub public_key: String,
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, value: &Value) -> Result<T, CallError> {
    serde_json::from_value(value.clone()).map_err(|e| CallError::Api {
        what: what.to_owned(),
        status: 200,
        code: "invalid_answer".into(),
        message: format!("unexpected answer: {e}"),
    })
}

/// `POST /ssh_keys`.
pub async fn create_key(
    api: &Hcloud,
    name: &str,
    public_key: &str,
    labels: &BTreeMap<String, String>,
) -> Result<SshKey, CallError> {
    let body = json!({"name": name, "public_key": public_key, "labels": labels});
    let answer = api.post("/ssh_keys", &body).await?;
    parse("POST /ssh_keys", &answer["ssh_key"])
}

/// `GET /ssh_keys?name=`.
pub async fn key_named(api: &Hcloud, name: &str) -> Result<Option<SshKey>, CallError> {
    let answer = api.get("/ssh_keys", &[("name", name)]).await?;
    let keys: Vec<SshKey> = parse("GET /ssh_keys", &answer["ssh_keys"])?;
    Ok(keys.into_iter().next())
}

/// `DELETE /ssh_keys/{id}`; a key that is already gone is fine.
pub async fn delete_key(api: &Hcloud, id: u64) -> Result<(), CallError> {
    match api.delete(&format!("/ssh_keys/{id}")).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

/// What `POST /servers` creates.
#[derive(Debug, Clone)]
pub struct NewServer<'a> {
    pub name: &'a str,
    pub server_type: &'a str,
    pub image: &'a str,
    pub location: &'a str,
    pub ssh_key: u64,
    pub user_data: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

/// `POST /servers`: the server and the action that creates it.
pub async fn create_server(
    api: &Hcloud,
    new: &NewServer<'_>,
) -> Result<(Server, Action), CallError> {
    // A snapshot is named by its numeric id, a system image by its name.
    let image = new
        .image
        .parse::<u64>()
        .map_or_else(|_| json!(new.image), |id| json!(id));
    let body = json!({
        "name": new.name,
        "server_type": new.server_type,
        "image": image,
        "location": new.location,
        "ssh_keys": [new.ssh_key],
        "user_data": new.user_data,
        "labels": new.labels,
        "start_after_create": true,
        "public_net": {"enable_ipv4": true, "enable_ipv6": false},
    });
    let answer = api.post("/servers", &body).await?;
    Ok((
        parse("POST /servers", &answer["server"])?,
        parse("POST /servers", &answer["action"])?,
    ))
}

/// `GET /servers/{id}`; `None` when it does not exist.
pub async fn server(api: &Hcloud, id: u64) -> Result<Option<Server>, CallError> {
    match api.get(&format!("/servers/{id}"), &[]).await {
        Ok(answer) => Ok(Some(parse("GET /servers/{id}", &answer["server"])?)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// `GET /servers` with a label selector (or a name), every page.
pub async fn servers(api: &Hcloud, query: &[(&str, &str)]) -> Result<Vec<Server>, CallError> {
    let items = api.list("/servers", query, "servers").await?;
    items
        .iter()
        .map(|item| parse("GET /servers", item))
        .collect()
}

/// `PUT /servers/{id}` with a whole new label set (Hetzner replaces labels).
pub async fn set_labels(
    api: &Hcloud,
    id: u64,
    labels: &BTreeMap<String, String>,
) -> Result<(), CallError> {
    api.put(&format!("/servers/{id}"), &json!({"labels": labels}))
        .await
        .map(drop)
}

/// `DELETE /servers/{id}`; a server that is already gone is fine.
pub async fn delete_server(api: &Hcloud, id: u64) -> Result<(), CallError> {
    match api.delete(&format!("/servers/{id}")).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Polls `GET /actions/{id}` until it succeeds or fails, or `limit` passes: at once, then
/// every second (a server create takes 10–30 s). A call that fails keeps its own kind (a
/// refused token stays an auth error); an action that fails or outlives `limit` is transient.
pub async fn wait_for_action(
    api: &Hcloud,
    action: Action,
    limit: Duration,
) -> Result<(), ProviderError> {
    let deadline = Instant::now() + limit;
    let mut current = action;
    loop {
        match current.status.as_str() {
            "success" => return Ok(()),
            "error" => {
                let (code, message) = current
                    .error
                    .map_or((String::new(), "failed".to_owned()), |e| {
                        (e.code, e.message)
                    });
                return Err(ProviderError::Transient(format!(
                    "Hetzner action {} failed ({code}): {message}",
                    current.id
                )));
            }
            _ => {}
        }
        if Instant::now() >= deadline {
            return Err(ProviderError::Transient(format!(
                "Hetzner action {} still running after {limit:?}",
                current.id
            )));
        }
        let answer = api.get(&format!("/actions/{}", current.id), &[]).await?;
        let next: Action = parse("GET /actions/{id}", &answer["action"])?;
        if next.status == "running" {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        current = next;
    }
}

/// The hourly gross price in EUR of `server_type` in `location` (`GET /server_types?name=`),
/// else of its first location.
pub async fn hourly_eur(api: &Hcloud, server_type: &str, location: &str) -> Option<f64> {
    let answer = api
        .get("/server_types", &[("name", server_type)])
        .await
        .ok()?;
    let prices = answer["server_types"][0]["prices"].as_array()?;
    let price = prices
        .iter()
        .find(|p| p["location"] == location)
        .or_else(|| prices.first())?;
    let hourly = &price["price_hourly"];
    hourly["gross"]
        .as_str()
        .or_else(|| hourly["net"].as_str())?
        .parse::<f64>()
        .ok()
        .filter(|p| p.is_finite() && *p >= 0.0)
}
