//! Authentication settings, read from `CRABBOX_*` variables handed in by the caller (this crate
//! never reads the process environment). Problems are reported by variable name, never with the
//! value, since most of these values are credentials.

use std::fmt;

use http::HeaderName;
use url::Url;

use crate::org;
use crate::proxy::Cidr;
use crate::secret::Secret;
use crate::token;

mod vars;

pub use vars::valid_org_selector;
use vars::{Vars, github_config, proxy_config};

pub const DEFAULT_GITHUB_API_URL: &str = "https://api.github.com";
pub const DEFAULT_GITHUB_URL: &str = "https://github.com";
pub const DEFAULT_MEMBERSHIP_CACHE_SECONDS: u64 = 300;
pub const MAX_MEMBERSHIP_CACHE_SECONDS: u64 = 3600;
pub const PROXY_SECRET_HEADER: &str = "x-crabbox-proxy-secret";

/// Every variable this crate reads, with whether it holds a credential.
pub const VARIABLES: &[(&str, bool)] = &[
    ("CRABBOX_SHARED_TOKEN", true),
    ("CRABBOX_ADMIN_TOKEN", true),
    ("CRABBOX_SHARED_OWNER", false),
    ("CRABBOX_DEFAULT_ORG", false),
    ("CRABBOX_SESSION_SECRET", true),
    ("CRABBOX_USER_TOKEN_TTL_SECONDS", false),
    ("CRABBOX_PUBLIC_URL", false),
    ("CRABBOX_GITHUB_CLIENT_ID", false),
    ("CRABBOX_GITHUB_CLIENT_SECRET", true),
    ("CRABBOX_GITHUB_API_URL", false),
    ("CRABBOX_GITHUB_URL", false),
    ("CRABBOX_GITHUB_ALLOWED_ORGS", false),
    ("CRABBOX_GITHUB_ALLOWED_ORG", false),
    ("CRABBOX_GITHUB_ALLOWED_TEAMS", false),
    ("CRABBOX_GITHUB_ALLOWED_TEAM", false),
    ("CRABBOX_GITHUB_ADMIN_OWNERS", false),
    ("CRABBOX_GITHUB_REVOKED_USERS", false),
    ("CRABBOX_GITHUB_MEMBERSHIP_CACHE_SECONDS", false),
    ("CRABBOX_TRUSTED_PROXY_CIDRS", false),
    ("CRABBOX_TRUSTED_USER_HEADER", false),
    ("CRABBOX_TRUSTED_USER_ORG", false),
    ("CRABBOX_TRUSTED_PROXY_SECRET", true),
];

/// One or more invalid variables.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid authentication settings: {}", .problems.join("; "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

/// A team that may use GitHub login: `slug` (in the token's org) or `org/slug`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedTeam {
    pub org: Option<String>,
    pub slug: String,
}

/// What `CRABBOX_TRUSTED_PROXY_SECRET` demands of a proxied request.
#[derive(Debug, Clone)]
pub enum ProxySecret {
    /// Unset: the trusted peer alone is enough.
    NotRequired,
    /// The request must carry this value in `x-crabbox-proxy-secret`.
    Required(Secret),
    /// Set but empty: proxy identities are always refused.
    RejectAll,
}

/// GitHub OAuth and membership settings.
#[derive(Debug, Clone)]
pub struct GithubConfig {
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    /// REST API base, without a trailing slash.
    pub api_url: Url,
    /// Web base for `/login/oauth/*`, without a trailing slash.
    pub web_url: Url,
    /// Lowercase org logins whose members may log in.
    pub allowed_orgs: Vec<String>,
    pub allowed_teams: Vec<AllowedTeam>,
    /// Lowercase `github:<id>` owners who are admins.
    pub admin_owners: Vec<String>,
    /// Lowercase `github:<id>` owners denied outright.
    pub revoked_users: Vec<String>,
    /// How long a successful revalidation is trusted; 0 disables the cache.
    pub membership_cache_seconds: u64,
}

/// Trusted reverse-proxy identity settings.
#[derive(Debug, Clone)]
pub struct TrustedProxyConfig {
    pub cidrs: Vec<Cidr>,
    pub user_header: Option<HeaderName>,
    pub user_org: Option<String>,
    pub secret: ProxySecret,
}

