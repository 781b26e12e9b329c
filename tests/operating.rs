//! Running alerthost as a service, against a real broker where Kafka is
//! involved: `/metrics` counts what the host did (and parses), `/readyz`
//! follows the assignment, `alerthost topics` reports exactly what the broker
//! holds, a host killed with SIGKILL and started again handles its next
//! message within seconds (static group membership), and the systemd unit is
//! one systemd accepts, with the sandbox the README promises.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use alerthost_tests::{
    Outgoing, alerthost_bin, example, http_get, metric, random_group, random_topic, require_kafka,
    saved_offsets, start_host, toml_str, unique_name, write_config,
};

/// Long enough for a host to start, join its group and handle a message on
/// a loaded 2-core machine; far below the 45 s a restarted member without
/// static membership waits.
const SETTLE: Duration = Duration::from_secs(20);

/// Partition, earliest, latest, committed and lag, as `topics` reports them.
type Row = (i64, i64, i64, Option<i64>, Option<i64>);

#[test]
fn topics_lists_exactly_the_broker_topics_with_their_offsets() {
    let kafka = require_kafka!();
    let prefix = unique_name("alerthost-topics");
    let (a, b) = (format!("{prefix}.a"), format!("{prefix}.b"));
    kafka.create_topic(&a, 2);
    kafka.create_topic(&b, 1);
    let mut messages: Vec<Outgoing> = (0..3).map(|i| Outgoing::new(0, vec![i])).collect();
    messages.extend((0..5).map(|i| Outgoing::new(1, vec![i])));
    kafka.produce(&a, &messages);
    kafka.produce(
        &b,
        &(0..4)
            .map(|i| Outgoing::new(0, vec![i]))
            .collect::<Vec<_>>(),
    );
    let group = random_group();
    kafka.commit_offsets(&group, &a, &[(0, 3), (1, 2)]);

    let dir = tempfile::tempdir().unwrap();
    // `topics` reads the config's [source] and the handlers' topics; it
    // never loads a component, so a placeholder file is enough.
    std::fs::write(dir.path().join("h.wasm"), b"\0asm").unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[source]
bootstrap_servers = {servers}
topics = [{pattern}]
group_id = {group}

[[handler]]
name = "takes-a"
component = "h.wasm"
topics = [{a}]

[[handler]]
name = "takes-all"
component = "h.wasm"
topics = [{pattern}]
"#,
            servers = toml_str(kafka.servers()),
            pattern = toml_str(format!("^{}\\..*", prefix.replace('.', "\\."))),
            group = toml_str(&group),
            a = toml_str(&a),
        ),
    );
    let config = config.to_str().unwrap();
    let pattern = format!("^{}\\.", prefix.replace('.', "\\."));

    // Not a terminal: JSON by default.
    let output = Command::new(alerthost_bin())
        .args(["topics", "-c", config, &pattern])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "alerthost topics failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listing: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    assert_eq!(listing["group"], group.as_str());
    let topics: Vec<&str> = listing["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["topic"].as_str().unwrap())
        .collect();
    assert_eq!(topics, [a.as_str(), b.as_str()]);

    // (earliest, latest, committed, lag) per partition, as the broker has them.
    let ends_a = kafka.end_offsets(&a);
    let ends_b = kafka.end_offsets(&b);
    assert_eq!(ends_a, BTreeMap::from([(0, 3), (1, 5)]));
    assert_eq!(ends_b, BTreeMap::from([(0, 4)]));
    let partitions = |topic: &serde_json::Value| -> Vec<Row> {
        topic["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["partition"].as_i64().unwrap(),
                    p["earliest"].as_i64().unwrap(),
                    p["latest"].as_i64().unwrap(),
                    p["committed"].as_i64(),
                    p["lag"].as_i64(),
                )
            })
            .collect()
    };
    assert_eq!(
        partitions(&listing["topics"][0]),
        [(0, 0, 3, Some(3), Some(0)), (1, 0, 5, Some(2), Some(3))]
    );
    assert_eq!(partitions(&listing["topics"][1]), [(0, 0, 4, None, None)]);
    assert_eq!(
        listing["topics"][0]["handlers"],
        serde_json::json!(["takes-a", "takes-all"])
    );
    assert_eq!(
        listing["topics"][1]["handlers"],
        serde_json::json!(["takes-all"])
    );

    // The same as a table when asked.
    let output = Command::new(alerthost_bin())
        .args(["topics", "-c", config, &pattern, "--format", "text"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["group", group.as_str()]);
    assert_eq!(
        rows[1],
        [
            "TOPIC",
            "PARTITION",
            "EARLIEST",
            "LATEST",
            "COMMITTED",
            "LAG",
            "HANDLERS"
        ]
    );
    assert_eq!(
        rows[2],
        [a.as_str(), "0", "0", "3", "3", "0", "takes-a,takes-all"]
    );
    assert_eq!(
        rows[3],
        [a.as_str(), "1", "0", "5", "2", "3", "takes-a,takes-all"]
    );
    assert_eq!(rows[4], [b.as_str(), "0", "0", "4", "-", "-", "takes-all"]);
    assert_eq!(rows[5], ["2", "topic(s),", "3", "partition(s)"]);
}

