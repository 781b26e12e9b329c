pub mod changelog;

/// One change, as persisted and as written to a changelog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `key` now holds `value`, until `expires_ms` (message time) if set.
    Put {
        /// The state key.
        key: String,
        /// The value.
        value: Vec<u8>,
        /// When the key expires (ms since the epoch, message time).
        expires_ms: Option<i64>,
        /// The sequence number of the batch that wrote it.
        seq: u64,
    },
    /// `key` was deleted.
    Delete {
        /// The state key.
        key: String,
        /// The sequence number of the batch that deleted it.
        seq: u64,
    },
}
