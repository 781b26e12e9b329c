//! Handler workers. Each partition is a [`Lane`]; an idle worker takes the
//! next lane with messages from a shared pool, reads a batch from its queue
//! itself (no handoff between threads per message), handles it and gives
//! the lane back, so one worker at a time handles a partition, in order,
//! and busy partitions spread over all workers. For each message it takes a
//! token from the partition's track, runs every handler the router gives
//! the topic, hands each action to its sink with a clone of the token, and
//! applies the handler's error policy to failures (a sink refusing the
//! handler's output is one). A message is done when the worker and every
//! sink have dropped their clones.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use rdkafka::error::KafkaError;

use crate::bindings::{
    Action, Header, HeaderParam, Message, MessageView, Timestamp, TimestampKind,
};
use crate::commit::{Ack, InflightBudget};
use crate::config::{OnError, TopicSelector};
use crate::router::{Route, Router};
use crate::runtime::{FailureKind, HandlerCode, HandlerFailure, LiveHandler, LogLine, level_str};
use crate::shutdown::{Fatal, Shutdown};
use crate::sink::{OnRefused, Origin, Record, Refused, Sink, cut_error_text};
use crate::source::queue::{Batch, RawMessage};
use crate::source::{Lane, LaneTaker};
use crate::state::HandlerState;
use crate::stats::Stats;
use crate::telemetry::{DecisionKind, HandlerMeters};

/// Messages a worker takes from one lane before looking at the next.
const BURST: usize = 64;
/// How long an idle worker sleeps when no queue wakes it.
const IDLE: Duration = Duration::from_millis(100);

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
    /// Its state, shared by every version and worker; `None` when its
    /// component does not import `state`.
    pub state: Option<Arc<HandlerState>>,
}

/// A handler version with the parameters it was checked with.
#[derive(Debug)]
pub struct Deployed {
    /// The loaded version.
    pub code: Arc<HandlerCode>,
    /// Parameters for `init`.
    pub params: Vec<(String, String)>,
}

/// What one worker needs to run handlers: an instance of every handler,
/// the sinks, and where to count.
#[derive(Debug)]
pub struct HandlerSet {
    handlers: Arc<Vec<HandlerSpec>>,
    /// Per handler: the version this worker runs and its instance.
    live: Vec<(Arc<Deployed>, LiveHandler)>,
    /// Per handler: a swapped-in version whose `init` failed here, so it is
    /// not tried again on every message.
    refused: Vec<Option<Arc<Deployed>>>,
    /// Per handler: messages failed in a row, to report a handler that keeps
    /// failing.
    streaks: Vec<u64>,
    /// Per handler: its `handle` duration and decisions, counted here and
    /// flushed to the registry between bursts.
    meters: Vec<HandlerMeters>,
    /// Counts of this worker not yet added to the shared [`Stats`].
    tally: Tally,
    sinks: Arc<BTreeMap<String, Sink>>,
    shutdown: Arc<Shutdown>,
    stats: Arc<Stats>,
}

impl HandlerSet {
    /// An instance of every handler (`init` runs now: a handler that refuses
    /// its parameters stops the start). `log_init` emits what `init` logged.
    pub fn new(
        handlers: Arc<Vec<HandlerSpec>>,
        sinks: Arc<BTreeMap<String, Sink>>,
        shutdown: Arc<Shutdown>,
        stats: Arc<Stats>,
        log_init: bool,
    ) -> anyhow::Result<Self> {
        let mut live = Vec::with_capacity(handlers.len());
        for spec in handlers.iter() {
            let deployed = spec.current.load_full();
            let (handler, logs) = LiveHandler::new(
                deployed.code.clone(),
                deployed.params.clone(),
                spec.state.clone(),
            )
            .map_err(|failure| {
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
            })?;
            if log_init {
                emit_logs(spec, deployed.code.version(), None, &logs);
            }
            live.push((deployed, handler));
        }
        let meters = handlers
            .iter()
            .zip(&live)
            .map(|(spec, (deployed, _))| {
                stats
                    .metrics
                    .handler_meters(&spec.name, deployed.code.version())
            })
            .collect();
        Ok(HandlerSet {
            refused: vec![None; live.len()],
            streaks: vec![0; live.len()],
            meters,
            tally: Tally::default(),
            live,
            handlers,
            sinks,
            shutdown,
            stats,
        })
    }

