//! The SDK's clients and their errors in the shared vocabulary.
//!
//! Credentials, profiles and endpoints come from the SDK's standard chain unchanged
//! (`AWS_PROFILE`, static keys, SSO, `credential_process`, `AWS_ENDPOINT_URL` and the
//! per-service `AWS_ENDPOINT_URL_EC2`…); only the region is Crabbox's (`aws.region`, where
//! `CRABBOX_AWS_REGION` outranks `AWS_REGION`). The HTTPS client is the SDK's own hyper +
//! rustls client built over `ring`, so the build links no `aws-lc-sys`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use crabbox_providers::ProviderError;
use crabbox_providers::cloud::aws::errors;

use crate::policy::Action;

/// The loaded SDK configuration and one EC2 client per region, made on first use.
#[derive(Debug)]
pub struct Aws {
    sdk: SdkConfig,
    ec2: Mutex<BTreeMap<String, aws_sdk_ec2::Client>>,
}

impl Aws {
    /// Loads the SDK's configuration (credential chain, endpoint settings) for `region`.
    pub async fn load(region: &str) -> Self {
        Self::from_sdk_config(loader(region).load().await)
    }

    /// Clients of an SDK configuration the caller built (with [`loader`], say), for callers
    /// that configure the SDK in code rather than through the environment.
    pub fn from_sdk_config(sdk: SdkConfig) -> Self {
        Self {
            sdk,
            ec2: Mutex::new(BTreeMap::new()),
        }
    }

    /// The EC2 client of `region`.
    pub fn ec2(&self, region: &str) -> aws_sdk_ec2::Client {
        let mut clients = self
            .ec2
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        clients
            .entry(region.to_owned())
            .or_insert_with(|| {
                let config = aws_sdk_ec2::config::Builder::from(&self.sdk)
                    .region(Region::new(region.to_owned()))
                    .build();
                aws_sdk_ec2::Client::from_conf(config)
            })
            .clone()
    }

    pub fn sts(&self) -> aws_sdk_sts::Client {
        aws_sdk_sts::Client::new(&self.sdk)
    }

    pub fn quotas(&self, region: &str) -> aws_sdk_servicequotas::Client {
        let config = aws_sdk_servicequotas::config::Builder::from(&self.sdk)
            .region(Region::new(region.to_owned()))
            .build();
        aws_sdk_servicequotas::Client::from_conf(config)
    }
}

/// The SDK's configuration loader for `region`, with the rustls-over-ring HTTPS client.
pub fn loader(region: &str) -> aws_config::ConfigLoader {
    use aws_smithy_http_client::tls;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .region(Region::new(region.to_owned()))
}

/// A failed call: AWS's error code (empty when the call never got an answer), its message, and
/// the error in the shared vocabulary.
#[derive(Debug)]
pub struct CallError {
    pub code: String,
    pub message: String,
    pub error: ProviderError,
}

impl CallError {
    pub fn is_not_found(&self) -> bool {
        errors::is_not_found(&self.code)
    }
}

impl From<CallError> for ProviderError {
    fn from(e: CallError) -> Self {
        e.error
    }
}

/// Sends one SDK request, naming the action it performs, and maps its error.
pub async fn call<T, E, R>(
    action: Action,
    request: impl Future<Output = Result<T, SdkError<E, R>>>,
) -> Result<T, CallError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    tracing::debug!(action = action.operation(), "aws call");
    // The SDK's request futures are large (20 KiB for RunInstances); on the heap they do not
    // grow every future that awaits them.
    Box::pin(request).await.map_err(|e| call_error(action, &e))
}

fn call_error<E, R>(action: Action, err: &SdkError<E, R>) -> CallError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let operation = action.operation();
    if let Some(service) = err.as_service_error() {
        let code = service.code().unwrap_or("Unknown").to_owned();
        let message = service.message().unwrap_or_default().to_owned();
        let error = errors::provider_error(operation, &code, &message);
        return CallError {
            code,
            message,
            error,
        };
    }
    let message = DisplayErrorContext(err).to_string();
    let error = match err {
        SdkError::ConstructionFailure(_) | SdkError::DispatchFailure(_)
            if mentions_credentials(&message) =>
        {
            ProviderError::Auth(format!(
                "AWS {operation}: no usable AWS credentials ({message}); set AWS_PROFILE, \
                 AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or sign in with `aws sso login`"
            ))
        }
        SdkError::ConstructionFailure(_) => {
            ProviderError::InvalidSpec(format!("AWS {operation}: {message}"))
        }
        _ => ProviderError::Transient(format!("AWS {operation} got no answer: {message}")),
    };
    CallError {
        code: String::new(),
        message,
        error,
    }
}

fn mentions_credentials(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("credential") || lower.contains("identity")
}
