//! Plain types a handler works with. They mirror the WIT world but carry no
//! generated code, so handler logic is tested natively.

use std::str::FromStr;

/// One Kafka record header. Kafka allows a header without a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header name.
    pub name: String,
    /// Header value, `None` when the header has none.
    pub value: Option<Vec<u8>>,
}

impl Header {
    /// A header with a value.
    pub fn new(name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Header {
            name: name.into(),
            value: Some(value.into()),
        }
    }
}

/// Who set a message timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampKind {
    /// The producer, when it created the message.
    CreateTime,
    /// The broker, when it appended the message to the log.
    LogAppendTime,
}

/// A message timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    /// Milliseconds since the Unix epoch (UTC).
    pub millis: i64,
    /// Who set it.
    pub kind: TimestampKind,
}

/// One Kafka message as the host hands it to the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Topic the message was read from.
    pub topic: String,
    /// Partition within the topic.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
    /// Timestamp, when the broker reports one.
    pub timestamp: Option<Timestamp>,
    /// Key, `None` for a message without one.
    pub key: Option<Vec<u8>>,
    /// Payload bytes, exactly as they arrived.
    pub value: Vec<u8>,
    /// Headers in the order the producer set them.
    pub headers: Vec<Header>,
}

impl Message {
    /// A message on `topic` with `value`, at partition 0, offset 0, with no
    /// key, timestamp or headers. Handy in tests.
    pub fn new(topic: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Message {
            topic: topic.into(),
            partition: 0,
            offset: 0,
            timestamp: None,
            key: None,
            value: value.into(),
            headers: Vec::new(),
        }
    }

    /// The same message at another partition and offset.
    pub fn at(mut self, partition: i32, offset: i64) -> Self {
        self.partition = partition;
        self.offset = offset;
        self
    }

    /// The same message with a producer timestamp.
    pub fn with_timestamp(mut self, millis: i64) -> Self {
        self.timestamp = Some(Timestamp {
            millis,
            kind: TimestampKind::CreateTime,
        });
        self
    }

    /// The same message with a key.
    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// The same message with one more header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push(Header::new(name, value));
        self
    }

    /// The value of the first header named `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.name == name)
            .and_then(|h| h.value.as_deref())
    }
}

/// Save the message to the handler's save sink.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Save {
    /// File name hint; the host sanitizes it and keeps it inside the sink's
    /// directory. `None`: the host names the file after topic, partition and
    /// offset.
    pub name: Option<String>,
    /// Bytes to write instead of the message value.
    pub value: Option<Vec<u8>>,
}

/// Forward the message to a sink the operator allowed this handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// The sink's name, as declared in the host's configuration.
    pub sink: String,
    /// Key to send instead of the message key.
    pub key: Option<Vec<u8>>,
    /// Bytes to send instead of the message value.
    pub value: Option<Vec<u8>>,
    /// Headers to send instead of the message headers.
    pub headers: Option<Vec<Header>>,
}

/// One thing the host does with a message. Returning no actions drops it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write to a file in the save sink.
    Save(Save),
    /// Send to a named sink.
    Forward(Forward),
}

impl Action {
    /// Save the message value under the host's default name.
    pub fn save() -> Self {
        Action::Save(Save::default())
    }

    /// Save the message value under a name hint.
    pub fn save_as(name: impl Into<String>) -> Self {
        Action::Save(Save {
            name: Some(name.into()),
            value: None,
        })
    }

    /// Forward the message unchanged to the sink named `sink`.
    pub fn forward(sink: impl Into<String>) -> Self {
        Action::Forward(Forward {
            sink: sink.into(),
            key: None,
            value: None,
            headers: None,
        })
    }

    /// Replace the bytes written or sent by this action.
    pub fn with_value(mut self, value: impl Into<Vec<u8>>) -> Self {
        match &mut self {
            Action::Save(save) => save.value = Some(value.into()),
            Action::Forward(forward) => forward.value = Some(value.into()),
        }
        self
    }

