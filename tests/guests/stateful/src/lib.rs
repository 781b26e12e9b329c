//! Test guest `stateful`: a handler that keeps state, written against the
//! `alerthost:handler@0.2.0` world directly so it depends on the host's
//! contract alone.
//!
//! A message value is a command; anything else is an event id:
//! - `set K V` / `ttl K V MS`: store V under K (with a TTL) and drop;
//! - `get K`: save the value of K, or `<none>`;
//! - `del K`: delete K and drop;
//! - `hold K MS`: set K to `x`, then sleep MS milliseconds, and drop;
//! - `trap K`, `spin K`, `fail K`: set K to `x`, then panic, loop past the
//!   time limit, or return a transient error;
//! - `refused K`: set K to `x` and forward to a sink the handler may not
//!   use, so the host refuses the output;
//! - `key N`, `value K N`: set a key of N bytes, a value of N bytes
//!   under K;
//! - `keys N`: set N keys `k0`..;
//! - `tick`: count it (`ticks`) and save `tick #n`: unlike a first
//!   sighting, handling it twice changes the state and the output;
//! - `noop`: save `tick #0` without touching the state (the benchmark's
//!   baseline for `tick`);
//! - any other value ID: the first time, count it (`count`), remember it
//!   (`seen/ID`) and save `ID #n` (or forward it to the sink named by the
//!   `forward` parameter); a repeat is dropped.
//!
//! `init` logs the value of the `init_get` parameter's key, and calls
//! `set` when the `init_set` parameter is given.

// The generated glue needs unsafe, and lowers `message` into a long
// signature; both lints are for handler code.
#![allow(unsafe_code, clippy::too_many_arguments)]

wit_bindgen::generate!({
    path: "../../../wit",
    world: "alerthost:handler/handler",
});

use alerthost::handler::state;
use std::sync::OnceLock;

use alerthost::handler::types::{ForwardOptions, SaveOptions};

struct Stateful;

/// Where first sightings go: a sink to forward to, or a save.
static FORWARD: OnceLock<String> = OnceLock::new();

fn output(value: Vec<u8>) -> Vec<Action> {
    match FORWARD.get() {
        Some(sink) => vec![Action::Forward(ForwardOptions {
            sink: sink.clone(),
            key: None,
            value: Some(value),
            headers: None,
        })],
        None => save(value),
    }
}

fn save(value: Vec<u8>) -> Vec<Action> {
    vec![Action::Save(SaveOptions {
        name: None,
        value: Some(value),
    })]
}

impl Guest for Stateful {
    fn init(params: Vec<(String, String)>) -> Result<(), String> {
        for (name, value) in params {
            match name.as_str() {
                "init_get" => {
                    let got = state::get(&value).map(|v| String::from_utf8_lossy(&v).into_owned());
                    log(Level::Info, &format!("init read {value}: {got:?}"));
                }
                "init_set" => state::set(&value, b"from init", None),
                "forward" => {
                    let _ = FORWARD.set(value);
                }
                _ => return Err(format!("unknown parameter {name}")),
            }
        }
        Ok(())
    }

    fn handle(msg: Message) -> Result<Vec<Action>, HandlerError> {
        let text = String::from_utf8_lossy(&msg.value).into_owned();
        let words: Vec<&str> = text.split_whitespace().collect();
        let number =
            |at: usize| -> usize { words.get(at).and_then(|n| n.parse().ok()).unwrap_or(0) };
        match words.as_slice() {
            ["set", key, value] => state::set(key, value.as_bytes(), None),
            ["ttl", key, value, _] => state::set(key, value.as_bytes(), Some(number(3) as u64)),
            ["get", key] => {
                return Ok(save(state::get(key).unwrap_or_else(|| b"<none>".to_vec())));
            }
            ["del", key] => state::delete(key),
            ["hold", key, _] => {
                state::set(key, b"x", None);
                std::thread::sleep(std::time::Duration::from_millis(number(2) as u64));
            }
            ["trap", key] => {
                state::set(key, b"x", None);
                panic!("trapping after a state write");
            }
            ["spin", key] => {
                state::set(key, b"x", None);
                #[allow(clippy::empty_loop)]
                loop {}
            }
            ["fail", key] => {
                state::set(key, b"x", None);
                return Err(HandlerError::Transient(
                    "failing after a state write".into(),
                ));
            }
            ["refused", key] => {
                state::set(key, b"x", None);
                return Ok(vec![Action::Forward(ForwardOptions {
                    sink: "not-allowed".into(),
                    key: None,
                    value: None,
                    headers: None,
                })]);
            }
            ["key", _] => state::set(&"k".repeat(number(1)), b"", None),
            ["value", key, _] => state::set(key, &vec![0; number(2)], None),
            ["keys", _] => {
                for i in 0..number(1) {
                    state::set(&format!("k{i}"), b"", None);
                }
            }
            ["noop"] => return Ok(output(b"tick #0".to_vec())),
            ["tick"] => {
                let ticks = state::get("ticks")
                    .and_then(|v| String::from_utf8(v).ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
                    + 1;
                state::set("ticks", ticks.to_string().as_bytes(), None);
                return Ok(output(format!("tick #{ticks}").into_bytes()));
            }
            _ => {
                let seen = format!("seen/{text}");
                if state::get(&seen).is_some() {
                    return Ok(Vec::new());
                }
                let count = state::get("count")
                    .and_then(|v| String::from_utf8(v).ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
                    + 1;
                state::set("count", count.to_string().as_bytes(), None);
                state::set(&seen, b"1", None);
                return Ok(output(format!("{text} #{count}").into_bytes()));
            }
        }
        Ok(Vec::new())
    }
}

export!(Stateful);
