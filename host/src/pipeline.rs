//! Handler workers: each message goes to every handler whose topics match it,
//! each handler's actions are carried out by the sinks, and failures go to
//! the handler's error policy. A partition always goes to the same worker,
//! so its messages are handled in order. A message is released to the
//! commit tracker only when every action of every handler is durable.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use base64::Engine as _;
use serde_json::json;

use crate::bindings::{Action, Message, TimestampKind};
use crate::commit::{Commits, TopicPartition};
use crate::config::{OnError, TopicSelector};
use crate::runtime::{HandlerCode, HandlerFailure, LiveHandler, LogLine, level_str};
use crate::sink::kafka::{Delivery, Record};
use crate::sink::{FileSink, Sink};

/// Messages queued per worker before the consumer waits.
const WORKER_QUEUE: usize = 256;
/// Attempts of a file write before the host stops.
const SINK_ATTEMPTS: u32 = 3;

/// State shared by the consumer, the workers and delivery callbacks.
#[derive(Debug, Default)]
pub struct Shared {
    /// Offsets in flight.
    pub commits: Commits,
    fatal: Mutex<Option<String>>,
    stop: AtomicBool,
    /// Counters for the summary.
    pub stats: Stats,
}

impl Shared {
    /// Stop the host because something cannot be handled safely; nothing
    /// past the failing message is committed. The first reason is kept.
    pub fn fail(&self, reason: String) {
        tracing::error!("{reason}");
        let mut fatal = self.fatal.lock().unwrap_or_else(PoisonError::into_inner);
        fatal.get_or_insert(reason);
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Why the host is stopping on an error, if it is.
    pub fn fatal(&self) -> Option<String> {
        self.fatal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Ask for a graceful stop.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked for (or an error forced one).
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// Counters for the summary.
#[derive(Debug, Default)]
pub struct Stats {
    /// Messages read.
    pub messages: AtomicU64,
    /// Messages no handler takes (committed as dropped).
    pub unrouted: AtomicU64,
    /// Handler decisions with at least one save.
    pub saved: AtomicU64,
    /// Handler decisions with at least one forward.
    pub forwarded: AtomicU64,
    /// Handler decisions with no action.
    pub dropped: AtomicU64,
    /// Handler failures (any policy).
    pub failed: AtomicU64,
    /// Dead letters written.
    pub dead_lettered: AtomicU64,
}

impl Stats {
    /// Count one.
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A one-line summary.
    pub fn summary(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "{} messages read, {} not for any handler; decisions: {} saved, {} forwarded, {} dropped, {} failed ({} dead-lettered)",
            get(&self.messages),
            get(&self.unrouted),
            get(&self.saved),
            get(&self.forwarded),
            get(&self.dropped),
            get(&self.failed),
            get(&self.dead_lettered),
        )
    }
}

/// A handler as the workers run it.
#[derive(Debug)]
pub struct HandlerSpec {
    /// Its name.
    pub name: String,
    /// The version to run, with its parameters; swapped atomically by a
    /// reload. Workers pick up a new one between two messages.
    pub current: ArcSwap<Deployed>,
    /// Its topics.
    pub topics: Vec<TopicSelector>,
    /// The file sink saves go to.
    pub save_to: Option<String>,
    /// Sinks forwards may name.
    pub forward_to: Vec<String>,
    /// Error policy.
    pub on_error: OnError,
    /// Retries under `retry`.
    pub retries: u32,
    /// Dead-letter sink.
    pub dead_letter: String,
}

/// A handler version with the parameters it was checked with.
#[derive(Debug)]
pub struct Deployed {
    /// The loaded version.
    pub code: Arc<HandlerCode>,
    /// Parameters for `init`.
    pub params: Vec<(String, String)>,
}

/// One message for one worker.
#[derive(Debug)]
pub struct Job {
    /// Where it came from.
    pub tp: TopicPartition,
    /// The message.
    pub msg: Message,
    /// Indexes of the handlers it goes to (shared by every message of its
    /// topic).
    pub handlers: Arc<[usize]>,
}

/// The worker threads.
#[derive(Debug)]
pub struct Workers {
    senders: Vec<SyncSender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Start `count` workers, each with its own instance of every handler
    /// (`init` runs now: a handler that refuses its parameters stops the
    /// start).
    pub fn start(
        count: usize,
        handlers: Arc<Vec<HandlerSpec>>,
        sinks: Arc<BTreeMap<String, Sink>>,
        shared: Arc<Shared>,
    ) -> anyhow::Result<Self> {
        let mut senders = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        for index in 0..count {
            let mut live = Vec::with_capacity(handlers.len());
            for spec in handlers.iter() {
                let deployed = spec.current.load_full();
                let (handler, logs) =
                    LiveHandler::new(deployed.code.clone(), deployed.params.clone()).map_err(
                        |failure| {
                            anyhow::anyhow!(
                                "handler `{}` ({}) cannot start: {failure}",
                                spec.name,
                                deployed
                                    .code
                                    .info()
                                    .path
                                    .as_deref()
                                    .unwrap_or(std::path::Path::new("?"))
                                    .display()
                            )
                        },
                    )?;
                if index == 0 {
                    emit_logs(spec, deployed.code.version(), None, &logs);
                }
                live.push((deployed, handler));
            }
            let (tx, rx) = sync_channel(WORKER_QUEUE);
            let worker = Worker {
                handlers: handlers.clone(),
                streaks: vec![0; live.len()],
                live,
                sinks: sinks.clone(),
                shared: shared.clone(),
            };
            threads.push(
                std::thread::Builder::new()
                    .name(format!("alerthost-worker-{index}"))
                    .spawn(move || worker.run(rx))
                    .context("cannot start a worker thread")?,
            );
            senders.push(tx);
        }
        Ok(Workers { senders, threads })
    }

    /// Queue a job on the worker that owns its partition (waits while that
    /// worker's queue is full).
    pub fn dispatch(&self, job: Job) {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        job.tp.hash(&mut hasher);
        let index = (hasher.finish() % self.senders.len() as u64) as usize;
        // A worker only exits when its sender is dropped, so this cannot fail.
        let _ = self.senders[index].send(job);
    }

    /// Let the workers finish what is queued, then end them.
    pub fn finish(self) {
        drop(self.senders);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

struct Worker {
    handlers: Arc<Vec<HandlerSpec>>,
    /// Per handler: the version this worker runs and its instance.
    live: Vec<(Arc<Deployed>, LiveHandler)>,
    /// Per handler: messages failed in a row, to report a handler that keeps
    /// failing.
    streaks: Vec<u64>,
    sinks: Arc<BTreeMap<String, Sink>>,
    shared: Arc<Shared>,
}

/// Why a message cannot be completed.
enum Halt {
    /// Stop the host with this reason.
    Fatal(String),
}

impl Worker {
    fn run(mut self, jobs: Receiver<Job>) {
        for job in jobs {
            // After a fatal error nothing more is handled, so nothing past the
            // failed message is released for commit.
            if self.shared.fatal().is_some() {
                continue;
            }
            match self.handle_job(&job) {
                Ok(()) => self.shared.commits.release(&job.tp, job.msg.offset),
                Err(Halt::Fatal(reason)) => self.shared.fail(reason),
            }
        }
    }

    fn handle_job(&mut self, job: &Job) -> Result<(), Halt> {
        for &index in job.handlers.iter() {
            let spec = &self.handlers[index];
            let (running, live) = &mut self.live[index];
            // A reload swapped in a new version: take it up between messages.
            let current = spec.current.load();
            if !Arc::ptr_eq(&current, running) {
                match LiveHandler::new(current.code.clone(), current.params.clone()) {
                    Ok((handler, _)) => {
                        tracing::info!(handler = %spec.name, from = %running.code.version(), to = %current.code.version(), "worker switched to the new version");
                        *running = arc_swap::Guard::into_inner(current);
                        *live = handler;
                    }
                    Err(failure) => {
                        tracing::warn!(handler = %spec.name, version = current.code.version(), error = %failure, "cannot start the new version here; staying on the old one")
                    }
                }
            }
            let deployed = Arc::clone(running);
            let version = deployed.code.version();
            let mut attempt = 0;
            loop {
                let report = live.handle(&job.msg);
                emit_logs(spec, version, Some(&job.msg), &report.logs);
                let failure = match report.outcome {
                    Ok(actions) => match check_actions(spec, &actions, &self.sinks) {
                        Ok(()) => {
                            execute(spec, version, job, &actions, &self.sinks, &self.shared)?;
                            self.streaks[index] = 0;
                            break;
                        }
                        Err(failure) => failure,
                    },
                    Err(failure) => failure,
                };
                Stats::bump(&self.shared.stats.failed);
                let streak = &mut self.streaks[index];
                *streak += 1;
                if streak.is_power_of_two() && *streak >= 8 {
                    tracing::error!(handler = %spec.name, version, failures = *streak, last_error = %failure, "handler keeps failing: {} messages in a row", *streak);
                }
                let at = format!(
                    "{}[{}]@{}",
                    job.msg.topic, job.msg.partition, job.msg.offset
                );
                match spec.on_error {
                    OnError::Retry if attempt < spec.retries => {
                        attempt += 1;
                        let backoff = Duration::from_millis(100 << attempt.min(6));
                        tracing::warn!(handler = %spec.name, version, message = %at, attempt, error = %failure, "handler failed; retrying in {backoff:?}");
                        std::thread::sleep(backoff);
                    }
                    OnError::Skip => {
                        tracing::warn!(handler = %spec.name, version, message = %at, error = %failure, "handler failed; skipping the message (on_error = skip)");
                        break;
                    }
                    OnError::Stop => {
                        return Err(Halt::Fatal(format!(
                            "handler `{}` (version {version}) failed on {at} and its policy is `stop`: {failure}",
                            spec.name,
                        )));
                    }
                    OnError::DeadLetter | OnError::Retry => {
                        tracing::warn!(handler = %spec.name, version, message = %at, error = %failure, sink = %spec.dead_letter, "handler failed; writing a dead letter");
                        dead_letter(spec, version, job, &failure, &self.sinks, &self.shared)?;
                        Stats::bump(&self.shared.stats.dead_lettered);
                        break;
                    }
                }
            }
        }
        Ok(())
    }
}

fn emit_logs(spec: &HandlerSpec, version: &str, msg: Option<&Message>, logs: &[LogLine]) {
    let (topic, partition, offset) =
        msg.map_or(("", -1, -1), |m| (m.topic.as_str(), m.partition, m.offset));
    for line in logs {
        let text = &line.text;
        match level_str(line.level) {
            "error" => {
                tracing::error!(handler = %spec.name, version, topic, partition, offset, "{text}")
            }
            "warn" => {
                tracing::warn!(handler = %spec.name, version, topic, partition, offset, "{text}")
            }
            "info" => {
                tracing::info!(handler = %spec.name, version, topic, partition, offset, "{text}")
            }
            "debug" => {
                tracing::debug!(handler = %spec.name, version, topic, partition, offset, "{text}")
            }
            _ => tracing::trace!(handler = %spec.name, version, topic, partition, offset, "{text}"),
        }
    }
}

/// Refuse, before anything is written, actions the handler is not allowed.
fn check_actions(
    spec: &HandlerSpec,
    actions: &[Action],
    sinks: &BTreeMap<String, Sink>,
) -> Result<(), HandlerFailure> {
    for action in actions {
        match action {
            Action::Save(_) if spec.save_to.is_none() => {
                return Err(HandlerFailure {
                    kind: crate::runtime::FailureKind::Sink,
                    text: "returned a save, but the handler has no `save_to` sink".into(),
                });
            }
            Action::Forward(forward)
                if !spec.forward_to.contains(&forward.sink)
                    || !sinks.contains_key(&forward.sink) =>
            {
                return Err(HandlerFailure {
                    kind: crate::runtime::FailureKind::Sink,
                    text: format!(
                        "forwarded to sink `{}`, which is not in its `forward_to` ({})",
                        forward.sink,
                        spec.forward_to.join(", ")
                    ),
                });
            }
            _ => {}
        }
    }
    Ok(())
}

fn provenance(
    spec: &HandlerSpec,
    version: &str,
    msg: &Message,
    out: &mut Vec<(&str, Option<Vec<u8>>)>,
) {
    out.push((
        "alerthost.source.topic",
        Some(msg.topic.clone().into_bytes()),
    ));
    out.push((
        "alerthost.source.partition",
        Some(msg.partition.to_string().into_bytes()),
    ));
    out.push((
        "alerthost.source.offset",
        Some(msg.offset.to_string().into_bytes()),
    ));
    out.push(("alerthost.handler", Some(spec.name.clone().into_bytes())));
    out.push((
        "alerthost.handler.version",
        Some(version.as_bytes().to_vec()),
    ));
}

fn execute(
    spec: &HandlerSpec,
    version: &str,
    job: &Job,
    actions: &[Action],
    sinks: &BTreeMap<String, Sink>,
    shared: &Shared,
) -> Result<(), Halt> {
    let msg = &job.msg;
    let mut decision = Vec::new();
    for action in actions {
        match action {
            Action::Save(save) => {
                let Some(Sink::File(sink)) = spec.save_to.as_ref().and_then(|s| sinks.get(s))
                else {
                    unreachable!("checked by check_actions and config validation");
                };
                let path =
                    sink.path_for(save.name.as_deref(), &msg.topic, msg.partition, msg.offset);
                let bytes = save.value.as_deref().unwrap_or(&msg.value);
                write_with_retries(sink, &path, bytes).map_err(|error| {
                    Halt::Fatal(format!(
                        "handler `{}`: cannot save {}[{}]@{} to {}: {error:#}; stopping without committing it",
                        spec.name, msg.topic, msg.partition, msg.offset, path.display()
                    ))
                })?;
                tracing::debug!(handler = %spec.name, version, topic = %msg.topic, partition = msg.partition, offset = msg.offset, path = %path.display(), "saved");
                decision.push("save");
            }
            Action::Forward(forward) => {
                let value = forward.value.as_deref().unwrap_or(&msg.value);
                let key = forward.key.as_deref().or(msg.key.as_deref());
                let mut headers: Vec<(&str, Option<Vec<u8>>)> = match &forward.headers {
                    Some(headers) => headers
                        .iter()
                        .map(|h| (h.name.as_str(), h.value.clone()))
                        .collect(),
                    None => msg
                        .headers
                        .iter()
                        .map(|h| (h.name.as_str(), h.value.clone()))
                        .collect(),
                };
                provenance(spec, version, msg, &mut headers);
                match &sinks[&forward.sink] {
                    Sink::Kafka(sink) => {
                        shared.commits.lock().hold(&job.tp, msg.offset);
                        let record = Record {
                            key,
                            value,
                            headers: headers.iter().map(|(k, v)| (*k, v.as_deref())).collect(),
                        };
                        let delivery = Box::new(Delivery {
                            tp: job.tp.clone(),
                            offset: msg.offset,
                            sink: sink.name().clone(),
                        });
                        if let Err(error) = sink.send(&record, delivery) {
                            shared.commits.release(&job.tp, msg.offset);
                            return Err(Halt::Fatal(format!("handler `{}`: {error:#}", spec.name)));
                        }
                    }
                    Sink::Stdout => print_json_line(&json!({
                        "sink": forward.sink,
                        "handler": spec.name,
                        "version": version,
                        "topic": msg.topic,
                        "partition": msg.partition,
                        "offset": msg.offset,
                        "key": key.map(text_or_base64),
                        "value": text_or_base64(value),
                    })),
                    Sink::File(_) => {
                        unreachable!("config validation refuses file sinks in forward_to")
                    }
                }
                decision.push("forward");
            }
        }
    }
    let stats = &shared.stats;
    if decision.is_empty() {
        Stats::bump(&stats.dropped);
    }
    if decision.contains(&"save") {
        Stats::bump(&stats.saved);
    }
    if decision.contains(&"forward") {
        Stats::bump(&stats.forwarded);
    }
    tracing::debug!(handler = %spec.name, version, topic = %msg.topic, partition = msg.partition, offset = msg.offset, decision = %if decision.is_empty() { "drop".to_owned() } else { decision.join("+") }, "handled");
    Ok(())
}

fn write_with_retries(sink: &FileSink, path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut attempt = 1;
    loop {
        match sink.write(path, bytes) {
            Ok(()) => return Ok(()),
            Err(error) if attempt < SINK_ATTEMPTS => {
                tracing::warn!(path = %path.display(), attempt, error = %format!("{error:#}"), "save failed; trying again");
                std::thread::sleep(Duration::from_millis(200 * u64::from(attempt)));
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

fn text_or_base64(bytes: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => json!(text),
        Err(_) => json!({ "base64": base64::engine::general_purpose::STANDARD.encode(bytes) }),
    }
}

fn print_json_line(value: &serde_json::Value) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

/// Write the raw message, the error and the handler version to the
/// handler's dead-letter sink, durably.
fn dead_letter(
    spec: &HandlerSpec,
    version: &str,
    job: &Job,
    failure: &HandlerFailure,
    sinks: &BTreeMap<String, Sink>,
    shared: &Shared,
) -> Result<(), Halt> {
    let msg = &job.msg;
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let record = json!({
        "handler": spec.name,
        "version": version,
        "error": { "kind": failure.kind, "text": failure.text },
        "time": now,
        "topic": msg.topic,
        "partition": msg.partition,
        "offset": msg.offset,
        "timestamp": msg.timestamp.map(|t| t.millis),
        "timestamp_kind": msg.timestamp.map(|t| match t.kind { TimestampKind::CreateTime => "create-time", TimestampKind::LogAppendTime => "log-append-time" }),
        "key": msg.key.as_deref().map(text_or_base64),
        "headers": msg.headers.iter().map(|h| json!({ "name": h.name, "value": h.value.as_deref().map(text_or_base64) })).collect::<Vec<_>>(),
    });
    let halt = |error: anyhow::Error| {
        Halt::Fatal(format!(
            "handler `{}`: cannot write the dead letter of {}[{}]@{} to sink `{}`: {error:#}; stopping without committing it",
            spec.name, msg.topic, msg.partition, msg.offset, spec.dead_letter
        ))
    };
    match &sinks[&spec.dead_letter] {
        Sink::File(sink) => {
            // The raw bytes as they came, and the record beside them.
            let path = sink.path_for(None, &msg.topic, msg.partition, msg.offset);
            let mut record_path = path.clone().into_os_string();
            record_path.push(".error.json");
            write_with_retries(sink, &path, &msg.value).map_err(halt)?;
            write_with_retries(
                sink,
                std::path::Path::new(&record_path),
                record.to_string().as_bytes(),
            )
            .map_err(halt)?;
        }
        Sink::Kafka(sink) => {
            let mut headers: Vec<(&str, Option<Vec<u8>>)> = msg
                .headers
                .iter()
                .map(|h| (h.name.as_str(), h.value.clone()))
                .collect();
            provenance(spec, version, msg, &mut headers);
            headers.push((
                "alerthost.error.kind",
                Some(failure.kind.as_str().as_bytes().to_vec()),
            ));
            headers.push((
                "alerthost.error.text",
                Some(failure.text.clone().into_bytes()),
            ));
            headers.push(("alerthost.error.time", Some(now.into_bytes())));
            shared.commits.lock().hold(&job.tp, msg.offset);
            let sent = sink.send(
                &Record {
                    key: msg.key.as_deref(),
                    value: &msg.value,
                    headers: headers.iter().map(|(k, v)| (*k, v.as_deref())).collect(),
                },
                Box::new(Delivery {
                    tp: job.tp.clone(),
                    offset: msg.offset,
                    sink: sink.name().clone(),
                }),
            );
            if let Err(error) = sent {
                shared.commits.release(&job.tp, msg.offset);
                return Err(halt(error));
            }
        }
        Sink::Stdout => {
            let mut record = record;
            record["dead_letter"] = json!(true);
            record["value"] = text_or_base64(&msg.value);
            print_json_line(&record);
        }
    }
    Ok(())
}
