//! The record a brokered `crabbox run` keeps on the coordinator (spec cli-dataplane §4.9,
//! §4.11; coordinator §2.3, §3.4, §3.5): lifecycle and live-output events posted in order from
//! a bounded queue, telemetry samples while the command runs, and the finish with the log tail
//! in ≤64 KiB chunks.
//!
//! Recording must never fail or slow the run: every coordinator call has a time limit, a full
//! queue drops the event instead of waiting, and failures only warn (once). Event text that
//! could quote a credential (error messages, command output) goes through the redactor first.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crabbox_api::coord::{RunCreateRequest, RunEventRequest, RunFinishRequest};
use crabbox_client::Client;
use crabbox_providers::LeaseRecord;
use crabbox_remote::session::SessionEvent;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::error::CliError;
use crate::lease::Sampler;

mod output;

pub use output::{LogTail, Recording, Tee};
use output::{log_chunks, log_preview, split_utf8};

/// Time limit of one event, telemetry or create call.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Time limit of the finish call (it carries up to 8 MiB of log).
const FINISH_TIMEOUT: Duration = Duration::from_mins(1);
/// How long finishing waits for queued events (live output) to be posted.
const FLUSH_WAIT: Duration = Duration::from_secs(2);
/// Time limit of one telemetry sample over ssh.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Queued events; when full, new events are dropped.
const QUEUE_DEPTH: usize = 32;
/// Live output sent as events, per run; the whole log still goes to finish.
const OUTPUT_BUDGET: usize = 64 * 1024;
const OUTPUT_CHUNK: usize = 16 * 1024;
/// Telemetry samples kept locally (the coordinator keeps the same number).
const SAMPLES_KEPT: usize = 60;
/// Default interval of live run telemetry; `CRABBOX_RUN_TELEMETRY_INTERVAL` overrides it.
pub const TELEMETRY_INTERVAL: Duration = Duration::from_secs(15);

/// The phase the CLI sends with an event of type `kind`: the one the coordinator would derive,
/// and for the two types it derives none for, the phase they mean here.
pub fn phase_for(kind: &str) -> Option<&'static str> {
    crabbox_api::coord::derived_phase(kind).or(match kind {
        "output.truncated" => Some("command"),
        "run.failed" => Some("failed"),
        _ => None,
    })
}

/// An event of `kind` with its phase.
pub fn event(kind: &str) -> RunEventRequest {
    RunEventRequest {
        kind: Some(kind.to_owned()),
        phase: phase_for(kind).map(str::to_owned),
        ..RunEventRequest::default()
    }
}

/// An event of `kind` naming `lease` (the coordinator copies these onto the run).
pub fn lease_event(kind: &str, lease: &LeaseRecord) -> RunEventRequest {
    RunEventRequest {
        lease_id: Some(lease.lease_id.clone()),
        slug: Some(lease.slug.clone()),
        provider: Some(lease.provider.clone()),
        target: Some("linux".into()),
        class: lease.labels.get("class").cloned().filter(|c| !c.is_empty()),
        server_type: Some(lease.server_type.clone()).filter(|s| !s.is_empty()),
        ..event(kind)
    }
}

/// Text safe to store in an event: credential-shaped spans redacted.
fn redacted(text: &str) -> String {
    crabbox_auth::secret::redact(text, &[])
}

#[derive(Debug)]
enum Item {
    Event(Box<RunEventRequest>),
    /// Answered once every earlier item was posted.
    Flush(oneshot::Sender<()>),
}

/// A run recorded on the coordinator.
pub struct RunRecorder {
    client: Client,
    pub run_id: String,
    queue: mpsc::Sender<Item>,
    poster: tokio::task::JoinHandle<()>,
    output: Arc<Mutex<OutputBudget>>,
    telemetry: Arc<Mutex<Samples>>,
    sampler: Option<(tokio::task::JoinHandle<()>, Sampler)>,
}

impl std::fmt::Debug for RunRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunRecorder")
            .field("run_id", &self.run_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct OutputBudget {
    used: usize,
    truncated: bool,
}

#[derive(Debug, Default)]
struct Samples {
    start: Option<Value>,
    samples: VecDeque<Value>,
}

/// What the finish call reports.
#[derive(Debug, Default)]
pub struct Finish<'a> {
    pub exit_code: i32,
    pub sync_ms: u64,
    pub command_ms: u64,
    pub log: Option<&'a LogTail>,
}

