//! What a handler writes: lines through the `log` import and bytes on its
//! stdout/stderr. Both are captured per message under one cap, so a noisy or
//! hostile handler cannot flood the host's log.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use crate::bindings::Level;

/// Where a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogSource {
    /// The `log` import.
    Log,
    /// The handler's standard output.
    Stdout,
    /// The handler's standard error.
    Stderr,
}

/// One captured line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogLine {
    /// Severity (stdout counts as info, stderr as warn).
    #[serde(serialize_with = "level_name")]
    pub level: Level,
    /// Where it came from.
    pub source: LogSource,
    /// The text, cut to the per-line cap.
    pub text: String,
}

fn level_name<S: serde::Serializer>(level: &Level, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(level_str(*level))
}

/// The lowercase name of a level.
pub fn level_str(level: Level) -> &'static str {
    match level {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

/// The lines of one call, and how many were dropped over the cap.
#[derive(Debug)]
pub(crate) struct GuestLog {
    max_lines: u32,
    max_line_bytes: usize,
    lines: Vec<LogLine>,
    dropped: u32,
    stdout: CapturedOutput,
    stderr: CapturedOutput,
}

impl GuestLog {
    pub(crate) fn new(max_lines: u32, max_line_bytes: usize) -> Self {
        // Raw stdio is held until the call returns; beyond what the line cap
        // could ever show, bytes are counted as dropped rather than kept.
        let byte_cap = (max_lines as usize).saturating_mul(max_line_bytes + 1);
        GuestLog {
            max_lines,
            max_line_bytes,
            lines: Vec::new(),
            dropped: 0,
            stdout: CapturedOutput::new(byte_cap),
            stderr: CapturedOutput::new(byte_cap),
        }
    }

    pub(crate) fn stdout(&self) -> CapturedOutput {
        self.stdout.clone()
    }

    pub(crate) fn stderr(&self) -> CapturedOutput {
        self.stderr.clone()
    }

    pub(crate) fn push(&mut self, level: Level, source: LogSource, text: &str) {
        if self.lines.len() >= self.max_lines as usize {
            self.dropped = self.dropped.saturating_add(1);
            return;
        }
        self.lines.push(LogLine {
            level,
            source,
            text: clean(text, self.max_line_bytes),
        });
    }

    /// Move captured stdio into lines and hand back everything of this call.
    pub(crate) fn take(&mut self) -> (Vec<LogLine>, u32) {
        let taken = [
            (self.stdout.take(), Level::Info, LogSource::Stdout),
            (self.stderr.take(), Level::Warn, LogSource::Stderr),
        ];
        for ((bytes, overflow), level, source) in taken {
            // Lines end at `\n` (a `\r` before it goes too); any other
            // control character left in a line is escaped by `push`. Most
            // calls print nothing: no text to decode then.
            let text = if bytes.is_empty() {
                Default::default()
            } else {
                String::from_utf8_lossy(&bytes)
            };
            for line in text.lines() {
                if line.trim().is_empty() {
                    continue;
                }
                self.push(level, source, line);
            }
            if overflow {
                self.dropped = self.dropped.saturating_add(1);
            }
        }
        let dropped = std::mem::take(&mut self.dropped);
        (std::mem::take(&mut self.lines), dropped)
    }
}

/// Guest text made fit for one host log line: control characters (line
/// feeds, carriage returns, terminal escape sequences, C1 controls) and the
/// Unicode line, paragraph and bidirectional-override characters become
/// visible escapes (`\n`, `\r`, `\t`, `\u{1b}`), so a guest can neither
/// start a log line of its own nor restyle one; then cut to at most `max`
/// bytes on a character boundary, marked with `…`.
pub(crate) fn clean(text: &str, max: usize) -> String {
    if text.len() <= max && !text.chars().any(needs_escape) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len().min(max) + '…'.len_utf8());
    for c in text.chars() {
        let start = out.len();
        if needs_escape(c) {
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                _ => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            }
        } else {
            out.push(c);
        }
        if out.len() > max {
            out.truncate(start);
            out.push('…');
            break;
        }
    }
    out
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

