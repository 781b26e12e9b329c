//! Handler runtime benchmark: prints a table, asserts nothing.
//!
//! `cargo bench -p alerthost --bench runtime` (builds the examples first if
//! needed: `cargo build --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml`).
//! Measures one `handle` call of the `save-all` example on a reused instance
//! and on a fresh instance per message (pooling allocator), for 1 KiB and
//! 100 KiB messages, and the compile and cached-load time of a component.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alerthost::bindings::Message;
use alerthost::runtime::{HandlerInstance, Limits, Runtime, RuntimeOptions};

fn message(size: usize) -> Message {
    Message {
        topic: "bench".into(),
        partition: 0,
        offset: 0,
        timestamp: None,
        key: None,
        value: vec![b'x'; size],
        headers: Vec::new(),
    }
}

fn per_call(iterations: u32, mut f: impl FnMut()) -> Duration {
    for _ in 0..iterations / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    start.elapsed() / iterations
}

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = root.join("examples/target/wasm32-wasip2/release/save_all.wasm");
    let bytes = std::fs::read(&path).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e}; build the examples: cargo build --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml",
            path.display()
        )
    })?;
    let limits = Limits::default();
    println!("component: {} ({} bytes)", path.display(), bytes.len());
    println!("{:<44} {:>12}", "measure", "time");

    let plain = Runtime::new(&RuntimeOptions::default())?;
    let pooled = Runtime::new(&RuntimeOptions {
        pooling: true,
        ..RuntimeOptions::default()
    })?;
    let code = Arc::new(plain.load_bytes(&bytes, &limits)?);
    let pooled_code = Arc::new(pooled.load_bytes(&bytes, &limits)?);
    for size in [1024, 100 * 1024] {
        let msg = message(size);
        let (mut instance, _) =
            HandlerInstance::new(&code, &[], None).map_err(anyhow::Error::new)?;
        let reused = per_call(20_000, || {
            instance
                .handle(&msg)
                .outcome
                .expect("save-all handles everything");
        });
        println!(
            "{:<44} {:>9.2} µs",
            format!("handle, reused instance, {} KiB", size / 1024),
            reused.as_secs_f64() * 1e6
        );
        let fresh = per_call(2_000, || {
            let (mut instance, _) =
                HandlerInstance::new(&pooled_code, &[], None).expect("instantiate");
            instance
                .handle(&msg)
                .outcome
                .expect("save-all handles everything");
        });
        println!(
            "{:<44} {:>9.2} µs",
            format!("handle, fresh instance (pooling), {} KiB", size / 1024),
            fresh.as_secs_f64() * 1e6
        );
    }

    let compile = per_call(10, || {
        plain.load_bytes(&bytes, &limits).expect("compile");
    });
    println!(
        "{:<44} {:>9.2} ms",
        "compile (no cache)",
        compile.as_secs_f64() * 1e3
    );
    let cache_dir = tempfile::tempdir()?;
    let cached = Runtime::new(&RuntimeOptions {
        cache_dir: Some(cache_dir.path().to_owned()),
        ..RuntimeOptions::default()
    })?;
    cached.load_bytes(&bytes, &limits)?;
    let load = per_call(100, || {
        let code = cached.load_bytes(&bytes, &limits).expect("load");
        assert!(code.info().from_cache);
    });
    println!(
        "{:<44} {:>9.2} ms",
        "load from the artifact cache",
        load.as_secs_f64() * 1e3
    );
    Ok(())
}
