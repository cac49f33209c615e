//! GitHub: a small REST/OAuth client and the membership revalidation built on it.

mod client;
mod membership;

pub use client::{GithubClient, GithubEmail, GithubError, GithubTeam, GithubUser, OrgMembership};
pub use membership::{MembershipIdentity, MembershipPolicy, MembershipVerifier};
