//! Sinks carry out what handlers decide: a `save` goes to a file sink, a
//! `forward` to a Kafka or stdout sink.

mod file;
pub mod kafka;

pub use file::{FileSink, default_name, sanitize_name};
pub use kafka::KafkaSink;

/// A sink, ready to use.
#[derive(Debug)]
pub enum Sink {
    /// Files in a directory.
    File(FileSink),
    /// A Kafka topic.
    Kafka(KafkaSink),
    /// JSON lines on standard output.
    Stdout,
}