    /// Run every handler of `route` on `msg` (borrowed; copied into
    /// `scratch` only when a decision has an action or fails); `ack` is
    /// dropped when the worker's part is done (sinks keep clones until
    /// theirs is), or failed when a handler's policy or a sink halts the
    /// host.
    pub fn handle(
        &mut self,
        msg: &MessageView<'_>,
        scratch: &mut Message,
        route: &[usize],
        ack: Ack,
    ) {
        let mut msg = Lazy {
            view: msg,
            owned: scratch,
            copied: false,
        };
        for &index in route {
            if let Err(fatal) = self.run_handler(index, &mut msg, &ack) {
                ack.fail(fatal);
                return;
            }
        }
        drop(ack);
    }

    /// Add what this worker counted to the shared counters and metrics.
    pub fn flush(&mut self) {
        self.tally.flush(&self.stats);
        for meters in &self.meters {
            meters.flush();
        }
    }

    /// A reload swapped in a new version: take it up between messages.
    fn refresh(&mut self, index: usize) {
        let spec = &self.handlers[index];
        let (running, live) = &mut self.live[index];
        let current = spec.current.load();
        if Arc::ptr_eq(&current, running)
            || self.refused[index]
                .as_ref()
                .is_some_and(|r| Arc::ptr_eq(r, &current))
        {
            return;
        }
        match LiveHandler::new(
            current.code.clone(),
            current.params.clone(),
            spec.state.clone(),
        ) {
            Ok((handler, _)) => {
                tracing::info!(handler = %spec.name, from = %running.code.version(), to = %current.code.version(), "worker switched to the new version");
                *running = arc_swap::Guard::into_inner(current);
                *live = handler;
                self.refused[index] = None;
            }
            Err(failure) => {
                tracing::warn!(handler = %spec.name, version = current.code.version(), error = %failure, "cannot start the new version here; staying on the old one");
                self.refused[index] = Some(arc_swap::Guard::into_inner(current));
            }
        }
    }

    fn run_handler(
        &mut self,
        index: usize,
        msg: &mut Lazy<'_, '_>,
        ack: &Ack,
    ) -> Result<(), Fatal> {
        self.refresh(index);
        let spec = &self.handlers[index];
        let (deployed, live) = &mut self.live[index];
        let version = deployed.code.version();
        let view = msg.view;
        if let Some(state) = &spec.state
            && state.already_applied(view.topic, view.partition, view.offset)
        {
            // Handled before a crash that came between the state persist and
            // the Kafka commit: its outputs are durable, its writes stored.
            tracing::debug!(handler = %spec.name, message = %at(view), "already applied to the handler's state; not handled again");
            return Ok(());
        }
        let mut attempt = 0;
        loop {
            let report = live.handle_view(view);
            let meters = &mut self.meters[index];
            if meters.version() != version {
                meters.flush();
                *meters = self.stats.metrics.handler_meters(&spec.name, version);
            }
            meters.handled(report.elapsed);
            emit_logs(spec, version, Some(view), &report.logs);
            let writes = report.writes;
            let failure = match report.outcome {
                // Dropped: nothing to hand to a sink, so no owned copy of
                // the message is made.
                Ok(actions) if actions.is_empty() => Ok(actions),
                Ok(actions) => carry_out(
                    Later {
                        handlers: &self.handlers,
                        index,
                        sinks: &self.sinks,
                        stats: &self.stats,
                    },
                    Origin {
                        handler: &spec.name,
                        version,
                        msg: msg.owned(),
                    },
                    &actions,
                    ack,
                )
                .map(|()| actions),
                Err(failure) => Err(failure),
            };
            let failure = match failure {
                Ok(actions) => {
                    // The writes take effect with the message: its
                    // actions are accepted.
                    if let Some(state) = &spec.state {
                        state.apply(view.topic, view.partition, view.offset, writes);
                    }
                    count_decision(&mut self.tally, &self.meters[index], &actions);
                    self.streaks[index] = 0;
                    return Ok(());
                }
                Err(failure) => failure,
            };
            let origin = Origin {
                handler: &spec.name,
                version,
                msg: msg.owned(),
            };
            let failure = HandlerFailure {
                kind: failure.kind,
                text: cut_error_text(failure.text),
            };
            self.stats.failed.bump();
            self.stats.metrics.failure(&spec.name, failure.kind);
            let streak = &mut self.streaks[index];
            *streak += 1;
            if streak.is_power_of_two() && *streak >= 8 {
                tracing::error!(handler = %spec.name, version, failures = *streak, last_error = %failure, "handler keeps failing: {} messages in a row", *streak);
            }
            let at = origin.at();
            match spec.on_error {
                OnError::Retry if attempt < spec.retries && !self.shutdown.stopping() => {
                    attempt += 1;
                    self.stats.metrics.retry(&spec.name);
                    let backoff = Duration::from_millis(100 << attempt.min(6));
                    tracing::warn!(handler = %spec.name, version, message = %at, attempt, error = %failure, "handler failed; retrying in {backoff:?}");
                    std::thread::sleep(backoff);
                }
                OnError::Skip => {
                    tracing::warn!(handler = %spec.name, version, message = %at, error = %failure, "handler failed; skipping the message (on_error = skip)");
                    return Ok(());
                }
                OnError::Stop => {
                    return Err(Fatal::HandlerStopped {
                        handler: spec.name.clone(),
                        version: version.to_owned(),
                        at,
                        failure: failure.to_string(),
                    });
                }
                OnError::DeadLetter | OnError::Retry => {
                    tracing::warn!(handler = %spec.name, version, message = %at, error = %failure, sink = %spec.dead_letter, "handler failed; writing a dead letter");
                    dead_letter(spec, origin, &failure, &self.sinks, ack)?;
                    self.stats.dead_lettered.bump();
                    self.stats.metrics.dead_letter(&spec.name);
                    return Ok(());
                }
            }
        }
    }
}

