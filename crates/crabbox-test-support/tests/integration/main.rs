//! crabbox-test-support's own tests: the cloud fixtures, each checked against the real thing
//! it stands in front of (moto, OpenSSH, the kernel's network namespaces).

mod cloud_chain;
mod fault_proxy;
mod moto;
mod netns;
