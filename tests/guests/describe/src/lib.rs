//! Test guest `describe`: saves, for every message, one line describing it as
//! the guest received it, so a test compares what was produced to Kafka with
//! what reached the handler:
//!
//! `TOPIC PARTITION OFFSET TIMESTAMP key=KEY value=VALUE headers=NAME:VALUE,...`
//!
//! `TIMESTAMP` is `create:MILLIS`, `append:MILLIS` or `none`; `KEY`, `VALUE`
//! and each header `VALUE` are hex, or `null` when absent; header names are
//! printed as received.

use std::fmt::Write as _;

use alerthost_guest::{Action, Handler, HandlerError, Message, Params, TimestampKind};

struct Describe;

fn hex(bytes: Option<&[u8]>) -> String {
    match bytes {
        None => "null".to_owned(),
        Some(bytes) => bytes.iter().fold(String::new(), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        }),
    }
}

impl Handler for Describe {
    fn init(_params: &Params) -> Result<Self, String> {
        Ok(Describe)
    }

    fn handle(&mut self, msg: &Message) -> Result<Vec<Action>, HandlerError> {
        let timestamp = match &msg.timestamp {
            None => "none".to_owned(),
            Some(t) => match t.kind {
                TimestampKind::CreateTime => format!("create:{}", t.millis),
                TimestampKind::LogAppendTime => format!("append:{}", t.millis),
            },
        };
        let headers: Vec<String> = msg
            .headers
            .iter()
            .map(|h| format!("{}:{}", h.name, hex(h.value.as_deref())))
            .collect();
        let line = format!(
            "{} {} {} {timestamp} key={} value={} headers={}",
            msg.topic,
            msg.partition,
            msg.offset,
            hex(msg.key.as_deref()),
            hex(Some(&msg.value)),
            headers.join(","),
        );
        Ok(vec![Action::save().with_value(line)])
    }
}

alerthost_guest::export_handler!(Describe);
