//! Test guest `slow-init`: `init` logs `init starting`, spins for `spin_ms`
//! milliseconds (a parameter, default 0) and logs `init done`; a message whose
//! value starts with `panic` panics (so the instance must be replaced, and
//! the replacement runs the slow `init` again); any other message is saved.

use std::time::{Duration, Instant};

use alerthost_guest::{Action, Handler, HandlerError, Message, Params};

struct SlowInit;

impl Handler for SlowInit {
    fn init(params: &Params) -> Result<Self, String> {
        alerthost_guest::info("init starting");
        let spin = Duration::from_millis(params.parse_or("spin_ms", 0)?);
        let started = Instant::now();
        while started.elapsed() < spin {
            std::hint::black_box(());
        }
        alerthost_guest::info("init done");
        Ok(SlowInit)
    }

    fn handle(&mut self, msg: &Message) -> Result<Vec<Action>, HandlerError> {
        if msg.value.starts_with(b"panic") {
            panic!("slow-init was asked to panic");
        }
        Ok(vec![Action::save()])
    }
}

alerthost_guest::export_handler!(SlowInit);
