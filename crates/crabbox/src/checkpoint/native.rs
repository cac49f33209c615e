//! Provider-side work on native checkpoints (images, disk snapshots, committed containers):
//! deleting the resource a record points at (spec providers.md §3.8).

use crabbox_api::ExitStatus;

use super::record::Record;
use crate::error::{CliError, CliResult};

/// Deletes `record`'s provider resource. The caller removes the local record only after this
/// succeeds, so a failure never orphans a resource the provider still bills for.
#[expect(
    clippy::unused_async,
    reason = "provider deletion is network IO; callers already await it"
)]
pub async fn delete(record: &Record) -> CliResult<()> {
    Err(CliError::msg(
        ExitStatus::Usage,
        format!(
            "deleting {} checkpoints needs the provider; pass --local-only to forget the record",
            record.kind
        ),
    ))
}
