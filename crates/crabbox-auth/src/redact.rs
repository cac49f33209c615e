//! The diagnostic redactor (spec coordinator §1 "Redaction"): error messages and cleanup/failure
//! diagnostics can quote provider output, shell commands or HTTP exchanges, so before they are
//! stored or returned every credential-shaped span becomes `[redacted]`.
//!
//! One pass collects spans from every rule over the same text and replaces them together, so a
//! rewrite by one rule cannot hide part of a credential from another. Passes repeat until the
//! text stops changing; text that still changes after 64 passes is replaced whole.

use std::sync::LazyLock;

use base64::Engine as _;
use regex::Regex;

const MARKER: &str = "[redacted]";
const MARKERS: [&str; 2] = ["[redacted]", "<redacted>"];
const MAX_PASSES: usize = 64;

/// Redacts configured `secrets` (exact matches, trimmed, empty ones ignored) and anything that
/// looks like a credential: bearer/basic credentials, `token=`/`password=` style assignments
/// (also in env-var, header, query-string and JSON form), URL userinfo and private-key blocks.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut exact: Vec<&str> = secrets
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect();
    exact.sort_by_key(|s| std::cmp::Reverse(s.len()));
    exact.dedup();
    let mut current = text.to_owned();
    for _ in 0..MAX_PASSES {
        let next = pass(&current, &exact);
        if next == current {
            return next;
        }
        current = next;
    }
    MARKER.to_owned()
}

#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
    preserve: bool,
}

struct Spans<'a> {
    text: &'a str,
    markers: Vec<Span>,
    found: Vec<Span>,
}

impl<'a> Spans<'a> {
    fn new(text: &'a str) -> Self {
        let mut markers = Vec::new();
        for marker in MARKERS {
            for (start, m) in text.match_indices(marker) {
                markers.push(Span {
                    start,
                    end: start + m.len(),
                    preserve: true,
                });
            }
        }
        markers.sort_by_key(|s| s.start);
        Self {
            text,
            found: markers.clone(),
            markers,
        }
    }

    fn add(&mut self, start: usize, end: usize) {
        if start >= end {
            return;
        }
        let inside_marker = self
            .markers
            .iter()
            .any(|m| m.start <= start && end <= m.end);
        if !inside_marker {
            self.found.push(Span {
                start,
                end,
                preserve: false,
            });
        }
    }

    /// Adds the credential value starting at `start`: a quoted string through its closing
    /// quote, or an unquoted word.
    fn add_value(&mut self, start: usize) {
        let end = value_end(self.text, start);
        self.add(start, end);
    }

    fn apply(mut self) -> String {
        if self.found.iter().all(|s| s.preserve) {
            return self.text.to_owned();
        }
        self.found.sort_by_key(|s| (s.start, s.end));
        let mut merged: Vec<Span> = Vec::new();
        for span in self.found {
            match merged.last_mut() {
                Some(prev) if span.start < prev.end => {
                    prev.preserve &= span.preserve;
                    prev.end = prev.end.max(span.end);
                }
                _ => merged.push(span),
            }
        }
        let mut out = String::with_capacity(self.text.len());
        let mut offset = 0;
        for span in merged {
            out.push_str(&self.text[offset..span.start]);
            if span.preserve {
                out.push_str(&self.text[span.start..span.end]);
            } else {
                out.push_str(MARKER);
            }
            offset = span.end;
        }
        out.push_str(&self.text[offset..]);
        out
    }
}

/// The end of a credential value: through the closing quote of a quoted value (on the same
/// line, honouring backslash escapes), else up to whitespace or a delimiter.
fn value_end(text: &str, start: usize) -> usize {
    let bytes = text.as_bytes();
    let Some(&first) = bytes.get(start) else {
        return start;
    };
    if first == b'"' || first == b'\'' {
        let mut i = start + 1;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' if i + 1 < bytes.len() => i += 2,
                b'\r' | b'\n' => return i,
                b if b == first => return i + 1,
                _ => i += 1,
            }
        }
        return bytes.len();
    }
    let mut i = start;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_whitespace()
            || matches!(
                b,
                b',' | b';' | b'&' | b'"' | b'\'' | b')' | b'}' | b']' | b'<' | b'>'
            )
        {
            break;
        }
        if b == b'\\' && i + 1 < bytes.len() {
            i += 2;
            continue;
        }
        i += 1;
    }
    i.min(bytes.len())
}

fn regex(pattern: &str) -> Regex {
    Regex::new(pattern).expect("redaction patterns are valid")
}

/// `Authorization:`, `Cookie:` and friends in header form: the rest of the line is the
/// credential, whatever its scheme.
static HEADER_LINE: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?im)(?:^|[^?&A-Za-z0-9_-])(?:authorization|proxy-authorization|set-cookie|cookie|x-amz-security-token|x-goog-security-token|x-api-key)[ \t]*:[ \t]*([^\r\n]*)",
    )
});

