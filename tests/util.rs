//! Helpers shared by the end-to-end tests of the `alerthost` binary: finding
//! (and building) the binary, running it as a child process that is killed
//! when a test panics, waiting for conditions with deadlines, reading what a
//! file sink saved, and an independent Kafka client (rdkafka, not the host's
//! code) to create topics, produce with explicit partitions and timestamps,
//! read topics back and look up committed offsets.
//!
//! The Kafka tests need a real broker: start one with `scripts/kafka.sh start`
//! and export the address it prints as `ALERTHOST_KAFKA_BOOTSTRAP`. Without it
//! they are skipped, except under `CI`, where they fail.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers as _, Message as _};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

/// How long a Kafka request of the test client may take.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(15);

fn admin_options() -> AdminOptions {
    AdminOptions::new()
        .operation_timeout(Some(KAFKA_TIMEOUT))
        .request_timeout(Some(KAFKA_TIMEOUT))
}

// ---------------------------------------------------------------------------
// The binary and the example components

/// The `alerthost` binary, built once per test process.
///
/// `cargo test` does not build the binary of another package (a test crate
/// only gets `CARGO_BIN_EXE_*` for its own package's binaries), so the first
/// call runs `cargo build -p alerthost --bin alerthost` into the target
/// directory this test executable lives in (`<target>/<profile>/deps/`),
/// with the same profile. When the binary is already up to date that takes a
/// fraction of a second. Set `ALERTHOST_BIN` to use another binary instead.
pub fn alerthost_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("ALERTHOST_BIN") {
            return PathBuf::from(bin);
        }
        let exe = std::env::current_exe().expect("the test executable's path");
        // <target>/<profile>/deps/<test>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test executable lives in <target>/<profile>/deps");
        let target_dir = profile_dir.parent().expect("a target directory");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev".to_owned(),
            Some(name) => name.to_owned(),
        };
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(&cargo)
            .args(["build", "--quiet", "-p", "alerthost", "--bin", "alerthost"])
            .arg("--profile")
            .arg(&profile)
            .arg("--manifest-path")
            .arg(&manifest)
            .arg("--target-dir")
            .arg(target_dir)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {cargo:?} to build alerthost: {e}"));
        assert!(
            status.success(),
            "building the alerthost binary failed ({status})"
        );
        let bin = profile_dir.join("alerthost");
        assert!(bin.is_file(), "{} was not built", bin.display());
        bin
    })
}

/// Runtime options as the `alerthost` binary builds them: components are
/// compiled in a child process of [`alerthost_bin`], within each handler's
/// compile limits, never in the test process.
pub fn runtime_options() -> alerthost::runtime::RuntimeOptions {
    alerthost::runtime::RuntimeOptions {
        compiler: alerthost::runtime::Compiler::Process(alerthost_bin().to_owned()),
        ..alerthost::runtime::RuntimeOptions::default()
    }
}

/// The example handler components, `<dir>/{save_all,gbm_subthreshold,sky_region}.wasm`,
/// built once per test process (a no-op when they are up to date) with
/// `cargo build --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml`.
pub fn examples_dir() -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    BUILT.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(&cargo)
            .args(["build", "--quiet", "--release", "--target", "wasm32-wasip2"])
            .arg("--manifest-path")
            .arg(root.join("examples/Cargo.toml"))
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .status()
            .unwrap_or_else(|e| panic!("cannot run {cargo:?} to build the examples: {e}"));
        assert!(status.success(), "building the examples failed ({status})");
    });
    root.join("examples/target/wasm32-wasip2/release")
}

/// One example component.
pub fn example(name: &str) -> PathBuf {
    let path = examples_dir().join(format!("{name}.wasm"));
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// `bytes` with a component custom section `name` holding `payload`
/// appended: the same component, another content hash.
pub fn with_custom_section(bytes: &[u8], name: &str, payload: &[u8]) -> Vec<u8> {
    use wasm_encoder::Encode as _;
    let mut out = bytes.to_vec();
    // A custom section (id 0) is valid at the top level of a component as
    // of a module.
    out.push(0x00);
    wasm_encoder::CustomSection {
        name: name.into(),
        data: payload.into(),
    }
    .encode(&mut out);
    out
}

/// A directory shared by the tests' host processes for compiled components,
/// so the user's cache is left alone and a component is compiled once.
fn component_cache_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    exe.ancestors()
        .nth(3)
        .map_or_else(std::env::temp_dir, Path::to_owned)
        .join("alerthost-test-component-cache")
}

