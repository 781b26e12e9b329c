//! Test guest `bloat`: hands the host more than it should accept, chosen by
//! the message value:
//!
//! - `error <MiB>`: a `bad-record` error with a text of that many MiB;
//! - `name <MiB>`: a save whose name hint is that many MiB long;
//! - `headers <count>`: a forward to `out` with that many empty headers;
//! - `forge`: logs and fails with texts holding newlines and terminal escapes
//!   shaped like host log lines;
//! - parameter `init_error_mib`: `init` fails with a text of that many MiB;
//! - anything else is saved.

use alerthost_guest::{Action, Handler, HandlerError, Header, Message, Params};

struct Bloat;

/// A text of `mib` MiB that starts with `head`.
fn big(head: &str, mib: usize) -> String {
    let mut text = String::from(head);
    text.extend(std::iter::repeat_n(
        'x',
        (mib << 20).saturating_sub(head.len()),
    ));
    text
}

fn number(value: &[u8], prefix: &str) -> Option<usize> {
    std::str::from_utf8(value)
        .ok()?
        .strip_prefix(prefix)?
        .trim()
        .parse()
        .ok()
}

/// Text shaped like a host log line after a newline, with a carriage return
/// and an escape sequence that would clear a terminal line.
const FORGED: &str = "fine\n2026-12-04T00:00:00.000000Z  INFO alerthost::reload: handler swapped handler=other\r\x1b[2K";

impl Handler for Bloat {
    fn init(params: &Params) -> Result<Self, String> {
        let mib: usize = params.parse_or("init_error_mib", 0)?;
        if mib > 0 {
            return Err(big("init says no ", mib));
        }
        Ok(Bloat)
    }

    fn handle(&mut self, msg: &Message) -> Result<Vec<Action>, HandlerError> {
        if let Some(mib) = number(&msg.value, "error ") {
            return Err(HandlerError::bad_record(big("bad ", mib)));
        }
        if let Some(mib) = number(&msg.value, "name ") {
            return Ok(vec![Action::save_as(big("n", mib))]);
        }
        if let Some(count) = number(&msg.value, "headers ") {
            let headers = vec![Header::new("", Vec::new()); count];
            return Ok(vec![Action::forward("out").with_headers(headers)]);
        }
        if msg.value.starts_with(b"forge") {
            alerthost_guest::info(FORGED);
            println!("{FORGED}");
            return Err(HandlerError::bad_record(FORGED));
        }
        Ok(vec![Action::save()])
    }
}

alerthost_guest::export_handler!(Bloat);
