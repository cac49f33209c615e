//! The caller's org identity: an `X-Crabbox-Org` header (honoured for the admin token) that
//! cannot be an org label is the caller's error, `400 invalid_org_identity`, which no retry can
//! fix; never a 5xx that clients and proxies would retry.

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::harness::{ADMIN_TOKEN, Coord, Who};

/// `GET /v1/whoami` with the admin token and `org` as the raw bytes of `X-Crabbox-Org`.
async fn whoami_as(c: &Coord, org: &[u8]) -> (u16, Value) {
    let resp = c
        .request(reqwest::Method::GET, "/v1/whoami", Who::Admin)
        .header(
            "x-crabbox-org",
            reqwest::header::HeaderValue::from_bytes(org).unwrap(),
        )
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// The same request written byte for byte on a socket, for header bytes an HTTP client
/// refuses to send; returns the whole response as text.
async fn whoami_raw(c: &Coord, org: &[u8]) -> String {
    let addr = c.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "GET /v1/whoami HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {ADMIN_TOKEN}\r\n\
         connection: close\r\nx-crabbox-org: "
    )
    .into_bytes();
    request.extend_from_slice(org);
    request.extend_from_slice(b"\r\n\r\n");
    stream.write_all(&request).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn a_malformed_org_header_is_a_400_not_a_5xx() {
    let c = Coord::start().await;
    let too_long = "a".repeat(64);
    let malformed: [(&str, &[u8]); 4] = [
        ("64 characters", too_long.as_bytes()),
        ("a tab inside", b"acme\tcorp"),
        ("non-ASCII", "acm\u{e9}".as_bytes()),
        ("invalid UTF-8", b"acme\xff\xfe"),
    ];
    for (what, org) in malformed {
        let (status, body) = whoami_as(&c, org).await;
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(body["error"], "invalid_org_identity", "{what}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains("x-crabbox-org must be 1-63 printable ASCII"),
            "{what}: {message}"
        );
    }
    // Control characters other than a tab never reach the coordinator: the HTTP parser refuses
    // the request first, also with a 400.
    for (what, org) in [
        ("a control character", &b"ac\x01me"[..]),
        ("DEL", b"ac\x7fme"),
    ] {
        let response = whoami_raw(&c, org).await;
        assert!(response.starts_with("HTTP/1.1 400 "), "{what}: {response}");
    }

    // Valid labels still work: up to 63 printable characters, inner spaces included. Spaces
    // and tabs around a header value are not part of it (HTTP strips them before the
    // coordinator sees the value), and an empty value means the caller has no org.
    let longest = "b".repeat(63);
    for (org, label) in [
        ("acme corp", "acme corp"),
        (longest.as_str(), longest.as_str()),
        (" \tacme corp \t", "acme corp"),
        ("", "unknown"),
    ] {
        let (status, me) = whoami_as(&c, org.as_bytes()).await;
        assert_eq!(status, 200, "{org:?}: {me}");
        assert_eq!(me["org"], label, "{org:?}: {me}");
    }
    c.stop().await;
}

#[tokio::test]
async fn the_openapi_document_lists_400_for_authenticated_routes() {
    let c = Coord::start().await;
    let (_, doc) = c
        .call("GET", "/v1/openapi.json", Who::Anonymous, None)
        .await;
    let responses = &doc["paths"]["/v1/whoami"]["get"]["responses"];
    assert!(responses["400"].is_object(), "{responses}");
    c.stop().await;
}