// ---------------------------------------------------------------------------
// Names, configs, waiting

/// A name no other test (or earlier run) uses: `prefix-<pid>-<n>-<time>`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() % 1_000_000_000_000);
    format!("{prefix}-{}-{n}-{nanos}", std::process::id())
}

/// A fresh topic name.
pub fn random_topic() -> String {
    unique_name("alerthost-test")
}

/// A fresh consumer group name.
pub fn random_group() -> String {
    unique_name("alerthost-test-group")
}

/// Write `text` as `alerthost.toml` in `dir` (created if missing) and return
/// its path.
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    let path = dir.join("alerthost.toml");
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}

/// A TOML string literal (paths and names are quoted through this).
pub fn toml_str(value: impl AsRef<str>) -> String {
    let mut out = String::from('"');
    for c in value.as_ref().chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Milliseconds since the epoch, now.
pub fn now_millis() -> i64 {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_millis();
    i64::try_from(millis).expect("a clock before the year 292 million")
}

/// RFC 3339 (UTC, milliseconds) of a time in milliseconds since the epoch.
pub fn rfc3339_millis(millis: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).expect("a time after 1970"));
    humantime::format_rfc3339_millis(at).to_string()
}

/// Poll `condition` every 50 ms until it holds; panic naming `what` when
/// `timeout` passes first.
pub fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------
// Host processes

/// A running `alerthost` process. Its stdout and stderr go to files in a
/// private directory, so they can be read while it runs. Dropping it kills
/// the process (SIGKILL) if it still runs, so a failing test leaves nothing
/// behind.
#[derive(Debug)]
pub struct Host {
    child: Child,
    logs: tempfile::TempDir,
    status: Option<ExitStatus>,
}

/// Start `alerthost <args>` with the tests' component cache, plain-text logs
/// without colours, and `extra_env`.
pub fn start_alerthost(args: &[&str], extra_env: &[(&str, &str)]) -> Host {
    let logs = tempfile::tempdir().expect("a directory for the host's logs");
    let stdout = File::create(logs.path().join("stdout")).expect("the host's stdout file");
    let stderr = File::create(logs.path().join("stderr")).expect("the host's stderr file");
    let mut command = Command::new(alerthost_bin());
    command
        .args(args)
        .env("ALERTHOST_CACHE_DIR", component_cache_dir())
        .env("NO_COLOR", "1")
        .env_remove("ALERTHOST_LOG")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    for (key, value) in extra_env {
        command.env(key, value);
    }
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", alerthost_bin().display()));
    Host {
        child,
        logs,
        status: None,
    }
}

/// Start `alerthost run --config <config> <extra args>`.
pub fn start_host(config: &Path, extra_args: &[&str]) -> Host {
    let config = config.to_str().expect("a UTF-8 config path");
    let mut args = vec!["run", "--config", config];
    args.extend_from_slice(extra_args);
    start_alerthost(&args, &[])
}

