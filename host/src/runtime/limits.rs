//! Per-handler sandbox limits, their defaults, and the memory limiter that
//! enforces them inside a `Store`.

use std::time::Duration;

use serde::Deserialize;

/// Limits on what one handler may use. Every field has a default; see
/// [`Limits::default`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Linear memory per memory of an instance, in MiB (default 64).
    pub memory_mib: u64,
    /// Wall time per message, in milliseconds (default 250). Enforced by epoch
    /// interruption with a 10 ms ticker, so a call is stopped within one tick
    /// of the limit.
    pub timeout_ms: u64,
    /// Fuel per message: a deterministic CPU budget (default: off).
    pub fuel: Option<u64>,
    /// Actions one message may produce (default 16).
    pub max_actions: usize,
    /// Bytes in one action: value, key and headers together, in KiB
    /// (default 4096, i.e. 4 MiB).
    pub max_action_kib: usize,
    /// Log lines per message, from `log` and captured stdout/stderr together
    /// (default 32). Lines past the cap are counted and dropped.
    pub max_log_lines: u32,
    /// Bytes per log line (default 1024); longer lines are cut.
    pub max_log_line_bytes: usize,
    /// Largest component file accepted, in MiB (default 32).
    pub max_component_mib: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mib: 64,
            timeout_ms: 250,
            fuel: None,
            max_actions: 16,
            max_action_kib: 4096,
            max_log_lines: 32,
            max_log_line_bytes: 1024,
            max_component_mib: 32,
        }
    }
}

impl Limits {
    /// Wall time per message.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// Memory limit in bytes.
    pub fn memory_bytes(&self) -> usize {
        usize::try_from(self.memory_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }

    /// Bytes per action.
    pub fn max_action_bytes(&self) -> usize {
        self.max_action_kib.saturating_mul(1024)
    }

    /// Largest component accepted, in bytes.
    pub fn max_component_bytes(&self) -> u64 {
        self.max_component_mib.saturating_mul(1 << 20)
    }

    /// Check the limits make sense; the error names the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        let positive = [
            ("memory_mib", self.memory_mib),
            ("timeout_ms", self.timeout_ms),
            ("max_actions", self.max_actions as u64),
            ("max_action_kib", self.max_action_kib as u64),
            ("max_log_line_bytes", self.max_log_line_bytes as u64),
            ("max_component_mib", self.max_component_mib),
        ];
        for (name, value) in positive {
            anyhow::ensure!(value > 0, "limit `{name}` must be greater than 0");
        }
        anyhow::ensure!(
            self.fuel != Some(0),
            "limit `fuel` must be greater than 0 (leave it out to turn fuel off)"
        );
        anyhow::ensure!(
            self.memory_mib <= 4096,
            "limit `memory_mib` = {} is above the 4096 MiB a 32-bit memory can address",
            self.memory_mib
        );
        Ok(())
    }
}

/// Table elements an instance may grow to: far above what real guests use
/// (CPython's tables hold tens of thousands of entries), far below what would
/// hurt the host.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// Enforces the memory limit and remembers whether it refused a growth, so a
/// trap that follows can be reported as a memory limit and not as a crash.
#[derive(Debug)]
pub(crate) struct Limiter {
    pub(crate) memory_bytes: usize,
    pub(crate) memory_refused: Option<usize>,
}

impl Limiter {
    pub(crate) fn new(memory_bytes: usize) -> Self {
        Limiter {
            memory_bytes,
            memory_refused: None,
        }
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.memory_refused = Some(desired);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_table() {
        let limits = Limits::default();
        assert_eq!(limits.memory_bytes(), 64 << 20);
        assert_eq!(limits.timeout(), Duration::from_millis(250));
        assert_eq!(limits.fuel, None);
        assert_eq!(limits.max_actions, 16);
        assert_eq!(limits.max_action_bytes(), 4 << 20);
        assert_eq!(
            (limits.max_log_lines, limits.max_log_line_bytes),
            (32, 1024)
        );
        assert_eq!(limits.max_component_bytes(), 32 << 20);
        limits.validate().unwrap();
    }

    #[test]
    fn validate_names_the_bad_field() {
        let limits = Limits {
            timeout_ms: 0,
            ..Limits::default()
        };
        assert!(
            limits
                .validate()
                .unwrap_err()
                .to_string()
                .contains("`timeout_ms`")
        );
        let limits = Limits {
            fuel: Some(0),
            ..Limits::default()
        };
        assert!(
            limits
                .validate()
                .unwrap_err()
                .to_string()
                .contains("`fuel`")
        );
    }

    #[test]
    fn limiter_refuses_growth_past_the_limit_and_remembers() {
        use wasmtime::ResourceLimiter;
        let mut limiter = Limiter::new(1 << 20);
        assert!(limiter.memory_growing(0, 1 << 20, None).unwrap());
        assert_eq!(limiter.memory_refused, None);
        assert!(!limiter.memory_growing(1 << 20, 2 << 20, None).unwrap());
        assert_eq!(limiter.memory_refused, Some(2 << 20));
    }
}
