//! `crabbox ssh <id>`: print the ssh command line for a lease (same options as Crabbox uses).

use crabbox_remote::quote::sh_join;
use crabbox_remote::ssh::CallOptions;

use crate::error::CliResult;
use crate::lease::{self, Leases};
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: super::status::LeaseArg,
}

pub async fn run(args: Args) -> CliResult<u8> {
    let ctx = lease::context(Vec::new())?;
    let mut lease = Leases::new(&ctx).resolve(&args.target.one()?).await?;
    lease.touch();
    let target = lease.target();
    let record = &lease.record;
    // An interactive session may change synced files; drop the fingerprint so the next run
    // re-checks every file with rsync instead of trusting the skip.
    let meta_glob = format!(
        "{}/{}/*/.git/crabbox/sync-fingerprint",
        record.work_root.trim_end_matches('/'),
        record.lease_id
    );
    let _ = target
        .capture(&format!("rm -f {meta_glob} 2>/dev/null; true"))
        .await;
    let mut words = vec!["ssh".to_owned()];
    words.extend(target.base_args(CallOptions::default()));
    words.push(target.destination());
    output::out(sh_join(&words));
    Ok(0)
}
