//! The delivery guarantees of `alerthost run` against a real Apache Kafka
//! broker: resuming at the first unhandled message, time ranges, failed saves
//! and crashes that lose nothing, forwards acknowledged before their source
//! is committed, graceful shutdown, scale-out in a group, and clear errors
//! for bad input.
//!
//! Start a broker with `scripts/kafka.sh start` and export the address it
//! prints as `ALERTHOST_KAFKA_BOOTSTRAP`; without it the tests that need one
//! are skipped (under `CI` they fail). What landed in the broker is checked
//! with the tests' own rdkafka client, never with the host's code. The
//! example components must be built
//! (`cargo build --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use alerthost_tests::{
    Host, Kafka, Outgoing, Received, chattr, count_saved, example, random_group, random_topic,
    require_kafka, rfc3339_millis, saved_files, saved_offsets, start_alerthost, start_host,
    temp_files, toml_str, unique_name, write_config,
};

/// Long enough for a host to start, join its group and handle a few hundred
/// messages on a loaded 2-core machine.
const SETTLE: Duration = Duration::from_secs(20);

/// A config running the `save-all` example on `topics`, saving into
/// `save_dir`. `source_extra` is added to `[source]` as TOML lines.
fn save_all_config(
    kafka: &Kafka,
    topics: &[&str],
    group: Option<&str>,
    save_dir: &Path,
    source_extra: &str,
) -> String {
    let topics = topics.iter().map(toml_str).collect::<Vec<_>>().join(", ");
    let group = group
        .map(|g| format!("group_id = {}\n", toml_str(g)))
        .unwrap_or_default();
    format!(
        r#"[source]
bootstrap_servers = {servers}
topics = [{topics}]
{group}commit_interval_ms = 200
{source_extra}

[sinks.files]
type = "file"
dir = {dir}

[[handler]]
name = "save-all"
component = {component}
topics = [{topics}]
save_to = "files"
"#,
        servers = toml_str(kafka.servers()),
        dir = toml_str(save_dir.to_str().expect("a UTF-8 path")),
        component = toml_str(example("save_all").to_str().expect("a UTF-8 path")),
    )
}

/// Distinct, recognizable bytes for message `i`, of a size that varies from
/// a few bytes to a few KiB.
fn payload(i: usize) -> Vec<u8> {
    let mut value = format!("message {i}:").into_bytes();
    let extra = (i * 7919) % 4096;
    value.extend((0..extra).map(|k| b'a' + ((i + k) % 26) as u8));
    value
}

/// `count` messages spread round-robin over `partitions` partitions.
fn spread(count: usize, partitions: i32, first: usize) -> Vec<Outgoing> {
    (first..first + count)
        .map(|i| Outgoing::new((i % partitions as usize) as i32, payload(i)))
        .collect()
}

/// Produce `messages` and return what each (partition, offset) holds.
fn produce_map(kafka: &Kafka, topic: &str, messages: &[Outgoing]) -> BTreeMap<(i32, i64), Vec<u8>> {
    offsets_map(messages, kafka.produce(topic, messages))
}

/// [`produce_map`], each message in a record batch of its own.
fn produce_map_one_batch_each(
    kafka: &Kafka,
    topic: &str,
    messages: &[Outgoing],
) -> BTreeMap<(i32, i64), Vec<u8>> {
    offsets_map(messages, kafka.produce_one_batch_each(topic, messages))
}

/// Each message by its (partition, offset).
fn offsets_map(messages: &[Outgoing], offsets: Vec<i64>) -> BTreeMap<(i32, i64), Vec<u8>> {
    messages
        .iter()
        .zip(offsets)
        .map(|(m, offset)| ((m.partition, offset), m.value.clone()))
        .collect()
}

/// Assert that `dir` holds exactly the messages of `expected`, each with its
/// exact bytes, under their default names, and no temporary file.
fn assert_saved_exactly(dir: &Path, topic: &str, expected: &BTreeMap<(i32, i64), Vec<u8>>) {
    assert_saved_are_complete(dir, topic, expected);
    let got = saved_offsets(dir, topic);
    let want: BTreeSet<(i32, i64)> = expected.keys().copied().collect();
    if got != want {
        let missing: Vec<_> = want.difference(&got).collect();
        let extra: Vec<_> = got.difference(&want).collect();
        panic!(
            "{}: saved set differs: missing {missing:?}, unexpected {extra:?}",
            dir.display()
        );
    }
    let temps = temp_files(dir);
    assert!(temps.is_empty(), "temporary files left behind: {temps:?}");
}

