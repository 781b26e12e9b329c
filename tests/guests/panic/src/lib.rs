//! Test guest `panic`: a message whose value starts with `panic` makes it panic,
//! which traps the instance. Any other message is saved.

use alerthost_guest::{Action, Handler, HandlerError, Message, Params};

struct Panic;

impl Handler for Panic {
    fn init(_params: &Params) -> Result<Self, String> {
        Ok(Panic)
    }

    fn handle(&mut self, msg: &Message) -> Result<Vec<Action>, HandlerError> {
        if msg.value.starts_with(b"panic") {
            panic!(
                "panic asked for by {}/{}@{}",
                msg.topic, msg.partition, msg.offset
            );
        }
        Ok(vec![Action::save()])
    }
}

alerthost_guest::export_handler!(Panic);
