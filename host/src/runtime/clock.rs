//! The guest's `wasi:clocks/monotonic-clock`, which replaces wasmtime-wasi's
//! own so that no wait outlasts the call's deadline.
//!
//! Epoch interruption stops guest code, not a host call the guest is blocked
//! in: `sleep`, `wasi:io/poll.poll` and `pollable.block` wait inside the host,
//! and wasmtime-wasi turns a very long `subscribe-duration` into a wait that
//! never ends. Every pollable a handler can reach is either ready at once
//! (its stdout and stderr are captured, stdin is closed, there are no files
//! and every socket is refused before it exists) or a clock subscription made
//! here. A subscription ends at the earlier of what the guest asked for and
//! the deadline of the running call (`init` or `handle`); one cut short marks
//! the call as over its time, so the call is reported as a timeout even if
//! the guest returns before the epoch deadline stops it.
//!
//! Costs nothing on a call that does not wait: the deadline is one field set
//! before each call.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};

/// The deadline of the running call, and whether a wait was cut short by it.
#[derive(Debug)]
pub(crate) struct CallClock {
    /// Point zero of the guest's monotonic clock.
    origin: Instant,
    /// When the running call must end.
    deadline: Instant,
    /// Set by a subscription that ended at `deadline` instead of when the
    /// guest asked.
    cut_short: Arc<AtomicBool>,
}

impl CallClock {
    pub(crate) fn new() -> Self {
        let now = Instant::now();
        CallClock {
            origin: now,
            deadline: now,
            cut_short: Arc::default(),
        }
    }

    /// Start a call that may wait until `deadline` at most.
    pub(crate) fn start_call(&mut self, deadline: Instant) {
        self.deadline = deadline;
        self.cut_short.store(false, Ordering::Relaxed);
    }

    /// Whether a wait of the call was cut short by its deadline.
    pub(crate) fn was_cut_short(&self) -> bool {
        self.cut_short.load(Ordering::Relaxed)
    }

    fn now_nanos(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn subscribe(
        &mut self,
        table: &mut ResourceTable,
        wanted: Duration,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        let now = Instant::now();
        let until = now
            .checked_add(wanted)
            .filter(|&until| until <= self.deadline);
        let timer = match until {
            Some(until) => Timer {
                until,
                cut_short: None,
            },
            None => Timer {
                until: self.deadline.max(now),
                cut_short: Some(self.cut_short.clone()),
            },
        };
        let timer = table.push(timer)?;
        subscribe(table, timer)
    }
}

/// A clock subscription: ready at `until`. When `until` is the call's
/// deadline rather than the guest's wish, becoming ready says so.
struct Timer {
    until: Instant,
    cut_short: Option<Arc<AtomicBool>>,
}

#[wasmtime_wasi::async_trait]
impl Pollable for Timer {
    async fn ready(&mut self) {
        tokio::time::sleep_until(self.until.into()).await;
        if let Some(flag) = &self.cut_short {
            flag.store(true, Ordering::Relaxed);
        }
    }
}

/// What the clock interface needs from the store: the call clock and the
/// resource table, borrowed together.
pub(crate) struct ClockView<'a> {
    pub(crate) clock: &'a mut CallClock,
    pub(crate) table: &'a mut ResourceTable,
}

impl monotonic_clock::Host for ClockView<'_> {
    fn now(&mut self) -> wasmtime::Result<monotonic_clock::Instant> {
        Ok(self.clock.now_nanos())
    }

    fn resolution(&mut self) -> wasmtime::Result<monotonic_clock::Duration> {
        Ok(1)
    }

    fn subscribe_instant(
        &mut self,
        when: monotonic_clock::Instant,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        let wanted = Duration::from_nanos(when.saturating_sub(self.clock.now_nanos()));
        self.clock.subscribe(self.table, wanted)
    }

    fn subscribe_duration(
        &mut self,
        duration: monotonic_clock::Duration,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        self.clock
            .subscribe(self.table, Duration::from_nanos(duration))
    }
}

/// `HasData` for [`ClockView`].
pub(crate) struct HasClock;

impl wasmtime::component::HasData for HasClock {
    type Data<'a> = ClockView<'a>;
}
