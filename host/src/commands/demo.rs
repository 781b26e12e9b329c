//! `alerthost demo`: the whole pipeline on an in-process Kafka, no credentials
//! needed. librdkafka's mock cluster is started, the sample GCN alerts are
//! published on GCN-named topics with timestamps spread over the last days,
//! and the example handlers run through the real source, runtime, sinks and
//! commit tracker.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::Message as _;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};

use crate::cli::{DemoArgs, EXIT_OK};
use crate::config::Config;
use crate::source::Bounds;

include!(concat!(env!("OUT_DIR"), "/samples.rs"));

/// The topic GCN publishes a sample on, from its file name.
fn topic_for(name: &str) -> String {
    let (kind, file) = name.split_once('/').unwrap_or(("", name));
    let stem = file.split('.').next().unwrap_or(file);
    match kind {
        "binary" => format!("gcn.classic.binary.{stem}"),
        "voevent" => {
            // `fermi_gbm_alert_792135758` → FERMI_GBM_ALERT: drop the ids.
            let words: Vec<&str> = stem
                .split('_')
                .take_while(|w| !w.chars().any(|c| c.is_ascii_digit()))
                .collect();
            format!("gcn.classic.voevent.{}", words.join("_").to_uppercase())
        }
        _ if stem.starts_with("igwn_gwalert") => "igwn.gwalert".to_owned(),
        _ => {
            // `fermi_gbm-trigger` → gcn.notices.fermi.gbm
            let mission = stem.split('-').next().unwrap_or(stem);
            format!("gcn.notices.{}", mission.replace('_', "."))
        }
    }
}

pub fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let handlers = &args.handlers;
    for example in ["save_all", "gbm_subthreshold", "sky_region"] {
        let path = handlers.join(format!("{example}.wasm"));
        if !path.is_file() {
            bail!(
                "example handler {} is missing: build the examples first with \
                 `cargo build --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml` (or pass --handlers DIR)",
                path.display()
            );
        }
    }
    let out = &args.out;
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create the demo output directory {}", out.display()))?;

    let cluster = MockCluster::new(1).context("cannot start the in-process Kafka cluster")?;
    let servers = cluster.bootstrap_servers();
    let published = publish(&servers)?;
    println!(
        "demo: published {} sample GCN alerts on {} topics of an in-process Kafka ({servers})",
        published.len(),
        published
            .iter()
            .map(|(t, _)| t)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    );

    let config_path = out.join("alerthost-demo.toml");
    let handlers = absolute(handlers)?;
    let config = format!(
        r#"# The configuration the demo runs: a real alerthost.toml.
[source]
bootstrap_servers = "{servers}"
topics = ["^gcn\\..*", "^igwn\\..*"]
group_id = "alerthost-demo"

[sinks.archive]
type = "file"
dir = "archive"

[sinks.subthreshold]
type = "file"
dir = "subthreshold"

[sinks.summaries]
type = "kafka"
topic = "demo.sky-region.summaries"

[[handler]]
name = "save-all"
component = "{h}/save_all.wasm"
topics = ["^gcn\\..*", "^igwn\\..*"]
save_to = "archive"

[[handler]]
name = "gbm-subthreshold"
component = "{h}/gbm_subthreshold.wasm"
topics = ["gcn.classic.voevent.FERMI_GBM_SUBTHRESH"]
save_to = "subthreshold"
params = {{ min_reliability = "2" }}

[[handler]]
name = "sky-region"
component = "{h}/sky_region.wasm"
topics = ["^gcn\\.classic\\.voevent\\..*", "^gcn\\.notices\\..*"]
forward_to = ["summaries"]
params = {{ ra = "225", dec = "-69.5", radius = "5", sink = "summaries" }}
"#,
        h = handlers.display()
    );
    std::fs::write(&config_path, config)
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    let plan = Config::load(&config_path)?;
    let code = super::run::run_plan(
        plan,
        Bounds {
            until_now: true,
            ..Bounds::default()
        },
        None,
        false,
        false,
        super::run::watch_signals(),
    )?;
    if code != ExitCode::from(EXIT_OK) {
        return Ok(code);
    }

    println!();
    for (handler, dir) in [
        ("save-all", "archive"),
        ("gbm-subthreshold", "subthreshold"),
    ] {
        let files = list_files(&out.join(dir));
        println!(
            "{handler}: saved {} file(s) under {}",
            files.len(),
            out.join(dir).display()
        );
        for file in files
            .iter()
            .take(if handler == "save-all" { 3 } else { usize::MAX })
        {
            println!("  {}", file.display());
        }
        if handler == "save-all" && files.len() > 3 {
            println!("  ... and {} more", files.len() - 3);
        }
    }
    let summaries = read_topic(&servers, "demo.sky-region.summaries")?;
    println!(
        "sky-region: forwarded {} summary(ies) to topic demo.sky-region.summaries:",
        summaries.len()
    );
    for summary in summaries {
        println!("  {summary}");
    }
    println!("\nthe configuration used is {}", config_path.display());
    drop(cluster);
    Ok(ExitCode::from(EXIT_OK))
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))
}