impl Host {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the host wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.logs.path().join("stderr")).unwrap_or_default()
    }

    /// Everything the host wrote to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.logs.path().join("stdout")).unwrap_or_default()
    }

    /// Its exit status, if it has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .expect("cannot query the host process");
        }
        self.status
    }

    /// Wait until the host has written `needle` to stderr; panic if it exits
    /// first or `timeout` passes.
    pub fn wait_for_stderr(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stderr().contains(needle) {
                return;
            }
            if let Some(status) = self.try_status() {
                // It may have written the line just before exiting.
                assert!(
                    self.stderr().contains(needle),
                    "the host exited ({status}) before writing {needle:?}"
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the host did not write {needle:?} within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Poll `condition` every 50 ms until it holds, while the host keeps
    /// running; panic if it exits first or `timeout` passes.
    pub fn wait_until(
        &mut self,
        what: &str,
        timeout: Duration,
        mut condition: impl FnMut() -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        while !condition() {
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what} (the host's stderr follows)"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Panic if the host has exited. (Whenever a test panics while a [`Host`]
    /// is alive, its stderr is printed when it is dropped.)
    pub fn assert_running(&mut self) {
        if let Some(status) = self.try_status() {
            panic!("the host exited unexpectedly ({status}) (the host's stderr follows)");
        }
    }

    /// Wait for the host to exit by itself; panic (and kill it) after
    /// `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the host did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Send a signal (`TERM`, `INT`, ...) with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("cannot run kill(1)");
        assert!(status.success(), "kill -{name} {} failed", self.pid());
    }

    /// SIGTERM, then wait for the exit.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        self.signal("TERM");
        self.wait_exit(timeout)
    }

    /// SIGTERM and expect a clean exit (status 0).
    pub fn stop_cleanly(&mut self) {
        let status = self.terminate(Duration::from_secs(20));
        assert!(
            status.success(),
            "SIGTERM should end the host with status 0, got {status}"
        );
    }

    /// SIGKILL (a crash), and reap it.
    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        self.status = Some(self.child.wait().expect("cannot reap the host process"));
    }
}

impl Host {
    /// The address of the host's metrics listener, from its start-up log line
    /// (so `--metrics-listen 127.0.0.1:0` can pick a free port).
    pub fn metrics_addr(&mut self, timeout: Duration) -> std::net::SocketAddr {
        let needle = "serving /metrics";
        self.wait_for_stderr(needle, timeout);
        let stderr = self.stderr();
        let line = stderr
            .lines()
            .find(|l| l.contains(needle))
            .expect("the listener's line");
        line.split_whitespace()
            .find_map(|word| word.strip_prefix("addr="))
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no addr= in {line:?}"))
    }
}

/// `GET path` over HTTP/1.1 from `addr`: the status code and the body.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr)
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("the request is sent");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .unwrap_or_else(|e| panic!("GET {path} from {addr}: {e}"));
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response from {addr}: {response:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_owned())
}

/// The value of one series in a Prometheus text exposition, e.g.
/// `alerthost_decisions_total{handler="h",kind="saved",version="v"}`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap_or_else(|e| panic!("{series}: {v:?}: {e}")))
}

impl Drop for Host {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- stderr of alerthost (pid {}) ---\n{}--- end of stderr ---",
                self.pid(),
                self.stderr()
            );
        }
    }
}

// ---------------------------------------------------------------------------
// What a file sink saved

/// A file saved under the default name
/// `<handler>/<topic>/partition=<p>/<topic>+<p>+<offset>.bin` (each handler
/// saves under a directory of its own in the sink).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SavedKey {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// Every file under `dir`, recursively (empty when `dir` does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => stack.push(path),
                Ok(_) => out.push(path),
                Err(_) => {}
            }
        }
    }
    out.sort();
    out
}

/// The files of `dir` that carry a default save name (at any depth, so
/// under every handler's directory), by what they hold;
/// panics on any other file (a stray name is a finding, not noise), except
/// the file sink's temporary files, which [`temp_files`] reports.
pub fn saved_files(dir: &Path) -> BTreeMap<SavedKey, PathBuf> {
    let mut saved = BTreeMap::new();
    for path in files_under(dir) {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if is_temp_file(name) {
            continue;
        }
        let key = parse_default_name(&path)
            .unwrap_or_else(|| panic!("{} is not a default save name", path.display()));
        saved.insert(key, path);
    }
    saved
}

/// How many files with a default save name `dir` holds (0 if it is missing).
pub fn count_saved(dir: &Path) -> usize {
    saved_files(dir).len()
}

fn parse_default_name(path: &Path) -> Option<SavedKey> {
    let name = path.file_name()?.to_str()?.strip_suffix(".bin")?;
    let mut parts = name.rsplitn(3, '+');
    let offset = parts.next()?.parse().ok()?;
    let partition: i32 = parts.next()?.parse().ok()?;
    let topic = parts.next()?.to_owned();
    let folder = path.parent()?;
    let partition_folder = folder.file_name()?.to_str()?;
    let topic_folder = folder.parent()?.file_name()?.to_str()?;
    (partition_folder == format!("partition={partition}") && topic_folder == topic).then_some(
        SavedKey {
            topic,
            partition,
            offset,
        },
    )
}

fn is_temp_file(name: &str) -> bool {
    name.starts_with(".alerthost-") && name.ends_with(".tmp")
}

/// Run chattr(1) with `flag` (`+i`, `-i`) on `paths`; panics if it fails.
pub fn chattr(flag: &str, paths: &[PathBuf]) {
    let status = Command::new("chattr")
        .arg(flag)
        .args(paths)
        .status()
        .expect("cannot run chattr(1)");
    assert!(status.success(), "chattr {flag} {paths:?} failed");
}

