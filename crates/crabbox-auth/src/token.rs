//! Signed user tokens (spec coordinator §5.3).
//!
//! `<prefix><base64url(JSON payload)>.<base64url(HMAC-SHA256(session secret, encoded payload))>`
//! with prefix `cbxu_` for CLI tokens and `cbwp_` for portal sessions. The payload carries the
//! user's GitHub access token sealed with AES-256-GCM, so every request can revalidate the
//! user's GitHub membership without the coordinator storing any session state.

use aes_gcm::aead::Aead as _;
use aes_gcm::{Aes256Gcm, KeyInit as _, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use crabbox_api::coord::Timestamp;
use hmac::{Hmac, Mac as _};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::secret::{Secret, constant_time_eq};

pub const USER_TOKEN_PREFIX: &str = "cbxu_";
pub const PORTAL_TOKEN_PREFIX: &str = "cbwp_";
pub const TOKEN_VERSION: u64 = 3;
pub const OWNER_SOURCE: &str = "github-verified-email";
/// Longest GitHub access token the coordinator will seal.
pub const GITHUB_ACCESS_TOKEN_MAX_CHARS: usize = 4096;
/// How far in the future `iat` may be (clock skew between replicas).
pub const IAT_SKEW_SECONDS: i64 = 60;

pub const DEFAULT_TTL_SECONDS: u64 = 15_552_000;
pub const MIN_TTL_SECONDS: u64 = 3_600;
pub const MAX_TTL_SECONDS: u64 = 31_536_000;

const CREDENTIAL_KEY_CONTEXT: &str = "crabbox-user-github-credential-v1\0";

/// Which of the two token families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// `cbxu_`, typ `crabbox-user`: the CLI's bearer token.
    User,
    /// `cbwp_`, typ `crabbox-portal`: the portal session cookie.
    Portal,
}

impl TokenKind {
    pub fn prefix(self) -> &'static str {
        match self {
            Self::User => USER_TOKEN_PREFIX,
            Self::Portal => PORTAL_TOKEN_PREFIX,
        }
    }

    pub fn typ(self) -> &'static str {
        match self {
            Self::User => "crabbox-user",
            Self::Portal => "crabbox-portal",
        }
    }
}

/// A verified token payload.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenClaims {
    pub typ: String,
    pub version: u64,
    pub owner_source: String,
    pub jti: String,
    /// `github:<numeric id>`.
    pub owner: String,
    /// The GitHub org login the token is bound to.
    pub org: String,
    pub login: String,
    /// The sealed GitHub access token (see [`TokenSigner::seal`]).
    pub github_credential: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Epoch seconds.
    pub iat: i64,
    /// Epoch seconds.
    pub exp: i64,
}

impl std::fmt::Debug for TokenClaims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenClaims")
            .field("typ", &self.typ)
            .field("jti", &self.jti)
            .field("owner", &self.owner)
            .field("org", &self.org)
            .field("login", &self.login)
            .field("github_credential", &"[redacted]")
            .field("iat", &self.iat)
            .field("exp", &self.exp)
            .finish_non_exhaustive()
    }
}

impl TokenClaims {
    pub fn expires_at(&self) -> Timestamp {
        Timestamp::from_millis(self.exp.saturating_mul(1000))
    }
}

/// What a new token says about its user.
#[derive(Debug, Clone)]
pub struct NewToken<'a> {
    pub owner: &'a str,
    pub org: &'a str,
    pub login: &'a str,
    pub name: Option<&'a str>,
    pub github_access_token: &'a Secret,
    pub ttl_seconds: u64,
}

