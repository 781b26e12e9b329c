//! `alerthost topics`: what the configured credentials can read, like GCN's
//! `list_topics` recipe: every topic (or those matching a pattern), its
//! partitions with earliest and latest offsets, the group's committed offsets
//! and lag when the config has a `group_id`, and which handlers take it.
//! A table on a terminal, JSON otherwise.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::Serialize;

use crate::cli::{EXIT_OK, OutputFormat, TopicsArgs};
use crate::config::{Config, Plan, TopicSelector};
use crate::sink::kafka::connection_properties;

/// How long one request to the cluster may take.
const TIMEOUT: Duration = Duration::from_secs(15);
/// Partitions whose offsets are asked for at once: a cluster far away
/// answers each request in a round trip.
const PARALLEL: usize = 8;

/// The listing, as `--format json` prints it.
#[derive(Debug, Serialize)]
pub struct Listing {
    /// The config's group, whose offsets are shown; `null` without one.
    pub group: Option<String>,
    /// The topics, by name.
    pub topics: Vec<TopicInfo>,
}

/// One topic.
#[derive(Debug, Serialize)]
pub struct TopicInfo {
    /// Its name.
    pub topic: String,
    /// The handlers whose topics match it.
    pub handlers: Vec<String>,
    /// Its partitions, in order.
    pub partitions: Vec<PartitionInfo>,
}

/// One partition.
#[derive(Debug, Serialize)]
pub struct PartitionInfo {
    /// Its number.
    pub partition: i32,
    /// The oldest offset the broker still holds.
    pub earliest: Option<i64>,
    /// The offset the next message will get (the high watermark).
    pub latest: Option<i64>,
    /// The group's committed offset (the next message it reads), if any.
    pub committed: Option<i64>,
    /// `latest - committed`: messages the group has not handled yet.
    pub lag: Option<i64>,
    /// Why an offset is missing, if one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Run `alerthost topics`.
pub fn run(args: &TopicsArgs) -> anyhow::Result<ExitCode> {
    let plan = Config::load(&args.config)?;
    let pattern = args
        .pattern
        .as_deref()
        .map(TopicSelector::parse)
        .transpose()
        .context("PATTERN")?;
    let listing = list(&plan, pattern.as_ref())?;
    let format = args.format.unwrap_or(if std::io::stdout().is_terminal() {
        OutputFormat::Text
    } else {
        OutputFormat::Json
    });
    let mut out = std::io::stdout().lock();
    match format {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &listing)?;
            writeln!(out)?;
        }
        OutputFormat::Text => write!(out, "{}", table(&listing))?,
    }
    Ok(ExitCode::from(EXIT_OK))
}

/// Ask the cluster of `plan` for its topics (those `pattern` selects, or all
/// but Kafka's internal ones) and their offsets.
pub fn list(plan: &Plan, pattern: Option<&TopicSelector>) -> anyhow::Result<Listing> {
    let servers = plan
        .kafka
        .get("bootstrap.servers")
        .cloned()
        .unwrap_or_default();
    let mut config = ClientConfig::new();
    for (key, value) in connection_properties(&plan.kafka) {
        config.set(key, value);
    }
    // Only a group's committed offsets need the group; nothing joins it.
    if let Some(group) = &plan.group_id {
        config.set("group.id", group);
    }
    config.set("enable.auto.commit", "false");
    let consumer: BaseConsumer = config
        .create()
        .context("cannot create a Kafka client (check [source] and [source.librdkafka])")?;
    let metadata = consumer
        .fetch_metadata(None, TIMEOUT)
        .with_context(|| format!("cannot list the topics of {servers}"))?;

    let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for topic in metadata.topics() {
        let name = topic.name();
        let selected = match pattern {
            Some(pattern) => pattern.matches(name),
            None => !name.starts_with("__"),
        };
        if !selected {
            continue;
        }
        if let Some(error) = topic.error() {
            tracing::warn!(topic = name, error = %rdkafka::error::RDKafkaErrorCode::from(error), "cannot describe this topic; it is left out");
            continue;
        }
        let mut partitions: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
        partitions.sort_unstable();
        topics.insert(name.to_owned(), partitions);
    }

    let all: Vec<(String, i32)> = topics
        .iter()
        .flat_map(|(topic, partitions)| partitions.iter().map(|p| (topic.clone(), *p)))
        .collect();
    let watermarks = watermarks(&consumer, &all);
    let committed = match &plan.group_id {
        Some(group) => committed(&consumer, &all)
            .with_context(|| format!("cannot read the offsets group `{group}` committed"))?,
        None => BTreeMap::new(),
    };

    let topics = topics
        .into_iter()
        .map(|(topic, partitions)| {
            let handlers = plan
                .handlers
                .iter()
                .filter(|h| h.topics.iter().any(|s| s.matches(&topic)))
                .map(|h| h.config.name.clone())
                .collect();
            let partitions = partitions
                .into_iter()
                .map(|partition| {
                    let tp = (topic.clone(), partition);
                    let (earliest, latest, error) = match &watermarks[&tp] {
                        Ok((low, high)) => (Some(*low), Some(*high), None),
                        Err(error) => (None, None, Some(error.clone())),
                    };
                    let committed = committed.get(&tp).copied().flatten();
                    PartitionInfo {
                        partition,
                        earliest,
                        latest,
                        committed,
                        lag: latest.zip(committed).map(|(l, c)| (l - c).max(0)),
                        error,
                    }
                })
                .collect();
            TopicInfo {
                topic,
                handlers,
                partitions,
            }
        })
        .collect();
    Ok(Listing {
        group: plan.group_id.clone(),
        topics,
    })
}

