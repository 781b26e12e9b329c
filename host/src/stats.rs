//! The host's counters, in one place: the source, the workers and the sinks
//! count into one shared [`Stats`], read for the exit summary (and by
//! anything that exports metrics).

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters, each updated with one relaxed atomic add. Counters written per
/// message by different threads sit on separate cache lines.
#[derive(Debug, Default)]
pub struct Stats {
    /// Messages read.
    pub messages: Counter,
    /// Messages no handler takes (committed as dropped).
    pub unrouted: Counter,
    /// Handler decisions with at least one save.
    pub saved: Counter,
    /// Handler decisions with at least one forward.
    pub forwarded: Counter,
    /// Handler decisions with no action.
    pub dropped: Counter,
    /// Handler failures (any policy).
    pub failed: Counter,
    /// Dead letters written.
    pub dead_lettered: Counter,
    /// Files the file sinks made durable.
    pub files: Counter,
    /// fsync calls the file sinks made (files and directories).
    pub fsyncs: Counter,
    /// The same events, and more, with their labels, for Prometheus.
    pub metrics: crate::telemetry::Metrics,
}

/// One counter, alone on its cache line.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct Counter(AtomicU64);

impl Counter {
    /// Count one.
    pub fn bump(&self) {
        self.add(1);
    }

    /// Count `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The count now.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Stats {
    /// A one-line summary.
    pub fn summary(&self) -> String {
        format!(
            "{} messages read, {} not for any handler; decisions: {} saved, {} forwarded, {} dropped, {} failed ({} dead-lettered); {} files saved with {} fsyncs",
            self.messages.get(),
            self.unrouted.get(),
            self.saved.get(),
            self.forwarded.get(),
            self.dropped.get(),
            self.failed.get(),
            self.dead_lettered.get(),
            self.files.get(),
            self.fsyncs.get(),
        )
    }
}
