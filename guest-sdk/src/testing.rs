//! Native stand-ins for what the host provides, so handler logic that keeps
//! [`state`](crate::state) is unit-tested with `cargo test`.
//!
//! Natively, the functions of [`crate::state`] read and write the
//! [`MemoryState`] of the calling thread (each test runs on its own thread,
//! so tests do not share state). [`handle`] runs one message the way the host
//! does: the message's timestamp is the clock for expiry, and when the
//! handler fails on the message its writes are discarded.
//!
//! ```
//! use alerthost_guest::{Action, Handler, HandlerError, Message, Params, state, testing};
//!
//! struct Once;
//! impl Handler for Once {
//!     fn init(_: &Params) -> Result<Self, String> { Ok(Once) }
//!     fn handle(&mut self, msg: &Message) -> Result<Vec<Action>, HandlerError> {
//!         if state::get(&msg.topic).is_some() {
//!             return Ok(vec![]);
//!         }
//!         state::set(&msg.topic, b"seen");
//!         Ok(vec![Action::save()])
//!     }
//! }
//!
//! let mut once = Once::init(&Params::default()).unwrap();
//! let msg = Message::new("t", "x").with_timestamp(1_000);
//! assert_eq!(testing::handle(&mut once, &msg), Ok(vec![Action::save()]));
//! assert_eq!(testing::handle(&mut once, &msg), Ok(vec![]));
//! testing::with_state(|s| assert_eq!(s.keys(), ["t"]));
//! ```

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::types::{Action, Handler, HandlerError, Message};

/// The host's default `[handler.state] max_key_bytes`.
pub const DEFAULT_MAX_KEY_BYTES: usize = 256;
/// The host's default `[handler.state] max_value_kib`.
pub const DEFAULT_MAX_VALUE_KIB: usize = 64;

/// One stored value and when it expires (ms since the Unix epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    value: Vec<u8>,
    expires_ms: Option<i64>,
}

/// An in-memory state store with the host's semantics: keys set with a TTL
/// expire that many milliseconds after the current message's timestamp, and
/// read as absent from the first message whose timestamp is at or past that
/// moment. Keys and values over the host's default limits panic with the
/// host's message (the host stops the call; natively, the test fails).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryState {
    entries: BTreeMap<String, Entry>,
    /// The current message's timestamp; `None`: the system clock.
    now_ms: Option<i64>,
}

impl MemoryState {
    /// An empty store whose clock is the system clock until
    /// [`MemoryState::set_now`] is called.
    pub fn new() -> Self {
        MemoryState::default()
    }

    /// Make `millis` (ms since the Unix epoch) the current message time.
    pub fn set_now(&mut self, millis: i64) {
        self.now_ms = Some(millis);
    }

    /// The current message time: the one last set, else the system clock.
    pub fn now(&self) -> i64 {
        self.now_ms.unwrap_or_else(system_millis)
    }

    /// The value under `key`, unless absent or expired.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let now = self.now();
        self.entries
            .get(key)
            .filter(|entry| live(entry, now))
            .map(|entry| entry.value.clone())
    }

    /// Store `value` under `key`, expiring `ttl_ms` after the current message
    /// time when given.
    pub fn set(&mut self, key: &str, value: &[u8], ttl_ms: Option<u64>) {
        check_key(key);
        let max_value = DEFAULT_MAX_VALUE_KIB * 1024;
        assert!(
            value.len() <= max_value,
            "state value for key {key:?} is {} bytes, over [handler.state] max_value_kib = {DEFAULT_MAX_VALUE_KIB}",
            value.len()
        );
        let expires_ms = ttl_ms.map(|ttl| {
            self.now()
                .saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX))
        });
        self.entries.insert(
            key.to_owned(),
            Entry {
                value: value.to_vec(),
                expires_ms,
            },
        );
    }

    /// Remove `key`.
    pub fn delete(&mut self, key: &str) {
        check_key(key);
        self.entries.remove(key);
    }

    /// The keys that are live at the current message time, in order.
    pub fn keys(&self) -> Vec<String> {
        let now = self.now();
        self.entries
            .iter()
            .filter(|(_, entry)| live(entry, now))
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// When `key` expires (ms since the Unix epoch); `None` when it is absent
    /// or has no TTL.
    pub fn expires_at(&self, key: &str) -> Option<i64> {
        self.entries.get(key).and_then(|entry| entry.expires_ms)
    }
}

fn live(entry: &Entry, now: i64) -> bool {
    entry.expires_ms.is_none_or(|expires| expires > now)
}

fn check_key(key: &str) {
    assert!(
        key.len() <= DEFAULT_MAX_KEY_BYTES,
        "state key {key:?} is {} bytes, over [handler.state] max_key_bytes = {DEFAULT_MAX_KEY_BYTES}",
        key.len()
    );
}

