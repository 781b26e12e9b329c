//! The Kafka source: one consumer thread that reads, routes and dispatches
//! messages, commits what the tracker says is done, drains and commits on
//! partition revoke, and stops at the end of a time range.
//!
//! Auto-commit is always off. With a group, the position committed for a
//! partition is the first message not yet fully handled, so a restart after a
//! crash re-handles at most the messages that were in flight.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers as _, Message as _};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use crate::bindings::{Header, Message, Timestamp, TimestampKind};
use crate::commit::TopicPartition;
use crate::config::{StartAt, TopicSelector};
use crate::pipeline::{HandlerSpec, Job, Shared, Stats, Workers};

/// How long to wait for the cluster to answer at start-up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a revoke or a shutdown waits for in-flight messages.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a run begins and ends.
#[derive(Debug, Clone, Default)]
pub struct Bounds {
    /// Begin at the first message at or after this time (ms since epoch).
    pub since: Option<i64>,
    /// End each partition at its first message at or after this time.
    pub until: Option<i64>,
    /// End each partition at its end as of start-up (used by the demo).
    pub until_now: bool,
}

impl Bounds {
    fn ranged(&self) -> bool {
        self.since.is_some() || self.until.is_some() || self.until_now
    }
}

/// Everything the source needs.
#[derive(Debug)]
pub struct SourceOptions {
    /// librdkafka properties (connection, passthrough, env overrides).
    pub kafka: BTreeMap<String, String>,
    /// The consumer group; `None` never commits.
    pub group_id: Option<String>,
    /// Where to begin without a committed offset.
    pub start: StartAt,
    /// Override committed offsets for this run.
    pub reset: Option<StartAt>,
    /// What to read.
    pub topics: Vec<TopicSelector>,
    /// Commit period.
    pub commit_interval: Duration,
    /// Time range, if any.
    pub bounds: Bounds,
    /// Show a progress bar (on a terminal) for ranged runs.
    pub progress: bool,
}

/// The consumer's callbacks: client errors, and rebalances that drain and
/// commit before a partition is given up.
pub struct SourceContext {
    shared: Arc<Shared>,
    commit: bool,
    reset: Option<StartAt>,
    reset_done: Mutex<HashSet<TopicPartition>>,
    last_error: Mutex<Option<String>>,
    auth_error: Mutex<Option<String>>,
}

impl std::fmt::Debug for SourceContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceContext")
            .field("commit", &self.commit)
            .finish_non_exhaustive()
    }
}

impl ClientContext for SourceContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error, KafkaError::PartitionEOF(_))
            || error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF)
        {
            return;
        }
        let text = format!("{error}: {reason}");
        let mut last = self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.as_deref() != Some(text.as_str()) {
            let auth = matches!(
                error.rdkafka_error_code(),
                Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed)
            ) || reason.contains("SASL")
                || reason.contains("OAUTHBEARER")
                || reason.contains("token");
            if auth {
                tracing::error!(
                    "kafka authentication failed: {reason} (check the client id and secret)"
                );
                *self
                    .auth_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(reason.to_owned());
            } else {
                tracing::warn!("kafka client: {text}");
            }
            *last = Some(text);
        }
    }
}

impl ConsumerContext for SourceContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let tps = partitions_of(tpl);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let mut assignment = tpl.clone();
                if let Some(reset) = self.reset {
                    let mut done = self
                        .reset_done
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    for tp in &tps {
                        // Once per partition per run: a later rebalance
                        // resumes from what this run committed.
                        if done.insert(tp.clone()) {
                            let offset = match reset {
                                StartAt::Earliest => Offset::Beginning,
                                StartAt::Latest => Offset::End,
                            };
                            let _ = assignment.set_partition_offset(&tp.0, tp.1, offset);
                        }
                    }
                }
                match consumer.assign(&assignment) {
                    Ok(()) => tracing::info!(partitions = %describe(&tps), "partitions assigned"),
                    Err(error) => self
                        .shared
                        .fail(format!("cannot take the assigned partitions: {error}")),
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let drained = self.shared.commits.wait_until(
                    DRAIN_TIMEOUT,
                    |tracker| tps.iter().all(|tp| tracker.pending(tp) == 0),
                    || self.shared.fatal().is_some(),
                );
                if !drained {
                    tracing::warn!(partitions = %describe(&tps), "giving up partitions with messages still in flight; they are not committed and will be handled again");
                }
                if self.commit {
                    commit(consumer, &self.shared, Some(&tps));
                }
                let mut tracker = self.shared.commits.lock();
                for tp in &tps {
                    tracker.forget(tp);
                }
                drop(tracker);
                if let Err(error) = consumer.unassign() {
                    tracing::warn!(%error, "cannot unassign revoked partitions");
                }
                tracing::info!(partitions = %describe(&tps), "partitions revoked");
            }
            other => tracing::warn!(error = ?other, "rebalance error"),
        }
    }
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

