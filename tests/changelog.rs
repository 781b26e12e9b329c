//! The state changelog module against a real broker: what an append writes
//! a restore gives back (in order, with the last watermarks), a restore from
//! a position reads only what is newer, the topic is created compacted or
//! refused when it is not, records not written by alerthost for this handler
//! are refused, and an append with the cluster gone fails in time.
//!
//! Start a broker with `scripts/kafka.sh start` and export the address it
//! prints as `ALERTHOST_KAFKA_BOOTSTRAP`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use alerthost::state::Change;
use alerthost::state::changelog::{Changelog, ChangelogPosition, HOST_HEADER, Restored, host_id};
use alerthost_tests::{Kafka, Outgoing, OwnBroker, random_topic, require_kafka};

fn properties(kafka: &Kafka) -> BTreeMap<String, String> {
    BTreeMap::from([("bootstrap.servers".to_owned(), kafka.servers().to_owned())])
}

fn put(key: &str, value: &str, seq: u64) -> Change {
    Change::Put {
        key: key.to_owned(),
        value: value.as_bytes().to_vec(),
        expires_ms: None,
        seq,
    }
}

fn restore_all(
    changelog: &Changelog,
    since: Option<&ChangelogPosition>,
) -> (Vec<Restored>, ChangelogPosition) {
    let mut restored = Vec::new();
    let position = changelog
        .restore(since, |r| restored.push(r))
        .expect("a restore");
    (restored, position)
}

/// The restored records that are watermarks, as (topic, partition) → next.
fn last_watermarks(restored: &[Restored]) -> BTreeMap<(String, i32), i64> {
    let mut last = BTreeMap::new();
    for record in restored {
        if let Restored::Watermark {
            topic,
            partition,
            next,
        } = record
        {
            last.insert((topic.clone(), *partition), *next);
        }
    }
    last
}

#[test]
fn append_then_restore_gives_the_same_changes_and_the_last_watermarks() {
    let kafka = require_kafka!();
    let topic = random_topic();
    let writer = Changelog::open(&properties(&kafka), &topic, "first-notice").expect("open");
    let first = vec![
        put("bn1", "radius=3.1", 1),
        Change::Put {
            key: "bn2".into(),
            value: vec![0, 255, 7],
            expires_ms: Some(1_764_806_400_000),
            seq: 2,
        },
    ];
    let second = vec![
        put("bn1", "radius=0.4", 3),
        Change::Delete {
            key: "bn2".into(),
            seq: 4,
        },
    ];
    writer
        .append(&first, &[("gcn.a".into(), 0, 11), ("gcn.b".into(), 3, 5)])
        .expect("the first append");
    writer
        .append(&second, &[("gcn.a".into(), 0, 17)])
        .expect("the second append");

    // Another host: a changelog opened afresh on the same topic.
    let reader = Changelog::open(&properties(&kafka), &topic, "first-notice").expect("reopen");
    let (restored, position) = restore_all(&reader, None);
    let changes: Vec<Change> = restored
        .iter()
        .filter_map(|r| match r {
            Restored::Change(change) => Some(change.clone()),
            Restored::Watermark { .. } => None,
        })
        .collect();
    assert_eq!(changes, [first, second].concat(), "changes in log order");
    assert_eq!(
        last_watermarks(&restored),
        BTreeMap::from([(("gcn.a".into(), 0), 17), (("gcn.b".into(), 3), 5)])
    );
    // Each watermark comes after the changes of its append.
    let watermark_17 = restored
        .iter()
        .position(|r| matches!(r, Restored::Watermark { next: 17, .. }))
        .expect("the second watermark");
    assert_eq!(watermark_17, restored.len() - 1, "{restored:?}");
    assert!(
        position.next(0).is_some_and(|next| next >= 7),
        "{position:?}"
    );

    // What landed in the broker, read by a client of the tests' own: the
    // record keys and a tombstone for the delete, each naming this process.
    let records = kafka.read_topic(&topic);
    let keys: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned())
        .collect();
    assert_eq!(
        keys,
        [
            "s/bn1",
            "s/bn2",
            "w/gcn.a/0",
            "w/gcn.b/3",
            "s/bn1",
            "s/bn2",
            "w/gcn.a/0"
        ]
    );
    assert!(records[5].value.is_empty(), "the delete is a tombstone");
    for record in &records {
        assert_eq!(record.header(HOST_HEADER).as_deref(), Some(host_id()));
    }
}