/// Publish every sample with a timestamp, oldest first, one every 37 minutes
/// up to now.
fn publish(servers: &str) -> anyhow::Result<Vec<(String, usize)>> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .create()
        .context("cannot create the demo producer")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let mut published = Vec::new();
    for (index, (name, bytes)) in SAMPLES.iter().enumerate() {
        let topic = topic_for(name);
        let timestamp = now - (SAMPLES.len() - index) as i64 * 37 * 60_000;
        producer
            .send(
                BaseRecord::<(), [u8]>::to(&topic)
                    .payload(bytes)
                    .timestamp(timestamp),
            )
            .map_err(|(e, _)| e)
            .with_context(|| format!("cannot publish {name} on {topic}"))?;
        published.push((topic, bytes.len()));
    }
    producer
        .flush(Duration::from_secs(10))
        .context("the in-process Kafka did not take the samples")?;
    Ok(published)
}

fn read_topic(servers: &str, topic: &str) -> anyhow::Result<Vec<String>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", "alerthost-demo-reader")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(5))?;
    let mut assignment = rdkafka::TopicPartitionList::new();
    let mut expected = 0;
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        let (low, high) =
            consumer.fetch_watermarks(topic, partition.id(), Duration::from_secs(5))?;
        expected += (high - low).max(0) as usize;
        assignment.add_partition_offset(topic, partition.id(), rdkafka::Offset::Offset(low))?;
    }
    consumer.assign(&assignment)?;
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while out.len() < expected && std::time::Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            out.push(String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned());
        }
    }
    Ok(out)
}

fn list_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_go_to_gcn_topics() {
        assert_eq!(
            topic_for("voevent/fermi_gbm_subthresh_546126856.xml"),
            "gcn.classic.voevent.FERMI_GBM_SUBTHRESH"
        );
        assert_eq!(
            topic_for("voevent/lvc_initial_S190425z-1.xml"),
            "gcn.classic.voevent.LVC_INITIAL"
        );
        assert_eq!(
            topic_for("voevent/icecube_astrotrack_gold_137467_64735045.xml"),
            "gcn.classic.voevent.ICECUBE_ASTROTRACK_GOLD"
        );
        assert_eq!(
            topic_for("binary/SWIFT_XRT_POSITION.bin"),
            "gcn.classic.binary.SWIFT_XRT_POSITION"
        );
        assert_eq!(
            topic_for("json/einstein_probe_wxt-alert.example.json"),
            "gcn.notices.einstein.probe.wxt"
        );
        assert_eq!(
            topic_for("json/igwn_gwalert-S230518h-initial.json"),
            "igwn.gwalert"
        );
        assert_eq!(SAMPLES.len(), 52);
    }
}
