//! Test guest `sleepy`: blocks in host calls, where epoch interruption cannot
//! reach it.
//!
//! - parameter `sleep = init`: `init` sleeps for an hour;
//! - `sleep`: `handle` sleeps for an hour, then saves the message;
//! - `nap-loop`: `handle` sleeps for a second, over and over, forever;
//! - anything else is saved.

use std::time::Duration;

use alerthost_guest::{Action, Handler, HandlerError, Message, Params};

struct Sleepy;

const AN_HOUR: Duration = Duration::from_secs(3600);

impl Handler for Sleepy {
    fn init(params: &Params) -> Result<Self, String> {
        if params.get("sleep") == Some("init") {
            std::thread::sleep(AN_HOUR);
        }
        Ok(Sleepy)
    }

    fn handle(&mut self, msg: &Message) -> Result<Vec<Action>, HandlerError> {
        if msg.value.starts_with(b"sleep") {
            std::thread::sleep(AN_HOUR);
        }
        if msg.value.starts_with(b"nap-loop") {
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        Ok(vec![Action::save()])
    }
}

alerthost_guest::export_handler!(Sleepy);
