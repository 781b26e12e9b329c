//! What an operator watches: Prometheus metrics, readiness, and the HTTP
//! listener that serves them (`[metrics] listen`, `--metrics-listen`).
//!
//! [`Metrics`] is a facade with one method per event (a message consumed, a
//! decision, a failure, a sink write, a swap, a commit ...), so the pipeline
//! never sees metric names or label sets. It is a cheap handle to clone; all
//! clones count into one registry. The metrics are kept whether or not a
//! listener serves them: counting costs a few atomic operations, and a host
//! without `[metrics]` is not slowed by a branch at every call site.
//!
//! Names follow Prometheus conventions: `alerthost_` prefix, `_total` on
//! counters, base units (`_seconds`, `_bytes`). The README's "Operating"
//! section lists every one of them (a test checks it), and
//! `deploy/grafana-dashboard.json` queries only names that exist (a test
//! checks that too).

mod server;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus::local::{LocalHistogram, LocalIntCounter};
use prometheus::{
    Encoder as _, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::runtime::FailureKind;

pub use server::MetricsServer;

/// A partition: topic and partition number.
pub type TopicPartition = (String, i32);

/// Buckets of the `handle` duration, in seconds: a Rust handler takes a few
/// microseconds, a JavaScript one milliseconds, and the default wall-time
/// limit is 250 ms.
const HANDLE_BUCKETS: &[f64] = &[
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0,
];

/// Buckets of a sink write or acknowledgement, in seconds: an fsync'd file
/// takes milliseconds, a Kafka acknowledgement (acks=all) up to seconds when
/// the broker is slow.
const SINK_BUCKETS: &[f64] = &[
    0.000_1, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// What a handler decided on a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionKind {
    /// At least one `save` action.
    Saved,
    /// At least one `forward` action.
    Forwarded,
    /// No action.
    Dropped,
}

impl DecisionKind {
    /// The `kind` label.
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Saved => "saved",
            DecisionKind::Forwarded => "forwarded",
            DecisionKind::Dropped => "dropped",
        }
    }
}

/// How a hot swap ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwapOutcome {
    /// The new version replaced the running one.
    Done,
    /// The new version was rejected; the running one keeps running.
    Refused,
}

impl SwapOutcome {
    /// The `outcome` label.
    pub fn as_str(self) -> &'static str {
        match self {
            SwapOutcome::Done => "done",
            SwapOutcome::Refused => "refused",
        }
    }
}

/// One handler's per-message meters (the `handle` duration and its
/// decisions) for one worker and one version, counted locally until
/// flushed.
#[derive(Debug)]
pub struct HandlerMeters {
    version: String,
    handle_seconds: LocalHistogram,
    saved: LocalIntCounter,
    forwarded: LocalIntCounter,
    dropped: LocalIntCounter,
}

impl HandlerMeters {
    /// The version the decisions are counted for.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// One `handle` call took `elapsed`.
    pub fn handled(&self, elapsed: Duration) {
        self.handle_seconds.observe(elapsed.as_secs_f64());
    }

    /// The handler decided `kind` on a message.
    pub fn decision(&self, kind: DecisionKind) {
        match kind {
            DecisionKind::Saved => self.saved.inc(),
            DecisionKind::Forwarded => self.forwarded.inc(),
            DecisionKind::Dropped => self.dropped.inc(),
        }
    }

    /// Add what was counted since the last flush to the registry.
    pub fn flush(&self) {
        self.handle_seconds.flush();
        self.saved.flush();
        self.forwarded.flush();
        self.dropped.flush();
    }
}

impl Drop for HandlerMeters {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The last committed offset and the high watermark seen for a partition.
type KnownOffsets = (Option<i64>, Option<i64>);

/// The host's metrics and readiness. Clones share everything.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("readiness", &self.inner.readiness)
            .finish_non_exhaustive()
    }
}

