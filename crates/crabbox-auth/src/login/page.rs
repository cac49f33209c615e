//! What the browser-facing login endpoints answer: a redirect or a small HTML page.

use std::fmt::Write as _;

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};

pub(crate) const PORTAL_OAUTH_COOKIE_PREFIX: &str = "__Host-crabbox_oauth_";
pub(crate) const LEGACY_PORTAL_SESSION_COOKIE: &str = "crabbox_session";

/// The answer to a browser request of the login flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackOutcome {
    /// `303` back to the CLI's loopback listener, or `302` into the portal / to GitHub.
    Redirect {
        status: StatusCode,
        location: String,
        /// `Set-Cookie` values, each sent as its own header.
        set_cookies: Vec<String>,
    },
    /// An HTML page explaining what happened.
    Page {
        status: StatusCode,
        title: String,
        message: String,
        /// A link that retries the same callback (GitHub was briefly unavailable).
        retry_url: Option<String>,
        set_cookies: Vec<String>,
    },
}

impl CallbackOutcome {
    pub(crate) fn page(status: StatusCode, title: &str, message: impl Into<String>) -> Self {
        Self::Page {
            status,
            title: title.to_owned(),
            message: message.into(),
            retry_url: None,
            set_cookies: Vec::new(),
        }
    }

    pub(crate) fn expired() -> Self {
        Self::page(
            StatusCode::BAD_REQUEST,
            "Crabbox login expired",
            "The login request expired. Run crabbox login --url <broker-url> again.",
        )
    }

    pub(crate) fn internal() -> Self {
        Self::page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Crabbox login failed",
            "The coordinator could not finish GitHub login.",
        )
    }

    #[must_use]
    pub(crate) fn with_cookies(mut self, cookies: Vec<String>) -> Self {
        match &mut self {
            Self::Redirect { set_cookies, .. } | Self::Page { set_cookies, .. } => {
                set_cookies.extend(cookies);
            }
        }
        self
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Redirect { status, .. } | Self::Page { status, .. } => *status,
        }
    }

    /// The redirect target, if this is a redirect.
    pub fn location(&self) -> Option<&str> {
        match self {
            Self::Redirect { location, .. } => Some(location),
            Self::Page { .. } => None,
        }
    }

    /// Status, headers and body, ready to send.
    pub fn into_response_parts(self) -> (StatusCode, HeaderMap, String) {
        let mut headers = HeaderMap::new();
        let mut put = |name: HeaderName, value: &str| {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.append(name, value);
            }
        };
        let (status, body, cookies) = match self {
            Self::Redirect {
                status,
                location,
                set_cookies,
            } => {
                put(header::LOCATION, &location);
                put(header::CACHE_CONTROL, "no-store");
                put(header::REFERRER_POLICY, "no-referrer");
                (status, String::new(), set_cookies)
            }
            Self::Page {
                status,
                title,
                message,
                retry_url,
                set_cookies,
            } => {
                put(header::CONTENT_TYPE, "text/html; charset=utf-8");
                let mut extra = String::new();
                if let Some(url) = retry_url {
                    put(header::CACHE_CONTROL, "no-store");
                    put(header::REFERRER_POLICY, "no-referrer");
                    put(header::RETRY_AFTER, "2");
                    extra = format!(
                        r#"<p><a href="{}">Retry GitHub login</a></p>"#,
                        escape_html(&url)
                    );
                }
                (status, html(&title, &message, &extra), set_cookies)
            }
        };
        for cookie in cookies {
            put(header::SET_COOKIE, &cookie);
        }
        (status, headers, body)
    }
}

fn html(title: &str, message: &str, extra: &str) -> String {
    let (title, message) = (escape_html(title), escape_html(message));
    format!(
        concat!(
            "<!doctype html><html><head><meta charset=\"utf-8\">",
            "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">",
            "<title>{title}</title><style>:root{{color-scheme:dark light}}",
            "body{{font-family:-apple-system,BlinkMacSystemFont,\"Segoe UI\",sans-serif;",
            "max-width:42rem;margin:5rem auto;padding:0 1rem;line-height:1.5}}</style></head>",
            "<body><h1>{title}</h1><p>{message}</p>{extra}</body></html>"
        ),
        title = title,
        message = message,
        extra = extra
    )
}

pub(crate) fn escape_html(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A `__Host-` style cookie: `Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age=N`.
pub(crate) fn session_cookie(name: &str, value: &str, max_age_seconds: u64) -> String {
    let encoded = percent_encode_component(value);
    format!("{name}={encoded}; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age={max_age_seconds}")
}

/// `encodeURIComponent`.
fn percent_encode_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

pub(crate) fn binding_cookie_name(state: &str) -> String {
    format!("{PORTAL_OAUTH_COOKIE_PREFIX}{state}")
}

/// Only portal paths, never protocol-relative or absolute URLs or header-breaking characters.
pub(crate) fn safe_return_to(value: Option<&str>) -> String {
    match value {
        Some(v)
            if v.starts_with("/portal")
                && !v.starts_with("//")
                && !v.contains("://")
                && !v.chars().any(|c| c.is_ascii_control()) =>
        {
            v.to_owned()
        }
        _ => "/portal".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_and_carry_headers() {
        let outcome = CallbackOutcome::Page {
            status: StatusCode::SERVICE_UNAVAILABLE,
            title: "Crabbox login delayed".into(),
            message: "<b>GitHub</b> is down".into(),
            retry_url: Some("https://c/cb?code=a&state=b".into()),
            set_cookies: vec!["a=b".into(), "c=d".into()],
        };
        let (status, headers, body) = outcome.into_response_parts();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers[header::RETRY_AFTER], "2");
        assert_eq!(headers.get_all(header::SET_COOKIE).iter().count(), 2);
        assert!(body.contains("&lt;b&gt;GitHub&lt;/b&gt; is down"));
        assert!(body.contains(r#"href="https://c/cb?code=a&amp;state=b""#));
    }

    #[test]
    fn cookies_and_return_paths() {
        assert_eq!(
            session_cookie("__Host-crabbox_session", "cbwp_a.b/c", 60),
            "__Host-crabbox_session=cbwp_a.b%2Fc; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age=60"
        );
        assert_eq!(
            safe_return_to(Some("/portal/leases?x=1")),
            "/portal/leases?x=1"
        );
        for bad in [
            "//evil",
            "/other",
            "/portal/x://y",
            "/portal/\r\nx",
            "https://evil/portal",
        ] {
            assert_eq!(safe_return_to(Some(bad)), "/portal", "{bad:?}");
        }
        assert_eq!(safe_return_to(None), "/portal");
    }
}
