//! Test guest `net`: a message whose value starts with `connect` makes it open a
//! TCP connection to 127.0.0.1:1, so the component imports `wasi:sockets`.
//! The host links sockets but refuses every use: the outcome comes back as a
//! `bad-record` error naming the refusal; any other message is saved.

use alerthost_guest::{Action, Handler, HandlerError, Message, Params};

struct Net;

impl Handler for Net {
    fn init(_params: &Params) -> Result<Self, String> {
        Ok(Net)
    }

    fn handle(&mut self, msg: &Message) -> Result<Vec<Action>, HandlerError> {
        if msg.value.starts_with(b"connect") {
            let outcome = match std::net::TcpStream::connect("127.0.0.1:1") {
                Ok(_) => "connected".to_string(),
                Err(e) => format!("error: {e}"),
            };
            return Err(HandlerError::bad_record(format!(
                "connect 127.0.0.1:1: {outcome}"
            )));
        }
        Ok(vec![Action::save()])
    }
}

alerthost_guest::export_handler!(Net);