#[test]
fn restore_from_a_position_returns_only_newer_records() {
    let kafka = require_kafka!();
    let topic = random_topic();
    let changelog = Changelog::open(&properties(&kafka), &topic, "counter").expect("open");
    changelog
        .append(&[put("n", "1", 1)], &[("t".into(), 0, 1)])
        .expect("append 1");
    let (first, position) = restore_all(&changelog, None);
    assert_eq!(first.len(), 2);

    changelog
        .append(&[put("n", "2", 2)], &[("t".into(), 0, 2)])
        .expect("append 2");
    let (newer, later) = restore_all(&changelog, Some(&position));
    assert_eq!(
        newer,
        [
            Restored::Change(put("n", "2", 2)),
            Restored::Watermark {
                topic: "t".into(),
                partition: 0,
                next: 2
            }
        ]
    );
    assert!(later.next(0) > position.next(0), "{position:?} → {later:?}");

    let (nothing, same) = restore_all(&changelog, Some(&later));
    assert!(nothing.is_empty(), "{nothing:?}");
    assert_eq!(same, later);
}

#[test]
fn a_missing_topic_is_created_compacted() {
    let kafka = require_kafka!();
    let topic = random_topic();
    assert_eq!(kafka.partitions(&topic), 0, "the topic does not exist yet");
    let changelog = Changelog::open(&properties(&kafka), &topic, "first-notice").expect("open");
    assert_eq!(kafka.partitions(&topic), 1);
    let config = kafka.topic_config(&topic);
    assert_eq!(
        config.get("cleanup.policy").map(String::as_str),
        Some("compact")
    );
    changelog
        .append(&[put("k", "v", 1)], &[])
        .expect("an append to the new topic");
    // Opening it again finds it compacted and keeps it.
    Changelog::open(&properties(&kafka), &topic, "first-notice").expect("reopen");
}

#[test]
fn a_topic_that_is_not_compacted_is_refused_with_the_fix_named() {
    let kafka = require_kafka!();
    for policy in ["delete", "compact,delete"] {
        let topic = random_topic();
        kafka.create_topic_with(&topic, 1, &[("cleanup.policy", policy)]);
        let error = format!(
            "{:#}",
            Changelog::open(&properties(&kafka), &topic, "first-notice")
                .expect_err("a topic that is not compacted")
        );
        let fix = format!(
            "kafka-configs.sh --bootstrap-server {} --alter --entity-type topics --entity-name \
             {topic} --add-config cleanup.policy=compact",
            kafka.servers()
        );
        for needed in [format!("`{topic}`"), "`first-notice`".into(), fix] {
            assert!(error.contains(&needed), "{error}\nshould name {needed}");
        }
        assert_eq!(
            kafka.topic_config(&topic)["cleanup.policy"],
            policy,
            "the topic is left as it was"
        );
    }
}

#[test]
fn records_not_written_for_this_handler_are_refused_naming_partition_and_offset() {
    let kafka = require_kafka!();

    let shared = random_topic();
    Changelog::open(&properties(&kafka), &shared, "dedupe")
        .expect("open")
        .append(&[put("k", "v", 1)], &[])
        .expect("append");
    let other = Changelog::open(&properties(&kafka), &shared, "counter").expect("open");
    let error = format!(
        "{:#}",
        other
            .restore(None, |_| {})
            .expect_err("another handler's state")
    );
    for needed in [
        format!("`{shared}`"),
        "partition 0 offset 0".into(),
        "handler `dedupe`".into(),
        "`counter`".into(),
    ] {
        assert!(error.contains(&needed), "{error}\nshould name {needed}");
    }

    let foreign = random_topic();
    kafka.create_topic_with(&foreign, 1, &[("cleanup.policy", "compact")]);
    let mut record = Outgoing::new(0, "not a changelog record");
    record.key = Some(b"s/k".to_vec());
    kafka.produce(&foreign, &[record]);
    let changelog = Changelog::open(&properties(&kafka), &foreign, "dedupe").expect("open");
    let error = format!(
        "{:#}",
        changelog
            .restore(None, |_| {})
            .expect_err("a foreign record")
    );
    for needed in [format!("`{foreign}`"), "partition 0 offset 0".into()] {
        assert!(error.contains(&needed), "{error}\nshould name {needed}");
    }
}

#[test]
fn append_with_the_broker_gone_fails_within_the_timeout() {
    if alerthost_tests::kafka_bootstrap().is_none() {
        return;
    }
    let mut broker = OwnBroker::start();
    let kafka = broker.client();
    let topic = random_topic();
    let timeout = Duration::from_secs(3);
    let changelog =
        Changelog::open_with_timeout(&properties(&kafka), &topic, "dedupe", timeout).expect("open");
    changelog
        .append(&[put("k", "1", 1)], &[("t".into(), 0, 1)])
        .expect("an append while the broker runs");
    broker.stop();

    let started = Instant::now();
    let error = changelog
        .append(&[put("k", "2", 2)], &[("t".into(), 0, 2)])
        .expect_err("an append with the broker gone");
    let took = started.elapsed();
    let error = format!("{error:#}");
    for needed in [format!("`{topic}`"), "`dedupe`".into()] {
        assert!(error.contains(&needed), "{error}\nshould name {needed}");
    }
    // Bounded by the timeout (plus the abort, which gets the same budget),
    // not by librdkafka's default of five minutes.
    assert!(took < timeout * 3, "the append took {took:?}: {error}");
}
