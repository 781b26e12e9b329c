//! Per-handler sandbox limits, their defaults, and the memory limiter that
//! enforces them inside a `Store`.

use std::time::Duration;

use serde::Deserialize;

/// Limits on what one handler may use. Every field has a default; see
/// [`Limits::default`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Memory per instance, in MiB (default 64): every linear memory and
    /// table of the component counts against it together (table elements at
    /// 8 bytes each).
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
    /// Wall time to compile the component, in milliseconds (default
    /// 60 000). Compilation runs in a child process that is killed at the
    /// limit; the component is refused and nothing is cached.
    pub max_compile_ms: u64,
    /// Address space of the process that compiles the component, in MiB
    /// (default 2048; the compiler's own code and threads take under
    /// 100 MiB of it). A compilation that needs more fails there, not in the
    /// host; the component is refused and nothing is cached.
    pub max_compile_mib: u64,
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
            max_compile_ms: 60_000,
            max_compile_mib: 2048,
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

    /// Wall time to compile the component.
    pub fn max_compile_time(&self) -> Duration {
        Duration::from_millis(self.max_compile_ms)
    }

    /// Address space of the compiling process, in bytes.
    pub fn max_compile_bytes(&self) -> u64 {
        self.max_compile_mib.saturating_mul(1 << 20)
    }

    /// Bytes the host accepts from the guest in one call (wasmtime's
    /// "hostcall fuel"), counted while values are lifted out of the guest:
    /// everything `max_actions` actions of `max_action_kib` each can carry,
    /// plus room for the per-element bookkeeping of lists and for an error
    /// text. A call returning more is stopped with a `limit` failure before
    /// the host allocates it.
    pub fn hostcall_bytes(&self) -> usize {
        const SLACK: usize = 1 << 20;
        self.max_actions
            .saturating_mul(self.max_action_bytes().saturating_add(SLACK))
            .saturating_add(SLACK)
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
            ("max_compile_ms", self.max_compile_ms),
            ("max_compile_mib", self.max_compile_mib),
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

/// Linear memories one instance may have, across all its core instances.
/// Rust guests have one, Python and JavaScript components a handful; each
/// reserves address space even when empty.
pub const MAX_MEMORIES: usize = 16;
/// Tables one instance may have, across all its core instances.
pub const MAX_TABLES: usize = 64;
/// Core instances one component may create.
pub const MAX_CORE_INSTANCES: usize = 128;
/// What one table element is counted as against the memory limit: a
/// function reference is a pointer.
const TABLE_ELEMENT_BYTES: usize = 8;

/// Enforces the memory limit on the sum of all memories and tables of one
/// store, and remembers whether it refused a growth, so a trap that follows
/// can be reported as a memory limit and not as a crash.
#[derive(Debug)]
pub(crate) struct Limiter {
    pub(crate) memory_bytes: usize,
    /// Bytes in use: memories plus tables, as granted so far.
    used: usize,
    pub(crate) memory_refused: Option<usize>,
}

impl Limiter {
    pub(crate) fn new(memory_bytes: usize) -> Self {
        Limiter {
            memory_bytes,
            used: 0,
            memory_refused: None,
        }
    }

    /// Grant `current -> desired` if the store stays within its limit.
    fn grow(&mut self, current: usize, desired: usize) -> bool {
        let total = self.used.saturating_add(desired.saturating_sub(current));
        if total > self.memory_bytes {
            self.memory_refused = Some(total);
            return false;
        }
        self.used = total;
        true
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.grow(current, desired))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.grow(
            current.saturating_mul(TABLE_ELEMENT_BYTES),
            desired.saturating_mul(TABLE_ELEMENT_BYTES),
        ))
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
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
        assert_eq!(limits.max_compile_time(), Duration::from_secs(60));
        assert_eq!(limits.max_compile_bytes(), 2048 << 20);
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

    #[test]
    fn limiter_counts_all_memories_and_tables_of_an_instance_together() {
        use wasmtime::ResourceLimiter;
        let mut limiter = Limiter::new(64 << 20);
        assert!(limiter.memory_growing(0, 40 << 20, None).unwrap());
        assert!(
            !limiter.memory_growing(0, 40 << 20, None).unwrap(),
            "a second 40 MiB memory takes the instance over 64 MiB"
        );
        assert!(limiter.memory_growing(0, 20 << 20, None).unwrap());
        assert!(
            !limiter.table_growing(0, 1 << 20, None).unwrap(),
            "a table of 1 Mi elements (8 MiB) no longer fits"
        );
        assert!(limiter.table_growing(0, 1000, None).unwrap());
        assert!(limiter.memories() <= MAX_MEMORIES);
        assert!(limiter.tables() <= MAX_TABLES);
        assert!(limiter.instances() <= MAX_CORE_INSTANCES);
    }
}