/// Assert that every file saved under `dir` so far is a message of `topic`
/// in `expected` and holds its exact bytes: no partial or stray file is
/// visible, even right after a crash.
fn assert_saved_are_complete(dir: &Path, topic: &str, expected: &BTreeMap<(i32, i64), Vec<u8>>) {
    for (key, path) in saved_files(dir) {
        let want = (key.topic == topic)
            .then(|| expected.get(&(key.partition, key.offset)))
            .flatten()
            .unwrap_or_else(|| panic!("{} is not a file of a produced message", path.display()));
        let bytes =
            std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        assert!(
            bytes == *want,
            "{} does not hold the bytes of its message: {} bytes, expected {}",
            path.display(),
            bytes.len(),
            want.len()
        );
    }
}

/// The committed offsets `group` should have after handling everything:
/// each partition's end offset.
fn all_committed(ends: &BTreeMap<i32, i64>) -> BTreeMap<i32, Option<i64>> {
    ends.iter().map(|(p, end)| (*p, Some(*end))).collect()
}

#[test]
fn resumes_after_restart_at_first_unhandled_message() {
    let kafka = require_kafka!();
    let (topic, group) = (random_topic(), random_group());
    kafka.create_topic(&topic, 1);
    let dir = tempfile::tempdir().unwrap();
    let (first_dir, second_dir) = (dir.path().join("saved-1"), dir.path().join("saved-2"));

    let first = produce_map(&kafka, &topic, &spread(10, 1, 0));
    let config = write_config(
        &dir.path().join("run-1"),
        &save_all_config(&kafka, &[&topic], Some(&group), &first_dir, ""),
    );
    let mut host = start_host(&config, &[]);
    host.wait_until("the first 10 messages to be saved", SETTLE, || {
        count_saved(&first_dir) == 10
    });
    host.stop_cleanly();
    assert_saved_exactly(&first_dir, &topic, &first);
    assert_eq!(
        kafka.committed_offsets(&group, &topic),
        BTreeMap::from([(0, Some(10))])
    );

    let second = produce_map(&kafka, &topic, &spread(5, 1, 10));
    assert_eq!(
        second.keys().map(|k| k.1).collect::<Vec<_>>(),
        [10, 11, 12, 13, 14]
    );
    // The same config file, changed: a restart of the same host, which
    // rejoins as the same static member of the group.
    let config = write_config(
        &dir.path().join("run-1"),
        &save_all_config(&kafka, &[&topic], Some(&group), &second_dir, ""),
    );
    let mut host = start_host(&config, &[]);
    // A partition is handled in order: once offset 14 is saved, anything the
    // host (wrongly) re-read from before 10 would be saved too.
    host.wait_until("offset 14 to be saved", SETTLE, || {
        saved_offsets(&second_dir, &topic).contains(&(0, 14))
    });
    host.stop_cleanly();
    assert_saved_exactly(&second_dir, &topic, &second);
    assert_eq!(
        kafka.committed_offsets(&group, &topic),
        BTreeMap::from([(0, Some(15))])
    );
}

#[test]
fn scans_from_earliest_without_group_and_commits_nothing() {
    let kafka = require_kafka!();
    let topic = random_topic();
    kafka.create_topic(&topic, 2);
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("saved");
    let expected = produce_map(&kafka, &topic, &spread(20, 2, 0));
    let groups_before: BTreeSet<String> = kafka.groups().into_iter().collect();

    let config = write_config(
        dir.path(),
        &save_all_config(&kafka, &[&topic], None, &saved, "start = \"earliest\""),
    );
    let mut host = start_host(&config, &[]);
    host.wait_until("all 20 messages to be saved", SETTLE, || {
        count_saved(&saved) == 20
    });
    host.stop_cleanly();
    assert_saved_exactly(&saved, &topic, &expected);

    // No group has committed an offset on the topic. The topic is new, so
    // only groups that appeared since the test began can have; a group that
    // committed would still be listed.
    let new_groups: Vec<String> = kafka
        .groups()
        .into_iter()
        .filter(|g| !groups_before.contains(g))
        .collect();
    for group in &new_groups {
        let committed = kafka.committed_offsets(group, &topic);
        assert!(
            committed.values().all(Option::is_none),
            "group {group} committed {committed:?} on {topic}, but the config has no group_id"
        );
    }
}

