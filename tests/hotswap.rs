//! Hot swap and error policies of `alerthost run`, end to end against a real
//! Apache Kafka broker: handler files replaced under a running host (twenty
//! swaps during a stream, broken files, a file written in pieces), and what
//! each `on_error` policy does with a poison message, down to the offset the
//! group commits.
//!
//! The handler is the `poison` test guest (`tests/guests/poison`): it
//! forwards every message to the `stdout` sink, whose JSON lines name the
//! handler, its version, topic, partition and offset; a message starting
//! with `poison` makes it fail. A second version of it is the same component
//! with a custom section appended: same behaviour, another content hash.
//!
//! Start a broker with `scripts/kafka.sh start` and export the address it
//! prints as `ALERTHOST_KAFKA_BOOTSTRAP`; without it these tests are skipped
//! (under `CI` they fail).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};

use alerthost_tests::{
    Host, Kafka, Outgoing, files_under, random_group, random_topic, require_kafka, start_alerthost,
    start_host, toml_str, with_custom_section, write_config,
};

/// Long enough for a host to start, join its group and handle a few hundred
/// messages on a loaded 2-core machine.
const SETTLE: Duration = Duration::from_secs(20);

/// What the host logs when a new version replaces the running one.
const SWAPPED: &str = "handler swapped";

// ---------------------------------------------------------------------------
// Components and versions

/// A test guest built by `tests/build.rs`.
fn guest(name: &str) -> PathBuf {
    Path::new(env!("ALERTHOST_TEST_GUESTS")).join(format!("{name}.wasm"))
}

/// The version the host names a component by: the first 12 hex digits of
/// its SHA-256, computed here by `sha256sum`, not by the host.
fn version_of(bytes: &[u8]) -> String {
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("cannot run sha256sum");
    child
        .stdin
        .take()
        .expect("sha256sum's stdin")
        .write_all(bytes)
        .expect("write to sha256sum");
    let output = child.wait_with_output().expect("sha256sum's output");
    assert!(output.status.success(), "sha256sum failed");
    String::from_utf8_lossy(&output.stdout)[..12].to_owned()
}

/// Two versions of the `poison` guest with the same behaviour.
struct Versions {
    a: Vec<u8>,
    b: Vec<u8>,
    version_a: String,
    version_b: String,
}

impl Versions {
    fn new() -> Self {
        let a = std::fs::read(guest("poison")).expect("the poison guest");
        let b = with_custom_section(&a, "alerthost-test", b"version b");
        let (version_a, version_b) = (version_of(&a), version_of(&b));
        assert_ne!(version_a, version_b);
        Versions {
            a,
            b,
            version_a,
            version_b,
        }
    }

    /// Compile both into the tests' component cache (`alerthost check`), so
    /// a swap in a test costs a cache load, not a compile by a debug build.
    fn precompile(&self, dir: &Path) {
        for (name, bytes) in [("a.wasm", &self.a), ("b.wasm", &self.b)] {
            let path = dir.join(name);
            std::fs::write(&path, bytes).expect("write a version");
            let mut check = start_alerthost(&["check", path.to_str().expect("UTF-8")], &[]);
            let status = check.wait_exit(Duration::from_secs(120));
            assert!(status.success(), "check {name}: {}", check.stderr());
        }
    }
}

/// Replace `path` the way a deploy does: write a temporary file beside it,
/// then rename it over the old one.
fn replace_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("wasm.new");
    std::fs::write(&tmp, bytes).expect("write the new version");
    std::fs::rename(&tmp, path).expect("rename the new version into place");
}

// ---------------------------------------------------------------------------
// Configs and what the host printed

/// One `[[handler]]` running the `poison` guest from `component`.
struct HandlerToml<'a> {
    name: &'a str,
    component: &'a Path,
    on_error: &'a str,
    /// Extra `params` entries, as TOML (`fail = "trap"`).
    params: &'a str,
}

impl HandlerToml<'_> {
    fn toml(&self, topic: &str) -> String {
        let params = if self.params.is_empty() {
            "sink = \"out\"".to_owned()
        } else {
            format!("sink = \"out\", {}", self.params)
        };
        format!(
            r#"
[[handler]]
name = {name}
component = {component}
topics = [{topic}]
forward_to = ["out"]
on_error = {on_error}
params = {{ {params} }}
"#,
            name = toml_str(self.name),
            component = toml_str(self.component.to_str().expect("a UTF-8 path")),
            topic = toml_str(topic),
            on_error = toml_str(self.on_error),
        )
    }
}

/// A config reading `topic` in `group` with the given handlers, forwarding
/// to a `stdout` sink called `out`; dead letters go to the default file
/// sinks in `dir/dead-letter/<handler>`.
fn config(
    kafka: &Kafka,
    dir: &Path,
    topic: &str,
    group: &str,
    handlers: &[HandlerToml],
) -> PathBuf {
    let mut text = format!(
        r#"[source]
bootstrap_servers = {servers}
topics = [{topic}]
group_id = {group}
commit_interval_ms = 200

[sinks.out]
type = "stdout"

[runtime]
workers = 2
"#,
        servers = toml_str(kafka.servers()),
        topic = toml_str(topic),
        group = toml_str(group),
    );
    for handler in handlers {
        text.push_str(&handler.toml(topic));
    }
    write_config(dir, &text)
}