/// Why a token was refused. Callers answer every one of these with a plain 401; the variants
/// exist so tests (and debug logs) can tell the rules apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    #[error("not a {0} token")]
    WrongPrefix(&'static str),
    #[error("malformed token")]
    Malformed,
    #[error("signature mismatch")]
    BadSignature,
    #[error("payload is not a JSON object")]
    BadPayload,
    #[error("claim {0} is missing or has the wrong type or value")]
    BadClaim(&'static str),
    #[error("jti is not a UUIDv4")]
    BadJti,
    #[error("token carries an admin claim")]
    AdminClaim,
    #[error("issued in the future")]
    IssuedInFuture,
    #[error("expired")]
    Expired,
}

/// Problems minting a token or sealing a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(
        "GitHub access token is empty or longer than {GITHUB_ACCESS_TOKEN_MAX_CHARS} characters"
    )]
    InvalidAccessToken,
    #[error("could not encrypt the GitHub credential")]
    Seal,
    #[error("the random source is unavailable")]
    Random,
}

/// Signs and verifies user tokens and seals GitHub credentials with the session secret.
#[derive(Clone)]
pub struct TokenSigner {
    secret: Secret,
    credential_key: [u8; 32],
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigner([redacted])")
    }
}

impl TokenSigner {
    /// A signer keyed with `CRABBOX_SESSION_SECRET`. The configuration layer refuses a session
    /// secret equal to the shared token, so a shared-token holder can never mint user tokens.
    pub fn new(session_secret: Secret) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(CREDENTIAL_KEY_CONTEXT.as_bytes());
        hasher.update(session_secret.expose().as_bytes());
        Self {
            secret: session_secret,
            credential_key: hasher.finalize().into(),
        }
    }

    /// Mints a token of `kind` for `input`, issued at `now`.
    pub fn issue(
        &self,
        kind: TokenKind,
        input: &NewToken<'_>,
        now: Timestamp,
    ) -> Result<String, TokenError> {
        let iat = now.millis().div_euclid(1000);
        let ttl = i64::try_from(input.ttl_seconds).unwrap_or(i64::MAX);
        let claims = TokenClaims {
            typ: kind.typ().to_owned(),
            version: TOKEN_VERSION,
            owner_source: OWNER_SOURCE.to_owned(),
            jti: uuid::Uuid::new_v4().hyphenated().to_string(),
            owner: input.owner.to_owned(),
            org: input.org.to_owned(),
            login: input.login.to_owned(),
            github_credential: self.seal(input.github_access_token)?,
            name: input.name.filter(|n| !n.is_empty()).map(str::to_owned),
            iat,
            exp: iat.saturating_add(ttl),
        };
        let json = serde_json::to_vec(&claims).expect("claims serialize");
        Ok(self.sign_payload(kind, &json))
    }

    /// Signs an arbitrary payload; tests use it to build tokens that break one rule at a time.
    pub fn sign_payload(&self, kind: TokenKind, payload_json: &[u8]) -> String {
        let encoded = URL_SAFE_NO_PAD.encode(payload_json);
        let signature = self.signature(&encoded);
        format!("{}{encoded}.{signature}", kind.prefix())
    }

    fn signature(&self, encoded_payload: &str) -> String {
        let mut mac = <Hmac<Sha256> as hmac::Mac>::new_from_slice(self.secret.expose().as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(encoded_payload.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// Verifies a token of `kind` at `now`, applying every rejection rule of spec §5.3.
    pub fn verify(
        &self,
        kind: TokenKind,
        token: &str,
        now: Timestamp,
    ) -> Result<TokenClaims, TokenRejection> {
        let rest = token
            .strip_prefix(kind.prefix())
            .ok_or(TokenRejection::WrongPrefix(kind.prefix()))?;
        let mut parts = rest.split('.');
        let (Some(encoded), Some(signature), None) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenRejection::Malformed);
        };
        if encoded.is_empty() || signature.is_empty() {
            return Err(TokenRejection::Malformed);
        }
        let expected = self.signature(encoded);
        if !constant_time_eq(signature.as_bytes(), expected.as_bytes()) {
            return Err(TokenRejection::BadSignature);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| TokenRejection::BadPayload)?;
        let payload: Map<String, Value> =
            serde_json::from_slice(&bytes).map_err(|_| TokenRejection::BadPayload)?;
        check_claims(kind, &payload, now)
    }

    /// Seals a GitHub access token: AES-256-GCM under SHA-256 of a context string and the
    /// session secret, a random 12-byte IV, `base64url(iv).base64url(ciphertext||tag)`.
    pub fn seal(&self, access_token: &Secret) -> Result<String, TokenError> {
        let plain = access_token.expose();
        if plain.is_empty() || plain.chars().count() > GITHUB_ACCESS_TOKEN_MAX_CHARS {
            return Err(TokenError::InvalidAccessToken);
        }
        let mut iv = [0u8; 12];
        getrandom::fill(&mut iv).map_err(|_| TokenError::Random)?;
        let cipher = Aes256Gcm::new(&self.credential_key.into());
        let sealed = cipher
            .encrypt(Nonce::from_slice(&iv), plain.as_bytes())
            .map_err(|_| TokenError::Seal)?;
        Ok(format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(iv),
            URL_SAFE_NO_PAD.encode(sealed)
        ))
    }

    /// Opens a sealed credential; `None` for anything malformed, forged or over-long.
    pub fn unseal(&self, sealed: &str) -> Option<Secret> {
        let mut parts = sealed.split('.');
        let (Some(iv), Some(ciphertext), None) = (parts.next(), parts.next(), parts.next()) else {
            return None;
        };
        let iv = URL_SAFE_NO_PAD.decode(iv).ok()?;
        let ciphertext = URL_SAFE_NO_PAD.decode(ciphertext).ok()?;
        if iv.len() != 12 || ciphertext.len() <= 16 {
            return None;
        }
        let cipher = Aes256Gcm::new(&self.credential_key.into());
        let plain = cipher
            .decrypt(Nonce::from_slice(&iv), ciphertext.as_slice())
            .ok()?;
        let token = String::from_utf8(plain).ok()?;
        (!token.is_empty() && token.chars().count() <= GITHUB_ACCESS_TOKEN_MAX_CHARS)
            .then(|| Secret::new(token))
    }
}

