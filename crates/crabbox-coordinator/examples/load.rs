//! Load generator for the coordinator bench (`scripts/bench-coordinator`): drives lease cycles
//! against a running coordinator over HTTP and prints one JSON line of results.
//!
//! A cycle is register → 3 heartbeats → run create → run finish → release (7 requests), the
//! coordinator's own work without provider time. Usage:
//! `load <base-url> <token> <concurrency> <seconds> [fill N]`; with `fill N` it instead
//! registers N leases (kept active) and exits, for the RSS-at-scale measurement.

#![expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a bench tool prints its result"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

const REGISTER: &str = r#"{"provider":"ssh","target":"linux","host":"10.0.0.1"}"#;
const HEARTBEAT: &str = r#"{"telemetry":{"load1":0.5,"memoryPercent":40.0}}"#;
const FINISH: &str = r#"{"exitCode":0,"log":"ok\n"}"#;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// One keep-alive HTTP/1.1 connection speaking just what the bench needs: a lean client, so
/// that the load generator, which shares the machine's cores with the coordinator, takes as
/// little of them as it can (reqwest with JSON parsing of every answer cost it about a third
/// of the machine).
struct Conn {
    host: String,
    stream: BufReader<TcpStream>,
    token: String,
}

impl Conn {
    async fn open(base: &str, token: &str) -> Result<Self, String> {
        let host = base
            .strip_prefix("http://")
            .ok_or_else(|| format!("{base}: only http:// is supported"))?
            .to_owned();
        let stream = TcpStream::connect(&host)
            .await
            .map_err(|e| format!("{host}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(Self {
            host,
            stream: BufReader::new(stream),
            token: token.to_owned(),
        })
    }

    /// Sends one request and returns the answer's body; an error for a non-2xx status.
    async fn send(&mut self, method: &str, path: &str, body: &str) -> Result<Vec<u8>, String> {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.host,
            self.token,
            body.len()
        );
        let io = |e: std::io::Error| format!("{path}: {e}");
        self.stream
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .map_err(io)?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await.map_err(io)?;
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{path}: bad status line {line:?}"))?;
        let mut length = 0;
        loop {
            line.clear();
            self.stream.read_line(&mut line).await.map_err(io)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value
                    .trim()
                    .parse()
                    .map_err(|_| format!("{path}: {header}"))?;
            }
        }
        let mut answer = vec![0; length];
        self.stream.read_exact(&mut answer).await.map_err(io)?;
        if (200..300).contains(&status) {
            Ok(answer)
        } else {
            Err(format!(
                "{method} {path}: {status} {}",
                String::from_utf8_lossy(&answer)
            ))
        }
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let base = args
        .get(1)
        .expect("base url")
        .trim_end_matches('/')
        .to_owned();
    let token = args.get(2).expect("token").clone();
    let concurrency: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
    let seconds: u64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(10);
    let prefix = format!(
        "bench-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    );

    if args.get(5).map(String::as_str) == Some("fill") {
        let n: usize = args.get(6).and_then(|s| s.parse().ok()).unwrap_or(10_000);
        let next = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..concurrency.max(1) {
            let (base, token, next, prefix) =
                (base.clone(), token.clone(), next.clone(), prefix.clone());
            tasks.push(tokio::spawn(async move {
                let mut http = Conn::open(&base, &token).await.expect("connect");
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n as u64 {
                        return;
                    }
                    let id = format!("{prefix}-fill-{i}");
                    http.send("PUT", &format!("/v1/leases/{id}/registration"), REGISTER)
                        .await
                        .expect("register");
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        println!("{}", json!({"filled": n}));
        return;
    }

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let counter = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (base, token, counter, errors, prefix) = (
            base.clone(),
            token.clone(),
            counter.clone(),
            errors.clone(),
            prefix.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut http = Conn::open(&base, &token).await.expect("connect");
            let mut cycles = Vec::new();
            let mut heartbeats = Vec::new();
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let id = format!("{prefix}-{worker}-{n}");
                let t0 = Instant::now();
                let result: Result<(), String> = async {
                    let lease = format!("/v1/leases/{id}");
                    http.send("PUT", &format!("{lease}/registration"), REGISTER)
                        .await?;
                    for _ in 0..3 {
                        let h = Instant::now();
                        http.send("POST", &format!("{lease}/heartbeat"), HEARTBEAT)
                            .await?;
                        heartbeats.push(h.elapsed().as_secs_f64() * 1000.0);
                    }
                    let body = json!({"leaseID": id, "command": ["true"]}).to_string();
                    let run = http.send("POST", "/v1/runs", &body).await?;
                    let run: serde_json::Value =
                        serde_json::from_slice(&run).map_err(|e| e.to_string())?;
                    let run_id = run["run"]["id"].as_str().unwrap_or_default().to_owned();
                    http.send("POST", &format!("/v1/runs/{run_id}/finish"), FINISH)
                        .await?;
                    http.send("POST", &format!("{lease}/release"), "{}").await?;
                    Ok(())
                }
                .await;
                match result {
                    Ok(()) => {
                        cycles.push(t0.elapsed().as_secs_f64() * 1000.0);
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("error: {e}");
                        }
                    }
                }
            }
            (cycles, heartbeats)
        }));
    }
    let mut cycles = Vec::new();
    let mut heartbeats = Vec::new();
    for t in tasks {
        let (c, h) = t.await.expect("worker");
        cycles.extend(c);
        heartbeats.extend(h);
    }
    let elapsed = started.elapsed().as_secs_f64();
    cycles.sort_by(f64::total_cmp);
    heartbeats.sort_by(f64::total_cmp);
    println!(
        "{}",
        json!({
            "concurrency": concurrency,
            "seconds": elapsed,
            "cycles": cycles.len(),
            "errors": errors.load(Ordering::Relaxed),
            "cyclesPerSecond": cycles.len() as f64 / elapsed,
            "cycleP50Ms": percentile(&cycles, 0.5),
            "cycleP99Ms": percentile(&cycles, 0.99),
            "heartbeatP50Ms": percentile(&heartbeats, 0.5),
            "heartbeatP99Ms": percentile(&heartbeats, 0.99),
        })
    );
}
