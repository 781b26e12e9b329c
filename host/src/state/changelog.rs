//! A handler's state changelog: a compacted Kafka topic that holds every
//! change of the handler's state and, per source partition, how far the
//! handler's messages are applied (a watermark), so another host, or this
//! one with its local store lost, rebuilds the same state.
//!
//! Records:
//! - `s/<state key>`: a value (version byte, sequence number, optional
//!   expiry, the bytes); a delete is a tombstone (null value) carrying its
//!   sequence number in the `alerthost.seq` header, so compaction keeps only
//!   the latest change of each key and drops deleted keys;
//! - `w/<topic>/<partition>`: the next source offset whose effects are not
//!   in the changelog.
//!
//! Each record carries the writing handler (`alerthost.handler`), refused on
//! restore when it is another handler's, and the writing process
//! (`alerthost.host`), so a host can tell its own records from others'.
//!
//! One [`Changelog::append`] is one Kafka transaction (idempotent producer,
//! acks=all): the changes and the watermarks they lead to become visible to
//! [`Changelog::restore`] (which reads committed records only) together or
//! not at all. A watermark is therefore never read without the changes that
//! precede it, even when a host dies halfway through an append. (On a topic
//! of several partitions the broker marks a transaction committed partition
//! by partition, so a restore running at that instant may read one
//! partition's part before the other's; the topic alerthost creates has one
//! partition.)

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers as _, Message as _, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::Change;
use crate::sink::kafka::connection_properties;

/// How long opening, one append and a stalled restore may take by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The header naming the process that wrote a record.
pub const HOST_HEADER: &str = "alerthost.host";
/// The header naming the handler whose state a record holds.
pub const HANDLER_HEADER: &str = "alerthost.handler";
/// The header carrying a tombstone's sequence number (decimal).
pub const SEQ_HEADER: &str = "alerthost.seq";

/// Key prefix of state records.
const STATE_PREFIX: &str = "s/";
/// Key prefix of watermark records.
const WATERMARK_PREFIX: &str = "w/";
/// The version byte that starts every encoded value.
const VERSION: u8 = 1;
/// Flag bit of an encoded put: an expiry follows the sequence number.
const HAS_EXPIRY: u8 = 1;

/// This process's id in the `alerthost.host` header: host name, process id
/// and start time, so a restarted process is another writer.
pub fn host_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let host = crate::config::host_name();
        let host = if host.is_empty() { "unknown" } else { &host };
        format!("{host}-{}-{started}", std::process::id())
    })
}

/// What a restore reads, in log order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restored {
    /// A change of the handler's state (a tombstone is a
    /// [`Change::Delete`]).
    Change(Change),
    /// The handler's messages of `topic`/`partition` below `next` are
    /// applied: their changes precede this record.
    Watermark {
        /// The source topic.
        topic: String,
        /// The source partition.
        partition: i32,
        /// The next source offset not applied.
        next: i64,
    },
}

/// How far a restore read the changelog: per changelog partition, the
/// offset after the last record read. A later restore from it reads only
/// newer records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangelogPosition {
    next: BTreeMap<i32, i64>,
}

impl ChangelogPosition {
    /// The offset after the last record read of changelog `partition`.
    pub fn next(&self, partition: i32) -> Option<i64> {
        self.next.get(&partition).copied()
    }

    /// Every partition's next offset, as stored to resume from.
    pub fn offsets(&self) -> &BTreeMap<i32, i64> {
        &self.next
    }
}

impl From<BTreeMap<i32, i64>> for ChangelogPosition {
    fn from(next: BTreeMap<i32, i64>) -> Self {
        ChangelogPosition { next }
    }
}

/// Remembers the first delivery failure of an append and the last client
/// error, for the error an append returns.
#[derive(Debug, Default)]
struct ChangelogContext {
    failed: Mutex<Option<String>>,
    last_error: Mutex<Option<String>>,
}

