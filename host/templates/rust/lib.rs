//! {{name}}: an alerthost handler. It saves the messages whose payload format
//! is one of `formats` and drops every other message.
//!
//! Parameters:
//! - `formats`: comma-separated payload formats to save, from `voevent`,
//!   `json`, `classic-text` and `classic-binary`; default `voevent,json`.
//!
//! Build: `./build.sh` (the component is `dist/{{name}}.wasm`). Test
//! natively: `cargo test`.

use alerthost_guest::payload::{self, Format};
use alerthost_guest::{Action, Handler, HandlerError, Message, Params};

/// The formats that are saved.
#[derive(Debug)]
pub struct {{type_name}} {
    formats: Vec<Format>,
}

fn format_named(name: &str) -> Option<Format> {
    match name {
        "voevent" => Some(Format::VoEvent),
        "json" => Some(Format::Json),
        "classic-text" => Some(Format::ClassicText),
        "classic-binary" => Some(Format::ClassicBinary),
        _ => None,
    }
}

impl Handler for {{type_name}} {
    fn init(params: &Params) -> Result<Self, String> {
        let formats = params
            .get("formats")
            .unwrap_or("voevent,json")
            .split(',')
            .map(|name| {
                format_named(name.trim()).ok_or_else(|| {
                    format!(
                        "parameter `formats`: unknown format `{}`; use voevent, json, \
                         classic-text or classic-binary",
                        name.trim()
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        Ok({{type_name}} { formats })
    }

    fn handle(&mut self, msg: &Message) -> Result<Vec<Action>, HandlerError> {
        let format = payload::detect(&msg.value);
        if self.formats.contains(&format) {
            Ok(vec![Action::save()])
        } else {
            alerthost_guest::debug(&format!("{format} dropped"));
            Ok(Vec::new())
        }
    }
}

alerthost_guest::export_handler!({{type_name}});

#[cfg(test)]
mod tests {
    use super::*;

    /// A Swift BAT position notice (VOEvent), as GCN sends it.
    const SAMPLE: &[u8] = include_bytes!("../samples/example.xml");

    fn handler(formats: Option<&str>) -> {{type_name}} {
        let params = Params::new(formats.map(|f| ("formats", f)));
        {{type_name}}::init(&params).unwrap()
    }

    #[test]
    fn saves_a_voevent_by_default() {
        let msg = Message::new("gcn.classic.voevent.SWIFT_BAT_GRB_POS_ACK", SAMPLE);
        assert_eq!(handler(None).handle(&msg), Ok(vec![Action::save()]));
    }

    #[test]
    fn drops_formats_not_asked_for() {
        let msg = Message::new("t", SAMPLE);
        assert_eq!(handler(Some("json")).handle(&msg), Ok(vec![]));
        let binary = Message::new("t", vec![0u8; 160]);
        assert_eq!(handler(None).handle(&binary), Ok(vec![]));
    }

    #[test]
    fn refuses_unknown_formats() {
        let err = {{type_name}}::init(&Params::new([("formats", "xml")])).unwrap_err();
        assert!(err.contains("unknown format `xml`"), "{err}");
    }
}
