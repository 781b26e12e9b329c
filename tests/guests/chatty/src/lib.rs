//! Test guest `chatty`: for every message, writes 1000 log lines of 10 KiB each
//! through the host's `log` import, prints 1000 lines on stdout and 1000 on
//! stderr, then saves the message. The host's log caps must hold and the
//! message must still be saved.

use alerthost_guest::{Action, Handler, HandlerError, Message, Params};

/// Lines written through each channel per message.
const LINES: usize = 1000;
/// Bytes in each log line.
const LINE_BYTES: usize = 10 * 1024;

struct Chatty {
    /// A full log line; the number in front is written over for each line.
    line: String,
}

impl Handler for Chatty {
    fn init(_params: &Params) -> Result<Self, String> {
        Ok(Chatty {
            line: "x".repeat(LINE_BYTES),
        })
    }

    fn handle(&mut self, msg: &Message) -> Result<Vec<Action>, HandlerError> {
        for i in 0..LINES {
            let number = format!("{i:04} ");
            self.line.replace_range(..number.len(), &number);
            alerthost_guest::info(&self.line);
        }
        for i in 0..LINES {
            println!("chatty stdout line {i} for offset {}", msg.offset);
            eprintln!("chatty stderr line {i} for offset {}", msg.offset);
        }
        Ok(vec![Action::save()])
    }
}

alerthost_guest::export_handler!(Chatty);