/// One JSON line of the `stdout` sink.
#[derive(Debug, Clone)]
struct Record {
    handler: String,
    version: String,
    partition: i32,
    offset: i64,
    value: String,
}

/// The complete JSON lines the host has printed so far, in order.
fn records(host: &Host) -> Vec<Record> {
    let out = host.stdout();
    // The last line may still be being written.
    let complete = &out[..out.rfind('\n').map_or(0, |i| i + 1)];
    complete
        .lines()
        .map(|line| {
            let json: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
            let text = |key: &str| {
                json[key]
                    .as_str()
                    .unwrap_or_else(|| panic!("no `{key}` in {line}"))
                    .to_owned()
            };
            let int = |key: &str| {
                json[key]
                    .as_i64()
                    .unwrap_or_else(|| panic!("no `{key}` in {line}"))
            };
            Record {
                handler: text("handler"),
                version: text("version"),
                partition: i32::try_from(int("partition")).expect("a partition"),
                offset: int("offset"),
                value: text("value"),
            }
        })
        .collect()
}

/// Lines of the host's stderr containing `needle`.
fn stderr_lines(host: &Host, needle: &str) -> Vec<String> {
    host.stderr()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// Poll `condition` on the host every 50 ms until it holds; panic naming
/// `what` if the host exits first or `timeout` passes.
fn wait_on(
    host: &mut Host,
    what: &str,
    timeout: Duration,
    mut condition: impl FnMut(&Host) -> bool,
) {
    let deadline = Instant::now() + timeout;
    while !condition(host) {
        host.assert_running();
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what} (the host's stderr follows)"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait until the host has joined its group and been given partitions.
fn wait_assigned(host: &mut Host) {
    host.wait_for_stderr("partitions assigned", SETTLE);
}

/// A producer thread of its own (one rdkafka producer, acks=all): up to
/// `count` messages `m-<i>` round-robin over `partitions`, one every
/// `interval`, until done or `stop` is set; then it flushes. What landed is
/// read back with [`sent_messages`].
fn produce_in_background(
    kafka: &Kafka,
    topic: &str,
    partitions: i32,
    count: usize,
    interval: Duration,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    let servers = kafka.servers().to_owned();
    let topic = topic.to_owned();
    std::thread::spawn(move || {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &servers)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "1")
            .create()
            .expect("a producer");
        let started = Instant::now();
        for i in 0..count {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let value = format!("m-{i}");
            let record = BaseRecord::<(), _>::to(&topic)
                .partition(i as i32 % partitions)
                .payload(&value);
            producer.send(record).map_err(|(e, _)| e).expect("produce");
            producer.poll(Duration::ZERO);
            // Steady: message i leaves at i × interval.
            let due = started + interval * (i as u32 + 1);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        producer
            .flush(Duration::from_secs(15))
            .expect("flush the stream");
    })
}

/// Every message of `topic`, by (partition, offset), as the broker has it.
fn sent_messages(kafka: &Kafka, topic: &str) -> BTreeMap<(i32, i64), String> {
    kafka
        .read_topic(topic)
        .into_iter()
        .map(|m| {
            let value = String::from_utf8(m.value).expect("UTF-8");
            ((m.partition, m.offset), value)
        })
        .collect()
}

/// Every record of `handler`, checked to be exactly the `sent` messages,
/// each once, in offset order per partition.
fn assert_each_once_in_order(
    records: &[Record],
    handler: &str,
    sent: &BTreeMap<(i32, i64), String>,
) {
    let mine: Vec<&Record> = records.iter().filter(|r| r.handler == handler).collect();
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    let mut seen: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    for record in &mine {
        if let Some(previous) = last.insert(record.partition, record.offset) {
            assert!(
                record.offset > previous,
                "handler `{handler}`: partition {} went from offset {previous} to {} (out of order or repeated)",
                record.partition,
                record.offset
            );
        }
        *seen.entry((record.partition, record.offset)).or_default() += 1;
        assert_eq!(
            sent.get(&(record.partition, record.offset)),
            Some(&record.value),
            "handler `{handler}` forwarded a message that was not sent there: {record:?}"
        );
    }
    let missing: Vec<_> = sent.keys().filter(|k| !seen.contains_key(k)).collect();
    let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        missing.is_empty() && duplicated.is_empty(),
        "handler `{handler}`: {} of {} messages missing (first: {:?}), {} duplicated (first: {:?})",
        missing.len(),
        sent.len(),
        missing.first(),
        duplicated.len(),
        duplicated.first()
    );
}

/// Files written to the default dead-letter sink of `handler`.
fn dead_letters(dir: &Path, handler: &str) -> Vec<PathBuf> {
    files_under(&dir.join("dead-letter").join(handler))
}

// ---------------------------------------------------------------------------
// Hot swap

#[test]
fn twenty_swaps_during_a_stream_lose_nothing_and_keep_order() {
    let kafka = require_kafka!();
    let topic = random_topic();
    let group = random_group();
    kafka.create_topic(&topic, 3);
    let dir = tempfile::tempdir().unwrap();
    let versions = Versions::new();
    versions.precompile(dir.path());
    let component = dir.path().join("relay.wasm");
    std::fs::write(&component, &versions.a).unwrap();
    let config = config(
        &kafka,
        dir.path(),
        &topic,
        &group,
        &[HandlerToml {
            name: "relay",
            component: &component,
            on_error: "stop",
            params: "",
        }],
    );
    let mut host = start_host(&config, &[]);
    wait_assigned(&mut host);

    // 5000 messages over about 10 s while the file is swapped 20 times.
    let producer = produce_in_background(
        &kafka,
        &topic,
        3,
        5000,
        Duration::from_millis(2),
        Arc::default(),
    );
    for swap in 1..=20 {
        let bytes = if swap % 2 == 1 {
            &versions.b
        } else {
            &versions.a
        };
        replace_atomically(&component, bytes);
        wait_on(&mut host, &format!("swap #{swap}"), SETTLE, |h| {
            stderr_lines(h, SWAPPED).len() >= swap
        });
        // Let some messages through on this version.
        std::thread::sleep(Duration::from_millis(150));
    }
    producer.join().expect("the producer thread");
    let sent = sent_messages(&kafka, &topic);
    assert_eq!(sent.len(), 5000);
    wait_on(
        &mut host,
        "every message to be forwarded",
        Duration::from_secs(60),
        |h| records(h).len() >= sent.len(),
    );
    host.stop_cleanly();

    let handled = records(&host);
    assert_each_once_in_order(&handled, "relay", &sent);
    let used: BTreeSet<&str> = handled.iter().map(|r| r.version.as_str()).collect();
    let known = BTreeSet::from([versions.version_a.as_str(), versions.version_b.as_str()]);
    assert!(
        used.is_subset(&known),
        "records name versions {used:?}, not only {known:?}"
    );
    assert_eq!(used, known, "both versions should have handled messages");
    // The swaps happened during the stream, not before or after it.
    for partition in 0..3 {
        let sequence: Vec<&str> = handled
            .iter()
            .filter(|r| r.partition == partition)
            .map(|r| r.version.as_str())
            .collect();
        let changes = sequence.windows(2).filter(|w| w[0] != w[1]).count();
        assert!(
            changes >= 10,
            "partition {partition} changed version only {changes} times in its stream"
        );
    }
    assert_eq!(stderr_lines(&host, SWAPPED).len(), 20, "{}", host.stderr());
    let ends = kafka.end_offsets(&topic);
    let committed = kafka.committed_offsets(&group, &topic);
    let expected: BTreeMap<i32, Option<i64>> = ends.iter().map(|(p, e)| (*p, Some(*e))).collect();
    assert_eq!(committed, expected, "a clean stop commits everything");
}

#[test]
fn handlers_sharing_a_component_file_are_all_swapped() {
    let kafka = require_kafka!();
    let topic = random_topic();
    let group = random_group();
    kafka.create_topic(&topic, 1);
    let dir = tempfile::tempdir().unwrap();
    let versions = Versions::new();
    versions.precompile(dir.path());
    let component = dir.path().join("shared.wasm");
    std::fs::write(&component, &versions.a).unwrap();
    let handler = |name| HandlerToml {
        name,
        component: &component,
        on_error: "stop",
        params: "",
    };
    let config = config(
        &kafka,
        dir.path(),
        &topic,
        &group,
        &[handler("one"), handler("two")],
    );
    let mut host = start_host(&config, &[]);
    wait_assigned(&mut host);

    replace_atomically(&component, &versions.b);
    wait_on(&mut host, "a swap", SETTLE, |h| {
        !stderr_lines(h, SWAPPED).is_empty()
    });
    // Give a second swap, if it comes, time to be logged.
    std::thread::sleep(Duration::from_secs(2));
    let offset = kafka.produce(&topic, &[Outgoing::new(0, "after the swap")])[0];
    wait_on(
        &mut host,
        "both handlers to forward the message",
        SETTLE,
        |h| records(h).iter().filter(|r| r.offset == offset).count() == 2,
    );
    host.stop_cleanly();
    for record in records(&host) {
        assert_eq!(
            record.version,
            versions.version_b,
            "handler `{}` still runs the old version of the shared file ({}):\n{}",
            record.handler,
            record.version,
            host.stderr()
        );
    }
    assert_eq!(stderr_lines(&host, SWAPPED).len(), 2, "{}", host.stderr());
}

#[test]
fn reload_command_applies_new_params_and_refuses_changes_needing_a_restart() {
    let kafka = require_kafka!();
    let topic = random_topic();
    let group = random_group();
    kafka.create_topic(&topic, 1);
    let dir = tempfile::tempdir().unwrap();
    let component = guest("poison");
    let write = |on_error: &str, params: &str| {
        config(
            &kafka,
            &dir.path().join("conf"),
            &topic,
            &group,
            &[HandlerToml {
                name: "relay",
                component: &component,
                on_error,
                params,
            }],
        )
    };
    let real = write("skip", "fail = \"bad-record\"");
    // The host reads the config through a symlink, as from a Kubernetes
    // ConfigMap: an edit of the real file is applied by `alerthost reload`.
    let live = dir.path().join("live");
    std::fs::create_dir(&live).unwrap();
    let link = live.join("alerthost.toml");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let pid_file = dir.path().join("alerthost.pid");
    let pid_file = pid_file.to_str().unwrap();
    let mut host = start_host(&link, &["--pid-file", pid_file]);
    wait_assigned(&mut host);
    let reload = || {
        let mut command = start_alerthost(&["reload", "--pid-file", pid_file], &[]);
        let status = command.wait_exit(Duration::from_secs(10));
        assert!(status.success(), "alerthost reload: {}", command.stderr());
    };
    let forwarded = |host: &Host, value: &str| records(host).iter().any(|r| r.value == value);

    kafka.produce(&topic, &[Outgoing::new(0, "bad 1")]);
    wait_on(&mut host, "`bad 1`", SETTLE, |h| forwarded(h, "bad 1"));

    // New parameters: the same version, swapped with `init` on them.
    write("skip", "fail = \"bad-record\", prefix = \"bad\"");
    reload();
    wait_on(&mut host, "the swap to the new parameters", SETTLE, |h| {
        !stderr_lines(h, SWAPPED).is_empty()
    });
    assert!(
        host.stderr().contains("SIGHUP"),
        "the reload should be logged: {}",
        host.stderr()
    );
    kafka.produce(
        &topic,
        &[Outgoing::new(0, "bad 2"), Outgoing::new(0, "ok 3")],
    );
    wait_on(&mut host, "`ok 3`", SETTLE, |h| forwarded(h, "ok 3"));
    assert!(
        !forwarded(&host, "bad 2"),
        "`bad 2` is failed by the new parameters"
    );

    // A new error policy needs a restart: refused, nothing applied.
    write("stop", "fail = \"bad-record\", prefix = \"ok\"");
    reload();
    wait_on(&mut host, "the refusal", SETTLE, |h| {
        h.stderr().contains("nothing was applied")
    });
    let refusal = stderr_lines(&host, "nothing was applied").swap_remove(0);
    assert!(
        refusal.contains("restart") && refusal.contains("`relay`") && refusal.contains("ERROR"),
        "the refusal should be an error naming the handler and the restart it needs: {refusal}"
    );
    kafka.produce(&topic, &[Outgoing::new(0, "ok 4")]);
    wait_on(&mut host, "`ok 4`", SETTLE, |h| forwarded(h, "ok 4"));
    host.stop_cleanly();
    assert_eq!(stderr_lines(&host, SWAPPED).len(), 1, "{}", host.stderr());
}

#[test]
fn config_changes_that_need_a_restart_are_reported_not_ignored() {
    let kafka = require_kafka!();
    let topic = random_topic();
    let group = random_group();
    kafka.create_topic(&topic, 1);
    let dir = tempfile::tempdir().unwrap();
    let component = guest("poison");
    let config = config(
        &kafka,
        dir.path(),
        &topic,
        &group,
        &[HandlerToml {
            name: "relay",
            component: &component,
            on_error: "skip",
            params: "",
        }],
    );
    let mut host = start_host(&config, &[]);
    wait_assigned(&mut host);
    let original = std::fs::read_to_string(&config).unwrap();
    // Settings a running host cannot change: the watcher sees each edit.
    for (n, (from, to)) in [
        ("commit_interval_ms = 200", "commit_interval_ms = 5000"),
        ("workers = 2", "workers = 1"),
    ]
    .into_iter()
    .enumerate()
    {
        let edited = original.replace(from, to);
        assert_ne!(edited, original, "the config has no `{from}`");
        std::fs::write(&config, edited).unwrap();
        wait_on(
            &mut host,
            &format!("the change to `{to}` to be reported as needing a restart"),
            Duration::from_secs(5),
            |h| stderr_lines(h, "nothing was applied").len() > n,
        );
        std::fs::write(&config, &original).unwrap();
        std::thread::sleep(Duration::from_secs(1));
    }
    host.stop_cleanly();
}

/// Broken replacements of a handler file (`None`: the file is deleted),
/// each with the reason the host must give.
fn broken_files(versions: &Versions) -> Vec<(&'static str, Option<Vec<u8>>, &'static str)> {
    let broken = vec![
        (
            "truncated",
            versions.a[..versions.a.len() / 2].to_vec(),
            "truncated",
        ),
        (
            "not wasm",
            b"#!/bin/sh\necho not a component\n".to_vec(),
            "not a WebAssembly file",
        ),
        (
            "core module",
            b"\0asm\x01\0\0\0".to_vec(),
            "core WebAssembly module",
        ),
        (
            "another world",
            std::fs::read(guest("no-handle")).unwrap(),
            "does not export `handle`",
        ),
        (
            "init fails",
            std::fs::read(guest("init-fails")).unwrap(),
            "init refused: sink=out",
        ),
    ];
    let mut broken: Vec<_> = broken
        .into_iter()
        .map(|(what, bytes, reason)| (what, Some(bytes), reason))
        .collect();
    broken.push(("deleted", None, "cannot read handler component"));
    broken
}

#[test]
fn broken_new_file_keeps_old_version_running_and_is_reported() {
    let kafka = require_kafka!();
    let topic = random_topic();
    let group = random_group();
    kafka.create_topic(&topic, 1);
    let dir = tempfile::tempdir().unwrap();
    let versions = Versions::new();
    versions.precompile(dir.path());
    let component = dir.path().join("relay.wasm");
    std::fs::write(&component, &versions.a).unwrap();
    let config = config(
        &kafka,
        dir.path(),
        &topic,
        &group,
        &[HandlerToml {
            name: "relay",
            component: &component,
            on_error: "stop",
            params: "",
        }],
    );
    let mut host = start_host(&config, &[]);
    wait_assigned(&mut host);

    for (n, (what, bytes, reason)) in broken_files(&versions).into_iter().enumerate() {
        match bytes {
            // Written in place, as a careless `cp` would.
            Some(bytes) => std::fs::write(&component, &bytes).unwrap(),
            None => std::fs::remove_file(&component).unwrap(),
        }
        wait_on(
            &mut host,
            &format!("the {what} file to be rejected"),
            SETTLE,
            |h| stderr_lines(h, "rejected").len() > n,
        );
        let rejected = stderr_lines(&host, "rejected").swap_remove(n);
        assert!(
            rejected.contains(reason) && rejected.contains("relay"),
            "the {what} file should be rejected naming the handler and {reason:?}: {rejected}"
        );
        assert!(
            rejected.contains("ERROR"),
            "not logged as an error: {rejected}"
        );
        let value = format!("after {what}");
        let offset = kafka.produce(&topic, &[Outgoing::new(0, value.clone())])[0];
        wait_on(
            &mut host,
            &format!("the message after the {what} file"),
            SETTLE,
            |h| records(h).iter().any(|r| r.offset == offset),
        );
        let record = records(&host)
            .into_iter()
            .find(|r| r.offset == offset)
            .unwrap();
        assert_eq!(record.value, value);
        assert_eq!(
            record.version, versions.version_a,
            "after the {what} file, the old version should still run"
        );
    }
    assert!(stderr_lines(&host, SWAPPED).is_empty(), "{}", host.stderr());

    // The watcher still takes a good file after all that.
    replace_atomically(&component, &versions.b);
    wait_on(&mut host, "the good file to be swapped in", SETTLE, |h| {
        stderr_lines(h, SWAPPED).len() == 1
    });
    let offset = kafka.produce(&topic, &[Outgoing::new(0, "after the good file")])[0];
    wait_on(&mut host, "the message after the good file", SETTLE, |h| {
        records(h).iter().any(|r| r.offset == offset)
    });
    let record = records(&host)
        .into_iter()
        .find(|r| r.offset == offset)
        .unwrap();
    assert_eq!(record.version, versions.version_b);
    host.stop_cleanly();
}

#[test]
fn half_written_file_is_never_loaded() {
    let kafka = require_kafka!();
    let topic = random_topic();
    let group = random_group();
    kafka.create_topic(&topic, 2);
    let dir = tempfile::tempdir().unwrap();
    let versions = Versions::new();
    versions.precompile(dir.path());
    let component = dir.path().join("relay.wasm");
    std::fs::write(&component, &versions.a).unwrap();
    let config = config(
        &kafka,
        dir.path(),
        &topic,
        &group,
        &[HandlerToml {
            name: "relay",
            component: &component,
            on_error: "stop",
            params: "",
        }],
    );
    let mut host = start_host(&config, &[]);
    wait_assigned(&mut host);

    let stop = Arc::new(AtomicBool::new(false));
    let producer = produce_in_background(
        &kafka,
        &topic,
        2,
        100_000,
        Duration::from_millis(5),
        stop.clone(),
    );
    // Write version b in place, in four pieces: pauses shorter and longer
    // than the watcher's 300 ms debounce.
    let b = &versions.b;
    let cuts = [0, b.len() / 5, b.len() * 2 / 5, b.len() * 7 / 10, b.len()];
    let pauses = [100, 900, 200];
    let mut file = std::fs::File::create(&component).unwrap();
    for (piece, range) in cuts.windows(2).enumerate() {
        file.write_all(&b[range[0]..range[1]]).unwrap();
        file.flush().unwrap();
        if let Some(pause) = pauses.get(piece) {
            std::thread::sleep(Duration::from_millis(*pause));
        }
    }
    drop(file);
    wait_on(
        &mut host,
        "the complete file to be swapped in",
        SETTLE,
        |h| !stderr_lines(h, SWAPPED).is_empty(),
    );
    // Some messages on the new version, then stop producing.
    let first_new = records(&host).len();
    wait_on(&mut host, "messages on the new version", SETTLE, |h| {
        records(h)[first_new..]
            .iter()
            .any(|r| r.version == versions.version_b)
    });
    stop.store(true, Ordering::SeqCst);
    producer.join().expect("the producer thread");
    let sent = sent_messages(&kafka, &topic);
    wait_on(&mut host, "every message to be forwarded", SETTLE, |h| {
        records(h).len() >= sent.len()
    });
    host.stop_cleanly();

    let handled = records(&host);
    assert_each_once_in_order(&handled, "relay", &sent);
    for record in &handled {
        assert!(
            record.version == versions.version_a || record.version == versions.version_b,
            "a message was handled by version {}, neither the old ({}) nor the complete new one ({})",
            record.version,
            versions.version_a,
            versions.version_b
        );
    }
    // After the swap, on each partition, only the new version.
    for partition in 0..2 {
        let versions_seen: Vec<&str> = handled
            .iter()
            .filter(|r| r.partition == partition)
            .map(|r| r.version.as_str())
            .collect();
        let first_b = versions_seen
            .iter()
            .position(|v| *v == versions.version_b)
            .unwrap_or(versions_seen.len());
        assert!(
            versions_seen[first_b..]
                .iter()
                .all(|v| *v == versions.version_b),
            "partition {partition} went back to the old version after the swap"
        );
    }
    let swaps = stderr_lines(&host, SWAPPED);
    assert_eq!(swaps.len(), 1, "one swap, to the complete file: {swaps:?}");
    assert!(
        swaps[0].contains(&versions.version_b),
        "the swap should be to {}: {}",
        versions.version_b,
        swaps[0]
    );
    for rejected in stderr_lines(&host, "rejected") {
        assert!(
            rejected.contains("truncated"),
            "a half-written file should be rejected as truncated: {rejected}"
        );
    }
}

// ---------------------------------------------------------------------------
// Error policies

/// Ten messages on partition 0 of a new topic, the fifth `poison`; returns
/// what was sent and the poison's offset.
fn produce_with_poison(kafka: &Kafka, topic: &str) -> (BTreeMap<(i32, i64), String>, i64) {
    let values: Vec<String> = (0..10)
        .map(|i| {
            if i == 4 {
                format!("poison {i}")
            } else {
                format!("m-{i}")
            }
        })
        .collect();
    let messages: Vec<Outgoing> = values.iter().map(|v| Outgoing::new(0, v.clone())).collect();
    let offsets = kafka.produce(topic, &messages);
    let poison = offsets[4];
    let sent = offsets.into_iter().map(|o| (0, o)).zip(values).collect();
    (sent, poison)
}

/// A host running one `poison` handler called `relay` with `on_error` and
/// `params` on a new one-partition topic holding ten messages, the fifth a
/// poison message.
struct PolicyRun {
    kafka: Kafka,
    topic: String,
    group: String,
    dir: tempfile::TempDir,
    host: Host,
    sent: BTreeMap<(i32, i64), String>,
    poison: i64,
    version: String,
}

impl PolicyRun {
    fn start(kafka: Kafka, on_error: &str, params: &str) -> Self {
        let topic = random_topic();
        let group = random_group();
        kafka.create_topic(&topic, 1);
        let (sent, poison) = produce_with_poison(&kafka, &topic);
        let dir = tempfile::tempdir().unwrap();
        let component = guest("poison");
        let config = config(
            &kafka,
            dir.path(),
            &topic,
            &group,
            &[HandlerToml {
                name: "relay",
                component: &component,
                on_error,
                params,
            }],
        );
        let host = start_host(&config, &[]);
        let version = version_of(&std::fs::read(&component).unwrap());
        PolicyRun {
            kafka,
            topic,
            group,
            dir,
            host,
            sent,
            poison,
            version,
        }
    }

    /// What was sent, without the poison message.
    fn healthy(&self) -> BTreeMap<(i32, i64), String> {
        let mut healthy = self.sent.clone();
        healthy.remove(&(0, self.poison));
        healthy
    }

    fn committed(&self) -> Option<i64> {
        self.kafka.committed_offsets(&self.group, &self.topic)[&0]
    }
}

#[test]
fn dead_letter_policy_moves_past_poison_with_a_complete_record() {
    let kafka = require_kafka!();
    let before = alerthost_tests::now_millis();
    let mut run = PolicyRun::start(kafka, "dead-letter", "fail = \"trap\"");
    let healthy = run.healthy();
    let dir = run.dir.path().to_owned();
    wait_on(
        &mut run.host,
        "the nine healthy messages and the dead letter",
        SETTLE,
        |h| records(h).len() >= healthy.len() && dead_letters(&dir, "relay").len() >= 2,
    );
    run.host.stop_cleanly();
    assert_each_once_in_order(&records(&run.host), "relay", &healthy);

    let letters = dead_letters(&dir, "relay");
    let name = format!("{}+0+{}.bin", run.topic, run.poison);
    let raw = letters
        .iter()
        .find(|p| p.file_name().is_some_and(|n| n == name.as_str()))
        .unwrap_or_else(|| panic!("no raw dead letter {name} in {letters:?}"));
    assert_eq!(std::fs::read(raw).unwrap(), b"poison 4");
    let record_path = PathBuf::from(format!("{}.error.json", raw.display()));
    assert!(letters.contains(&record_path), "{letters:?}");
    assert_eq!(
        letters.len(),
        2,
        "only the poison is dead-lettered: {letters:?}"
    );
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record_path).unwrap()).unwrap();
    assert_eq!(record["handler"], "relay", "{record}");
    assert_eq!(record["version"], run.version.as_str(), "{record}");
    assert_eq!(record["error"]["kind"], "trap", "{record}");
    let text = record["error"]["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("poison message at"),
        "the error text should carry the guest's panic message: {record}"
    );
    assert_eq!(record["topic"], run.topic.as_str(), "{record}");
    assert_eq!(record["partition"], 0, "{record}");
    assert_eq!(record["offset"], run.poison, "{record}");
    let time = record["time"].as_str().unwrap_or_default();
    let time = humantime::parse_rfc3339_weak(time)
        .unwrap_or_else(|e| panic!("`time` is not RFC 3339 ({e}): {record}"));
    let millis = time
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        millis >= before - 1000 && millis <= alerthost_tests::now_millis() + 1000,
        "`time` is not the time of the failure: {record}"
    );
    assert_eq!(run.committed(), Some(10), "the group moves past the poison");
}

