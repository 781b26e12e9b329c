//! Latency that `alerthost run` adds between a producer and a consumer, at
//! 100 and 5 000 messages/s, beside a plain produce → consume baseline
//! measured in the same run on the same broker. Prints a table, asserts
//! nothing.
//!
//! ```sh
//! export ALERTHOST_KAFKA_BOOTSTRAP=$(scripts/kafka.sh start)
//! cargo build --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml
//! cargo bench -p alerthost --bench latency
//! ```
//!
//! The path: a producer (acks=all, librdkafka's default `linger.ms` of 5 ms,
//! which the baseline pays too) sends a real Einstein Probe WXT
//! alert (`tests/data/samples`, 0.6 KB JSON) with its send time in
//! microseconds added as a field, round-robin to a 3-partition input topic,
//! at a steady rate for `ALERTHOST_BENCH_SECONDS` (default 10) per rate.
//! `alerthost run` (a consumer group) runs the `sky-region` example with a
//! cone of the whole sky, so every alert is forwarded, as a JSON summary
//! naming its partition and offset, through a Kafka sink (acks=all,
//! idempotent) to a 1-partition output topic.
//!
//! One independent consumer (assigned, no group membership) reads both topics and notes when each
//! record arrives:
//! - baseline: input record arrival − send time (plain produce → consume);
//! - through alerthost: arrival of the summary − send time of the alert it
//!   names;
//! - added by alerthost: the difference of the two at each quantile.
//!
//! The handler's own work (parsing the JSON alert, about 20 µs) is part of
//! what alerthost adds. Alerts sent before alerthost forwarded its first one
//! (start-up, group join) are not counted.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::Message as _;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use support::{Host, Kafka};

const PARTITIONS: i32 = 3;
const RATES: [u64; 2] = [100, 5_000];
/// The field carrying the send time.
const SENT: &str = "\"bench_sent_us\": ";

