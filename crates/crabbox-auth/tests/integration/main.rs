//! End-to-end tests of crabbox-auth against the fake GitHub server over real HTTP.

mod auth_matrix;
mod github_client;
mod login_checklist;
mod login_flow;
mod portal;
mod support;
