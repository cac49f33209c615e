//! Processes on this machine, read from Linux `/proc` and signalled with kill(2): no `ps`,
//! `pgrep` or `kill` binary is needed (procps is not installed everywhere), and nothing matches
//! a process by its command line, which a test's own or crabbox's arguments can also contain.

use std::path::Path;

pub use rustix::process::Signal;

/// Sends `signal` to `pid`; false when there is no such process (or it is not ours).
pub fn signal(pid: u32, signal: Signal) -> bool {
    i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .is_some_and(|pid| rustix::process::kill_process(pid, signal).is_ok())
}

/// Whether `pid` is a running process (a zombie waiting for its parent is not).
pub fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|(state, _)| !matches!(state, 'Z' | 'X'))
}

/// The arguments `pid` runs with (`/proc/<pid>/cmdline`); empty once it has exited.
pub fn argv(pid: u32) -> Vec<String> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let Some(args) = cmdline.strip_suffix(b"\0") else {
        return Vec::new();
    };
    args.split(|b| *b == 0)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

/// Every descendant pid of `pid`, each listed before its own children.
pub fn descendants(pid: u32) -> Vec<u32> {
    let pid = i32::try_from(pid).unwrap_or_default();
    crabbox_remote::process::descendants(pid)
        .into_iter()
        .filter_map(|p| u32::try_from(p).ok())
        .collect()
}

/// Every process whose command line contains `needle`.
pub(crate) fn naming(needle: &[u8]) -> Vec<u32> {
    pids()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| cmdline.windows(needle.len()).any(|w| w == needle))
        })
        .collect()
}

/// Every process this machine shows us.
pub(crate) fn pids() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
}

/// The state letter and parent pid from `/proc/<pid>/stat`.
fn stat(pid: u32) -> Option<(char, u32)> {
    let text =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")).ok()?;
    // The program name in parentheses may itself contain spaces and parentheses.
    let (_, rest) = text.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some((state, parent))
}