#[test]
fn dead_letter_to_kafka_carries_error_and_provenance_headers() {
    let kafka = require_kafka!();
    let topic = random_topic();
    let dead_topic = random_topic();
    let group = random_group();
    kafka.create_topic(&topic, 1);
    kafka.create_topic(&dead_topic, 1);
    let (sent, poison) = produce_with_poison(&kafka, &topic);
    let dir = tempfile::tempdir().unwrap();
    let component = guest("poison");
    let config = config(
        &kafka,
        dir.path(),
        &topic,
        &group,
        &[HandlerToml {
            name: "relay",
            component: &component,
            on_error: "dead-letter",
            params: "fail = \"bad-record\"",
        }],
    );
    // The last table is the handler's: name its dead-letter sink, then
    // declare that sink.
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "dead_letter = \"dlq\"\n\n[sinks.dlq]\ntype = \"kafka\"\ntopic = {}\n",
        toml_str(&dead_topic)
    ));
    std::fs::write(&config, text).unwrap();
    let mut host = start_host(&config, &[]);
    let mut healthy = sent.clone();
    healthy.remove(&(0, poison));
    wait_on(
        &mut host,
        "the nine healthy messages and the dead letter",
        SETTLE,
        |h| records(h).len() >= healthy.len() && kafka.end_offsets(&dead_topic)[&0] >= 1,
    );
    host.stop_cleanly();
    assert_each_once_in_order(&records(&host), "relay", &healthy);

    let letters = kafka.read_topic(&dead_topic);
    assert_eq!(letters.len(), 1, "only the poison is dead-lettered");
    let letter = &letters[0];
    assert_eq!(letter.value, b"poison 4");
    let version = version_of(&std::fs::read(&component).unwrap());
    let header = |name: &str| {
        letter
            .header(name)
            .unwrap_or_else(|| panic!("no header {name} in {:?}", letter.headers))
    };
    assert_eq!(header("alerthost.error.kind"), "bad-record");
    assert!(header("alerthost.error.text").contains("poison message at"));
    humantime::parse_rfc3339_weak(&header("alerthost.error.time"))
        .expect("alerthost.error.time is RFC 3339");
    assert_eq!(header("alerthost.handler"), "relay");
    assert_eq!(header("alerthost.handler.version"), version);
    assert_eq!(header("alerthost.source.topic"), topic);
    assert_eq!(header("alerthost.source.partition"), "0");
    assert_eq!(header("alerthost.source.offset"), poison.to_string());
    assert!(dead_letters(dir.path(), "relay").is_empty());
    assert_eq!(
        kafka.committed_offsets(&group, &topic)[&0],
        Some(10),
        "the group moves past the poison once its dead letter is acknowledged"
    );
}

