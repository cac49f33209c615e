//! Coordinator API tests over real HTTP: the real router and reconciler, a real SQLite store
//! in a temp dir, the real `local` provider (one sshd per lease) and a manual clock.

mod harness;
mod lease_checklist;
mod leases;
mod org_identity;
mod replicas;
mod run_checklist;
mod runs;
mod service;
