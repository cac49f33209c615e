//! Secrets held in memory and compared without leaking timing.
//!
//! [`Secret`] deliberately has no `PartialEq`: the only way to compare one is
//! [`Secret::matches`], which runs [`constant_time_eq`]. A test in this module reads the crate's
//! sources and fails if an exposed secret is ever compared with `==`/`!=` (spec §5.2).

use std::fmt;

use subtle::ConstantTimeEq as _;

pub use crate::redact::redact;

/// A configured credential. `Debug` and `Display` print `[redacted]`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The credential itself, for code that must send or key with it. Never compare the result
    /// with `==`; use [`Secret::matches`].
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` equals this secret, in time independent of where they differ.
    pub fn matches(&self, candidate: &str) -> bool {
        constant_time_eq(self.0.as_bytes(), candidate.as_bytes())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Equality that does not stop at the first difference *or* at a length mismatch: the length
/// difference is folded into the accumulator and every byte up to the longer length is visited,
/// so the time taken depends only on the lengths, never on the contents.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let longer = a.len().max(b.len());
    // Fold every bit of the length difference into one byte.
    let len_diff = (a.len() ^ b.len()) as u64;
    let mut acc: u8 = u8::from(len_diff != 0);
    for i in 0..longer {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        acc |= std::hint::black_box(x ^ y);
    }
    bool::from(acc.ct_eq(&0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equality_semantics() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"token", b"token"));
        assert!(!constant_time_eq(b"token", b"tokem"));
        assert!(!constant_time_eq(b"token", b"token2"));
        assert!(!constant_time_eq(b"token", b""));
        assert!(
            !constant_time_eq(b"abc", b"abc\0"),
            "zero padding is not equality"
        );
        let s = Secret::new("s3cret");
        assert!(s.matches("s3cret"));
        assert!(!s.matches("s3cre"));
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("s3cret");
        assert_eq!(format!("{s} {s:?}"), "[redacted] [redacted]");
    }

    /// Static secrets must only be compared through `Secret::matches` / `constant_time_eq`.
    /// `Secret` has no `PartialEq`, so the remaining risk is comparing an exposed value.
    #[test]
    fn sources_never_compare_secrets_with_eq() {
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        let mut files = Vec::new();
        collect_rs(std::path::Path::new(src), &mut files);
        assert!(files.len() > 5, "found the crate sources");
        let mut offences = Vec::new();
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                let compares = code.contains("==") || code.contains("!=") || code.contains(".eq(");
                let exposes = code.contains(".expose()");
                let names_secret = SECRET_NAMES.iter().any(|name| code.contains(name));
                if compares && (exposes || names_secret) {
                    offences.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
                // Built at run time so this test does not find itself.
                let implements_eq = ["PartialEq", "Eq"]
                    .iter()
                    .any(|t| code.contains(&format!("impl {t} for Secret")));
                if implements_eq {
                    offences.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
            // A derive of PartialEq on Secret would allow `secret == other` anywhere.
            if let Some(pos) = text.find("pub struct Secret(") {
                let before = &text[..pos];
                let attrs = before.rsplit("\n\n").next().unwrap_or("");
                assert!(
                    !attrs.contains("PartialEq"),
                    "Secret must not derive PartialEq"
                );
            }
        }
        assert!(
            offences.is_empty(),
            "secrets compared with ==:\n{}",
            offences.join("\n")
        );
    }

    /// Fields and variables that hold static secrets or values derived from them.
    const SECRET_NAMES: &[&str] = &[
        "shared_token",
        "admin_token",
        "session_secret",
        "client_secret",
        "proxy_secret",
        "poll_secret",
        "_hash",
        "signature",
        "expected",
    ];

    fn collect_rs(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                collect_rs(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
}