/// The dead-letter record of `topic`[0]@`offset` written for `handler`, once
/// it is there.
fn dead_letter_record(
    dir: &Path,
    handler: &str,
    topic: &str,
    offset: i64,
) -> Option<serde_json::Value> {
    let name = format!("{topic}+0+{offset}.bin.error.json");
    let path = dead_letters(dir, handler)
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n == name.as_str()))?;
    Some(serde_json::from_slice(&std::fs::read(path).ok()?).expect("a JSON dead-letter record"))
}

#[test]
fn dead_letters_name_the_version_that_failed() {
    let kafka = require_kafka!();
    let topic = random_topic();
    let group = random_group();
    kafka.create_topic(&topic, 1);
    let dir = tempfile::tempdir().unwrap();
    let versions = Versions::new();
    versions.precompile(dir.path());
    let component = dir.path().join("relay.wasm");
    std::fs::write(&component, &versions.a).unwrap();
    let config = config(
        &kafka,
        dir.path(),
        &topic,
        &group,
        &[HandlerToml {
            name: "relay",
            component: &component,
            on_error: "dead-letter",
            params: "fail = \"bad-record\"",
        }],
    );
    let mut host = start_host(&config, &[]);
    wait_assigned(&mut host);

    let mut failed_on = Vec::new();
    for (n, bytes) in [&versions.a, &versions.b].into_iter().enumerate() {
        if n > 0 {
            replace_atomically(&component, bytes);
            wait_on(&mut host, "the swap", SETTLE, |h| {
                !stderr_lines(h, SWAPPED).is_empty()
            });
        }
        let offset = kafka.produce(&topic, &[Outgoing::new(0, format!("poison {n}"))])[0];
        wait_on(&mut host, "the dead letter", SETTLE, |_| {
            dead_letter_record(dir.path(), "relay", &topic, offset).is_some()
        });
        failed_on.push(offset);
    }
    host.stop_cleanly();
    for (offset, version) in failed_on
        .into_iter()
        .zip([&versions.version_a, &versions.version_b])
    {
        let record = dead_letter_record(dir.path(), "relay", &topic, offset).unwrap();
        assert_eq!(record["version"], version.as_str(), "{record}");
        assert_eq!(record["error"]["kind"], "bad-record", "{record}");
    }
}

