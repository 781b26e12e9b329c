//! The stdout sink: one JSON line per forward or dead letter. Standard
//! output is not durable (a pipe's reader may not have read a line when
//! the offset is committed), but write errors count: a closed pipe (`EPIPE`
//! under `| head`) or a full disk (`ENOSPC`) halts the host without
//! committing the message.

use std::io::Write as _;

use serde_json::json;

use super::{Record, Refused, dead_letter_json, text_or_base64};
use crate::commit::Ack;
use crate::shutdown::Fatal;

/// JSON lines on standard output.
#[derive(Debug)]
pub struct StdoutSink {
    name: String,
}

impl StdoutSink {
    /// The stdout sink called `name`.
    pub fn new(name: &str) -> Self {
        StdoutSink {
            name: name.to_owned(),
        }
    }

    /// Write `record` as one line and flush; `ack` is dropped once written.
    pub fn deliver(&self, record: &Record<'_>, ack: Ack) -> Result<(), Refused> {
        let origin = record.origin();
        let msg = origin.msg;
        let line = match record {
            Record::Forward { key, value, .. } => json!({
                "sink": self.name,
                "handler": origin.handler,
                "version": origin.version,
                "topic": msg.topic,
                "partition": msg.partition,
                "offset": msg.offset,
                "key": key.map(text_or_base64),
                "value": text_or_base64(value),
            }),
            Record::DeadLetter { failure, .. } => {
                let mut line = dead_letter_json(origin, failure);
                line["dead_letter"] = json!(true);
                line["value"] = text_or_base64(&msg.value);
                line
            }
            Record::Save { .. } => {
                return Err(Refused {
                    sink: self.name.clone(),
                    reason: "a stdout sink takes forwards, not saves".into(),
                });
            }
        };
        let mut out = std::io::stdout().lock();
        match writeln!(out, "{line}").and_then(|()| out.flush()) {
            Ok(()) => drop(ack),
            Err(error) => ack.fail(Fatal::Sink {
                sink: self.name.clone(),
                at: origin.at(),
                reason: format!("cannot write to standard output: {error}"),
            }),
        }
        Ok(())
    }
}
