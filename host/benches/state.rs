//! Handler state benchmark: prints a table, asserts nothing.
//!
//! `cargo bench -p alerthost --bench state` (builds nothing itself: build the
//! test guest first with `cargo build --release --target wasm32-wasip2
//! --manifest-path tests/guests/Cargo.toml -p stateful`).
//!
//! Direct runtime calls, no broker: the `stateful` test guest on a reused
//! instance, handling `noop` (a save, no state calls) and `tick` (one `get`
//! and one `set` of a counter, then the same save) with the writes applied to
//! the handler's view as the worker applies them; and the persist the source
//! runs before each commit (one durable redb transaction) after 1 and after
//! 1000 such messages.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alerthost::bindings::Message;
use alerthost::runtime::{Limits, LiveHandler, Runtime, RuntimeOptions};
use alerthost::state::{StateLimits, StateStore};

fn message(offset: i64, value: &str) -> Message {
    Message {
        topic: "bench".into(),
        partition: 0,
        offset,
        timestamp: None,
        key: None,
        value: value.as_bytes().to_vec(),
        headers: Vec::new(),
    }
}

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = root.join("tests/guests/target/wasm32-wasip2/release/stateful.wasm");
    let bytes = std::fs::read(&path).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e}; build it: cargo build --release --target wasm32-wasip2 --manifest-path tests/guests/Cargo.toml -p stateful",
            path.display()
        )
    })?;
    let dir = tempfile::tempdir()?;
    let store = StateStore::open(dir.path())?;
    let state = store.handler("bench", StateLimits::default())?;
    let runtime = Runtime::new(&RuntimeOptions::default())?;
    let code = Arc::new(runtime.load_bytes(&bytes, &Limits::default())?);
    let (mut handler, _) =
        LiveHandler::new(code, Vec::new(), Some(Arc::clone(&state))).map_err(anyhow::Error::new)?;

    // The next offset, read by the persists between runs.
    let offset = std::cell::Cell::new(0);
    let mut run = |command: &str, count: u32| -> anyhow::Result<Duration> {
        let started = Instant::now();
        for _ in 0..count {
            let msg = message(offset.get(), command);
            offset.set(offset.get() + 1);
            let report = handler.handle(&msg);
            report.outcome.map_err(anyhow::Error::new)?;
            state.apply(&msg.topic, msg.partition, msg.offset, report.writes);
        }
        Ok(started.elapsed() / count)
    };
    let position = |next: i64| [((Arc::from("bench"), 0), next)];

    // Warm up, and leave nothing pending.
    run("noop", 2_000)?;
    run("tick", 2_000)?;
    store.persist(&position(4_000), true)?;

    const MESSAGES: u32 = 20_000;
    let mut plain = Vec::new();
    let mut stateful = Vec::new();
    for _ in 0..5 {
        plain.push(run("noop", MESSAGES)?);
        stateful.push(run("tick", MESSAGES)?);
        store.persist(&position(offset.get()), true)?;
    }
    plain.sort();
    stateful.sort();
    let (plain, stateful) = (plain[2], stateful[2]);

    let mut persist = |batch: u32| -> anyhow::Result<Duration> {
        let mut times = Vec::new();
        for _ in 0..7 {
            run("tick", batch)?;
            let started = Instant::now();
            store.persist(&position(offset.get()), true)?;
            times.push(started.elapsed());
        }
        times.sort();
        Ok(times[3])
    };
    let persist_1 = persist(1)?;
    let persist_1000 = persist(1000)?;

    let micros = |d: Duration| format!("{:.2} µs", d.as_secs_f64() * 1e6);
    println!("component: {} ({} bytes)", path.display(), bytes.len());
    println!("{:<58} {:>12}", "measure (median of runs)", "time");
    println!(
        "{:<58} {:>12}",
        "handle, no state calls (`noop`)",
        micros(plain)
    );
    println!(
        "{:<58} {:>12}",
        "handle + one get + one set, applied (`tick`)",
        micros(stateful)
    );
    println!(
        "{:<58} {:>12}",
        "  cost of the get + set per message",
        micros(stateful.saturating_sub(plain))
    );
    println!(
        "{:<58} {:>12}",
        "persist before a commit, 1 message pending",
        micros(persist_1)
    );
    println!(
        "{:<58} {:>12}",
        "persist before a commit, 1000 messages pending",
        micros(persist_1000)
    );
    println!(
        "{:<58} {:>12}",
        "  per message at 1000 messages per commit",
        micros(persist_1000 / 1000)
    );
    Ok(())
}
