//! Ctrl-C and SIGTERM while a command holds something to clean up (a lease being created, a
//! running session). The first signal asks the command to stop: it cancels what it started
//! (cancel-create, release, the run record) and exits 130. A second signal exits 130 at once,
//! for when that cleanup itself hangs.

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crabbox_api::ExitStatus;

use crate::output;

/// Listens for SIGINT and SIGTERM for as long as it lives.
#[derive(Debug)]
pub struct Interrupt {
    requested: watch::Receiver<bool>,
    listener: JoinHandle<()>,
}

impl Interrupt {
    /// Installs the handlers now (so a signal from here on is never the default "die at
    /// once") and starts the listener. Must be called inside the runtime.
    pub fn listen() -> Self {
        let (tx, requested) = watch::channel(false);
        let mut int = signal(SignalKind::interrupt()).ok();
        let mut term = signal(SignalKind::terminate()).ok();
        let listener = tokio::spawn(async move {
            next(&mut int, &mut term).await;
            let _ = tx.send(true);
            next(&mut int, &mut term).await;
            output::err("interrupted again; exiting without cleaning up");
            std::process::exit(i32::from(ExitStatus::Interrupted.code()));
        });
        Self {
            requested,
            listener,
        }
    }

    /// Whether a first signal has arrived.
    pub fn requested(&self) -> bool {
        *self.requested.borrow()
    }

    /// A receiver that turns `true` on the first signal (for code that takes a watch).
    pub fn receiver(&self) -> watch::Receiver<bool> {
        self.requested.clone()
    }

    /// Resolves once a first signal has arrived.
    pub async fn wait(&self) {
        let mut rx = self.requested.clone();
        if rx.wait_for(|v| *v).await.is_err() {
            // The listener is gone (dropped with this handle): no signal will ever come.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Interrupt {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// The next SIGINT or SIGTERM.
async fn next(int: &mut Option<Signal>, term: &mut Option<Signal>) {
    tokio::select! {
        () = recv(int.as_mut()) => {}
        () = recv(term.as_mut()) => {}
    }
}

/// The next signal of one kind (never, for a handler that could not be installed).
async fn recv(signal: Option<&mut Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}
