//! save-all: save every message, whatever its topic or format. GCN's "save
//! alert data" recipe as an alerthost handler.
//!
//! Parameters: none; any given is refused at init, so a typo is not silently
//! ignored.
//!
//! Guarantee: every message the host delivers is saved under the host's
//! default name (from topic, partition and offset), so a message redelivered
//! after a crash overwrites its own file. Caveat: nothing is filtered; pair it
//! with topic selection in the host configuration.

use alerthost_guest::{Action, Handler, HandlerError, Message, Params};

/// Saves every message unchanged.
#[derive(Debug)]
pub struct SaveAll;

impl Handler for SaveAll {
    fn init(params: &Params) -> Result<Self, String> {
        match params.iter().next() {
            Some((key, _)) => Err(format!("save-all takes no parameters, got `{key}`")),
            None => Ok(SaveAll),
        }
    }

    fn handle(&mut self, _msg: &Message) -> Result<Vec<Action>, HandlerError> {
        Ok(vec![Action::save()])
    }
}

alerthost_guest::export_handler!(SaveAll);

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/samples");

    #[test]
    fn saves_every_sample_in_every_format() {
        let mut handler = SaveAll::init(&Params::default()).unwrap();
        let mut seen = 0;
        for folder in ["voevent", "json", "binary"] {
            for entry in std::fs::read_dir(format!("{SAMPLES}/{folder}")).unwrap() {
                let value = std::fs::read(entry.unwrap().path()).unwrap();
                let msg = Message::new("gcn.classic.voevent.ANY", value);
                assert_eq!(handler.handle(&msg), Ok(vec![Action::save()]));
                seen += 1;
            }
        }
        assert_eq!(seen, 52);
    }

    #[test]
    fn saves_an_empty_message_too() {
        let mut handler = SaveAll::init(&Params::default()).unwrap();
        let msg = Message::new("t", Vec::new());
        assert_eq!(handler.handle(&msg), Ok(vec![Action::save()]));
    }

    #[test]
    fn refuses_parameters() {
        let err = SaveAll::init(&Params::new([("dir", "/tmp")])).unwrap_err();
        assert_eq!(err, "save-all takes no parameters, got `dir`");
    }
}