fn describe(tps: &[TopicPartition]) -> String {
    tps.iter()
        .map(|(t, p)| format!("{t}[{p}]"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Mark a partition of a ranged run finished and stop fetching it.
fn finish_partition(
    consumer: &BaseConsumer<SourceContext>,
    finished: &mut HashSet<TopicPartition>,
    tp: &TopicPartition,
) {
    if finished.insert(tp.clone()) {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&tp.0, tp.1);
        let _ = consumer.pause(&tpl);
        tracing::debug!(topic = %tp.0, partition = tp.1, "partition reached the end of the range");
    }
}

/// Commit the tracker's positions (all, or those of `only`), synchronously.
fn commit(
    consumer: &BaseConsumer<SourceContext>,
    shared: &Shared,
    only: Option<&[TopicPartition]>,
) {
    let positions: Vec<(TopicPartition, i64)> = shared
        .commits
        .lock()
        .uncommitted()
        .into_iter()
        .filter(|(tp, _)| only.is_none_or(|only| only.contains(tp)))
        .collect();
    if positions.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), position) in &positions {
        let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*position));
    }
    match consumer.commit(&tpl, CommitMode::Sync) {
        Ok(()) => {
            let mut tracker = shared.commits.lock();
            for (tp, position) in &positions {
                tracker.committed(tp, *position);
            }
            tracing::debug!(positions = ?positions, "committed");
        }
        Err(error) => {
            tracing::warn!(%error, "commit failed; it is tried again at the next interval")
        }
    }
}