#[test]
fn skip_policy_moves_past_poison() {
    let kafka = require_kafka!();
    let mut run = PolicyRun::start(kafka, "skip", "fail = \"bad-record\"");
    let healthy = run.healthy();
    wait_on(&mut run.host, "the nine healthy messages", SETTLE, |h| {
        records(h).len() >= healthy.len()
    });
    run.host.stop_cleanly();
    assert_each_once_in_order(&records(&run.host), "relay", &healthy);
    let skipped = stderr_lines(&run.host, "skipping the message");
    assert_eq!(skipped.len(), 1, "{}", run.host.stderr());
    assert!(
        skipped[0].contains(&format!("@{}", run.poison)) && skipped[0].contains("bad-record"),
        "the skip should name the message and the error: {}",
        skipped[0]
    );
    assert!(dead_letters(run.dir.path(), "relay").is_empty());
    assert_eq!(run.committed(), Some(10), "the group moves past the poison");
}

#[test]
fn stop_policy_halts_and_commit_stays_before_poison() {
    let kafka = require_kafka!();
    let mut run = PolicyRun::start(kafka, "stop", "fail = \"trap\"");
    let status = run.host.wait_exit(SETTLE);
    assert_eq!(status.code(), Some(1), "{}", run.host.stderr());
    let stderr = run.host.stderr();
    let at = format!("{}[0]@{}", run.topic, run.poison);
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no `error:` line:\n{stderr}"));
    assert!(
        error.contains("`relay`") && error.contains(&at) && error.contains("stop"),
        "the error should name the handler, the message and the policy: {error}"
    );
    let before: BTreeMap<(i32, i64), String> = run
        .sent
        .iter()
        .filter(|((_, offset), _)| *offset < run.poison)
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    assert_each_once_in_order(&records(&run.host), "relay", &before);
    assert_eq!(
        run.committed(),
        Some(run.poison),
        "the commit should stop at the poison message"
    );
    assert!(dead_letters(run.dir.path(), "relay").is_empty());
}