fn check_claims(
    kind: TokenKind,
    payload: &Map<String, Value>,
    now: Timestamp,
) -> Result<TokenClaims, TokenRejection> {
    if payload.contains_key("admin") {
        return Err(TokenRejection::AdminClaim);
    }
    let text = |key: &'static str| {
        payload
            .get(key)
            .and_then(Value::as_str)
            .ok_or(TokenRejection::BadClaim(key))
    };
    let seconds = |key: &'static str| {
        payload
            .get(key)
            .and_then(Value::as_i64)
            .ok_or(TokenRejection::BadClaim(key))
    };
    if text("typ")? != kind.typ() {
        return Err(TokenRejection::BadClaim("typ"));
    }
    if payload.get("version").and_then(Value::as_u64) != Some(TOKEN_VERSION) {
        return Err(TokenRejection::BadClaim("version"));
    }
    if text("ownerSource")? != OWNER_SOURCE {
        return Err(TokenRejection::BadClaim("ownerSource"));
    }
    let jti = text("jti")?;
    if !is_uuid_v4(jti) {
        return Err(TokenRejection::BadJti);
    }
    let (owner, org, login) = (text("owner")?, text("org")?, text("login")?);
    let credential = text("githubCredential")?;
    let name = match payload.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(TokenRejection::BadClaim("name")),
    };
    let (iat, exp) = (seconds("iat")?, seconds("exp")?);
    let now_secs = now.millis().div_euclid(1000);
    if iat <= 0 {
        return Err(TokenRejection::BadClaim("iat"));
    }
    if iat > now_secs.saturating_add(IAT_SKEW_SECONDS) {
        return Err(TokenRejection::IssuedInFuture);
    }
    if exp <= iat {
        return Err(TokenRejection::BadClaim("exp"));
    }
    if exp <= now_secs {
        return Err(TokenRejection::Expired);
    }
    Ok(TokenClaims {
        typ: kind.typ().to_owned(),
        version: TOKEN_VERSION,
        owner_source: OWNER_SOURCE.to_owned(),
        jti: jti.to_owned(),
        owner: owner.to_owned(),
        org: org.to_owned(),
        login: login.to_owned(),
        github_credential: credential.to_owned(),
        name,
        iat,
        exp,
    })
}