/// The running source.
pub struct Source {
    consumer: BaseConsumer<SourceContext>,
    options: SourceOptions,
    shared: Arc<Shared>,
    /// End offset (exclusive) per partition, for ranged runs.
    ends: HashMap<TopicPartition, i64>,
    /// Partitions finished in a ranged run.
    finished: HashSet<TopicPartition>,
    /// Messages in range, for progress.
    total_in_range: u64,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Source {
    /// Create the consumer, check the cluster answers, and subscribe (or, for
    /// a time range, assign every partition from its start offset).
    pub fn connect(options: SourceOptions, shared: Arc<Shared>) -> anyhow::Result<Self> {
        let mut config = ClientConfig::new();
        for (key, value) in &options.kafka {
            config.set(key, value);
        }
        let group = options.group_id.clone().unwrap_or_else(|| {
            format!("alerthost-nocommit-{}-{}", std::process::id(), now_millis())
        });
        config
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", options.start.as_str())
            .set("enable.partition.eof", "true");
        let context = SourceContext {
            shared: shared.clone(),
            commit: options.group_id.is_some() && !options.bounds.ranged(),
            reset: options.reset,
            reset_done: Mutex::default(),
            last_error: Mutex::default(),
            auth_error: Mutex::default(),
        };
        let consumer: BaseConsumer<SourceContext> = config
            .create_with_context(context)
            .context("cannot create the Kafka consumer (check [source] and [source.librdkafka])")?;
        let servers = options
            .kafka
            .get("bootstrap.servers")
            .cloned()
            .unwrap_or_default();
        // Ask in short steps and poll in between: client errors (such as a
        // refused token) reach the context only while the consumer is polled.
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        let metadata = loop {
            match consumer.fetch_metadata(None, Duration::from_millis(500)) {
                Ok(metadata) => break metadata,
                Err(error) => {
                    let _ = consumer.poll(Duration::from_millis(100));
                    let context = consumer.context();
                    if let Some(auth) = context
                        .auth_error
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone()
                    {
                        bail!(
                            "cannot authenticate to Kafka at {servers}: {auth} (check the client id and secret)"
                        );
                    }
                    if Instant::now() >= deadline {
                        let last = context
                            .last_error
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .clone();
                        bail!(
                            "cannot reach Kafka at {servers} within {}s: {error}{}",
                            CONNECT_TIMEOUT.as_secs(),
                            last.map(|l| format!(" (last client error: {l})"))
                                .unwrap_or_default()
                        );
                    }
                }
            }
        };
        let existing: BTreeMap<String, usize> = metadata
            .topics()
            .iter()
            .filter(|t| !t.name().starts_with("__"))
            .map(|t| (t.name().to_owned(), t.partitions().len()))
            .collect();
        for selector in &options.topics {
            if !existing.keys().any(|t| selector.matches(t)) {
                match selector {
                    TopicSelector::Name(name) => {
                        tracing::warn!(topic = %name, "topic does not exist (yet); waiting for it")
                    }
                    TopicSelector::Pattern(p) => {
                        tracing::warn!(pattern = %p, "no topic matches this pattern yet; waiting for one")
                    }
                }
            }
        }

        let mut source = Source {
            consumer,
            options,
            shared,
            ends: HashMap::new(),
            finished: HashSet::new(),
            total_in_range: 0,
        };
        if source.options.bounds.ranged() {
            source.assign_range(&existing)?;
        } else {
            let subscription: Vec<&str> = source
                .options
                .topics
                .iter()
                .map(TopicSelector::as_subscription)
                .collect();
            source
                .consumer
                .subscribe(&subscription)
                .context("cannot subscribe to [source] topics")?;
            tracing::info!(topics = ?subscription, group = %group, commits = source.consumer.context().commit, "subscribed");
        }
        Ok(source)
    }

    /// A time range: every partition of every selected topic, from the first
    /// message at or after `since` to the last before `until`.
    fn assign_range(&mut self, existing: &BTreeMap<String, usize>) -> anyhow::Result<()> {
        let bounds = self.options.bounds.clone();
        let mut all = TopicPartitionList::new();
        for (topic, partitions) in existing {
            if self.options.topics.iter().any(|s| s.matches(topic)) {
                for partition in 0..*partitions as i32 {
                    all.add_partition(topic, partition);
                }
            }
        }
        if all.count() == 0 {
            bail!("no existing topic matches [source] topics, so the time range is empty");
        }
        let lookup = |millis: i64| -> anyhow::Result<HashMap<TopicPartition, Offset>> {
            let mut query = all.clone();
            query
                .set_all_offsets(Offset::Offset(millis))
                .context("cannot build the time query")?;
            let found = self
                .consumer
                .offsets_for_times(query, CONNECT_TIMEOUT)
                .context("offsets_for_times failed")?;
            Ok(found
                .elements()
                .iter()
                .map(|e| ((e.topic().to_owned(), e.partition()), e.offset()))
                .collect())
        };
        let starts = bounds.since.map(lookup).transpose()?;
        let ends = bounds.until.map(lookup).transpose()?;
        let mut assignment = TopicPartitionList::new();
        for element in all.elements() {
            let tp = (element.topic().to_owned(), element.partition());
            let (low, high) = self
                .consumer
                .fetch_watermarks(&tp.0, tp.1, CONNECT_TIMEOUT)
                .with_context(|| format!("cannot read the offsets of {}[{}]", tp.0, tp.1))?;
            let start = match starts.as_ref().map(|s| s[&tp]) {
                None => low,
                Some(Offset::Offset(o)) => o,
                // No message at or after `since`.
                Some(_) => high,
            };
            let end = match ends.as_ref().map(|e| e[&tp]) {
                Some(Offset::Offset(o)) => o,
                // Nothing at or after `until` yet: everything up to now is in range.
                Some(_) => high,
                None if bounds.until_now => high,
                None => i64::MAX,
            };
            if start >= end {
                self.finished.insert(tp.clone());
            } else {
                if end != i64::MAX {
                    self.total_in_range += (end - start) as u64;
                }
                assignment
                    .add_partition_offset(&tp.0, tp.1, Offset::Offset(start))
                    .context("cannot build the assignment")?;
            }
            self.ends.insert(tp, end);
        }
        tracing::info!(
            partitions = self.ends.len(),
            empty = self.finished.len(),
            messages = self.total_in_range,
            "time range resolved on every partition"
        );
        self.consumer
            .assign(&assignment)
            .context("cannot assign the partitions of the time range")?;
        Ok(())
    }

    fn range_done(&self) -> bool {
        !self.ends.is_empty()
            && self.ends.values().all(|end| *end != i64::MAX)
            && self.finished.len() == self.ends.len()
    }

    /// Read and dispatch until stopped, the range is done, or a fatal error;
    /// then drain, commit and return the reason for a fatal stop, if any.
    pub fn run(mut self, handlers: &[HandlerSpec], workers: Workers) -> Option<String> {
        let commit_enabled = self.consumer.context().commit;
        let mut routes: HashMap<String, Arc<[usize]>> = HashMap::new();
        let mut last_commit = Instant::now();
        let mut quiet_warned: Option<Instant> = None;
        let progress = Progress::new(
            self.options.progress && self.total_in_range > 0,
            self.total_in_range,
        );
        if self.range_done() {
            tracing::info!("nothing in the time range");
        }
        while !self.shared.stopping() && !self.range_done() {
            match self.consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Ok(message)) => {
                    let tp = (message.topic().to_owned(), message.partition());
                    let offset = message.offset();
                    if let Some(end) = self.ends.get(&tp).copied() {
                        if offset >= end {
                            finish_partition(&self.consumer, &mut self.finished, &tp);
                            continue;
                        }
                        if offset + 1 >= end {
                            finish_partition(&self.consumer, &mut self.finished, &tp);
                        }
                    }
                    Stats::bump(&self.shared.stats.messages);
                    progress.inc();
                    let targets = match routes.get(&tp.0) {
                        Some(targets) => Arc::clone(targets),
                        None => {
                            let targets: Arc<[usize]> = handlers
                                .iter()
                                .enumerate()
                                .filter(|(_, h)| h.topics.iter().any(|s| s.matches(&tp.0)))
                                .map(|(i, _)| i)
                                .collect();
                            routes.insert(tp.0.clone(), Arc::clone(&targets));
                            targets
                        }
                    };
                    self.shared.commits.lock().begin(&tp, offset);
                    if targets.is_empty() {
                        Stats::bump(&self.shared.stats.unrouted);
                        self.shared.commits.release(&tp, offset);
                        continue;
                    }
                    let msg = convert(&message);
                    workers.dispatch(Job {
                        tp,
                        msg,
                        handlers: targets,
                    });
                }
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    // Reached the current end: in a range, every offset below
                    // the end has been read.
                    let positions = self.consumer.position().unwrap_or_default();
                    let done: Vec<TopicPartition> = self
                        .ends
                        .iter()
                        .filter(|(tp, end)| {
                            tp.1 == partition && **end != i64::MAX && !self.finished.contains(*tp)
                        })
                        .filter(|(tp, end)| {
                            positions
                                .find_partition(&tp.0, tp.1)
                                .and_then(|e| e.offset().to_raw())
                                .is_some_and(|pos| pos >= **end)
                        })
                        .map(|(tp, _)| tp.clone())
                        .collect();
                    for tp in done {
                        finish_partition(&self.consumer, &mut self.finished, &tp);
                    }
                }
                Some(Err(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::UnknownTopicOrPartition,
                ))) if quiet_warned.is_none_or(|at| at.elapsed() > Duration::from_secs(300)) => {
                    // Quiet GCN topics have no partition yet: not a message, not fatal.
                    tracing::warn!(
                        "a subscribed topic does not exist yet (unknown topic or partition); waiting for it"
                    );
                    quiet_warned = Some(Instant::now());
                }
                Some(Err(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::UnknownTopicOrPartition,
                ))) => {}
                Some(Err(error)) => tracing::warn!(%error, "kafka consumer error"),
            }
            if commit_enabled && last_commit.elapsed() >= self.options.commit_interval {
                commit(&self.consumer, &self.shared, None);
                last_commit = Instant::now();
            }
        }
        progress.finish();
        tracing::info!("stopping: finishing messages in flight");
        workers.finish();
        let drained = self.shared.commits.wait_until(
            DRAIN_TIMEOUT,
            |tracker| tracker.pending_total() == 0,
            || self.shared.fatal().is_some(),
        );
        if !drained && self.shared.fatal().is_none() {
            tracing::warn!(
                "some forwards were not acknowledged in time; they are not committed and will be handled again"
            );
        }
        if commit_enabled {
            commit(&self.consumer, &self.shared, None);
        }
        tracing::info!("{}", self.shared.stats.summary());
        self.shared.fatal()
    }
}

