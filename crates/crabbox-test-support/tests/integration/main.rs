//! crabbox-test-support's own tests: the cloud fixtures, each checked against the real thing
//! it stands in front of (moto, OpenSSH, the kernel's network namespaces).

mod cloud_chain;
mod fake_azure;
mod fake_hetzner;
mod fault_proxy;
mod moto;
mod netns;
