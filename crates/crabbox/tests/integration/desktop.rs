//! Desktop and browser leases on the `local` provider, end to end: a real Xvfb display with
//! openbox and x11vnc per lease, Debian's chromium drawing a page with a known colour block,
//! `crabbox screenshot` reading it back as a PNG, `crabbox vnc` forwarding the VNC port, and
//! nothing of the lease's left once it stops.

use std::io::{BufRead as _, Read as _};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crabbox_test_support::{Sandbox, code, git_repo, stderr, stdout};

/// The local desktop's size (`crabbox_remote::desktop::GEOMETRY`).
const SIZE: (u32, u32) = (1280, 800);

/// A sandbox with a repository holding a page: a white screen with a coloured block.
fn setup(colour: &str) -> (Sandbox, PathBuf) {
    let sb = crate::sandbox();
    let repo = sb.work().join("repo");
    let page = format!(
        "<!doctype html><html><body style=\"margin:0;background:#fff\">\
         <div style=\"position:absolute;left:100px;top:100px;width:400px;height:300px;\
         background:{colour}\"></div></body></html>\n"
    );
    git_repo(&repo, &[("page.html", page.as_str())]);
    (sb, repo)
}

/// Stops the lease when the test ends, passed or not: its desktop outlives the CLI.
struct Stopper<'a> {
    sb: &'a Sandbox,
    repo: &'a Path,
    id: String,
}

impl Drop for Stopper<'_> {
    fn drop(&mut self) {
        let _ = self.sb.run(self.repo, &["stop", &self.id]);
    }
}

fn warm_desktop<'a>(sb: &'a Sandbox, repo: &'a Path) -> (Stopper<'a>, serde_json::Value) {
    let out = sb.run(repo, &["warmup", "--desktop", "--browser", "--json"]);
    assert_eq!(code(&out), 0, "desktop warmup: {}", stderr(&out));
    let warm: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = warm["lease"]["id"].as_str().unwrap().to_owned();
    let out = sb.run(repo, &["inspect", "--id", &id, "--json"]);
    let inspect: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (Stopper { sb, repo, id }, inspect)
}

/// Opens the page full screen in the lease's browser, detached from the run.
fn open_page(sb: &Sandbox, repo: &Path, id: &str) {
    let out = sb.run(
        repo,
        &[
            "run",
            "--id",
            id,
            "--desktop",
            "--browser",
            "--shell",
            "setsid -f \"$BROWSER\" --kiosk --disable-gpu \"file://$PWD/page.html\" \
             </dev/null >/dev/null 2>&1; echo display=$DISPLAY chrome=$CHROME_BIN",
        ],
    );
    assert_eq!(code(&out), 0, "run --desktop --browser: {}", stderr(&out));
    assert!(stdout(&out).contains("display=:"), "{}", stdout(&out));
    assert!(stdout(&out).contains("chrome=/"), "{}", stdout(&out));
}

/// A decoded screenshot: width, height, RGB rows.
struct Shot {
    width: u32,
    height: u32,
    rgb: Vec<u8>,
}

impl Shot {
    fn read(path: &Path) -> Self {
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        let channels = info.color_type.samples();
        let rgb = buf[..info.buffer_size()]
            .chunks(channels)
            .flat_map(|px| px[..3].to_vec())
            .collect();
        Self {
            width: info.width,
            height: info.height,
            rgb,
        }
    }

    fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let at = ((y * self.width + x) * 3) as usize;
        [self.rgb[at], self.rgb[at + 1], self.rgb[at + 2]]
    }
}

