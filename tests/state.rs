//! Handler state: writes take effect with their message and only with it,
//! limits are refused with clear errors, keys expire by message time, and
//! against the real broker a dedupe counter gives exactly the expected
//! outputs through kill -9s and a hot swap. Also: components built for
//! `alerthost:handler@0.1.0` still load and decide as their rebuild does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use alerthost::bindings::{Action, Message, Timestamp, TimestampKind};
use alerthost::runtime::{
    FailureKind, HandlerFailure, Limits, LiveHandler, Runtime, RuntimeOptions,
};
use alerthost::state::{HandlerState, StateLimits, StateStore};
use alerthost_tests::{
    Host, Kafka, Outgoing, alerthost_bin, chattr, example, random_group, random_topic,
    require_kafka, saved_files, start_host, toml_str, with_custom_section, write_config,
};

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn guest(name: &str) -> PathBuf {
    Path::new(env!("ALERTHOST_TEST_GUESTS")).join(format!("{name}.wasm"))
}

fn message(offset: i64, millis: Option<i64>, value: &str) -> Message {
    Message {
        topic: "t".into(),
        partition: 0,
        offset,
        timestamp: millis.map(|millis| Timestamp {
            millis,
            kind: TimestampKind::CreateTime,
        }),
        key: None,
        value: value.as_bytes().to_vec(),
        headers: Vec::new(),
    }
}

/// The `stateful` guest with its state in a fresh store; the store's
/// directory lives as long as the returned guard.
#[derive(Debug)]
struct Stateful {
    handler: LiveHandler,
    state: Arc<HandlerState>,
    _store: StateStore,
    _dir: tempfile::TempDir,
    offset: i64,
}

impl Stateful {
    fn start(limits: StateLimits, params: &[(&str, &str)]) -> Result<Self, HandlerFailure> {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let state = store.handler("stateful", limits).unwrap();
        let runtime = Runtime::new(&RuntimeOptions::default()).unwrap();
        let code = runtime
            .load_file(&guest("stateful"), &Limits::default())
            .unwrap();
        assert!(code.uses_state());
        let params = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (handler, _) = LiveHandler::new(Arc::new(code), params, Some(Arc::clone(&state)))?;
        Ok(Stateful {
            handler,
            state,
            _store: store,
            _dir: dir,
            offset: 0,
        })
    }

    /// Handle `value` stamped `millis` and apply the writes the report
    /// carries (none after a failure: that is what the tests check).
    fn at(&mut self, millis: Option<i64>, value: &str) -> Result<Vec<Action>, HandlerFailure> {
        let msg = message(self.offset, millis, value);
        self.offset += 1;
        let report = self.handler.handle(&msg);
        self.state
            .apply(&msg.topic, msg.partition, msg.offset, report.writes);
        report.outcome
    }

    fn send(&mut self, value: &str) -> Result<Vec<Action>, HandlerFailure> {
        self.at(None, value)
    }

    /// The value `get K` saves.
    fn get(&mut self, key: &str) -> String {
        self.get_at(None, key)
    }

