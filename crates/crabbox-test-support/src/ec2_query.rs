//! Raw EC2 query-protocol calls over plain HTTP, for fixtures and tests that talk to moto
//! (or to the fault proxy in front of it) without the AWS SDK: the boot emulator's watch, and
//! tests that set a scene or check one.
//!
//! moto verifies no signature. It picks the service and the region from the credential scope
//! of the `Authorization` header, so each call carries a SigV4-shaped header with a dummy
//! signature (`Credential=<key>/<date>/<region>/ec2/aws4_request`).

use crate::moto::ACCESS_KEY_ID;

/// EC2's query API version, the one the SDKs send.
const VERSION: &str = "2016-11-15";

/// A client for one endpoint and region.
#[derive(Debug, Clone)]
pub struct Ec2Query {
    http: reqwest::Client,
    endpoint: String,
    region: String,
}

/// An answer: its HTTP status and XML body.
#[derive(Debug, Clone)]
pub struct Ec2Answer {
    pub status: u16,
    pub body: String,
}

impl Ec2Query {
    pub fn new(endpoint: &str, region: &str) -> Self {
        Self {
            // Every endpoint here is on loopback: a machine's HTTP proxy must not be asked.
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("HTTP client"),
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            region: region.to_owned(),
        }
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Calls `action` with `params` (query-protocol names such as `InstanceId.1`). Any HTTP
    /// answer is returned; only a transport failure is an error.
    pub async fn call(
        &self,
        action: &str,
        params: &[(&str, &str)],
    ) -> Result<Ec2Answer, reqwest::Error> {
        let mut form: Vec<(&str, &str)> = vec![("Action", action), ("Version", VERSION)];
        form.extend_from_slice(params);
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/20250101/{}/ec2/aws4_request, \
             SignedHeaders=host, Signature=0",
            self.region
        );
        let answer = self
            .http
            .post(format!("{}/", self.endpoint))
            .header("Authorization", auth)
            .form(&form)
            .send()
            .await?;
        let status = answer.status().as_u16();
        let body = answer.text().await?;
        Ok(Ec2Answer { status, body })
    }

    /// Calls `action` and panics with EC2's answer unless it succeeded: for tests.
    pub async fn ok(&self, action: &str, params: &[(&str, &str)]) -> Ec2Answer {
        let answer = self
            .call(action, params)
            .await
            .unwrap_or_else(|e| panic!("{action} could not be sent: {e}"));
        assert!(
            answer.status == 200,
            "{action} failed with HTTP {}: {}",
            answer.status,
            answer.body
        );
        answer
    }
}

impl Ec2Answer {
    /// The text of the first element named `tag`, anywhere in the answer.
    pub fn first(&self, tag: &str) -> Option<String> {
        let doc = roxmltree::Document::parse(&self.body).ok()?;
        doc.descendants()
            .find(|n| n.has_tag_name(tag))
            .and_then(|n| n.text())
            .map(str::to_owned)
    }

    /// The texts of every element named `tag`, in document order.
    pub fn all(&self, tag: &str) -> Vec<String> {
        let Ok(doc) = roxmltree::Document::parse(&self.body) else {
            return Vec::new();
        };
        doc.descendants()
            .filter(|n| n.has_tag_name(tag))
            .filter_map(|n| n.text().map(str::to_owned))
            .collect()
    }

    /// EC2's error code (`<Errors><Error><Code>`), when the answer is an error.
    pub fn error_code(&self) -> Option<String> {
        (self.status != 200).then(|| self.first("Code")).flatten()
    }
}