/// A save-all config on `topic` in `group`, with Kafka's default session
/// timeout written out: without static membership a restarted host waits
/// that long for its partitions. `extra` goes into `[source]`.
fn restart_config(servers: &str, topic: &str, group: &str, saved: &Path, extra: &str) -> String {
    format!(
        r#"
[source]
bootstrap_servers = {servers}
topics = [{topic}]
group_id = {group}
commit_interval_ms = 200
{extra}

[source.librdkafka]
"session.timeout.ms" = "45000"

[sinks.archive]
type = "file"
dir = {saved}

[[handler]]
name = "save-all"
component = {component}
topics = [{topic}]
save_to = "archive"
"#,
        servers = toml_str(servers),
        topic = toml_str(topic),
        group = toml_str(group),
        saved = toml_str(saved.to_str().unwrap()),
        component = toml_str(example("save_all").to_str().unwrap()),
    )
}

#[test]
fn killed_host_restarts_and_handles_its_next_message_within_seconds() {
    let kafka = require_kafka!();
    let (topic, group) = (random_topic(), random_group());
    kafka.create_topic(&topic, 1);
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("saved");
    let config = write_config(
        dir.path(),
        &restart_config(kafka.servers(), &topic, &group, &saved, ""),
    );

    let mut host = start_host(&config, &[]);
    kafka.produce(&topic, &[Outgoing::new(0, b"first".to_vec())]);
    host.wait_until("the first message to be saved", SETTLE, || {
        saved_offsets(&saved, &topic).contains(&(0, 0))
    });
    host.kill_9();

    let restarted = Instant::now();
    let mut host = start_host(&config, &[]);
    kafka.produce(&topic, &[Outgoing::new(0, b"second".to_vec())]);
    // A new member would get the partition only once the group gives up on
    // the killed one, 45 s later; the same static member gets it at once.
    host.wait_until(
        "the message after the restart to be saved, well before the 45 s session timeout",
        SETTLE,
        || saved_offsets(&saved, &topic).contains(&(0, 1)),
    );
    eprintln!(
        "restart to next message saved: {:.1} s",
        restarted.elapsed().as_secs_f64()
    );
    host.stop_cleanly();
    assert_eq!(
        kafka.committed_offsets(&group, &topic),
        BTreeMap::from([(0, Some(2))])
    );
}

#[test]
fn systemd_unit_is_valid_and_sandboxed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let unit = std::fs::read_to_string(root.join("deploy/alerthost.service")).unwrap();
    let settings: Vec<(&str, &str)> = unit
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    let get = |key: &str| {
        settings
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("the unit has no {key}="))
    };
    assert_eq!(get("DynamicUser"), "yes");
    assert_eq!(get("ProtectSystem"), "strict");
    assert_eq!(get("StateDirectory"), "alerthost");
    assert_eq!(get("CacheDirectory"), "alerthost");
    assert_eq!(get("Restart"), "on-failure");
    assert_eq!(get("KillSignal"), "SIGTERM");
    assert!(get("EnvironmentFile").starts_with("/etc/alerthost/"));
    assert!(
        get("ExecStart").contains(" run --config /etc/alerthost/alerthost.toml"),
        "{}",
        get("ExecStart")
    );
    // Above the host's own bound on a graceful stop, with room to spare for
    // a loaded machine.
    let stop: u64 = get("TimeoutStopSec").parse().unwrap();
    let budget = alerthost::shutdown::SHUTDOWN_BUDGET.as_secs();
    assert!(
        stop >= 2 * budget,
        "TimeoutStopSec={stop} is too close to the host's {budget} s shutdown budget"
    );

    // systemd's own check, with ExecStart pointing at a binary that exists.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("alerthost.service");
    std::fs::write(
        &copy,
        unit.replace(
            "/usr/local/bin/alerthost",
            alerthost_bin().to_str().unwrap(),
        ),
    )
    .unwrap();
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .expect("systemd-analyze is installed (scripts/setup.sh installs systemd)");
    let complaints = String::from_utf8_lossy(&output.stderr);
    // verify also checks the machine's own units; only ours counts here.
    let ours: Vec<&str> = complaints
        .lines()
        .filter(|l| l.contains("alerthost.service"))
        .collect();
    assert!(
        output.status.success() && ours.is_empty(),
        "systemd-analyze verify: {complaints}"
    );
}

