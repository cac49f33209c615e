//! One create of the `hetzner` provider: the lease's SSH key, then for each plan the fallback
//! driver gives it, `POST /servers`. Hetzner has no idempotency token, but a server's name is
//! unique in a project and Crabbox derives it from the lease: a create retried after its answer
//! was lost is refused with `uniqueness_error`, and the server of that name is this lease's
//! (its `lease` label says so), so it is taken instead of made twice.

use std::collections::BTreeMap;

use crabbox_providers::cloud::hetzner::errors::classify_create;
use crabbox_providers::cloud::names::provider_key_name;
use crabbox_providers::cloud::{Category, Refusal, TryPlan};
use crabbox_providers::{AcquireRequest, ProviderError};

use crate::api::{self, Action, NewServer, Server, SshKey};
use crate::client::{CallError, Hcloud};

/// The label a server's location is kept in.
pub const LOCATION_LABEL: &str = "hetzner_location";
/// The label the id of the lease's SSH key is kept in, so a release deletes it by id.
pub const KEY_LABEL: &str = "provider_key_id";

/// A server `POST /servers` made, with the action creating it (`None` when the server was
/// found by name after a lost answer: its state is read from the server itself).
#[derive(Debug)]
pub struct Launched {
    pub server: Server,
    pub action: Option<Action>,
}

/// The lease's SSH key `crabbox-cbx-<12 hex>`: uploaded, or (a retried create whose answer
/// was lost) the one of that name with the same public key.
pub async fn ensure_key(
    api: &Hcloud,
    req: &AcquireRequest,
    labels: &BTreeMap<String, String>,
) -> Result<SshKey, ProviderError> {
    let name =
        provider_key_name(&req.lease_id).map_err(|e| ProviderError::InvalidSpec(e.to_string()))?;
    let key_labels: BTreeMap<String, String> = ["crabbox", "created_by", "provider", "lease"]
        .iter()
        .filter_map(|k| Some(((*k).to_owned(), labels.get(*k)?.clone())))
        .collect();
    match api::create_key(api, &name, req.public_key.trim(), &key_labels).await {
        Ok(key) => Ok(key),
        Err(e) if e.code() == "uniqueness_error" => {
            let existing = api::key_named(api, &name).await?;
            match existing {
                Some(key) if same_key(&key.public_key, &req.public_key) => Ok(key),
                Some(_) => Err(ProviderError::InvalidSpec(format!(
                    "Hetzner already has an SSH key named {name} with another public key; \
                     delete it (`hcloud ssh-key delete {name}`) and try again"
                ))),
                None => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether two OpenSSH public key lines hold the same key (the comment may differ).
fn same_key(a: &str, b: &str) -> bool {
    a.split_whitespace()
        .take(2)
        .eq(b.split_whitespace().take(2))
}

/// The state of one create.
pub(crate) struct Create<'a> {
    pub api: &'a Hcloud,
    pub lease_id: &'a str,
    pub name: String,
    pub image: &'a str,
    pub key: SshKey,
    pub user_data: String,
    pub labels: BTreeMap<String, String>,
}

impl Create<'_> {
    /// One plan: `POST /servers` with the plan's type and location.
    pub async fn try_plan(&self, plan: TryPlan) -> Result<Launched, Refusal> {
        let labels = self.labels_for(&plan);
        let new = NewServer {
            name: &self.name,
            server_type: &plan.server_type,
            image: self.image,
            location: &plan.region,
            ssh_key: self.key.id,
            user_data: &self.user_data,
            labels: &labels,
        };
        match api::create_server(self.api, &new).await {
            Ok((server, action)) => Ok(Launched {
                server,
                action: Some(action),
            }),
            Err(e) if e.code() == "uniqueness_error" => self.made_before(e).await,
            Err(CallError::Api {
                status,
                code,
                message,
                ..
            }) => Err(classify_create(status, &code, &message)),
            Err(lost @ CallError::NoAnswer { .. }) => {
                Err(Refusal::new(Category::Transient, "", lost.into()))
            }
        }
    }

    /// The labels of the server a plan makes.
    pub fn labels_for(&self, plan: &TryPlan) -> BTreeMap<String, String> {
        let mut labels = self.labels.clone();
        labels.insert("server_type".into(), plan.server_type.clone());
        labels.insert(LOCATION_LABEL.into(), plan.region.clone());
        labels.insert(KEY_LABEL.into(), self.key.id.to_string());
        labels
    }

    /// The server this lease's name already has: the one an earlier try of this create made
    /// before its answer was lost. A server of that name that is not this lease's is a
    /// conflict the user must resolve.
    async fn made_before(&self, refused: CallError) -> Result<Launched, Refusal> {
        let fatal = |e: ProviderError| Refusal::new(Category::Fatal, "uniqueness_error", e);
        let found = api::servers(self.api, &[("name", self.name.as_str())])
            .await
            .map_err(|e| fatal(e.into()))?;
        match found.into_iter().next() {
            Some(server)
                if server.labels.get("lease").map(String::as_str) == Some(self.lease_id) =>
            {
                tracing::info!(
                    server = server.id,
                    "a create whose answer was lost made this lease's server; using it"
                );
                Ok(Launched {
                    server,
                    action: None,
                })
            }
            _ => Err(fatal(ProviderError::InvalidSpec(format!(
                "{}; a server named {} belongs to something else",
                ProviderError::from(refused).message(),
                self.name
            )))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_by_type_and_blob() {
        assert!(same_key(
            "ssh-ed25519 AAAA1 a@b",
            "ssh-ed25519 AAAA1 other\n"
        ));
        assert!(!same_key("ssh-ed25519 AAAA1", "ssh-ed25519 AAAA2"));
    }
}