#[test]
fn retry_policy_recovers_from_transient_error_on_second_attempt() {
    let kafka = require_kafka!();
    let mut run = PolicyRun::start(kafka, "retry", "fail = \"transient-once\"");
    let sent = run.sent.clone();
    wait_on(&mut run.host, "all ten messages", SETTLE, |h| {
        records(h).len() >= sent.len()
    });
    run.host.stop_cleanly();
    assert_each_once_in_order(&records(&run.host), "relay", &sent);
    let retries = stderr_lines(&run.host, "retrying");
    assert_eq!(retries.len(), 1, "one retry: {retries:?}");
    assert!(
        retries[0].contains(&format!("@{}", run.poison)) && retries[0].contains("transient"),
        "{}",
        retries[0]
    );
    assert!(dead_letters(run.dir.path(), "relay").is_empty());
    assert_eq!(run.committed(), Some(10));
}

/// Handlers `all` (fails on nothing) and `strict` (fails on the poison,
/// with `on_error = strict_policy`), both on `topic`. `all` is first, so it
/// handles a message before `strict` fails on it.
fn two_handlers(
    kafka: &Kafka,
    dir: &Path,
    topic: &str,
    group: &str,
    component: &Path,
    strict_policy: &str,
) -> PathBuf {
    config(
        kafka,
        dir,
        topic,
        group,
        &[
            HandlerToml {
                name: "all",
                component,
                on_error: "stop",
                params: "prefix = \"never\"",
            },
            HandlerToml {
                name: "strict",
                component,
                on_error: strict_policy,
                params: "fail = \"bad-record\"",
            },
        ],
    )
}

