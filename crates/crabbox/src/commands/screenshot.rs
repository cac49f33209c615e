//! `crabbox screenshot --id X [--output file.png]`: a PNG of the lease's desktop, streamed over
//! the lease's SSH connection into a temporary file beside the output, checked to be a PNG,
//! then renamed into place (a failed or refused screenshot leaves nothing behind).
//!
//! On the runner: `scrot`, else Image Magick's `import`, on the lease's display; neither
//! installed is exit 127 with a hint. A lease without a desktop is refused before anything
//! runs.

use std::path::PathBuf;
use std::process::Stdio;

use crabbox_api::ExitStatus;
use crabbox_providers::LeaseDesktop;
use crabbox_remote::quote::sh_quote;
use crabbox_remote::ssh::CallOptions;

use crate::error::{CliError, CliResult, WithStatus};
use crate::lease::{self, Leases};
use crate::output;

/// What the runner prints when it has no screenshot tool.
const NO_TOOL: &str = "crabbox-screenshot: neither scrot nor ImageMagick's import is installed";

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: super::status::LeaseArg,
    /// The provider the lease must belong to (as the runbook writes it).
    #[arg(long)]
    pub provider: Option<String>,
    /// Where to write the PNG (default `crabbox-<slug>-screenshot.png` here).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
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
    let Some(display) = LeaseDesktop::of(record).display else {
        return Err(CliError::msg(
            ExitStatus::Usage,
            format!(
                "lease {} has no desktop to take a screenshot of",
                record.lease_id
            ),
        )
        .hint("warm a lease with `crabbox warmup --desktop`"));
    };
    let name = if record.slug.is_empty() {
        &record.lease_id
    } else {
        &record.slug
    };
    let output = args
        .output
        .unwrap_or_else(|| PathBuf::from(format!("crabbox-{name}-screenshot.png")));
    let target = lease.target();
    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let partial = tempfile::Builder::new()
        .prefix(".crabbox-screenshot-")
        .suffix(".png.part")
        .tempfile_in(dir)
        .map_err(|e| {
            CliError::msg(
                ExitStatus::Usage,
                format!("cannot write the screenshot in {}: {e}", dir.display()),
            )
        })?;
    let file = partial.reopen().status(ExitStatus::Failure)?;
    let (child, program) = target
        .command(CallOptions::default(), &remote_command(&display))
        .stdout(Stdio::from(file))
        .stderr(Stdio::piped())
        .spawn()
        .status(ExitStatus::Remote)?;
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| CliError::msg(ExitStatus::Remote, format!("{program} failed: {e}")))?;
    let code = crabbox_remote::process::exit_code(out.status);
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if code == 127 && stderr.contains(NO_TOOL) {
        // The shell's "command not found", as the runner said it.
        let refused = CliError::msg(
            ExitStatus::Remote,
            format!(
                "lease {} cannot take screenshots: {NO_TOOL}",
                record.lease_id
            ),
        )
        .hint("install scrot (or imagemagick) on the runner, e.g. `sudo apt-get install scrot`");
        output::err(refused.report().trim_end());
        return Ok(127);
    }
    if code != 0 {
        return Err(CliError::msg(
            ExitStatus::Remote,
            format!("the screenshot failed on the runner (exit {code}): {stderr}"),
        ));
    }
    let png = std::fs::read(partial.path()).status(ExitStatus::Failure)?;
    let Some((width, height)) = png_size(&png) else {
        return Err(CliError::msg(
            ExitStatus::Remote,
            "the runner's screenshot is not a PNG",
        ));
    };
    partial.persist(&output).map_err(|e| {
        CliError::msg(
            ExitStatus::Failure,
            format!("cannot write {}: {}", output.display(), e.error),
        )
    })?;
    if args.json {
        output::json(&serde_json::json!({
            "path": output.display().to_string(),
            "bytes": png.len(),
            "width": width,
            "height": height,
            "display": display,
        }));
    } else {
        output::out(format!("screenshot: {}", output.display()));
    }
    Ok(0)
}

/// The runner's side: the PNG on stdout, nothing else.
fn remote_command(display: &str) -> String {
    format!(
        "export DISPLAY={display}; \
         if command -v scrot >/dev/null 2>&1; then \
           d=$(mktemp -d) || exit 1; \
           scrot -z -o \"$d/shot.png\" >/dev/null && cat \"$d/shot.png\"; rc=$?; rm -rf \"$d\"; exit $rc; \
         elif command -v import >/dev/null 2>&1; then \
           exec import -window root png:-; \
         else echo {no_tool} >&2; exit 127; fi",
        display = sh_quote(display),
        no_tool = sh_quote(NO_TOOL),
    )
}

/// A PNG's width and height, from its signature and `IHDR` chunk.
fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if bytes.len() < 24 || !bytes.starts_with(SIGNATURE) || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let width = u32::from_be_bytes(bytes[16..20].try_into().ok()?);
    let height = u32::from_be_bytes(bytes[20..24].try_into().ok()?);
    Some((width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_size_reads_the_header_and_refuses_other_bytes() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        png.extend(1280u32.to_be_bytes());
        png.extend(800u32.to_be_bytes());
        assert_eq!(png_size(&png), Some((1280, 800)));
        assert_eq!(png_size(b"GIF89a and more bytes than that...."), None);
        assert_eq!(png_size(&png[..20]), None);
    }

    #[test]
    fn without_scrot_or_import_the_runner_says_so_with_127() {
        let out = std::process::Command::new("/bin/sh")
            .args(["-c", &remote_command(":99")])
            .env("PATH", "/nonexistent")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(127));
        assert!(String::from_utf8_lossy(&out.stderr).contains(NO_TOOL));
        assert!(out.stdout.is_empty(), "nothing that could pass for a PNG");
    }

    #[test]
    fn the_remote_command_quotes_the_display() {
        let command = remote_command(":101");
        assert!(command.starts_with("export DISPLAY=:101;"), "{command}");
        assert!(remote_command("x; rm -rf /").contains("'x; rm -rf /'"));
    }
}
