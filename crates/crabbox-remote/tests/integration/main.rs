//! Real-boundary tests for crabbox-remote: a private sshd, the OpenSSH client, rsync and git,
//! and the file watcher daemon.

mod session;
mod watch;
