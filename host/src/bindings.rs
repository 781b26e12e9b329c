//! The one place host bindings for the `alerthost:handler` world are generated.
//!
//! The bindings are for `0.2.0`. Components built for `0.1.0` are served by
//! the same bindings: the two worlds' types and exports are identical, and
//! `0.1.0` has no `state` import. Its `alerthost:handler/types@0.1.0`
//! import holds only types, which wasmtime checks structurally and needs no
//! definition for.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "alerthost:handler/handler",
    // A state call over a limit (or a write in `init`) stops the guest.
    imports: {
        "alerthost:handler/state": trappable,
    },
});

pub use self::alerthost::handler::types::{
    ForwardOptions, Header, SaveOptions, Timestamp, TimestampKind,
};

/// The WIT package and version this host speaks.
pub const WIT_PACKAGE: &str = "alerthost:handler";
/// The version of [`WIT_PACKAGE`] this host speaks.
pub const WIT_VERSION: &str = "0.2.0";
/// Older versions of [`WIT_PACKAGE`] whose components this host still runs.
pub const OLDER_WIT_VERSIONS: &[&str] = &["0.1.0"];
