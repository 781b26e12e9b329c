//! alerthost: consume alerts from Kafka and run sandboxed WebAssembly
//! handlers on every message.
//!
//! The host owns Kafka and delivery; a handler (a component of the
//! `alerthost:handler` world, see `wit/`) decides per message to save it,
//! forward it or drop it. This crate is the host: [`runtime`] runs handlers,
//! [`sink`] carries out their actions.

pub mod bindings;
pub mod cli;
pub mod commands;
pub mod commit;
pub mod config;
pub mod pipeline;
pub mod reload;
pub mod runtime;
pub mod sink;
pub mod source;
pub mod telemetry;
