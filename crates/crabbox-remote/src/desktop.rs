//! A desktop of its own for a `local` lease: an `Xvfb` display whose number no other lease
//! has, the `openbox` window manager on it, `x11vnc` on a free loopback port with a password
//! file of the lease's (0600), and for a browser lease a `crabbox-browser` wrapper around
//! Debian's `chromium` with a profile of the lease's. Each runs in a process group of its own,
//! outliving the command that made the lease; [`stop`] ends them and everything else that
//! draws on the lease's display.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::process;

/// The display numbers leases take, from the first up: above those a person's X servers use.
const DISPLAYS: std::ops::Range<u32> = 100..400;
/// The desktop's size; a screenshot has it.
pub const GEOMETRY: (u32, u32) = (1280, 800);
/// How long one part may take to come up.
const START_WAIT: Duration = Duration::from_secs(10);

/// The programs a desktop lease needs, and a browser lease.
const DESKTOP_TOOLS: &[&str] = &["Xvfb", "openbox", "x11vnc"];
const BROWSER_TOOLS: &[&str] = &["chromium"];

#[derive(Debug, thiserror::Error)]
pub enum DesktopError {
    #[error(
        "a local desktop needs {}, which this machine does not have",
        .0.join(", ")
    )]
    Missing(Vec<&'static str>),
    #[error("could not prepare the desktop's files in {path}")]
    Files {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the desktop's {what} did not start: {detail}")]
    Start { what: &'static str, detail: String },
}

/// A started desktop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desktop {
    /// `:101`, for `DISPLAY`.
    pub display: Option<String>,
    /// x11vnc's loopback port.
    pub vnc_port: Option<u16>,
    /// The VNC password, in a 0600 file.
    pub password_file: Option<PathBuf>,
    /// The browser wrapper, for `BROWSER` and `CHROME_BIN`.
    pub browser: Option<PathBuf>,
}

/// The tools of `desktop` and `browser` this machine lacks.
pub fn missing_tools(desktop: bool, browser: bool) -> Vec<&'static str> {
    let wanted = desktop
        .then_some(DESKTOP_TOOLS)
        .into_iter()
        .chain(browser.then_some(BROWSER_TOOLS))
        .flatten();
    wanted
        .filter(|tool| which(tool).is_none())
        .copied()
        .collect()
}

/// Starts what the lease asked for in `dir`: the display, its window manager and VNC server
/// (`desktop`), the browser wrapper (`browser`). Whatever started is stopped again when a
/// later part fails.
pub async fn start(dir: &Path, desktop: bool, browser: bool) -> Result<Desktop, DesktopError> {
    let missing = missing_tools(desktop, browser);
    if !missing.is_empty() {
        return Err(DesktopError::Missing(missing));
    }
    make_private_dir(dir)?;
    let started = async {
        let mut out = Desktop {
            display: None,
            vnc_port: None,
            password_file: None,
            browser: None,
        };
        if desktop {
            let display = start_display(dir).await?;
            start_window_manager(dir, &display).await?;
            let password_file = write_password(dir)?;
            out.vnc_port = Some(start_vnc(dir, &display, &password_file).await?);
            out.password_file = Some(password_file);
            out.display = Some(display);
        }
        if browser {
            out.browser = Some(write_browser_wrapper(dir)?);
        }
        Ok(out)
    };
    let result = started.await;
    if result.is_err() {
        stop(dir).await;
    }
    result
}