/// Sample GCN alerts of every format, as held by `tests/data/samples`.
fn sample_alerts(count: usize) -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/samples");
    let mut files: Vec<_> = ["voevent", "json", "binary"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(root.join(dir)).unwrap())
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .take(count)
        .map(|f| std::fs::read(f).unwrap())
        .collect()
}

fn promtool_check(text: &str) {
    use std::io::Write as _;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is installed (scripts/setup.sh installs Debian's prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn metrics_and_readiness_match_what_the_host_did() {
    let kafka = require_kafka!();
    let (topic, group) = (random_topic(), random_group());
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("saved");
    // The topic does not exist yet: the host is up, its handlers loaded,
    // but it has no partitions, so it is not ready.
    let config = write_config(
        dir.path(),
        &restart_config(kafka.servers(), &topic, &group, &saved, "")
            .replace(
                "\"session.timeout.ms\" = \"45000\"",
                "\"topic.metadata.refresh.interval.ms\" = \"500\"\n\"statistics.interval.ms\" = \"500\"",
            ),
    );
    let mut host = start_host(&config, &["--metrics-listen", "127.0.0.1:0"]);
    let addr = host.metrics_addr(SETTLE);
    assert_eq!(http_get(addr, "/healthz"), (200, "ok\n".to_owned()));
    host.wait_until("handlers to load", SETTLE, || {
        http_get(addr, "/readyz")
            .1
            .contains("no partitions assigned")
    });
    let (status, body) = http_get(addr, "/readyz");
    assert_eq!(status, 503, "{body}");

    kafka.create_topic(&topic, 2);
    let alerts = sample_alerts(12);
    let messages: Vec<Outgoing> = alerts
        .iter()
        .enumerate()
        .map(|(i, alert)| Outgoing::new(i32::try_from(i % 2).unwrap(), alert.clone()))
        .collect();
    kafka.produce(&topic, &messages);
    host.wait_until("/readyz to say ready", SETTLE, || {
        http_get(addr, "/readyz") == (200, "ready\n".to_owned())
    });

    // During the run: counters only grow, and never past what was sent.
    let consumed = |text: &str| {
        (0..2)
            .map(|p| {
                metric(
                    text,
                    &format!(
                        r#"alerthost_messages_consumed_total{{partition="{p}",topic="{topic}"}}"#
                    ),
                )
                .unwrap_or(0.0)
            })
            .sum::<f64>()
    };
    let mut last = 0.0;
    let ends = BTreeMap::from([(0, 6), (1, 6)]);
    host.wait_until("every message handled and committed", SETTLE, || {
        let (status, text) = http_get(addr, "/metrics");
        assert_eq!(status, 200);
        let now = consumed(&text);
        assert!(now >= last && now <= 12.0, "consumed went {last} -> {now}");
        last = now;
        kafka.committed_offsets(&group, &topic) == BTreeMap::from([(0, Some(6)), (1, Some(6))])
    });
    assert_eq!(kafka.end_offsets(&topic), ends);

    // After: every counter equals what happened, lag is 0, and the
    // committed offsets are the broker's.
    let version = saved_version(&host);
    host.wait_until("lag to reach 0 on both partitions", SETTLE, || {
        let text = http_get(addr, "/metrics").1;
        (0..2).all(|p| {
            metric(
                &text,
                &format!(r#"alerthost_partition_lag{{partition="{p}",topic="{topic}"}}"#),
            ) == Some(0.0)
        })
    });
    let (_, text) = http_get(addr, "/metrics");
    promtool_check(&text);
    assert_eq!(consumed(&text), 12.0);
    assert_eq!(
        metric(
            &text,
            &format!(
                r#"alerthost_decisions_total{{handler="save-all",kind="saved",version="{version}"}}"#
            )
        ),
        Some(12.0),
        "{text}"
    );
    assert_eq!(saved_offsets(&saved, &topic).len(), 12);
    for p in 0..2 {
        let series = |name: &str| format!(r#"{name}{{partition="{p}",topic="{topic}"}}"#);
        assert_eq!(
            metric(&text, &series("alerthost_partition_committed_offset")),
            Some(6.0)
        );
        assert_eq!(
            metric(&text, &series("alerthost_partition_high_watermark")),
            Some(6.0)
        );
    }
    assert_eq!(
        metric(
            &text,
            r#"alerthost_handle_duration_seconds_count{handler="save-all"}"#
        ),
        Some(12.0)
    );
    assert_eq!(
        metric(
            &text,
            r#"alerthost_sink_write_duration_seconds_count{sink="archive"}"#
        ),
        Some(12.0)
    );
    assert_eq!(metric(&text, "alerthost_in_flight_bytes"), Some(0.0));
    assert_eq!(metric(&text, "alerthost_partitions_assigned"), Some(2.0));
    assert_eq!(
        metric(
            &text,
            &format!(r#"alerthost_handler_info{{handler="save-all",version="{version}"}}"#)
        ),
        Some(1.0)
    );
    assert!(
        text.contains("alerthost_kafka_broker_rtt_seconds{"),
        "librdkafka's statistics reach the metrics: {text}"
    );
    host.stop_cleanly();
}

/// The version the host logged for `save-all` at start-up.
fn saved_version(host: &alerthost_tests::Host) -> String {
    let stderr = host.stderr();
    let line = stderr
        .lines()
        .find(|l| l.contains("handler loaded") && l.contains("save-all"))
        .expect("a `handler loaded` line");
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("version="))
        .expect("version=")
        .trim_matches('"')
        .to_owned()
}

#[test]
fn swaps_are_counted_and_the_running_version_is_reported() {
    let kafka = require_kafka!();
    let (topic, group) = (random_topic(), random_group());
    kafka.create_topic(&topic, 1);
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("saved");
    let component = dir.path().join("handler.wasm");
    std::fs::copy(example("save_all"), &component).unwrap();
    let text = restart_config(kafka.servers(), &topic, &group, &saved, "").replace(
        &toml_str(example("save_all").to_str().unwrap()),
        &toml_str(component.to_str().unwrap()),
    );
    let config = write_config(dir.path(), &text);
    let mut host = start_host(&config, &["--metrics-listen", "127.0.0.1:0"]);
    let addr = host.metrics_addr(SETTLE);
    host.wait_for_stderr("handler loaded", SETTLE);
    let first = saved_version(&host);
    let info = |version: &str| {
        format!(r#"alerthost_handler_info{{handler="save-all",version="{version}"}}"#)
    };
    let swaps = |outcome: &str| {
        format!(r#"alerthost_handler_swaps_total{{handler="save-all",outcome="{outcome}"}}"#)
    };
    assert_eq!(
        metric(&http_get(addr, "/metrics").1, &info(&first)),
        Some(1.0)
    );

    // Not a component: refused, and the running version stays.
    std::fs::write(&component, b"not a component").unwrap();
    host.wait_until("the refused swap to be counted", SETTLE, || {
        metric(&http_get(addr, "/metrics").1, &swaps("refused")) == Some(1.0)
    });
    let text = http_get(addr, "/metrics").1;
    assert_eq!(metric(&text, &info(&first)), Some(1.0));
    assert_eq!(metric(&text, &swaps("done")), None);

    // Another handler's component: swapped in, and the info series follows.
    std::fs::copy(example("gbm_subthreshold"), &component).unwrap();
    host.wait_until("the swap to be counted", SETTLE, || {
        metric(&http_get(addr, "/metrics").1, &swaps("done")) == Some(1.0)
    });
    let text = http_get(addr, "/metrics").1;
    assert_eq!(metric(&text, &swaps("refused")), Some(1.0));
    let running: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(r#"alerthost_handler_info{handler="save-all","#))
        .collect();
    assert_eq!(running.len(), 1, "one running version: {running:?}");
    assert!(!running[0].contains(&first), "{running:?}");
    host.stop_cleanly();
}

#[test]
fn a_second_host_with_the_same_member_id_stops_the_first_with_a_clear_error() {
    let kafka = require_kafka!();
    let (topic, group) = (random_topic(), random_group());
    kafka.create_topic(&topic, 1);
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("saved");
    let config = write_config(
        dir.path(),
        &restart_config(kafka.servers(), &topic, &group, &saved, ""),
    );
    let mut first = start_host(&config, &[]);
    first.wait_for_stderr("partitions assigned", SETTLE);
    // The same config file on the same machine: the same derived id.
    let mut second = start_host(&config, &[]);
    second.wait_for_stderr("partitions assigned", SETTLE);
    let status = first.wait_exit(SETTLE);
    assert!(!status.success(), "the fenced host must not go on silently");
    let stderr = first.stderr();
    assert!(
        stderr.contains("group.instance.id") && stderr.contains("instance_id"),
        "the error says why and what to do: {stderr}"
    );
    second.stop_cleanly();
}