/// `token=…`, `password: …`, `access_token=…` and other well-known credential keys.
static KEY_VALUE: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)(?:^|[^?&A-Za-z0-9_-])(?:authorization|proxy-authorization|x-api-key|api[-_]?key|api[-_]?token|auth[-_]?key|access[-_]?token|refresh[-_]?token|id[-_]?token|client[-_]?secret|secret[-_]?access[-_]?key|api[-_]?secret|session[-_]?token|token|password|passwd)[ \t]*[:=][ \t]*((?:bearer|basic)[ \t]+)?",
    )
});

/// `NAME=value` where the name ends in (or contains) a secret-ish word: `GITHUB_TOKEN=…`,
/// `DB_PASSWORD=…`, `aws_secret_access_key=…`.
static ENV_ASSIGNMENT: LazyLock<Regex> =
    LazyLock::new(|| regex(r#"(?:^|[\s.:;=,(){}\[\]'"`])([A-Za-z_][A-Za-z0-9_-]*)[ \t]*=[ \t]*"#));

static SENSITIVE_NAME_SUFFIX: LazyLock<Regex> = LazyLock::new(|| {
    regex(r"(?i)(?:^|[-_]+)(?:tokens?|secrets?|keys?|password|passwd|credentials?|authkey|apikey)$")
});

static SENSITIVE_NAME_WORD: LazyLock<Regex> = LazyLock::new(|| {
    regex(r"(?i)(?:^|[-_]+)(?:secrets?|password|passwd|credentials?|authkey|apikey)(?:$|[-_]+)")
});

/// JSON string fields with secret names.
static JSON_FIELD: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r#"(?i)"(?:authorization|proxy-authorization|x-amz-security-token|x-goog-security-token|x-api-key|apiKey|api-key|api_key|apiToken|api-token|api_token|authKey|auth-key|auth_key|setCookie|set-cookie|cookie|accessToken|access-token|access_token|refreshToken|refresh-token|refresh_token|idToken|id-token|id_token|clientSecret|client-secret|client_secret|secretAccessKey|secret-access-key|secret_access_key|apiSecret|api-secret|api_secret|credential|credentials|privateKey|private-key|private_key|secret|sessionToken|session-token|session_token|token|password|githubCredential|pollSecret)"\s*:\s*"((?:\\[\s\S]|[^"\\])*)"#,
    )
});

/// Query parameters: `?access_token=…&`, `&X-Amz-Signature=…`.
static QUERY_PARAM: LazyLock<Regex> =
    LazyLock::new(|| regex(r"[?&]([A-Za-z_][A-Za-z0-9_-]*)=([^&#\s]*)"));

static QUERY_NAMES: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)^(?:authorization|proxy-authorization|x-api-key|api[_-]?key|api[_-]?token|auth[_-]?key|cookie|access[_-]?token|refresh[_-]?token|id[_-]?token|client[_-]?secret|secret[_-]?access[_-]?key|api[_-]?secret|session[_-]?token|password|token|signature|sig|x-amz-credential|x-amz-signature|x-amz-security-token|x-goog-credential|x-goog-signature|x-goog-security-token)$",
    )
});

static URL_USERINFO: LazyLock<Regex> = LazyLock::new(|| regex(r"(?i)\bhttps?://([^/?#\s]+)@"));

