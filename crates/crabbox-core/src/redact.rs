//! Showing a URL without the credentials it may carry. A coordinator URL can hold a password
//! (`https://user:secret@host`), and it is printed in errors, `doctor`, `whoami`, `config show`
//! and lease labels; every one of those goes through [`url`].

/// `raw` as it may be shown: userinfo (`user:password@`, everything before the last `@`)
/// becomes `<redacted>@`, and a query or fragment, which can carry tokens, is dropped, as the
/// old tool does. The user name goes too, since tokens are often passed as one. Text that is
/// not a well-formed URL gets the same treatment, so a malformed one cannot slip a password
/// through.
pub fn url(raw: &str) -> String {
    let raw = raw.trim();
    let (scheme, rest) = raw.find("://").map_or(("", raw), |i| raw.split_at(i + 3));
    let (userinfo, rest) = match rest.rfind('@') {
        Some(at) => (true, &rest[at + 1..]),
        None => (false, rest),
    };
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let marker = if userinfo { "<redacted>@" } else { "" };
    format!("{scheme}{marker}{}", &rest[..end])
}

#[cfg(test)]
mod tests {
    use super::url;

    #[test]
    fn credentials_never_survive() {
        for (raw, shown) in [
            ("https://crabbox.example.com", "https://crabbox.example.com"),
            ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/"),
            (
                "http://u:SECRETPW@127.0.0.1:1",
                "http://<redacted>@127.0.0.1:1",
            ),
            (
                "https://tok3n@c.example/base",
                "https://<redacted>@c.example/base",
            ),
            (
                "https://u:p@ss/w#rd@c.example",
                "https://<redacted>@c.example",
            ),
            ("https://c.example/?token=SECRET#x", "https://c.example/"),
            ("u:SECRET@c.example", "<redacted>@c.example"),
            (" https://c.example ", "https://c.example"),
            ("", ""),
        ] {
            assert_eq!(url(raw), shown, "{raw}");
        }
    }
}