impl RunRecorder {
    /// Creates the run record (`POST /v1/runs`) and starts posting its events. `None`, with a
    /// warning, when the coordinator does not answer: the run goes on without history.
    pub async fn create(client: Client, req: RunCreateRequest) -> Option<Self> {
        let run = match tokio::time::timeout(CALL_TIMEOUT, client.create_run(&req)).await {
            Ok(Ok(run)) => run,
            Ok(Err(e)) => {
                crate::output::warn(format!("could not record this run on the coordinator: {e}"));
                return None;
            }
            Err(_) => {
                crate::output::warn(
                    "could not record this run on the coordinator: it did not answer in 10s",
                );
                return None;
            }
        };
        crate::output::err(format!("recording run {}", run.id));
        let (queue, rx) = mpsc::channel(QUEUE_DEPTH);
        let poster = tokio::spawn(post_events(client.clone(), run.id.clone(), rx));
        Some(Self {
            client,
            run_id: run.id,
            queue,
            poster,
            output: Arc::default(),
            telemetry: Arc::default(),
            sampler: None,
        })
    }

    /// A cheap handle for posting events from callbacks and output pumps.
    pub fn sink(&self) -> EventSink {
        EventSink {
            queue: self.queue.clone(),
            output: self.output.clone(),
        }
    }

    pub fn send(&self, event: RunEventRequest) {
        self.sink().send(event);
    }

    /// Marks the run failed (`run.failed`, phase `failed`) with the error that ended it.
    pub fn fail(&self, err: &CliError) {
        let mut message = redacted(&format!("{:#}", err.error));
        if let Some(hint) = &err.hint {
            message.push_str("; hint: ");
            message.push_str(&redacted(hint));
        }
        self.send(RunEventRequest {
            message: Some(message),
            exit_code: Some(f64::from(err.code)),
            ..event("run.failed")
        });
    }

    /// Takes the start sample (at most 5 s), then posts a sample every `interval` in the
    /// background until finish (spec §4.9 "Run telemetry").
    pub async fn start_telemetry(&mut self, sample: Sampler, interval: Duration) {
        if let Ok(Some(start)) = tokio::time::timeout(SAMPLE_TIMEOUT, sample()).await {
            self.telemetry.lock().expect("telemetry lock").start = Some(start);
        }
        let (client, id, store) = (
            self.client.clone(),
            self.run_id.clone(),
            self.telemetry.clone(),
        );
        let sampler = sample.clone();
        let task = tokio::spawn(async move {
            let mut warned = false;
            loop {
                tokio::time::sleep(interval).await;
                let Ok(Some(sample)) = tokio::time::timeout(SAMPLE_TIMEOUT, sampler()).await else {
                    continue;
                };
                {
                    let mut kept = store.lock().expect("telemetry lock");
                    if kept.samples.len() == SAMPLES_KEPT {
                        kept.samples.pop_front();
                    }
                    kept.samples.push_back(sample.clone());
                }
                let posted =
                    tokio::time::timeout(CALL_TIMEOUT, client.run_telemetry(&id, &sample)).await;
                if !matches!(posted, Ok(Ok(()))) && !warned {
                    warned = true;
                    crate::output::warn(format!("could not post telemetry of run {id}"));
                }
            }
        });
        self.sampler = Some((task, sample));
    }