#[test]
fn since_until_reads_exactly_the_range_on_every_partition() {
    let kafka = require_kafka!();
    let (topic, group) = (random_topic(), random_group());
    kafka.create_topic(&topic, 3);
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("saved");

    // Message i at base + i s on partition i % 3: 10 per partition, each
    // partition's timestamps increasing. The range [base+5s, base+20s)
    // holds i = 5..20: 15 messages, 5 on each partition, including the one
    // exactly at `since` and excluding the one exactly at `until`.
    let base = (alerthost_tests::now_millis() - 10 * 60_000) / 1000 * 1000;
    let messages: Vec<Outgoing> = (0..30)
        .map(|i| Outgoing::new(i % 3, payload(i as usize)).at(base + i64::from(i) * 1000))
        .collect();
    let offsets = kafka.produce(&topic, &messages);
    let in_range: BTreeMap<(i32, i64), Vec<u8>> = messages
        .iter()
        .zip(offsets)
        .filter(|(m, _)| (base + 5000..base + 20_000).contains(&m.timestamp.unwrap()))
        .map(|(m, offset)| ((m.partition, offset), m.value.clone()))
        .collect();
    assert_eq!(in_range.len(), 15);
    let (since, until) = (rfc3339_millis(base + 5000), rfc3339_millis(base + 20_000));

    let config = write_config(
        dir.path(),
        &save_all_config(&kafka, &[&topic], Some(&group), &saved, ""),
    );
    let mut host = start_host(&config, &["--since", &since, "--until", &until]);
    let status = host.wait_exit(SETTLE);
    assert!(
        status.success(),
        "a time-range run ends by itself with status 0, got {status}"
    );
    assert_saved_exactly(&saved, &topic, &in_range);
    let per_partition = in_range
        .keys()
        .fold(BTreeMap::new(), |mut m: BTreeMap<i32, usize>, k| {
            *m.entry(k.0).or_default() += 1;
            m
        });
    // The range covers every partition.
    assert_eq!(per_partition, BTreeMap::from([(0, 5), (1, 5), (2, 5)]));
    // Nothing is committed in a time-range run, even with a group.
    let committed = kafka.committed_offsets(&group, &topic);
    assert!(
        committed.values().all(Option::is_none),
        "a time-range run committed {committed:?}"
    );
}

#[test]
fn failed_save_is_not_committed_and_is_delivered_again() {
    let kafka = require_kafka!();
    let (topic, group) = (random_topic(), random_group());
    kafka.create_topic(&topic, 1);
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("saved");
    let expected = produce_map(&kafka, &topic, &spread(6, 1, 0));

    // The directory the files go to cannot take new files, even for root
    // (an immutable directory): an infrastructure failure, not the
    // handler's.
    let blocked = saved.join("save-all").join(&topic).join("partition=0");
    std::fs::create_dir_all(&blocked).unwrap();
    set_immutable(&blocked, true);

    let config = write_config(
        dir.path(),
        &save_all_config(&kafka, &[&topic], Some(&group), &saved, ""),
    );
    let mut host = start_host(&config, &[]);
    let status = host.wait_exit(SETTLE);
    set_immutable(&blocked, false);
    let stderr = host.stderr();
    assert_eq!(
        status.code(),
        Some(1),
        "a save that cannot be written must stop the host with an error: {stderr}"
    );
    let blocked_name = blocked.display().to_string();
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("error:") && l.contains(&blocked_name)),
        "the final error names the directory that failed ({blocked_name}): {stderr}"
    );
    // Nothing at or past the failed message is saved or committed.
    assert_eq!(saved_offsets(&saved, &topic), BTreeSet::new());
    let committed = kafka.committed_offsets(&group, &topic)[&0];
    assert!(
        committed.unwrap_or(0) == 0,
        "committed {committed:?}: past offset 0, whose save failed"
    );

    std::fs::remove_dir_all(&blocked).unwrap();
    // Fix the sink: the message is delivered again and saved.
    let mut host = start_host(&config, &[]);
    host.wait_until("all 6 messages to be saved", SETTLE, || {
        count_saved(&saved) == 6
    });
    host.stop_cleanly();
    assert_saved_exactly(&saved, &topic, &expected);
    assert_eq!(
        kafka.committed_offsets(&group, &topic),
        BTreeMap::from([(0, Some(6))])
    );
}

/// Make `dir` immutable (no entry can be added, even by root) or not again,
/// with chattr(1).
fn set_immutable(dir: &Path, on: bool) {
    chattr(if on { "+i" } else { "-i" }, &[dir.to_path_buf()]);
}

/// A unified-schema JSON notice at (ra, dec).
fn notice(i: usize, ra: f64, dec: f64) -> Vec<u8> {
    let second = i % 60;
    format!(
        r#"{{"mission": "TEST", "trigger_time": "2026-01-01T00:00:{second:02}Z", "ra": {ra}, "dec": {dec}, "ra_dec_error": 0.1, "n": {i}}}"#
    )
    .into_bytes()
}