/// Stops the lease's desktop: its display server, window manager and VNC server, then every
/// other process still drawing on its display (a browser the lease's commands opened).
pub async fn stop(dir: &Path) {
    let display = fs::read_to_string(dir.join("display")).unwrap_or_default();
    let mut groups = Vec::new();
    for name in ["vnc", "wm", "xvfb"] {
        if let Some(pid) = read_pid(&dir.join(format!("{name}.pid")))
            && process::pid_alive(pid)
        {
            groups.push(pid);
        }
    }
    let display = display.trim();
    let mut on_display = if display.is_empty() {
        Vec::new()
    } else {
        processes_on(display)
    };
    // The browser's helpers (its crash handler among them) name the lease's profile.
    for pid in processes_naming(dir) {
        if !on_display.contains(&pid) && !groups.contains(&pid) {
            on_display.push(pid);
        }
    }
    for pid in &groups {
        process::terminate_group(pid.cast_unsigned());
    }
    for pid in &on_display {
        process::signal_pid(*pid, false);
    }
    let everyone: Vec<i32> = groups.iter().chain(&on_display).copied().collect();
    let deadline = Instant::now() + Duration::from_secs(3);
    while everyone.iter().any(|pid| process::pid_alive(*pid)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for pid in everyone.iter().filter(|pid| process::pid_alive(**pid)) {
        process::signal_pid(*pid, true);
    }
}

/// The pids of this user's processes whose command line names `dir`.
fn processes_naming(dir: &Path) -> Vec<i32> {
    let needle = dir.as_os_str().as_encoded_bytes();
    processes_where("cmdline", |cmdline| {
        cmdline.windows(needle.len()).any(|w| w == needle)
    })
}

/// The pids of this user's processes whose environment says `DISPLAY=<display>`.
pub fn processes_on(display: &str) -> Vec<i32> {
    let needle = format!("DISPLAY={display}");
    processes_where("environ", |env| {
        env.split(|b| *b == 0)
            .any(|entry| entry == needle.as_bytes())
    })
}

/// The pids of the processes (this one left out) whose `/proc/<pid>/<file>` matches.
fn processes_where(file: &str, matches: impl Fn(&[u8]) -> bool) -> Vec<i32> {
    let me = std::process::id().cast_signed();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| fs::read(format!("/proc/{pid}/{file}")).is_ok_and(|bytes| matches(&bytes)))
        .collect()
}

/// `Xvfb` on the first display number no other server holds. An X server takes its display
/// by creating `/tmp/.X<n>-lock` exclusively, so two leases starting at once never share one:
/// the loser exits, and tries the next number.
async fn start_display(dir: &Path) -> Result<String, DesktopError> {
    let (width, height) = GEOMETRY;
    let screen = format!("{width}x{height}x24");
    let mut last = String::new();
    for n in DISPLAYS {
        let lock = PathBuf::from(format!("/tmp/.X{n}-lock"));
        let socket = PathBuf::from(format!("/tmp/.X11-unix/X{n}"));
        if lock.exists() || socket.exists() {
            continue;
        }
        let display = format!(":{n}");
        let pid = spawn(
            dir,
            "xvfb",
            "Xvfb",
            &[&display, "-screen", "0", &screen, "-nolisten", "tcp"],
            None,
        )?;
        let deadline = Instant::now() + START_WAIT;
        while Instant::now() < deadline && process::pid_alive(pid) {
            let owner = fs::read_to_string(&lock)
                .ok()
                .and_then(|s| s.trim().parse().ok());
            if socket.exists() && owner == Some(pid) {
                write_file(&dir.join("display"), display.as_bytes(), 0o600)?;
                return Ok(display);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        process::signal_pid(pid, true);
        last = log_tail(&dir.join("xvfb.log"));
        if !last.contains("already active") {
            return Err(DesktopError::Start {
                what: "display server (Xvfb)",
                detail: last,
            });
        }
    }
    Err(DesktopError::Start {
        what: "display server (Xvfb)",
        detail: format!(
            "every display from :{} on is taken ({last})",
            DISPLAYS.start
        ),
    })
}

/// `openbox`, once it owns the display's window manager selection (it exits at once when
/// it cannot).
async fn start_window_manager(dir: &Path, display: &str) -> Result<(), DesktopError> {
    let pid = spawn(dir, "wm", "openbox", &[], Some(display))?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    if process::pid_alive(pid) {
        Ok(())
    } else {
        Err(DesktopError::Start {
            what: "window manager (openbox)",
            detail: log_tail(&dir.join("wm.log")),
        })
    }
}

/// `x11vnc` on a free loopback port, asking for the password in `password_file`.
async fn start_vnc(dir: &Path, display: &str, password_file: &Path) -> Result<u16, DesktopError> {
    let mut last = String::new();
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(files_err(dir))?
            .port();
        let passwd = password_file.display().to_string();
        let port_text = port.to_string();
        let pid = spawn(
            dir,
            "vnc",
            "x11vnc",
            &[
                "-display",
                display,
                "-rfbport",
                &port_text,
                "-localhost",
                "-passwdfile",
                &passwd,
                "-forever",
                "-shared",
                "-noxdamage",
            ],
            None,
        )?;
        let deadline = Instant::now() + START_WAIT;
        while Instant::now() < deadline && process::pid_alive(pid) {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        process::signal_pid(pid, true);
        last = log_tail(&dir.join("vnc.log"));
    }
    Err(DesktopError::Start {
        what: "VNC server (x11vnc)",
        detail: last,
    })
}

/// A fresh random password in `vnc.password` (0600): VNC reads only its first 8 characters.
fn write_password(dir: &Path) -> Result<PathBuf, DesktopError> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 12];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    let password: String = bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect();
    let path = dir.join("vnc.password");
    write_file(&path, format!("{password}\n").as_bytes(), 0o600)?;
    Ok(path)
}

