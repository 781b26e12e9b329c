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
//! Three scenarios, each `ALERTHOST_BENCH_ROUNDS` rounds (default 5) of: the
//! plain consumer, then alerthost, each in a new consumer group reading the
//! topic from the start:
//! - 1 KiB and 5 KiB messages on a 3-partition topic (300 000 and 100 000
//!   messages; `ALERTHOST_BENCH_MESSAGES_1K`, `ALERTHOST_BENCH_MESSAGES_5K`);
//! - 1 KiB messages on one partition, read together with a topic that has
//!   nothing in it (200 000; `ALERTHOST_BENCH_MESSAGES_IDLE`): a backlog
//!   caught up beside quiet topics, where every fetch that leaves the busy
//!   partition out waits on the broker for the quiet one.
//!
//! A count of 0 skips its scenario.
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
//! Also printed: each side's CPU time per message, the whole process's
//! (start-up included) from the kernel's per-thread statistics; for the
//! plain consumer, this process's from before the consumer is made to its
//! last message.
//!
//! The ratio is alerthost's messages/s over the plain consumer's, per round;
//! the last row of each scenario is the median of the rounds.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};

use support::{Host, Kafka};

/// One table section: messages of `size` bytes spread over `partitions`
/// partitions of one topic, read alone or beside a topic with nothing in it.
struct Scenario {
    label: &'static str,
    size: usize,
    count: usize,
    partitions: i32,
    beside_idle: bool,
}

fn main() -> anyhow::Result<()> {
    let Some(bootstrap) = support::bootstrap() else {
        return Ok(());
    };
    let kafka = Kafka { bootstrap };
    let rounds = support::env_count("ALERTHOST_BENCH_ROUNDS", 5)?;
    let scenarios = [
        Scenario {
            label: "1 KiB",
            size: 1024,
            count: support::env_count("ALERTHOST_BENCH_MESSAGES_1K", 300_000)?,
            partitions: 3,
            beside_idle: false,
        },
        Scenario {
            label: "5 KiB",
            size: 5 * 1024,
            count: support::env_count("ALERTHOST_BENCH_MESSAGES_5K", 100_000)?,
            partitions: 3,
            beside_idle: false,
        },
        Scenario {
            label: "1 KiB, 1 partition + idle topic",
            size: 1024,
            count: support::env_count("ALERTHOST_BENCH_MESSAGES_IDLE", 200_000)?,
            partitions: 1,
            beside_idle: true,
        },
    ];
    let component = support::example("gbm_subthreshold")?;
    let sample = support::gbm_sample()?;
    support::print_header("throughput", &kafka.bootstrap);
    let dir = tempfile::tempdir()?;
    let mut rows = Vec::new();
    for scenario in &scenarios {
        if scenario.count == 0 {
            continue;
        }
        let partitions = scenario.partitions;
        let per_partition = (scenario.count / partitions as usize).max(2);
        let total = per_partition * partitions as usize;
        let topic = support::unique("throughput");
        kafka.create_topic(&topic, partitions)?;
        let idle = support::unique("idle");
        let mut topics = vec![topic.as_str()];
        if scenario.beside_idle {
            kafka.create_topic(&idle, 1)?;
            topics.push(&idle);
        }
        let started = Instant::now();
        let filler = vec![0xFF; scenario.size];
        kafka.fill(
            &topic,
            (0..per_partition).flat_map(|index| {
                let sentinel = index == 0 || index == per_partition - 1;
                let sample = &sample;
                let filler = &filler;
                (0..partitions).map(move |partition| {
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
            "produced {total} messages of {} bytes on {partitions} partitions in {:.1} s",
            scenario.size,
            started.elapsed().as_secs_f64()
        );
        let mut ratios = Vec::new();
        let mut plain_rates = Vec::new();
        let mut host_rates = Vec::new();
        let mut plain_cpus = Vec::new();
        let mut host_cpus = Vec::new();
        for round in 1..=rounds {
            let plain = plain_consumer(&kafka, &topics, total)?;
            let host = alerthost(&kafka, &topics, partitions, &component, dir.path(), round)?;
            let (plain_rate, host_rate) =
                (total as f64 / plain.seconds, total as f64 / host.seconds);
            let micros = |run: &Run| run.cpu_seconds * 1e6 / total as f64;
            plain_rates.push(plain_rate);
            host_rates.push(host_rate);
            plain_cpus.push(micros(&plain));
            host_cpus.push(micros(&host));
            ratios.push(host_rate / plain_rate);
            rows.push(vec![
                format!("{}, round {round}", scenario.label),
                total.to_string(),
                format!("{:.3}", plain.seconds),
                format!("{plain_rate:.0}"),
                format!("{:.2}", micros(&plain)),
                format!("{:.3}", host.seconds),
                format!("{host_rate:.0}"),
                format!("{:.2}", micros(&host)),
                format!("{:.2}", host_rate / plain_rate),
            ]);
        }
        kafka.delete_topics(&topics)?;
        rows.push(vec![
            format!("{}, median of {rounds}", scenario.label),
            total.to_string(),
            String::new(),
            format!("{:.0}", support::median(&plain_rates)),
            format!("{:.2}", support::median(&plain_cpus)),
            String::new(),
            format!("{:.0}", support::median(&host_rates)),
            format!("{:.2}", support::median(&host_cpus)),
            format!("{:.2}", support::median(&ratios)),
        ]);
    }
    support::print_table(
        &[
            "messages",
            "count",
            "plain s",
            "plain msg/s",
            "plain CPU µs/msg",
            "alerthost s",
            "alerthost msg/s",
            "alerthost CPU µs/msg",
            "alerthost ÷ plain",
        ],
        &rows,
    );
    Ok(())
}

/// A side's time from its first message to its last, and the CPU time its
/// process spent, start-up included.
struct Run {
    seconds: f64,
    cpu_seconds: f64,
}

/// Seconds from the first message polled to the last, for a plain consumer
/// in a new group that does nothing with them; its CPU time is this
/// process's (its other threads idle meanwhile) from before the consumer is
/// made to the last message.
fn plain_consumer(kafka: &Kafka, topics: &[&str], total: usize) -> anyhow::Result<Run> {
    let cpu_before = support::cpu_seconds("self")?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.bootstrap)
        .set("group.id", support::unique("plain"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(topics)?;
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
    let seconds = first.map_or(0.0, |first| first.elapsed().as_secs_f64());
    let cpu_seconds = support::cpu_seconds("self")? - cpu_before;
    drop(consumer);
    Ok(Run {
        seconds,
        cpu_seconds,
    })
}

/// Seconds from the first sentinel file written to the last, for
/// `alerthost run` in a new group with `gbm-subthreshold`; its CPU time is
/// the process's, from its start to the last file.
fn alerthost(
    kafka: &Kafka,
    topics: &[&str],
    partitions: i32,
    component: &Path,
    dir: &Path,
    round: usize,
) -> anyhow::Result<Run> {
    let out = dir.join(format!("{}-{round}", topics[0]));
    let config = dir.join(format!("{}-{round}.toml", topics[0]));
    std::fs::write(
        &config,
        support::save_config(
            &kafka.bootstrap,
            topics,
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
        2 * partitions as usize,
        Duration::from_secs(300),
        Some(&mut host),
    )?;
    let cpu_seconds = host.cpu_seconds()?;
    host.stop()?;
    Ok(Run {
        seconds: support::seconds(written.first, written.last),
        cpu_seconds,
    })
}