impl ChangelogContext {
    fn take_failure(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl ClientContext for ChangelogContext {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(%error, reason, "changelog client error");
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(format!("{error}: {reason}"));
    }
}

impl ProducerContext for ChangelogContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        if let Err((error, _)) = result {
            self.failed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_or_insert_with(|| error.to_string());
        }
    }
}

/// One handler's changelog topic, opened: checked compacted (or created),
/// with a transactional producer ready.
pub struct Changelog {
    topic: String,
    handler: String,
    servers: String,
    /// Connection properties, for the consumer of each restore.
    connection: BTreeMap<String, String>,
    producer: BaseProducer<ChangelogContext>,
    timeout: Duration,
    /// One append at a time: a transaction spans the whole append.
    appending: Mutex<()>,
}

impl std::fmt::Debug for Changelog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Changelog")
            .field("topic", &self.topic)
            .field("handler", &self.handler)
            .finish_non_exhaustive()
    }
}

impl Changelog {
    /// Open `topic` as the changelog of `handler` on the cluster of the
    /// source properties `kafka` (connection and authentication settings are
    /// taken from them). Creates the topic compacted when it is missing;
    /// refuses a topic that is not compacted. Waits at most
    /// [`DEFAULT_TIMEOUT`] per request.
    pub fn open(
        kafka: &BTreeMap<String, String>,
        topic: &str,
        handler: &str,
    ) -> anyhow::Result<Changelog> {
        Self::open_with_timeout(kafka, topic, handler, DEFAULT_TIMEOUT)
    }