/// `crabbox-browser`: chromium with a profile of the lease's and no first-run questions
/// (and, run as root, without the sandbox chromium refuses to start for root).
fn write_browser_wrapper(dir: &Path) -> Result<PathBuf, DesktopError> {
    let chromium = which("chromium").unwrap_or_else(|| PathBuf::from("chromium"));
    let profile = dir.join("browser-profile");
    let script = format!(
        "#!/bin/sh\n\
         # The lease's browser (crabbox local provider).\n\
         if [ \"$(id -u)\" = 0 ]; then set -- --no-sandbox \"$@\"; fi\n\
         exec {} --no-first-run --no-default-browser-check --password-store=basic \
         --user-data-dir={} \"$@\"\n",
        crate::quote::sh_quote(&chromium.display().to_string()),
        crate::quote::sh_quote(&profile.display().to_string()),
    );
    let path = dir.join("crabbox-browser");
    write_file(&path, script.as_bytes(), 0o700)?;
    Ok(path)
}

/// Starts `program` in a process group of its own, its output in `<name>.log` and its pid
/// in `<name>.pid`.
fn spawn(
    dir: &Path,
    name: &str,
    program: &str,
    args: &[&str],
    display: Option<&str>,
) -> Result<i32, DesktopError> {
    let log_path = dir.join(format!("{name}.log"));
    let log = fs::File::create(&log_path).map_err(files_err(&log_path))?;
    let err = log.try_clone().map_err(files_err(&log_path))?;
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0);
    if let Some(display) = display {
        cmd.env("DISPLAY", display);
    }
    let mut child = cmd.spawn().map_err(|e| DesktopError::Start {
        what: "desktop",
        detail: format!("{program}: {e}"),
    })?;
    let pid = child.id().cast_signed();
    // Reaped here if it ends while this process runs; init reaps it afterwards.
    std::thread::spawn(move || child.wait());
    write_file(
        &dir.join(format!("{name}.pid")),
        pid.to_string().as_bytes(),
        0o600,
    )?;
    Ok(pid)
}

fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(5)..].join("; ")
}

fn make_private_dir(dir: &Path) -> Result<(), DesktopError> {
    fs::create_dir_all(dir).map_err(files_err(dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(files_err(dir))
}

/// Writes `path` with `mode` from its creation on (a password is never readable by others,
/// not even for a moment).
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), DesktopError> {
    let _ = fs::remove_file(path);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(files_err(path))?;
    file.write_all(contents).map_err(files_err(path))
}

fn files_err(path: &Path) -> impl FnOnce(std::io::Error) -> DesktopError + '_ {
    move |source| DesktopError::Files {
        path: path.to_owned(),
        source,
    }
}

/// `program` on the `PATH`.
fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}
