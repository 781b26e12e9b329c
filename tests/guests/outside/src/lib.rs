//! Test guest `outside`: a handler that also imports an interface the host does
//! not provide, standing for any outside access (an HTTP client, a key-value
//! store), and calls it so the import stays in the component. The host must
//! refuse it at load, naming the import. (The real `wasi:http` cannot be
//! declared here: Rust's standard library links its own definition.)

// The generated glue needs unsafe; the lint is for handler code.
#![allow(unsafe_code)]

wit_bindgen::generate!({
    inline: r#"
        package test:http-guest;

        package acme:outside@1.0.0 {
            interface fetch {
                handle: func();
            }
        }

        world http-guest {
            import acme:outside/fetch@1.0.0;
            export init: func(params: list<tuple<string, string>>) -> result<_, string>;
            export handle: func() -> result<_, string>;
        }
    "#,
    generate_all,
});

struct HttpGuest;

impl Guest for HttpGuest {
    fn init(_params: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn handle() -> Result<(), String> {
        acme::outside::fetch::handle();
        Ok(())
    }
}

export!(HttpGuest);
