//! Who Crabbox is to Azure: a service principal's client secret when `AZURE_TENANT_ID`,
//! `AZURE_CLIENT_ID` and `AZURE_CLIENT_SECRET` are set (the authority from
//! `AZURE_AUTHORITY_HOST`, for sovereign clouds and the tests), else the developer tools
//! (`az login`, `azd auth login`); each from `azure_identity`, on our [`Transport`].
//! [`Credential::arm_token`] is the bearer token of every ARM call.

use std::sync::Arc;

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{ClientOptions, ExponentialRetryOptions, RetryOptions};
// `time`'s duration, which azure_core's retry options take.
use azure_core::time::Duration;
use azure_identity::{
    ClientSecretCredential, ClientSecretCredentialOptions, DeveloperToolsCredential,
};
use crabbox_providers::ProviderError;

use crate::transport::Transport;

/// The ARM scope tokens are asked for.
pub const ARM_SCOPE: &str = "https://management.azure.com/.default";

/// The variables of a service principal, in the order the hint names them.
pub const PRINCIPAL_VARS: &[&str] = &["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"];

#[derive(Debug, Clone)]
pub struct Credential {
    inner: Arc<dyn TokenCredential>,
    /// Which credential it is, for `admin providers identity` and errors.
    pub kind: &'static str,
}

impl Credential {
    /// The service principal of `env` when all its variables are set, else the developer
    /// tools' sign-in.
    pub fn from_env(
        env: impl Fn(&str) -> Option<String>,
        transport: &Transport,
    ) -> Result<Self, ProviderError> {
        let value = |name: &str| {
            env(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        // `AZURE_AUTHORITY_HOST` as the identity crate reads it, but from `env`: a coordinator
        // passes its own environment, and tests theirs.
        let cloud = value("AZURE_AUTHORITY_HOST").map(|authority_host| {
            let mut custom = CustomConfiguration::default();
            custom.authority_host = authority_host;
            Arc::new(CloudConfiguration::from(custom))
        });
        // A token request that fails is tried twice more within ~10 s, not azure_core's
        // default of a minute and more: a wrong CA or a dead network should say so soon.
        let retry = RetryOptions::exponential(ExponentialRetryOptions {
            initial_delay: Duration::milliseconds(500),
            max_retries: 2,
            max_total_elapsed: Duration::seconds(10),
            max_delay: Duration::seconds(4),
        });
        let options = || ClientOptions {
            transport: Some(transport.for_azure_core()),
            cloud: cloud.clone(),
            retry: retry.clone(),
            ..ClientOptions::default()
        };
        let bad = |e: azure_core::Error| {
            ProviderError::Auth(format!("Azure credentials: {e}; {}", hint()))
        };
        if let (Some(tenant), Some(client), Some(secret)) = (
            value("AZURE_TENANT_ID"),
            value("AZURE_CLIENT_ID"),
            value("AZURE_CLIENT_SECRET"),
        ) {
            let options = ClientSecretCredentialOptions {
                client_options: options(),
            };
            let inner =
                ClientSecretCredential::new(&tenant, client, Secret::new(secret), Some(options))
                    .map_err(bad)?;
            return Ok(Self {
                inner,
                kind: "client-secret",
            });
        }
        let inner = DeveloperToolsCredential::new(None).map_err(bad)?;
        Ok(Self {
            inner,
            kind: "developer-tools",
        })
    }

    /// A bearer token for Azure Resource Manager (the credential caches it until it expires).
    pub async fn arm_token(&self) -> Result<Secret, ProviderError> {
        let token = self
            .inner
            .get_token(&[ARM_SCOPE], None)
            .await
            .map_err(|e| {
                ProviderError::Auth(format!("no Azure token ({}): {e}; {}", self.kind, hint()))
            })?;
        Ok(token.token)
    }
}

fn hint() -> String {
    format!(
        "set {} (a service principal) and AZURE_SUBSCRIPTION_ID, or sign in with `az login`",
        PRINCIPAL_VARS.join(", ")
    )
}
