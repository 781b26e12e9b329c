//! alerthost-guest: write alerthost message handlers in Rust.
//!
//! A handler is a type that implements [`Handler`]. [`export_handler!`] turns it
//! into a WebAssembly component of the `alerthost:handler` world; the types here
//! are plain Rust, so the same handler logic is unit-tested natively with
//! `cargo test`. [`payload`] reads the formats GCN alerts come in; [`state`]
//! remembers across messages, with an in-memory stand-in in [`testing`] for
//! native tests.
//!
//! ```no_run
//! use alerthost_guest::{Action, Handler, HandlerError, Message, Params};
//!
//! struct SaveAll;
//!
//! impl Handler for SaveAll {
//!     fn init(_params: &Params) -> Result<Self, String> {
//!         Ok(SaveAll)
//!     }
//!     fn handle(&mut self, _msg: &Message) -> Result<Vec<Action>, HandlerError> {
//!         Ok(vec![Action::save()])
//!     }
//! }
//!
//! alerthost_guest::export_handler!(SaveAll);
//! ```

mod glue;
mod log;
pub mod payload;
pub mod state;
pub mod testing;
mod types;

pub use log::{Level, debug, error, info, log, warn};
pub use types::{
    Action, Forward, Handler, HandlerError, Header, Message, Params, Save, Timestamp, TimestampKind,
};

/// The version of the `alerthost:handler` WIT package this SDK targets.
pub const WIT_VERSION: &str = "0.2.0";

#[doc(hidden)]
pub mod __private {
    pub use crate::glue::{Guest, handle, init};

    // Generated code: its shape (raw ABI calls, wide lowered signatures) is
    // wit-bindgen's, not ours to lint.
    #[allow(
        unsafe_code,
        missing_debug_implementations,
        unused_qualifications,
        clippy::all
    )]
    pub mod bindings {
        wit_bindgen::generate!({
            path: "../wit",
            world: "alerthost:handler/handler",
            pub_export_macro: true,
            export_macro_name: "export",
            default_bindings_module: "alerthost_guest::__private::bindings",
        });
    }
}

/// Export a [`Handler`] implementation as this component's `init` and `handle`.
///
/// Use it once, at the top level of the crate that builds the component.
#[macro_export]
macro_rules! export_handler {
    ($handler:ty) => {
        const _: () = {
            struct AlerthostExport;

            impl $crate::__private::Guest for AlerthostExport {
                fn init(
                    params: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::__private::init::<$handler>(params)
                }

                fn handle(
                    msg: $crate::__private::bindings::alerthost::handler::types::Message,
                ) -> ::std::result::Result<
                    ::std::vec::Vec<$crate::__private::bindings::alerthost::handler::types::Action>,
                    $crate::__private::bindings::alerthost::handler::types::HandlerError,
                > {
                    $crate::__private::handle::<$handler>(msg)
                }
            }

            $crate::__private::bindings::export!(AlerthostExport);
        };
    };
}
