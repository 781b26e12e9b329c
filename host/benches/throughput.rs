//! Throughput of `alerthost run` with a handler that drops every message,
//! against a plain rdkafka `BaseConsumer` that does nothing, on the same
//! topic of the same local broker in the same run. Prints a table, asserts
//! nothing.
//!
//! ```sh
//! export ALERTHOST_KAFKA_BOOTSTRAP=$(scripts/kafka.sh start)
//! cargo build --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml
//! cargo bench -p alerthost --bench throughput
//! ```
//!
//! For 1 KiB and 5 KiB messages on a 3-partition topic (300 000 and 100 000
//! messages; `ALERTHOST_BENCH_MESSAGES_1K`, `ALERTHOST_BENCH_MESSAGES_5K`),
//! `ALERTHOST_BENCH_ROUNDS` rounds (default 5) of: the plain consumer, then
//! alerthost, each in a new consumer group reading the topic from the start.
//!
//! What is timed, on both sides: from the first message handled to the last,
//! so neither side's start-up (process, handler load, group join, offset
//! look-ups) counts.
//! - Plain consumer: from the `poll` that returns the first message to the
//!   one that returns the last.
//! - alerthost: the handler is the `gbm-subthreshold` example; every message
//!   is filler it drops, except the first and the last of each partition,
//!   which are Fermi GBM sub-threshold notices of reliability 10 that it
//!   saves. The time is from the first of those six files written to the
//!   last (their modification times, to the kernel's 1–4 ms tick), so it
//!   covers every message of the topic. Six fsync'd saves out of 100 000 or
//!   more messages count against alerthost.
//!
//! The filler is binary (bytes 0xFF, not UTF-8), which the handler's content
//! detection refuses at the first byte, so the handler's own work is a few
//! instructions and the figure is the host's. Text filler would be scanned
//! to its end by the detection, about 10 ns a byte in wasm (50 µs for
//! 5 KiB).
//!
//! The ratio is alerthost's messages/s over the plain consumer's, per round;
//! the last row of each size is the median of the rounds.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};

use support::{Host, Kafka};

const PARTITIONS: i32 = 3;

fn main() -> anyhow::Result<()> {
    let Some(bootstrap) = support::bootstrap() else {
        return Ok(());
    };
    let kafka = Kafka { bootstrap };
    let rounds = support::env_count("ALERTHOST_BENCH_ROUNDS", 5)?;
    let sizes = [
        (
            1024,
            support::env_count("ALERTHOST_BENCH_MESSAGES_1K", 300_000)?,
        ),
        (
            5 * 1024,
            support::env_count("ALERTHOST_BENCH_MESSAGES_5K", 100_000)?,
        ),
    ];
    let component = support::example("gbm_subthreshold")?;
    let sample = support::gbm_sample()?;
    support::print_header("throughput", &kafka.bootstrap);
    let dir = tempfile::tempdir()?;
    let mut rows = Vec::new();
    for (size, count) in sizes {
        let per_partition = (count / PARTITIONS as usize).max(2);
        let total = per_partition * PARTITIONS as usize;
        let topic = support::unique("throughput");
        kafka.create_topic(&topic, PARTITIONS)?;
        let started = Instant::now();
        let filler = vec![0xFF; size];
        kafka.fill(
            &topic,
            (0..per_partition).flat_map(|index| {
                let sentinel = index == 0 || index == per_partition - 1;
                let sample = &sample;
                let filler = &filler;
                (0..PARTITIONS).map(move |partition| {
                    let value = if sentinel {
                        support::gbm_notice(sample, 10, index as u64)
                    } else {
                        filler.clone()
                    };
                    (partition, value)
                })
            }),
        )?;
        eprintln!(
            "produced {total} messages of {size} bytes on {PARTITIONS} partitions in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let mut ratios = Vec::new();
        let mut plain_rates = Vec::new();
        let mut host_rates = Vec::new();
        for round in 1..=rounds {
            let plain = plain_consumer(&kafka, &topic, total)?;
            let host = alerthost(&kafka, &topic, &component, dir.path(), round)?;
            let (plain_rate, host_rate) = (total as f64 / plain, total as f64 / host);
            plain_rates.push(plain_rate);
            host_rates.push(host_rate);
            ratios.push(host_rate / plain_rate);
            rows.push(vec![
                format!("{} KiB, round {round}", size / 1024),
                total.to_string(),
                format!("{plain:.3}"),
                format!("{plain_rate:.0}"),
                format!("{host:.3}"),
                format!("{host_rate:.0}"),
                format!("{:.2}", host_rate / plain_rate),
            ]);
        }
        kafka.delete_topics(&[&topic])?;
        rows.push(vec![
            format!("{} KiB, median of {rounds}", size / 1024),
            total.to_string(),
            String::new(),
            format!("{:.0}", support::median(&plain_rates)),
            String::new(),
            format!("{:.0}", support::median(&host_rates)),
            format!("{:.2}", support::median(&ratios)),
        ]);
    }
    support::print_table(
        &[
            "messages",
            "count",
            "plain s",
            "plain msg/s",
            "alerthost s",
            "alerthost msg/s",
            "alerthost ÷ plain",
        ],
        &rows,
    );
    Ok(())
}

/// Seconds from the first message polled to the last, for a plain consumer
/// in a new group that does nothing with them.
fn plain_consumer(kafka: &Kafka, topic: &str, total: usize) -> anyhow::Result<f64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.bootstrap)
        .set("group.id", support::unique("plain"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[topic])?;
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut first = None;
    let mut seen = 0;
    while seen < total {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the plain consumer read {seen} of {total} messages in 300 s"
        );
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            message?;
            first.get_or_insert_with(Instant::now);
            seen += 1;
        }
    }
    let elapsed = first.map_or(0.0, |first| first.elapsed().as_secs_f64());
    Ok(elapsed)
}

/// Seconds from the first sentinel file written to the last, for
/// `alerthost run` in a new group with `gbm-subthreshold`.
fn alerthost(
    kafka: &Kafka,
    topic: &str,
    component: &Path,
    dir: &Path,
    round: usize,
) -> anyhow::Result<f64> {
    let out = dir.join(format!("{topic}-{round}"));
    let config = dir.join(format!("{topic}-{round}.toml"));
    std::fs::write(
        &config,
        support::save_config(
            &kafka.bootstrap,
            topic,
            &support::unique("alerthost"),
            &out,
            "drop",
            component,
            "",
        ),
    )?;
    let mut host = Host::start(&config, &[])?;
    let written = support::wait_written(
        &out,
        2 * PARTITIONS as usize,
        Duration::from_secs(300),
        Some(&mut host),
    )?;
    host.stop()?;
    Ok(support::seconds(written.first, written.last))
}
