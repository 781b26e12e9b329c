//! Test guest `spin`: a message whose value starts with `loop` never returns,
//! so only the host's wall-time limit can end the call. Any other message is
//! saved.

use alerthost_guest::{Action, Handler, HandlerError, Message, Params};

struct Spin;

impl Handler for Spin {
    fn init(_params: &Params) -> Result<Self, String> {
        Ok(Spin)
    }

    fn handle(&mut self, msg: &Message) -> Result<Vec<Action>, HandlerError> {
        if msg.value.starts_with(b"loop") {
            let mut turns: u64 = 0;
            loop {
                // `black_box` keeps the optimizer from proving the loop useless.
                turns = std::hint::black_box(turns.wrapping_add(1));
            }
        }
        Ok(vec![Action::save()])
    }
}

alerthost_guest::export_handler!(Spin);
