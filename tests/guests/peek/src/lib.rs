//! Test guest `peek`: a message whose value starts with `open` makes it try to
//! read `/etc/passwd`, list `/`, write a file in `/tmp` and count its
//! environment variables. It reports what happened as a `bad-record` error,
//! so a test reads the outcome in the dead-letter record:
//!
//! `open /etc/passwd: …; read_dir /: …; write /tmp/alerthost-peek: …; env vars: N`
//!
//! Any other message is saved.

use alerthost_guest::{Action, Handler, HandlerError, Message, Params};

struct Peek;

impl Handler for Peek {
    fn init(_params: &Params) -> Result<Self, String> {
        Ok(Peek)
    }

    fn handle(&mut self, msg: &Message) -> Result<Vec<Action>, HandlerError> {
        if msg.value.starts_with(b"open") {
            let passwd = match std::fs::read("/etc/passwd") {
                Ok(bytes) => format!("read {} bytes", bytes.len()),
                Err(e) => format!("error: {e}"),
            };
            let root = match std::fs::read_dir("/") {
                Ok(entries) => format!("{} entries", entries.count()),
                Err(e) => format!("error: {e}"),
            };
            let write = match std::fs::write("/tmp/alerthost-peek", b"peek was here") {
                Ok(()) => "written".to_string(),
                Err(e) => format!("error: {e}"),
            };
            let env = std::env::vars_os().count();
            return Err(HandlerError::bad_record(format!(
                "open /etc/passwd: {passwd}; read_dir /: {root}; \
                 write /tmp/alerthost-peek: {write}; env vars: {env}"
            )));
        }
        Ok(vec![Action::save()])
    }
}

alerthost_guest::export_handler!(Peek);