/// Everything authentication needs to know.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub shared_token: Option<Secret>,
    pub admin_token: Option<Secret>,
    pub shared_owner: Option<String>,
    pub default_org: Option<String>,
    pub session_secret: Option<Secret>,
    pub user_token_ttl_seconds: u64,
    /// `CRABBOX_PUBLIC_URL` as given (trimmed); see [`AuthConfig::public_origin`].
    pub public_url: Option<String>,
    pub github: GithubConfig,
    pub trusted_proxy: TrustedProxyConfig,
    /// Settings that are accepted but probably not what the operator meant.
    pub warnings: Vec<String>,
}

/// Why `CRABBOX_PUBLIC_URL` cannot anchor GitHub login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrlError {
    /// `github_public_url_required` or `github_public_url_invalid`.
    pub code: &'static str,
    pub message: &'static str,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self::from_env(std::iter::empty::<(&str, &str)>()).expect("empty settings are valid")
    }
}

impl AuthConfig {
    /// Reads the settings from `CRABBOX_*` variables (other names are ignored).
    pub fn from_env<I, K, V>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let vars = Vars(
            vars.into_iter()
                .filter(|(k, _)| k.as_ref().starts_with("CRABBOX_"))
                .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
                .collect(),
        );
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        let secret = |name: &str| vars.raw(name).filter(|v| !v.is_empty()).map(Secret::new);

        let shared_token = secret("CRABBOX_SHARED_TOKEN");
        let admin_token = secret("CRABBOX_ADMIN_TOKEN");
        let session_secret = secret("CRABBOX_SESSION_SECRET");
        if let (Some(session), Some(shared)) = (&session_secret, &shared_token)
            && shared.matches(session.expose())
        {
            problems.push("CRABBOX_SESSION_SECRET must differ from CRABBOX_SHARED_TOKEN".into());
        }
        if let (Some(admin), Some(shared)) = (&admin_token, &shared_token)
            && shared.matches(admin.expose())
        {
            warnings.push(
                "CRABBOX_ADMIN_TOKEN equals CRABBOX_SHARED_TOKEN, so every shared-token caller is an admin"
                    .into(),
            );
        }

        let default_org = vars.raw("CRABBOX_DEFAULT_ORG").filter(|v| !v.is_empty());
        if let Some(label) = default_org
            && org::validate_label(label, "CRABBOX_DEFAULT_ORG").is_err()
        {
            problems.push(
                "CRABBOX_DEFAULT_ORG must be 1-63 printable ASCII characters without leading or trailing spaces"
                    .into(),
            );
        }

        let user_token_ttl_seconds = match vars.get("CRABBOX_USER_TOKEN_TTL_SECONDS") {
            Some(v) if !v.trim().parse::<f64>().is_ok_and(f64::is_finite) => {
                problems.push("CRABBOX_USER_TOKEN_TTL_SECONDS must be a number of seconds".into());
                token::DEFAULT_TTL_SECONDS
            }
            v => token::clamp_ttl(v),
        };

        let public_url = vars.get("CRABBOX_PUBLIC_URL").map(|v| v.trim().to_owned());
        let github = github_config(&vars, &mut problems);
        let trusted_proxy = proxy_config(&vars, &mut problems);

        for name in ["CRABBOX_ACCESS_TEAM_DOMAIN", "CRABBOX_ACCESS_AUD"] {
            if vars.get(name).is_some() {
                warnings.push(format!(
                    "{name} is set but Cloudflare Access JWTs are not verified by this coordinator"
                ));
            }
        }