    /// Finishes the record: waits briefly for queued events, stops the sampler, takes the end
    /// sample, and posts exit code, timings, the log tail and the telemetry summary.
    pub async fn finish(&mut self, finish: Finish<'_>) {
        self.flush().await;
        let end = match self.sampler.take() {
            Some((task, sample)) => {
                task.abort();
                tokio::time::timeout(SAMPLE_TIMEOUT, sample())
                    .await
                    .ok()
                    .flatten()
            }
            None => None,
        };
        let telemetry = {
            let kept = self.telemetry.lock().expect("telemetry lock");
            (kept.start.is_some() || end.is_some() || !kept.samples.is_empty()).then(|| {
                serde_json::json!({
                    "start": kept.start,
                    "end": end,
                    "samples": kept.samples,
                })
            })
        };
        let (log, log_chunks, truncated) = match finish.log {
            Some(tail) => {
                let (text, truncated) = tail.take();
                let chunks = log_chunks(&text);
                let preview = log_preview(&text).to_owned();
                (preview, chunks, truncated)
            }
            None => (String::new(), Vec::new(), false),
        };
        let req = RunFinishRequest {
            exit_code: Some(f64::from(finish.exit_code)),
            sync_ms: Some(finish.sync_ms as f64),
            command_ms: Some(finish.command_ms as f64),
            log: Some(log),
            log_chunks: Some(log_chunks),
            log_truncated: Some(truncated),
            telemetry,
            ..RunFinishRequest::default()
        };
        let id = &self.run_id;
        match tokio::time::timeout(FINISH_TIMEOUT, self.client.finish_run(id, &req)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => crate::output::warn(format!("could not finish run record {id}: {e}")),
            Err(_) => crate::output::warn(format!(
                "could not finish run record {id}: the coordinator did not answer in 60s"
            )),
        }
    }

    /// Records why a run ended before its command (`run.failed`, then finish with the
    /// error's exit code) and hands the error back.
    pub async fn abandon(recorder: Option<Self>, err: CliError) -> CliError {
        if let Some(mut r) = recorder {
            r.fail(&err);
            r.finish(Finish {
                exit_code: i32::from(err.code),
                ..Finish::default()
            })
            .await;
            r.close().await;
        }
        err
    }

    /// Waits up to 2 s for the events queued so far to be posted.
    async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        let _ = tokio::time::timeout(FLUSH_WAIT, async {
            if self.queue.send(Item::Flush(tx)).await.is_ok() {
                let _ = rx.await;
            }
        })
        .await;
    }

    /// Posts what is still queued (bounded by one call's time limit) and stops.
    pub async fn close(self) {
        let Self {
            queue,
            mut poster,
            sampler,
            ..
        } = self;
        if let Some((task, _)) = sampler {
            task.abort();
        }
        drop(queue);
        if tokio::time::timeout(CALL_TIMEOUT, &mut poster)
            .await
            .is_err()
        {
            poster.abort();
        }
    }
}

/// Posts queued events in order; a 404 (the run is gone or not ours) stops posting.
async fn post_events(client: Client, id: String, mut rx: mpsc::Receiver<Item>) {
    let mut enabled = true;
    let mut warned = false;
    while let Some(item) = rx.recv().await {
        let event = match item {
            Item::Flush(done) => {
                let _ = done.send(());
                continue;
            }
            Item::Event(_) if !enabled => continue,
            Item::Event(event) => *event,
        };
        match tokio::time::timeout(CALL_TIMEOUT, client.run_event(&id, &event)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) if e.status() == Some(404) => enabled = false,
            Ok(Err(_)) | Err(_) if warned => {}
            Ok(Err(e)) => {
                warned = true;
                crate::output::warn(format!("could not record an event of run {id}: {e}"));
            }
            Err(_) => {
                warned = true;
                crate::output::warn(format!(
                    "could not record an event of run {id}: the coordinator did not answer in 10s"
                ));
            }
        }
    }
}

/// Queues run events without waiting: a full queue drops the event.
#[derive(Debug, Clone)]
pub struct EventSink {
    queue: mpsc::Sender<Item>,
    output: Arc<Mutex<OutputBudget>>,
}

impl EventSink {
    pub fn send(&self, event: RunEventRequest) {
        let _ = self.queue.try_send(Item::Event(Box::new(event)));
    }

    /// Live output of `stream` (`stdout`/`stderr`): sent in ≤16 KiB events until the run's
    /// 64 KiB budget is spent, then one `output.truncated` event.
    pub fn output(&self, stream: &str, bytes: &[u8]) {
        let (take, truncated_now) = {
            let mut budget = self.output.lock().expect("output budget lock");
            let take = bytes.len().min(OUTPUT_BUDGET - budget.used);
            budget.used += take;
            let over = take < bytes.len() && !budget.truncated;
            budget.truncated |= over;
            (take, over)
        };
        if take > 0 {
            let text = redacted(&String::from_utf8_lossy(&bytes[..take]));
            for chunk in split_utf8(&text, OUTPUT_CHUNK) {
                self.send(RunEventRequest {
                    stream: Some(stream.to_owned()),
                    message: Some(chunk.to_owned()),
                    ..event(stream)
                });
            }
        }
        if truncated_now {
            self.send(RunEventRequest {
                message: Some(format!(
                    "live output is limited to {} KiB per run; `crabbox logs` has the rest",
                    OUTPUT_BUDGET / 1024
                )),
                ..event("output.truncated")
            });
        }
    }
}

