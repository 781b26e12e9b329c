use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};
use std::path::Path;

use super::*;

/// Every event once, so every metric has a series to show.
fn exercise(metrics: &Metrics) {
    metrics.readiness().handlers_loaded();
    metrics.partitions_assigned(&[("gcn.a".into(), 0), ("gcn.a".into(), 1)]);
    metrics.message_consumed("gcn.a", 0);
    metrics.message_unrouted("gcn.b");
    metrics.decision("save-all", "0123456789ab", DecisionKind::Saved);
    metrics.decision("save-all", "0123456789ab", DecisionKind::Forwarded);
    metrics.decision("save-all", "0123456789ab", DecisionKind::Dropped);
    metrics.failure("save-all", FailureKind::Timeout);
    metrics.dead_letter("save-all");
    metrics.retry("save-all");
    metrics.handle_seconds("save-all", Duration::from_micros(80));
    metrics.sink_write("archive", Duration::from_millis(3), true);
    metrics.sink_write("archive", Duration::from_millis(3), false);
    metrics.swap("save-all", SwapOutcome::Done);
    metrics.swap("save-all", SwapOutcome::Refused);
    metrics.running_version("save-all", "0123456789ab");
    metrics.partition_committed("gcn.a", 0, 10);
    metrics.partition_high_watermark("gcn.a", 0, 12);
    metrics.broker_rtt(
        "127.0.0.1:9092",
        Duration::from_micros(800),
        Duration::from_millis(3),
    );
    metrics.kafka_consumer_lag("gcn.a", 0, 2);
}

/// The metric names in an exposition (from its `# TYPE` lines), with types.
fn exported(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .map(|(name, kind)| (name.to_owned(), kind.to_owned()))
        .collect()
}

/// The value of the series `name{labels}` (labels as rendered), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().expect("a number"))
}