fn count_decision(tally: &mut Tally, meters: &HandlerMeters, actions: &[Action]) {
    if actions.is_empty() {
        tally.dropped += 1;
        meters.decision(DecisionKind::Dropped);
    }
    if actions.iter().any(|a| matches!(a, Action::Save(_))) {
        tally.saved += 1;
        meters.decision(DecisionKind::Saved);
    }
    if actions.iter().any(|a| matches!(a, Action::Forward(_))) {
        tally.forwarded += 1;
        meters.decision(DecisionKind::Forwarded);
    }
}

/// Per-message counts of one worker, added to the shared [`Stats`] between
/// bursts (so two workers do not contend for one counter per message).
#[derive(Debug, Default)]
struct Tally {
    messages: u64,
    dropped: u64,
    saved: u64,
    forwarded: u64,
}

impl Tally {
    fn flush(&mut self, stats: &Stats) {
        for (count, counter) in [
            (&mut self.messages, &stats.messages),
            (&mut self.dropped, &stats.dropped),
            (&mut self.saved, &stats.saved),
            (&mut self.forwarded, &stats.forwarded),
        ] {
            if *count > 0 {
                counter.add(std::mem::take(count));
            }
        }
    }
}

/// The message being handled: borrowed from librdkafka's buffer, and
/// copied into the worker's reused buffer only when a handler's decision
/// needs it owned (an action or a failure; most messages are dropped).
struct Lazy<'m, 'v> {
    view: &'m MessageView<'v>,
    owned: &'m mut Message,
    copied: bool,
}

impl Lazy<'_, '_> {
    fn owned(&mut self) -> &Message {
        if !self.copied {
            self.owned.copy_from(self.view);
            self.copied = true;
        }
        self.owned
    }
}

/// `topic[partition]@offset` of a message.
fn at(msg: &MessageView<'_>) -> String {
    format!("{}[{}]@{}", msg.topic, msg.partition, msg.offset)
}

fn sink_failure(text: String) -> HandlerFailure {
    HandlerFailure {
        kind: FailureKind::Sink,
        text,
    }
}