    /// [`Changelog::open`], where each request, append and stalled restore
    /// may take at most `timeout`.
    pub fn open_with_timeout(
        kafka: &BTreeMap<String, String>,
        topic: &str,
        handler: &str,
        timeout: Duration,
    ) -> anyhow::Result<Changelog> {
        let connection = connection_properties(kafka);
        let servers = connection
            .get("bootstrap.servers")
            .cloned()
            .unwrap_or_default();
        let what = || format!("changelog topic `{topic}` of handler `{handler}`");
        ensure_compacted(&connection, topic, handler, &servers, timeout)
            .with_context(|| format!("cannot open the {}", what()))?;

        // A static group member keeps its transactional id across restarts,
        // so a host killed halfway through an append aborts that append as
        // it starts again, instead of leaving restores to wait for the
        // broker to. Otherwise each changelog of each process has its own.
        let transactional_id = match kafka.get("group.instance.id") {
            Some(member) => format!("alerthost-changelog-{topic}-{member}"),
            None => {
                static WRITERS: AtomicU64 = AtomicU64::new(0);
                format!(
                    "alerthost-changelog-{topic}-{}-{}",
                    host_id(),
                    WRITERS.fetch_add(1, Ordering::Relaxed)
                )
            }
        };
        let mut config = client_config(&connection);
        config
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("transactional.id", &transactional_id)
            // Also bounds each record's delivery (message.timeout.ms follows
            // it), so an append with the cluster gone ends in time.
            .set(
                "transaction.timeout.ms",
                timeout.as_millis().max(1).to_string(),
            )
            .set("linger.ms", "0");
        let producer: BaseProducer<ChangelogContext> = config
            .create_with_context(ChangelogContext::default())
            .with_context(|| format!("cannot create the producer of the {}", what()))?;
        producer.init_transactions(timeout).with_context(|| {
            format!(
                "cannot start writing to the {} at {servers} (the producer needs Write and \
                 Describe on transactional id `{transactional_id}`)",
                what()
            )
        })?;
        Ok(Changelog {
            topic: topic.to_owned(),
            handler: handler.to_owned(),
            servers,
            connection,
            producer,
            timeout,
            appending: Mutex::new(()),
        })
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Write `changes` (one record each, a delete as a tombstone) and
    /// `watermarks` (source topic, partition, next offset) as one
    /// transaction, and wait until the cluster has them all. An error names
    /// the topic and handler; nothing of a failed append is visible to a
    /// restore, and the caller must not commit the source offsets.
    pub fn append(
        &self,
        changes: &[Change],
        watermarks: &[(String, i32, i64)],
    ) -> anyhow::Result<()> {
        if changes.is_empty() && watermarks.is_empty() {
            return Ok(());
        }
        let _one = self
            .appending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let deadline = Instant::now() + self.timeout;
        self.producer.context().take_failure();
        let result = self.append_transaction(changes, watermarks, deadline);
        if result.is_err() {
            // Leave the producer ready for another transaction when it can
            // be; a fatal producer error makes every later append fail too.
            let _ = self.producer.abort_transaction(remaining(deadline));
        }
        result.with_context(|| {
            format!(
                "cannot write {} state changes and {} watermarks to the changelog topic `{}` of \
                 handler `{}` at {}",
                changes.len(),
                watermarks.len(),
                self.topic,
                self.handler,
                self.servers
            )
        })
    }

    fn append_transaction(
        &self,
        changes: &[Change],
        watermarks: &[(String, i32, i64)],
        deadline: Instant,
    ) -> anyhow::Result<()> {
        self.producer
            .begin_transaction()
            .context("cannot begin a transaction")?;
        for change in changes {
            let (key, seq, value) = match change {
                Change::Put {
                    key,
                    value,
                    expires_ms,
                    seq,
                } => (key, *seq, Some(encode_put(*seq, *expires_ms, value))),
                Change::Delete { key, seq } => (key, *seq, None),
            };
            let key = format!("{STATE_PREFIX}{key}");
            let mut headers = self.headers();
            if value.is_none() {
                headers = headers.insert(Header {
                    key: SEQ_HEADER,
                    value: Some(seq.to_string().as_bytes()),
                });
            }
            self.send(&key, value.as_deref(), headers, deadline)?;
        }
        for (topic, partition, next) in watermarks {
            let key = watermark_key(topic, *partition);
            self.send(
                &key,
                Some(&encode_watermark(*next)),
                self.headers(),
                deadline,
            )?;
        }
        // rust-rdkafka's `commit_transaction` first flushes with polls of
        // 100 ms that run to their end even once the delivery reports are in
        // (`BaseProducer::poll` returns only at its deadline), so every
        // append took 100 ms. The reports are waited for here in steps of a
        // millisecond; the flush then finds nothing in flight.
        while self.producer.in_flight_count() > 0 && Instant::now() < deadline {
            self.producer.poll(Duration::from_millis(1));
        }
        let committed = self.producer.commit_transaction(remaining(deadline));
        if let Some(failure) = self.producer.context().take_failure() {
            bail!("the broker did not take a record: {failure}");
        }
        committed.map_err(|error| self.explain(error))
    }

    fn headers(&self) -> OwnedHeaders {
        OwnedHeaders::new()
            .insert(Header {
                key: HOST_HEADER,
                value: Some(host_id()),
            })
            .insert(Header {
                key: HANDLER_HEADER,
                value: Some(self.handler.as_str()),
            })
    }

    /// Queue one record, waiting for room in a full queue until `deadline`.
    fn send(
        &self,
        key: &str,
        value: Option<&[u8]>,
        headers: OwnedHeaders,
        deadline: Instant,
    ) -> anyhow::Result<()> {
        let mut record = BaseRecord::<str, [u8], ()>::with_opaque_to(&self.topic, ())
            .key(key)
            .headers(headers);
        if let Some(value) = value {
            record = record.payload(value);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if Instant::now() < deadline =>
                {
                    record = back;
                    self.producer.poll(Duration::from_millis(5));
                }
                Err((error, _)) => {
                    return Err(self.explain(error))
                        .with_context(|| format!("cannot queue record `{key}`"));
                }
            }
        }
    }

    /// `error`, with the last client error (such as a refused connection)
    /// when there is one.
    fn explain(&self, error: KafkaError) -> anyhow::Error {
        match self.producer.context().last_error() {
            Some(last) => anyhow!("{error} (last client error: {last})"),
            None => anyhow!("{error}"),
        }
    }

