//! Test guest `poison`: forwards every message unchanged to the sink named by
//! the parameter `sink` (default `out`), except a message whose value starts
//! with the parameter `prefix` (default `poison`), which fails the way the
//! parameter `fail` says:
//!
//! - `trap` (default): a panic, which traps the instance;
//! - `bad-record`: a `bad-record` handler error;
//! - `transient-once`: a `transient` handler error the first time this
//!   instance sees the message's offset, and a forward the second time, so a
//!   retry succeeds only if the instance (and its memory) survives a handler
//!   error.

use std::collections::HashSet;

use alerthost_guest::{Action, Handler, HandlerError, Message, Params};

enum Fail {
    Trap,
    BadRecord,
    TransientOnce,
}

struct Poison {
    sink: String,
    prefix: Vec<u8>,
    fail: Fail,
    seen: HashSet<(i32, i64)>,
}

impl Handler for Poison {
    fn init(params: &Params) -> Result<Self, String> {
        let fail = match params.get("fail").unwrap_or("trap") {
            "trap" => Fail::Trap,
            "bad-record" => Fail::BadRecord,
            "transient-once" => Fail::TransientOnce,
            other => {
                return Err(format!(
                    "parameter `fail` = {other:?}: use trap, bad-record or transient-once"
                ));
            }
        };
        Ok(Poison {
            sink: params.get("sink").unwrap_or("out").to_owned(),
            prefix: params.get("prefix").unwrap_or("poison").as_bytes().to_vec(),
            fail,
            seen: HashSet::new(),
        })
    }

    fn handle(&mut self, msg: &Message) -> Result<Vec<Action>, HandlerError> {
        if msg.value.starts_with(&self.prefix) {
            let at = format!("{}[{}]@{}", msg.topic, msg.partition, msg.offset);
            match self.fail {
                Fail::Trap => panic!("poison message at {at}"),
                Fail::BadRecord => {
                    return Err(HandlerError::bad_record(format!("poison message at {at}")));
                }
                Fail::TransientOnce => {
                    if self.seen.insert((msg.partition, msg.offset)) {
                        return Err(HandlerError::transient(format!(
                            "first attempt at {at} fails"
                        )));
                    }
                }
            }
        }
        Ok(vec![Action::forward(self.sink.clone())])
    }
}

alerthost_guest::export_handler!(Poison);