/// The file sink's temporary files (`.alerthost-*.tmp`) left under `dir`.
pub fn temp_files(dir: &Path) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(is_temp_file)
        })
        .collect()
}

/// The (partition, offset) pairs of `topic` saved under `dir`.
pub fn saved_offsets(dir: &Path, topic: &str) -> BTreeSet<(i32, i64)> {
    saved_files(dir)
        .into_keys()
        .filter(|k| k.topic == topic)
        .map(|k| (k.partition, k.offset))
        .collect()
}

// ---------------------------------------------------------------------------
// The broker

/// The broker's bootstrap address from `ALERTHOST_KAFKA_BOOTSTRAP`. `None`
/// (after a note on stderr) when it is not set, so a test without a broker
/// is skipped; under `CI` a missing broker fails the test instead.
pub fn kafka_bootstrap() -> Option<String> {
    match std::env::var("ALERTHOST_KAFKA_BOOTSTRAP") {
        Ok(servers) if !servers.trim().is_empty() => Some(servers.trim().to_owned()),
        _ if std::env::var_os("CI").is_some() => {
            panic!(
                "ALERTHOST_KAFKA_BOOTSTRAP is not set: start a broker with scripts/kafka.sh start"
            )
        }
        _ => {
            eprintln!(
                "note: skipped: ALERTHOST_KAFKA_BOOTSTRAP is not set (start a broker with \
                 scripts/kafka.sh start and export the address it prints)"
            );
            None
        }
    }
}

/// `let kafka = require_kafka!();` at the top of a test: a [`Kafka`] client,
/// or return (skip) when no broker is configured.
#[macro_export]
macro_rules! require_kafka {
    () => {
        match $crate::kafka_bootstrap() {
            Some(servers) => $crate::Kafka::new(&servers),
            None => return,
        }
    };
}

/// A message to produce.
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    /// The partition (required: tests place messages explicitly).
    pub partition: i32,
    /// Producer (create) timestamp in ms; default: now.
    pub timestamp: Option<i64>,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value.
    pub value: Vec<u8>,
    /// Headers, in order (a `None` value is a header without one).
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Outgoing {
    /// A value for a partition.
    pub fn new(partition: i32, value: impl Into<Vec<u8>>) -> Self {
        Outgoing {
            partition,
            value: value.into(),
            ..Outgoing::default()
        }
    }

    /// With an explicit timestamp.
    pub fn at(mut self, millis: i64) -> Self {
        self.timestamp = Some(millis);
        self
    }
}

/// A message read back from the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Timestamp in ms, if any.
    pub timestamp: Option<i64>,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value.
    pub value: Vec<u8>,
    /// Headers, in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Received {
    /// The first header called `name`, as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| value.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

/// Where a produced message landed (partition, offset), or why it did not.
type Delivered = Result<(i32, i64), String>;

/// Collects delivery reports: the outcome of each produced message, by index.
#[derive(Debug, Default)]
struct Deliveries {
    results: Mutex<Vec<(usize, Delivered)>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Box<usize>;

    fn delivery(&self, result: &DeliveryResult<'_>, index: Self::DeliveryOpaque) {
        let outcome = match result {
            Ok(message) => Ok((message.partition(), message.offset())),
            Err((error, _)) => Err(error.to_string()),
        };
        self.results
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((*index, outcome));
    }
}

/// An rdkafka client of the tests' own, independent of the host's code.
#[derive(Debug, Clone)]
pub struct Kafka {
    servers: String,
}

impl Kafka {
    /// A client of the broker at `servers`.
    pub fn new(servers: &str) -> Self {
        Kafka {
            servers: servers.to_owned(),
        }
    }

    /// The bootstrap servers.
    pub fn servers(&self) -> &str {
        &self.servers
    }

    fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.servers)
            .set("log_level", "3");
        config
    }

    /// Create `topic` with `partitions` partitions and wait until every
    /// partition has a leader.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        self.create_topic_with(topic, partitions, &[]);
    }

    fn admin(&self) -> AdminClient<DefaultClientContext> {
        self.config().create().expect("an admin client")
    }

    /// How many partitions with a leader `topic` has (0 if it does not exist).
    pub fn partitions(&self, topic: &str) -> i32 {
        let consumer = self.consumer(&unique_name("alerthost-test-meta"));
        let Ok(metadata) = consumer.fetch_metadata(Some(topic), KAFKA_TIMEOUT) else {
            return 0;
        };
        metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map_or(0, |t| {
                let led = t
                    .partitions()
                    .iter()
                    .filter(|p| p.leader() >= 0 && p.error().is_none());
                i32::try_from(led.count()).unwrap_or(i32::MAX)
            })
    }

    /// Produce `messages` (acks=all, in order per partition) and return the
    /// offset each one got, in the same order.
    pub fn produce(&self, topic: &str, messages: &[Outgoing]) -> Vec<i64> {
        self.produce_batched(topic, messages, false)
    }

    /// [`produce`](Self::produce) with each message in a record batch of its
    /// own (each is delivered before the next is sent), so that a fetch
    /// limited to one byte returns exactly one message.
    pub fn produce_one_batch_each(&self, topic: &str, messages: &[Outgoing]) -> Vec<i64> {
        self.produce_batched(topic, messages, true)
    }

    fn produce_batched(
        &self,
        topic: &str,
        messages: &[Outgoing],
        one_batch_each: bool,
    ) -> Vec<i64> {
        // rust-rdkafka's `flush` polls in steps of 100 ms that run to their
        // end; the delivery reports are waited for in steps of 1 ms first.
        let delivered = |producer: &BaseProducer<Deliveries>| {
            let deadline = Instant::now() + KAFKA_TIMEOUT;
            while producer.in_flight_count() > 0 && Instant::now() < deadline {
                producer.poll(Duration::from_millis(1));
            }
        };
        let producer: BaseProducer<Deliveries> = self
            .config()
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .create_with_context(Deliveries::default())
            .expect("a producer");
        for (index, message) in messages.iter().enumerate() {
            let mut record = BaseRecord::with_opaque_to(topic, Box::new(index))
                .partition(message.partition)
                .payload(&message.value);
            if let Some(key) = &message.key {
                record = record.key(key);
            }
            if let Some(timestamp) = message.timestamp {
                record = record.timestamp(timestamp);
            }
            if !message.headers.is_empty() {
                let headers = message.headers.iter().fold(
                    rdkafka::message::OwnedHeaders::new_with_capacity(message.headers.len()),
                    |headers, (key, value)| {
                        headers.insert(rdkafka::message::Header {
                            key,
                            value: value.as_deref(),
                        })
                    },
                );
                record = record.headers(headers);
            }
            let mut record = record;
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((
                        KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                        back,
                    )) => {
                        record = back;
                        producer.poll(Duration::from_millis(10));
                    }
                    Err((error, _)) => panic!("cannot produce to {topic}: {error}"),
                }
            }
            producer.poll(Duration::ZERO);
            if one_batch_each {
                delivered(&producer);
            }
        }
        delivered(&producer);
        producer
            .flush(KAFKA_TIMEOUT)
            .unwrap_or_else(|e| panic!("cannot flush the messages to {topic}: {e}"));
        let results = std::mem::take(
            &mut *producer
                .context()
                .results
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let mut offsets = vec![None; messages.len()];
        for (index, result) in results {
            let (partition, offset) = result
                .unwrap_or_else(|e| panic!("producing message #{index} to {topic} failed: {e}"));
            assert_eq!(
                partition, messages[index].partition,
                "message #{index} landed elsewhere"
            );
            offsets[index] = Some(offset);
        }
        offsets
            .into_iter()
            .enumerate()
            .map(|(index, offset)| {
                offset.unwrap_or_else(|| panic!("no delivery report for message #{index}"))
            })
            .collect()
    }

    fn consumer(&self, group: &str) -> BaseConsumer {
        self.config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("a consumer")
    }

    /// The end offset (high watermark) of each partition of `topic`.
    pub fn end_offsets(&self, topic: &str) -> BTreeMap<i32, i64> {
        let consumer = self.consumer(&unique_name("alerthost-test-meta"));
        (0..self.partitions(topic))
            .map(|partition| {
                let (_, high) = consumer
                    .fetch_watermarks(topic, partition, KAFKA_TIMEOUT)
                    .unwrap_or_else(|e| {
                        panic!("cannot read the offsets of {topic}[{partition}]: {e}")
                    });
                (partition, high)
            })
            .collect()
    }

    /// Every message of `topic` up to its current end, in partition and
    /// offset order, read without a group (nothing is committed).
    pub fn read_topic(&self, topic: &str) -> Vec<Received> {
        let ends = self.end_offsets(topic);
        let consumer: BaseConsumer = self
            .config()
            .set("group.id", unique_name("alerthost-test-reader"))
            .set("enable.auto.commit", "false")
            // The last offsets of a topic written in transactions are
            // markers, not messages: the end of the log says it is read.
            .set("enable.partition.eof", "true")
            .create()
            .expect("a consumer");
        let mut assignment = TopicPartitionList::new();
        for partition in ends.keys() {
            assignment
                .add_partition_offset(topic, *partition, Offset::Beginning)
                .expect("an assignment");
        }
        consumer.assign(&assignment).expect("assign the partitions");
        let mut out = Vec::new();
        let mut remaining: BTreeMap<i32, i64> =
            ends.into_iter().filter(|(_, end)| *end > 0).collect();
        let deadline = Instant::now() + KAFKA_TIMEOUT;
        while !remaining.is_empty() {
            assert!(
                Instant::now() < deadline,
                "reading {topic} timed out; still to read: {remaining:?}"
            );
            match consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    remaining.remove(&partition);
                }
                Some(Err(error)) => panic!("reading {topic}: {error}"),
                Some(Ok(message)) => {
                    let partition = message.partition();
                    let offset = message.offset();
                    if remaining
                        .get(&partition)
                        .is_some_and(|end| offset + 1 >= *end)
                    {
                        remaining.remove(&partition);
                    }
                    out.push(Received {
                        partition,
                        offset,
                        timestamp: message.timestamp().to_millis(),
                        key: message.key().map(<[u8]>::to_vec),
                        value: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                        headers: message
                            .headers()
                            .map(|headers| {
                                headers
                                    .iter()
                                    .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                                    .collect()
                            })
                            .unwrap_or_default(),
                    });
                }
            }
        }
        out.sort_by_key(|r| (r.partition, r.offset));
        out
    }

    /// The offsets `group` has committed on each partition of `topic`
    /// (`None` where it has committed nothing), as the broker answers.
    pub fn committed_offsets(&self, group: &str, topic: &str) -> BTreeMap<i32, Option<i64>> {
        let consumer = self.consumer(group);
        let mut query = TopicPartitionList::new();
        for partition in 0..self.partitions(topic) {
            query.add_partition(topic, partition);
        }
        let answer = consumer
            .committed_offsets(query, KAFKA_TIMEOUT)
            .unwrap_or_else(|e| {
                panic!("cannot read the offsets group {group} committed on {topic}: {e}")
            });
        answer
            .elements()
            .iter()
            .map(|e| (e.partition(), e.offset().to_raw().filter(|o| *o >= 0)))
            .collect()
    }

    /// The consumer groups the broker knows.
    pub fn groups(&self) -> Vec<String> {
        let consumer = self.consumer(&unique_name("alerthost-test-meta"));
        let list = consumer
            .fetch_group_list(None, KAFKA_TIMEOUT)
            .expect("cannot list the consumer groups");
        list.groups().iter().map(|g| g.name().to_owned()).collect()
    }
}

