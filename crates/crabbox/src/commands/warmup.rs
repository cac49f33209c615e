//! `crabbox warmup`: lease a runner, wait until ready, keep it.

use std::time::Instant;

use crabbox_api::view::WarmupView;

use crate::error::CliResult;
use crate::interrupt::Interrupt;
use crate::lease::{self, LeaseFlags, Leases, NewLease};
use crate::output::{self, Progress};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub lease: LeaseFlags,
    /// Print the lease as JSON.
    #[arg(long)]
    pub json: bool,
    /// Print the timing record as JSON on stderr.
    #[arg(long = "timing-json")]
    pub timing_json: bool,
}

pub async fn run(args: Args) -> CliResult<u8> {
    let start = Instant::now();
    let ctx = lease::context(args.lease.values())?;
    let progress = Progress::start(args.json);
    // Kept to the end: once it is installed a first signal no longer kills the process, and a
    // second still exits at once.
    let interrupt = Interrupt::listen();
    let new = NewLease {
        slug: args.lease.slug.clone(),
        keep: true,
        keep_unready: false,
    };
    let acquired = Leases::new(&ctx)
        .acquire(&new, &progress, &interrupt, &|_| {})
        .await?;
    progress.finish();
    let view = acquired.lease.view().await;
    let total = start.elapsed();
    if args.json {
        output::json(&WarmupView {
            lease: view.clone(),
            total_ms: total.as_millis() as u64,
        });
    } else {
        output::out(format!(
            "leased {} slug={} provider={} server={} type={} ip={} idle_timeout={} expires={}",
            view.id,
            view.slug,
            view.provider,
            view.server_id,
            view.server_type,
            view.host,
            view.idle_timeout,
            view.expires_at
        ));
        output::out(format!(
            "ready ssh={}@{}:{} workroot={}",
            view.ssh_user, view.host, view.ssh_port, view.work_root
        ));
        if let Some(usd) = view.estimated_hourly_usd {
            let market = view.labels.get("market").map_or("", String::as_str);
            output::out(format!(
                "cost hourly=${usd:.4} market={market} (until stop or expiry)"
            ));
        }
        if !view.provisioning_attempts.is_empty() {
            output::err(format!(
                "{} launch attempt(s) refused before this one; `crabbox inspect {}` lists them",
                view.provisioning_attempts.len(),
                view.id
            ));
        }
        output::out(format!(
            "warmup complete total={}",
            crabbox_core::duration::format_duration(total)
        ));
    }
    if args.timing_json {
        output::err(serde_json::json!({"provider": view.provider, "leaseId": view.id, "slug": view.slug, "totalMs": total.as_millis() as u64, "exitCode": 0}).to_string());
    }
    Ok(0)
}
