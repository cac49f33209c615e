//! The HTTP client of every Azure call, the credentials' token requests included: the tree's
//! reqwest (rustls on ring) with the public roots, plus the certificates of `SSL_CERT_FILE`
//! when it is set (the variable OpenSSL-based tools read: a private cloud behind a corporate
//! CA, or the tests' throwaway CA). `azure_core` gets it as its transport, so its pipeline
//! never builds a client of its own.

use std::sync::Arc;
use std::time::Duration;

use azure_core::http::headers::{HeaderName, HeaderValue, Headers};
use azure_core::http::{AsyncRawResponse, Body, HttpClient, Method, Request};
use crabbox_providers::ProviderError;

/// How long one request may take, and its connection.
const TIMEOUT: Duration = Duration::from_mins(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// The reqwest client Azure calls go through.
pub fn http_client(env: impl Fn(&str) -> Option<String>) -> Result<reqwest::Client, ProviderError> {
    let mut builder = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("crabbox/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = env("SSL_CERT_FILE").filter(|p| !p.trim().is_empty()) {
        let pem = std::fs::read(&path).map_err(|e| ProviderError::Io {
            context: format!("could not read SSL_CERT_FILE {path}"),
            source: Box::new(e),
        })?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            ProviderError::InvalidSpec(format!(
                "SSL_CERT_FILE {path} holds no PEM certificates: {e}"
            ))
        })?;
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder
        .build()
        .map_err(|e| ProviderError::InvalidSpec(format!("HTTP client: {e}")))
}

/// `azure_core`'s transport over a reqwest client.
#[derive(Debug, Clone)]
pub struct Transport(pub reqwest::Client);

impl Transport {
    pub fn for_azure_core(&self) -> azure_core::http::Transport {
        azure_core::http::Transport::new(Arc::new(self.clone()))
    }
}

#[async_trait::async_trait]
impl HttpClient for Transport {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        use azure_core::error::{Error, ErrorKind};
        let method = match request.method() {
            Method::Delete => reqwest::Method::DELETE,
            Method::Get => reqwest::Method::GET,
            Method::Head => reqwest::Method::HEAD,
            Method::Patch => reqwest::Method::PATCH,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            other => {
                return Err(Error::with_message(
                    ErrorKind::Other,
                    format!("HTTP method {other:?} is not used by Crabbox"),
                ));
            }
        };
        let mut builder = self.0.request(method, request.url().as_str());
        for (name, value) in request.headers().iter() {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let builder = match request.body() {
            Body::Bytes(bytes) => builder.body(bytes.to_vec()),
            Body::SeekableStream(_) => {
                return Err(Error::with_message(
                    ErrorKind::Other,
                    "streamed request bodies are not used by Crabbox",
                ));
            }
        };
        let answer = builder.send().await.map_err(|e| {
            let kind = if e.is_connect() {
                ErrorKind::Connection
            } else {
                ErrorKind::Io
            };
            Error::with_error(kind, e, "the request got no answer")
        })?;
        let status = answer.status().as_u16();
        let mut headers = Headers::new();
        for (name, value) in answer.headers() {
            if let Ok(value) = value.to_str() {
                headers.insert(
                    HeaderName::from(name.as_str().to_owned()),
                    HeaderValue::from(value.to_owned()),
                );
            }
        }
        let body = answer
            .bytes()
            .await
            .map_err(|e| Error::with_error(ErrorKind::Io, e, "the answer's body was cut off"))?;
        let stream = futures_util::stream::once(async move { Ok(body) });
        Ok(AsyncRawResponse::new(
            status.into(),
            headers,
            Box::pin(stream),
        ))
    }
}