#[test]
fn two_handlers_on_one_topic_commit_only_after_both() {
    let kafka = require_kafka!();
    let topic = random_topic();
    let group = random_group();
    kafka.create_topic(&topic, 1);
    let (sent, poison) = produce_with_poison(&kafka, &topic);
    let dir = tempfile::tempdir().unwrap();
    let component = guest("poison");
    let config = two_handlers(&kafka, dir.path(), &topic, &group, &component, "stop");
    let mut host = start_host(&config, &[]);
    let status = host.wait_exit(SETTLE);
    assert_eq!(status.code(), Some(1), "{}", host.stderr());
    let first_run = records(&host);
    assert!(
        first_run
            .iter()
            .any(|r| r.handler == "all" && r.offset == poison),
        "handler `all` should have handled the poison message: {first_run:?}"
    );
    assert!(
        !first_run.iter().any(|r| r.offset > poison),
        "nothing after the poison message is handled: {first_run:?}"
    );
    let before: BTreeMap<(i32, i64), String> = sent
        .iter()
        .filter(|((_, offset), _)| *offset < poison)
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    assert_each_once_in_order(&first_run, "strict", &before);
    assert_eq!(
        kafka.committed_offsets(&group, &topic)[&0],
        Some(poison),
        "one handler is done with the poison message, the other is not: it must not be committed"
    );

    // A restart with `strict` skipping it resumes at the poison message.
    two_handlers(&kafka, dir.path(), &topic, &group, &component, "skip");
    let mut host = start_host(&config, &[]);
    wait_on(&mut host, "the last message", SETTLE, |h| {
        records(h)
            .iter()
            .any(|r| r.handler == "all" && r.offset == 9)
    });
    host.stop_cleanly();
    let again = records(&host);
    assert_eq!(
        again.first().map(|r| (r.handler.as_str(), r.offset)),
        Some(("all", poison)),
        "the restart resumes at the poison message: {again:?}"
    );
    assert_eq!(kafka.committed_offsets(&group, &topic)[&0], Some(10));
}