/// Turns a session's progress into run events: `sync.started`, `sync.finished` (with its
/// duration, or `skipped=true` when the fingerprint matched) and `command.started`.
#[derive(Debug)]
pub struct SessionEvents {
    sink: EventSink,
    sync_started: Instant,
}

impl SessionEvents {
    pub fn new(sink: EventSink) -> Self {
        Self {
            sink,
            sync_started: Instant::now(),
        }
    }

    pub fn on(&mut self, event: &SessionEvent) {
        match event {
            SessionEvent::Syncing { files, bytes } => {
                self.sync_started = Instant::now();
                self.sink.send(RunEventRequest {
                    message: Some(format!("files={files} bytes={bytes}")),
                    ..self::event("sync.started")
                });
            }
            SessionEvent::Skipped(reason) => {
                self.sink.send(self::event("sync.started"));
                self.sink.send(RunEventRequest {
                    message: Some(format!("skipped=true reason={reason}")),
                    data: Some(serde_json::json!({"skipped": true})),
                    ..self::event("sync.finished")
                });
            }
            SessionEvent::Synced => {
                let took = self.sync_started.elapsed();
                self.sink.send(RunEventRequest {
                    message: Some(format!(
                        "duration={} skipped=false",
                        crabbox_core::duration::format_duration(took)
                    )),
                    data: Some(serde_json::json!({
                        "durationMs": took.as_millis() as u64,
                        "skipped": false,
                    })),
                    ..self::event("sync.finished")
                });
            }
            SessionEvent::CommandStarted => self.sink.send(self::event("command.started")),
            SessionEvent::WaitingForLock => {}
        }
    }
}

/// The live telemetry interval: `CRABBOX_RUN_TELEMETRY_INTERVAL` (a Go duration, at least 1s)
/// or 15s.
pub fn telemetry_interval() -> Duration {
    let Ok(raw) = std::env::var("CRABBOX_RUN_TELEMETRY_INTERVAL") else {
        return TELEMETRY_INTERVAL;
    };
    match crabbox_core::duration::parse_duration(&raw) {
        Ok(d) => d.max(Duration::from_secs(1)),
        Err(e) => {
            crate::output::warn(format!(
                "ignoring CRABBOX_RUN_TELEMETRY_INTERVAL={raw:?}: {e}; sampling every 15s"
            ));
            TELEMETRY_INTERVAL
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn live_output_stops_at_the_budget_with_one_truncation_event() {
        let (queue, mut rx) = mpsc::channel(QUEUE_DEPTH);
        let sink = EventSink {
            queue,
            output: Arc::default(),
        };
        sink.output("stdout", &vec![b'a'; OUTPUT_BUDGET - 10]);
        sink.output("stderr", &[b'b'; 30]);
        sink.output("stdout", b"more");
        drop(sink);
        let mut kinds = Vec::new();
        let mut bytes = 0;
        while let Some(Item::Event(e)) = rx.recv().await {
            if e.stream.is_some() {
                bytes += e.message.as_ref().map_or(0, String::len);
                assert!(e.message.as_ref().unwrap().len() <= OUTPUT_CHUNK);
            }
            assert_eq!(e.phase.as_deref(), Some("command"));
            kinds.push(e.kind.unwrap());
        }
        assert_eq!(bytes, OUTPUT_BUDGET);
        assert_eq!(kinds.last().map(String::as_str), Some("output.truncated"));
        assert_eq!(kinds.iter().filter(|k| *k == "output.truncated").count(), 1);
        assert_eq!(kinds.iter().filter(|k| *k == "stderr").count(), 1);
    }

    #[test]
    fn every_cli_event_has_a_phase() {
        for kind in [
            "leasing.started",
            "lease.created",
            "bootstrap.waiting",
            "sync.started",
            "sync.finished",
            "command.started",
            "stdout",
            "output.truncated",
            "lease.released",
            "run.failed",
        ] {
            assert!(event(kind).phase.is_some(), "{kind}");
        }
    }
}
