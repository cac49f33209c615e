//! Reading the individual variables: lists, URLs, teams, revocations, proxy settings.

use std::collections::HashMap;

use http::HeaderName;
use url::Url;

use super::{
    AllowedTeam, DEFAULT_GITHUB_API_URL, DEFAULT_GITHUB_URL, DEFAULT_MEMBERSHIP_CACHE_SECONDS,
    GithubConfig, MAX_MEMBERSHIP_CACHE_SECONDS, PROXY_SECRET_HEADER, ProxySecret,
    TrustedProxyConfig, github_account_id,
};
use crate::org;
use crate::proxy;
use crate::secret::Secret;

pub(super) struct Vars(pub(super) HashMap<String, String>);

impl Vars {
    /// A set, non-blank value.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    pub(super) fn raw(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

fn env_list(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or("")
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

fn url_setting(vars: &Vars, name: &str, default: &str, problems: &mut Vec<String>) -> Url {
    let raw = vars.get(name).map_or(default, str::trim);
    match Url::parse(raw.trim_end_matches('/')) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => url,
        _ => {
            problems.push(format!("{name} must be an http(s) URL"));
            Url::parse(default).expect("default URL parses")
        }
    }
}

pub(super) fn github_config(vars: &Vars, problems: &mut Vec<String>) -> GithubConfig {
    let orgs_raw = vars
        .get("CRABBOX_GITHUB_ALLOWED_ORGS")
        .or_else(|| vars.get("CRABBOX_GITHUB_ALLOWED_ORG"));
    let mut allowed_orgs = env_list(orgs_raw);
    if allowed_orgs.is_empty() {
        allowed_orgs = env_list(vars.raw("CRABBOX_DEFAULT_ORG"));
    }

    let (teams_name, teams_raw) = match vars.get("CRABBOX_GITHUB_ALLOWED_TEAMS") {
        Some(v) => ("CRABBOX_GITHUB_ALLOWED_TEAMS", Some(v)),
        None => (
            "CRABBOX_GITHUB_ALLOWED_TEAM",
            vars.get("CRABBOX_GITHUB_ALLOWED_TEAM"),
        ),
    };
    let mut allowed_teams = Vec::new();
    if let Some(raw) = teams_raw {
        for entry in raw.split(',').map(|s| s.trim().to_ascii_lowercase()) {
            if let Some(team) = parse_team(&entry) {
                allowed_teams.push(team);
            } else {
                problems.push(format!(
                    "{teams_name} contains an invalid entry; use team-slug or org/team-slug without empty entries"
                ));
                break;
            }
        }
    }

    let revoked_users = env_list(vars.get("CRABBOX_GITHUB_REVOKED_USERS"));
    let mut revoked = Vec::new();
    for entry in revoked_users {
        let owner = entry.strip_prefix("owner:").unwrap_or(&entry);
        if github_account_id(owner).is_some() {
            revoked.push(owner.to_owned());
        } else {
            problems.push(
                "CRABBOX_GITHUB_REVOKED_USERS contains a mutable or invalid selector; use github:<numeric-id>"
                    .into(),
            );
            break;
        }
    }

    let membership_cache_seconds = match vars.get("CRABBOX_GITHUB_MEMBERSHIP_CACHE_SECONDS") {
        None => DEFAULT_MEMBERSHIP_CACHE_SECONDS,
        Some(v) => match v.trim().parse::<f64>() {
            Ok(n) if n.is_finite() && n < 0.0 => DEFAULT_MEMBERSHIP_CACHE_SECONDS,
            Ok(n) if n.is_finite() => {
                #[expect(
                    clippy::cast_sign_loss,
                    reason = "non-negative and clamped to MAX_MEMBERSHIP_CACHE_SECONDS"
                )]
                let secs = n.trunc().min(MAX_MEMBERSHIP_CACHE_SECONDS as f64) as u64;
                secs
            }
            _ => {
                problems.push(
                    "CRABBOX_GITHUB_MEMBERSHIP_CACHE_SECONDS must be a number of seconds".into(),
                );
                DEFAULT_MEMBERSHIP_CACHE_SECONDS
            }
        },
    };

    GithubConfig {
        client_id: vars
            .get("CRABBOX_GITHUB_CLIENT_ID")
            .map(|v| v.trim().to_owned()),
        client_secret: vars
            .raw("CRABBOX_GITHUB_CLIENT_SECRET")
            .filter(|v| !v.is_empty())
            .map(Secret::new),
        api_url: url_setting(
            vars,
            "CRABBOX_GITHUB_API_URL",
            DEFAULT_GITHUB_API_URL,
            problems,
        ),
        web_url: url_setting(vars, "CRABBOX_GITHUB_URL", DEFAULT_GITHUB_URL, problems),
        allowed_orgs,
        allowed_teams,
        admin_owners: env_list(vars.get("CRABBOX_GITHUB_ADMIN_OWNERS")),
        revoked_users: revoked,
        membership_cache_seconds,
    }
}

