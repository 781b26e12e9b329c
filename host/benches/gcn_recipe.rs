//! The `gbm-subthreshold` example in `alerthost run`, against the same filter
//! written the way GCN's Python recipes are (`support/gcn_recipe.py`:
//! confluent-kafka consumer, `xml.etree.ElementTree`, one file per passing
//! alert, a synchronous commit per message), on the same topic of the same
//! local broker in the same run. Prints a table, asserts nothing.
//!
//! ```sh
//! export ALERTHOST_KAFKA_BOOTSTRAP=$(scripts/kafka.sh start)
//! cargo build --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml
//! cargo bench -p alerthost --bench gcn_recipe
//! ```
//!
//! The Python side is installed by `scripts/bench-python.sh` (a venv in
//! `target/bench-python` with a pinned confluent-kafka), which this bench
//! runs.
//!
//! The topic: 3 partitions of 5 001 (`ALERTHOST_BENCH_MESSAGES` / 3, rounded
//! to 10 n + 1) Fermi GBM sub-threshold VOEvents made from the real sample of
//! `tests/data/samples` (4.9 KB), Reliability 9, 8, …, 0, 9, 8, … in each
//! partition, so with `min_reliability = 9` one in ten is saved (the first
//! and the last of each partition among them).
//!
//! Both sides run in a new consumer group from the start of the topic. What
//! is timed, on both sides: from the first file written (its modification
//! time) to the moment the broker holds the group's commits at the end of
//! every partition (asked every 10 ms). alerthost keeps its guarantees
//! (each file fsync'd and renamed into place before its offset is committed,
//! commits every `commit_interval_ms` = 1 s, the default); the Python recipe
//! writes its files without fsync.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;

use support::{Host, Kafka, Written};

const PARTITIONS: i32 = 3;
const MIN_RELIABILITY: u32 = 9;

fn main() -> anyhow::Result<()> {
    let Some(bootstrap) = support::bootstrap() else {
        return Ok(());
    };
    let kafka = Kafka { bootstrap };
    let count = support::env_count("ALERTHOST_BENCH_MESSAGES", 15_000)?;
    let component = support::example("gbm_subthreshold")?;
    let python = python()?;
    let sample = support::gbm_sample()?;
    support::print_header("gcn_recipe", &kafka.bootstrap);

    // 10 n + 1 per partition: the first and the last have reliability 9.
    let per_partition = (count / PARTITIONS as usize / 10) * 10 + 1;
    let messages = per_partition * PARTITIONS as usize;
    let passing = (per_partition / 10 + 1) * PARTITIONS as usize;
    let topic = support::unique("gbm");
    kafka.create_topic(&topic, PARTITIONS)?;
    kafka.fill(
        &topic,
        (0..per_partition).flat_map(|index| {
            let notice = support::gbm_notice(&sample, 9 - (index % 10) as u32, index as u64);
            (0..PARTITIONS).map(move |partition| (partition, notice.clone()))
        }),
    )?;
    let ends = kafka.end_offsets(&topic, PARTITIONS)?;
    eprintln!("produced {messages} notices, {passing} of them with reliability 9");

    let dir = tempfile::tempdir()?;
    let host = run_alerthost(&kafka, &topic, &ends, &component, dir.path())?;
    let recipe = run_recipe(&kafka, &topic, &ends, &python, dir.path())?;
    kafka.delete_topics(&[&topic])?;
    for (side, run) in [("alerthost", &host), ("Python recipe", &recipe)] {
        anyhow::ensure!(
            run.written.count == passing,
            "{side} saved {} files; {passing} notices pass the filter",
            run.written.count
        );
    }
    let row = |label: &str, run: &Run| {
        let committed = support::seconds(run.written.first, run.committed);
        vec![
            label.to_owned(),
            messages.to_string(),
            run.written.count.to_string(),
            format!(
                "{:.2}",
                support::seconds(run.written.first, run.written.last)
            ),
            format!("{committed:.2}"),
            format!("{:.0}", messages as f64 / committed),
        ]
    };
    let ratio = support::seconds(recipe.written.first, recipe.committed)
        / support::seconds(host.written.first, host.committed);
    support::print_table(
        &[
            "consumer",
            "messages",
            "saved",
            "s to last file",
            "s to commits",
            "msg/s",
        ],
        &[
            row("alerthost run, gbm-subthreshold", &host),
            row(
                "Python: confluent-kafka, ElementTree, commit per message",
                &recipe,
            ),
            vec![
                "alerthost ÷ Python".to_owned(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                format!("{ratio:.1}×"),
            ],
        ],
    );
    Ok(())
}

/// What one side did.
struct Run {
    written: Written,
    committed: SystemTime,
}

fn run_alerthost(
    kafka: &Kafka,
    topic: &str,
    ends: &[i64],
    component: &Path,
    dir: &Path,
) -> anyhow::Result<Run> {
    let group = support::unique("alerthost");
    let out = dir.join("alerthost");
    let config = dir.join("alerthost.toml");
    std::fs::write(
        &config,
        support::save_config(
            &kafka.bootstrap,
            &[topic],
            &group,
            &out,
            "gbm-subthreshold",
            component,
            &format!("min_reliability = \"{MIN_RELIABILITY}\""),
        ),
    )?;
    let mut host = Host::start(&config, &[])?;
    let committed = kafka.wait_committed(&group, topic, ends, Duration::from_secs(600), || {
        host.check_running()
    })?;
    host.stop()?;
    let written = support::written(&out)?.context("alerthost saved nothing")?;
    Ok(Run { written, committed })
}

fn run_recipe(
    kafka: &Kafka,
    topic: &str,
    ends: &[i64],
    python: &Path,
    dir: &Path,
) -> anyhow::Result<Run> {
    let group = support::unique("python");
    let out = dir.join("python");
    std::fs::create_dir_all(&out)?;
    let script = support::root().join("host/benches/support/gcn_recipe.py");
    let log = dir.join("python.log");
    let mut child = Command::new(python)
        .arg(&script)
        .args([&kafka.bootstrap, &group, topic])
        .arg(&out)
        .arg(MIN_RELIABILITY.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .with_context(|| format!("cannot run {}", python.display()))?;
    let committed =
        kafka.wait_committed(
            &group,
            topic,
            ends,
            Duration::from_secs(1800),
            || match child.try_wait()? {
                Some(status) => anyhow::bail!(
                    "the Python recipe exited ({status}):\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ),
                None => Ok(()),
            },
        );
    let _ = child.kill();
    let _ = child.wait();
    let committed = committed?;
    let written = support::written(&out)?.context("the Python recipe saved nothing")?;
    Ok(Run { written, committed })
}

/// The venv's python with the pinned confluent-kafka, installed if needed.
fn python() -> anyhow::Result<std::path::PathBuf> {
    let script = support::root().join("scripts/bench-python.sh");
    let out = Command::new(&script)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", script.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "{} failed ({})",
        script.display(),
        out.status
    );
    Ok(String::from_utf8(out.stdout)?.trim().into())
}
