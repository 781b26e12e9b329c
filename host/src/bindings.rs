//! The one place host bindings for the `alerthost:handler` world are generated.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "alerthost:handler/handler",
});

pub use self::alerthost::handler::types::{
    ForwardOptions, Header, SaveOptions, Timestamp, TimestampKind,
};

/// The WIT package and version this host speaks.
pub const WIT_PACKAGE: &str = "alerthost:handler";
/// The version of [`WIT_PACKAGE`] this host speaks.
pub const WIT_VERSION: &str = "0.1.0";
