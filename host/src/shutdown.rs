//! Stopping the host: a graceful stop asked for by a signal or the end of a
//! time range, or a halt on a [`Fatal`] error. Every thread looks at one
//! [`Shutdown`]; the first fatal error is kept and `main` prints it once.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a graceful stop may take in total (finishing in-flight work,
/// waiting for acknowledgements, the last commit) before the host gives up
/// on what is left and exits; what was not committed is handled again.
pub const SHUTDOWN_BUDGET: Duration = Duration::from_secs(20);

/// Why the host halted. Nothing past the message named in it is committed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fatal {
    /// A handler under `on_error = "stop"` failed.
    #[error(
        "handler `{handler}` (version {version}) failed on {at} and its policy is `stop`: {failure}"
    )]
    HandlerStopped {
        /// The handler.
        handler: String,
        /// Its version.
        version: String,
        /// `topic[partition]@offset`.
        at: String,
        /// What went wrong.
        failure: String,
    },
    /// A sink could not make an action durable (disk full, broker gone,
    /// stdout closed): an infrastructure failure, not the handler's.
    #[error(
        "sink `{sink}` failed on {at}: {reason}; it is not committed and will be handled again"
    )]
    Sink {
        /// The sink.
        sink: String,
        /// `topic[partition]@offset` of the source message.
        at: String,
        /// What went wrong.
        reason: String,
    },
    /// The Kafka source cannot go on.
    #[error("kafka source: {0}")]
    Source(String),
    /// Handler state could not be made durable before a commit.
    #[error(
        "handler state: {0}; nothing past it is committed and those messages are handled again"
    )]
    State(String),
}

/// The stop flag and the first fatal error, shared by every thread.
#[derive(Debug, Default)]
pub struct Shutdown {
    stop: AtomicBool,
    fatal: OnceLock<Fatal>,
    /// When the graceful stop began, for the overall deadline.
    began: OnceLock<Instant>,
}

impl Shutdown {
    /// Halt because something cannot be handled safely. The first error is
    /// kept; later ones are logged only.
    pub fn fail(&self, fatal: Fatal) {
        if let Err(later) = self.fatal.set(fatal) {
            tracing::warn!("also failed while stopping: {later}");
        } else {
            tracing::warn!("stopping on a fatal error (printed at exit)");
        }
        self.request_stop();
    }

    /// The first fatal error, if any.
    pub fn fatal(&self) -> Option<&Fatal> {
        self.fatal.get()
    }

    /// Whether a fatal error happened.
    pub fn failed(&self) -> bool {
        self.fatal.get().is_some()
    }

    /// Whether actions in flight are not worth waiting for: a sink, the
    /// source or handler state failed, so they may never complete. A handler
    /// halted under `stop` leaves the actions of the messages before its
    /// failure to complete, so the final commit covers them.
    pub fn in_flight_abandoned(&self) -> bool {
        matches!(
            self.fatal.get(),
            Some(Fatal::Sink { .. } | Fatal::Source(_) | Fatal::State(_))
        )
    }

    /// Ask for a graceful stop.
    pub fn request_stop(&self) {
        let _ = self.began.set(Instant::now());
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked for (or a fatal error forced one).
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The moment the stop must be over by ([`SHUTDOWN_BUDGET`] after it
    /// began), if stopping.
    pub fn deadline(&self) -> Option<Instant> {
        self.began.get().map(|at| *at + SHUTDOWN_BUDGET)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_fatal_error_is_kept_and_stops() {
        let shutdown = Shutdown::default();
        assert!(!shutdown.stopping() && shutdown.deadline().is_none());
        shutdown.fail(Fatal::Source("first".into()));
        shutdown.fail(Fatal::Source("second".into()));
        assert!(shutdown.stopping() && shutdown.deadline().is_some());
        assert_eq!(shutdown.fatal(), Some(&Fatal::Source("first".into())));
    }

    #[test]
    fn a_halted_handler_leaves_actions_in_flight_to_complete_and_a_failed_sink_does_not() {
        let halted = Shutdown::default();
        halted.fail(Fatal::HandlerStopped {
            handler: "h".into(),
            version: "v".into(),
            at: "t[0]@5".into(),
            failure: "trap".into(),
        });
        assert!(!halted.in_flight_abandoned());
        let sink = Shutdown::default();
        sink.fail(Fatal::Sink {
            sink: "out".into(),
            at: "t[0]@5".into(),
            reason: "broker gone".into(),
        });
        assert!(sink.in_flight_abandoned());
        assert!(!Shutdown::default().in_flight_abandoned());
    }
}
