//! The Kafka sink: an idempotent producer with acks=all. A forward counts as
//! durable only when its delivery report says the broker has it; until then
//! the source offset holds a pending mark in the commit tracker.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer,
};

use crate::pipeline::Shared;

/// What the delivery report completes: a hold on a source message.
#[derive(Debug)]
pub struct Delivery {
    /// The source topic and partition.
    pub tp: crate::commit::TopicPartition,
    /// The source offset.
    pub offset: i64,
    /// Sink name, for errors.
    pub sink: Arc<str>,
}

/// Delivery reports release holds in the commit tracker.
#[derive(Debug)]
pub struct DeliveryContext {
    shared: Arc<Shared>,
}

impl ClientContext for DeliveryContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "kafka sink client error");
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Delivery>;

    fn delivery(&self, result: &DeliveryResult<'_>, delivery: Self::DeliveryOpaque) {
        match result {
            Ok(_) => self.shared.commits.release(&delivery.tp, delivery.offset),
            Err((error, _)) => self.shared.fail(format!(
                "forward of {}[{}]@{} to sink `{}` failed: {error}; it is not committed and will be delivered again",
                delivery.tp.0, delivery.tp.1, delivery.offset, delivery.sink
            )),
        }
    }
}

/// A producer for one sink.
pub struct KafkaSink {
    name: Arc<str>,
    topic: String,
    producer: ThreadedProducer<DeliveryContext>,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("name", &self.name)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// A record to produce.
#[derive(Debug)]
pub struct Record<'a> {
    /// Key, if any.
    pub key: Option<&'a [u8]>,
    /// Value.
    pub value: &'a [u8],
    /// Headers, in order.
    pub headers: Vec<(&'a str, Option<&'a [u8]>)>,
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

impl KafkaSink {
    /// A producer for sink `name` writing to `topic` with `properties`.
    pub fn new(
        name: &str,
        topic: &str,
        properties: &BTreeMap<String, String>,
        shared: Arc<Shared>,
    ) -> anyhow::Result<Self> {
        let mut config = ClientConfig::new();
        for (key, value) in properties {
            config.set(key, value);
        }
        config
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "5");
        let producer = config
            .create_with_context(DeliveryContext { shared })
            .with_context(|| format!("cannot create the producer of sink `{name}`"))?;
        Ok(KafkaSink {
            name: name.into(),
            topic: topic.to_owned(),
            producer,
        })
    }

    /// The sink's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Queue a record; `delivery` is released by the delivery report.
    pub fn send(&self, record: &Record<'_>, delivery: Box<Delivery>) -> anyhow::Result<()> {
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (key, value) in &record.headers {
            headers = headers.insert(KafkaHeader { key, value: *value });
        }
        let mut base = BaseRecord::with_opaque_to(&self.topic, delivery)
            .payload(record.value)
            .headers(headers);
        if let Some(key) = record.key {
            base = base.key(key);
        }
        loop {
            match self.producer.send(base) {
                Ok(()) => return Ok(()),
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    back,
                )) => {
                    // The local queue is full: wait for deliveries to drain it.
                    base = back;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err((error, _)) => {
                    return Err(error).with_context(|| {
                        format!(
                            "cannot queue a record for sink `{}` (topic {})",
                            self.name, self.topic
                        )
                    });
                }
            }
        }
    }

    /// Wait for queued records to be delivered.
    pub fn flush(&self, timeout: Duration) -> anyhow::Result<()> {
        self.producer.flush(timeout).with_context(|| {
            format!(
                "sink `{}` could not deliver everything in {timeout:?}",
                self.name
            )
        })
    }
}