static BEARER: LazyLock<Regex> =
    LazyLock::new(|| regex(r#"(?i)\bbearer(?:[ \t]*:[ \t]*|[ \t]+)((?:\\.|[^\s"'\\])+)"#));

/// `Basic <base64 of user:password>`; only spans that really decode to `user:password` count,
/// so ordinary prose with the word "basic" is left alone.
static BASIC: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(?i)\bbasic[ \t]+([A-Za-z0-9+/]{4,}={0,2})"));

static PRIVATE_KEY: LazyLock<Regex> = LazyLock::new(|| {
    regex(r"(?s)-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\z)")
});

fn sensitive_name(name: &str) -> bool {
    SENSITIVE_NAME_SUFFIX.is_match(name) || SENSITIVE_NAME_WORD.is_match(name)
}

fn pass(text: &str, secrets: &[&str]) -> String {
    let mut spans = Spans::new(text);
    for caps in HEADER_LINE.captures_iter(text) {
        let value = caps.get(1).expect("group");
        spans.add(value.start(), value.end());
    }
    for caps in KEY_VALUE.captures_iter(text) {
        let whole = caps.get(0).expect("match");
        // Redact from the scheme (if any) through the value.
        let start = caps.get(1).map_or(whole.end(), |m| m.start());
        let end = value_end(text, whole.end());
        spans.add(start, end);
    }
    for caps in ENV_ASSIGNMENT.captures_iter(text) {
        let name = caps.get(1).expect("group");
        if sensitive_name(name.as_str()) {
            spans.add_value(caps.get(0).expect("match").end());
        }
    }
    for caps in JSON_FIELD.captures_iter(text) {
        let value = caps.get(1).expect("group");
        spans.add(value.start(), value.end());
    }
    for caps in QUERY_PARAM.captures_iter(text) {
        let (name, value) = (caps.get(1).expect("group"), caps.get(2).expect("group"));
        if QUERY_NAMES.is_match(name.as_str()) || sensitive_name(name.as_str()) {
            spans.add(value.start(), value.end());
        }
    }
    for caps in URL_USERINFO.captures_iter(text) {
        let userinfo = caps.get(1).expect("group");
        spans.add(userinfo.start(), userinfo.end());
    }
    for caps in BEARER.captures_iter(text) {
        let credential = caps.get(1).expect("group");
        spans.add(credential.start(), credential.end());
    }
    for caps in BASIC.captures_iter(text) {
        let credential = caps.get(1).expect("group");
        let decoded = base64::engine::general_purpose::STANDARD.decode(credential.as_str());
        if decoded.is_ok_and(|bytes| bytes.contains(&b':')) {
            spans.add(credential.start(), credential.end());
        }
    }
    for m in PRIVATE_KEY.find_iter(text) {
        spans.add(m.start(), m.end());
    }
    for secret in secrets {
        for (start, m) in text.match_indices(secret) {
            spans.add(start, start + m.len());
        }
    }
    spans.apply()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(text: &str) -> String {
        redact(text, &[])
    }

    #[test]
    fn configured_secrets() {
        assert_eq!(
            redact("failed with hunter2 and hunter2x", &["hunter2", " ", ""]),
            "failed with [redacted] and [redacted]x"
        );
        assert_eq!(redact("abcdef", &["abc", "abcdef"]), "[redacted]");
    }

    #[test]
    fn bearer_and_basic() {
        assert_eq!(
            r("curl -H 'Authorization: Bearer abc.def'"),
            "curl -H 'Authorization: [redacted]"
        );
        assert_eq!(
            r("sent bearer ghp_123 to api"),
            "sent bearer [redacted] to api"
        );
        assert_eq!(
            r("Authorization: Basic dXNlcjpwYXNz"),
            "Authorization: [redacted]"
        );
        assert_eq!(
            r("using Basic dXNlcjpwYXNz here"),
            "using Basic [redacted] here"
        );
        assert_eq!(r("a basic setup works"), "a basic setup works");
    }

    #[test]
    fn assignments() {
        assert_eq!(r("token=abc123 next"), "token=[redacted] next");
        assert_eq!(r("password: 'a b c' ok"), "password: [redacted] ok");
        assert_eq!(r("access_token=xyz,other"), "access_token=[redacted],other");
        assert_eq!(
            r("env HETZNER_TOKEN=abc DB_PASSWORD=\"p w\" PATH=/bin"),
            "env HETZNER_TOKEN=[redacted] DB_PASSWORD=[redacted] PATH=/bin"
        );
        assert_eq!(r("mytoken is fine"), "mytoken is fine");
    }

    #[test]
    fn json_fields_and_query_strings() {
        assert_eq!(
            r(r#"{"token":"abc","name":"x","clientSecret": "s\"q"}"#),
            r#"{"token":"[redacted]","name":"x","clientSecret": "[redacted]"}"#
        );
        assert_eq!(
            r("GET https://api.example.com/x?access_token=abc&page=2&X-Amz-Signature=ff"),
            "GET https://api.example.com/x?access_token=[redacted]&page=2&X-Amz-Signature=[redacted]"
        );
    }

    #[test]
    fn userinfo_and_private_keys() {
        assert_eq!(
            r("clone https://user:pw@github.com/o/r failed"),
            "clone https://[redacted]@github.com/o/r failed"
        );
        let key = "x -----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\nBBBB\n-----END OPENSSH PRIVATE KEY----- y";
        assert_eq!(r(key), "x [redacted] y");
        assert_eq!(
            r("-----BEGIN RSA PRIVATE KEY-----\ntruncated"),
            "[redacted]"
        );
    }

    #[test]
    fn idempotent_and_markers_kept() {
        let once = r("token=abc Authorization: Bearer x");
        assert_eq!(r(&once), once);
        assert_eq!(
            r("already <redacted> and [redacted]"),
            "already <redacted> and [redacted]"
        );
    }

    #[test]
    fn unicode_is_safe() {
        assert_eq!(r("ß token=ü€ done ✓"), "ß token=[redacted] done ✓");
    }
}
