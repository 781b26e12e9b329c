//! Test guest `double-save`: every message becomes one save per entry of the
//! comma-separated parameter `hints` (default `-,-`, two unnamed saves); an
//! entry `-` is an unnamed save (the host's default name), any other entry is
//! the name hint of that save. Save `i` (from 0) writes
//! `<tag>-<i>:<message value>`, with the parameter `tag` (default `save`), so
//! a test can tell every save of every handler and message apart.

use alerthost_guest::{Action, Handler, HandlerError, Message, Params};

struct DoubleSave {
    hints: Vec<Option<String>>,
    tag: String,
}

impl Handler for DoubleSave {
    fn init(params: &Params) -> Result<Self, String> {
        let hints = params
            .get("hints")
            .unwrap_or("-,-")
            .split(',')
            .map(|hint| (hint != "-").then(|| hint.to_owned()))
            .collect();
        Ok(DoubleSave {
            hints,
            tag: params.get("tag").unwrap_or("save").to_owned(),
        })
    }

    fn handle(&mut self, msg: &Message) -> Result<Vec<Action>, HandlerError> {
        Ok(self
            .hints
            .iter()
            .enumerate()
            .map(|(i, hint)| {
                let mut value = format!("{}-{i}:", self.tag).into_bytes();
                value.extend_from_slice(&msg.value);
                let save = match hint {
                    Some(hint) => Action::save_as(hint.clone()),
                    None => Action::save(),
                };
                save.with_value(value)
            })
            .collect())
    }
}

alerthost_guest::export_handler!(DoubleSave);