/// Refuse, before anything is written, actions the handler is not allowed
/// or that contradict each other (two saves to one file, a save inside
/// another's file); then hand each action to its sink.
fn carry_out(
    later: Later<'_>,
    origin: Origin<'_>,
    actions: &[Action],
    ack: &Ack,
) -> Result<(), HandlerFailure> {
    let spec = &later.handlers[later.index];
    let sinks = &**later.sinks;
    let msg = origin.msg;
    let save_sink = spec.save_to.as_ref().and_then(|s| sinks.get(s));
    let mut paths = Vec::new();
    let mut unnamed = 0;
    for action in actions {
        match action {
            Action::Save(save) => {
                let Some(Sink::File(sink)) = save_sink else {
                    return Err(sink_failure(
                        "returned a save, but the handler has no `save_to` sink".into(),
                    ));
                };
                let index = if save.name.is_none() {
                    unnamed += 1;
                    unnamed - 1
                } else {
                    0
                };
                paths.push(sink.save_path(
                    &spec.name,
                    save.name.as_deref(),
                    index,
                    &msg.topic,
                    msg.partition,
                    msg.offset,
                ));
            }
            Action::Forward(forward)
                if !spec.forward_to.contains(&forward.sink)
                    || !sinks.contains_key(&forward.sink) =>
            {
                return Err(sink_failure(format!(
                    "forwarded to sink `{}`, which is not in its `forward_to` ({})",
                    forward.sink,
                    spec.forward_to.join(", ")
                )));
            }
            Action::Forward(_) => {}
        }
    }
    for (i, a) in paths.iter().enumerate() {
        for b in &paths[i + 1..] {
            if a.starts_with(b) || b.starts_with(a) {
                return Err(sink_failure(format!(
                    "two saves of one decision collide at {}",
                    a.strip_prefix(b)
                        .map_or(b.as_path(), |_| a.as_path())
                        .display()
                )));
            }
        }
    }
    let mut unnamed = 0;
    for action in actions {
        match action {
            Action::Save(save) => {
                let index = if save.name.is_none() {
                    unnamed += 1;
                    unnamed - 1
                } else {
                    0
                };
                let value = save.value.as_deref().unwrap_or(&msg.value);
                let record = Record::Save {
                    origin,
                    hint: save.name.as_deref(),
                    index,
                    value,
                };
                if let Some(sink) = save_sink {
                    sink.deliver(record, ack.clone())
                        .map_err(|refused| sink_failure(refused.to_string()))?;
                }
            }
            Action::Forward(forward) => {
                let value = forward.value.as_deref().unwrap_or(&msg.value);
                let key = forward.key.as_deref().or(msg.key.as_deref());
                let guest = forward.headers.as_ref().unwrap_or(&msg.headers);
                let (partition, offset) = (msg.partition.to_string(), msg.offset.to_string());
                let mut headers = without_host_headers(guest);
                headers.extend(provenance(&origin, &partition, &offset));
                let sink = &sinks[&forward.sink];
                let record = Record::Forward {
                    on_refused: matches!(sink, Sink::Kafka(_)).then(|| later.on_refused(origin)),
                    origin,
                    key,
                    value,
                    headers: &headers,
                };
                sink.deliver(record, ack.clone())
                    .map_err(|refused| sink_failure(refused.to_string()))?;
            }
        }
    }
    Ok(())
}

/// What is needed to apply a handler's policy later, when a sink refuses
/// a record after `deliver` returned.
#[derive(Clone, Copy)]
struct Later<'a> {
    handlers: &'a Arc<Vec<HandlerSpec>>,
    index: usize,
    sinks: &'a Arc<BTreeMap<String, Sink>>,
    stats: &'a Arc<Stats>,
}

impl Later<'_> {
    /// The policy of handler `index`, applied to a refusal of a record
    /// from `origin` (the message is copied: the worker has moved on).
    fn on_refused(&self, origin: Origin<'_>) -> OnRefused {
        let handlers = Arc::clone(self.handlers);
        let index = self.index;
        let sinks = Arc::clone(self.sinks);
        let stats = Arc::clone(self.stats);
        let version = origin.version.to_owned();
        let msg = origin.msg.clone();
        Box::new(move |refused: Refused, ack: Ack| {
            let spec = &handlers[index];
            let origin = Origin {
                handler: &spec.name,
                version: &version,
                msg: &msg,
            };
            let failure = sink_failure(cut_error_text(refused.to_string()));
            let at = origin.at();
            stats.failed.bump();
            stats.metrics.failure(&spec.name, failure.kind);
            match spec.on_error {
                OnError::Skip => {
                    tracing::warn!(handler = %spec.name, version, message = %at, error = %failure, "handler output refused; skipping the message (on_error = skip)");
                }
                OnError::Stop => ack.fail(Fatal::HandlerStopped {
                    handler: spec.name.clone(),
                    version: version.clone(),
                    at,
                    failure: failure.to_string(),
                }),
                OnError::DeadLetter | OnError::Retry => {
                    tracing::warn!(handler = %spec.name, version, message = %at, error = %failure, sink = %spec.dead_letter, "handler output refused; writing a dead letter");
                    match dead_letter(spec, origin, &failure, &sinks, &ack) {
                        Ok(()) => {
                            stats.dead_lettered.bump();
                            stats.metrics.dead_letter(&spec.name);
                        }
                        Err(fatal) => ack.fail(fatal),
                    }
                }
            }
        })
    }
}