/// The hyphenated lowercase-or-uppercase UUID version 4 form, variant 10xx.
pub fn is_uuid_v4(value: &str) -> bool {
    let bytes = value.as_bytes();
    if bytes.len() != 36 {
        return false;
    }
    for (i, &b) in bytes.iter().enumerate() {
        let ok = match i {
            8 | 13 | 18 | 23 => b == b'-',
            14 => b == b'4',
            19 => matches!(b.to_ascii_lowercase(), b'8' | b'9' | b'a' | b'b'),
            _ => b.is_ascii_hexdigit(),
        };
        if !ok {
            return false;
        }
    }
    true
}

/// `CRABBOX_USER_TOKEN_TTL_SECONDS` semantics: unset, non-numeric or non-positive values mean
/// the default; others are truncated and clamped to `[MIN_TTL_SECONDS, MAX_TTL_SECONDS]`.
pub fn clamp_ttl(configured: Option<&str>) -> u64 {
    let Some(value) = configured.map(str::trim).filter(|v| !v.is_empty()) else {
        return DEFAULT_TTL_SECONDS;
    };
    match value.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => {
            let truncated = v.trunc().min(MAX_TTL_SECONDS as f64);
            #[expect(
                clippy::cast_sign_loss,
                reason = "the value is positive and at most MAX_TTL_SECONDS"
            )]
            let secs = truncated as u64;
            secs.clamp(MIN_TTL_SECONDS, MAX_TTL_SECONDS)
        }
        _ => DEFAULT_TTL_SECONDS,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW_SECS: i64 = 1_780_000_000;

    fn now() -> Timestamp {
        Timestamp::from_millis(NOW_SECS * 1000 + 123)
    }

    fn signer() -> TokenSigner {
        TokenSigner::new(Secret::new("session-secret"))
    }

    fn mint(kind: TokenKind) -> String {
        let gh = Secret::new("gho_abc");
        signer()
            .issue(
                kind,
                &NewToken {
                    owner: "github:42",
                    org: "openclaw",
                    login: "octo",
                    name: Some("Octo Cat"),
                    github_access_token: &gh,
                    ttl_seconds: 3600,
                },
                now(),
            )
            .unwrap()
    }

    fn good_payload() -> Value {
        let sealed = signer().seal(&Secret::new("gho_abc")).unwrap();
        json!({
            "typ": "crabbox-user", "version": 3, "ownerSource": "github-verified-email",
            "jti": "0b0e4a3e-9f5c-4c3a-8e2b-3f1f2b7c9d10", "owner": "github:42",
            "org": "openclaw", "login": "octo", "githubCredential": sealed,
            "iat": NOW_SECS - 10, "exp": NOW_SECS + 100,
        })
    }

    fn with(change: impl FnOnce(&mut Map<String, Value>)) -> String {
        let mut payload = good_payload();
        change(payload.as_object_mut().unwrap());
        signer().sign_payload(TokenKind::User, payload.to_string().as_bytes())
    }

    #[test]
    fn issued_tokens_verify_and_carry_the_payload() {
        let token = mint(TokenKind::User);
        assert!(token.starts_with("cbxu_"));
        let claims = signer().verify(TokenKind::User, &token, now()).unwrap();
        assert_eq!(claims.owner, "github:42");
        assert_eq!(claims.org, "openclaw");
        assert_eq!(claims.login, "octo");
        assert_eq!(claims.name.as_deref(), Some("Octo Cat"));
        assert_eq!(claims.iat, NOW_SECS);
        assert_eq!(claims.exp, NOW_SECS + 3600);
        assert!(is_uuid_v4(&claims.jti));
        let gh = signer().unseal(&claims.github_credential).unwrap();
        assert_eq!(gh.expose(), "gho_abc");

        // The payload has exactly the spec's keys.
        let encoded = token[5..].split('.').next().unwrap();
        let payload: Map<String, Value> =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(encoded).unwrap()).unwrap();
        let mut keys: Vec<&str> = payload.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "exp",
                "githubCredential",
                "iat",
                "jti",
                "login",
                "name",
                "org",
                "owner",
                "ownerSource",
                "typ",
                "version"
            ]
        );
    }

    #[test]
    fn kinds_do_not_cross() {
        let portal = mint(TokenKind::Portal);
        assert!(portal.starts_with("cbwp_"));
        assert!(signer().verify(TokenKind::Portal, &portal, now()).is_ok());
        assert_eq!(
            signer().verify(TokenKind::User, &portal, now()),
            Err(TokenRejection::WrongPrefix("cbxu_"))
        );
        // Same payload under the other prefix: typ mismatch.
        let relabelled = format!("cbxu_{}", &portal[5..]);
        assert_eq!(
            signer().verify(TokenKind::User, &relabelled, now()),
            Err(TokenRejection::BadClaim("typ"))
        );
    }

    #[test]
    fn rejection_rules() {
        let s = signer();
        let check = |token: &str| s.verify(TokenKind::User, token, now());
        assert!(check(&with(|_| {})).is_ok());
        let cases: Vec<(String, TokenRejection)> = vec![
            (
                with(|p| {
                    p.insert("admin".into(), json!(false));
                }),
                TokenRejection::AdminClaim,
            ),
            (
                with(|p| {
                    p.insert("version".into(), json!(2));
                }),
                TokenRejection::BadClaim("version"),
            ),
            (
                with(|p| {
                    p.insert("ownerSource".into(), json!("email"));
                }),
                TokenRejection::BadClaim("ownerSource"),
            ),
            (
                with(|p| {
                    p.insert("jti".into(), json!("0b0e4a3e-9f5c-1c3a-8e2b-3f1f2b7c9d10"));
                }),
                TokenRejection::BadJti,
            ),
            (
                with(|p| {
                    p.insert("jti".into(), json!("0b0e4a3e9f5c4c3a8e2b3f1f2b7c9d10"));
                }),
                TokenRejection::BadJti,
            ),
            (
                with(|p| {
                    p.insert("jti".into(), json!("0b0e4a3e-9f5c-4c3a-7e2b-3f1f2b7c9d10"));
                }),
                TokenRejection::BadJti,
            ),
            (
                with(|p| {
                    p.insert("iat".into(), json!(0));
                }),
                TokenRejection::BadClaim("iat"),
            ),
            (
                with(|p| {
                    p.insert("iat".into(), json!(NOW_SECS + 61));
                    p.insert("exp".into(), json!(NOW_SECS + 1000));
                }),
                TokenRejection::IssuedInFuture,
            ),
            (
                with(|p| {
                    p.insert("exp".into(), json!(NOW_SECS - 10));
                }),
                TokenRejection::BadClaim("exp"),
            ),
            (
                with(|p| {
                    p.insert("exp".into(), json!(NOW_SECS));
                    p.insert("iat".into(), json!(NOW_SECS - 100));
                }),
                TokenRejection::Expired,
            ),
            (
                with(|p| {
                    p.insert("owner".into(), json!(42));
                }),
                TokenRejection::BadClaim("owner"),
            ),
            (
                with(|p| {
                    p.remove("githubCredential");
                }),
                TokenRejection::BadClaim("githubCredential"),
            ),
            (
                with(|p| {
                    p.insert("iat".into(), json!(1.5));
                }),
                TokenRejection::BadClaim("iat"),
            ),
        ];
        for (token, want) in cases {
            assert_eq!(check(&token), Err(want.clone()), "{want}");
        }
        // iat up to 60 s ahead is tolerated.
        let skewed = with(|p| {
            p.insert("iat".into(), json!(NOW_SECS + 60));
        });
        assert!(check(&skewed).is_ok());
    }

    #[test]
    fn tampering_and_other_keys_fail_the_signature() {
        let token = mint(TokenKind::User);
        let (body, sig) = token.rsplit_once('.').unwrap();
        let mut flipped = sig.to_owned().into_bytes();
        flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
        let tampered = format!("{body}.{}", String::from_utf8(flipped).unwrap());
        let s = signer();
        assert_eq!(
            s.verify(TokenKind::User, &tampered, now()),
            Err(TokenRejection::BadSignature)
        );
        let other = TokenSigner::new(Secret::new("another-secret"));
        assert_eq!(
            other.verify(TokenKind::User, &token, now()),
            Err(TokenRejection::BadSignature)
        );
        for bad in ["cbxu_", "cbxu_abc", "cbxu_a.b.c", "cbxu_.sig", "cbxu_abc."] {
            assert!(matches!(
                s.verify(TokenKind::User, bad, now()),
                Err(TokenRejection::Malformed | TokenRejection::BadSignature)
            ));
        }
        // A validly signed non-object payload.
        let junk = s.sign_payload(TokenKind::User, b"[1,2]");
        assert_eq!(
            s.verify(TokenKind::User, &junk, now()),
            Err(TokenRejection::BadPayload)
        );
    }

    #[test]
    fn expired_at_the_boundary() {
        let token = mint(TokenKind::User);
        let s = signer();
        let just_before = Timestamp::from_millis((NOW_SECS + 3599) * 1000 + 999);
        assert!(s.verify(TokenKind::User, &token, just_before).is_ok());
        let at_exp = Timestamp::from_millis((NOW_SECS + 3600) * 1000);
        assert_eq!(
            s.verify(TokenKind::User, &token, at_exp),
            Err(TokenRejection::Expired)
        );
    }

    #[test]
    fn sealing() {
        let s = signer();
        let sealed = s.seal(&Secret::new("gho_xyz")).unwrap();
        let (iv, ct) = sealed.split_once('.').unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(iv).unwrap().len(), 12);
        assert_eq!(
            URL_SAFE_NO_PAD.decode(ct).unwrap().len(),
            "gho_xyz".len() + 16
        );
        assert_ne!(
            sealed,
            s.seal(&Secret::new("gho_xyz")).unwrap(),
            "random IV"
        );
        assert_eq!(s.unseal(&sealed).unwrap().expose(), "gho_xyz");
        assert!(
            TokenSigner::new(Secret::new("other"))
                .unseal(&sealed)
                .is_none()
        );
        let tampered = format!("{iv}.{}", URL_SAFE_NO_PAD.encode(vec![0u8; 30]));
        assert!(s.unseal(&tampered).is_none());
        assert!(s.unseal("nodot").is_none());
        assert_eq!(
            s.seal(&Secret::new("")),
            Err(TokenError::InvalidAccessToken)
        );
        assert_eq!(
            s.seal(&Secret::new("x".repeat(4097))),
            Err(TokenError::InvalidAccessToken)
        );
        assert!(s.seal(&Secret::new("x".repeat(4096))).is_ok());
    }

    #[test]
    fn credential_key_matches_the_spec_derivation() {
        // Key = SHA-256("crabbox-user-github-credential-v1\0" + secret); decrypt by hand.
        let s = signer();
        let sealed = s.seal(&Secret::new("gho_interop")).unwrap();
        let key: [u8; 32] =
            Sha256::digest(b"crabbox-user-github-credential-v1\0session-secret").into();
        let (iv, ct) = sealed.split_once('.').unwrap();
        let plain = Aes256Gcm::new(&key.into())
            .decrypt(
                Nonce::from_slice(&URL_SAFE_NO_PAD.decode(iv).unwrap()),
                URL_SAFE_NO_PAD.decode(ct).unwrap().as_slice(),
            )
            .unwrap();
        assert_eq!(plain, b"gho_interop");
    }

    #[test]
    fn ttl_clamping() {
        assert_eq!(clamp_ttl(None), 15_552_000);
        assert_eq!(clamp_ttl(Some("")), 15_552_000);
        assert_eq!(clamp_ttl(Some("abc")), 15_552_000);
        assert_eq!(clamp_ttl(Some("-5")), 15_552_000);
        assert_eq!(clamp_ttl(Some("0")), 15_552_000);
        assert_eq!(clamp_ttl(Some("60")), 3600);
        assert_eq!(clamp_ttl(Some("7200.9")), 7200);
        assert_eq!(clamp_ttl(Some("99999999999")), 31_536_000);
    }
}
