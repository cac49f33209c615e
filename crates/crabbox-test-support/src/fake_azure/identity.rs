//! The Microsoft identity platform's part: the OAuth 2.0 client credentials grant at
//! `POST /{tenant}/oauth2/v2.0/token`, the discovery documents a credential library may read
//! first (the `OpenID` configuration, instance discovery), and ARM's check of the bearer token.
//!
//! Errors are the identity platform's: `{"error", "error_description": "AADSTS…: …",
//! "error_codes", "timestamp", "trace_id", "correlation_id", "error_uri"}`.

use base64::Engine;
use serde_json::{Value, json};

use super::arm::{Answer, error};
use super::faults::AzureError;
use super::routes::Target;
use super::state::{State, Token, rfc3339, timestamp, unix_now};
use super::{CLIENT_ID, CLIENT_SECRET, TENANT_ID};

/// How long a token lives, as the identity platform answers (`expires_in`).
const LIFETIME: u64 = 3599;

/// Resources a token can be asked for (`{resource}/.default`): Resource Manager's.
const ARM_RESOURCES: [&str; 2] = [
    "https://management.azure.com",
    "https://management.core.windows.net",
];

pub(super) fn serve(
    state: &mut State,
    target: &Target,
    query: &[(String, String)],
    headers: &hyper::HeaderMap,
    body: &[u8],
) -> Answer {
    match target {
        Target::Token { tenant } => token(state, tenant, headers, body),
        Target::OpenIdConfiguration { tenant } => openid_configuration(state, tenant),
        _ => instance_discovery(state, query),
    }
}

/// An injected fault's answer, in the identity platform's shape.
pub(super) fn refusal(e: &AzureError) -> Answer {
    let answer = Answer::json(
        e.status(),
        json!({"error": "temporarily_unavailable", "error_description": format!("{}: {}", e.code(), e.message(&super::faults::ErrorContext::default()))}),
    );
    if e.status() == 429 {
        answer.header("Retry-After", "1")
    } else {
        answer
    }
}

fn known_tenant(tenant: &str) -> bool {
    tenant.eq_ignore_ascii_case(TENANT_ID)
}

fn aad_error(state: &State, status: u16, error: &str, code: u32, description: &str) -> Answer {
    let (trace, correlation) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let now = timestamp();
    Answer::json(
        status,
        json!({
            "error": error,
            "error_description": format!(
                "AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {now}"
            ),
            "error_codes": [code],
            "timestamp": now,
            "trace_id": trace.to_string(),
            "correlation_id": correlation.to_string(),
            "error_uri": format!("{}/error?code={code}", state.base),
        }),
    )
}

fn tenant_not_found(state: &State, error: &str, tenant: &str) -> Answer {
    aad_error(
        state,
        400,
        error,
        90002,
        &format!(
            "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and \
             are signing into the correct cloud. Check with your subscription administrator, \
             this may happen if there are no active subscriptions for the tenant."
        ),
    )
}

/// The client credentials grant.
fn token(state: &mut State, tenant: &str, headers: &hyper::HeaderMap, body: &[u8]) -> Answer {
    if !known_tenant(tenant) {
        return tenant_not_found(state, "invalid_request", tenant);
    }
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let (mut client_id, mut secret) = (field("client_id"), field("client_secret"));
    if let Some((id, pass)) = basic_credentials(headers) {
        client_id.get_or_insert(id);
        secret.get_or_insert(pass);
    }
    let grant = field("grant_type").unwrap_or_default();
    if grant != "client_credentials" {
        return aad_error(
            state,
            400,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        );
    }
    let Some(client_id) = client_id else {
        return missing(state, "client_id");
    };
    if !client_id.eq_ignore_ascii_case(CLIENT_ID) {
        return aad_error(
            state,
            400,
            "unauthorized_client",
            700_016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory \
                 '{TENANT_ID}'. This can happen if the application has not been installed by the \
                 administrator of the tenant or consented to by any user in the tenant. You may \
                 have sent your authentication request to the wrong tenant."
            ),
        );
    }
    let Some(secret) = secret else {
        return aad_error(
            state,
            401,
            "invalid_client",
            7_000_216,
            "'client_assertion', 'client_secret' or 'request' is required for the \
             'client_credentials' grant type.",
        );
    };
    if secret != CLIENT_SECRET {
        return aad_error(
            state,
            401,
            "invalid_client",
            7_000_215,
            &format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is \
                 the client secret value, not the client secret ID, for a secret added to app \
                 '{CLIENT_ID}'."
            ),
        );
    }
    let Some(scope) = field("scope") else {
        return missing(state, "scope");
    };
    let Some(resource) = scope.strip_suffix("/.default") else {
        return aad_error(
            state,
            400,
            "invalid_scope",
            1_002_012,
            &format!(
                "The provided value for scope {scope} is not valid. Client credential flows must \
                 have a scope value with /.default suffixed to the resource identifier \
                 (application ID URI)."
            ),
        );
    };
    let resource = resource.trim_end_matches('/');
    if !ARM_RESOURCES.contains(&resource) && resource != state.base {
        return aad_error(
            state,
            400,
            "invalid_resource",
            500_011,
            &format!(
                "The resource principal named {resource} was not found in the tenant named \
                 {TENANT_ID}. This can happen if the application has not been installed by the \
                 administrator of the tenant or consented to by any user in the tenant. You \
                 might have sent your authentication request to the wrong tenant."
            ),
        );
    }
    let now = unix_now();
    let access_token = jwt(resource, now);
    state.tokens.insert(
        access_token.clone(),
        Token {
            expired: false,
            expires_on: now + LIFETIME,
        },
    );
    Answer::json(
        200,
        json!({
            "token_type": "Bearer",
            "expires_in": LIFETIME,
            "ext_expires_in": LIFETIME,
            "access_token": access_token,
        }),
    )
    .header("Cache-Control", "no-store, no-cache")
    .header("Pragma", "no-cache")
}

