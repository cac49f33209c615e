//! The one place that prints. Results go to stdout; progress, diagnostics and summaries to
//! stderr. On a terminal a spinner shows the current phase; otherwise phases are silent.

#![expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "this module is the CLI's printer"
)]

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Prints one line of results to stdout.
pub fn out(line: impl AsRef<str>) {
    println!("{}", line.as_ref());
}

/// Writes text to stdout as is (no added newline).
pub fn raw(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Prints a JSON document to stdout.
pub fn json<T: serde::Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("views serialize")
    );
}

/// Prints one diagnostic line to stderr (clearing a spinner first).
pub fn err(line: impl AsRef<str>) {
    Progress::clear_line();
    eprintln!("{}", line.as_ref());
}

/// Prints a warning.
pub fn warn(line: impl AsRef<str>) {
    err(format!("warning: {}", line.as_ref()));
}

#[derive(Debug, Default)]
struct SpinnerState {
    phase: String,
    started: Option<Instant>,
    active: bool,
}

/// A phase spinner on stderr, drawn only when stderr is a terminal.
#[derive(Debug, Clone)]
pub struct Progress {
    state: Option<Arc<Mutex<SpinnerState>>>,
}

static DRAWN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Progress {
    /// Starts a spinner (a no-op off a terminal or when `quiet`).
    pub fn start(quiet: bool) -> Self {
        if quiet || !std::io::stderr().is_terminal() {
            return Self { state: None };
        }
        let state = Arc::new(Mutex::new(SpinnerState::default()));
        let weak = Arc::downgrade(&state);
        std::thread::spawn(move || {
            let frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
            let mut i = 0;
            while let Some(state) = weak.upgrade() {
                {
                    let s = state.lock().expect("spinner lock");
                    if s.active {
                        let secs = s.started.map_or(0.0, |t| t.elapsed().as_secs_f64());
                        eprint!(
                            "\r\x1b[2K{} {} ({secs:.1}s)",
                            frames[i % frames.len()],
                            s.phase
                        );
                        let _ = std::io::stderr().flush();
                        DRAWN.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                drop(state);
                i += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Self { state: Some(state) }
    }

    /// Shows a new phase.
    pub fn phase(&self, phase: impl Into<String>) {
        if let Some(state) = &self.state {
            let mut s = state.lock().expect("spinner lock");
            s.phase = phase.into();
            s.started = Some(Instant::now());
            s.active = true;
        }
    }

    /// Stops drawing (the command's own output follows).
    pub fn finish(&self) {
        if let Some(state) = &self.state {
            state.lock().expect("spinner lock").active = false;
            Self::clear_line();
        }
    }

    fn clear_line() {
        if DRAWN.swap(false, std::sync::atomic::Ordering::Relaxed) {
            eprint!("\r\x1b[2K");
        }
    }
}
