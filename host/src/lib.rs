//! alerthost: consume alerts from Kafka and run sandboxed WebAssembly
//! handlers on every message.
//!
//! The host owns Kafka and delivery; a handler (a component of the
//! `alerthost:handler` world, see `wit/`) decides per message to save it,
//! forward it or drop it.
//!
//! Data flows one way: [`source`] (the Kafka consumer) → [`router`] (topic
//! → handlers) → [`worker`] (runs the [`runtime`]'s handler instances) →
//! [`sink`]s (file, Kafka, stdout). Completion flows back only through the
//! acknowledgement tokens of [`commit`]: each message's token is cloned by
//! every pending action and dropped when it is durable; the source commits
//! per partition what the tokens say is done. [`pipeline`] is the one place
//! that wires these together.
//!
//! Handler [`state`] rides the same path: writes are buffered per call,
//! applied to the handler's view when the message's actions are accepted,
//! and made durable by the source, through [`commit::Durability`], just
//! before it commits the positions they lie below.
//!
//! Concurrency model:
//! - one consumer thread (the source) serves rebalances, errors and
//!   commits; it reads no message itself;
//! - worker threads (`runtime.workers`) take partitions with messages from
//!   a shared pool, one batch (up to 64 messages) at a time, and read each
//!   batch from the partition's queue themselves: no handoff between threads
//!   per message, one worker at a time per partition (so each is handled in
//!   order), and no worker idle while another has two busy partitions;
//!   wasm calls are plain blocking calls on these threads;
//! - each file sink has a syncer thread (group fsync), each Kafka sink
//!   librdkafka's threads (delivery reports drop tokens);
//! - per message, only the partition's own commit track is locked (by its
//!   worker and by sinks completing actions), never a lock shared by all;
//! - a small tokio runtime serves signals; [`reload`] watches files on a
//!   thread of its own and swaps handler versions atomically.
//!
//! Stopping is one [`shutdown::Shutdown`]: a graceful stop or a typed fatal
//! error, printed once by `main`.

pub mod bindings;
pub mod cli;
pub mod commands;
pub mod commit;
pub mod config;
pub mod pipeline;
pub mod reload;
pub mod router;
pub mod runtime;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod state;
pub mod stats;
pub mod telemetry;
pub mod worker;
