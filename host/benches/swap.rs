//! Hot-swap benchmark: prints a table, asserts nothing.
//!
//! `cargo bench -p alerthost --bench swap` (builds the examples first if
//! needed: `cargo build --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml`).
//!
//! Per-message latency through the real handler path (`pipeline::HandlerSet`,
//! what each worker runs, the `gbm-subthreshold` example on a Fermi GBM sub-threshold
//! VOEvent, which it parses and drops), with and without a hot swap every
//! second. Swaps go through `reload::Reloader` as a file change does: the
//! component file is replaced (alternately by two versions with the same
//! code, the second with a custom section appended) and the handler
//! reloaded: read, compile (in a child process, as the host does) or load
//! from the artifact cache, check, trial
//! `init`, swap; the worker takes the new version up before its next
//! message, making a fresh instance. No Kafka: messages are dispatched to
//! the worker directly, and a message counts as handled when the commit
//! tracker releases it.
//!
//! Messages are scheduled at a fixed rate and latency is measured from each
//! message's scheduled time, so a stall also counts against the messages
//! that waited behind it.
//!
//! Caveat: on a 2-core machine the compile of a new version competes with
//! the worker for CPU; that is part of what is measured.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use alerthost::bindings::{Message, MessageView};
use alerthost::commit::{InflightBudget, PartitionTrack};
use alerthost::config::Config;
use alerthost::pipeline::{Deployed, HandlerSet, HandlerSpec};
use alerthost::reload::Reloader;
use alerthost::runtime::{Compiler, Runtime, RuntimeOptions};
use alerthost::shutdown::Shutdown;
use alerthost::sink::{FileSink, Sink};
use alerthost::stats::Stats;
use arc_swap::ArcSwap;

/// Messages per second offered to the worker.
const RATE: u32 = 1000;
/// Length of each scenario.
const RUN: Duration = Duration::from_secs(10);
/// Time between two swaps.
const SWAP_EVERY: Duration = Duration::from_secs(1);

/// `bytes` with a component custom section appended: same code, another
/// content hash, so another handler version.
fn with_custom_section(bytes: &[u8], name: &str, payload: &[u8]) -> Vec<u8> {
    use wasm_encoder::Encode as _;
    let mut out = bytes.to_vec();
    // A custom section (id 0) is valid at the top level of a component as
    // of a module.
    out.push(0x00);
    wasm_encoder::CustomSection {
        name: name.into(),
        data: payload.into(),
    }
    .encode(&mut out);
    out
}

fn replace_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("wasm.new");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// How swaps are made during a scenario.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Swaps {
    None,
    /// Alternate two versions, both in the artifact cache after their first
    /// load (a rollback, or a version seen before).
    Cached,
    /// A version never seen before each time: every swap compiles.
    Compiled,
}

struct Outcome {
    /// Every message.
    latencies: Vec<Duration>,
    /// The first message after each swap: the worker makes an instance of
    /// the new version before handling it.
    after_swap: Vec<Duration>,
    /// Each `reload_handler` call (load, check, trial init, swap).
    reloads: Vec<Duration>,
}

