//! Test guest `big-forward`: forwards every message unchanged to the sink
//! named by the parameter `sink` (default `out`), except:
//!
//! - a value starting with `big` is forwarded as a value of `bytes` bytes
//!   (parameter, default 2 MiB), more than a producer sends by default;
//! - a value starting with `loud` fails with a `bad-record` error whose text
//!   is `bytes` bytes long, so its dead letter carries a huge header.

use alerthost_guest::{Action, Handler, HandlerError, Message, Params};

struct BigForward {
    sink: String,
    bytes: usize,
}

impl Handler for BigForward {
    fn init(params: &Params) -> Result<Self, String> {
        Ok(BigForward {
            sink: params.get("sink").unwrap_or("out").to_owned(),
            bytes: params.parse_or("bytes", 2 << 20)?,
        })
    }

    fn handle(&mut self, msg: &Message) -> Result<Vec<Action>, HandlerError> {
        if msg.value.starts_with(b"loud") {
            return Err(HandlerError::bad_record("x".repeat(self.bytes)));
        }
        let forward = Action::forward(self.sink.clone());
        if msg.value.starts_with(b"big") {
            return Ok(vec![forward.with_value(vec![b'b'; self.bytes])]);
        }
        Ok(vec![forward])
    }
}

alerthost_guest::export_handler!(BigForward);
