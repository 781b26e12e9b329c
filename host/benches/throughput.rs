//! Throughput of `alerthost run` against a plain rdkafka consumer, on the same
//! local broker in the same run. Prints a table, asserts nothing.
//!
//! ```sh
//! export ALERTHOST_KAFKA_BOOTSTRAP=$(scripts/kafka.sh start)
//! cargo build --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml
//! cargo bench -p alerthost --bench throughput
//! ```
//!
//! 1 KiB messages on a 3-partition topic. Each alerthost run is a time-range
//! run over the whole topic (`--since 2000-01-01 --until 2100-01-01`), so it
//! exits by itself when every partition is read; its wall time includes
//! start-up (config, cached handler load, connection: about 0.1 s).

use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};

const MESSAGES: usize = 100_000;
const PARTITIONS: i32 = 3;

fn main() -> anyhow::Result<()> {
    let Ok(bootstrap) = std::env::var("ALERTHOST_KAFKA_BOOTSTRAP") else {
        eprintln!(
            "set ALERTHOST_KAFKA_BOOTSTRAP (export ALERTHOST_KAFKA_BOOTSTRAP=$(scripts/kafka.sh start))"
        );
        return Ok(());
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let examples = root.join("examples/target/wasm32-wasip2/release");
    let topic = format!("bench-throughput-{}", std::process::id());
    create_topic(&bootstrap, &topic)?;
    let started = Instant::now();
    produce(&bootstrap, &topic)?;
    println!(
        "produced {MESSAGES} messages of 1 KiB on {PARTITIONS} partitions in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!("{:<58} {:>10} {:>12}", "consumer", "seconds", "messages/s");
    let plain = plain_consumer(&bootstrap, &topic)?;
    row("plain rdkafka BaseConsumer, does nothing", plain);
    let dir = tempfile::tempdir()?;
    for (label, handler, save) in [
        (
            "alerthost run, gbm-subthreshold (drops every message)",
            "gbm_subthreshold",
            false,
        ),
        (
            "alerthost run, save-all (fsync'd file per message)",
            "save_all",
            true,
        ),
    ] {
        let elapsed = alerthost(
            &bootstrap,
            &topic,
            &examples.join(format!("{handler}.wasm")),
            save,
            dir.path(),
        )?;
        row(label, elapsed);
    }
    Ok(())
}

fn row(label: &str, elapsed: Duration) {
    println!(
        "{label:<58} {:>10.2} {:>12.0}",
        elapsed.as_secs_f64(),
        MESSAGES as f64 / elapsed.as_secs_f64()
    );
}

fn create_topic(bootstrap: &str, topic: &str) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let results = runtime.block_on(admin.create_topics(
        &[NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1))],
        &AdminOptions::new(),
    ))?;
    for result in results {
        result.map_err(|(topic, code)| anyhow::anyhow!("cannot create {topic}: {code}"))?;
    }
    Ok(())
}

fn produce(bootstrap: &str, topic: &str) -> anyhow::Result<()> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let value = vec![b'x'; 1024];
    for index in 0..MESSAGES {
        let record = BaseRecord::<(), [u8]>::to(topic)
            .partition(index as i32 % PARTITIONS)
            .payload(&value);
        producer.send(record).map_err(|(e, _)| e)?;
        if index % 10_000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(60))?;
    Ok(())
}

fn plain_consumer(bootstrap: &str, topic: &str) -> anyhow::Result<Duration> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("{topic}-plain"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    let started = Instant::now();
    consumer.subscribe(&[topic])?;
    let mut seen = 0;
    while seen < MESSAGES {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            message?;
            seen += 1;
        }
    }
    Ok(started.elapsed())
}

fn alerthost(
    bootstrap: &str,
    topic: &str,
    component: &Path,
    save: bool,
    dir: &Path,
) -> anyhow::Result<Duration> {
    anyhow::ensure!(
        component.is_file(),
        "{} is missing: cargo build --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml",
        component.display()
    );
    let out = dir.join(component.file_stem().unwrap());
    let config = dir.join(format!(
        "{}.toml",
        component.file_stem().unwrap().to_string_lossy()
    ));
    std::fs::write(
        &config,
        format!(
            r#"[source]
bootstrap_servers = "{bootstrap}"
topics = ["{topic}"]

[sinks.out]
type = "file"
dir = "{out}"

[[handler]]
name = "bench"
component = "{component}"
topics = ["{topic}"]
{save_to}
"#,
            out = out.display(),
            component = component.display(),
            save_to = if save { "save_to = \"out\"" } else { "" },
        ),
    )?;
    let started = Instant::now();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_alerthost"))
        .args([
            "run",
            "--since",
            "2000-01-01",
            "--until",
            "2100-01-01",
            "--log",
            "warn",
            "-c",
        ])
        .arg(&config)
        .status()?;
    let elapsed = started.elapsed();
    anyhow::ensure!(status.success(), "alerthost run failed: {status}");
    Ok(elapsed)
}