/// Screenshots until the block's middle has `colour` (the browser takes a moment to draw).
fn screenshot_showing(sb: &Sandbox, repo: &Path, id: &str, colour: [u8; 3]) -> Shot {
    let path = sb.work().join(format!("{id}.png"));
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        // `--provider` as the image runbook writes it.
        let out = sb.run(
            repo,
            &[
                "screenshot",
                "--provider",
                "local",
                "--id",
                id,
                "--output",
                path.to_str().unwrap(),
            ],
        );
        assert_eq!(code(&out), 0, "screenshot: {}", stderr(&out));
        assert!(stdout(&out).contains("screenshot: "), "{}", stdout(&out));
        let shot = Shot::read(&path);
        if shot.pixel(300, 250) == colour {
            return shot;
        }
        assert!(
            Instant::now() < deadline,
            "the block never showed: {:?}",
            shot.pixel(300, 250)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// This user's processes that mention `needle` on their command line or as their
/// `DISPLAY`.
fn processes_of(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let read = |what: &str| std::fs::read(format!("/proc/{pid}/{what}")).unwrap_or_default();
        let stat = String::from_utf8_lossy(&read("stat")).into_owned();
        if stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        {
            continue;
        }
        let cmdline = read("cmdline");
        let environ = read("environ");
        let words: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        let mentions = words.iter().any(|w| w == needle || w.contains(needle))
            || environ
                .split(|b| *b == 0)
                .any(|e| e == format!("DISPLAY={needle}").as_bytes());
        if mentions {
            out.push(format!("{pid} {}", words.join(" ")));
        }
    }
    out
}

#[test]
fn a_desktop_lease_shows_its_browser_in_screenshots_and_vnc_and_leaves_nothing() {
    let (sb, repo) = setup("rgb(255,0,170)");
    let (lease, inspect) = warm_desktop(&sb, &repo);
    let labels = &inspect["labels"];
    assert_eq!(labels["desktop"], "true", "{inspect}");
    assert_eq!(labels["desktop_env"], "openbox");
    assert_eq!(labels["browser"], "true");
    let display = labels["desktop_display"].as_str().unwrap().to_owned();
    let password_file = PathBuf::from(labels["vnc_password_file"].as_str().unwrap());
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&password_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the VNC password is the lease's alone");
    let out = sb.run(&repo, &["list"]);
    assert!(
        stdout(&out).contains("desktop=openbox browser=true"),
        "{}",
        stdout(&out)
    );

    open_page(&sb, &repo, &lease.id);
    let shot = screenshot_showing(&sb, &repo, &lease.id, [255, 0, 170]);
    assert_eq!((shot.width, shot.height), SIZE, "the display's size");
    assert_eq!(shot.pixel(150, 150), [255, 0, 170], "the block's corner");
    assert_eq!(shot.pixel(1000, 700), [255, 255, 255], "outside the block");

    // VNC through the lease's SSH: the tunnel answers as a VNC server, and names the
    // password file.
    let mut vnc = sb
        .crabbox(&repo, &["vnc", "--id", &lease.id, "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(vnc.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let tunnel: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("vnc --json: {e}: {line:?}"));
    assert_eq!(tunnel["passwordFile"], password_file.display().to_string());
    let port = u16::try_from(tunnel["port"].as_u64().unwrap()).unwrap();
    let mut banner = [0u8; 12];
    std::net::TcpStream::connect(("127.0.0.1", port))
        .unwrap()
        .read_exact(&mut banner)
        .unwrap();
    assert_eq!(&banner[..4], b"RFB ", "{banner:?}");
    std::process::Command::new("kill")
        .args(["-INT", &vnc.id().to_string()])
        .status()
        .unwrap();
    let status = vnc.wait().unwrap();
    assert_eq!(status.code(), Some(0), "Ctrl-C closes the tunnel");

    let id = lease.id.clone();
    drop(lease);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = processes_of(&display);
        let left_browser = processes_of(&format!("local/{id}"));
        if left.is_empty() && left_browser.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left after stop: {left:?} {left_browser:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn two_desktop_leases_never_share_a_display() {
    let (sb, repo) = setup("rgb(0,200,0)");
    let (first, first_inspect) = warm_desktop(&sb, &repo);
    let (second, second_inspect) = warm_desktop(&sb, &repo);
    let display =
        |v: &serde_json::Value| v["labels"]["desktop_display"].as_str().unwrap().to_owned();
    assert_ne!(display(&first_inspect), display(&second_inspect));
    // Only the first shows the page; the second's screen stays empty.
    open_page(&sb, &repo, &first.id);
    screenshot_showing(&sb, &repo, &first.id, [0, 200, 0]);
    let path = sb.work().join("second.png");
    let out = sb.run(
        &repo,
        &[
            "screenshot",
            "--id",
            &second.id,
            "--output",
            path.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let shot = Shot::read(&path);
    assert_ne!(
        shot.pixel(300, 250),
        [0, 200, 0],
        "the other lease's page is not here"
    );
}

#[test]
fn desktop_requests_a_lease_cannot_meet_are_clear_errors_that_change_nothing() {
    let (sb, repo) = setup("red");
    let plain = crate::warm(&sb, &repo);
    // A plain lease has no desktop to show, and cannot gain one.
    let path = sb.work().join("plain.png");
    let out = sb.run(
        &repo,
        &[
            "screenshot",
            "--id",
            &plain,
            "--output",
            path.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("has no desktop"), "{}", stderr(&out));
    assert!(!path.exists(), "no file written");
    let out = sb.run(&repo, &["run", "--id", &plain, "--desktop", "--", "true"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot gain a desktop later"),
        "{}",
        stderr(&out)
    );
    let out = sb.run(&repo, &["vnc", "--id", &plain]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));

    // An unknown desktop env, one the local provider does not run, a provider without
    // desktops: refused before anything is leased.
    let leases = || -> Vec<String> {
        let out = sb.run(&repo, &["list", "--json"]);
        let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let ids = listed.as_array().unwrap().iter();
        ids.map(|l| l["id"].as_str().unwrap().to_owned()).collect()
    };
    let before = leases();
    assert_eq!(before, std::slice::from_ref(&plain));
    let out = sb.run(&repo, &["warmup", "--desktop", "--desktop-env", "kde"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("xfce, wayland, gnome or openbox"),
        "{}",
        stderr(&out)
    );
    let out = sb.run(&repo, &["warmup", "--desktop", "--desktop-env", "xfce"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("desktop is openbox"),
        "{}",
        stderr(&out)
    );
    let out = sb.run(
        &repo,
        &[
            "warmup",
            "--provider",
            "ssh",
            "--static-host",
            "127.0.0.1",
            "--desktop",
        ],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot offer a desktop lease"),
        "{}",
        stderr(&out)
    );
    assert_eq!(leases(), before, "no lease was made");
    let _ = sb.run(&repo, &["stop", &plain]);
}

#[test]
fn a_brokered_desktop_lease_keeps_its_display_through_the_coordinator() {
    let (sb, repo) = setup("rgb(0,0,255)");
    let state = sb.path().join("coordinator-state");
    let server = crate::coordinator::serve(
        &sb,
        &state,
        &[
            "--providers",
            "local,ssh",
            "--ssh-pool",
            "nobody@127.0.0.1:1",
        ],
        &[],
    );
    let cli = |args: &[&str]| {
        sb.crabbox(&repo, args)
            .env("CRABBOX_COORDINATOR", &server.url)
            .env("CRABBOX_COORDINATOR_TOKEN", crate::coordinator::SHARED)
            .output()
            .expect("crabbox runs")
    };
    let out = cli(&[
        "warmup",
        "--provider",
        "local",
        "--desktop",
        "--browser",
        "--json",
    ]);
    assert_eq!(code(&out), 0, "brokered desktop warmup: {}", stderr(&out));
    let warm: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = warm["lease"]["id"].as_str().unwrap().to_owned();
    let out = cli(&[
        "run",
        "--id",
        &id,
        "--desktop",
        "--browser",
        "--shell",
        "setsid -f \"$BROWSER\" --kiosk --disable-gpu \"file://$PWD/page.html\" \
         </dev/null >/dev/null 2>&1; echo display=$DISPLAY",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let display = stdout(&out)
        .lines()
        .find_map(|l| l.strip_prefix("display="))
        .unwrap()
        .trim()
        .to_owned();
    assert_ne!(
        display, ":99",
        "the local runner's own display, from the coordinator"
    );
    let path = sb.work().join("brokered.png");
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        let out = cli(&[
            "screenshot",
            "--id",
            &id,
            "--output",
            path.to_str().unwrap(),
        ]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        if Shot::read(&path).pixel(300, 250) == [0, 0, 255] {
            break;
        }
        assert!(Instant::now() < deadline, "the page never showed");
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = cli(&["stop", &id]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // A provider without desktops: the coordinator refuses before leasing.
    let out = cli(&["warmup", "--provider", "ssh", "--desktop"]);
    assert_ne!(code(&out), 0);
    assert!(
        stderr(&out).contains("cannot offer a desktop lease"),
        "{}",
        stderr(&out)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_of(&display).is_empty() {
        assert!(
            Instant::now() < deadline,
            "left: {:?}",
            processes_of(&display)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
