//! Handler state with a changelog topic, end to end against the real
//! broker: a host whose local store is deleted restores it from the
//! changelog and gives the outputs of an uninterrupted run; a second host
//! of the group takes over partitions with the state the first host wrote,
//! and between rebalances each host sees its own writes only (what the
//! README promises).
//!
//! The handler is the `stateful` test guest: a dedupe counter that saves
//! `ID #n` for the n-th new event id and drops repeats.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use alerthost_tests::{
    Host, Kafka, Outgoing, random_group, random_topic, require_kafka, saved_files, start_host,
    toml_str, wait_for, write_config,
};

fn guest(name: &str) -> PathBuf {
    Path::new(env!("ALERTHOST_TEST_GUESTS")).join(format!("{name}.wasm"))
}

/// A host's config in `dir`: `stateful` on `topic`, saves under `dir/out`,
/// state in `dir/state`, its changelog `changelog`.
fn config(kafka: &Kafka, dir: &Path, topic: &str, group: &str, changelog: &str) -> PathBuf {
    let text = format!(
        r#"[source]
bootstrap_servers = {servers}
topics = [{topic}]
group_id = {group}
commit_interval_ms = 100
# Dynamic membership: a host that stops leaves the group at once.
instance_id = ""

[sinks.files]
type = "file"
dir = "out"

[runtime]
workers = 2
state_dir = "state"

[[handler]]
name = "stateful"
component = {component}
topics = [{topic}]
on_error = "stop"
save_to = "files"

[handler.state]
changelog = {changelog}
"#,
        servers = toml_str(kafka.servers()),
        topic = toml_str(topic),
        group = toml_str(group),
        component = toml_str(guest("stateful").to_str().unwrap()),
        changelog = toml_str(changelog),
    );
    write_config(dir, &text)
}

/// Saved files under `dir/out`: (partition, offset) → content.
fn saved(dir: &Path) -> BTreeMap<(i32, i64), String> {
    saved_files(&dir.join("out"))
        .into_iter()
        .map(|(key, path)| {
            (
                (key.partition, key.offset),
                std::fs::read_to_string(path).unwrap(),
            )
        })
        .collect()
}

fn produce(kafka: &Kafka, topic: &str, partition: i32, events: &[&str]) {
    let messages: Vec<Outgoing> = events
        .iter()
        .map(|e| Outgoing::new(partition, *e))
        .collect();
    kafka.produce(topic, &messages);
}

fn wait_saved(host: &mut Host, dirs: &[&Path], count: usize) {
    host.wait_until("the saves", Duration::from_secs(60), || {
        dirs.iter().map(|d| saved(d).len()).sum::<usize>() >= count
    });
}

#[test]
fn a_deleted_local_store_is_restored_from_the_changelog_with_the_same_outputs() {
    let kafka = require_kafka!();
    let topic = random_topic();
    kafka.create_topic(&topic, 1);
    let changelog = random_topic();
    let dir = tempfile::tempdir().unwrap();
    let config = config(&kafka, dir.path(), &topic, &random_group(), &changelog);

    produce(&kafka, &topic, 0, &["a", "b", "a", "c", "b"]);
    let mut host = start_host(&config, &[]);
    wait_saved(&mut host, &[dir.path()], 3);
    host.stop_cleanly();

    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    produce(&kafka, &topic, 0, &["c", "d", "a", "e"]);
    let mut host = start_host(&config, &[]);
    wait_saved(&mut host, &[dir.path()], 5);
    host.stop_cleanly();
    assert!(
        host.stderr()
            .contains("handler state restored from its changelog"),
        "{}",
        host.stderr()
    );

    // As one uninterrupted run: repeats dropped, the count goes on.
    let want = BTreeMap::from([
        ((0, 0), "a #1".to_owned()),
        ((0, 1), "b #2".to_owned()),
        ((0, 3), "c #3".to_owned()),
        ((0, 6), "d #4".to_owned()),
        ((0, 8), "e #5".to_owned()),
    ]);
    assert_eq!(saved(dir.path()), want);
}

#[test]
fn a_second_host_takes_over_with_the_state_written_and_sees_only_its_own_writes_until_a_rebalance()
{
    let kafka = require_kafka!();
    let topic = random_topic();
    kafka.create_topic(&topic, 2);
    let changelog = random_topic();
    let group = random_group();
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dirs = [one.path(), two.path()];
    let config_one = config(&kafka, one.path(), &topic, &group, &changelog);
    let config_two = config(&kafka, two.path(), &topic, &group, &changelog);

    // Host one alone: both partitions.
    produce(&kafka, &topic, 0, &["a", "b"]);
    produce(&kafka, &topic, 1, &["c"]);
    let mut first = start_host(&config_one, &[]);
    wait_saved(&mut first, &dirs, 3);

    // Host two joins: the partitions are shared out, and each host restores
    // what the other wrote before it handles a message of them.
    let mut second = start_host(&config_two, &[]);
    second.wait_for_stderr("partitions assigned", Duration::from_secs(60));
    wait_for(
        "host one to be assigned again",
        Duration::from_secs(60),
        || first.stderr().matches("partitions assigned").count() >= 2,
    );

    // What host one saw is dropped on either partition, so on the one host
    // two took; a new id on one partition is saved once.
    produce(&kafka, &topic, 0, &["c", "d"]);
    produce(&kafka, &topic, 1, &["b", "e"]);
    wait_saved(&mut second, &dirs, 5);
    // Between rebalances a host sees its own writes only: an id new to
    // both hosts, on both partitions at once, is saved by each.
    produce(&kafka, &topic, 0, &["f"]);
    produce(&kafka, &topic, 1, &["f"]);
    wait_saved(&mut second, &dirs, 7);
    let by_two: BTreeSet<(i32, i64)> = saved(two.path()).into_keys().collect();
    assert!(!by_two.is_empty(), "host two handled a partition");

    // Host two leaves: host one takes its partition back and restores what
    // host two wrote (`d` or `e`) before handling it.
    second.stop_cleanly();
    wait_for(
        "host one to be assigned again",
        Duration::from_secs(60),
        || first.stderr().matches("partitions assigned").count() >= 3,
    );
    produce(&kafka, &topic, 0, &["e", "d", "g"]);
    produce(&kafka, &topic, 1, &["d", "e"]);
    wait_saved(&mut first, &dirs, 8);
    first.stop_cleanly();

    let mut saved_ids: Vec<(i32, String)> = Vec::new();
    for dir in dirs {
        for ((partition, _), content) in saved(dir) {
            let id = content.split(' ').next().unwrap().to_owned();
            saved_ids.push((partition, id));
        }
    }
    saved_ids.sort();
    let want: Vec<(i32, String)> = [
        (0, "a"),
        (0, "b"),
        (0, "d"),
        (0, "f"),
        (0, "g"),
        (1, "c"),
        (1, "e"),
        (1, "f"),
    ]
    .iter()
    .map(|(p, id)| (*p, id.to_string()))
    .collect();
    assert_eq!(saved_ids, want);
}