        let config = Self {
            shared_token,
            admin_token,
            shared_owner: vars
                .get("CRABBOX_SHARED_OWNER")
                .map(|v| v.trim().to_owned()),
            default_org: default_org.map(str::to_owned),
            session_secret,
            user_token_ttl_seconds,
            public_url,
            github,
            trusted_proxy,
            warnings,
        };
        let mut config = config;
        if let Err(e) = config.public_origin()
            && config.public_url.is_some()
        {
            config
                .warnings
                .push(format!("{}; GitHub login will be unavailable", e.message));
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError { problems })
        }
    }

    /// The public origin (`https://crabbox.example.com`) GitHub redirects back to.
    pub fn public_origin(&self) -> Result<String, PublicUrlError> {
        let Some(raw) = &self.public_url else {
            return Err(PublicUrlError {
                code: "github_public_url_required",
                message: "CRABBOX_PUBLIC_URL is required before GitHub OAuth can start.",
            });
        };
        let invalid = PublicUrlError {
            code: "github_public_url_invalid",
            message: "CRABBOX_PUBLIC_URL must be a canonical HTTPS origin (HTTP is allowed only for loopback development).",
        };
        let url = Url::parse(raw).map_err(|_| invalid.clone())?;
        let loopback_http = url.scheme() == "http"
            && matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
        if (url.scheme() != "https" && !loopback_http)
            || !url.username().is_empty()
            || url.password().is_some()
            || url.host_str().is_none()
        {
            return Err(invalid);
        }
        Ok(url.origin().ascii_serialization())
    }

    /// The OAuth callback URL registered with GitHub.
    pub fn github_redirect_uri(&self) -> Result<String, PublicUrlError> {
        Ok(format!("{}/v1/auth/github/callback", self.public_origin()?))
    }

    /// Each variable with `set`/`unset` for credentials and the value for everything else,
    /// for `--help` and start-up logs.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let set = |s: &Option<Secret>| if s.is_some() { "set" } else { "unset" }.to_owned();
        let opt = |s: &Option<String>| s.clone().unwrap_or_else(|| "unset".into());
        let list = |l: &[String]| {
            if l.is_empty() {
                "unset".to_owned()
            } else {
                l.join(",")
            }
        };
        let teams: Vec<String> = self
            .github
            .allowed_teams
            .iter()
            .map(|t| match &t.org {
                Some(org) => format!("{org}/{}", t.slug),
                None => t.slug.clone(),
            })
            .collect();
        let cidrs: Vec<String> = self
            .trusted_proxy
            .cidrs
            .iter()
            .map(ToString::to_string)
            .collect();
        vec![
            ("CRABBOX_SHARED_TOKEN", set(&self.shared_token)),
            ("CRABBOX_ADMIN_TOKEN", set(&self.admin_token)),
            ("CRABBOX_SHARED_OWNER", opt(&self.shared_owner)),
            ("CRABBOX_DEFAULT_ORG", opt(&self.default_org)),
            ("CRABBOX_SESSION_SECRET", set(&self.session_secret)),
            (
                "CRABBOX_USER_TOKEN_TTL_SECONDS",
                self.user_token_ttl_seconds.to_string(),
            ),
            ("CRABBOX_PUBLIC_URL", opt(&self.public_url)),
            ("CRABBOX_GITHUB_CLIENT_ID", opt(&self.github.client_id)),
            (
                "CRABBOX_GITHUB_CLIENT_SECRET",
                set(&self.github.client_secret),
            ),
            ("CRABBOX_GITHUB_API_URL", self.github.api_url.to_string()),
            ("CRABBOX_GITHUB_URL", self.github.web_url.to_string()),
            (
                "CRABBOX_GITHUB_ALLOWED_ORGS",
                list(&self.github.allowed_orgs),
            ),
            ("CRABBOX_GITHUB_ALLOWED_TEAMS", list(&teams)),
            (
                "CRABBOX_GITHUB_ADMIN_OWNERS",
                list(&self.github.admin_owners),
            ),
            (
                "CRABBOX_GITHUB_REVOKED_USERS",
                list(&self.github.revoked_users),
            ),
            (
                "CRABBOX_GITHUB_MEMBERSHIP_CACHE_SECONDS",
                self.github.membership_cache_seconds.to_string(),
            ),
            ("CRABBOX_TRUSTED_PROXY_CIDRS", list(&cidrs)),
            (
                "CRABBOX_TRUSTED_USER_HEADER",
                self.trusted_proxy
                    .user_header
                    .as_ref()
                    .map_or_else(|| "unset".into(), ToString::to_string),
            ),
            (
                "CRABBOX_TRUSTED_USER_ORG",
                opt(&self.trusted_proxy.user_org),
            ),
            (
                "CRABBOX_TRUSTED_PROXY_SECRET",
                match self.trusted_proxy.secret {
                    ProxySecret::NotRequired => "unset",
                    ProxySecret::Required(_) => "set",
                    ProxySecret::RejectAll => "set (empty: proxy identities refused)",
                }
                .to_owned(),
            ),
        ]
    }

    /// Whether `owner` is a GitHub admin (`github:<id>` listed in
    /// `CRABBOX_GITHUB_ADMIN_OWNERS`).
    pub fn is_github_admin(&self, owner: &str) -> bool {
        let owner = owner.trim().to_ascii_lowercase();
        github_account_id(&owner).is_some() && self.github.admin_owners.contains(&owner)
    }

    /// Whether `owner` is listed in `CRABBOX_GITHUB_REVOKED_USERS`.
    pub fn is_revoked(&self, owner: &str) -> bool {
        let owner = owner.trim().to_ascii_lowercase();
        self.github.revoked_users.contains(&owner)
    }

    /// Whether GitHub login can be offered at all (client id and secret set).
    pub fn github_oauth_configured(&self) -> bool {
        self.github.client_id.is_some() && self.github.client_secret.is_some()
    }

    /// The secrets the diagnostic redactor must never let through.
    pub fn secrets(&self) -> Vec<&str> {
        let mut out = Vec::new();
        for secret in [
            &self.shared_token,
            &self.admin_token,
            &self.session_secret,
            &self.github.client_secret,
        ]
        .into_iter()
        .flatten()
        {
            out.push(secret.expose());
        }
        if let ProxySecret::Required(s) = &self.trusted_proxy.secret {
            out.push(s.expose());
        }
        out
    }
}