#[test]
fn forward_is_on_target_topic_before_source_offset_is_committed() {
    let kafka = require_kafka!();
    let (source, target, group) = (random_topic(), random_topic(), random_group());
    kafka.create_topic(&source, 2);
    // The target topic does not exist at first, and the sink may not have
    // it created: forwards wait in the producer, unacknowledged.
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            r#"[source]
bootstrap_servers = {servers}
topics = [{source}]
group_id = {group}
commit_interval_ms = 100

[sinks.summaries]
type = "kafka"
topic = {target}
librdkafka = {{ "allow.auto.create.topics" = "false" }}

[[handler]]
name = "sky"
component = {component}
topics = [{source}]
forward_to = ["summaries"]
on_error = "stop"
params = {{ ra = "10", dec = "20", radius = "5", sink = "summaries" }}
"#,
            servers = toml_str(kafka.servers()),
            source = toml_str(&source),
            target = toml_str(&target),
            group = toml_str(&group),
            component = toml_str(example("sky_region").to_str().unwrap()),
        ),
    );
    let mut host = start_host(&config, &[]);
    host.wait_for_stderr("partitions assigned", SETTLE);

    // Source messages inside the cone, by (partition, offset).
    let mut inside: BTreeSet<(i32, i64)> = BTreeSet::new();
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    let mut samples = 0;
    for batch in 0..4 {
        // Partition k % 2; on each partition the messages alternate
        // outside, inside, outside, ... the cone.
        let is_inside = |k: usize| (k / 2) % 2 == 1;
        let messages: Vec<Outgoing> = (0..20)
            .map(|k| {
                let (ra, dec) = if is_inside(k) {
                    (10.0 + 0.1 * (k as f64), 20.0)
                } else {
                    (200.0, -40.0)
                };
                Outgoing::new((k % 2) as i32, notice(batch * 20 + k, ra, dec))
            })
            .collect();
        let offsets = kafka.produce(&source, &messages);
        for (k, (m, offset)) in messages.iter().zip(offsets).enumerate() {
            if is_inside(k) {
                inside.insert((m.partition, offset));
            }
            let end = ends.entry(m.partition).or_default();
            *end = (*end).max(offset + 1);
        }
        if batch == 0 {
            // The dropped message at offset 0 is committed; the forward of
            // offset 1, not acknowledged, holds each partition there.
            let held = BTreeMap::from([(0, Some(1)), (1, Some(1))]);
            host.wait_until("the first dropped messages to be committed", SETTLE, || {
                check_committed_were_forwarded(&kafka, &group, &source, &target, &inside) == held
            });
            let until = Instant::now() + Duration::from_secs(2);
            while Instant::now() < until {
                let committed =
                    check_committed_were_forwarded(&kafka, &group, &source, &target, &inside);
                assert_eq!(committed, held, "committed past an unacknowledged forward");
                host.assert_running();
            }
            assert_eq!(kafka.partitions(&target), 0, "the target appeared early");
            kafka.create_topic(&target, 1);
        }
        // Sample while the host works: whatever is committed has every
        // forward of the offsets before it on the target topic already.
        host.wait_until("the batch to be committed", SETTLE, || {
            samples += 1;
            let committed =
                check_committed_were_forwarded(&kafka, &group, &source, &target, &inside);
            committed == all_committed(&ends)
        });
    }
    host.stop_cleanly();
    assert!(samples >= 4);

    let records = kafka.read_topic(&target);
    let version = host_handler_version(&host.stderr());
    let mut forwarded = BTreeSet::new();
    for record in &records {
        assert_eq!(
            record.header("alerthost.source.topic").as_deref(),
            Some(source.as_str()),
            "{record:?}"
        );
        assert_eq!(
            record.header("alerthost.handler").as_deref(),
            Some("sky"),
            "{record:?}"
        );
        assert_eq!(
            record.header("alerthost.handler.version").as_deref(),
            Some(version.as_str()),
            "{record:?}"
        );
        let key = (
            parse_header(record, "alerthost.source.partition"),
            parse_header(record, "alerthost.source.offset"),
        );
        let summary: serde_json::Value = serde_json::from_slice(&record.value).unwrap();
        assert_eq!(
            (
                summary["topic"].as_str(),
                summary["partition"].as_i64(),
                summary["offset"].as_i64()
            ),
            (Some(source.as_str()), Some(i64::from(key.0)), Some(key.1)),
            "the summary describes its source message"
        );
        assert!(
            forwarded.insert(key),
            "{key:?} was forwarded twice in a clean run"
        );
    }
    assert_eq!(
        forwarded, inside,
        "exactly the alerts inside the cone are forwarded"
    );
    assert_eq!(
        kafka.committed_offsets(&group, &source),
        all_committed(&ends)
    );
}