    /// Read every partition of the changelog from `since` (or its
    /// beginning) up to its end as of this call, and hand each committed
    /// record to `apply` in log order (per partition). An append under way
    /// before that end is waited for (twice the timeout at most, then what
    /// precedes it is returned); nothing written after it is. Returns the
    /// position to restore from next time. A record that does not decode, or
    /// holds another handler's state, is an error naming its partition and
    /// offset.
    pub fn restore(
        &self,
        since: Option<&ChangelogPosition>,
        mut apply: impl FnMut(Restored),
    ) -> anyhow::Result<ChangelogPosition> {
        self.read(since, &mut apply).with_context(|| {
            format!(
                "cannot restore handler `{}` from its changelog topic `{}` at {}",
                self.handler, self.topic, self.servers
            )
        })
    }

    fn read(
        &self,
        since: Option<&ChangelogPosition>,
        apply: &mut dyn FnMut(Restored),
    ) -> anyhow::Result<ChangelogPosition> {
        // The end of each partition as of now, appends under way included
        // (a read_committed client is told only where they begin). This
        // client also reads the metadata: the reading consumer, which
        // belongs to a group and so takes 100 ms to close, is made only when
        // there is something to read.
        let ends_client: BaseConsumer = client_config(&self.connection)
            .set("isolation.level", "read_uncommitted")
            .create()
            .context("cannot create a Kafka consumer")?;
        let metadata = ends_client
            .fetch_metadata(Some(&self.topic), self.timeout)
            .context("cannot read the topic's metadata")?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .find(|t| t.name() == self.topic)
            .map(|t| t.partitions().iter().map(|p| p.id()).collect())
            .unwrap_or_default();
        if partitions.is_empty() {
            bail!("the topic has no partitions (was it deleted?)");
        }

        // Per partition: where reading starts and the end as of now.
        let mut position = ChangelogPosition::default();
        let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
        let mut assignment = TopicPartitionList::new();
        for partition in partitions {
            let (low, high) = ends_client
                .fetch_watermarks(&self.topic, partition, self.timeout)
                .with_context(|| format!("cannot read the end offset of partition {partition}"))?;
            let start = match since.and_then(|s| s.next(partition)) {
                Some(next) if next > high => {
                    tracing::warn!(
                        topic = %self.topic, partition, next, end = high,
                        "the changelog ends before the position restored from (was the topic recreated?); reading it from the beginning"
                    );
                    low
                }
                Some(next) => next.max(low),
                None => low,
            };
            position.next.insert(partition, start);
            if start < high {
                ends.insert(partition, high);
                assignment
                    .add_partition_offset(&self.topic, partition, Offset::Offset(start))
                    .context("cannot assign a partition")?;
            }
        }
        if ends.is_empty() {
            return Ok(position);
        }
        let mut config = client_config(&self.connection);
        config
            // librdkafka wants a group even to assign; nothing joins it and
            // nothing is committed to it.
            .set(
                "group.id",
                format!("alerthost-changelog-restore-{}", host_id()),
            )
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            // Only what whole appends wrote: an append cut short is never
            // read.
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "earliest")
            // At the end the broker answers a fetch only after this long:
            // a restore with little to read should not wait 500 ms for it.
            .set("fetch.wait.max.ms", "20");
        let consumer: BaseConsumer = config.create().context("cannot create a Kafka consumer")?;
        consumer
            .assign(&assignment)
            .context("cannot assign the topic's partitions")?;