// ---------------------------------------------------------------------------
// Delivery scenarios: hosts with a chosen stdout or under a tracer, what a
// sink holds besides default names, dead letters, group offsets set by hand,
// new partitions, and a broker of a test's own.

/// Start `alerthost run --config <config> <extra_args>` with its stdout
/// going to `stdout` (a closed pipe, `/dev/full`, ...) instead of a file;
/// [`Host::stdout`] is then empty.
pub fn start_host_with_stdout(config: &Path, extra_args: &[&str], stdout: Stdio) -> Host {
    spawn_host(&[], config, extra_args, Some(stdout))
}

/// Start `<wrapper...> alerthost run --config <config> <extra_args>`, e.g.
/// under `strace`. [`Host::pid`] is then the wrapper's pid.
pub fn start_host_under(wrapper: &[&str], config: &Path, extra_args: &[&str]) -> Host {
    spawn_host(wrapper, config, extra_args, None)
}

fn spawn_host(wrapper: &[&str], config: &Path, extra_args: &[&str], stdout: Option<Stdio>) -> Host {
    let logs = tempfile::tempdir().expect("a directory for the host's logs");
    let stdout = stdout.unwrap_or_else(|| {
        File::create(logs.path().join("stdout"))
            .expect("the host's stdout file")
            .into()
    });
    let stderr = File::create(logs.path().join("stderr")).expect("the host's stderr file");
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg(alerthost_bin());
            command
        }
        None => Command::new(alerthost_bin()),
    };
    command
        .args(["run", "--config"])
        .arg(config)
        .args(extra_args)
        .env("ALERTHOST_CACHE_DIR", component_cache_dir())
        .env("NO_COLOR", "1")
        .env_remove("ALERTHOST_LOG")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    Host {
        child,
        logs,
        status: None,
    }
}