fn main() -> anyhow::Result<()> {
    let Some(bootstrap) = support::bootstrap() else {
        return Ok(());
    };
    let kafka = Kafka { bootstrap };
    let seconds = support::env_count("ALERTHOST_BENCH_SECONDS", 10)? as u64;
    let component = support::example("sky_region")?;
    let alert_path =
        support::root().join("tests/data/samples/json/einstein_probe_wxt-alert-01709259773.json");
    let alert = std::fs::read_to_string(&alert_path)
        .with_context(|| format!("cannot read {}", alert_path.display()))?;
    let alert = alert
        .trim()
        .strip_prefix('{')
        .context("the sample alert is not a JSON object")?
        .to_owned();
    support::print_header("latency", &kafka.bootstrap);

    let input = support::unique("latency-in");
    let output = support::unique("latency-out");
    kafka.create_topic(&input, PARTITIONS)?;
    kafka.create_topic(&output, 1)?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("alerthost.toml");
    std::fs::write(
        &config,
        format!(
            r#"[source]
bootstrap_servers = {bootstrap}
topics = [{input}]
group_id = {group}

[sinks.summaries]
type = "kafka"
topic = {output}

[[handler]]
name = "sky-region"
component = {component}
topics = [{input}]
forward_to = ["summaries"]
params = {{ ra = "0", dec = "0", radius = "180" }}
"#,
            bootstrap = support::toml_str(&kafka.bootstrap),
            input = support::toml_str(&input),
            output = support::toml_str(&output),
            group = support::toml_str(support::unique("latency")),
            component = support::toml_str(component.to_string_lossy()),
        ),
    )?;

    let stop = Arc::new(AtomicBool::new(false));
    let (events, arrivals) = channel();
    let witness = {
        let consumer = witness(&kafka, &input, &output)?;
        let stop = stop.clone();
        let input = input.clone();
        std::thread::spawn(move || -> anyhow::Result<()> {
            while !stop.load(Ordering::Relaxed) {
                let Some(message) = consumer.poll(Duration::from_millis(100)) else {
                    continue;
                };
                let arrived = support::now_micros();
                let message = message?;
                let value = message.payload().unwrap_or_default();
                let event = if message.topic() == input {
                    Event::Input {
                        at: (message.partition(), message.offset()),
                        sent: sent_micros(value)
                            .context("an input record without its send time")?,
                        arrived,
                    }
                } else {
                    let summary: serde_json::Value = serde_json::from_slice(value)?;
                    let field = |name: &str| {
                        summary[name]
                            .as_i64()
                            .with_context(|| format!("a summary without `{name}`: {summary}"))
                    };
                    Event::Output {
                        at: (i32::try_from(field("partition")?)?, field("offset")?),
                        arrived,
                    }
                };
                if events.send(event).is_err() {
                    break;
                }
            }
            Ok(())
        })
    };

    let mut host = Host::start(&config, &[])?;
    let producer = kafka.producer(5)?;
    let mut book = Book::default();
    let mut next = 0_u64;
    let mut send = |book: &mut Book| -> anyhow::Result<()> {
        let value = format!("{{{SENT}{}, {alert}", support::now_micros());
        support::send(
            &producer,
            &input,
            (next % PARTITIONS as u64) as i32,
            value.as_bytes(),
        )?;
        producer.poll(Duration::ZERO);
        next += 1;
        book.sent += 1;
        Ok(())
    };

    // Until alerthost forwards: 10 alerts a second, not counted.
    let ready_by = Instant::now() + Duration::from_secs(120);
    while book.outputs.is_empty() {
        anyhow::ensure!(
            Instant::now() < ready_by,
            "alerthost forwarded nothing within 120 s:\n{}",
            host.log()
        );
        host.check_running()?;
        send(&mut book)?;
        book.take(&arrivals, Duration::from_millis(100))?;
    }
    book.settle(&arrivals, &mut host)?;

    let mut rows = Vec::new();
    for rate in RATES {
        let from = support::now_micros();
        let started = Instant::now();
        let count = rate * seconds;
        for index in 0..count {
            let due = started + Duration::from_secs_f64(index as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            send(&mut book)?;
        }
        let achieved = count as f64 / started.elapsed().as_secs_f64();
        book.settle(&arrivals, &mut host)?;
        let (mut baseline, mut through) = (Vec::new(), Vec::new());
        for (at, input) in &book.inputs {
            if input.sent < from {
                continue;
            }
            baseline.push((input.arrived - input.sent) as f64 / 1e3);
            through.push((book.outputs[at] - input.sent) as f64 / 1e3);
        }
        anyhow::ensure!(
            baseline.len() as u64 == count,
            "{} of {count} alerts sent at {rate}/s were read back",
            baseline.len()
        );
        baseline.sort_by(f64::total_cmp);
        through.sort_by(f64::total_cmp);
        let at = |sorted: &[f64], q| support::quantile(sorted, q);
        rows.push(vec![
            format!("{rate} msg/s ({achieved:.0} sent)"),
            count.to_string(),
            format!("{:.2}", at(&baseline, 0.5)),
            format!("{:.2}", at(&baseline, 0.99)),
            format!("{:.2}", at(&through, 0.5)),
            format!("{:.2}", at(&through, 0.99)),
            format!("{:.2}", at(&through, 0.5) - at(&baseline, 0.5)),
            format!("{:.2}", at(&through, 0.99) - at(&baseline, 0.99)),
        ]);
    }
    host.stop()?;
    stop.store(true, Ordering::Relaxed);
    witness
        .join()
        .map_err(|_| anyhow::anyhow!("the witness consumer panicked"))??;
    kafka.delete_topics(&[&input, &output])?;
    support::print_table(
        &[
            "rate",
            "alerts",
            "baseline p50 ms",
            "p99 ms",
            "through alerthost p50 ms",
            "p99 ms",
            "added p50 ms",
            "added p99 ms",
        ],
        &rows,
    );
    Ok(())
}

/// A record the witness consumer saw, with its arrival time (µs).
enum Event {
    Input {
        at: (i32, i64),
        sent: i64,
        arrived: i64,
    },
    Output {
        at: (i32, i64),
        arrived: i64,
    },
}

/// An input record's send and arrival times (µs).
struct Input {
    sent: i64,
    arrived: i64,
}

/// What was sent and what the witness saw, by input partition and offset.
#[derive(Default)]
struct Book {
    sent: u64,
    inputs: HashMap<(i32, i64), Input>,
    outputs: HashMap<(i32, i64), i64>,
}

impl Book {
    /// Note what arrives within `wait`.
    fn take(&mut self, arrivals: &Receiver<Event>, wait: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match arrivals.recv_timeout(left) {
                Ok(Event::Input { at, sent, arrived }) => {
                    self.inputs.insert(at, Input { sent, arrived });
                }
                Ok(Event::Output { at, arrived }) => {
                    self.outputs.entry(at).or_insert(arrived);
                }
                Err(RecvTimeoutError::Timeout) => return Ok(()),
                Err(RecvTimeoutError::Disconnected) => {
                    anyhow::bail!("the witness consumer stopped")
                }
            }
        }
    }

    /// Wait until every record sent so far came back, through alerthost too.
    fn settle(&mut self, arrivals: &Receiver<Event>, host: &mut Host) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.inputs.len() as u64 != self.sent
            || self.inputs.keys().any(|at| !self.outputs.contains_key(at))
        {
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} sent, {} read back, {} forwarded after 60 s",
                self.sent,
                self.inputs.len(),
                self.outputs.len()
            );
            host.check_running()?;
            self.take(arrivals, Duration::from_millis(100))?;
        }
        Ok(())
    }
}

/// A consumer reading both topics from their start, assigned (its group id,
/// which rdkafka requires, is never joined nor committed to).
fn witness(kafka: &Kafka, input: &str, output: &str) -> anyhow::Result<BaseConsumer> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.bootstrap)
        .set("group.id", support::unique("witness"))
        .set("enable.auto.commit", "false")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment.add_partition_offset(input, partition, Offset::Beginning)?;
    }
    assignment.add_partition_offset(output, 0, Offset::Beginning)?;
    consumer.assign(&assignment)?;
    Ok(consumer)
}

/// The send time an input record carries.
fn sent_micros(value: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(value).ok()?;
    let rest = &text[text.find(SENT)? + SENT.len()..];
    let digits = rest.find(|c: char| !c.is_ascii_digit())?;
    rest[..digits].parse().ok()
}