type Watermarks = BTreeMap<(String, i32), Result<(i64, i64), String>>;

/// Earliest and latest offset of each partition, [`PARALLEL`] at a time.
fn watermarks(consumer: &BaseConsumer, partitions: &[(String, i32)]) -> Watermarks {
    let chunk = partitions.len().div_ceil(PARALLEL).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = partitions
            .chunks(chunk)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|(topic, partition)| {
                            let answer = consumer
                                .fetch_watermarks(topic, *partition, TIMEOUT)
                                .map_err(|e| e.to_string());
                            ((topic.clone(), *partition), answer)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("a watermark thread does not panic"))
            .collect()
    })
}

/// The group's committed offset of each partition (`None`: nothing committed).
fn committed(
    consumer: &BaseConsumer,
    partitions: &[(String, i32)],
) -> anyhow::Result<BTreeMap<(String, i32), Option<i64>>> {
    if partitions.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut query = TopicPartitionList::new();
    for (topic, partition) in partitions {
        query.add_partition(topic, *partition);
    }
    let answer = consumer.committed_offsets(query, TIMEOUT)?;
    Ok(answer
        .elements()
        .iter()
        .map(|e| {
            let offset = match e.offset() {
                Offset::Offset(o) if o >= 0 => Some(o),
                _ => None,
            };
            ((e.topic().to_owned(), e.partition()), offset)
        })
        .collect())
}

/// The listing as an aligned text table, one row per partition.
pub fn table(listing: &Listing) -> String {
    let show = |v: Option<i64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    let mut rows = vec![[
        "TOPIC".to_owned(),
        "PARTITION".to_owned(),
        "EARLIEST".to_owned(),
        "LATEST".to_owned(),
        "COMMITTED".to_owned(),
        "LAG".to_owned(),
        "HANDLERS".to_owned(),
    ]];
    for topic in &listing.topics {
        let handlers = if topic.handlers.is_empty() {
            "-".to_owned()
        } else {
            topic.handlers.join(",")
        };
        for p in &topic.partitions {
            let (earliest, latest) = match &p.error {
                Some(_) => ("?".to_owned(), "?".to_owned()),
                None => (show(p.earliest), show(p.latest)),
            };
            rows.push([
                topic.topic.clone(),
                p.partition.to_string(),
                earliest,
                latest,
                show(p.committed),
                show(p.lag),
                handlers.clone(),
            ]);
        }
    }
    let mut widths = [0; 7];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    if let Some(group) = &listing.group {
        out.push_str(&format!("group {group}\n"));
    }
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (cell, width))| match i {
                // Names left, numbers right, the last column unpadded.
                0 => format!("{cell:<width$}"),
                6 => cell.clone(),
                _ => format!("{cell:>width$}"),
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    let partitions: usize = listing.topics.iter().map(|t| t.partitions.len()).sum();
    out.push_str(&format!(
        "{} topic(s), {partitions} partition(s)\n",
        listing.topics.len()
    ));
    for topic in &listing.topics {
        for p in &topic.partitions {
            if let Some(error) = &p.error {
                out.push_str(&format!(
                    "{}[{}]: offsets unknown: {error}\n",
                    topic.topic, p.partition
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns_and_marks_what_is_unknown() {
        let listing = Listing {
            group: Some("archive".into()),
            topics: vec![
                TopicInfo {
                    topic: "gcn.classic.text.FERMI_GBM_FIN_POS".into(),
                    handlers: vec!["save-all".into(), "gbm".into()],
                    partitions: vec![PartitionInfo {
                        partition: 0,
                        earliest: Some(120),
                        latest: Some(1500),
                        committed: Some(1490),
                        lag: Some(10),
                        error: None,
                    }],
                },
                TopicInfo {
                    topic: "t".into(),
                    handlers: vec![],
                    partitions: vec![PartitionInfo {
                        partition: 1,
                        earliest: None,
                        latest: None,
                        committed: None,
                        lag: None,
                        error: Some("timed out".into()),
                    }],
                },
            ],
        };
        let text = table(&listing);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "group archive");
        assert_eq!(
            lines[1],
            "TOPIC                               PARTITION  EARLIEST  LATEST  COMMITTED  LAG  HANDLERS"
        );
        assert_eq!(
            lines[2],
            "gcn.classic.text.FERMI_GBM_FIN_POS          0       120    1500       1490   10  save-all,gbm"
        );
        assert_eq!(
            lines[3],
            "t                                           1         ?       ?          -    -  -"
        );
        assert_eq!(lines[4], "2 topic(s), 2 partition(s)");
        assert_eq!(lines[5], "t[1]: offsets unknown: timed out");
    }
}
