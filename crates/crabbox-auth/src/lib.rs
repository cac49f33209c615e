//! Coordinator authentication and authorization for Crabbox (spec coordinator §5).
//!
//! This crate owns: who a request is from ([`Authenticator::authenticate`] → [`Principal`]),
//! the signed user tokens behind GitHub login ([`token`]), the GitHub login flow itself
//! ([`GithubLogin`]) with per-request membership revalidation ([`github`]), org keys ([`org`]),
//! the lease/run access rules ([`access`]), constant-time secret comparison and the diagnostic
//! redactor ([`secret`]).
//!
//! It does not own an HTTP server: the coordinator calls in with `http` types and a clock
//! reading (`now`), and turns the results into responses. Settings come from an explicit
//! variable map ([`AuthConfig::from_env`]); nothing here reads the process environment.
//! Cloudflare Access JWT verification of the original coordinator is not supported.

pub mod access;
mod authenticator;
pub mod config;
pub mod github;
pub mod login;
pub mod org;
mod principal;
pub mod proxy;
mod redact;
pub mod secret;
pub mod token;

pub use authenticator::{
    Authenticator, PORTAL_SESSION_COOKIE, PROXY_IDENTITY_MAX_CHARS, bearer_token, cookie_value,
};
pub use config::{AuthConfig, ConfigError};
pub use login::{
    CallbackOutcome, CallbackQuery, GithubLogin, LoginError, LoginStore, LoginStoreError,
    MemoryLoginStore, PollRequest, PollResponse, StartRequest, StartResponse, StoreLoginStore,
};
pub use principal::{
    AuthError, AuthKind, GithubGrant, Principal, TRUSTED_HEADERS, portal_login_location,
    strip_trusted_headers,
};
pub use secret::Secret;