        // Partitions read up to an append still under way before their end:
        // it is waited for (it commits or is aborted, within the writer's
        // transaction timeout), so a restore does not stop short of what
        // another host wrote just before.
        let mut under_way: BTreeSet<i32> = BTreeSet::new();
        let open_wait = self.timeout * 2;
        let mut last_progress = Instant::now();
        while !ends.is_empty() {
            let Some(polled) = consumer.poll(Duration::from_millis(100)) else {
                let waited = last_progress.elapsed();
                if ends.keys().all(|p| under_way.contains(p)) {
                    if waited > open_wait {
                        // A writer with a longer transaction timeout than
                        // alerthost's: what follows its append is restored at
                        // the next start or assignment.
                        tracing::warn!(
                            topic = %self.topic,
                            handler = %self.handler,
                            partitions = ?ends.keys().collect::<Vec<_>>(),
                            "an append to the changelog is still under way after {}s; restoring what precedes it",
                            waited.as_secs()
                        );
                        break;
                    }
                } else if waited > self.timeout {
                    let stuck: Vec<String> = ends
                        .iter()
                        .map(|(p, end)| {
                            format!("partition {p} at offset {} of {end}", position.next[p])
                        })
                        .collect();
                    bail!(
                        "no progress within {}s ({})",
                        self.timeout.as_secs_f64(),
                        stuck.join(", ")
                    );
                }
                continue;
            };
            last_progress = Instant::now();
            let message = match polled {
                Ok(message) => message,
                Err(KafkaError::PartitionEOF(partition)) => {
                    // The end of what is committed so far: done, unless an
                    // append that began before the end is still under way.
                    let at = consumer.position().ok().and_then(|list| {
                        list.find_partition(&self.topic, partition)
                            .and_then(|e| e.offset().to_raw())
                    });
                    match (at, ends.get(&partition)) {
                        (Some(at), Some(end)) if at < *end => {
                            under_way.insert(partition);
                        }
                        (Some(at), _) => {
                            // Past the last transaction's marker too: the
                            // next restore starts at the end and reads nothing.
                            let next = position.next.entry(partition).or_insert(at);
                            *next = (*next).max(at);
                            ends.remove(&partition);
                        }
                        (None, _) => {
                            ends.remove(&partition);
                        }
                    }
                    continue;
                }
                Err(error) => return Err(error).context("cannot read the topic"),
            };
            let partition = message.partition();
            let offset = message.offset();
            under_way.remove(&partition);
            let Some(&end) = ends.get(&partition) else {
                continue;
            };
            if offset >= end {
                ends.remove(&partition);
                continue;
            }
            let restored = decode(&message, &self.handler).with_context(|| {
                format!(
                    "partition {partition} offset {offset} is not a changelog record of handler \
                     `{}` (a changelog is written only by alerthost; give each handler a topic of \
                     its own)",
                    self.handler
                )
            })?;
            apply(restored);
            position.next.insert(partition, offset + 1);
            if offset + 1 >= end {
                ends.remove(&partition);
            }
        }
        Ok(position)
    }
}

/// Time left until `deadline`, at least a millisecond.
fn remaining(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}

fn client_config(connection: &BTreeMap<String, String>) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (key, value) in connection {
        config.set(key, value);
    }
    config
}

/// The command that makes `topic` compacted.
fn fix_command(servers: &str, topic: &str) -> String {
    let servers = if servers.is_empty() {
        "BROKER"
    } else {
        servers
    };
    format!(
        "kafka-configs.sh --bootstrap-server {servers} --alter --entity-type topics \
         --entity-name {topic} --add-config cleanup.policy=compact"
    )
}

/// Check that `topic` exists with `cleanup.policy=compact`; create it so
/// when it does not exist.
fn ensure_compacted(
    connection: &BTreeMap<String, String>,
    topic: &str,
    handler: &str,
    servers: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(connection)
        // Asking about a missing topic must not create it with the broker's
        // default (delete) policy.
        .set("allow.auto.create.topics", "false")
        .create()
        .context("cannot create a Kafka admin client")?;
    let options = AdminOptions::new()
        .request_timeout(Some(timeout))
        .operation_timeout(Some(timeout));
    match cleanup_policy(&admin, &options, topic, timeout)? {
        Some(policy) => check_policy(&policy, topic, handler, servers),
        None => {
            let new = NewTopic::new(topic, 1, TopicReplication::Fixed(-1))
                .set("cleanup.policy", "compact");
            let created = futures::executor::block_on(admin.create_topics([&new], &options))
                .context("cannot create the topic")?;
            for result in created {
                match result {
                    Ok(_) => {
                        tracing::info!(
                            topic,
                            handler,
                            "created the changelog topic (compacted, 1 partition)"
                        );
                    }
                    // Another host created it first: check what it made.
                    Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                        let policy = cleanup_policy(&admin, &options, topic, timeout)?
                            .context("the topic was created and is gone again")?;
                        return check_policy(&policy, topic, handler, servers);
                    }
                    Err((_, code)) => bail!(
                        "cannot create the topic (compacted, 1 partition): {code}; create it with \
                         `kafka-topics.sh --bootstrap-server {servers} --create --topic {topic} \
                         --partitions 1 --config cleanup.policy=compact`"
                    ),
                }
            }
            wait_for_leaders(&admin, topic, timeout)
        }
    }
}

