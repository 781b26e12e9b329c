//! Logging through the host. Inside a component each line goes to the host's
//! `log` import (capped per message by the host); in native tests it goes to
//! standard error.

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Fine-grained detail.
    Trace,
    /// Detail useful when debugging a handler.
    Debug,
    /// Normal operation.
    Info,
    /// Something an operator should look at.
    Warn,
    /// A failure.
    Error,
}

/// Write one line to the host's log.
pub fn log(level: Level, text: &str) {
    #[cfg(target_family = "wasm")]
    {
        use crate::__private::bindings::alerthost::handler::types::Level as L;
        let level = match level {
            Level::Trace => L::Trace,
            Level::Debug => L::Debug,
            Level::Info => L::Info,
            Level::Warn => L::Warn,
            Level::Error => L::Error,
        };
        crate::__private::bindings::log(level, text);
    }
    #[cfg(not(target_family = "wasm"))]
    eprintln!("[{level:?}] {text}");
}

/// Write a debug line.
pub fn debug(text: &str) {
    log(Level::Debug, text);
}

/// Write an info line.
pub fn info(text: &str) {
    log(Level::Info, text);
}

/// Write a warning.
pub fn warn(text: &str) {
    log(Level::Warn, text);
}

/// Write an error line.
pub fn error(text: &str) {
    log(Level::Error, text);
}
