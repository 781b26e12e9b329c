//! Conversion between the generated WIT bindings and the SDK's plain types,
//! and the per-instance handler state behind [`crate::export_handler!`].

use std::any::Any;
use std::cell::RefCell;

use crate::__private::bindings::alerthost::handler::types as wit;
use crate::types::{
    Action, Handler, HandlerError, Header, Message, Params, Timestamp, TimestampKind,
};

pub use crate::__private::bindings::Guest;

thread_local! {
    // A component instance is single-threaded: one handler value lives here
    // between `init` and the calls to `handle`.
    static STATE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// `init` export: build the handler and keep it for this instance.
pub fn init<H: Handler>(params: Vec<(String, String)>) -> Result<(), String> {
    let handler = H::init(&Params::new(params))?;
    STATE.with(|state| *state.borrow_mut() = Some(Box::new(handler)));
    Ok(())
}

/// `handle` export: convert, call the handler, convert back.
pub fn handle<H: Handler>(msg: wit::Message) -> Result<Vec<wit::Action>, wit::HandlerError> {
    let msg = message_from_wit(msg);
    STATE.with(|state| {
        let mut state = state.borrow_mut();
        let handler = state
            .as_mut()
            .and_then(|h| h.downcast_mut::<H>())
            .ok_or_else(|| wit::HandlerError::Fatal("handle called before init".into()))?;
        match handler.handle(&msg) {
            Ok(actions) => Ok(actions.into_iter().map(action_to_wit).collect()),
            Err(e) => Err(error_to_wit(e)),
        }
    })
}

fn message_from_wit(msg: wit::Message) -> Message {
    Message {
        topic: msg.topic,
        partition: msg.partition,
        offset: msg.offset,
        timestamp: msg.timestamp.map(|t| Timestamp {
            millis: t.millis,
            kind: match t.kind {
                wit::TimestampKind::CreateTime => TimestampKind::CreateTime,
                wit::TimestampKind::LogAppendTime => TimestampKind::LogAppendTime,
            },
        }),
        key: msg.key,
        value: msg.value,
        headers: msg
            .headers
            .into_iter()
            .map(|h| Header {
                name: h.name,
                value: h.value,
            })
            .collect(),
    }
}

fn action_to_wit(action: Action) -> wit::Action {
    match action {
        Action::Save(save) => wit::Action::Save(wit::SaveOptions {
            name: save.name,
            value: save.value,
        }),
        Action::Forward(fwd) => wit::Action::Forward(wit::ForwardOptions {
            sink: fwd.sink,
            key: fwd.key,
            value: fwd.value,
            headers: fwd.headers.map(|headers| {
                headers
                    .into_iter()
                    .map(|h| wit::Header {
                        name: h.name,
                        value: h.value,
                    })
                    .collect()
            }),
        }),
    }
}

fn error_to_wit(error: HandlerError) -> wit::HandlerError {
    match error {
        HandlerError::BadRecord(text) => wit::HandlerError::BadRecord(text),
        HandlerError::Transient(text) => wit::HandlerError::Transient(text),
        HandlerError::Fatal(text) => wit::HandlerError::Fatal(text),
    }
}
