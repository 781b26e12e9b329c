//! Test guest `names`: saves every message under its own value (as lossy UTF-8)
//! as the file name hint, so a test can send `../../x`, `/etc/x`, `a\0b` or a
//! 10 000-character name and check where the host puts the file.

use alerthost_guest::{Action, Handler, HandlerError, Message, Params};

struct Names;

impl Handler for Names {
    fn init(_params: &Params) -> Result<Self, String> {
        Ok(Names)
    }

    fn handle(&mut self, msg: &Message) -> Result<Vec<Action>, HandlerError> {
        Ok(vec![Action::save_as(String::from_utf8_lossy(&msg.value))])
    }
}

alerthost_guest::export_handler!(Names);
