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
    config_with(kafka, dir, topic, group, Some(changelog), "")
}

/// [`config`], with no changelog when `changelog` is `None`, and `source`
/// added to `[source]`.
fn config_with(
    kafka: &Kafka,
    dir: &Path,
    topic: &str,
    group: &str,
    changelog: Option<&str>,
    source: &str,
) -> PathBuf {
    let text = format!(
        r#"[source]
bootstrap_servers = {servers}
topics = [{topic}]
group_id = {group}
commit_interval_ms = 100
{source}

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
{changelog}
"#,
        servers = toml_str(kafka.servers()),
        topic = toml_str(topic),
        group = toml_str(group),
        component = toml_str(guest("stateful").to_str().unwrap()),
        changelog = changelog
            .map(|topic| format!("\n[handler.state]\nchangelog = {}\n", toml_str(topic)))
            .unwrap_or_default(),
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

/// Copy the files of directory `from` into a new directory `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn a_local_store_behind_the_changelog_catches_up_with_the_same_outputs() {
    let kafka = require_kafka!();
    let topic = random_topic();
    kafka.create_topic(&topic, 1);
    let changelog = random_topic();
    let dir = tempfile::tempdir().unwrap();
    let config = config(&kafka, dir.path(), &topic, &random_group(), &changelog);
    let state = dir.path().join("state");
    let old = dir.path().join("state-old");

    produce(&kafka, &topic, 0, &["a", "b"]);
    let mut host = start_host(&config, &[]);
    wait_saved(&mut host, &[dir.path()], 2);
    host.stop_cleanly();
    copy_dir(&state, &old);

    produce(&kafka, &topic, 0, &["c", "a"]);
    let mut host = start_host(&config, &[]);
    wait_saved(&mut host, &[dir.path()], 3);
    host.stop_cleanly();

    // The store as it was before the second run: behind the changelog.
    std::fs::remove_dir_all(&state).unwrap();
    std::fs::rename(&old, &state).unwrap();
    produce(&kafka, &topic, 0, &["c", "b", "d"]);
    let mut host = start_host(&config, &[]);
    wait_saved(&mut host, &[dir.path()], 4);
    host.stop_cleanly();
    let want = BTreeMap::from([
        ((0, 0), "a #1".to_owned()),
        ((0, 1), "b #2".to_owned()),
        ((0, 2), "c #3".to_owned()),
        ((0, 6), "d #4".to_owned()),
    ]);
    assert_eq!(saved(dir.path()), want);
}

#[test]
fn a_changelog_added_to_a_handler_with_state_starts_with_that_state() {
    let kafka = require_kafka!();
    let topic = random_topic();
    kafka.create_topic(&topic, 1);
    let changelog = random_topic();
    let group = random_group();
    let dir = tempfile::tempdir().unwrap();

    // State kept locally only.
    let local = config_with(&kafka, dir.path(), &topic, &group, None, "");
    produce(&kafka, &topic, 0, &["a", "b"]);
    let mut host = start_host(&local, &[]);
    wait_saved(&mut host, &[dir.path()], 2);
    host.stop_cleanly();

    // The changelog is configured: the state so far goes to it, so a store
    // lost afterwards still comes back whole.
    let with_changelog = config(&kafka, dir.path(), &topic, &group, &changelog);
    produce(&kafka, &topic, 0, &["c"]);
    let mut host = start_host(&with_changelog, &[]);
    wait_saved(&mut host, &[dir.path()], 3);
    host.stop_cleanly();

    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    produce(&kafka, &topic, 0, &["a", "c", "d"]);
    let mut host = start_host(&with_changelog, &[]);
    wait_saved(&mut host, &[dir.path()], 4);
    host.stop_cleanly();
    let want = BTreeMap::from([
        ((0, 0), "a #1".to_owned()),
        ((0, 1), "b #2".to_owned()),
        ((0, 2), "c #3".to_owned()),
        ((0, 5), "d #4".to_owned()),
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
    // Dynamic membership: a host that stops leaves the group at once.
    let dynamic = "instance_id = \"\"";
    let config_one = config_with(
        &kafka,
        one.path(),
        &topic,
        &group,
        Some(&changelog),
        dynamic,
    );
    let config_two = config_with(
        &kafka,
        two.path(),
        &topic,
        &group,
        Some(&changelog),
        dynamic,
    );

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

/// `n` event ids with repeats: `ev-0`, `ev-1`, `ev-0`, `ev-2`, ...
fn stream(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("ev-{}", if i % 3 == 2 { i / 3 } else { i - i / 3 }))
        .collect()
}

/// What an uninterrupted run saves on partition 0: offset → `ID #n` for
/// each first sighting.
fn expected(events: &[String]) -> BTreeMap<(i32, i64), String> {
    let mut seen = std::collections::HashSet::new();
    let mut out = BTreeMap::new();
    for (offset, id) in events.iter().enumerate() {
        if seen.insert(id.clone()) {
            out.insert((0, offset as i64), format!("{id} #{}", seen.len()));
        }
    }
    out
}

#[test]
fn kill_9_at_random_points_then_a_lost_store_gives_the_outputs_of_an_uninterrupted_run() {
    let kafka = require_kafka!();
    let topic = random_topic();
    kafka.create_topic(&topic, 1);
    let changelog = random_topic();
    let dir = tempfile::tempdir().unwrap();
    let config = config(&kafka, dir.path(), &topic, &random_group(), &changelog);
    let events = stream(600);
    // Kill points from the clock: a different interleaving every run.
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for produced in [200, 400, 600] {
        let batch: Vec<&str> = events[produced - 200..produced]
            .iter()
            .map(String::as_str)
            .collect();
        produce(&kafka, &topic, 0, &batch);
        let mut host = start_host(&config, &[]);
        let before = saved(dir.path()).len();
        let possible = expected(&events[..produced]).len();
        let target = (before + 1 + (next() % 100) as usize).min(possible);
        wait_saved(&mut host, &[dir.path()], target);
        std::thread::sleep(Duration::from_millis(next() % 300));
        host.kill_9();
    }
    // The store is lost with the machine: the last host starts from the
    // changelog alone and handles everything once a message after them all
    // is saved.
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    let mut events = events;
    events.push("ev-last".to_owned());
    produce(&kafka, &topic, 0, &["ev-last"]);
    let want = expected(&events);
    let mut host = start_host(&config, &[]);
    wait_saved(&mut host, &[dir.path()], want.len());
    host.stop_cleanly();
    assert_eq!(saved(dir.path()), want);
}
