//! Test guest `no-handle`: a component of a world that looks like
//! `alerthost:handler/handler` but exports only `init`, as an outdated or
//! hand-written handler might. The host must refuse it at load time with an
//! error that names the missing `handle` export. It uses `wit-bindgen`
//! directly, since the SDK cannot build such a component.

// `generate!` and `export!` emit the unsafe canonical-ABI glue.
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({
        inline: r#"
            package alerthost:handler@0.1.0;

            world handler {
                export init: func(params: list<tuple<string, string>>) -> result<_, string>;
            }
        "#,
    });

    struct NoHandle;

    impl Guest for NoHandle {
        fn init(_params: Vec<(String, String)>) -> Result<(), String> {
            Ok(())
        }
    }

    export!(NoHandle);
}