/// Headers without those named `alerthost.*`, which only the host writes.
fn without_host_headers(headers: &[Header]) -> Vec<(&str, Option<&[u8]>)> {
    const PREFIX: &str = "alerthost.";
    headers
        .iter()
        .filter(|h| {
            !h.name
                .get(..PREFIX.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(PREFIX))
        })
        .map(|h| (h.name.as_str(), h.value.as_deref()))
        .collect()
}

/// The host's provenance headers of a record from `origin`, with the
/// partition and offset already formatted.
fn provenance<'a>(
    origin: &Origin<'a>,
    partition: &'a str,
    offset: &'a str,
) -> [(&'a str, Option<&'a [u8]>); 5] {
    [
        ("alerthost.source.topic", Some(origin.msg.topic.as_bytes())),
        ("alerthost.source.partition", Some(partition.as_bytes())),
        ("alerthost.source.offset", Some(offset.as_bytes())),
        ("alerthost.handler", Some(origin.handler.as_bytes())),
        ("alerthost.handler.version", Some(origin.version.as_bytes())),
    ]
}

/// Write the raw message, the error and the handler version to the
/// handler's dead-letter sink. A dead letter that cannot be written halts
/// the host.
fn dead_letter(
    spec: &HandlerSpec,
    origin: Origin<'_>,
    failure: &HandlerFailure,
    sinks: &BTreeMap<String, Sink>,
    ack: &Ack,
) -> Result<(), Fatal> {
    let msg = origin.msg;
    let partition = msg.partition.to_string();
    let offset = msg.offset.to_string();
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut headers = without_host_headers(&msg.headers);
    headers.extend(provenance(&origin, &partition, &offset));
    headers.extend([
        (
            "alerthost.error.kind",
            Some(failure.kind.as_str().as_bytes()),
        ),
        ("alerthost.error.text", Some(failure.text.as_bytes())),
        ("alerthost.error.time", Some(now.as_bytes())),
    ]);
    let record = Record::DeadLetter {
        origin,
        failure,
        headers: &headers,
    };
    sinks[&spec.dead_letter]
        .deliver(record, ack.clone())
        .map_err(|refused| Fatal::Sink {
            sink: spec.dead_letter.clone(),
            at: origin.at(),
            reason: format!("cannot write the dead letter: {}", refused.reason),
        })
}

