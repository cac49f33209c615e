//! Keeping database passwords out of error messages.

/// The password of a `scheme://user:password@host/…` URL, if it has one.
fn password(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then_some(password)
}

/// Percent-decodes `s` (invalid escapes kept as they are).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `url` with its password replaced by `***`.
pub(crate) fn url(url: &str) -> String {
    message(url, url)
}

/// `message` with every occurrence of `url`'s password (as written or decoded) replaced by
/// `***`.
pub(crate) fn message(url: &str, message: &str) -> String {
    let Some(secret) = password(url) else {
        return message.to_owned();
    };
    let mut out = message.replace(secret, "***");
    let decoded = percent_decode(secret);
    if !decoded.is_empty() && decoded != secret {
        out = out.replace(&decoded, "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_hides_the_password() {
        let u = "postgres://app:s3cr%40t@db.example:5432/coord?sslmode=require";
        assert_eq!(password(u), Some("s3cr%40t"));
        assert_eq!(
            url(u),
            "postgres://app:***@db.example:5432/coord?sslmode=require"
        );
        assert_eq!(message(u, "auth failed for s3cr@t"), "auth failed for ***");
        assert_eq!(password("postgres://app@db/x"), None);
        assert_eq!(password("postgres://db/x?user=a@b"), None);
        assert_eq!(url("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(password("not a url"), None);
    }
}
