//! `[handler.state]`: the limits of a handler's state and its optional
//! changelog topic.

use serde::Deserialize;

/// `[handler.state]`. Every field has a default; see
/// [`StateConfig::default`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StateConfig {
    /// Longest key, in bytes (default 256).
    pub max_key_bytes: usize,
    /// Largest value, in KiB (default 64).
    pub max_value_kib: u64,
    /// Most keys the handler may hold (default 100 000).
    pub max_keys: u64,
    /// Most bytes of keys and values together, in MiB (default 64).
    pub max_total_mib: u64,
    /// A compacted Kafka topic every change is also written to, so another
    /// host can restore the state (default: none, the state is local).
    pub changelog: Option<String>,
}

impl Default for StateConfig {
    fn default() -> Self {
        let limits = StateLimits::default();
        StateConfig {
            max_key_bytes: limits.max_key_bytes,
            max_value_kib: limits.max_value_kib,
            max_keys: limits.max_keys,
            max_total_mib: limits.max_total_mib,
            changelog: None,
        }
    }
}

impl StateConfig {
    /// Check the values make sense; the error names the key.
    pub fn validate(&self) -> anyhow::Result<()> {
        let positive = [
            ("max_key_bytes", self.max_key_bytes as u64),
            ("max_value_kib", self.max_value_kib),
            ("max_keys", self.max_keys),
            ("max_total_mib", self.max_total_mib),
        ];
        for (name, value) in positive {
            anyhow::ensure!(value > 0, "`{name}` must be greater than 0");
        }
        anyhow::ensure!(
            self.max_key_bytes <= 65_536,
            "`max_key_bytes` = {} is over the 65536 bytes a key may have",
            self.max_key_bytes
        );
        anyhow::ensure!(
            self.max_value_kib <= 1 << 20,
            "`max_value_kib` = {} is over 1048576 (1 GiB)",
            self.max_value_kib
        );
        anyhow::ensure!(
            self.max_total_mib <= 1 << 20,
            "`max_total_mib` = {} is over 1048576 (1 TiB)",
            self.max_total_mib
        );
        if let Some(topic) = &self.changelog {
            anyhow::ensure!(
                !topic.is_empty()
                    && topic.len() <= 249
                    && topic
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
                "`changelog` = \"{topic}\" is not a valid Kafka topic name (letters, digits, `.`, `_`, `-`)"
            );
        }
        Ok(())
    }

    /// The limits part.
    pub fn limits(&self) -> StateLimits {
        StateLimits {
            max_key_bytes: self.max_key_bytes,
            max_value_kib: self.max_value_kib,
            max_keys: self.max_keys,
            max_total_mib: self.max_total_mib,
        }
    }
}

/// The limits a handler's state calls are checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateLimits {
    /// Longest key, in bytes.
    pub max_key_bytes: usize,
    /// Largest value, in KiB.
    pub max_value_kib: u64,
    /// Most keys.
    pub max_keys: u64,
    /// Most bytes of keys and values, in MiB.
    pub max_total_mib: u64,
}

impl Default for StateLimits {
    fn default() -> Self {
        StateLimits {
            max_key_bytes: 256,
            max_value_kib: 64,
            max_keys: 100_000,
            max_total_mib: 64,
        }
    }
}

impl StateLimits {
    /// Largest value, in bytes.
    pub fn max_value_bytes(&self) -> u64 {
        self.max_value_kib.saturating_mul(1024)
    }

    /// Most bytes of keys and values.
    pub fn max_total_bytes(&self) -> u64 {
        self.max_total_mib.saturating_mul(1 << 20)
    }
}
