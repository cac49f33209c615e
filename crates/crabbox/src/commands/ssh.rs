//! `crabbox ssh <id>`: print the ssh command line for a lease (same options as Crabbox uses).

use crabbox_remote::quote::sh_join;
use crabbox_remote::ssh::CallOptions;

use crate::error::CliResult;
use crate::lease;
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: super::status::LeaseArg,
}

pub async fn run(args: Args) -> CliResult<u8> {
    let ctx = lease::context(Vec::new())?;
    let found = super::status::find(&ctx, args.target).await?;
    let mut record = lease::resolve(&ctx, &found.lease_id).await?;
    lease::touch(&ctx, &mut record);
    let target = lease::ssh_target(&record);
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