impl Host {
    /// The peak resident memory of the process so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_else(|e| panic!("cannot read the status of pid {}: {e}", self.pid()));
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmHWM line in /proc/{}/status", self.pid()))
    }
}

/// Every visible file under `dir`, by its path relative to `dir`, with its
/// bytes. Hidden files (a leading `.`: the file sink's temporary files, and
/// any bookkeeping of its own) are left out; a save's name never starts with
/// a dot.
pub fn file_contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    files_under(dir)
        .into_iter()
        .filter(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        })
        .map(|p| {
            let bytes =
                std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
            let relative = p.strip_prefix(dir).expect("a file under dir").to_owned();
            (relative, bytes)
        })
        .collect()
}

/// The dead-letter records (`*.error.json`) a file sink under `dir` holds.
pub fn dead_letter_records(dir: &Path) -> Vec<serde_json::Value> {
    files_under(dir)
        .into_iter()
        .filter(|p| p.to_str().is_some_and(|p| p.ends_with(".error.json")))
        .map(|p| {
            let text = std::fs::read_to_string(&p)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()))
        })
        .collect()
}

/// The (partition, offset) pairs of `topic` that handler `handler` has a
/// dead-letter record of under `dir`.
pub fn dead_lettered(dir: &Path, handler: &str, topic: &str) -> BTreeSet<(i32, i64)> {
    dead_letter_records(dir)
        .iter()
        .filter(|r| r["handler"] == handler && r["topic"] == topic)
        .filter_map(|r| {
            let partition = i32::try_from(r["partition"].as_i64()?).ok()?;
            Some((partition, r["offset"].as_i64()?))
        })
        .collect()
}

impl Kafka {
    /// Create `topic` with `partitions` partitions and the topic-level
    /// settings `config` (e.g. `max.message.bytes`), and wait until every
    /// partition has a leader.
    pub fn create_topic_with(&self, topic: &str, partitions: i32, config: &[(&str, &str)]) {
        let admin = self.admin();
        let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        for (key, value) in config {
            new = new.set(key, value);
        }
        let results = futures::executor::block_on(admin.create_topics([&new], &admin_options()))
            .unwrap_or_else(|e| panic!("cannot create topic {topic}: {e}"));
        for result in results {
            if let Err((name, code)) = result {
                panic!("cannot create topic {name}: {code}");
            }
        }
        wait_for(
            &format!("topic {topic} to have {partitions} led partitions"),
            KAFKA_TIMEOUT,
            || self.partitions(topic) == partitions,
        );
    }

    /// The configuration of `topic` (every entry with a value), as the
    /// broker describes it.
    pub fn topic_config(&self, topic: &str) -> BTreeMap<String, String> {
        let admin = self.admin();
        let described = futures::executor::block_on(admin.describe_configs(
            [&rdkafka::admin::ResourceSpecifier::Topic(topic)],
            &admin_options(),
        ))
        .unwrap_or_else(|e| panic!("cannot describe topic {topic}: {e}"));
        let resource = described
            .into_iter()
            .next()
            .expect("one described topic")
            .unwrap_or_else(|code| panic!("cannot describe topic {topic}: {code}"));
        resource
            .entries
            .into_iter()
            .filter_map(|entry| Some((entry.name, entry.value?)))
            .collect()
    }

    /// Grow `topic` to `total` partitions and wait until each has a leader.
    pub fn add_partitions(&self, topic: &str, total: usize) {
        let admin = self.admin();
        let grow = rdkafka::admin::NewPartitions::new(topic, total);
        let results =
            futures::executor::block_on(admin.create_partitions([&grow], &admin_options()))
                .unwrap_or_else(|e| panic!("cannot add partitions to {topic}: {e}"));
        for result in results {
            if let Err((name, code)) = result {
                panic!("cannot add partitions to {name}: {code}");
            }
        }
        let total = i32::try_from(total).expect("a partition count");
        wait_for(
            &format!("topic {topic} to have {total} led partitions"),
            KAFKA_TIMEOUT,
            || self.partitions(topic) == total,
        );
    }

