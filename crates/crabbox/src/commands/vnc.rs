//! `crabbox vnc --id X`: forwards a local loopback port to the lease's VNC server over an SSH
//! connection of its own (`ssh -N -L`), says where to point a VNC viewer and which file on
//! the runner holds the password, and keeps the tunnel open until Ctrl-C.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crabbox_api::ExitStatus;
use crabbox_providers::LeaseDesktop;
use crabbox_remote::ssh::CallOptions;

use crate::error::{CliError, CliResult, WithStatus};
use crate::interrupt::Interrupt;
use crate::lease::{self, Leases};
use crate::output;

/// How long the tunnel may take to listen.
const OPEN_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: super::status::LeaseArg,
    /// The provider the lease must belong to (as the runbook writes it).
    #[arg(long)]
    pub provider: Option<String>,
    /// The local port to listen on (default: a free one).
    #[arg(long = "local-port")]
    pub local_port: Option<u16>,
    /// Print where the tunnel listens as one JSON line.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: Args) -> CliResult<u8> {
    let ctx = lease::context(Vec::new())?;
    let mut lease = Leases::new(&ctx).resolve(&args.target.one()?).await?;
    if let Some(wanted) = &args.provider {
        super::status::check_provider(&lease.record, wanted)?;
    }
    lease.touch();
    let record = &lease.record;
    let desktop = LeaseDesktop::of(record);
    if desktop.display.is_none() {
        return Err(CliError::msg(
            ExitStatus::Usage,
            format!("lease {} has no desktop to connect to", record.lease_id),
        )
        .hint("warm a lease with `crabbox warmup --desktop`"));
    }
    let local_port = match args.local_port {
        Some(port) => port,
        None => std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .status(ExitStatus::Failure)?
            .port(),
    };
    let mut target = lease.target();
    // A connection of its own: the tunnel lives as long as this command, not a shared master.
    target.control_dir = None;
    let mut ssh_args = target.base_args(CallOptions::default());
    ssh_args.extend([
        "-o".to_owned(),
        "ExitOnForwardFailure=yes".to_owned(),
        "-N".to_owned(),
        "-L".to_owned(),
        format!("127.0.0.1:{local_port}:127.0.0.1:{}", desktop.vnc_port),
        target.destination(),
    ]);
    let interrupt = Interrupt::listen();
    let (mut child, _) = crabbox_remote::process::Cmd::new("ssh")
        .args(&ssh_args)
        .stderr(Stdio::piped())
        .spawn()
        .status(ExitStatus::Remote)?;
    let deadline = Instant::now() + OPEN_WAIT;
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", local_port)).is_ok() {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                use tokio::io::AsyncReadExt as _;
                let _ = pipe.read_to_string(&mut stderr).await;
            }
            return Err(CliError::msg(
                ExitStatus::Remote,
                format!(
                    "the VNC tunnel closed (ssh exit {}): {}",
                    crabbox_remote::process::exit_code(status),
                    stderr.trim()
                ),
            ));
        }
        if Instant::now() >= deadline || interrupt.requested() {
            return Err(CliError::msg(
                ExitStatus::Remote,
                format!("the VNC tunnel did not open within {OPEN_WAIT:?}"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if args.json {
        // One line: the command keeps running, and a reader acts on it at once.
        output::out(
            serde_json::json!({
                "lease": record.lease_id,
                "host": "127.0.0.1",
                "port": local_port,
                "passwordFile": desktop.vnc_password_file,
                "display": desktop.display,
            })
            .to_string(),
        );
    } else {
        output::out(format!(
            "vnc: point a VNC viewer at 127.0.0.1:{local_port} (Ctrl-C closes the tunnel)"
        ));
        output::out(format!(
            "password: in {} on the runner (`crabbox run --id {} --no-sync -- cat {}`)",
            desktop.vnc_password_file, record.lease_id, desktop.vnc_password_file
        ));
    }
    tokio::select! {
        status = child.wait() => {
            let code = status.map_or(-1, crabbox_remote::process::exit_code);
            Err(CliError::msg(
                ExitStatus::Remote,
                format!("the VNC tunnel closed (ssh exit {code})"),
            ))
        }
        () = interrupt.wait() => {
            let _ = child.kill().await;
            Ok(0)
        }
    }
}
