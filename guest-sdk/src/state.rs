//! Per-handler state kept by the host: a small key-value store that outlives
//! messages, restarts and hot swaps (the WIT `state` interface).
//!
//! Inside a component each function calls the host. Natively (`cargo test`)
//! they use an in-memory [`MemoryState`](crate::testing::MemoryState) of the
//! calling thread, which follows the host's semantics; run a message through
//! [`testing::handle`](crate::testing::handle) so that its timestamp drives
//! expiry and a failed call leaves the state as it was.
//!
//! Semantics (the host's, in short): writes made while handling a message
//! take effect with that message, and are discarded when the handler fails on
//! it; a key set with a TTL expires that many milliseconds after the
//! *message's* timestamp (message time, so a replay expires keys alike); in
//! `init`, `get` works and `set`/`delete` fail `init`. A key or value over the
//! operator's limits (`[handler.state]`, by default 256-byte keys and 64 KiB
//! values) stops the call, and the message fails under the handler's error
//! policy.
//!
//! A component imports the host's `state` interface only when its code calls
//! one of these functions; a handler without state runs on hosts and
//! configurations that offer none.

use std::time::Duration;

/// The value stored under `key`; `None` when there is none or it has expired.
pub fn get(key: &str) -> Option<Vec<u8>> {
    #[cfg(target_family = "wasm")]
    {
        crate::__private::bindings::alerthost::handler::state::get(key)
    }
    #[cfg(not(target_family = "wasm"))]
    {
        crate::testing::with_state(|state| state.get(key))
    }
}

/// Store `value` under `key` until it is deleted or replaced.
pub fn set(key: &str, value: &[u8]) {
    write(key, value, None);
}

/// Store `value` under `key`; it expires `ttl` after the timestamp of the
/// message being handled (whole milliseconds, rounded down; the host's clock
/// for a message without a timestamp).
pub fn set_with_ttl(key: &str, value: &[u8], ttl: Duration) {
    write(key, value, Some(ttl_millis(ttl)));
}

/// Remove `key`; nothing happens when it is not there.
pub fn delete(key: &str) {
    #[cfg(target_family = "wasm")]
    {
        crate::__private::bindings::alerthost::handler::state::delete(key);
    }
    #[cfg(not(target_family = "wasm"))]
    {
        crate::testing::with_state(|state| state.delete(key));
    }
}

fn write(key: &str, value: &[u8], ttl_ms: Option<u64>) {
    #[cfg(target_family = "wasm")]
    {
        crate::__private::bindings::alerthost::handler::state::set(key, value, ttl_ms);
    }
    #[cfg(not(target_family = "wasm"))]
    {
        crate::testing::with_state(|state| state.set(key, value, ttl_ms));
    }
}

/// `ttl` in whole milliseconds, saturating (a TTL beyond `u64` milliseconds
/// is half a billion years).
pub(crate) fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}
