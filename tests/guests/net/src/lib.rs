//! Test guest `net`: a message `connect <port>` makes it open a TCP
//! connection to 127.0.0.1:<port> (port 1 when none is given), so the
//! component imports `wasi:sockets`. The host links sockets but refuses every
//! use: the outcome comes back as a `bad-record` error,
//! `connect 127.0.0.1:<port>: error (<kind>): <text>` or
//! `connect 127.0.0.1:<port>: connected`; any other message is saved.

use alerthost_guest::{Action, Handler, HandlerError, Message, Params};

struct Net;

impl Handler for Net {
    fn init(_params: &Params) -> Result<Self, String> {
        Ok(Net)
    }

    fn handle(&mut self, msg: &Message) -> Result<Vec<Action>, HandlerError> {
        if let Some(rest) = msg.value.strip_prefix(b"connect") {
            let port: u16 = std::str::from_utf8(rest)
                .ok()
                .and_then(|p| p.trim().parse().ok())
                .unwrap_or(1);
            let outcome = match std::net::TcpStream::connect(("127.0.0.1", port)) {
                Ok(_) => "connected".to_string(),
                Err(e) => format!("error ({:?}): {e}", e.kind()),
            };
            return Err(HandlerError::bad_record(format!(
                "connect 127.0.0.1:{port}: {outcome}"
            )));
        }
        Ok(vec![Action::save()])
    }
}

alerthost_guest::export_handler!(Net);
