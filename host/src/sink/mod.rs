//! Sinks carry out what handlers decide: a `save` goes to a file sink.

mod file;

pub use file::{FileSink, default_name, sanitize_name};