fn emit_logs(spec: &HandlerSpec, version: &str, msg: Option<&MessageView<'_>>, logs: &[LogLine]) {
    if logs.is_empty() {
        return;
    }
    let (topic, partition, offset) = msg.map_or(("", -1, -1), |m| (m.topic, m.partition, m.offset));
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

/// The worker threads.
#[derive(Debug)]
pub struct Workers {
    threads: Vec<JoinHandle<()>>,
    pool: Arc<Pool>,
    quit: Arc<AtomicBool>,
}

/// What every worker shares.
#[derive(Debug, Clone)]
pub struct WorkerContext {
    /// The handlers.
    pub handlers: Arc<Vec<HandlerSpec>>,
    /// The sinks by name.
    pub sinks: Arc<BTreeMap<String, Sink>>,
    /// Topic → handlers.
    pub router: Arc<Router>,
    /// The stop flag and fatal error.
    pub shutdown: Arc<Shutdown>,
    /// Counters.
    pub stats: Arc<Stats>,
    /// Bytes in flight.
    pub budget: Arc<InflightBudget>,
}

impl Workers {
    /// Start `count` workers, each with its own instance of every handler.
    /// Returns them and the taker the source hands lanes to.
    pub fn start(count: usize, context: &WorkerContext) -> anyhow::Result<(Self, LaneTaker)> {
        let quit = Arc::new(AtomicBool::new(false));
        let pool = Arc::new(Pool::default());
        let mut threads = Vec::with_capacity(count);
        for index in 0..count {
            let set = HandlerSet::new(
                Arc::clone(&context.handlers),
                Arc::clone(&context.sinks),
                Arc::clone(&context.shutdown),
                Arc::clone(&context.stats),
                index == 0,
            )?;
            let worker = Worker {
                set,
                pool: Arc::clone(&pool),
                msg: Message::default(),
                batch: Batch::new(BURST),
                shutdown: Arc::clone(&context.shutdown),
                stats: Arc::clone(&context.stats),
                budget: Arc::clone(&context.budget),
                quit: Arc::clone(&quit),
            };
            let thread = std::thread::Builder::new()
                .name(format!("alerthost-worker-{index}"))
                .spawn(move || worker.run())
                .context("cannot start a worker thread")?;
            threads.push(thread);
        }
        let taker: LaneTaker = {
            let pool = Arc::clone(&pool);
            let router = Arc::clone(&context.router);
            let stats = Arc::clone(&context.stats);
            Box::new(move |lane| pool.add(lane, &router, &stats))
        };
        Ok((
            Workers {
                threads,
                pool,
                quit,
            },
            taker,
        ))
    }

    /// Stop the workers after the message each is on (messages not begun
    /// are left to the next run), wait for them, and close the lanes.
    pub fn finish(self) {
        self.quit.store(true, Ordering::SeqCst);
        self.pool.wake.notify_all();
        for thread in self.threads {
            let _ = thread.join();
        }
        drop(self.pool.drain());
    }
}

/// A lane as the workers hold it, with its topic's route and the counter of
/// its messages.
struct Owned {
    /// The pool's name for it.
    id: u64,
    lane: Lane,
    route: Route,
    consumed: prometheus::IntCounter,
}

/// The lanes waiting for a worker. Any idle worker takes the next lane with
/// messages, handles one batch of it and gives it back, so the work spreads
/// over the workers whatever the partitions' rates (a worker never sits
/// idle while another has two busy partitions). A lane is in exactly one
/// place: held by the worker handling it (so a partition is handled in
/// order, by one worker at a time), `ready` (it may have messages), or
/// `parked` (its queue was empty; its queue's callback makes it ready).
///
/// The lock is taken twice per batch (64 messages), never per message, and
/// never while calling librdkafka: librdkafka runs the queue callback with
/// the queue's lock held, and the callback takes this one.
#[derive(Default)]
struct Pool {
    state: Mutex<PoolState>,
    wake: Condvar,
}

#[derive(Default)]
struct PoolState {
    ready: VecDeque<Owned>,
    parked: HashMap<u64, Owned>,
    /// Lanes whose queue's callback rang while a worker held them.
    rung: HashSet<u64>,
    next_id: u64,
    /// When every parked lane was last made ready.
    swept: Option<Instant>,
    /// Workers waiting for a lane: only then is one woken (a wake-up is a
    /// system call, even with nobody waiting).
    waiting: usize,
}

impl PoolState {
    /// Make every parked lane ready: a fallback should a wake-up ever be
    /// missed, and how parked revoked lanes are seen (and dropped).
    fn sweep(&mut self, now: Instant) {
        self.swept = Some(now);
        let parked: Vec<Owned> = self.parked.drain().map(|(_, owned)| owned).collect();
        self.ready.extend(parked);
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("Pool")
            .field("ready", &state.ready.len())
            .field("parked", &state.parked.len())
            .finish_non_exhaustive()
    }
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new lane from the source: ready at once.
    fn add(self: &Arc<Self>, mut lane: Lane, router: &Router, stats: &Stats) {
        let id = {
            let mut state = self.lock();
            state.next_id += 1;
            state.next_id
        };
        let pool = Arc::downgrade(self);
        lane.queue.set_nonempty_callback(move || {
            if let Some(pool) = pool.upgrade() {
                pool.ring(id);
            }
        });
        let route = router.route(lane.track.topic());
        let consumed = stats
            .metrics
            .consumed_counter(lane.track.topic(), lane.track.partition());
        let mut state = self.lock();
        state.ready.push_back(Owned {
            id,
            lane,
            route,
            consumed,
        });
        self.wake_one(state);
    }

    /// Wake a waiting worker, if any, for a lane just made ready.
    fn wake_one(&self, state: MutexGuard<'_, PoolState>) {
        let waiting = state.waiting > 0;
        drop(state);
        if waiting {
            self.wake.notify_one();
        }
    }

    /// Lane `id`'s queue turned non-empty (on a librdkafka thread).
    fn ring(&self, id: u64) {
        let mut state = self.lock();
        if let Some(owned) = state.parked.remove(&id) {
            state.ready.push_back(owned);
            self.wake_one(state);
        } else {
            state.rung.insert(id);
        }
    }

    /// The next ready lane, or `None` when `stopping`. Every parked lane
    /// is made ready at least every `IDLE`, busy or not (see `sweep`).
    fn next(&self, stopping: impl Fn() -> bool) -> Option<Owned> {
        let mut state = self.lock();
        loop {
            if stopping() {
                return None;
            }
            let now = Instant::now();
            if !state.parked.is_empty()
                && state
                    .swept
                    .is_none_or(|swept| now.duration_since(swept) >= IDLE)
            {
                state.sweep(now);
            }
            if let Some(owned) = state.ready.pop_front() {
                return Some(owned);
            }
            state.waiting += 1;
            state = self
                .wake
                .wait_timeout(state, IDLE)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            state.waiting -= 1;
        }
    }

    /// Give back a lane after a batch: ready again when it may have more
    /// (a full batch, or its callback rang meanwhile), parked otherwise.
    fn give_back(&self, owned: Owned, drained: bool) {
        let mut state = self.lock();
        let rung = state.rung.remove(&owned.id);
        if drained && !rung {
            state.parked.insert(owned.id, owned);
        } else {
            state.ready.push_back(owned);
            self.wake_one(state);
        }
    }

    /// A lane is dropped for good (revoked, or its range is read).
    fn forget(&self, id: u64) {
        self.lock().rung.remove(&id);
    }

    /// Every lane left, for the caller to drop (outside the lock).
    fn drain(&self) -> Vec<Owned> {
        let mut state = self.lock();
        let mut lanes: Vec<Owned> = state.ready.drain(..).collect();
        lanes.extend(state.parked.drain().map(|(_, owned)| owned));
        state.rung.clear();
        lanes
    }
}

struct Worker {
    set: HandlerSet,
    pool: Arc<Pool>,
    /// The message buffer, reused for every message that must be copied.
    msg: Message,
    /// The messages taken from a lane's queue in one read.
    batch: Batch,
    shutdown: Arc<Shutdown>,
    stats: Arc<Stats>,
    budget: Arc<InflightBudget>,
    quit: Arc<AtomicBool>,
}

/// What to do with a lane after a message.
enum Next {
    More,
    /// Revoked, or its range is read: drop it.
    Drop,
    /// The host is stopping.
    Stop,
}

impl Worker {
    fn stopping(&self) -> bool {
        self.shutdown.stopping() || self.quit.load(Ordering::Relaxed)
    }

    fn run(mut self) {
        loop {
            let next = {
                let (shutdown, quit) = (&self.shutdown, &self.quit);
                self.pool
                    .next(|| shutdown.stopping() || quit.load(Ordering::Relaxed))
            };
            // `None` only once the host is stopping.
            let Some(owned) = next else {
                break;
            };
            let (next, drained) = self.serve(&owned);
            match next {
                Next::More => self.pool.give_back(owned, drained),
                Next::Drop => {
                    self.pool.forget(owned.id);
                    if owned.lane.end.is_some() && !owned.lane.track.is_revoked() {
                        owned.lane.finish();
                    }
                }
                Next::Stop => {
                    // Kept for `Workers::finish` to close.
                    self.pool.give_back(owned, false);
                    break;
                }
            }
        }
        self.set.flush();
    }

    /// Handle one batch of `owned`'s messages; also says whether its queue
    /// was left empty.
    fn serve(&mut self, owned: &Owned) -> (Next, bool) {
        if self.stopping() {
            // After a stop (a fatal error included) nothing more is begun,
            // so nothing past a failed message is handled.
            return (Next::Stop, false);
        }
        if owned.lane.track.is_revoked() {
            return (Next::Drop, false);
        }
        let taken = owned.lane.queue.poll(&mut self.batch);
        let mut next = Next::More;
        let mut handled = 0;
        while let Some(message) = self.batch.next_message() {
            if self.shutdown.stopping() || self.quit.load(Ordering::Relaxed) {
                next = Next::Stop;
            } else if owned.lane.track.is_revoked() {
                next = Next::Drop;
            } else {
                next = match message.error() {
                    None => {
                        handled += 1;
                        take(
                            &mut self.set,
                            &mut self.msg,
                            owned,
                            &message,
                            &self.stats,
                            &self.budget,
                            &self.shutdown,
                        )
                    }
                    Some(KafkaError::PartitionEOF(_)) if owned.lane.end.is_some() => {
                        // At the end of the log, which is at or past the
                        // range's end.
                        Next::Drop
                    }
                    Some(error) => {
                        tracing::warn!(topic = %owned.lane.track.topic(), partition = owned.lane.track.partition(), %error, "kafka consumer error");
                        Next::More
                    }
                };
            }
            if !matches!(next, Next::More) {
                break;
            }
        }
        // What is left of the batch after a stop, a revoke or the range's
        // end is not handled (nor committed).
        self.batch.clear();
        if handled > 0 {
            self.set.flush();
        }
        (next, taken < BURST)
    }
}

/// Handle one message of `owned`'s lane.
fn take(
    set: &mut HandlerSet,
    msg: &mut Message,
    owned: &Owned,
    message: &RawMessage<'_>,
    stats: &Stats,
    budget: &InflightBudget,
    shutdown: &Shutdown,
) -> Next {
    let offset = message.offset();
    let end = owned.lane.end;
    if end.is_some_and(|end| offset >= end) {
        return Next::Drop;
    }
    let past_end = end.is_some_and(|end| offset + 1 >= end);
    if let Some((since, until)) = owned.lane.window
        && message
            .timestamp()
            .to_millis()
            .is_some_and(|at| at < since || at >= until)
    {
        // Outside the time range: not handled, and its offset is passed.
        drop(owned.lane.track.begin(offset, 0));
        return if past_end { Next::Drop } else { Next::More };
    }
    let payload = message.payload().unwrap_or_default();
    let bytes = (payload.len() + message.key().map_or(0, <[u8]>::len)) as u64;
    if !budget.acquire(bytes, || shutdown.stopping()) {
        return Next::Stop;
    }
    let Some(ack) = owned.lane.track.begin(offset, bytes) else {
        return Next::Drop;
    };
    set.tally.messages += 1;
    owned.consumed.inc();
    let topic = owned.lane.track.topic();
    if owned.route.is_empty() {
        stats.unrouted.bump();
        stats.metrics.message_unrouted(topic);
        drop(ack);
    } else {
        let mut names = Vec::new();
        message.headers(&mut names);
        let headers: Vec<HeaderParam<'_>> = names
            .iter()
            .map(|(name, value)| HeaderParam {
                name,
                value: *value,
            })
            .collect();
        let view = MessageView {
            topic,
            partition: message.partition(),
            offset,
            timestamp: timestamp(message.timestamp()),
            key: message.key(),
            value: payload,
            headers: &headers,
        };
        set.handle(&view, msg, &owned.route, ack);
    }
    if past_end { Next::Drop } else { Next::More }
}

/// A librdkafka timestamp as the handler sees it.
fn timestamp(timestamp: rdkafka::Timestamp) -> Option<Timestamp> {
    match timestamp {
        rdkafka::Timestamp::NotAvailable => None,
        rdkafka::Timestamp::CreateTime(millis) => Some(Timestamp {
            millis,
            kind: TimestampKind::CreateTime,
        }),
        rdkafka::Timestamp::LogAppendTime(millis) => Some(Timestamp {
            millis,
            kind: TimestampKind::LogAppendTime,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_headers_named_alerthost_are_stripped() {
        let headers = vec![
            Header {
                name: "alerthost.handler".into(),
                value: Some(b"forged".to_vec()),
            },
            Header {
                name: "AlertHost.Source.Offset".into(),
                value: None,
            },
            Header {
                name: "trace".into(),
                value: Some(b"1".to_vec()),
            },
        ];
        assert_eq!(without_host_headers(&headers), [("trace", Some(&b"1"[..]))]);
    }
}
