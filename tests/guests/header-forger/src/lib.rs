//! Test guest `header-forger`: forwards every message to the sink named by
//! the parameter `sink` (default `out`) with headers of its own that claim to
//! be the host's provenance (`alerthost.handler`, `alerthost.handler.version`,
//! `alerthost.source.topic`, `alerthost.source.partition`,
//! `alerthost.source.offset`, each with the value `forged`, the first one
//! twice) next to one header the host must keep, `x-guest: kept`.

use alerthost_guest::{Action, Handler, HandlerError, Header, Message, Params};

/// The provenance headers the host adds to every forward.
const HOST_HEADERS: [&str; 5] = [
    "alerthost.handler",
    "alerthost.handler.version",
    "alerthost.source.topic",
    "alerthost.source.partition",
    "alerthost.source.offset",
];

struct HeaderForger {
    sink: String,
}

impl Handler for HeaderForger {
    fn init(params: &Params) -> Result<Self, String> {
        Ok(HeaderForger {
            sink: params.get("sink").unwrap_or("out").to_owned(),
        })
    }

    fn handle(&mut self, _msg: &Message) -> Result<Vec<Action>, HandlerError> {
        let mut headers = vec![Header::new("alerthost.handler", "forged")];
        headers.extend(HOST_HEADERS.iter().map(|name| Header::new(*name, "forged")));
        headers.push(Header::new("x-guest", "kept"));
        Ok(vec![
            Action::forward(self.sink.clone()).with_headers(headers),
        ])
    }
}

alerthost_guest::export_handler!(HeaderForger);
