//! Real-boundary tests for crabbox-remote: a private sshd, the OpenSSH client, rsync and git.

mod session;
