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

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: serde_json::Value,
) -> Result<serde_json::Value, String> {
    let resp = http
        .request(method, &url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let value: serde_json::Value = resp.json().await.unwrap_or_default();
    if status.is_success() {
        Ok(value)
    } else {
        Err(format!("{url}: {status} {value}"))
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
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .expect("client");
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
            let (http, base, token, next, prefix) = (
                http.clone(),
                base.clone(),
                token.clone(),
                next.clone(),
                prefix.clone(),
            );
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n as u64 {
                        return;
                    }
                    let id = format!("{prefix}-fill-{i}");
                    let body = json!({"provider": "ssh", "target": "linux", "host": "10.0.0.1"});
                    send(
                        &http,
                        reqwest::Method::PUT,
                        format!("{base}/v1/leases/{id}/registration"),
                        &token,
                        body,
                    )
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
        let (http, base, token, counter, errors, prefix) = (
            http.clone(),
            base.clone(),
            token.clone(),
            counter.clone(),
            errors.clone(),
            prefix.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut cycles = Vec::new();
            let mut heartbeats = Vec::new();
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let id = format!("{prefix}-{worker}-{n}");
                let t0 = Instant::now();
                let result: Result<(), String> = async {
                    let lease = format!("{base}/v1/leases/{id}");
                    send(
                        &http,
                        reqwest::Method::PUT,
                        format!("{lease}/registration"),
                        &token,
                        json!({"provider": "ssh", "target": "linux", "host": "10.0.0.1"}),
                    )
                    .await?;
                    for _ in 0..3 {
                        let h = Instant::now();
                        send(
                            &http,
                            reqwest::Method::POST,
                            format!("{lease}/heartbeat"),
                            &token,
                            json!({"telemetry": {"load1": 0.5, "memoryPercent": 40.0}}),
                        )
                        .await?;
                        heartbeats.push(h.elapsed().as_secs_f64() * 1000.0);
                    }
                    let run = send(
                        &http,
                        reqwest::Method::POST,
                        format!("{base}/v1/runs"),
                        &token,
                        json!({"leaseID": id, "command": ["true"]}),
                    )
                    .await?;
                    let run_id = run["run"]["id"].as_str().unwrap_or_default().to_owned();
                    send(
                        &http,
                        reqwest::Method::POST,
                        format!("{base}/v1/runs/{run_id}/finish"),
                        &token,
                        json!({"exitCode": 0, "log": "ok\n"}),
                    )
                    .await?;
                    send(
                        &http,
                        reqwest::Method::POST,
                        format!("{lease}/release"),
                        &token,
                        json!({}),
                    )
                    .await?;
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