struct Inner {
    registry: Registry,
    consumed: IntCounterVec,
    unrouted: IntCounterVec,
    decisions: IntCounterVec,
    failures: IntCounterVec,
    dead_letters: IntCounterVec,
    retries: IntCounterVec,
    handle_seconds: HistogramVec,
    sink_seconds: HistogramVec,
    sink_errors: IntCounterVec,
    in_flight_bytes: IntGauge,
    /// Where the bytes in flight are counted, read at each scrape.
    budget: std::sync::OnceLock<Arc<crate::commit::InflightBudget>>,
    swaps: IntCounterVec,
    handler_info: IntGaugeVec,
    committed: IntGaugeVec,
    high_watermark: IntGaugeVec,
    lag: IntGaugeVec,
    assigned: IntGauge,
    ready: IntGauge,
    rtt_seconds: prometheus::GaugeVec,
    kafka_lag: IntGaugeVec,
    /// Last committed offset and high watermark per partition, to derive lag.
    offsets: Mutex<HashMap<TopicPartition, KnownOffsets>>,
    /// The version each handler runs, to retire its info series on a swap.
    versions: Mutex<HashMap<String, String>>,
    readiness: Readiness,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric of the host.
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid counter");
            registry
                .register(Box::new(c.clone()))
                .expect("a metric name registered once");
            c
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid gauge");
            registry
                .register(Box::new(g.clone()))
                .expect("a metric name registered once");
            g
        };
        let scalar = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("a valid gauge");
            registry
                .register(Box::new(g.clone()))
                .expect("a metric name registered once");
            g
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                labels,
            )
            .expect("a valid histogram");
            registry
                .register(Box::new(h.clone()))
                .expect("a metric name registered once");
            h
        };
        let rtt_seconds = prometheus::GaugeVec::new(
            Opts::new(
                "alerthost_kafka_broker_rtt_seconds",
                "Round-trip time to each broker over the last librdkafka statistics interval (stat: p50 or p99).",
            ),
            &["broker", "stat"],
        )
        .expect("a valid gauge");
        registry
            .register(Box::new(rtt_seconds.clone()))
            .expect("a metric name registered once");

        let build_info = gauge(
            "alerthost_build_info",
            "Always 1; the alerthost version is in the label.",
            &["version"],
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        let inner = Inner {
            consumed: counter(
                "alerthost_messages_consumed_total",
                "Messages read from Kafka.",
                &["topic", "partition"],
            ),
            unrouted: counter(
                "alerthost_messages_unrouted_total",
                "Messages no handler takes (committed as dropped).",
                &["topic"],
            ),
            decisions: counter(
                "alerthost_decisions_total",
                "Handler decisions by handler, version and kind (saved, forwarded, dropped).",
                &["handler", "version", "kind"],
            ),
            failures: counter(
                "alerthost_handler_failures_total",
                "Handler failures by kind (trap, timeout, memory, fuel, limit, bad-record, transient, fatal, init, sink).",
                &["handler", "kind"],
            ),
            dead_letters: counter(
                "alerthost_dead_letters_total",
                "Messages written to a handler's dead-letter sink.",
                &["handler"],
            ),
            retries: counter(
                "alerthost_retries_total",
                "Handler calls tried again under on_error = \"retry\".",
                &["handler"],
            ),
            handle_seconds: histogram(
                "alerthost_handle_duration_seconds",
                "Wall time of one handle call.",
                &["handler"],
                HANDLE_BUCKETS,
            ),
            sink_seconds: histogram(
                "alerthost_sink_write_duration_seconds",
                "Time from handing a record to a sink until it is durable (file written and fsync'd, Kafka acknowledged).",
                &["sink"],
                SINK_BUCKETS,
            ),
            sink_errors: counter(
                "alerthost_sink_errors_total",
                "Sink writes or acknowledgements that failed.",
                &["sink"],
            ),
            in_flight_bytes: scalar(
                "alerthost_in_flight_bytes",
                "Bytes (value and key) of messages read but not yet durable everywhere.",
            ),
            budget: std::sync::OnceLock::new(),
            swaps: counter(
                "alerthost_handler_swaps_total",
                "Hot swaps of a handler by outcome (done, refused).",
                &["handler", "outcome"],
            ),
            handler_info: gauge(
                "alerthost_handler_info",
                "Always 1, for the version (content hash) each handler runs.",
                &["handler", "version"],
            ),
            committed: gauge(
                "alerthost_partition_committed_offset",
                "The offset last committed for each assigned partition (the next message to handle).",
                &["topic", "partition"],
            ),
            high_watermark: gauge(
                "alerthost_partition_high_watermark",
                "The end offset of each assigned partition (the offset the next message produced gets).",
                &["topic", "partition"],
            ),
            lag: gauge(
                "alerthost_partition_lag",
                "Messages of each assigned partition not yet committed: high watermark minus committed offset; 0 when caught up.",
                &["topic", "partition"],
            ),
            assigned: scalar(
                "alerthost_partitions_assigned",
                "Partitions this host is assigned.",
            ),
            ready: scalar("alerthost_ready", "1 when /readyz answers ready, else 0."),
            kafka_lag: gauge(
                "alerthost_kafka_consumer_lag",
                "Consumer lag of each assigned partition as librdkafka's statistics report it.",
                &["topic", "partition"],
            ),
            rtt_seconds,
            registry,
            offsets: Mutex::default(),
            versions: Mutex::default(),
            readiness: Readiness::default(),
        };
        Metrics {
            inner: Arc::new(inner),
        }
    }

    /// The text exposition of every metric (Prometheus text format 0.0.4).
    pub fn render(&self) -> String {
        self.inner
            .ready
            .set(i64::from(self.inner.readiness.check().is_ok()));
        if let Some(budget) = self.inner.budget.get() {
            self.inner
                .in_flight_bytes
                .set(i64::try_from(budget.used()).unwrap_or(i64::MAX));
        }
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.inner.registry.gather(), &mut out)
            .expect("encoding metrics into memory does not fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }

    /// The readiness state, for the listener and for those who set it.
    pub fn readiness(&self) -> &Readiness {
        &self.inner.readiness
    }

    /// A message was read from `topic`[`partition`].
    pub fn message_consumed(&self, topic: &str, partition: i32) {
        self.inner
            .consumed
            .with_label_values(&[topic, partition.to_string().as_str()])
            .inc();
    }

    /// The counter of messages consumed from `topic[partition]`, for a
    /// reader that counts a partition's messages without a label lookup
    /// per message.
    pub fn consumed_counter(&self, topic: &str, partition: i32) -> IntCounter {
        self.inner
            .consumed
            .with_label_values(&[topic, partition.to_string().as_str()])
    }

    /// `handler`'s meters for one worker: they count locally and reach the
    /// registry at [`HandlerMeters::flush`], so the workers running one
    /// handler share no counter per message.
    pub fn handler_meters(&self, handler: &str, version: &str) -> HandlerMeters {
        let decision = |kind: DecisionKind| {
            self.inner
                .decisions
                .with_label_values(&[handler, version, kind.as_str()])
                .local()
        };
        HandlerMeters {
            version: version.to_owned(),
            handle_seconds: self
                .inner
                .handle_seconds
                .with_label_values(&[handler])
                .local(),
            saved: decision(DecisionKind::Saved),
            forwarded: decision(DecisionKind::Forwarded),
            dropped: decision(DecisionKind::Dropped),
        }
    }

    /// A message of `topic` matched no handler.
    pub fn message_unrouted(&self, topic: &str) {
        self.inner.unrouted.with_label_values(&[topic]).inc();
    }

    /// `handler` at `version` decided `kind` on a message.
    pub fn decision(&self, handler: &str, version: &str, kind: DecisionKind) {
        self.inner
            .decisions
            .with_label_values(&[handler, version, kind.as_str()])
            .inc();
    }

    /// `handler` failed on a message.
    pub fn failure(&self, handler: &str, kind: FailureKind) {
        self.inner
            .failures
            .with_label_values(&[handler, kind.as_str()])
            .inc();
    }

    /// A message was written to `handler`'s dead-letter sink.
    pub fn dead_letter(&self, handler: &str) {
        self.inner.dead_letters.with_label_values(&[handler]).inc();
    }

    /// `handler` is called again on a message it failed on.
    pub fn retry(&self, handler: &str) {
        self.inner.retries.with_label_values(&[handler]).inc();
    }

    /// One `handle` call of `handler` took `elapsed`.
    pub fn handle_seconds(&self, handler: &str, elapsed: Duration) {
        self.inner
            .handle_seconds
            .with_label_values(&[handler])
            .observe(elapsed.as_secs_f64());
    }

    /// A write to `sink` became durable (`ok`) or failed, `elapsed` after it
    /// was handed over.
    pub fn sink_write(&self, sink: &str, elapsed: Duration, ok: bool) {
        self.inner
            .sink_seconds
            .with_label_values(&[sink])
            .observe(elapsed.as_secs_f64());
        if !ok {
            self.inner.sink_errors.with_label_values(&[sink]).inc();
        }
    }

    /// Report the bytes `budget` holds as the bytes in flight (the first
    /// budget given is kept).
    pub fn watch_in_flight(&self, budget: Arc<crate::commit::InflightBudget>) {
        let _ = self.inner.budget.set(budget);
    }

    /// A hot swap of `handler` ended with `outcome`.
    pub fn swap(&self, handler: &str, outcome: SwapOutcome) {
        self.inner
            .swaps
            .with_label_values(&[handler, outcome.as_str()])
            .inc();
    }

    /// `handler` now runs `version` (at start-up and after each swap).
    pub fn running_version(&self, handler: &str, version: &str) {
        let mut versions = self
            .inner
            .versions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = versions.insert(handler.to_owned(), version.to_owned())
            && old != version
        {
            let _ = self
                .inner
                .handler_info
                .remove_label_values(&[handler, old.as_str()]);
        }
        self.inner
            .handler_info
            .with_label_values(&[handler, version])
            .set(1);
    }

    /// `offset` was committed for `topic`[`partition`].
    pub fn partition_committed(&self, topic: &str, partition: i32, offset: i64) {
        let label = partition.to_string();
        self.inner
            .committed
            .with_label_values(&[topic, label.as_str()])
            .set(offset);
        self.update_offsets(topic, partition, &label, |entry| entry.0 = Some(offset));
    }

    /// `topic`[`partition`] ends at `offset` (its high watermark).
    pub fn partition_high_watermark(&self, topic: &str, partition: i32, offset: i64) {
        let label = partition.to_string();
        self.inner
            .high_watermark
            .with_label_values(&[topic, label.as_str()])
            .set(offset);
        self.update_offsets(topic, partition, &label, |entry| entry.1 = Some(offset));
    }

    fn update_offsets(
        &self,
        topic: &str,
        partition: i32,
        label: &str,
        change: impl FnOnce(&mut KnownOffsets),
    ) {
        let mut offsets = self
            .inner
            .offsets
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let entry = offsets.entry((topic.to_owned(), partition)).or_default();
        change(entry);
        if let (Some(committed), Some(high)) = *entry {
            // A commit can be newer than the last watermark seen.
            self.inner
                .lag
                .with_label_values(&[topic, label])
                .set((high - committed).max(0));
        }
    }

    /// The group assigned these partitions to this host.
    pub fn partitions_assigned(&self, partitions: &[TopicPartition]) {
        let count = self.inner.readiness.assign(partitions);
        self.inner.assigned.set(count);
    }

    /// These partitions were taken away: their series are retired, so a
    /// partition now read by another host is not reported twice.
    pub fn partitions_revoked(&self, partitions: &[TopicPartition]) {
        let count = self.inner.readiness.revoke(partitions);
        self.inner.assigned.set(count);
        let mut offsets = self
            .inner
            .offsets
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (topic, partition) in partitions {
            offsets.remove(&(topic.clone(), *partition));
            let partition = partition.to_string();
            let labels = [topic.as_str(), partition.as_str()];
            for gauge in [
                &self.inner.committed,
                &self.inner.high_watermark,
                &self.inner.lag,
                &self.inner.kafka_lag,
            ] {
                let _ = gauge.remove_label_values(&labels);
            }
        }
    }

    /// librdkafka's statistics (every `statistics.interval.ms`): broker
    /// round-trip times, and per assigned partition the high watermark and
    /// librdkafka's own view of the consumer lag.
    pub fn kafka_statistics(&self, statistics: &rdkafka::Statistics) {
        for broker in statistics.brokers.values() {
            // Bootstrap and internal entries have no node id.
            if broker.nodeid < 0 {
                continue;
            }
            if let Some(rtt) = &broker.rtt
                && rtt.cnt > 0
            {
                let micros = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
                self.broker_rtt(&broker.nodename, micros(rtt.p50), micros(rtt.p99));
            }
        }
        for (topic, stats) in &statistics.topics {
            for partition in stats.partitions.values() {
                // librdkafka reports every partition it knows, with -1 for
                // what it does not fetch; only this host's partitions count.
                let tp = (topic.clone(), partition.partition);
                if partition.partition < 0 || !self.inner.readiness.is_assigned(&tp) {
                    continue;
                }
                if partition.hi_offset >= 0 {
                    self.partition_high_watermark(topic, partition.partition, partition.hi_offset);
                }
                if partition.consumer_lag >= 0 {
                    self.kafka_consumer_lag(topic, partition.partition, partition.consumer_lag);
                }
            }
        }
    }

    /// Round-trip times to `broker` over the last statistics interval.
    pub fn broker_rtt(&self, broker: &str, p50: Duration, p99: Duration) {
        // Not a `quantile` label: that one belongs to summaries.
        for (stat, rtt) in [("p50", p50), ("p99", p99)] {
            self.inner
                .rtt_seconds
                .with_label_values(&[broker, stat])
                .set(rtt.as_secs_f64());
        }
    }

    /// librdkafka's consumer lag of `topic`[`partition`].
    pub fn kafka_consumer_lag(&self, topic: &str, partition: i32, lag: i64) {
        self.inner
            .kafka_lag
            .with_label_values(&[topic, partition.to_string().as_str()])
            .set(lag);
    }
}