    /// Replace the key sent by a forward. A save has no key; it is unchanged.
    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        if let Action::Forward(forward) = &mut self {
            forward.key = Some(key.into());
        }
        self
    }

    /// Replace the headers sent by a forward. A save has no headers; it is
    /// unchanged.
    pub fn with_headers(mut self, headers: Vec<Header>) -> Self {
        if let Action::Forward(forward) = &mut self {
            forward.headers = Some(headers);
        }
        self
    }
}

/// Why a handler could not decide on a message. The kind picks the operator's
/// error policy for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerError {
    /// The message is malformed or unexpected; retrying will not help.
    BadRecord(String),
    /// A passing failure; the same message may succeed later.
    Transient(String),
    /// The handler cannot go on.
    Fatal(String),
}

impl HandlerError {
    /// A malformed or unexpected message.
    pub fn bad_record(text: impl Into<String>) -> Self {
        HandlerError::BadRecord(text.into())
    }

    /// A failure that may pass.
    pub fn transient(text: impl Into<String>) -> Self {
        HandlerError::Transient(text.into())
    }

    /// A failure the handler cannot recover from.
    pub fn fatal(text: impl Into<String>) -> Self {
        HandlerError::Fatal(text.into())
    }
}

impl std::fmt::Display for HandlerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandlerError::BadRecord(text) => write!(f, "bad record: {text}"),
            HandlerError::Transient(text) => write!(f, "transient: {text}"),
            HandlerError::Fatal(text) => write!(f, "fatal: {text}"),
        }
    }
}

impl std::error::Error for HandlerError {}

/// The operator's parameters for a handler, in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Parameters from key/value pairs.
    pub fn new<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Params(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    /// The value of `key`; the last one wins when it is given twice.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key`, or an error naming the missing parameter.
    pub fn require(&self, key: &str) -> Result<&str, String> {
        self.get(key)
            .ok_or_else(|| format!("missing parameter `{key}`"))
    }

    /// `key` parsed as `T`, or `default` when absent; an error names the key
    /// and the value that did not parse.
    pub fn parse_or<T: FromStr>(&self, key: &str, default: T) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(key) {
            None => Ok(default),
            Some(raw) => parse_param(key, raw),
        }
    }

    /// `key` parsed as `T`; an error when it is missing or does not parse.
    pub fn parse<T: FromStr>(&self, key: &str) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        parse_param(key, self.require(key)?)
    }

    /// Every pair, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

fn parse_param<T: FromStr>(key: &str, raw: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    raw.trim()
        .parse()
        .map_err(|e| format!("parameter `{key}` = {raw:?} is not valid: {e}"))
}

/// A message handler. The host creates it once per instance with
/// [`Handler::init`] and then calls [`Handler::handle`] for each message.
pub trait Handler: Sized + 'static {
    /// Build the handler from the operator's parameters. An error refuses the
    /// handler before it sees any message.
    fn init(params: &Params) -> Result<Self, String>;

    /// Decide what to do with one message.
    fn handle(&mut self, msg: &Message) -> Result<Vec<Action>, HandlerError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_last_value_wins_and_errors_name_the_key() {
        let params = Params::new([("x", "1"), ("x", "2.5"), ("bad", "abc")]);
        assert_eq!(params.parse::<f64>("x"), Ok(2.5));
        assert_eq!(params.parse_or::<f64>("absent", 7.0), Ok(7.0));
        let err = params.parse::<f64>("bad").unwrap_err();
        assert!(err.contains("`bad`") && err.contains("abc"), "{err}");
        assert_eq!(
            params.require("nope").unwrap_err(),
            "missing parameter `nope`"
        );
    }

    #[test]
    fn action_builders_touch_only_their_fields() {
        let save = Action::save_as("a.xml")
            .with_value(b"x".to_vec())
            .with_key(b"k".to_vec());
        assert_eq!(
            save,
            Action::Save(Save {
                name: Some("a.xml".into()),
                value: Some(b"x".to_vec())
            })
        );
        let fwd = Action::forward("out").with_key(b"k".to_vec());
        let Action::Forward(f) = fwd else {
            panic!("not a forward")
        };
        assert_eq!(
            (f.sink.as_str(), f.key.as_deref()),
            ("out", Some(&b"k"[..]))
        );
    }
}