fn missing(state: &State, parameter: &str) -> Answer {
    aad_error(
        state,
        400,
        "invalid_request",
        900_144,
        &format!("The request body must contain the following parameter: '{parameter}'."),
    )
}

/// `client_secret_basic`: `Authorization: Basic base64(urlencoded id ":" urlencoded secret)`.
fn basic_credentials(headers: &hyper::HeaderMap) -> Option<(String, String)> {
    let value = headers.get(hyper::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((unescape(id)?, unescape(secret)?))
}

/// An access token shaped like the identity platform's (a JWT with the usual claims); its
/// signature is random, as nothing but this fake checks it.
fn jwt(resource: &str, now: u64) -> String {
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let header = json!({"typ": "JWT", "alg": "RS256", "kid": "fake-azure"});
    let claims = json!({
        "aud": resource,
        "iss": format!("https://sts.windows.net/{TENANT_ID}/"),
        "iat": now, "nbf": now, "exp": now + LIFETIME,
        "appid": CLIENT_ID, "appidacr": "1", "idtyp": "app",
        "oid": uuid::Uuid::new_v4().to_string(), "sub": CLIENT_ID,
        "tid": TENANT_ID, "ver": "1.0",
    });
    let signature =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes());
    format!("{}.{}.{signature}", b64(&header), b64(&claims))
}

/// ARM's token check: a bearer token this fake issued, not expired.
pub(super) fn authenticate(state: &State, headers: &hyper::HeaderMap) -> Result<(), Answer> {
    let refuse = |code: &str, message: String, description: &str| {
        error(401, code, message).header(
            "WWW-Authenticate",
            format!(
                "Bearer authorization_uri=\"{}/{TENANT_ID}\", error=\"invalid_token\", \
                 error_description=\"{description}\"",
                state.base
            ),
        )
    };
    let Some(value) = headers.get(hyper::header::AUTHORIZATION) else {
        return Err(refuse(
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.".to_owned(),
            "The authentication failed because of missing 'Authorization' header.",
        ));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let Some(token) = token else {
        return Err(refuse(
            "AuthenticationFailedInvalidHeader",
            "Authentication failed. The 'Authorization' header is provided in an invalid format."
                .to_owned(),
            "The authentication failed because of an invalid 'Authorization' header.",
        ));
    };
    match state.tokens.get(token) {
        None => Err(refuse(
            "InvalidAuthenticationToken",
            "The access token is invalid.".to_owned(),
            "The access token is invalid.",
        )),
        Some(t) if t.expired || t.expires_on <= unix_now() => Err(refuse(
            "ExpiredAuthenticationToken",
            format!(
                "The access token expiry UTC time '{}' is earlier than current UTC time '{}'.",
                rfc3339(t.expires_on.min(unix_now())),
                timestamp()
            ),
            "The access token has expired.",
        )),
        Some(_) => Ok(()),
    }
}

/// `GET /{tenant}/v2.0/.well-known/openid-configuration`.
fn openid_configuration(state: &State, tenant: &str) -> Answer {
    let shared = ["common", "organizations"].contains(&tenant.to_ascii_lowercase().as_str());
    if !known_tenant(tenant) && !shared {
        return tenant_not_found(state, "invalid_tenant", tenant);
    }
    let authority = format!("{}/{tenant}", state.base);
    let issuer_tenant = if shared { "{tenantid}" } else { TENANT_ID };
    Answer::json(
        200,
        json!({
            "token_endpoint": format!("{authority}/oauth2/v2.0/token"),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": format!("{authority}/discovery/v2.0/keys"),
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": format!("{}/{issuer_tenant}/v2.0", state.base),
            "request_uri_parameter_supported": false,
            "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
            "authorization_endpoint": format!("{authority}/oauth2/v2.0/authorize"),
            "device_authorization_endpoint": format!("{authority}/oauth2/v2.0/devicecode"),
            "http_logout_supported": true,
            "frontchannel_logout_supported": true,
            "end_session_endpoint": format!("{authority}/oauth2/v2.0/logout"),
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "tid", "ver"],
            "kerberos_endpoint": format!("{authority}/kerberos"),
            "tenant_region_scope": "NA",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net"
        }),
    )
}

/// `GET /common/discovery/instance?api-version=1.1&authorization_endpoint=…`: this host is
/// its own only alias.
fn instance_discovery(state: &State, query: &[(String, String)]) -> Answer {
    let tenant = query
        .iter()
        .find(|(k, _)| k == "authorization_endpoint")
        .and_then(|(_, v)| url::Url::parse(v).ok())
        .and_then(|u| u.path_segments()?.next().map(str::to_owned))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| TENANT_ID.to_owned());
    let host = state.base.trim_start_matches("https://").to_owned();
    Answer::json(
        200,
        json!({
            "tenant_discovery_endpoint": format!("{}/{tenant}/v2.0/.well-known/openid-configuration", state.base),
            "api-version": "1.1",
            "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}]
        }),
    )
}