/// Read the committed offsets of `group` on `source`, then the target topic,
/// and check that every message inside the cone below a committed offset
/// has its forward on the target. Returns the committed offsets.
fn check_committed_were_forwarded(
    kafka: &Kafka,
    group: &str,
    source: &str,
    target: &str,
    inside: &BTreeSet<(i32, i64)>,
) -> BTreeMap<i32, Option<i64>> {
    let committed = kafka.committed_offsets(group, source);
    let forwarded: BTreeSet<(i32, i64)> = kafka
        .read_topic(target)
        .iter()
        .map(|r| {
            (
                parse_header(r, "alerthost.source.partition"),
                parse_header(r, "alerthost.source.offset"),
            )
        })
        .collect();
    for (&partition, &position) in &committed {
        let position = position.unwrap_or(0);
        let missing: Vec<_> = inside
            .iter()
            .filter(|&&(p, o)| p == partition && o < position && !forwarded.contains(&(p, o)))
            .collect();
        assert!(
            missing.is_empty(),
            "{source}[{partition}] is committed up to {position}, \
             but the forwards of {missing:?} are not on {target}"
        );
    }
    committed
}

fn parse_header<T: std::str::FromStr>(record: &Received, name: &str) -> T {
    record
        .header(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "record {}@{} has no numeric header {name}",
                record.partition, record.offset
            )
        })
}