fn convert(message: &rdkafka::message::BorrowedMessage<'_>) -> Message {
    let timestamp = match message.timestamp() {
        rdkafka::Timestamp::NotAvailable => None,
        rdkafka::Timestamp::CreateTime(millis) => Some(Timestamp {
            millis,
            kind: TimestampKind::CreateTime,
        }),
        rdkafka::Timestamp::LogAppendTime(millis) => Some(Timestamp {
            millis,
            kind: TimestampKind::LogAppendTime,
        }),
    };
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| Header {
                    name: h.key.to_owned(),
                    value: h.value.map(<[u8]>::to_vec),
                })
                .collect()
        })
        .unwrap_or_default();
    Message {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        timestamp,
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        headers,
    }
}

fn now_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// Progress of a ranged run: a bar on a terminal, periodic log lines
/// otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    done: std::sync::atomic::AtomicU64,
    last_log: Mutex<Instant>,
    started: Instant,
}

impl Progress {
    fn new(enabled: bool, total: u64) -> Self {
        use std::io::IsTerminal as _;
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} messages  {per_sec}  ETA {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        Progress {
            bar,
            total: if enabled { total } else { 0 },
            done: Default::default(),
            last_log: Mutex::new(Instant::now()),
            started: Instant::now(),
        }
    }

    fn inc(&self) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(bar) = &self.bar {
            bar.inc(1);
        } else if self.total > 0 {
            let mut last = self.last_log.lock().unwrap_or_else(PoisonError::into_inner);
            if last.elapsed() >= Duration::from_secs(5) {
                let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
                tracing::info!(
                    done,
                    total = self.total,
                    rate = format!("{rate:.0}/s"),
                    "progress"
                );
                *last = Instant::now();
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
