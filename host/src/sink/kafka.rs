//! The Kafka sink: an idempotent producer with acks=all. A forward (or a
//! dead letter) holds its message's token until the delivery report says the
//! broker has it; a failed delivery fails the token, which halts the host
//! without committing the message.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer,
};
use rdkafka::types::RDKafkaErrorCode;

use super::{OnRefused, Record, Refused};
use crate::commit::Ack;
use crate::shutdown::{Fatal, Shutdown};
use crate::telemetry::Metrics;

/// How long a record may wait for room in a full producer queue once the
/// host is stopping; it is then left uncommitted.
const QUEUE_FULL_WAIT_STOPPING: Duration = Duration::from_secs(2);

/// What a queued record carries to its delivery report.
pub struct Delivery {
    ack: Ack,
    on_refused: Option<OnRefused>,
    /// When the record was handed over, for the sink's latency.
    since: Instant,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("ack", &self.ack)
            .finish_non_exhaustive()
    }
}

/// Whether the broker refused a record for what it holds (its size, its
/// form), which is the handler's doing, not the cluster's.
fn refused_for_content(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::MessageBatchTooLarge
        )
    )
}

/// Delivery reports complete (or fail) the tokens they carry.
#[derive(Debug)]
pub struct DeliveryContext {
    sink: Arc<str>,
    metrics: Metrics,
}

impl ClientContext for DeliveryContext {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(sink = %self.sink, %error, reason, "kafka sink client error");
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Delivery>;

    fn delivery(&self, result: &DeliveryResult<'_>, delivery: Self::DeliveryOpaque) {
        let Delivery {
            ack,
            on_refused,
            since,
        } = *delivery;
        self.metrics
            .sink_write(&self.sink, since.elapsed(), result.is_ok());
        match (result, on_refused) {
            (Ok(_), _) => drop(ack),
            (Err((error, _)), Some(on_refused)) if refused_for_content(error) => on_refused(
                Refused {
                    sink: self.sink.to_string(),
                    reason: format!("the broker refused the record: {error}"),
                },
                ack,
            ),
            (Err((error, _)), _) => {
                let at = ack.describe();
                ack.fail(Fatal::Sink {
                    sink: self.sink.to_string(),
                    at,
                    reason: format!("the broker did not take the record: {error}"),
                });
            }
        }
    }
}