/// Whether the host is ready: every handler loaded, and partitions assigned
/// (or a time-range run in progress), and not stopping.
#[derive(Debug, Default)]
pub struct Readiness {
    handlers_loaded: AtomicBool,
    ranged: AtomicBool,
    stopping: AtomicBool,
    assigned: Mutex<BTreeSet<TopicPartition>>,
}

impl Readiness {
    /// Every handler is loaded and initialised.
    pub fn handlers_loaded(&self) {
        self.handlers_loaded.store(true, Ordering::SeqCst);
    }

    /// A time-range run has its partitions (assigned directly, no group).
    pub fn range_started(&self) {
        self.ranged.store(true, Ordering::SeqCst);
    }

    /// The host is stopping: finishing messages in flight, committing.
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    fn assigned(&self) -> std::sync::MutexGuard<'_, BTreeSet<TopicPartition>> {
        self.assigned.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn assign(&self, partitions: &[TopicPartition]) -> i64 {
        let mut assigned = self.assigned();
        assigned.extend(partitions.iter().cloned());
        i64::try_from(assigned.len()).unwrap_or(i64::MAX)
    }

    fn revoke(&self, partitions: &[TopicPartition]) -> i64 {
        let mut assigned = self.assigned();
        for tp in partitions {
            assigned.remove(tp);
        }
        i64::try_from(assigned.len()).unwrap_or(i64::MAX)
    }

    fn is_assigned(&self, tp: &TopicPartition) -> bool {
        self.assigned().contains(tp)
    }

    /// `Ok` when ready, else why not (the body of a 503 from `/readyz`).
    pub fn check(&self) -> Result<(), String> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err("stopping: finishing messages in flight and committing".into());
        }
        if !self.handlers_loaded.load(Ordering::SeqCst) {
            return Err("handlers are still loading".into());
        }
        if self.ranged.load(Ordering::SeqCst) {
            return Ok(());
        }
        if self.assigned().is_empty() {
            return Err(
                "no partitions assigned: waiting for the group to assign some (a group with more \
                 hosts than partitions leaves some hosts idle)"
                    .into(),
            );
        }
        Ok(())
    }
}

/// The exposition text's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
