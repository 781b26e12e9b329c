//! Test guest `init-fails`: refuses every `init` with
//! `init refused: k1=v1, k2=v2` (its parameters, in order), so the host must
//! reject this handler version before it sees a message.

use alerthost_guest::{Action, Handler, HandlerError, Message, Params};

struct InitFails;

impl Handler for InitFails {
    fn init(params: &Params) -> Result<Self, String> {
        let params: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Err(format!("init refused: {}", params.join(", ")))
    }

    fn handle(&mut self, _msg: &Message) -> Result<Vec<Action>, HandlerError> {
        Ok(vec![Action::save()])
    }
}

alerthost_guest::export_handler!(InitFails);