/// The topic's `cleanup.policy`, `None` when the topic does not exist.
fn cleanup_policy(
    admin: &AdminClient<DefaultClientContext>,
    options: &AdminOptions,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<Option<String>> {
    // The cluster describes a missing topic's configuration as the
    // defaults, so whether it exists comes from the metadata.
    let metadata = admin
        .inner()
        .fetch_metadata(Some(topic), timeout)
        .context("cannot read the topic's metadata")?;
    let exists = metadata.topics().iter().any(|t| {
        t.name() == topic
            && t.error().is_none_or(|e| {
                RDKafkaErrorCode::from(e) != RDKafkaErrorCode::UnknownTopicOrPartition
            })
    });
    if !exists {
        return Ok(None);
    }
    let described = futures::executor::block_on(
        admin.describe_configs([&ResourceSpecifier::Topic(topic)], options),
    )
    .context("cannot describe the topic's configuration")?;
    match described.into_iter().next() {
        Some(Ok(resource)) => Ok(Some(
            resource
                .get("cleanup.policy")
                .and_then(|entry| entry.value.clone())
                .unwrap_or_else(|| "delete".to_owned()),
        )),
        Some(Err(RDKafkaErrorCode::UnknownTopicOrPartition)) => Ok(None),
        Some(Err(code)) => bail!(
            "cannot describe the topic's configuration: {code} (the client needs DescribeConfigs \
             on the topic)"
        ),
        None => bail!("cannot describe the topic's configuration: the cluster gave no answer"),
    }
}

/// Only `compact` keeps every key's latest value for as long as the key
/// lives; `delete` (also in `compact,delete`) drops old state after the
/// topic's retention.
fn check_policy(policy: &str, topic: &str, handler: &str, servers: &str) -> anyhow::Result<()> {
    let policies: Vec<&str> = policy.split(',').map(str::trim).collect();
    if policies == ["compact"] {
        return Ok(());
    }
    bail!(
        "topic `{topic}`, the changelog of handler `{handler}`, has cleanup.policy={policy}: a \
         changelog must be compacted only, or Kafka deletes state after the topic's retention; \
         fix it with `{}` or name another topic in [handler.state] changelog",
        fix_command(servers, topic)
    )
}

/// Wait until every partition of a new topic has a leader, so the first
/// append does not race its creation.
fn wait_for_leaders(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let metadata = admin
            .inner()
            .fetch_metadata(Some(topic), remaining(deadline))
            .context("cannot read the new topic's metadata")?;
        let led = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .is_some_and(|t| {
                !t.partitions().is_empty() && t.partitions().iter().all(|p| p.leader() >= 0)
            });
        if led {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "the new topic has no leader after {}s",
                timeout.as_secs_f64()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn watermark_key(topic: &str, partition: i32) -> String {
    format!("{WATERMARK_PREFIX}{topic}/{partition}")
}

/// A put's value: version, sequence number (u64 big-endian), flags, the
/// expiry (i64 big-endian ms) when the flags say so, then the bytes.
fn encode_put(seq: u64, expires_ms: Option<i64>, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(18 + value.len());
    out.push(VERSION);
    out.extend_from_slice(&seq.to_be_bytes());
    match expires_ms {
        Some(at) => {
            out.push(HAS_EXPIRY);
            out.extend_from_slice(&at.to_be_bytes());
        }
        None => out.push(0),
    }
    out.extend_from_slice(value);
    out
}

/// A watermark's value: version, then the next offset (i64 big-endian).
fn encode_watermark(next: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(9);
    out.push(VERSION);
    out.extend_from_slice(&next.to_be_bytes());
    out
}

/// The header `name` of `message`, as text.
fn header<'a>(message: &'a impl rdkafka::Message, name: &str) -> anyhow::Result<Option<&'a str>> {
    let Some(headers) = message.headers() else {
        return Ok(None);
    };
    match headers.iter().find(|h| h.key == name).and_then(|h| h.value) {
        Some(value) => std::str::from_utf8(value)
            .map(Some)
            .map_err(|_| anyhow!("header `{name}` is not UTF-8")),
        None => Ok(None),
    }
}

/// Decode one record of `handler`'s changelog.
fn decode(message: &impl rdkafka::Message, handler: &str) -> anyhow::Result<Restored> {
    match header(message, HANDLER_HEADER)? {
        Some(writer) if writer == handler => {}
        Some(writer) => bail!("it holds the state of handler `{writer}`"),
        None => bail!("it has no `{HANDLER_HEADER}` header"),
    }
    let key = message.key().context("it has no key")?;
    let key = std::str::from_utf8(key).map_err(|_| anyhow!("its key is not UTF-8"))?;
    decode_record(key, message.payload(), header(message, SEQ_HEADER)?)
}

/// Decode a record from its key, value and `alerthost.seq` header.
fn decode_record(
    key: &str,
    value: Option<&[u8]>,
    seq_header: Option<&str>,
) -> anyhow::Result<Restored> {
    if let Some(key) = key.strip_prefix(STATE_PREFIX) {
        let key = key.to_owned();
        let Some(value) = value else {
            let seq = seq_header
                .context("a tombstone without an `alerthost.seq` header")?
                .parse()
                .map_err(|_| anyhow!("a tombstone whose `alerthost.seq` is not a number"))?;
            return Ok(Restored::Change(Change::Delete { key, seq }));
        };
        let (seq, rest) = versioned(value)?
            .split_first_chunk::<8>()
            .context("a state value shorter than its sequence number")?;
        let seq = u64::from_be_bytes(*seq);
        let (&flags, rest) = rest
            .split_first()
            .context("a state value without its flags")?;
        let (expires_ms, bytes) = match flags {
            0 => (None, rest),
            HAS_EXPIRY => {
                let (at, bytes) = rest
                    .split_first_chunk::<8>()
                    .context("a state value shorter than its expiry")?;
                (Some(i64::from_be_bytes(*at)), bytes)
            }
            other => bail!("a state value with unknown flags {other:#04x}"),
        };
        return Ok(Restored::Change(Change::Put {
            key,
            value: bytes.to_vec(),
            expires_ms,
            seq,
        }));
    }
    if let Some(rest) = key.strip_prefix(WATERMARK_PREFIX) {
        let (topic, partition) = rest
            .rsplit_once('/')
            .context("a watermark key without a partition")?;
        let partition = partition
            .parse()
            .map_err(|_| anyhow!("a watermark key whose partition is not a number"))?;
        let value = value.context("a watermark without a value")?;
        let next = versioned(value)?;
        let next: [u8; 8] = next
            .try_into()
            .map_err(|_| anyhow!("a watermark value of {} bytes, not 9", value.len()))?;
        return Ok(Restored::Watermark {
            topic: topic.to_owned(),
            partition,
            next: i64::from_be_bytes(next),
        });
    }
    bail!("its key starts with neither `{STATE_PREFIX}` nor `{WATERMARK_PREFIX}`")
}

/// The rest of `value` after its version byte, which must be [`VERSION`].
fn versioned(value: &[u8]) -> anyhow::Result<&[u8]> {
    match value.split_first() {
        Some((&VERSION, rest)) => Ok(rest),
        Some((other, _)) => bail!(
            "a value of encoding version {other} (this alerthost reads version {VERSION}; was \
             the changelog written by a newer alerthost?)"
        ),
        None => bail!("an empty value"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(change: Change) {
        let (key, value, seq) = match &change {
            Change::Put {
                key,
                value,
                expires_ms,
                seq,
            } => (key, Some(encode_put(*seq, *expires_ms, value)), None),
            Change::Delete { key, seq } => (key, None, Some(seq.to_string())),
        };
        let decoded = decode_record(
            &format!("{STATE_PREFIX}{key}"),
            value.as_deref(),
            seq.as_deref(),
        )
        .expect("a record that decodes");
        assert_eq!(decoded, Restored::Change(change));
    }

    #[test]
    fn changes_decode_to_what_was_encoded() {
        round_trip(Change::Put {
            key: "event/bn251204".into(),
            value: b"\x00\xffradius=0.5".to_vec(),
            expires_ms: Some(1_764_806_400_000),
            seq: u64::MAX,
        });
        round_trip(Change::Put {
            key: "".into(),
            value: Vec::new(),
            expires_ms: None,
            seq: 0,
        });
        round_trip(Change::Put {
            key: "negative expiry".into(),
            value: vec![7; 70_000],
            expires_ms: Some(-5),
            seq: 3,
        });
        round_trip(Change::Delete {
            key: "s/w/slashes/and ünicode".into(),
            seq: 42,
        });
    }

    #[test]
    fn watermarks_decode_with_topics_holding_dots_and_dashes() {
        let key = watermark_key("gcn.classic.voevent.FERMI_GBM-ALERT", 17);
        let decoded =
            decode_record(&key, Some(&encode_watermark(1_234_567)), None).expect("a watermark");
        assert_eq!(
            decoded,
            Restored::Watermark {
                topic: "gcn.classic.voevent.FERMI_GBM-ALERT".into(),
                partition: 17,
                next: 1_234_567
            }
        );
    }

    #[test]
    fn foreign_records_are_refused_with_the_reason() {
        // key, value, `alerthost.seq` header, what the error says
        type Case = (
            &'static str,
            Option<&'static [u8]>,
            Option<&'static str>,
            &'static str,
        );
        let cases: [Case; 9] = [
            ("other", Some(b"x"), None, "neither `s/` nor `w/`"),
            ("s/k", Some(b""), None, "an empty value"),
            ("s/k", Some(b"\x02rest"), None, "encoding version 2"),
            (
                "s/k",
                Some(b"\x01short"),
                None,
                "shorter than its sequence number",
            ),
            (
                "s/k",
                Some(b"\x01\0\0\0\0\0\0\0\x01\x05"),
                None,
                "unknown flags 0x05",
            ),
            (
                "s/k",
                Some(b"\x01\0\0\0\0\0\0\0\x01\x01\0"),
                None,
                "shorter than its expiry",
            ),
            ("s/k", None, None, "without an `alerthost.seq` header"),
            (
                "w/topic",
                Some(b"\x01\0\0\0\0\0\0\0\x01"),
                None,
                "without a partition",
            ),
            ("w/topic/0", Some(b"\x01\0\0\x01"), None, "4 bytes, not 9"),
        ];
        for (key, value, seq, expected) in cases {
            let error = decode_record(key, value, seq).expect_err(key);
            assert!(
                error.to_string().contains(expected),
                "{key:?} {value:?}: {error} should say {expected:?}"
            );
        }
    }

    #[test]
    fn only_a_compact_only_policy_is_accepted_and_the_fix_is_named() {
        check_policy("compact", "t", "h", "k:9092").expect("compact");
        for policy in ["delete", "compact,delete", "delete, compact"] {
            let error = check_policy(policy, "state-t", "first-notice", "k:9092")
                .expect_err(policy)
                .to_string();
            for needed in [
                "`state-t`",
                "`first-notice`",
                "kafka-configs.sh --bootstrap-server k:9092 --alter --entity-type topics \
                 --entity-name state-t --add-config cleanup.policy=compact",
            ] {
                assert!(error.contains(needed), "{error} should name {needed}");
            }
        }
    }

    #[test]
    fn host_id_names_this_process() {
        assert!(host_id().contains(&format!("-{}-", std::process::id())));
        assert_eq!(host_id(), host_id());
    }
}