    /// Commit `offsets` (partition, next offset to read) of `topic` for
    /// `group`, as a consumer of that group that has left would have.
    pub fn commit_offsets(&self, group: &str, topic: &str, offsets: &[(i32, i64)]) {
        let consumer = self.consumer(group);
        let mut list = TopicPartitionList::new();
        for (partition, offset) in offsets {
            list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .expect("an offset to commit");
        }
        consumer
            .commit(&list, rdkafka::consumer::CommitMode::Sync)
            .unwrap_or_else(|e| panic!("cannot commit {offsets:?} of {topic} for {group}: {e}"));
    }
}

/// A broker of one test's own (`scripts/kafka.sh` with a private state
/// directory and free ports), for a test that stops it. Dropping it stops
/// the broker and deletes its state.
#[derive(Debug)]
pub struct OwnBroker {
    state: tempfile::TempDir,
    servers: String,
    running: bool,
}

impl OwnBroker {
    /// Start a broker; this takes a few seconds (a JVM starts).
    pub fn start() -> Self {
        let state = tempfile::tempdir().expect("a state directory for a broker");
        let output = Self::script(state.path(), "start")
            .output()
            .expect("cannot run scripts/kafka.sh");
        assert!(
            output.status.success(),
            "scripts/kafka.sh start failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let servers = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        OwnBroker {
            state,
            servers,
            running: true,
        }
    }

    fn script(state: &Path, command: &str) -> Command {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka.sh");
        let mut cmd = Command::new(script);
        cmd.arg(command).env("ALERTHOST_KAFKA_DIR", state);
        cmd
    }

    /// A client of this broker.
    pub fn client(&self) -> Kafka {
        Kafka::new(&self.servers)
    }

    /// Freeze (`SIGSTOP`) or thaw (`SIGCONT`) the broker's process: while
    /// frozen it keeps its connections and answers nothing, as a broker in a
    /// long pause does.
    pub fn freeze(&self, frozen: bool) {
        let pid = std::fs::read_to_string(self.state.path().join("kafka.pid"))
            .expect("the broker's pid file");
        let status = Command::new("kill")
            .arg(if frozen { "-STOP" } else { "-CONT" })
            .arg(pid.trim())
            .status()
            .expect("cannot run kill(1)");
        assert!(status.success(), "cannot signal the broker {}", pid.trim());
    }

    /// Stop the broker and wait until it has exited.
    pub fn stop(&mut self) {
        if self.running {
            let status = Self::script(self.state.path(), "stop")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("cannot run scripts/kafka.sh");
            assert!(status.success(), "scripts/kafka.sh stop failed ({status})");
            self.running = false;
        }
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        if self.running {
            self.freeze(false);
            let _ = Self::script(self.state.path(), "stop")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A memory figure of this process from `/proc/self/status`, in bytes:
/// `"VmRSS"` (resident now) or `"VmHWM"` (peak resident).
pub fn proc_status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{field} in kB in /proc/self/status"));
    kib * 1024
}

/// The types every hand-built handler-world core module starts with, at
/// indices 0, 1 and 2: `init`, `handle` (the message's 14 flat values, the
/// result through a return pointer) and `cabi_realloc`. Callers add their
/// own types after them.
pub fn handler_world_types() -> wasm_encoder::TypeSection {
    use wasm_encoder::ValType::{I32, I64};
    let mut types = wasm_encoder::TypeSection::new();
    // init(params: list<tuple<string, string>>) -> result<_, string>
    types.ty().function([I32, I32], [I32]);
    // handle(msg: message) -> result<list<action>, handler-error>
    types.ty().function(
        [
            I32, I32, I32, I64, I32, I64, I32, I32, I32, I32, I32, I32, I32, I32,
        ],
        [I32],
    );
    // cabi_realloc
    types.ty().function([I32, I32, I32, I32], [I32]);
    types
}

/// A handler component from a hand-built core module (exporting `memory`,
/// `init`, `handle` and `cabi_realloc`) against the repository's
/// `alerthost:handler` world; `validate` has the encoder validate the
/// result (off to build components only the compiler refuses).
pub fn handler_world_component(mut module: Vec<u8>, validate: bool) -> Vec<u8> {
    let mut resolve = wit_parser::Resolve::default();
    let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
    let (package, _) = resolve.push_dir(&wit).unwrap();
    let world = resolve.select_world(&[package], Some("handler")).unwrap();
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .unwrap();
    wit_component::ComponentEncoder::default()
        .module(&module)
        .unwrap()
        .validate(validate)
        .encode()
        .unwrap()
}