/// The handler version the host logged when it loaded it (`version="..."`).
fn host_handler_version(stderr: &str) -> String {
    let line = stderr
        .lines()
        .find(|l| l.contains("handler loaded"))
        .unwrap_or_else(|| panic!("no `handler loaded` line in:\n{stderr}"));
    let start = line.find("version=").expect("a version field") + "version=".len();
    line[start..]
        .trim_start_matches('"')
        .split(|c: char| c == '"' || c.is_whitespace())
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn kill_9_mid_stream_loses_nothing() {
    let kafka = require_kafka!();
    let (topic, group) = (random_topic(), random_group());
    kafka.create_topic(&topic, 2);
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("saved");
    let expected = produce_map(&kafka, &topic, &spread(2000, 2, 0));

    let config = write_config(
        dir.path(),
        &save_all_config(
            &kafka,
            &[&topic],
            Some(&group),
            &saved,
            // The killed member leaves no goodbye: the broker waits its
            // session timeout before the restarted host gets the partitions.
            r#"librdkafka = { "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "1000" }"#,
        ),
    );
    let mut host = start_host(&config, &[]);
    host.wait_until("200 messages to be saved", SETTLE, || {
        count_saved(&saved) >= 200
    });
    host.kill_9();
    let at_kill = count_saved(&saved);
    assert!(
        at_kill < 2000,
        "everything was saved before the kill; the test needs more messages"
    );
    assert_saved_are_complete(&saved, &topic, &expected);
    // A save cut short leaves its (hidden) temporary file, never a partial
    // `.bin`; the restarted host removes it when it writes there again.

    let mut host = start_host(&config, &[]);
    host.wait_until(
        "all 2000 messages to be saved",
        Duration::from_secs(90),
        || count_saved(&saved) == 2000,
    );
    host.stop_cleanly();
    // Every offset exactly once (files are named by offset), with its exact
    // bytes: nothing lost, nothing partial.
    assert_saved_exactly(&saved, &topic, &expected);
    assert_eq!(
        kafka.committed_offsets(&group, &topic),
        all_committed(&kafka.end_offsets(&topic))
    );
}

#[test]
fn sigterm_commits_everything_handled_and_exits_0() {
    let kafka = require_kafka!();
    let (topic, group) = (random_topic(), random_group());
    kafka.create_topic(&topic, 3);
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("saved");
    let expected = produce_map(&kafka, &topic, &spread(300, 3, 0));

    // Periodic commits are an hour apart: only the shutdown commits.
    let text = save_all_config(&kafka, &[&topic], Some(&group), &saved, "")
        .replace("commit_interval_ms = 200", "commit_interval_ms = 3600000");
    let config = write_config(dir.path(), &text);
    let mut host = start_host(&config, &[]);
    host.wait_until("all 300 messages to be saved", SETTLE, || {
        count_saved(&saved) == 300
    });
    let before = kafka.committed_offsets(&group, &topic);
    assert!(
        before.values().all(Option::is_none),
        "precondition: nothing is committed before the signal, got {before:?}"
    );
    host.stop_cleanly();
    assert_saved_exactly(&saved, &topic, &expected);
    assert_eq!(
        kafka.committed_offsets(&group, &topic),
        BTreeMap::from([(0, Some(100)), (1, Some(100)), (2, Some(100))])
    );
    assert!(
        host.stderr().contains("300 messages read"),
        "the summary counts every message"
    );
}

/// A handler slower than the network (here: a local queue held to one
/// message) is not left idle while librdkafka waits out its default 1 s
/// pause after each full queue (`fetch.queue.backoff.ms`). Every fetch here
/// returns one message, which fills the queue; with the 1 s pause the 40
/// messages take 40 s or more.
#[test]
fn a_full_partition_queue_pauses_fetching_only_briefly() {
    save_one_message_a_fetch(40, false);
}

/// A partition whose queue is full is left out of librdkafka's fetches until
/// the fetch in flight returns, and the broker holds a fetch that asks only
/// for partitions at their end (a quiet topic) for `fetch.wait.max.ms`
/// (librdkafka's default: 500 ms). Here every fetch of the busy topic fills
/// its queue (one message a fetch, `queued.min.messages` = 1), so each of its
/// 60 messages waits out one such wait on the quiet topic: 30 s or more with
/// librdkafka's default, about 6 s with the host's.
#[test]
fn a_busy_partition_is_not_held_up_by_a_quiet_topic() {
    save_one_message_a_fetch(60, true);
}

/// Produce `count` messages to one partition, each a record batch of its
/// own, and have a host save them within [`SETTLE`] while every fetch
/// returns one message and fills the partition's queue
/// (`queued.min.messages` = 1); with `beside_quiet`, the host also reads a
/// topic that stays empty.
fn save_one_message_a_fetch(count: usize, beside_quiet: bool) {
    let kafka = require_kafka!();
    let (busy, quiet) = (random_topic(), random_topic());
    kafka.create_topic(&busy, 1);
    let mut topics = vec![busy.as_str()];
    if beside_quiet {
        kafka.create_topic(&quiet, 1);
        topics.push(&quiet);
    }
    let messages: Vec<Outgoing> = (0..count).map(|i| Outgoing::new(0, payload(i))).collect();
    let expected = produce_map_one_batch_each(&kafka, &busy, &messages);
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("saved");
    let config = write_config(
        dir.path(),
        &save_all_config(
            &kafka,
            &topics,
            None,
            &saved,
            r#"librdkafka = { "queued.min.messages" = "1", "fetch.message.max.bytes" = "1" }"#,
        ),
    );
    let mut host = start_host(&config, &[]);
    host.wait_until(&format!("the {count} messages to be saved"), SETTLE, || {
        count_saved(&saved) == count
    });
    host.stop_cleanly();
    assert_saved_exactly(&saved, &busy, &expected);
}

#[test]
fn two_hosts_in_one_group_split_partitions_and_handle_every_message() {
    let kafka = require_kafka!();
    let (topic, group) = (random_topic(), random_group());
    kafka.create_topic(&topic, 4);
    let dir = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (dir.path().join("saved-a"), dir.path().join("saved-b"));
    let config_a = write_config(
        &dir.path().join("a"),
        &save_all_config(&kafka, &[&topic], Some(&group), &dir_a, ""),
    );
    let config_b = write_config(
        &dir.path().join("b"),
        &save_all_config(&kafka, &[&topic], Some(&group), &dir_b, ""),
    );

    let mut a = start_host(&config_a, &[]);
    a.wait_for_stderr("partitions assigned", SETTLE);
    let mut b = start_host(&config_b, &[]);
    b.wait_for_stderr("partitions assigned", SETTLE);
    // The group has split once `a` has given up partitions to `b`.
    a.wait_for_stderr("partitions revoked", SETTLE);
    wait_for_assignment(&mut a, 2);

    let expected = produce_map(&kafka, &topic, &spread(400, 4, 0));
    let total = |a: &Path, b: &Path| count_saved(a) + count_saved(b);
    a.wait_until(
        "all 400 messages to be saved by the two hosts",
        SETTLE,
        || total(&dir_a, &dir_b) >= 400,
    );
    b.assert_running();
    a.signal("TERM");
    b.signal("TERM");
    for host in [&mut a, &mut b] {
        let status = host.wait_exit(SETTLE);
        assert!(
            status.success(),
            "SIGTERM ends each host with status 0, got {status}"
        );
    }

    let saved_a = saved_offsets(&dir_a, &topic);
    let saved_b = saved_offsets(&dir_b, &topic);
    assert!(
        !saved_a.is_empty() && !saved_b.is_empty(),
        "both hosts handle messages: a={} b={}",
        saved_a.len(),
        saved_b.len()
    );
    let union: BTreeSet<(i32, i64)> = saved_a.union(&saved_b).copied().collect();
    assert_eq!(union, expected.keys().copied().collect::<BTreeSet<_>>());
    // With a stable split, each partition belongs to one host.
    let parts_a: BTreeSet<i32> = saved_a.iter().map(|k| k.0).collect();
    let parts_b: BTreeSet<i32> = saved_b.iter().map(|k| k.0).collect();
    assert!(
        parts_a.is_disjoint(&parts_b),
        "a has {parts_a:?}, b has {parts_b:?}"
    );
    assert_eq!(parts_a.len() + parts_b.len(), 4);
    assert_eq!(
        kafka.committed_offsets(&group, &topic),
        BTreeMap::from([
            (0, Some(100)),
            (1, Some(100)),
            (2, Some(100)),
            (3, Some(100))
        ])
    );
}

/// Wait until the host's latest `partitions assigned` line lists `count`
/// partitions.
fn wait_for_assignment(host: &mut Host, count: usize) {
    let latest = |host: &Host| {
        let stderr = host.stderr();
        let line = stderr
            .lines()
            .rfind(|l| l.contains("partitions assigned"))?;
        Some(line.matches('[').count())
    };
    let deadline = Instant::now() + SETTLE;
    while latest(host) != Some(count) {
        host.assert_running();
        assert!(
            Instant::now() < deadline,
            "the host's latest assignment is not {count} partitions"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn unreachable_broker_fails_within_30s_with_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let unreachable = Kafka::new("127.0.0.1:1");
    let config = write_config(
        dir.path(),
        &save_all_config(
            &unreachable,
            &["alerts"],
            Some("g"),
            &dir.path().join("saved"),
            "",
        ),
    );
    let started = Instant::now();
    let mut host = start_host(&config, &[]);
    let status = host.wait_exit(Duration::from_secs(30));
    let elapsed = started.elapsed();
    assert!(
        !status.success(),
        "an unreachable broker is an error, got {status}"
    );
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
    let stderr = host.stderr();
    // librdkafka's own log lines name it too; the host's final error must.
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("error:") && l.contains("127.0.0.1:1")),
        "the error names the address"
    );
}

/// Audit finding #12: client errors were called authentication failures when
/// their text merely contained "token". A broker address with that word in
/// it (here one that does not resolve) is a connection error: the host must
/// say it cannot reach Kafka, not tell the user to check the client id and
/// secret.
#[test]
fn unreachable_broker_named_token_is_a_connection_error_not_an_auth_failure() {
    let dir = tempfile::tempdir().unwrap();
    let unreachable = Kafka::new("token-broker.invalid:9092");
    let config = write_config(
        dir.path(),
        &save_all_config(
            &unreachable,
            &["alerts"],
            Some("g"),
            &dir.path().join("saved"),
            "",
        ),
    );
    let mut host = start_host(&config, &[]);
    let status = host.wait_exit(Duration::from_secs(30));
    assert!(!status.success(), "an unreachable broker is an error");
    let stderr = host.stderr();
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no final error:\n{stderr}"));
    assert!(
        error.contains("cannot reach Kafka at token-broker.invalid:9092"),
        "the final error says the broker cannot be reached: {error}"
    );
    assert!(
        !stderr.contains("authentication failed") && !error.contains("authenticate"),
        "nothing here is an authentication failure:\n{stderr}"
    );
}

#[test]
fn unknown_config_key_names_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let kafka = Kafka::new("127.0.0.1:9092");
    let text = save_all_config(
        &kafka,
        &["alerts"],
        None,
        &dir.path().join("saved"),
        "comit_interval_ms = 5",
    );
    let config = write_config(dir.path(), &text);
    let mut host = start_host(&config, &[]);
    let status = host.wait_exit(SETTLE);
    assert_eq!(status.code(), Some(2), "a config error exits 2");
    let stderr = host.stderr();
    assert!(
        stderr.contains("comit_interval_ms"),
        "the error names the key"
    );
    assert!(
        stderr.contains(&config.display().to_string()),
        "the error names the file"
    );
}