    fn get_at(&mut self, millis: Option<i64>, key: &str) -> String {
        let actions = self.at(millis, &format!("get {key}")).unwrap();
        match actions.as_slice() {
            [Action::Save(save)] => String::from_utf8(save.value.clone().unwrap()).unwrap(),
            other => panic!("get {key} gave {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// 0.1.0 components

/// Decision per sample file: the actions, or the failure kind.
fn decisions(
    component: &Path,
    params: &[(&str, &str)],
) -> BTreeMap<String, Result<Vec<Action>, String>> {
    let runtime = Runtime::new(&RuntimeOptions::default()).unwrap();
    let code = runtime.load_file(component, &Limits::default()).unwrap();
    let params = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let (mut handler, _) = LiveHandler::new(Arc::new(code), params, None).unwrap();
    let mut out = BTreeMap::new();
    for dir in ["voevent", "json", "binary"] {
        for entry in std::fs::read_dir(repo().join("tests/data/samples").join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let msg = Message {
                value: std::fs::read(&path).unwrap(),
                ..message(0, None, "")
            };
            let outcome = handler
                .handle(&msg)
                .outcome
                .map_err(|f| f.kind.as_str().to_owned());
            out.insert(
                path.file_name().unwrap().to_string_lossy().into_owned(),
                outcome,
            );
        }
    }
    out
}

#[test]
fn components_built_for_0_1_0_load_and_decide_as_their_0_2_0_rebuild() {
    let old = repo().join("tests/data/components/0.1.0");
    let runtime = Runtime::new(&RuntimeOptions::default()).unwrap();
    for name in ["save_all", "gbm_subthreshold", "sky_region"] {
        let code = runtime
            .load_file(&old.join(format!("{name}.wasm")), &Limits::default())
            .unwrap();
        assert_eq!(code.info().interface_version, "0.1.0", "{name}");
        assert!(!code.uses_state());
        let rebuilt = runtime
            .load_file(&example(name), &Limits::default())
            .unwrap();
        assert_eq!(rebuilt.info().interface_version, "0.2.0", "{name}");
    }
    let cases: [(&str, &[(&str, &str)]); 3] = [
        ("save_all", &[]),
        ("gbm_subthreshold", &[("min_reliability", "2")]),
        (
            "sky_region",
            &[
                ("ra", "225"),
                ("dec", "-69.5"),
                ("radius", "1"),
                ("sink", "near"),
            ],
        ),
    ];
    for (name, params) in cases {
        let before = decisions(&old.join(format!("{name}.wasm")), params);
        let after = decisions(&example(name), params);
        assert_eq!(before.len(), 52);
        assert!(
            before
                .values()
                .any(|d| d.as_ref().is_ok_and(|a| !a.is_empty())),
            "{name} decided something on the samples"
        );
        // Actions have no `PartialEq`: compare what they print.
        assert_eq!(
            format!("{before:#?}"),
            format!("{after:#?}"),
            "{name}: 0.1.0 and 0.2.0 builds decide alike"
        );
    }
}

#[test]
fn check_names_the_interface_version_a_component_was_built_for() {
    let out = std::process::Command::new(alerthost_bin())
        .args(["check", "--no-cache"])
        .arg(repo().join("tests/data/components/0.1.0/save_all.wasm"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("alerthost:handler@0.1.0"), "{text}");
}

// ---------------------------------------------------------------------------
// Writes take effect with their message

#[test]
fn a_write_from_a_message_that_then_traps_is_not_visible_to_the_next() {
    let mut guest = Stateful::start(StateLimits::default(), &[]).unwrap();
    guest.send("set k before").unwrap();
    let failure = guest.send("trap k").unwrap_err();
    assert_eq!(failure.kind, FailureKind::Trap, "{failure}");
    assert_eq!(guest.get("k"), "before");
}

#[test]
fn a_write_from_a_message_that_then_times_out_is_not_visible_to_the_next() {
    let mut guest = Stateful::start(StateLimits::default(), &[]).unwrap();
    let failure = guest.send("spin k").unwrap_err();
    assert_eq!(failure.kind, FailureKind::Timeout, "{failure}");
    assert_eq!(guest.get("k"), "<none>");
}

#[test]
fn a_write_from_a_message_that_then_returns_an_error_is_not_visible_to_the_next() {
    let mut guest = Stateful::start(StateLimits::default(), &[]).unwrap();
    let failure = guest.send("fail k").unwrap_err();
    assert_eq!(failure.kind, FailureKind::Transient, "{failure}");
    assert_eq!(guest.get("k"), "<none>");
}

#[test]
fn writes_of_a_completed_message_are_read_by_the_next() {
    let mut guest = Stateful::start(StateLimits::default(), &[]).unwrap();
    guest.send("set k v1").unwrap();
    assert_eq!(guest.get("k"), "v1");
    guest.send("del k").unwrap();
    assert_eq!(guest.get("k"), "<none>");
}

// ---------------------------------------------------------------------------
// Limits

#[test]
fn state_limits_are_refused_with_the_key_and_the_setting() {
    let limits = StateLimits {
        max_key_bytes: 16,
        max_value_kib: 4,
        max_keys: 5,
        max_total_mib: 1,
    };
    let mut guest = Stateful::start(limits, &[]).unwrap();
    let refused = |guest: &mut Stateful, command: &str| {
        let failure = guest.send(command).unwrap_err();
        assert_eq!(failure.kind, FailureKind::Limit, "{command}: {failure}");
        failure.text
    };
    assert_eq!(
        refused(&mut guest, "key 17"),
        "state key \"kkkkkkkkkkkkkkkkk\" is 17 bytes, over [handler.state] max_key_bytes = 16"
    );
    assert_eq!(
        refused(&mut guest, "value x 5000"),
        "state value for key \"x\" is 5000 bytes, over [handler.state] max_value_kib = 4"
    );
    assert!(
        refused(&mut guest, "keys 6")
            .contains("would make 6 keys, over [handler.state] max_keys = 5")
    );
    // Nothing of a refused call stays.
    guest.send("keys 5").unwrap();
    assert_eq!(guest.state.usage().0, 5);

    let limits = StateLimits {
        max_key_bytes: 16,
        max_value_kib: 1024,
        max_keys: 100,
        max_total_mib: 1,
    };
    let mut guest = Stateful::start(limits, &[]).unwrap();
    guest.send("value a 600000").unwrap();
    let text = refused(&mut guest, "value b 600000");
    assert!(
        text.contains("setting state key \"b\" would make 1200002 bytes of keys and values, over [handler.state] max_total_mib = 1"),
        "{text}"
    );
    // Replacing a value with one of the same size stays within the total.
    guest.send("value a 600000").unwrap();
}

#[test]
fn init_may_read_state_but_not_write_it() {
    let failure = Stateful::start(StateLimits::default(), &[("init_set", "k")]).unwrap_err();
    assert_eq!(failure.kind, FailureKind::Init, "{failure}");
    assert!(
        failure
            .text
            .contains("init may read state but not write it: it called set(\"k\")"),
        "{failure}"
    );
    // Reading works: the guest logs what it read.
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    let state = store.handler("stateful", StateLimits::default()).unwrap();
    let runtime = Runtime::new(&RuntimeOptions::default()).unwrap();
    let code = Arc::new(
        runtime
            .load_file(&guest("stateful"), &Limits::default())
            .unwrap(),
    );
    let (mut first, _) =
        LiveHandler::new(code.clone(), Vec::new(), Some(Arc::clone(&state))).unwrap();
    let report = first.handle(&message(0, None, "set k hello"));
    state.apply("t", 0, 0, report.writes);
    let params = vec![("init_get".to_owned(), "k".to_owned())];
    let (_, logs) = LiveHandler::new(code, params, Some(state)).unwrap();
    assert!(
        logs.iter()
            .any(|l| l.text.contains("init read k: Some(\"hello\")")),
        "{logs:?}"
    );
}

// ---------------------------------------------------------------------------
// TTL

#[test]
fn keys_expire_by_message_time_not_by_the_clock() {
    let mut guest = Stateful::start(StateLimits::default(), &[]).unwrap();
    // Messages from long ago: the host's clock would have expired the key.
    guest.at(Some(10_000), "ttl k v 1000").unwrap();
    assert_eq!(guest.get_at(Some(10_999), "k"), "v");
    assert_eq!(guest.get_at(Some(11_000), "k"), "<none>");
    // A key without a TTL stays.
    guest.at(Some(10_000), "set p v").unwrap();
    assert_eq!(guest.get_at(Some(i64::MAX / 2), "p"), "v");
}

// ---------------------------------------------------------------------------
// alerthost test --state-dir

fn alerthost_test(files: &[&Path], state_dir: Option<&Path>) -> Vec<serde_json::Value> {
    let mut command = std::process::Command::new(alerthost_bin());
    command.arg("test").arg("--no-cache").arg(guest("stateful"));
    command.args(files);
    if let Some(dir) = state_dir {
        command.arg("--state-dir").arg(dir);
    }
    let out = command.output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn test_command_state_dir_carries_state_across_files_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, value: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, value).unwrap();
        path
    };
    let (a, b, trap) = (
        file("a", "ev-1"),
        file("b", "ev-2"),
        file("trap", "trap count"),
    );
    let decisions = |lines: Vec<serde_json::Value>| -> Vec<String> {
        lines
            .iter()
            .map(|l| l["decision"].as_str().unwrap().to_owned())
            .collect()
    };
    let state = dir.path().join("state");
    // Across the files of a run: the repeat of ev-1 is dropped; the trap's
    // write is not kept.
    assert_eq!(
        decisions(alerthost_test(&[&a, &b, &a, &trap, &a], Some(&state))),
        ["save", "save", "drop", "error", "drop"]
    );
    // Across runs with the same directory.
    assert_eq!(
        decisions(alerthost_test(&[&a, &b], Some(&state))),
        ["drop", "drop"]
    );
    // Without it, every run starts afresh (the files of one run share it).
    assert_eq!(decisions(alerthost_test(&[&a, &a], None)), ["save", "drop"]);
    assert_eq!(decisions(alerthost_test(&[&a], None)), ["save"]);
}

// ---------------------------------------------------------------------------
// Against the broker

/// A config running `stateful` (handler name `stateful`) on `topic`, saves
/// to `dir/out`, state in `dir/state`, or forwards to stdout with
/// `forward`.
fn config(
    kafka: &Kafka,
    dir: &Path,
    component: &Path,
    topic: &str,
    group: &str,
    forward: bool,
) -> PathBuf {
    let output = if forward {
        "forward_to = [\"out\"]\nparams = { forward = \"out\" }"
    } else {
        "save_to = \"files\""
    };
    let text = format!(
        r#"[source]
bootstrap_servers = {servers}
topics = [{topic}]
group_id = {group}
commit_interval_ms = 100

[sinks.files]
type = "file"
dir = "out"

[sinks.out]
type = "stdout"

[runtime]
workers = 2
state_dir = "state"

[[handler]]
name = "stateful"
component = {component}
topics = [{topic}]
on_error = "skip"
{output}
"#,
        servers = toml_str(kafka.servers()),
        topic = toml_str(topic),
        group = toml_str(group),
        component = toml_str(component.to_str().unwrap()),
    );
    write_config(dir, &text)
}

/// `n` event ids with repeats (`ev-0`, `ev-1`, `ev-0`, `ev-2`, ...), every
/// fifth message a `tick`.
fn stream(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| match i {
            _ if i % 5 == 4 => "tick".to_owned(),
            _ if i % 3 == 2 => format!("ev-{}", i / 3),
            _ => format!("ev-{}", i - i / 3),
        })
        .collect()
}

/// What an uninterrupted run saves: offset → `ID #n` for each first
/// sighting, `tick #n` for each tick.
fn expected(events: &[String]) -> BTreeMap<i64, String> {
    let mut seen = std::collections::HashSet::new();
    let mut ticks = 0;
    let mut out = BTreeMap::new();
    for (offset, id) in events.iter().enumerate() {
        if id.contains(' ') {
            // A command whose writes must not count (`trap K`, `refused K`).
            continue;
        }
        if id == "tick" {
            ticks += 1;
            out.insert(offset as i64, format!("tick #{ticks}"));
        } else if seen.insert(id.clone()) {
            out.insert(offset as i64, format!("{id} #{}", seen.len()));
        }
    }
    out
}

/// The counts an uninterrupted run ends with: (first sightings, ticks).
fn expected_counts(events: &[String]) -> (String, String) {
    let ticks = events.iter().filter(|e| *e == "tick").count();
    let distinct: std::collections::HashSet<&String> = events
        .iter()
        .filter(|e| *e != "tick" && !e.contains(' '))
        .collect();
    (distinct.len().to_string(), ticks.to_string())
}

fn saved(dir: &Path) -> BTreeMap<i64, String> {
    saved_files(&dir.join("out"))
        .into_iter()
        .map(|(key, path)| (key.offset, std::fs::read_to_string(path).unwrap()))
        .collect()
}

fn alerthost_test_with(component: &Path, files: &[&Path], state: &Path) -> Vec<serde_json::Value> {
    let save = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(alerthost_bin())
        .arg("test")
        .arg("--no-cache")
        .arg(component)
        .args(files)
        .arg("--state-dir")
        .arg(state)
        .arg("--save-dir")
        .arg(save.path())
        .output()
        .unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut lines = lines;
    for line in &mut lines {
        for action in line["actions"].as_array_mut().into_iter().flatten() {
            let name = action["name"].as_str().unwrap().to_owned();
            action["content"] = std::fs::read_to_string(save.path().join(name))
                .unwrap()
                .into();
        }
    }
    lines
}

/// The handler's final counts (first sightings, ticks), read from its
/// store after the host stopped.
fn final_counts(dir: &Path) -> (String, String) {
    // `alerthost test` keys the state by the file name: `stateful`.
    let component = dir.join("stateful.wasm");
    let (count, ticks) = (dir.join("get-count"), dir.join("get-ticks"));
    std::fs::write(&count, "get count").unwrap();
    std::fs::write(&ticks, "get ticks").unwrap();
    let lines = alerthost_test_with(&component, &[&count, &ticks], &dir.join("state"));
    let content = |i: usize| {
        lines[i]["actions"][0]["content"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    (content(0), content(1))
}

fn produce(kafka: &Kafka, topic: &str, events: &[String]) {
    let messages: Vec<Outgoing> = events
        .iter()
        .map(|e| Outgoing::new(0, e.as_str()))
        .collect();
    kafka.produce(topic, &messages);
}

/// A one-partition topic, a temporary directory, and a copy of the
/// `stateful` guest in it (so a test can replace it for a hot swap).
fn stateful_setup(kafka: &Kafka) -> (String, tempfile::TempDir, PathBuf) {
    let topic = random_topic();
    kafka.create_topic(&topic, 1);
    let dir = tempfile::tempdir().unwrap();
    let component = dir.path().join("stateful.wasm");
    std::fs::copy(guest("stateful"), &component).unwrap();
    (topic, dir, component)
}

fn wait_saved(host: &mut Host, dir: &Path, count: usize) {
    host.wait_until("the saves", Duration::from_secs(60), || {
        saved(dir).len() >= count
    });
}

#[test]
fn dedupe_counter_over_a_stream_gives_exactly_the_expected_outputs_and_failed_writes_vanish() {
    let kafka = require_kafka!();
    let (topic, dir, component) = stateful_setup(&kafka);
    // Among them, messages that write `count` and then fail: by a trap, and
    // by an output the host refuses (both skipped under `on_error`).
    let mut events = stream(300);
    for at in [7, 120, 250] {
        events.insert(at, "trap count".to_owned());
        events.insert(at + 1, "refused count".to_owned());
    }
    produce(&kafka, &topic, &events);
    let config = config(
        &kafka,
        dir.path(),
        &component,
        &topic,
        &random_group(),
        false,
    );
    let want = expected(&events);
    let mut host = start_host(&config, &[]);
    wait_saved(&mut host, dir.path(), want.len());
    host.stop_cleanly();
    assert_eq!(saved(dir.path()), want);
    assert_eq!(final_counts(dir.path()), expected_counts(&events));
}

#[test]
fn a_replay_below_the_persisted_watermark_is_skipped_so_outputs_and_state_stay() {
    let kafka = require_kafka!();
    let (topic, dir, component) = stateful_setup(&kafka);
    let events = stream(100);
    produce(&kafka, &topic, &events);
    let config = config(
        &kafka,
        dir.path(),
        &component,
        &topic,
        &random_group(),
        false,
    );
    let want = expected(&events);
    let mut host = start_host(&config, &[]);
    wait_saved(&mut host, dir.path(), want.len());
    host.stop_cleanly();
    // The group's offsets moved back below the state's watermark: what a
    // crash between the state persist and the Kafka commit leaves.
    let mut host = start_host(&config, &["--reset", "earliest"]);
    let mut events = events;
    events.push("ev-last".to_owned());
    produce(&kafka, &topic, &events[events.len() - 1..]);
    let want = expected(&events);
    wait_saved(&mut host, dir.path(), want.len());
    host.stop_cleanly();
    assert_eq!(saved(dir.path()), want);
    assert_eq!(final_counts(dir.path()), expected_counts(&events));
}

#[test]
fn kill_9_at_random_points_gives_the_outputs_and_state_of_an_uninterrupted_run() {
    let kafka = require_kafka!();
    let (topic, dir, component) = stateful_setup(&kafka);
    let events = stream(1200);
    let config = config(
        &kafka,
        dir.path(),
        &component,
        &topic,
        &random_group(),
        false,
    );
    // Kill points from the clock: a different interleaving every run.
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for produced in [300, 600, 900, 1200] {
        produce(&kafka, &topic, &events[produced - 300..produced]);
        let mut host = start_host(&config, &[]);
        let before = saved(dir.path()).len();
        let possible = expected(&events[..produced]).len();
        let target = before + 1 + (next() % 150) as usize;
        wait_saved(&mut host, dir.path(), target.min(possible));
        std::thread::sleep(Duration::from_millis(next() % 300));
        host.kill_9();
    }
    // Files of messages handled before a kill exist already; the last
    // run has handled everything once a message after them all is saved.
    let mut events = events;
    events.push("ev-last".to_owned());
    produce(&kafka, &topic, &events[events.len() - 1..]);
    let want = expected(&events);
    let mut host = start_host(&config, &[]);
    wait_saved(&mut host, dir.path(), want.len());
    host.stop_cleanly();
    let got = saved(dir.path());
    // No first sighting twice (a repeat saved at another offset), none
    // missing, and every count as in an uninterrupted run.
    assert_eq!(got, want);
    assert_eq!(final_counts(dir.path()), expected_counts(&events));
}

#[test]
fn after_a_hot_swap_the_new_version_sees_the_old_versions_state() {
    let kafka = require_kafka!();
    let topic = random_topic();
    kafka.create_topic(&topic, 1);
    let dir = tempfile::tempdir().unwrap();
    let component = dir.path().join("stateful.wasm");
    let v1 = std::fs::read(guest("stateful")).unwrap();
    let v2 = with_custom_section(&v1, "alerthost-test-version", b"2");
    std::fs::write(&component, &v1).unwrap();
    let config = config(
        &kafka,
        dir.path(),
        &component,
        &topic,
        &random_group(),
        true,
    );
    let mut host = start_host(&config, &[]);
    let events = stream(60);
    produce(&kafka, &topic, &events[..30]);
    let want = expected(&events);
    let records = |host: &Host| -> Vec<(i64, String, String)> {
        host.stdout()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|j| {
                (
                    j["offset"].as_i64().unwrap(),
                    j["version"].as_str().unwrap().to_owned(),
                    j["value"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let first_half = want.range(..30).count();
    let wait_records = |host: &mut Host, count: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while records(host).len() < count {
            host.assert_running();
            assert!(
                std::time::Instant::now() < deadline,
                "waiting for {count} records"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_records(&mut host, first_half);
    let tmp = component.with_extension("wasm.new");
    std::fs::write(&tmp, &v2).unwrap();
    std::fs::rename(&tmp, &component).unwrap();
    host.wait_for_stderr("handler swapped", Duration::from_secs(30));
    produce(&kafka, &topic, &events[30..]);
    wait_records(&mut host, want.len());
    host.stop_cleanly();
    let got = records(&host);
    let versions: std::collections::BTreeSet<&str> =
        got.iter().map(|(_, v, _)| v.as_str()).collect();
    assert_eq!(versions.len(), 2, "both versions forwarded: {got:?}");
    let by_offset: BTreeMap<i64, String> = got.iter().map(|(o, _, v)| (*o, v.clone())).collect();
    assert_eq!(by_offset, want);
    // The second half was handled by the new version, counting on.
    let last = got.iter().max_by_key(|(o, _, _)| *o).unwrap();
    assert_ne!(
        last.1, got[0].1,
        "the last output came from the new version"
    );
}

/// Every entry of a directory (and the directory) made immutable with
/// chattr(1), so that writes to its open files fail, even as root; mutable
/// again when dropped (a failed test leaves no directory it cannot delete).
struct Immutable(Vec<PathBuf>);

impl Immutable {
    fn new(dir: &Path) -> Self {
        let mut paths = vec![dir.to_path_buf()];
        paths.extend(std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()));
        chattr("+i", &paths);
        Immutable(paths)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        chattr("-i", &self.0);
    }
}

/// When the state store cannot persist the writes before a commit, the
/// host halts with an error that names the handler state, and commits
/// nothing the unpersisted writes belong to; once the store can be written
/// again, a restart handles those messages again and ends with the outputs
/// and counts of an uninterrupted run.
#[test]
fn a_state_persist_that_fails_halts_the_host_before_the_commit() {
    let kafka = require_kafka!();
    let (topic, dir, component) = stateful_setup(&kafka);
    let group = random_group();
    let config = config(&kafka, dir.path(), &component, &topic, &group, false);
    let events = stream(120);
    let (first, second) = events.split_at(60);
    produce(&kafka, &topic, first);
    let mut host = start_host(&config, &[]);
    host.wait_until(
        "the first 60 messages to be committed",
        Duration::from_secs(60),
        || kafka.committed_offsets(&group, &topic) == BTreeMap::from([(0, Some(60))]),
    );
    let immutable = Immutable::new(&dir.path().join("state"));
    produce(&kafka, &topic, second);
    let status = host.wait_exit(Duration::from_secs(60));
    drop(immutable);
    assert!(!status.success(), "the host went on: {status}");
    let stderr = host.stderr();
    assert!(
        stderr.contains("handler state:") && stderr.contains("nothing past it is committed"),
        "{stderr}"
    );
    assert_eq!(
        kafka.committed_offsets(&group, &topic),
        BTreeMap::from([(0, Some(60))]),
        "committed past writes that were not persisted"
    );

    let want = expected(&events);
    let mut host = start_host(&config, &[]);
    host.wait_until(
        "every message to be committed after the restart",
        Duration::from_secs(60),
        || kafka.committed_offsets(&group, &topic) == BTreeMap::from([(0, Some(120))]),
    );
    host.stop_cleanly();
    assert_eq!(saved(dir.path()), want);
    assert_eq!(final_counts(dir.path()), expected_counts(&events));
}

/// Calls under way at once on two workers (two partitions) share the
/// limits: a call that grows the state holds that room until its writes
/// are applied or dropped, so a call on another worker cannot take the same
/// last room. Without it, each call saw only the applied state and both
/// passed, ending over `max_keys`.
#[test]
fn calls_under_way_on_two_workers_cannot_both_take_the_last_room() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    let limits = StateLimits {
        max_key_bytes: 16,
        max_value_kib: 4,
        max_keys: 1,
        max_total_mib: 1,
    };
    let state = store.handler("stateful", limits).unwrap();
    let runtime = Runtime::new(&RuntimeOptions::default()).unwrap();
    let code = Arc::new(
        runtime
            .load_file(
                &guest("stateful"),
                &Limits {
                    timeout_ms: 10_000,
                    ..Limits::default()
                },
            )
            .unwrap(),
    );
    // Two instances of the handler, as two workers have.
    let start = || {
        LiveHandler::new(Arc::clone(&code), Vec::new(), Some(Arc::clone(&state)))
            .unwrap()
            .0
    };
    let (mut first, mut second) = (start(), start());
    let run = |handler: &mut LiveHandler, partition: i32, offset: i64, value: &str| {
        let msg = Message {
            partition,
            ..message(offset, None, value)
        };
        let report = handler.handle(&msg);
        state.apply(&msg.topic, msg.partition, msg.offset, report.writes);
        report.outcome
    };
    std::thread::scope(|scope| {
        // Sets `a`, then is still under way for 2 s.
        let holding = scope.spawn(|| run(&mut first, 0, 0, "hold a 2000"));
        std::thread::sleep(Duration::from_millis(500));
        let failure = run(&mut second, 1, 0, "set b x").unwrap_err();
        assert_eq!(failure.kind, FailureKind::Limit, "{failure}");
        assert!(
            failure
                .text
                .contains("would make 2 keys, over [handler.state] max_keys = 1"),
            "{failure}"
        );
        holding.join().unwrap().unwrap();
    });
    assert_eq!(state.usage().0, 1, "one key, as the limit says");
    // A call that fails gives its room back.
    run(&mut first, 0, 1, "del a").unwrap();
    run(&mut first, 0, 2, "trap a").unwrap_err();
    run(&mut second, 1, 1, "set c x").unwrap();
    assert_eq!(state.usage().0, 1);
}