fn scenario(swaps: Swaps, component: &[u8], value: &[u8], dir: &Path) -> anyhow::Result<Outcome> {
    let cache_dir = dir.join("cache");
    let handler_path = dir.join("handler.wasm");
    std::fs::write(&handler_path, component)?;
    let config_path = dir.join("alerthost.toml");
    std::fs::write(
        &config_path,
        r#"[source]
bootstrap_servers = "127.0.0.1:1"
topics = ["bench"]

[[handler]]
name = "gbm"
component = "handler.wasm"
topics = ["bench"]
"#,
    )?;
    let plan = Config::load(&config_path)?;
    let runtime = Arc::new(Runtime::new(&RuntimeOptions {
        fuel: false,
        pooling: false,
        cache_dir: (swaps != Swaps::Compiled).then(|| cache_dir.clone()),
        // As `alerthost run` compiles: in a bounded child process.
        compiler: Compiler::Process(env!("CARGO_BIN_EXE_alerthost").into()),
    })?);
    let handler = &plan.handlers[0];
    let code = runtime.load_file(&handler.config.component, &handler.config.limits)?;
    let handlers = Arc::new(vec![HandlerSpec {
        name: handler.config.name.clone(),
        current: ArcSwap::from_pointee(Deployed {
            code: Arc::new(code),
            params: Vec::new(),
        }),
        topics: handler.topics.clone(),
        save_to: None,
        forward_to: Vec::new(),
        on_error: handler.config.on_error,
        retries: handler.config.retries,
        dead_letter: handler.dead_letter.clone(),
        state: None,
    }]);
    let mut sinks = BTreeMap::new();
    sinks.insert(
        handler.dead_letter.clone(),
        Sink::File(FileSink::start(
            &handler.dead_letter,
            dir.join("dead-letter"),
            Arc::default(),
        )?),
    );
    let shutdown = Arc::new(Shutdown::default());
    let stats = Arc::new(Stats::default());
    let mut set = HandlerSet::new(
        handlers.clone(),
        Arc::new(sinks),
        Arc::clone(&shutdown),
        Arc::clone(&stats),
        false,
    )?;
    let track = PartitionTrack::new(
        "bench".into(),
        0,
        1,
        shutdown,
        Arc::new(InflightBudget::new(u64::MAX)),
    );
    let reloader = Reloader::new(runtime, handlers.clone(), plan);

    // Warm the cache with the second version, as a swap back would find it.
    let second = with_custom_section(component, "alerthost-bench", b"0");
    if swaps == Swaps::Cached {
        replace_atomically(&handler_path, &second)?;
        reloader.reload_handler(0, None, None)?;
        replace_atomically(&handler_path, component)?;
        reloader.reload_handler(0, None, None)?;
    }

    let done = AtomicBool::new(false);
    let count = (RUN.as_secs_f64() * f64::from(RATE)) as usize;
    let interval = Duration::from_secs(1) / RATE;
    std::thread::scope(|scope| -> anyhow::Result<Outcome> {
        let swapper = scope.spawn(|| -> anyhow::Result<Vec<Duration>> {
            let mut reloads = Vec::new();
            if swaps == Swaps::None {
                return Ok(reloads);
            }
            let mut n = 0_u32;
            let mut next = Instant::now() + SWAP_EVERY;
            while !done.load(Ordering::SeqCst) {
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
                next += SWAP_EVERY;
                if done.load(Ordering::SeqCst) {
                    break;
                }
                n += 1;
                let bytes = match swaps {
                    Swaps::Cached if n % 2 == 1 => second.clone(),
                    Swaps::Cached => component.to_vec(),
                    _ => with_custom_section(component, "alerthost-bench", &n.to_le_bytes()),
                };
                replace_atomically(&handler_path, &bytes)?;
                let started = Instant::now();
                reloader.reload_handler(0, None, None)?;
                reloads.push(started.elapsed());
            }
            Ok(reloads)
        });

        let mut scratch = Message::default();
        let mut handle_one = |offset: i64| {
            let msg = MessageView {
                topic: "bench",
                partition: 0,
                offset,
                timestamp: None,
                key: None,
                value,
                headers: &[],
            };
            if let Some(ack) = track.begin(offset, 0) {
                set.handle(&msg, &mut scratch, &[0], ack);
            }
            track.drain(Instant::now() + Duration::from_secs(30), || false);
        };
        // The worker takes up the version current now.
        handle_one(0);
        let mut latencies = Vec::with_capacity(count);
        let mut after_swap = Vec::new();
        let mut running = handlers[0].current.load_full();
        let started = Instant::now();
        for n in 0..count {
            let due = started + interval * n as u32;
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            let current = handlers[0].current.load_full();
            let swapped = !Arc::ptr_eq(&current, &running);
            running = current;
            handle_one(n as i64 + 1);
            latencies.push(due.elapsed());
            if swapped {
                after_swap.push(due.elapsed());
            }
        }
        done.store(true, Ordering::SeqCst);
        let reloads = swapper
            .join()
            .map_err(|_| anyhow::anyhow!("the swap thread panicked"))??;
        let failed = stats.failed.get();
        anyhow::ensure!(failed == 0, "{failed} messages failed");
        Ok(Outcome {
            latencies,
            after_swap,
            reloads,
        })
    })
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = root.join("examples/target/wasm32-wasip2/release/gbm_subthreshold.wasm");
    let component = std::fs::read(&path).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e}; build the examples: cargo build --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml",
            path.display()
        )
    })?;
    let sample = root.join("tests/data/samples/voevent/fermi_gbm_subthresh_546126856.xml");
    let value = std::fs::read(&sample)?;
    println!(
        "handler: {} ({} bytes); message: {} ({} bytes, parsed and dropped)",
        path.display(),
        component.len(),
        sample.display(),
        value.len()
    );
    println!(
        "{RATE} messages/s for {}s per row, 1 worker; latency in ms from each message's scheduled time to its release; \
         after-swap msg: the first message after each swap (p50/max); reload: each reload_handler call (p50/max)",
        RUN.as_secs()
    );
    println!(
        "{:<38} {:>6} {:>5} {:>7} {:>7} {:>7} {:>7} {:>15} {:>15}",
        "scenario",
        "msgs",
        "swaps",
        "p50",
        "p99",
        "p99.9",
        "max",
        "after-swap msg",
        "reload p50/max"
    );
    for (label, swaps) in [
        ("no swap", Swaps::None),
        ("swap every 1 s, cached version", Swaps::Cached),
        ("swap every 1 s, new version (compile)", Swaps::Compiled),
    ] {
        let dir = tempfile::tempdir()?;
        let mut outcome = scenario(swaps, &component, &value, dir.path())?;
        outcome.latencies.sort();
        outcome.after_swap.sort();
        outcome.reloads.sort();
        let l = &outcome.latencies;
        let p50_max = |sorted: &[Duration]| {
            if sorted.is_empty() {
                "-".to_owned()
            } else {
                format!(
                    "{}/{}",
                    ms(quantile(sorted, 0.5)),
                    ms(quantile(sorted, 1.0))
                )
            }
        };
        println!(
            "{:<38} {:>6} {:>5} {:>7} {:>7} {:>7} {:>7} {:>15} {:>15}",
            label,
            l.len(),
            outcome.reloads.len(),
            ms(quantile(l, 0.5)),
            ms(quantile(l, 0.99)),
            ms(quantile(l, 0.999)),
            ms(quantile(l, 1.0)),
            p50_max(&outcome.after_swap),
            p50_max(&outcome.reloads),
        );
    }
    Ok(())
}
