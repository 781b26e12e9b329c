//! Sinks carry out what handlers decide. Each has one entry point,
//! [`Sink::deliver`]`(record, ack)`: the sink makes the record durable in its
//! own way and drops the [`Ack`] when it is (a file after its group fsync, a
//! Kafka record after its delivery report, a stdout line once written).
//!
//! Two kinds of failure, kept apart on purpose:
//! - [`Refused`]: the handler's output cannot be written as asked (a save
//!   that would replace another message's file, a record over the
//!   producer's size limit). That is a handler failure, under its policy.
//! - infrastructure failures (disk full, broker gone, stdout closed): the
//!   sink fails the token ([`Ack::fail`]), which halts the host without
//!   committing the message.

mod file;
pub mod kafka;
mod stdout;

use base64::Engine as _;
use serde_json::json;

pub use file::{FileSink, default_name, sanitize_name};
pub use kafka::KafkaSink;
pub use stdout::StdoutSink;

use crate::bindings::{Message, TimestampKind};
use crate::commit::Ack;
use crate::runtime::HandlerFailure;

/// A sink, ready to use.
#[derive(Debug)]
pub enum Sink {
    /// Files in a directory.
    File(FileSink),
    /// A Kafka topic.
    Kafka(KafkaSink),
    /// JSON lines on standard output.
    Stdout(StdoutSink),
}

/// Where a record comes from: the source message and the handler version
/// that decided.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// The handler's name.
    pub handler: &'a str,
    /// Its version.
    pub version: &'a str,
    /// The source message.
    pub msg: &'a Message,
}

impl Origin<'_> {
    /// `topic[partition]@offset`.
    pub fn at(&self) -> String {
        format!(
            "{}[{}]@{}",
            self.msg.topic, self.msg.partition, self.msg.offset
        )
    }
}

/// Applies the handler's error policy to a record a sink refused after
/// `deliver` returned, with the message's token.
pub type OnRefused = Box<dyn FnOnce(Refused, Ack) + Send + Sync>;

/// What a sink is asked to write.
pub enum Record<'a> {
    /// A `save` action: `value` under the hint's name, or the default name
    /// with `index` (the save's rank among the decision's unnamed saves).
    Save {
        /// Where it comes from.
        origin: Origin<'a>,
        /// The guest's name hint, unsanitized.
        hint: Option<&'a str>,
        /// Rank among the decision's saves without a hint (0 for the first).
        index: usize,
        /// The bytes to save.
        value: &'a [u8],
    },
    /// A `forward` action, headers final (guest `alerthost.*` headers
    /// stripped, provenance added).
    Forward {
        /// What to do if the sink refuses the record only after `deliver`
        /// returned (a broker refusing it in its delivery report).
        on_refused: Option<OnRefused>,
        /// Where it comes from.
        origin: Origin<'a>,
        /// Key.
        key: Option<&'a [u8]>,
        /// Value.
        value: &'a [u8],
        /// Headers, in order.
        headers: &'a [(&'a str, Option<&'a [u8]>)],
    },
    /// A message its handler failed on, with why.
    DeadLetter {
        /// Where it comes from.
        origin: Origin<'a>,
        /// Why the handler failed.
        failure: &'a HandlerFailure,
        /// Provenance and error headers, for sinks that carry headers.
        headers: &'a [(&'a str, Option<&'a [u8]>)],
    },
}

impl std::fmt::Debug for Record<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            Record::Save { .. } => "save",
            Record::Forward { .. } => "forward",
            Record::DeadLetter { .. } => "dead letter",
        };
        f.debug_struct("Record")
            .field("kind", &kind)
            .field("origin", self.origin())
            .finish_non_exhaustive()
    }
}

impl<'a> Record<'a> {
    /// Where the record comes from.
    pub fn origin(&self) -> &Origin<'a> {
        match self {
            Record::Save { origin, .. }
            | Record::Forward { origin, .. }
            | Record::DeadLetter { origin, .. } => origin,
        }
    }
}

/// A sink refused a record because of what the handler asked for; a handler
/// failure under its `on_error` policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sink `{sink}` refused the output: {reason}")]
pub struct Refused {
    /// The sink.
    pub sink: String,
    /// Why.
    pub reason: String,
}

impl Sink {
    /// Make `record` durable; `ack` is dropped once it is, or failed when the
    /// sink cannot go on.
    pub fn deliver(&self, record: Record<'_>, ack: Ack) -> Result<(), Refused> {
        match self {
            Sink::File(sink) => sink.deliver(&record, ack),
            Sink::Kafka(sink) => sink.deliver(record, ack),
            Sink::Stdout(sink) => sink.deliver(&record, ack),
        }
    }
}

/// Most bytes of a handler's error text the host keeps (in logs, dead-letter
/// records and headers); the rest is cut, and the cut is said.
pub const MAX_ERROR_TEXT: usize = 4096;

/// `text` cut to [`MAX_ERROR_TEXT`] bytes (at a character boundary), with a
/// note of how much was cut.
pub fn cut_error_text(mut text: String) -> String {
    if text.len() > MAX_ERROR_TEXT {
        let mut end = MAX_ERROR_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let cut = text.len() - end;
        text.truncate(end);
        text.push_str(&format!(" [{cut} more bytes cut]"));
    }
    text
}

/// Text as a JSON string, other bytes as `{"base64": ...}`.
pub fn text_or_base64(bytes: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => json!(text),
        Err(_) => json!({ "base64": base64::engine::general_purpose::STANDARD.encode(bytes) }),
    }
}

/// The dead-letter record of a failed message: handler, version, error,
/// time and the message's metadata (the value is stored beside it or added
/// by the sink).
pub fn dead_letter_json(origin: &Origin<'_>, failure: &HandlerFailure) -> serde_json::Value {
    let msg = origin.msg;
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    json!({
        "handler": origin.handler,
        "version": origin.version,
        "error": { "kind": failure.kind, "text": failure.text },
        "time": now,
        "topic": msg.topic,
        "partition": msg.partition,
        "offset": msg.offset,
        "timestamp": msg.timestamp.map(|t| t.millis),
        "timestamp_kind": msg.timestamp.map(|t| match t.kind { TimestampKind::CreateTime => "create-time", TimestampKind::LogAppendTime => "log-append-time" }),
        "key": msg.key.as_deref().map(text_or_base64),
        "headers": msg.headers.iter().map(|h| json!({ "name": h.name, "value": h.value.as_deref().map(text_or_base64) })).collect::<Vec<_>>(),
    })
}