fn system_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

thread_local! {
    static STATE: RefCell<MemoryState> = RefCell::new(MemoryState::new());
}

/// Run `f` on this thread's [`MemoryState`], the one [`crate::state`] uses
/// natively: to look at what a handler stored, or to prepare state.
pub fn with_state<T>(f: impl FnOnce(&mut MemoryState) -> T) -> T {
    STATE.with(|state| f(&mut state.borrow_mut()))
}

/// Replace this thread's [`MemoryState`] with an empty one.
pub fn reset_state() {
    with_state(|state| *state = MemoryState::new());
}

/// Handle `msg` as the host would: the state clock is the message's
/// timestamp (the system clock when it has none), and when the handler
/// returns an error its state writes are discarded.
pub fn handle<H: Handler>(handler: &mut H, msg: &Message) -> Result<Vec<Action>, HandlerError> {
    let before = with_state(|state| {
        match msg.timestamp {
            Some(ts) => state.set_now(ts.millis),
            None => state.set_now(system_millis()),
        }
        state.clone()
    });
    let result = handler.handle(msg);
    if result.is_err() {
        with_state(|state| *state = before);
    }
    result
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::state;
    use crate::types::Params;

    #[test]
    fn keys_expire_at_message_time_plus_ttl() {
        let mut s = MemoryState::new();
        s.set_now(1_000);
        s.set("a", b"1", Some(500));
        s.set("b", b"2", None);
        assert_eq!(s.expires_at("a"), Some(1_500));
        s.set_now(1_499);
        assert_eq!(s.get("a"), Some(b"1".to_vec()));
        s.set_now(1_500);
        assert_eq!(s.get("a"), None, "expired at exactly now + ttl");
        assert_eq!(s.get("b"), Some(b"2".to_vec()));
        assert_eq!(s.keys(), ["b"]);
        s.delete("b");
        s.delete("never-there");
        assert_eq!(s.keys(), Vec::<String>::new());
    }

    #[test]
    fn a_set_replaces_the_value_and_its_ttl() {
        let mut s = MemoryState::new();
        s.set_now(0);
        s.set("k", b"old", Some(10));
        s.set("k", b"new", None);
        s.set_now(1_000_000);
        assert_eq!(s.get("k"), Some(b"new".to_vec()));
        s.set("k", b"x", Some(u64::MAX));
        assert_eq!(s.expires_at("k"), Some(i64::MAX));
    }

    #[test]
    #[should_panic(expected = "over [handler.state] max_value_kib = 64")]
    fn values_over_the_default_limit_are_refused() {
        MemoryState::new().set("k", &vec![0; 64 * 1024 + 1], None);
    }

    #[test]
    #[should_panic(expected = "over [handler.state] max_key_bytes = 256")]
    fn keys_over_the_default_limit_are_refused() {
        MemoryState::new().set(&"k".repeat(257), b"", None);
    }

    /// Counts messages per topic; fails on the second message of topic
    /// `bad` after writing.
    struct Counter;

    impl Handler for Counter {
        fn init(_: &Params) -> Result<Self, String> {
            Ok(Counter)
        }
        fn handle(&mut self, msg: &Message) -> Result<Vec<Action>, HandlerError> {
            let seen = state::get(&msg.topic).map_or(0, |v| v[0]);
            state::set_with_ttl(&msg.topic, &[seen + 1], Duration::from_millis(100));
            if msg.topic == "bad" && seen > 0 {
                return Err(HandlerError::transient("after a write"));
            }
            Ok(vec![])
        }
    }

    #[test]
    fn handle_uses_message_time_and_discards_writes_of_a_failed_call() {
        reset_state();
        let mut counter = Counter;
        let at = |topic: &str, millis| Message::new(topic, "").with_timestamp(millis);
        handle(&mut counter, &at("a", 1_000)).unwrap();
        handle(&mut counter, &at("a", 1_050)).unwrap();
        assert_eq!(with_state(|s| s.get("a")), Some(vec![2]));
        assert_eq!(with_state(|s| s.expires_at("a")), Some(1_150));
        // 100 ms after the last write: expired, counting starts again.
        handle(&mut counter, &at("a", 1_150)).unwrap();
        assert_eq!(with_state(|s| s.get("a")), Some(vec![1]));

        handle(&mut counter, &at("bad", 2_000)).unwrap();
        assert!(handle(&mut counter, &at("bad", 2_001)).is_err());
        assert_eq!(
            with_state(|s| s.get("bad")),
            Some(vec![1]),
            "the failed call's write is gone"
        );
    }
}
