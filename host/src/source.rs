//! The Kafka source: it only consumes. It subscribes (or, for a time range,
//! assigns), and on every assignment it splits each partition into a queue
//! of its own and yields it as a [`Lane`] with a fresh commit track (a new
//! assignment epoch); whoever takes the lane polls it. It commits the
//! positions the tracks give, periodically, on revoke (after draining) and
//! at the end. It knows nothing of handlers or sinks.
//!
//! Auto-commit is always off. With a group, the position committed for a
//! partition is the first message not yet fully handled, so a restart after a
//! crash re-handles at most the messages that were in flight.
//!
//! Start positions: a `--reset` and a `--since` (without `--until`) are
//! resolved to offsets and committed as soon as a partition is assigned;
//! with `start = "latest"`, a partition that did not exist at start-up and
//! has no committed offset starts at its beginning (its first alert is not
//! skipped).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use crate::commit::{Durability, InflightBudget, PartitionTrack, TopicPartition};
use crate::config::{StartAt, TopicSelector};
use crate::shutdown::{Fatal, Shutdown};
use crate::stats::Stats;
use crate::telemetry::Metrics;

// The one module with unsafe Kafka code: librdkafka's batch read (see its
// docs for why).
#[allow(unsafe_code)]
pub mod queue;

use queue::PartitionQueue;

/// How long to wait for the cluster to answer at start-up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a revoke waits for in-flight messages.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a range that follows live messages looks for partitions
/// created during the run.
const NEW_PARTITIONS_PERIOD: Duration = Duration::from_secs(2);
/// How long one request made while assigning may take.
const ASSIGN_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// Whether the run ends by itself (an end is set).
    pub fn ends(&self) -> bool {
        self.until.is_some() || self.until_now
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
    /// What must be durable before positions are committed (handler
    /// state); with it, positions are also persisted when nothing is
    /// committed to Kafka (no group, a ranged run).
    pub durability: Option<Arc<dyn Durability>>,
}

/// One partition of one assignment, for one reader: its message queue, its
/// commit track, and for a ranged run where it ends.
pub struct Lane {
    /// The partition's own queue of messages.
    pub queue: PartitionQueue,
    /// Its commit track (one per assignment).
    pub track: Arc<PartitionTrack>,
    /// For a ranged run, the offset it ends before.
    pub end: Option<i64>,
    /// Only messages stamped in `[since, until)` are handled; the others
    /// are passed over (and their offsets count as done).
    pub window: Option<(i64, i64)>,
    finished: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane")
            .field("track", &self.track)
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

impl Lane {
    /// The range of this lane is read completely: it is not polled again.
    pub fn finish(self) {
        tracing::debug!(topic = %self.track.topic(), partition = self.track.partition(), "partition reached the end of the range");
        self.finished.fetch_add(1, Ordering::SeqCst);
    }
}

/// Takes each lane as its partition is assigned.
pub type LaneTaker = Box<dyn Fn(Lane) + Send + Sync>;

/// The consumer's callbacks: client errors, rebalances (split, start
/// positions, drain and commit before a partition is given up) and commit
/// results.
pub struct SourceContext {
    me: OnceLock<Weak<BaseConsumer<SourceContext>>>,
    shutdown: Arc<Shutdown>,
    budget: Arc<InflightBudget>,
    take: LaneTaker,
    commit: bool,
    durability: Option<Arc<dyn Durability>>,
    start: StartAt,
    reset: Option<StartAt>,
    since: Option<i64>,
    /// Partitions whose `--reset`/`--since` was applied (once per run: a
    /// later rebalance resumes from what this run committed).
    positioned: Mutex<HashSet<(String, i32)>>,
    /// Partitions per topic at start-up.
    existing: Mutex<BTreeMap<String, usize>>,
    /// The current assignment's tracks.
    tracks: Mutex<HashMap<TopicPartition, Arc<PartitionTrack>>>,
    epoch: AtomicU64,
    finished: Arc<AtomicUsize>,
    last_error: Mutex<Option<String>>,
    auth_error: Mutex<Option<String>>,
    metrics: Metrics,
}

impl std::fmt::Debug for SourceContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceContext")
            .field("commit", &self.commit)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ClientContext for SourceContext {
    /// Every `statistics.interval.ms` (set when metrics are served).
    fn stats(&self, statistics: rdkafka::Statistics) {
        self.metrics.kafka_statistics(&statistics);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error, KafkaError::PartitionEOF(_))
            || error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF)
        {
            return;
        }
        let code = error.rdkafka_error_code();
        if matches!(
            code,
            Some(RDKafkaErrorCode::Fatal | RDKafkaErrorCode::FencedInstanceId)
        ) {
            // The consumer is unusable from here on. With static membership
            // the usual cause is a second host with the same
            // group.instance.id, which fences this one.
            let hint = if code == Some(RDKafkaErrorCode::FencedInstanceId) {
                " (another host joined the group with the same group.instance.id: give each host its own [source] instance_id)"
            } else {
                ""
            };
            self.shutdown.fail(Fatal::Source(format!(
                "fatal Kafka client error: {reason}{hint}"
            )));
            return;
        }
        let text = format!("{error}: {reason}");
        let mut last = lock(&self.last_error);
        if last.as_deref() != Some(text.as_str()) {
            if is_auth_error(&error) {
                tracing::error!(
                    "kafka authentication failed: {reason} (check the client id and secret)"
                );
                *lock(&self.auth_error) = Some(reason.to_owned());
            } else {
                tracing::warn!("kafka client: {text}");
            }
            *last = Some(text);
        }
    }
}

