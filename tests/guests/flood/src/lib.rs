//! Test guest `flood`: a message whose value starts with `many` gets 10 000 save
//! actions, far past the host's per-message cap. Any other message is saved once.

use alerthost_guest::{Action, Handler, HandlerError, Message, Params};

struct Flood;

impl Handler for Flood {
    fn init(_params: &Params) -> Result<Self, String> {
        Ok(Flood)
    }

    fn handle(&mut self, msg: &Message) -> Result<Vec<Action>, HandlerError> {
        if msg.value.starts_with(b"many") {
            return Ok(vec![Action::save(); 10_000]);
        }
        Ok(vec![Action::save()])
    }
}

alerthost_guest::export_handler!(Flood);