#[test]
fn missing_handler_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let kafka = Kafka::new("127.0.0.1:9092");
    let missing = dir.path().join("handlers/not-built.wasm");
    let text = save_all_config(&kafka, &["alerts"], None, &dir.path().join("saved"), "").replace(
        &toml_str(example("save_all").to_str().unwrap()),
        &toml_str(missing.to_str().unwrap()),
    );
    let config = write_config(dir.path(), &text);
    let mut host = start_host(&config, &[]);
    let status = host.wait_exit(SETTLE);
    assert_eq!(status.code(), Some(2), "a config error exits 2");
    let stderr = host.stderr();
    assert!(
        stderr.contains(&missing.display().to_string()),
        "the error names the missing file"
    );
}

#[test]
fn pattern_matching_nothing_warns_and_keeps_waiting() {
    let kafka = require_kafka!();
    let prefix = unique_name("alerthost-test-pattern");
    let pattern = format!("^{prefix}-.*");
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("saved");
    let config = write_config(
        dir.path(),
        &save_all_config(
            &kafka,
            &[&pattern],
            Some(&random_group()),
            &saved,
            r#"librdkafka = { "topic.metadata.refresh.interval.ms" = "500" }"#,
        ),
    );
    let mut host = start_host(&config, &[]);
    host.wait_for_stderr("no topic matches this pattern", SETTLE);
    let quiet_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < quiet_until {
        host.assert_running();
        std::thread::sleep(Duration::from_millis(100));
    }

    let topic = format!("{prefix}-late");
    kafka.create_topic(&topic, 1);
    let expected = produce_map(&kafka, &topic, &spread(3, 1, 0));
    host.wait_until("the new topic's 3 messages to be saved", SETTLE, || {
        count_saved(&saved) == 3
    });
    host.stop_cleanly();
    assert_saved_exactly(&saved, &topic, &expected);
}