/// A producer for one sink.
pub struct KafkaSink {
    name: Arc<str>,
    topic: String,
    producer: ThreadedProducer<DeliveryContext>,
    shutdown: Arc<Shutdown>,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("name", &self.name)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// Properties of the source that say how to reach and authenticate to its
/// cluster; a sink on the source's cluster inherits them.
pub fn connection_properties(source: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    source
        .iter()
        .filter(|(key, _)| {
            key.as_str() == "bootstrap.servers"
                || ["security.", "sasl.", "ssl.", "socket.", "broker."]
                    .iter()
                    .any(|prefix| key.starts_with(prefix))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The host's default for a sink producer's `linger.ms`: how long a record
/// waits for others to share its request. Every ms of it is added to each
/// forward's latency; under load, records batch anyway while earlier
/// requests are in flight.
pub const SINK_LINGER_MS: &str = "0";

/// A sink producer's configuration: the host's defaults, then `properties`
/// (which may change them), then the delivery guarantees, which they may
/// not weaken.
fn producer_config(properties: &BTreeMap<String, String>, queue_kib: u64) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("queue.buffering.max.kbytes", queue_kib.max(1).to_string())
        .set("linger.ms", SINK_LINGER_MS);
    for (key, value) in properties {
        config.set(key, value);
    }
    config.set("acks", "all").set("enable.idempotence", "true");
    config
}

impl KafkaSink {
    /// A producer for sink `name` writing to `topic` with `properties`.
    /// `queue_kib` bounds the producer's local queue unless the properties
    /// set `queue.buffering.max.kbytes`.
    pub fn new(
        name: &str,
        topic: &str,
        properties: &BTreeMap<String, String>,
        queue_kib: u64,
        shutdown: Arc<Shutdown>,
        metrics: Metrics,
    ) -> anyhow::Result<Self> {
        let name: Arc<str> = name.into();
        let producer = producer_config(properties, queue_kib)
            .create_with_context(DeliveryContext {
                sink: Arc::clone(&name),
                metrics,
            })
            .with_context(|| format!("cannot create the producer of sink `{name}`"))?;
        Ok(KafkaSink {
            name,
            topic: topic.to_owned(),
            producer,
            shutdown,
        })
    }

    /// The sink's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Queue `record`; `ack` is dropped by its delivery report. A record the
    /// producer refuses for its size is refused; a producer that cannot
    /// queue at all fails the token.
    pub fn deliver(&self, record: Record<'_>, ack: Ack) -> Result<(), Refused> {
        let (key, value, headers, on_refused) = match record {
            Record::Forward {
                key,
                value,
                headers,
                on_refused,
                ..
            } => (key, value, headers, on_refused),
            Record::DeadLetter {
                origin, headers, ..
            } => (
                origin.msg.key.as_deref(),
                origin.msg.value.as_slice(),
                headers,
                None,
            ),
            Record::Save { .. } => {
                return Err(self.refused("a kafka sink takes forwards, not saves".into()));
            }
        };
        let mut kafka_headers = OwnedHeaders::new_with_capacity(headers.len());
        for (name, value) in headers {
            kafka_headers = kafka_headers.insert(KafkaHeader {
                key: name,
                value: *value,
            });
        }
        let mut base = BaseRecord::with_opaque_to(
            &self.topic,
            Box::new(Delivery {
                ack,
                on_refused,
                since: Instant::now(),
            }),
        )
        .payload(value)
        .headers(kafka_headers);
        if let Some(key) = key {
            base = base.key(key);
        }
        let mut full_since: Option<Instant> = None;
        loop {
            match self.producer.send(base) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // The local queue is full: wait for deliveries to drain
                    // it, but not past a stop.
                    let since = *full_since.get_or_insert_with(Instant::now);
                    if self.shutdown.stopping() && since.elapsed() > QUEUE_FULL_WAIT_STOPPING {
                        back.delivery_opaque.ack.abandon();
                        return Ok(());
                    }
                    base = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((
                    KafkaError::MessageProduction(
                        code @ (RDKafkaErrorCode::MessageSizeTooLarge
                        | RDKafkaErrorCode::InvalidMessageSize),
                    ),
                    back,
                )) => {
                    drop(back.delivery_opaque);
                    return Err(self.refused(format!(
                        "the record ({} bytes of value, {} headers) is too large for topic {}: {code}",
                        value.len(),
                        headers.len(),
                        self.topic
                    )));
                }
                Err((error, back)) => {
                    let ack = back.delivery_opaque.ack;
                    let at = ack.describe();
                    ack.fail(Fatal::Sink {
                        sink: self.name.to_string(),
                        at,
                        reason: format!("cannot queue a record for topic {}: {error}", self.topic),
                    });
                    return Ok(());
                }
            }
        }
    }

    fn refused(&self, reason: String) -> Refused {
        Refused {
            sink: self.name.to_string(),
            reason,
        }
    }

    /// Wait up to `timeout` for queued records to be delivered.
    pub fn flush(&self, timeout: Duration) -> anyhow::Result<()> {
        self.producer.flush(timeout).with_context(|| {
            format!(
                "sink `{}` could not deliver everything in {timeout:?}",
                self.name
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_of(properties: &[(&str, &str)]) -> ClientConfig {
        let properties = properties
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        producer_config(&properties, 1024)
    }

    #[test]
    fn a_sink_s_own_linger_and_queue_bound_are_kept() {
        let config = config_of(&[("linger.ms", "20"), ("queue.buffering.max.kbytes", "64")]);
        assert_eq!(config.get("linger.ms"), Some("20"));
        assert_eq!(config.get("queue.buffering.max.kbytes"), Some("64"));
        let defaults = config_of(&[]);
        assert_eq!(defaults.get("linger.ms"), Some(SINK_LINGER_MS));
        assert_eq!(defaults.get("queue.buffering.max.kbytes"), Some("1024"));
    }

    #[test]
    fn a_sink_cannot_weaken_the_delivery_guarantees() {
        let config = config_of(&[("acks", "1"), ("enable.idempotence", "false")]);
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(config.get("enable.idempotence"), Some("true"));
    }
}