impl fmt::Display for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, value) in self.describe() {
            writeln!(f, "{name}={value}")?;
        }
        Ok(())
    }
}

/// The numeric id of a `github:<id>` owner.
pub fn github_account_id(owner: &str) -> Option<u64> {
    let digits = owner.trim().to_ascii_lowercase();
    let digits = digits.strip_prefix("github:")?;
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Ids beyond 2^53 could not round-trip through the original coordinator's JSON numbers.
    digits.parse::<u64>().ok().filter(|id| *id < (1 << 53))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<AuthConfig, ConfigError> {
        AuthConfig::from_env(pairs.iter().copied())
    }

    #[test]
    fn defaults() {
        let c = cfg(&[("PATH", "/bin")]).unwrap();
        assert!(c.shared_token.is_none());
        assert_eq!(c.user_token_ttl_seconds, 15_552_000);
        assert_eq!(c.github.membership_cache_seconds, 300);
        assert_eq!(c.github.api_url.as_str(), "https://api.github.com/");
        assert_eq!(c.github.web_url.as_str(), "https://github.com/");
        assert!(matches!(c.trusted_proxy.secret, ProxySecret::NotRequired));
        assert!(c.warnings.is_empty());
        assert_eq!(
            c.public_origin().unwrap_err().code,
            "github_public_url_required"
        );
    }

    #[test]
    fn session_secret_must_differ_from_shared_token() {
        let err = cfg(&[
            ("CRABBOX_SHARED_TOKEN", "same-value"),
            ("CRABBOX_SESSION_SECRET", "same-value"),
        ])
        .unwrap_err();
        assert_eq!(
            err.problems,
            ["CRABBOX_SESSION_SECRET must differ from CRABBOX_SHARED_TOKEN"]
        );
        assert!(!err.to_string().contains("same-value"));
    }

    #[test]
    fn problems_name_the_variable_not_the_value() {
        let err = cfg(&[
            ("CRABBOX_TRUSTED_PROXY_CIDRS", "10.0.0.0/8,secret-ish"),
            ("CRABBOX_GITHUB_REVOKED_USERS", "github:1,octocat"),
            ("CRABBOX_GITHUB_ALLOWED_TEAMS", "core,,ops"),
            ("CRABBOX_TRUSTED_USER_HEADER", "x-crabbox-proxy-secret"),
            ("CRABBOX_USER_TOKEN_TTL_SECONDS", "soon"),
            ("CRABBOX_GITHUB_MEMBERSHIP_CACHE_SECONDS", "lots"),
            ("CRABBOX_GITHUB_API_URL", "ftp://x"),
            ("CRABBOX_DEFAULT_ORG", " padded"),
        ])
        .unwrap_err();
        let text = err.to_string();
        for name in [
            "CRABBOX_TRUSTED_PROXY_CIDRS",
            "CRABBOX_GITHUB_REVOKED_USERS",
            "CRABBOX_GITHUB_ALLOWED_TEAMS",
            "CRABBOX_TRUSTED_USER_HEADER",
            "CRABBOX_USER_TOKEN_TTL_SECONDS",
            "CRABBOX_GITHUB_MEMBERSHIP_CACHE_SECONDS",
            "CRABBOX_GITHUB_API_URL",
            "CRABBOX_DEFAULT_ORG",
        ] {
            assert!(text.contains(name), "{name} in {text}");
        }
        for value in ["secret-ish", "octocat", "soon", "lots", "ftp", "padded"] {
            assert!(!text.contains(value), "{value} leaked in {text}");
        }
        assert_eq!(err.problems.len(), 8);
    }

    #[test]
    fn github_lists() {
        let c = cfg(&[
            ("CRABBOX_DEFAULT_ORG", "OpenClaw"),
            ("CRABBOX_GITHUB_ALLOWED_ORG", "Other"),
            ("CRABBOX_GITHUB_ALLOWED_TEAMS", "Core, openclaw/ops"),
            ("CRABBOX_GITHUB_ALLOWED_TEAM", "ignored"),
            ("CRABBOX_GITHUB_ADMIN_OWNERS", "GitHub:7, octocat"),
            ("CRABBOX_GITHUB_REVOKED_USERS", "owner:github:9,github:10"),
            ("CRABBOX_GITHUB_MEMBERSHIP_CACHE_SECONDS", "99999"),
        ])
        .unwrap();
        assert_eq!(c.github.allowed_orgs, ["other"]);
        assert_eq!(
            c.github.allowed_teams,
            [
                AllowedTeam {
                    org: None,
                    slug: "core".into()
                },
                AllowedTeam {
                    org: Some("openclaw".into()),
                    slug: "ops".into()
                }
            ]
        );
        assert!(c.is_github_admin("github:7"));
        assert!(
            !c.is_github_admin("octocat"),
            "only github:<id> owners can be admins"
        );
        assert!(c.is_revoked("github:9") && c.is_revoked("GITHUB:10"));
        assert!(!c.is_revoked("github:7"));
        assert_eq!(c.github.membership_cache_seconds, 3600);

        let fallback = cfg(&[("CRABBOX_DEFAULT_ORG", "OpenClaw")]).unwrap();
        assert_eq!(fallback.github.allowed_orgs, ["openclaw"]);
        let zero = cfg(&[("CRABBOX_GITHUB_MEMBERSHIP_CACHE_SECONDS", "0")]).unwrap();
        assert_eq!(zero.github.membership_cache_seconds, 0);
        let negative = cfg(&[("CRABBOX_GITHUB_MEMBERSHIP_CACHE_SECONDS", "-1")]).unwrap();
        assert_eq!(negative.github.membership_cache_seconds, 300);
    }

    #[test]
    fn proxy_settings() {
        let c = cfg(&[
            ("CRABBOX_TRUSTED_PROXY_CIDRS", "10.0.0.0/8, ::1"),
            ("CRABBOX_TRUSTED_USER_HEADER", "X-Forwarded-User"),
            ("CRABBOX_TRUSTED_PROXY_SECRET", ""),
        ])
        .unwrap();
        assert_eq!(c.trusted_proxy.cidrs.len(), 2);
        assert_eq!(
            c.trusted_proxy.user_header.as_ref().unwrap().as_str(),
            "x-forwarded-user"
        );
        assert!(matches!(c.trusted_proxy.secret, ProxySecret::RejectAll));
        assert!(cfg(&[("CRABBOX_TRUSTED_USER_HEADER", "bad header")]).is_err());
    }

    #[test]
    fn public_origin_rules() {
        let origin = |url: &str| cfg(&[("CRABBOX_PUBLIC_URL", url)]).unwrap().public_origin();
        assert_eq!(
            origin("https://crabbox.example.com/portal").unwrap(),
            "https://crabbox.example.com"
        );
        assert_eq!(
            origin("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            origin("http://localhost:8080/").unwrap(),
            "http://localhost:8080"
        );
        assert_eq!(origin("http://[::1]:9").unwrap(), "http://[::1]:9");
        for bad in [
            "http://crabbox.example.com",
            "https://u:p@x.example.com",
            "not a url",
        ] {
            assert_eq!(
                origin(bad).unwrap_err().code,
                "github_public_url_invalid",
                "{bad}"
            );
        }
        let c = cfg(&[("CRABBOX_PUBLIC_URL", "http://example.com")]).unwrap();
        assert_eq!(c.warnings.len(), 1);
    }

    #[test]
    fn describe_hides_secrets() {
        let c = cfg(&[
            ("CRABBOX_SHARED_TOKEN", "tok-123"),
            ("CRABBOX_TRUSTED_PROXY_SECRET", "psst"),
            ("CRABBOX_DEFAULT_ORG", "openclaw"),
        ])
        .unwrap();
        let text = c.to_string();
        assert!(text.contains("CRABBOX_SHARED_TOKEN=set\n"));
        assert!(text.contains("CRABBOX_ADMIN_TOKEN=unset\n"));
        assert!(text.contains("CRABBOX_DEFAULT_ORG=openclaw\n"));
        assert!(!text.contains("tok-123") && !text.contains("psst"));
        assert!(!format!("{c:?}").contains("tok-123"));
        assert_eq!(
            c.describe().len(),
            VARIABLES.len() - 2,
            "singular aliases fold into plurals"
        );
    }
}