fn parse_team(entry: &str) -> Option<AllowedTeam> {
    let mut parts = entry.split('/');
    let (first, second, third) = (parts.next()?, parts.next(), parts.next());
    if third.is_some() {
        return None;
    }
    let (org, slug) = match second {
        Some(slug) => (Some(first), slug),
        None => (None, first),
    };
    if org.is_some_and(|o| !valid_org_selector(o)) || !valid_team_slug(slug) {
        return None;
    }
    Some(AllowedTeam {
        org: org.map(str::to_owned),
        slug: slug.to_owned(),
    })
}

fn valid_slug_shape(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// A GitHub org login as a selector: lowercase alphanumerics and single inner hyphens, ≤39.
pub fn valid_org_selector(value: &str) -> bool {
    value.len() <= 39 && valid_slug_shape(value) && !value.contains("--")
}

fn valid_team_slug(value: &str) -> bool {
    value.len() <= 100 && valid_slug_shape(value)
}

pub(super) fn proxy_config(vars: &Vars, problems: &mut Vec<String>) -> TrustedProxyConfig {
    let cidrs = proxy::parse_cidrs(vars.raw("CRABBOX_TRUSTED_PROXY_CIDRS").unwrap_or(""))
        .unwrap_or_else(|_| {
            problems.push(
                "CRABBOX_TRUSTED_PROXY_CIDRS must be comma-separated IPv4/IPv6 addresses or CIDRs"
                    .into(),
            );
            Vec::new()
        });
    let user_header = match vars.get("CRABBOX_TRUSTED_USER_HEADER").map(str::trim) {
        None => None,
        Some(name) => {
            let token = name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+.^_`|~-".contains(&b));
            match HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) {
                Ok(header) if token && header.as_str() != PROXY_SECRET_HEADER => Some(header),
                _ => {
                    problems.push(
                        "CRABBOX_TRUSTED_USER_HEADER must be an HTTP header name other than x-crabbox-proxy-secret"
                            .into(),
                    );
                    None
                }
            }
        }
    };
    let user_org = vars
        .raw("CRABBOX_TRUSTED_USER_ORG")
        .filter(|v| !v.is_empty());
    if let Some(label) = user_org
        && org::validate_label(label, "CRABBOX_TRUSTED_USER_ORG").is_err()
    {
        problems.push(
            "CRABBOX_TRUSTED_USER_ORG must be 1-63 printable ASCII characters without leading or trailing spaces"
                .into(),
        );
    }
    let secret = match vars.raw("CRABBOX_TRUSTED_PROXY_SECRET") {
        None => ProxySecret::NotRequired,
        Some("") => ProxySecret::RejectAll,
        Some(s) => ProxySecret::Required(Secret::new(s)),
    };
    TrustedProxyConfig {
        cidrs,
        user_header,
        user_org: user_org.map(str::to_owned),
        secret,
    }
}