#[test]
fn events_move_their_metrics() {
    let metrics = Metrics::new();
    let clone = metrics.clone();
    for _ in 0..3 {
        clone.decision("h", "v1", DecisionKind::Saved);
    }
    metrics.decision("h", "v1", DecisionKind::Dropped);
    metrics.message_consumed("t", 2);
    metrics.message_consumed("t", 2);
    let text = metrics.render();
    assert_eq!(
        value(
            &text,
            r#"alerthost_decisions_total{handler="h",kind="saved",version="v1"}"#
        ),
        Some(3.0)
    );
    assert_eq!(
        value(
            &text,
            r#"alerthost_decisions_total{handler="h",kind="dropped",version="v1"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            r#"alerthost_messages_consumed_total{partition="2",topic="t"}"#
        ),
        Some(2.0)
    );

    // Lag is the high watermark minus the committed offset; 0 when caught up.
    metrics.partitions_assigned(&[("t".into(), 2)]);
    metrics.partition_high_watermark("t", 2, 15);
    assert_eq!(
        value(
            &metrics.render(),
            r#"alerthost_partition_lag{partition="2",topic="t"}"#
        ),
        None,
        "no lag before anything is committed"
    );
    metrics.partition_committed("t", 2, 10);
    let lag = r#"alerthost_partition_lag{partition="2",topic="t"}"#;
    assert_eq!(value(&metrics.render(), lag), Some(5.0));
    metrics.partition_committed("t", 2, 15);
    assert_eq!(value(&metrics.render(), lag), Some(0.0));
    // A revoked partition's series go: another host reports it now.
    metrics.partitions_revoked(&[("t".into(), 2)]);
    let text = metrics.render();
    assert_eq!(value(&text, lag), None);
    assert!(
        !text.contains("alerthost_partition_committed_offset{"),
        "{text}"
    );
    assert_eq!(value(&text, "alerthost_partitions_assigned"), Some(0.0));

    // One info series per handler: the version it runs now.
    metrics.running_version("h", "v1");
    metrics.running_version("h", "v2");
    let text = metrics.render();
    assert_eq!(
        value(&text, r#"alerthost_handler_info{handler="h",version="v2"}"#),
        Some(1.0)
    );
    assert!(!text.contains(r#"alerthost_handler_info{handler="h",version="v1"}"#));

    let budget = Arc::new(crate::commit::InflightBudget::new(1000));
    metrics.watch_in_flight(Arc::clone(&budget));
    assert!(budget.acquire(150, || false));
    assert_eq!(
        value(&metrics.render(), "alerthost_in_flight_bytes"),
        Some(150.0)
    );

    metrics.sink_write("s", Duration::from_millis(2), false);
    metrics.handle_seconds("h", Duration::from_micros(30));
    let text = metrics.render();
    assert_eq!(
        value(&text, r#"alerthost_sink_errors_total{sink="s"}"#),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            r#"alerthost_handle_duration_seconds_bucket{handler="h",le="0.00005"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            r#"alerthost_handle_duration_seconds_bucket{handler="h",le="0.000025"}"#
        ),
        Some(0.0)
    );
}

#[test]
fn readiness_needs_handlers_and_partitions_or_a_range() {
    let metrics = Metrics::new();
    let ready = metrics.readiness();
    assert!(ready.check().unwrap_err().contains("handlers"));
    ready.handlers_loaded();
    assert!(
        ready
            .check()
            .unwrap_err()
            .contains("no partitions assigned")
    );
    metrics.partitions_assigned(&[("t".into(), 0)]);
    assert_eq!(ready.check(), Ok(()));
    assert_eq!(value(&metrics.render(), "alerthost_ready"), Some(1.0));
    metrics.partitions_revoked(&[("t".into(), 0)]);
    assert!(ready.check().is_err());
    assert_eq!(value(&metrics.render(), "alerthost_ready"), Some(0.0));
    ready.range_started();
    assert_eq!(ready.check(), Ok(()));
    ready.stopping();
    assert!(ready.check().unwrap_err().contains("stopping"));
}

/// Debian's `prometheus` package has promtool (scripts/setup.sh installs it).
fn promtool() -> &'static str {
    let found = std::process::Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "promtool is not installed: run scripts/setup.sh (Debian package `prometheus`)"
    );
    "promtool"
}

#[test]
fn exposition_passes_promtool_check_metrics() {
    let metrics = Metrics::new();
    exercise(&metrics);
    let text = metrics.render();
    let mut child = std::process::Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool starts");
    child
        .stdin
        .take()
        .expect("a stdin")
        .write_all(text.as_bytes())
        .expect("promtool reads the text");
    let output = child.wait_with_output().expect("promtool ends");
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}\n--- the exposition ---\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every series name a PromQL expression mentions.
fn queried_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("alerthost_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

fn expressions(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr" | "query", serde_json::Value::String(expr)) => out.push(expr.clone()),
                    _ => expressions(value, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| expressions(v, out)),
        _ => {}
    }
}

fn repo_file(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn dashboard_queries_only_metrics_the_host_exports() {
    let metrics = Metrics::new();
    exercise(&metrics);
    let exported = exported(&metrics.render());
    // A histogram is queried through its _bucket, _sum and _count series.
    let series: BTreeSet<String> = exported
        .iter()
        .flat_map(|(name, kind)| {
            let mut names = vec![name.clone()];
            if kind == "histogram" {
                names.extend(["_bucket", "_sum", "_count"].map(|s| format!("{name}{s}")));
            }
            names
        })
        .collect();

    let dashboard: serde_json::Value =
        serde_json::from_str(&repo_file("deploy/grafana-dashboard.json"))
            .expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    expressions(&dashboard, &mut exprs);
    assert!(exprs.len() >= 5, "the dashboard has queries: {exprs:?}");
    let queried: BTreeSet<String> = exprs.iter().flat_map(|e| queried_names(e)).collect();
    let unknown: Vec<&String> = queried.difference(&series).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard queries metrics the host does not export: {unknown:?}"
    );
    // What the dashboard is for: lag, decisions, failures, handle p99, swaps.
    for needed in [
        "alerthost_partition_lag",
        "alerthost_decisions_total",
        "alerthost_handler_failures_total",
        "alerthost_handle_duration_seconds_bucket",
        "alerthost_handler_swaps_total",
    ] {
        assert!(queried.contains(needed), "no panel queries {needed}");
    }
    assert!(
        exprs
            .iter()
            .any(|e| e.contains("histogram_quantile(0.99") && e.contains("handle_duration")),
        "a panel shows the handle p99"
    );
}

#[test]
fn readme_operating_table_lists_exactly_the_exported_metrics() {
    let metrics = Metrics::new();
    exercise(&metrics);
    let exported = exported(&metrics.render());
    let readme = repo_file("README.md");
    let section = readme
        .split("\n## Operating")
        .nth(1)
        .expect("README has an Operating section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let documented: BTreeMap<String, String> = section
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            name.starts_with("alerthost_")
                .then(|| (name.to_owned(), cells.get(2).unwrap_or(&"").to_string()))
        })
        .collect();
    assert_eq!(
        documented.keys().collect::<Vec<_>>(),
        exported.keys().collect::<Vec<_>>(),
        "README's metrics table and the exported metrics differ"
    );
    for (name, kind) in &exported {
        assert_eq!(&documented[name], kind, "README's type of {name}");
    }
}

/// One HTTP/1.1 request; the status code and the body.
fn get(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    let mut stream = std::net::TcpStream::connect(addr).expect("the listener accepts");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_owned)
        })
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

#[test]
fn listener_serves_metrics_health_and_readiness() {
    let metrics = Metrics::new();
    let server = MetricsServer::start("127.0.0.1:0", metrics.clone()).unwrap();
    let addr = server.addr();

    let (status, _, body) = get(addr, "GET", "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, _, body) = get(addr, "GET", "/readyz");
    assert_eq!(status, 503);
    assert!(body.contains("handlers are still loading"), "{body}");

    metrics.readiness().handlers_loaded();
    metrics.partitions_assigned(&[("t".into(), 0)]);
    metrics.message_consumed("t", 0);
    let (status, _, body) = get(addr, "GET", "/readyz");
    assert_eq!((status, body.as_str()), (200, "ready\n"));

    let (status, content_type, body) = get(addr, "GET", "/metrics");
    assert_eq!(status, 200);
    assert_eq!(content_type, CONTENT_TYPE);
    assert!(
        body.contains("alerthost_messages_consumed_total{partition=\"0\",topic=\"t\"} 1\n"),
        "{body}"
    );

    assert_eq!(get(addr, "GET", "/nothing").0, 404);
    assert_eq!(get(addr, "POST", "/metrics").0, 405);
    drop(server);
}

#[test]
fn address_in_use_is_an_error_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = MetricsServer::start(&addr, Metrics::new()).unwrap_err();
    assert!(format!("{err:#}").contains(&addr), "{err:#}");
}
