//! Test guest `sleepy-run`: a message whose value starts with `sleep` makes it
//! sleep for the parameter `ms` milliseconds (default 30 000) with
//! `std::thread::sleep`, which WASI carries out as a clock subscription and a
//! blocking poll in the host, not in wasm code: only a deadline that also
//! bounds host calls ends it. Any other message is saved.

use std::time::Duration;

use alerthost_guest::{Action, Handler, HandlerError, Message, Params};

struct SleepyRun {
    sleep: Duration,
}

impl Handler for SleepyRun {
    fn init(params: &Params) -> Result<Self, String> {
        Ok(SleepyRun {
            sleep: Duration::from_millis(params.parse_or("ms", 30_000)?),
        })
    }

    fn handle(&mut self, msg: &Message) -> Result<Vec<Action>, HandlerError> {
        if msg.value.starts_with(b"sleep") {
            std::thread::sleep(self.sleep);
        }
        Ok(vec![Action::save()])
    }
}

alerthost_guest::export_handler!(SleepyRun);