/// A GCN source (`domain`, `client_id`, secret from the environment).
fn gcn_config(dir: &Path, with_kafka_sink: bool) -> String {
    let sink = if with_kafka_sink {
        "\n[sinks.copies]\ntype = \"kafka\"\ntopic = \"copies\"\n"
    } else {
        ""
    };
    let forward = if with_kafka_sink {
        "forward_to = [\"copies\"]\n"
    } else {
        ""
    };
    format!(
        r#"[source]
domain = "localhost.invalid"
client_id = "test-client-id"
topics = ["gcn.classic.text.FERMI_GBM_FIN_POS"]
{sink}
[sinks.files]
type = "file"
dir = {dir}

[[handler]]
name = "save-all"
component = {component}
topics = ["gcn.classic.text.FERMI_GBM_FIN_POS"]
save_to = "files"
{forward}"#,
        dir = toml_str(dir.join("saved").to_str().unwrap()),
        component = toml_str(example("save_all").to_str().unwrap()),
    )
}

#[test]
fn gcn_oidc_recipe_is_accepted_by_the_built_librdkafka() {
    use rdkafka::consumer::BaseConsumer;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerthost.toml");
    let config: alerthost::config::Config = toml::from_str(&gcn_config(dir.path(), false)).unwrap();
    let env = [(
        "GCN_CLIENT_SECRET".to_owned(),
        "test-client-secret".to_owned(),
    )];
    let plan = config.validate(&path, &env).unwrap();
    let get = |key: &str| plan.kafka.get(key).map(String::as_str);
    assert_eq!(get("sasl.oauthbearer.method"), Some("oidc"));
    assert_eq!(
        get("sasl.mechanisms").or(get("sasl.mechanism")),
        Some("OAUTHBEARER")
    );
    assert_eq!(
        get("security.protocol")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("sasl_ssl")
    );
    assert_eq!(get("sasl.oauthbearer.client.id"), Some("test-client-id"));
    assert_eq!(
        get("sasl.oauthbearer.client.secret"),
        Some("test-client-secret")
    );
    assert_eq!(
        get("sasl.oauthbearer.token.endpoint.url"),
        Some("https://auth.localhost.invalid/oauth2/token")
    );
    assert!(
        get("bootstrap.servers").is_some_and(|s| s.contains("kafka.localhost.invalid")),
        "{:?}",
        plan.kafka
    );

    // librdkafka checks every property, OIDC included, when a client is made.
    let mut client = rdkafka::ClientConfig::new();
    for (key, value) in &plan.kafka {
        client.set(key, value);
    }
    client.set("group.id", "alerthost-test");
    let consumer: Result<BaseConsumer, _> = client.create();
    assert!(
        consumer.is_ok(),
        "the built librdkafka refuses the GCN recipe: {:?}",
        consumer.err()
    );
    drop(consumer);

    // The binary too: a dry run builds a Kafka sink that inherits the
    // source's connection (the OIDC recipe) and creates its producer.
    let config = write_config(dir.path(), &gcn_config(dir.path(), true));
    let mut host = start_alerthost(
        &["run", "--config", config.to_str().unwrap(), "--dry-run"],
        &[("GCN_CLIENT_SECRET", "test-client-secret")],
    );
    let status = host.wait_exit(SETTLE);
    assert!(
        status.success(),
        "a dry run with the GCN recipe succeeds, got {status}"
    );
    assert!(
        host.stdout().contains("is valid"),
        "stdout: {}",
        host.stdout()
    );
    assert!(
        !host.stderr().contains("test-client-secret")
            && !host.stdout().contains("test-client-secret"),
        "the secret is never printed"
    );
}
