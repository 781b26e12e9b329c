//! The one place host bindings for the `alerthost:handler` world are generated.
//!
//! The bindings are for `0.2.0`. Components built for `0.1.0` are served by
//! the same bindings: the two worlds' types and exports are identical, and
//! `0.1.0` has no `state` import. Its `alerthost:handler/types@0.1.0`
//! import holds only types, which wasmtime checks structurally and needs no
//! definition for.

/// The generated bindings; the world's `message` type is re-exported as
/// [`MessageView`], since the host's own [`Message`] owns its bytes.
mod generated {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "alerthost:handler/handler",
        // The message is lowered into the guest straight from borrowed bytes
        // (librdkafka's buffer, on the workers' path): no host copy per call.
        ownership: Borrowing {
            duplicate_if_necessary: true
        },
        // A state call over a limit (or a write in `init`) stops the guest.
        imports: {
            "alerthost:handler/state": trappable,
        },
    });
}

pub use generated::alerthost;
pub use generated::{Handler, HandlerImports, HandlerPre};

pub use self::alerthost::handler::types::{
    Action, ForwardOptions, HandlerError, HeaderParam, HeaderResult as Header, Level,
    Message as MessageView, SaveOptions, Timestamp, TimestampKind,
};

/// A message as the host keeps it (owned); handlers are called with a
/// [`MessageView`] of it, or of librdkafka's buffer directly.
#[derive(Clone, Debug, Default)]
pub struct Message {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: Option<Timestamp>,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<Header>,
}

impl Message {
    /// Run `f` with a borrowed view of the message.
    pub fn with_view<R>(&self, f: impl FnOnce(&MessageView<'_>) -> R) -> R {
        let headers: Vec<HeaderParam<'_>> = self
            .headers
            .iter()
            .map(|h| HeaderParam {
                name: &h.name,
                value: h.value.as_deref(),
            })
            .collect();
        f(&MessageView {
            topic: &self.topic,
            partition: self.partition,
            offset: self.offset,
            timestamp: self.timestamp,
            key: self.key.as_deref(),
            value: &self.value,
            headers: &headers,
        })
    }

    /// An owned copy of `view`, into `self` (its buffers are reused).
    pub fn copy_from(&mut self, view: &MessageView<'_>) {
        if self.topic != view.topic {
            self.topic.clear();
            self.topic.push_str(view.topic);
        }
        self.partition = view.partition;
        self.offset = view.offset;
        self.timestamp = view.timestamp;
        match (view.key, &mut self.key) {
            (Some(key), Some(buffer)) => {
                buffer.clear();
                buffer.extend_from_slice(key);
            }
            (Some(key), slot) => *slot = Some(key.to_vec()),
            (None, slot) => *slot = None,
        }
        self.value.clear();
        self.value.extend_from_slice(view.value);
        self.headers.clear();
        self.headers.extend(view.headers.iter().map(|h| Header {
            name: h.name.to_owned(),
            value: h.value.map(<[u8]>::to_vec),
        }));
    }
}

/// The WIT package and version this host speaks.
pub const WIT_PACKAGE: &str = "alerthost:handler";
/// The version of [`WIT_PACKAGE`] this host speaks.
pub const WIT_VERSION: &str = "0.2.0";
/// Older versions of [`WIT_PACKAGE`] whose components this host still runs.
pub const OLDER_WIT_VERSIONS: &[&str] = &["0.1.0"];