/// Whether a client error is an authentication failure. Decided by its
/// code alone: librdkafka reports refused credentials and a token it could
/// not get (`Failed to acquire SASL OAUTHBEARER token`) as
/// `Authentication`, and the broker's refusal as `SaslAuthenticationFailed`,
/// while the text of other errors may contain any word (a broker or topic
/// named `token…`).
fn is_auth_error(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed)
    )
}

impl ConsumerContext for SourceContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.assign(consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => self.revoke(consumer, tpl),
            other => tracing::warn!(error = ?other, "rebalance error"),
        }
    }
}

impl SourceContext {
    fn consumer(&self) -> Option<Arc<BaseConsumer<SourceContext>>> {
        self.me.get().and_then(Weak::upgrade)
    }

    /// New partitions: resolve where each starts, split it into a queue of
    /// its own, take it, and commit positions set by `--reset`/`--since`.
    fn assign(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        let tps = partitions_of(tpl);
        let mut assignment = tpl.clone();
        let starts = match self.start_positions(consumer, &tps) {
            Ok(starts) => starts,
            Err(error) => {
                self.shutdown.fail(Fatal::Source(format!(
                    "cannot resolve where the assigned partitions start: {error:#}"
                )));
                return;
            }
        };
        let mut to_commit = TopicPartitionList::new();
        for (tp, (offset, commit)) in &starts {
            let _ = assignment.set_partition_offset(&tp.0, tp.1, Offset::Offset(*offset));
            if *commit && self.commit {
                let _ = to_commit.add_partition_offset(&tp.0, tp.1, Offset::Offset(*offset));
            }
        }
        let Some(me) = self.consumer() else {
            return;
        };
        if let Some(durability) = &self.durability {
            let assigned: Vec<TopicPartition> = tps
                .iter()
                .map(|(topic, partition)| (Arc::from(topic.as_str()), *partition))
                .collect();
            if let Err(error) = durability.assigned(&assigned) {
                self.shutdown.fail(Fatal::State(format!(
                    "cannot prepare the state of the assigned partitions {}: {error:#}",
                    describe(&tps)
                )));
                return;
            }
        }
        let mut lanes = Vec::with_capacity(tps.len());
        for (topic, partition) in &tps {
            let topic: Arc<str> = Arc::from(topic.as_str());
            let track = PartitionTrack::new(
                Arc::clone(&topic),
                *partition,
                epoch,
                Arc::clone(&self.shutdown),
                Arc::clone(&self.budget),
            );
            // Split before the fetch starts, so every message of the
            // partition arrives on its own queue.
            let Some(queue) = PartitionQueue::split(&me, &topic, *partition) else {
                self.shutdown.fail(Fatal::Source(format!(
                    "cannot open a queue for {topic}[{partition}]"
                )));
                return;
            };
            lanes.push(Lane {
                queue,
                track,
                end: None,
                window: self.since.map(|since| (since, i64::MAX)),
                finished: Arc::clone(&self.finished),
            });
        }
        let assigned = match consumer.rebalance_protocol() {
            RebalanceProtocol::Cooperative => consumer.incremental_assign(&assignment),
            _ => consumer.assign(&assignment),
        };
        if let Err(error) = assigned {
            self.shutdown.fail(Fatal::Source(format!(
                "cannot take the assigned partitions: {error}"
            )));
            return;
        }
        if to_commit.count() > 0 {
            match consumer.commit(&to_commit, CommitMode::Sync) {
                Ok(()) => {
                    for lane in &lanes {
                        let key = (lane.track.topic().to_string(), lane.track.partition());
                        if let Some((offset, true)) = starts.get(&key) {
                            lane.track.start_at(*offset, true);
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot commit the start positions yet; they are committed with the first progress")
                }
            }
        }
        {
            let mut tracks = lock(&self.tracks);
            for lane in &lanes {
                tracks.insert(
                    (Arc::clone(lane.track.topic()), lane.track.partition()),
                    Arc::clone(&lane.track),
                );
            }
        }
        tracing::info!(partitions = %describe(&tps), epoch, "partitions assigned");
        self.metrics.partitions_assigned(&tps);
        for lane in lanes {
            (self.take)(lane);
        }
    }

    /// Where each newly assigned partition starts, when it is not where the
    /// group left it: `(offset, commit it now)`.
    fn start_positions(
        &self,
        consumer: &BaseConsumer<Self>,
        tps: &[(String, i32)],
    ) -> anyhow::Result<HashMap<(String, i32), (i64, bool)>> {
        let mut out = HashMap::new();
        let mut positioned = lock(&self.positioned);
        let fresh: Vec<&(String, i32)> = tps
            .iter()
            .filter(|tp| {
                (self.reset.is_some() || self.since.is_some()) && !positioned.contains(*tp)
            })
            .collect();
        if let Some(since) = self.since {
            let mut query = TopicPartitionList::new();
            for (topic, partition) in &fresh {
                query.add_partition_offset(topic, *partition, Offset::Offset(since))?;
            }
            if query.count() > 0 {
                let found = consumer
                    .offsets_for_times(query, ASSIGN_TIMEOUT)
                    .context("cannot look up offsets by time for --since")?;
                for element in found.elements() {
                    let tp = (element.topic().to_owned(), element.partition());
                    let offset = match element.offset() {
                        Offset::Offset(offset) => offset,
                        // Nothing at or after `since` yet: from the end.
                        _ => {
                            consumer
                                .fetch_watermarks(&tp.0, tp.1, ASSIGN_TIMEOUT)
                                .with_context(|| {
                                    format!("cannot read the offsets of {}[{}]", tp.0, tp.1)
                                })?
                                .1
                        }
                    };
                    out.insert(tp, (offset, true));
                }
            }
        } else if let Some(reset) = self.reset {
            for (topic, partition) in &fresh {
                let (low, high) = consumer
                    .fetch_watermarks(topic, *partition, ASSIGN_TIMEOUT)
                    .with_context(|| format!("cannot read the offsets of {topic}[{partition}]"))?;
                let offset = match reset {
                    StartAt::Earliest => low,
                    StartAt::Latest => high,
                };
                out.insert((topic.clone(), *partition), (offset, true));
            }
        }
        positioned.extend(fresh.into_iter().cloned());
        drop(positioned);
        if self.start == StartAt::Latest {
            // Partitions born after start-up: from their beginning, when
            // the group has nothing committed for them.
            let existing = lock(&self.existing);
            let new: Vec<&(String, i32)> = tps
                .iter()
                .filter(|tp| !out.contains_key(*tp))
                .filter(|(topic, partition)| {
                    existing
                        .get(topic)
                        .is_none_or(|count| *partition as usize >= *count)
                })
                .collect();
            drop(existing);
            if !new.is_empty() {
                let mut query = TopicPartitionList::new();
                for (topic, partition) in &new {
                    query.add_partition(topic, *partition);
                }
                let committed = if self.commit {
                    consumer
                        .committed_offsets(query, ASSIGN_TIMEOUT)
                        .context("cannot read the group's committed offsets")?
                } else {
                    TopicPartitionList::new()
                };
                for (topic, partition) in new {
                    let has_commit = committed
                        .find_partition(topic, *partition)
                        .and_then(|e| e.offset().to_raw())
                        .is_some_and(|o| o >= 0);
                    if !has_commit {
                        let (low, _) = consumer
                            .fetch_watermarks(topic, *partition, ASSIGN_TIMEOUT)
                            .with_context(|| {
                                format!("cannot read the offsets of {topic}[{partition}]")
                            })?;
                        tracing::info!(%topic, partition, "a partition that appeared after start-up starts at its beginning");
                        out.insert((topic.clone(), *partition), (low, false));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Partitions taken away: stop their lanes, wait for what is in flight
    /// (bounded), commit, give them up.
    fn revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let tps = partitions_of(tpl);
        let tracks: Vec<Arc<PartitionTrack>> = {
            let mut current = lock(&self.tracks);
            tps.iter()
                .filter_map(|(topic, partition)| {
                    current.remove(&(Arc::from(topic.as_str()), *partition))
                })
                .collect()
        };
        for track in &tracks {
            track.revoke();
        }
        let lost = consumer.assignment_lost();
        if lost {
            tracing::warn!(partitions = %describe(&tps), "assignment lost: messages in flight are not committed and will be handled again");
        } else {
            let mut deadline = Instant::now() + DRAIN_TIMEOUT;
            if let Some(stop) = self.shutdown.deadline() {
                deadline = deadline.min(stop);
            }
            let drained = tracks
                .iter()
                .all(|t| t.drain(deadline, || self.shutdown.in_flight_abandoned()));
            if !drained {
                tracing::warn!(partitions = %describe(&tps), "giving up partitions with messages still in flight; they are not committed and will be handled again");
            }
            if self.commit || self.durability.is_some() {
                let _ = commit(consumer, &tracks);
            }
        }
        if let Some(durability) = &self.durability {
            let given_up: Vec<TopicPartition> = tracks
                .iter()
                .map(|t| (Arc::clone(t.topic()), t.partition()))
                .collect();
            durability.revoked(&given_up);
        }
        let unassigned = match consumer.rebalance_protocol() {
            RebalanceProtocol::Cooperative => consumer.incremental_unassign(tpl),
            _ => consumer.unassign(),
        };
        if let Err(error) = unassigned {
            tracing::warn!(%error, "cannot give up the revoked partitions");
        }
        tracing::info!(partitions = %describe(&tps), "partitions revoked");
        self.metrics.partitions_revoked(&tps);
    }

    fn current_tracks(&self) -> Vec<Arc<PartitionTrack>> {
        lock(&self.tracks).values().cloned().collect()
    }
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

fn describe(tps: &[(String, i32)]) -> String {
    tps.iter()
        .map(|(t, p)| format!("{t}[{p}]"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How a commit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Committed {
    /// Committed, or nothing had moved.
    Done,
    /// Failed; asking again may work (the coordinator was away or busy).
    Failed,
    /// Refused for good: the group no longer counts this member in the
    /// generation the commit was made under.
    Refused,
}

/// Whether a failed commit cannot succeed by asking again: the member was
/// expelled (its session expired, another took its place) or its
/// generation or epoch is over. Its partitions belong to the next
/// assignment now.
fn commit_refused_for_good(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::UnknownMemberId
                | RDKafkaErrorCode::IllegalGeneration
                | RDKafkaErrorCode::FencedInstanceId
                | RDKafkaErrorCode::StaleMemberEpoch
        )
    )
}

/// Commit the positions of `tracks` that moved, synchronously; the tracks
/// learn what was committed. What must be durable first (handler state) is
/// made durable first; when that fails the host halts and nothing is
/// committed. Without Kafka commits (no group, a ranged run), the positions
/// are only persisted.
fn commit(consumer: &BaseConsumer<SourceContext>, tracks: &[Arc<PartitionTrack>]) -> Committed {
    let positions: Vec<(&Arc<PartitionTrack>, i64)> = tracks
        .iter()
        .filter_map(|t| t.uncommitted().map(|p| (t, p)))
        .collect();
    if positions.is_empty() {
        return Committed::Done;
    }
    let context = consumer.context();
    if let Some(durability) = &context.durability {
        let at: Vec<(TopicPartition, i64)> = positions
            .iter()
            .map(|(t, p)| ((Arc::clone(t.topic()), t.partition()), *p))
            .collect();
        if let Err(error) = durability.before_commit(&at, context.commit) {
            context.shutdown.fail(Fatal::State(format!("{error:#}")));
            // The host halts: asking again cannot help.
            return Committed::Refused;
        }
    }
    if !context.commit {
        for (track, position) in &positions {
            track.committed(*position);
        }
        return Committed::Done;
    }
    let mut tpl = TopicPartitionList::new();
    for (track, position) in &positions {
        let _ =
            tpl.add_partition_offset(track.topic(), track.partition(), Offset::Offset(*position));
    }
    match consumer.commit(&tpl, CommitMode::Sync) {
        Ok(()) => {
            let metrics = &consumer.context().metrics;
            for (track, position) in &positions {
                track.committed(*position);
                metrics.partition_committed(track.topic(), track.partition(), *position);
            }
            Committed::Done
        }
        Err(error) if commit_refused_for_good(&error) => {
            tracing::warn!(%error, "commit refused: the group no longer counts this member (its session expired or another member took its place); these positions are committed by the next owner of the partitions");
            Committed::Refused
        }
        Err(error) => {
            tracing::warn!(%error, "commit failed; it is tried again");
            Committed::Failed
        }
    }
}

/// Commits off the consumer thread, one at a time, so a slow or absent
/// coordinator never holds up rebalances or the shutdown deadline.
struct Committer {
    jobs: Option<SyncSender<Vec<Arc<PartitionTrack>>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Commits asked for.
    asked: u64,
    /// Commits finished, and how the last one ended.
    finished: Arc<(Mutex<(u64, Committed)>, Condvar)>,
}

impl Committer {
    fn start(consumer: &Arc<BaseConsumer<SourceContext>>) -> anyhow::Result<Self> {
        let (tx, rx) = sync_channel::<Vec<Arc<PartitionTrack>>>(1);
        let finished = Arc::new((Mutex::new((0, Committed::Done)), Condvar::new()));
        let consumer = Arc::clone(consumer);
        let done = Arc::clone(&finished);
        let thread = std::thread::Builder::new()
            .name("alerthost-commit".into())
            .spawn(move || {
                for tracks in rx {
                    let outcome = commit(&consumer, &tracks);
                    let (state, signal) = &*done;
                    let mut state = lock(state);
                    state.0 += 1;
                    state.1 = outcome;
                    signal.notify_all();
                }
            })
            .context("cannot start the commit thread")?;
        Ok(Committer {
            jobs: Some(tx),
            thread: Some(thread),
            asked: 0,
            finished,
        })
    }

    /// Whether the last commit asked for has finished.
    fn idle(&self) -> bool {
        lock(&self.finished.0).0 == self.asked
    }

    /// How the last commit finished ended.
    fn last(&self) -> Committed {
        lock(&self.finished.0).1
    }

    /// Ask for a commit of `tracks` (when none is running).
    fn ask(&mut self, tracks: Vec<Arc<PartitionTrack>>) {
        if self.idle()
            && let Some(jobs) = &self.jobs
            && jobs.send(tracks).is_ok()
        {
            self.asked += 1;
        }
    }

    /// Wait until the last commit asked for finished, or `deadline`.
    /// Returns whether it finished.
    fn wait(&self, deadline: Instant) -> bool {
        let (state, signal) = &*self.finished;
        let mut state = lock(state);
        while state.0 != self.asked {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = signal
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// End the thread; wait for it when it is idle (it holds a reference
    /// to the consumer, whose last reference closes it).
    fn close(&mut self) {
        self.jobs = None;
        if self.idle()
            && let Some(thread) = self.thread.take()
        {
            let _ = thread.join();
        }
    }
}

/// The running source.
pub struct Source {
    consumer: Arc<BaseConsumer<SourceContext>>,
    options: SourceOptions,
    shutdown: Arc<Shutdown>,
    stats: Arc<Stats>,
    /// Partitions of a ranged run, and how many messages they hold.
    ranged: Option<(usize, u64)>,
    /// An `--until` still to come when the run started: the run follows
    /// live messages until then.
    live_until: Option<i64>,
    committer: Committer,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// The host's default for librdkafka's `queued.max.messages.kbytes`: what
/// is prefetched of each partition, in KiB.
pub const PREFETCH_KIB_PER_PARTITION: &str = "16384";
/// The host's default for librdkafka's `fetch.queue.backoff.ms`.
pub const FETCH_QUEUE_BACKOFF_MS: &str = "2";
/// The host's default for librdkafka's `fetch.wait.max.ms`: how long a
/// fetch waits on the broker for messages when every partition it asks for
/// is at its end.
pub const FETCH_WAIT_MAX_MS: &str = "100";

impl Source {
    /// Create the consumer, check the cluster answers, and subscribe (or, for
    /// a run with an end, assign every partition from its start offset).
    /// Each partition's lane goes to `take` as it is assigned.
    pub fn connect(
        options: SourceOptions,
        shutdown: Arc<Shutdown>,
        stats: Arc<Stats>,
        budget: Arc<InflightBudget>,
        take: LaneTaker,
    ) -> anyhow::Result<Self> {
        let mut config = ClientConfig::new();
        // The workers read each partition from a queue of its own, and
        // librdkafka prefetches up to `queued.max.messages.kbytes` into each
        // (64 MiB by default): on many partitions, gigabytes read ahead of
        // slow handlers. Once a queue is full, librdkafka leaves the
        // partition out of its fetches for `fetch.queue.backoff.ms` (1 s by
        // default), and then until the fetch in flight returns: only one is
        // in flight per broker, and one that asks only for partitions at
        // their end (a quiet topic) waits `fetch.wait.max.ms` (500 ms by
        // default) for new messages. Handlers that empty the queue sooner
        // sit idle meanwhile: one busy partition beside a quiet topic was
        // read at a twentieth of its speed with 4 MiB and 500 ms. 16 MiB
        // covers a 100 ms wait at 160 MB/s of handling. All three settable
        // in [source.librdkafka].
        config
            .set("queued.max.messages.kbytes", PREFETCH_KIB_PER_PARTITION)
            .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS)
            .set("fetch.wait.max.ms", FETCH_WAIT_MAX_MS);
        for (key, value) in &options.kafka {
            config.set(key, value);
        }
        let group = options.group_id.clone().unwrap_or_else(|| {
            format!("alerthost-nocommit-{}-{}", std::process::id(), now_millis())
        });
        let ends = options.bounds.ends();
        let live_until = options
            .bounds
            .until
            .filter(|until| u128::try_from(*until).unwrap_or(0) > now_millis());
        config
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", options.start.as_str())
            .set(
                "enable.partition.eof",
                if ends && live_until.is_none() {
                    "true"
                } else {
                    "false"
                },
            );
        let context = SourceContext {
            me: OnceLock::new(),
            shutdown: Arc::clone(&shutdown),
            budget,
            take,
            commit: options.group_id.is_some() && !ends,
            durability: options.durability.clone(),
            start: options.start,
            reset: options.reset,
            since: options.bounds.since.filter(|_| !ends),
            positioned: Mutex::default(),
            existing: Mutex::default(),
            tracks: Mutex::default(),
            epoch: AtomicU64::new(0),
            finished: Arc::default(),
            last_error: Mutex::default(),
            auth_error: Mutex::default(),
            metrics: stats.metrics.clone(),
        };
        let consumer: BaseConsumer<SourceContext> = config
            .create_with_context(context)
            .context("cannot create the Kafka consumer (check [source] and [source.librdkafka])")?;
        let consumer = Arc::new(consumer);
        let _ = consumer.context().me.set(Arc::downgrade(&consumer));
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
                    if let Some(auth) = lock(&context.auth_error).clone() {
                        bail!(
                            "cannot authenticate to Kafka at {servers}: {auth} (check the client id and secret)"
                        );
                    }
                    if Instant::now() >= deadline {
                        let last = lock(&context.last_error).clone();
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
            .filter(|t| !t.name().starts_with("__") && t.error().is_none())
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
        *lock(&consumer.context().existing) = existing.clone();

        let committer = Committer::start(&consumer)?;
        let mut source = Source {
            committer,
            consumer,
            options,
            shutdown,
            stats,
            ranged: None,
            live_until,
        };
        if ends {
            source.assign_range(&existing)?;
            source.stats.metrics.readiness().range_started();
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

    /// A run with an end: every partition of every selected topic, from the
    /// first message at or after `since` to the last before `until`.
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
        let lookup = |millis: i64| -> anyhow::Result<HashMap<(String, i32), Offset>> {
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
        // An `until` still to come is a time to follow live messages up
        // to; one in the past ends each partition at its end as of now.
        // Either way the range is a filter on timestamps: with out-of-order
        // create times, a message in range may sit anywhere after `since`.
        let live = self.live_until.is_some();
        let window = Some((
            bounds.since.unwrap_or(i64::MIN),
            bounds.until.unwrap_or(i64::MAX),
        ));
        let mut assignment = TopicPartitionList::new();
        let mut lanes = Vec::new();
        let mut total = 0_u64;
        let context = self.consumer.context();
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
            let end = if live { i64::MAX } else { high };
            if start >= end {
                continue;
            }
            if !live {
                total += (end - start) as u64;
            }
            assignment
                .add_partition_offset(&tp.0, tp.1, Offset::Offset(start))
                .context("cannot build the assignment")?;
            let topic: Arc<str> = Arc::from(tp.0.as_str());
            let track = PartitionTrack::new(
                Arc::clone(&topic),
                tp.1,
                1,
                Arc::clone(&self.shutdown),
                Arc::clone(&context.budget),
            );
            let queue = PartitionQueue::split(&self.consumer, &topic, tp.1)
                .with_context(|| format!("cannot open a queue for {}[{}]", tp.0, tp.1))?;
            lanes.push(Lane {
                queue,
                track,
                end: (!live).then_some(end),
                window,
                finished: Arc::clone(&context.finished),
            });
        }
        tracing::info!(
            partitions = all.count(),
            empty = all.count() - lanes.len(),
            messages = total,
            "time range resolved on every partition"
        );
        self.ranged = Some((if live { usize::MAX } else { lanes.len() }, total));
        self.consumer
            .assign(&assignment)
            .context("cannot assign the partitions of the time range")?;
        {
            // Kept like a group's assignment, so the end of the run waits
            // for every action to be durable.
            let mut tracks = lock(&context.tracks);
            for lane in &lanes {
                tracks.insert(
                    (Arc::clone(lane.track.topic()), lane.track.partition()),
                    Arc::clone(&lane.track),
                );
            }
        }
        for lane in lanes {
            (context.take)(lane);
        }
        Ok(())
    }

    /// A range that follows live messages (an `--until` still to come)
    /// also reads partitions created during the run: each new partition of
    /// a selected topic is read from its beginning (its messages are all
    /// newer than the run's start; the time window filters them as any).
    fn follow_new_partitions(&mut self) -> anyhow::Result<()> {
        let metadata = self
            .consumer
            .fetch_metadata(None, ASSIGN_TIMEOUT)
            .context("cannot read the cluster's topics")?;
        let context = self.consumer.context();
        let mut assignment = TopicPartitionList::new();
        let mut lanes = Vec::new();
        {
            let tracks = lock(&context.tracks);
            for topic in metadata.topics() {
                let name = topic.name();
                if name.starts_with("__")
                    || topic.error().is_some()
                    || !self.options.topics.iter().any(|s| s.matches(name))
                {
                    continue;
                }
                let shared: Arc<str> = Arc::from(name);
                for partition in topic.partitions() {
                    let key = (Arc::clone(&shared), partition.id());
                    if tracks.contains_key(&key) {
                        continue;
                    }
                    let queue = PartitionQueue::split(&self.consumer, name, partition.id())
                        .with_context(|| {
                            format!("cannot open a queue for {name}[{}]", partition.id())
                        })?;
                    assignment
                        .add_partition_offset(name, partition.id(), Offset::Beginning)
                        .context("cannot build the assignment")?;
                    lanes.push(Lane {
                        queue,
                        track: PartitionTrack::new(
                            Arc::clone(&shared),
                            partition.id(),
                            1,
                            Arc::clone(&self.shutdown),
                            Arc::clone(&context.budget),
                        ),
                        end: None,
                        window: Some((
                            self.options.bounds.since.unwrap_or(i64::MIN),
                            self.options.bounds.until.unwrap_or(i64::MAX),
                        )),
                        finished: Arc::clone(&context.finished),
                    });
                }
            }
        }
        if lanes.is_empty() {
            return Ok(());
        }
        self.consumer
            .incremental_assign(&assignment)
            .context("cannot add the new partitions to the time range")?;
        let added = partitions_of(&assignment);
        tracing::info!(partitions = %describe(&added), "partitions created during the time range are read too");
        {
            let mut tracks = lock(&context.tracks);
            for lane in &lanes {
                tracks.insert(
                    (Arc::clone(lane.track.topic()), lane.track.partition()),
                    Arc::clone(&lane.track),
                );
            }
        }
        for lane in lanes {
            (context.take)(lane);
        }
        Ok(())
    }

    fn range_done(&self) -> bool {
        if let Some(until) = self.live_until {
            return now_millis() >= u128::try_from(until).unwrap_or(0);
        }
        self.ranged.is_some_and(|(partitions, _)| {
            self.consumer.context().finished.load(Ordering::SeqCst) >= partitions
        })
    }

    /// Serve the consumer (rebalances, errors) and commit periodically,
    /// until a stop is asked for, a fatal error happens, or a ranged run is
    /// read completely.
    pub fn run(&mut self) {
        let context = self.consumer.context();
        let commit_enabled = context.commit || context.durability.is_some();
        let mut last_commit = Instant::now();
        let mut quiet_warned: Option<Instant> = None;
        let mut last_look = Instant::now();
        let progress = Progress::new(
            self.options.progress,
            self.ranged.map_or(0, |(_, total)| total),
        );
        if self.live_until.is_none() && self.ranged.is_some_and(|(partitions, _)| partitions == 0) {
            tracing::info!("nothing in the time range");
        }
        while !self.shutdown.stopping() && !self.range_done() {
            match self.consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Ok(message)) => {
                    // Every partition has a queue of its own; nothing should
                    // arrive here.
                    tracing::warn!(
                        topic = message.topic(),
                        partition = message.partition(),
                        "a message arrived outside its partition queue; it is handled after a restart"
                    );
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
            progress.set(self.stats.messages.get());
            if self.live_until.is_some() && last_look.elapsed() >= NEW_PARTITIONS_PERIOD {
                if let Err(error) = self.follow_new_partitions() {
                    tracing::warn!("{error:#}; looking again later");
                }
                last_look = Instant::now();
            }
            if commit_enabled && last_commit.elapsed() >= self.options.commit_interval {
                let tracks = self.consumer.context().current_tracks();
                self.committer.ask(tracks);
                last_commit = Instant::now();
            }
        }
        progress.finish();
    }

    /// After the readers stopped: wait for in-flight actions, commit what is
    /// done, and say what is not committed. Bounded by the shutdown
    /// deadline.
    pub fn finish(self) {
        let context = self.consumer.context();
        let deadline = self
            .shutdown
            .deadline()
            .unwrap_or_else(|| Instant::now() + crate::shutdown::SHUTDOWN_BUDGET);
        let tracks = context.current_tracks();
        let drained = tracks
            .iter()
            .all(|t| t.drain(deadline, || self.shutdown.in_flight_abandoned()));
        let mut committer = self.committer;
        let commits = context.commit || context.durability.is_some();
        let mut committed = !commits;
        let mut refused = false;
        if commits {
            // On the commit thread, so an absent coordinator cannot hold the
            // exit past the deadline. A failed commit is tried again after
            // a pause (growing, within the deadline); one the group refuses
            // for good is not.
            let mut pause = Duration::from_millis(100);
            // Whether the last commit waited for is one asked for here (not
            // a periodic one of an earlier assignment).
            let mut ours = false;
            while Instant::now() < deadline {
                if !committer.wait(deadline) {
                    break;
                }
                if tracks.iter().all(|t| t.uncommitted().is_none()) {
                    committed = true;
                    break;
                }
                match committer.last() {
                    Committed::Refused if ours => {
                        refused = true;
                        break;
                    }
                    Committed::Failed if ours => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        std::thread::sleep(pause.min(left));
                        pause = (pause * 2).min(Duration::from_secs(2));
                    }
                    _ => {}
                }
                committer.ask(tracks.clone());
                ours = true;
            }
        }
        committer.close();
        let behind: Vec<String> = tracks
            .iter()
            .filter(|t| t.pending() > 0 || (!committed && t.uncommitted().is_some()))
            .map(|t| match t.position() {
                Some(position) => t.describe(position),
                None => t.describe(0),
            })
            .collect();
        if !behind.is_empty() {
            tracing::warn!(
                "not committed past {} ({}); those messages are handled again after a restart",
                behind.join(", "),
                if !drained {
                    "messages were still in flight"
                } else if refused {
                    "the group refused the commit"
                } else if !committed {
                    "the commit did not complete in time; one already sent may still reach \
                     the group, and then those messages are not handled again"
                } else {
                    "the message there failed or was left unfinished"
                }
            );
        }
        for track in &tracks {
            track.revoke();
        }
        lock(&context.tracks).clear();
        // Closing leaves the group, which needs the coordinator: on a thread
        // of its own, so an absent one cannot hold the exit past the
        // deadline (the group then notices on its own).
        let consumer = self.consumer;
        let (closed, wait) = std::sync::mpsc::channel();
        let closing = std::thread::Builder::new()
            .name("alerthost-close".into())
            .spawn(move || {
                drop(consumer);
                let _ = closed.send(());
            });
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(2));
        if closing.is_err() || wait.recv_timeout(left).is_err() {
            tracing::warn!("leaving the consumer group without a clean close");
        }
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
    last_log: std::cell::Cell<Instant>,
    started: Instant,
}

impl Progress {
    fn new(enabled: bool, total: u64) -> Self {
        use std::io::IsTerminal as _;
        let enabled = enabled && total > 0;
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
            last_log: std::cell::Cell::new(Instant::now()),
            started: Instant::now(),
        }
    }

    fn set(&self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        } else if self.total > 0 && self.last_log.get().elapsed() >= Duration::from_secs(5) {
            let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
            tracing::info!(
                done,
                total = self.total,
                rate = format!("{rate:.0}/s"),
                "progress"
            );
            self.last_log.set(Instant::now());
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_authentication_codes_are_auth_errors() {
        assert!(is_auth_error(&KafkaError::Global(
            RDKafkaErrorCode::Authentication
        )));
        assert!(is_auth_error(&KafkaError::Global(
            RDKafkaErrorCode::SaslAuthenticationFailed
        )));
        // "token-broker.invalid:9092/bootstrap: Failed to resolve ..."
        assert!(!is_auth_error(&KafkaError::Global(
            RDKafkaErrorCode::Resolve
        )));
        assert!(!is_auth_error(&KafkaError::Global(
            RDKafkaErrorCode::AllBrokersDown
        )));
    }
}