#[derive(Debug, Default)]
struct Captured {
    bytes: Vec<u8>,
    overflow: bool,
}

/// A guest's stdout or stderr: bytes are kept up to a cap, the rest is
/// discarded (writes still succeed, so a chatty guest is not made to fail).
#[derive(Debug, Clone)]
pub(crate) struct CapturedOutput {
    cap: usize,
    inner: Arc<Mutex<Captured>>,
    /// Set by every write: most calls write nothing, and then `take` does
    /// not lock.
    written: Arc<AtomicBool>,
}

impl CapturedOutput {
    fn new(cap: usize) -> Self {
        CapturedOutput {
            cap,
            inner: Arc::default(),
            written: Arc::default(),
        }
    }

    fn take(&self) -> (Vec<u8>, bool) {
        if !self.written.swap(false, Ordering::Acquire) {
            return (Vec::new(), false);
        }
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let taken = std::mem::take(&mut *inner);
        (taken.bytes, taken.overflow)
    }

    fn append(&self, bytes: &[u8]) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let room = self.cap.saturating_sub(inner.bytes.len());
        if bytes.len() > room {
            inner.overflow = true;
        }
        inner
            .bytes
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
        self.written.store(true, Ordering::Release);
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for CapturedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CapturedOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.append(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_lines_and_cuts_long_ones() {
        let mut log = GuestLog::new(2, 4);
        log.push(Level::Info, LogSource::Log, "abcdef");
        log.push(Level::Warn, LogSource::Log, "é1234");
        log.push(Level::Error, LogSource::Log, "dropped");
        let (lines, dropped) = log.take();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].text, "abcd…");
        assert_eq!(lines[1].text, "é12…");
        assert_eq!(dropped, 1);
        assert_eq!(
            log.take(),
            (Vec::new(), 0),
            "take starts the next call empty"
        );
    }

    #[test]
    fn stdio_becomes_lines_under_the_same_cap() {
        let mut log = GuestLog::new(3, 100);
        let mut out = log.stdout();
        out.write(Bytes::from_static(b"one\ntwo\n")).unwrap();
        let mut err = log.stderr();
        err.write(Bytes::from_static(b"three\nfour\n")).unwrap();
        let (lines, dropped) = log.take();
        let texts: Vec<_> = lines.iter().map(|l| (l.source, l.text.as_str())).collect();
        assert_eq!(
            texts,
            [
                (LogSource::Stdout, "one"),
                (LogSource::Stdout, "two"),
                (LogSource::Stderr, "three")
            ]
        );
        assert_eq!(dropped, 1);
    }

    #[test]
    fn guest_text_cannot_forge_host_log_lines() {
        let forged = "ok\n2026-12-04T00:00:00Z  INFO alerthost: handler swapped\r\x1b[2K\u{2028}x";
        let text = clean(forged, 1024);
        assert!(
            !text.chars().any(|c| c.is_control() || c == '\u{2028}'),
            "{text:?}"
        );
        assert_eq!(
            text,
            "ok\\n2026-12-04T00:00:00Z  INFO alerthost: handler swapped\\r\\u{1b}[2K\\u{2028}x"
        );
        let mut log = GuestLog::new(4, 1024);
        log.push(Level::Info, LogSource::Log, forged);
        let mut out = log.stdout();
        out.write(Bytes::from_static(b"a\x1b[31mred\rb\n")).unwrap();
        let (lines, _) = log.take();
        for line in &lines {
            assert!(!line.text.chars().any(char::is_control), "{:?}", line.text);
        }
    }

    #[test]
    fn escapes_count_against_the_line_cap() {
        let text = clean(&"\n".repeat(1000), 10);
        assert!(text.len() <= 10 + '…'.len_utf8(), "{text:?}");
        assert!(text.ends_with('…'));
    }
}
