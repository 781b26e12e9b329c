//! What the Kafka benchmarks share: the broker from `ALERTHOST_KAFKA_BOOTSTRAP`,
//! topics filled by an independent rdkafka producer, `alerthost run` as a
//! child process stopped with SIGTERM, the group's committed offsets as the
//! broker holds them, the times a file sink's files were written, generated
//! Fermi GBM sub-threshold VOEvents, and a plain table printer.
//!
//! Every benchmark times what a user waits for and says what it timed; none
//! asserts a timing.

// Each benchmark is its own crate and uses part of this module.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// How long one request of the benchmark's own Kafka clients may take.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(15);

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The broker to measure against, or `None` (after saying how to start one).
pub fn bootstrap() -> Option<String> {
    let bootstrap = std::env::var("ALERTHOST_KAFKA_BOOTSTRAP").ok();
    if bootstrap.is_none() {
        eprintln!(
            "set ALERTHOST_KAFKA_BOOTSTRAP to a broker: export ALERTHOST_KAFKA_BOOTSTRAP=$(scripts/kafka.sh start)"
        );
    }
    bootstrap
}

/// A count from the environment variable `name`, or `default`.
pub fn env_count(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .with_context(|| format!("{name} = {text:?} is not a count")),
        Err(_) => Ok(default),
    }
}

/// The `alerthost` binary to measure: `ALERTHOST_BIN` if set (e.g. another
/// engine built elsewhere), else the release binary this bench was built
/// with.
pub fn alerthost_bin() -> PathBuf {
    std::env::var_os("ALERTHOST_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_alerthost")),
        PathBuf::from,
    )
}

/// What was measured: the binary and the commit of the source tree it was
/// built in (with `-dirty` for local changes), the machine's load and the
/// broker, printed above every table so each figure says which engine it is
/// from.
pub fn print_header(bench: &str, bootstrap: &str) {
    let bin = alerthost_bin();
    let commit = Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .current_dir(bin.parent().unwrap_or(Path::new(".")))
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    println!(
        "{bench}: {} (commit {commit}), {} CPUs, load average {load}, broker {bootstrap}",
        bin.display(),
        std::thread::available_parallelism().map_or(0, usize::from)
    );
}

/// A fresh name for a topic or group: `prefix`, the process id and a counter.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "bench-{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The benchmark's own Kafka clients (rdkafka, not the host's code).
#[derive(Debug, Clone)]
pub struct Kafka {
    /// Bootstrap servers.
    pub bootstrap: String,
}

impl Kafka {
    /// An admin client, a runtime to wait on it, and request timeouts.
    fn admin(
        &self,
    ) -> anyhow::Result<(
        AdminClient<DefaultClientContext>,
        tokio::runtime::Runtime,
        AdminOptions,
    )> {
        let admin = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let options = AdminOptions::new()
            .operation_timeout(Some(KAFKA_TIMEOUT))
            .request_timeout(Some(KAFKA_TIMEOUT));
        Ok((admin, runtime, options))
    }

    /// Create `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: i32) -> anyhow::Result<()> {
        let (admin, runtime, options) = self.admin()?;
        let results = runtime.block_on(admin.create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &options,
        ))?;
        for result in results {
            result.map_err(|(topic, code)| anyhow::anyhow!("cannot create {topic}: {code}"))?;
        }
        Ok(())
    }

    /// Delete `topics` (benchmark topics hold hundreds of MB).
    pub fn delete_topics(&self, topics: &[&str]) -> anyhow::Result<()> {
        let (admin, runtime, options) = self.admin()?;
        for result in runtime.block_on(admin.delete_topics(topics, &options))? {
            result.map_err(|(topic, code)| anyhow::anyhow!("cannot delete {topic}: {code}"))?;
        }
        Ok(())
    }

    /// A producer for filling topics: batches freely, waits for all replicas.
    pub fn producer(&self, linger_ms: u32) -> anyhow::Result<BaseProducer> {
        Ok(ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("linger.ms", linger_ms.to_string())
            .set("queue.buffering.max.messages", "1000000")
            .set("queue.buffering.max.kbytes", "1048576")
            .set("acks", "all")
            .create()?)
    }

    /// Produce every `(partition, value)` to `topic` and wait until the broker
    /// has them all.
    pub fn fill(
        &self,
        topic: &str,
        messages: impl IntoIterator<Item = (i32, Vec<u8>)>,
    ) -> anyhow::Result<()> {
        let producer = self.producer(20)?;
        for (partition, value) in messages {
            send(&producer, topic, partition, &value)?;
        }
        producer.flush(Duration::from_secs(120))?;
        Ok(())
    }

    /// The end offset (high watermark) of each partition of `topic`.
    pub fn end_offsets(&self, topic: &str, partitions: i32) -> anyhow::Result<Vec<i64>> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()?;
        (0..partitions)
            .map(|partition| {
                Ok(consumer
                    .fetch_watermarks(topic, partition, KAFKA_TIMEOUT)
                    .with_context(|| format!("watermarks of {topic} [{partition}]"))?
                    .1)
            })
            .collect()
    }

    /// A client that reads `group`'s committed offsets without joining it.
    pub fn offsets_of(&self, group: &str) -> anyhow::Result<BaseConsumer> {
        Ok(ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()?)
    }

    /// Wait until the broker holds commits of `group` at `ends` (or beyond)
    /// for every partition of `topic`, asking every 10 ms; return when it
    /// first did. `alive` is called between two questions: its error (the
    /// committing process died) ends the wait.
    pub fn wait_committed(
        &self,
        group: &str,
        topic: &str,
        ends: &[i64],
        timeout: Duration,
        mut alive: impl FnMut() -> anyhow::Result<()>,
    ) -> anyhow::Result<SystemTime> {
        let client = self.offsets_of(group)?;
        let mut wanted = TopicPartitionList::new();
        for partition in 0..ends.len() {
            wanted.add_partition(topic, i32::try_from(partition)?);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let committed = client.committed_offsets(wanted.clone(), KAFKA_TIMEOUT)?;
            let done = ends.iter().enumerate().all(|(partition, end)| {
                matches!(
                    committed
                        .find_partition(topic, partition as i32)
                        .map(|elem| elem.offset()),
                    Some(Offset::Offset(at)) if at >= *end
                )
            });
            if done {
                return Ok(SystemTime::now());
            }
            alive()?;
            anyhow::ensure!(
                Instant::now() < deadline,
                "group {group} has not committed the end of {topic} within {timeout:?}: {:?}",
                committed
                    .elements()
                    .iter()
                    .map(|e| e.offset())
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Send one record, waiting while the producer's queue is full.
pub fn send(
    producer: &BaseProducer,
    topic: &str,
    partition: i32,
    value: &[u8],
) -> anyhow::Result<()> {
    loop {
        let record = BaseRecord::<(), [u8]>::to(topic)
            .partition(partition)
            .payload(value);
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                producer.poll(Duration::from_millis(10));
            }
            Err((error, _)) => return Err(error).context(format!("cannot produce to {topic}")),
        }
    }
}

/// A component built from `examples/`, or an error saying how to build it.
pub fn example(name: &str) -> anyhow::Result<PathBuf> {
    let path = root()
        .join("examples/target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    anyhow::ensure!(
        path.is_file(),
        "{} is missing: cargo build --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml",
        path.display()
    );
    Ok(path)
}

/// A string as a TOML basic string.
pub fn toml_str(text: impl AsRef<str>) -> String {
    format!("{:?}", text.as_ref())
}

/// The run every Kafka bench measures: `handler` (the component at
/// `component`, with `params` as TOML inline-table entries, may be empty)
/// reads `topics` in `group` and saves to one file sink at `out`.
pub fn save_config(
    bootstrap: &str,
    topics: &[&str],
    group: &str,
    out: &Path,
    handler: &str,
    component: &Path,
    params: &str,
) -> String {
    let topics = topics.iter().map(toml_str).collect::<Vec<_>>().join(", ");
    format!(
        r#"[source]
bootstrap_servers = {bootstrap}
topics = [{topics}]
group_id = {group}

[sinks.out]
type = "file"
dir = {out}

[[handler]]
name = {handler}
component = {component}
topics = [{topics}]
save_to = "out"
params = {{ {params} }}
"#,
        bootstrap = toml_str(bootstrap),
        group = toml_str(group),
        out = toml_str(out.to_string_lossy()),
        handler = toml_str(handler),
        component = toml_str(component.to_string_lossy()),
    )
}

/// `alerthost run` in a child process, its log (info) in a file.
#[derive(Debug)]
pub struct Host {
    child: Child,
    log: PathBuf,
    /// Whether `child` is a wrapper (strace) whose own child is alerthost.
    wrapped: bool,
}

impl Host {
    /// Run `alerthost run -c config` ([`alerthost_bin`]), optionally under
    /// `wrapper` (e.g. strace), logging to `<config>.log`.
    pub fn start(config: &Path, wrapper: &[&str]) -> anyhow::Result<Host> {
        let log = config.with_extension("log");
        let bin = alerthost_bin();
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(&bin);
                command
            }
            None => Command::new(&bin),
        };
        let child = command
            .args(["run", "--log", "info", "-c"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log)?)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        Ok(Host {
            child,
            log,
            wrapped: !wrapper.is_empty(),
        })
    }

    /// The process id of alerthost itself, below a wrapper if there is one.
    fn alerthost_pid(&self) -> anyhow::Result<String> {
        let pid = self.child.id().to_string();
        if !self.wrapped {
            return Ok(pid);
        }
        let out = Command::new("pgrep").args(["-P", &pid]).output()?;
        let children = String::from_utf8_lossy(&out.stdout);
        children
            .split_whitespace()
            .next()
            .map(str::to_owned)
            .with_context(|| format!("no process below the wrapper {pid}"))
    }

    /// CPU time so far of alerthost's living threads, in seconds.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        cpu_seconds(&self.alerthost_pid()?)
    }

    /// SIGTERM to alerthost (a wrapper then exits with it), wait for the
    /// exit (a minute at most) and return the log.
    pub fn stop(mut self) -> anyhow::Result<String> {
        let pid = self.alerthost_pid()?;
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "alerthost did not exit within 60 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        anyhow::ensure!(status.success(), "alerthost run failed ({status}):\n{log}");
        Ok(log)
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fail with the log if the process has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            anyhow::bail!("alerthost run exited early ({status}):\n{}", self.log());
        }
        Ok(())
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // A killed wrapper leaves its tracee running: kill that first.
        if self.wrapped
            && let Ok(pid) = self.alerthost_pid()
        {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The files under `dir` (not temporary ones) and when the first and the last
/// was written (their modification times; ext4 and tmpfs give the kernel's
/// tick, 1–4 ms).
#[derive(Debug, Clone, Copy)]
pub struct Written {
    /// How many files.
    pub count: usize,
    /// The earliest modification time.
    pub first: SystemTime,
    /// The latest modification time.
    pub last: SystemTime,
}

/// See [`Written`]; `None` when `dir` holds no file.
pub fn written(dir: &Path) -> anyhow::Result<Option<Written>> {
    let mut found: Option<Written> = None;
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error).context(format!("cannot read {}", dir.display())),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if kind.is_file() && !name.starts_with('.') && !name.ends_with(".tmp") {
                let modified = entry.metadata()?.modified()?;
                found = Some(match found {
                    None => Written {
                        count: 1,
                        first: modified,
                        last: modified,
                    },
                    Some(w) => Written {
                        count: w.count + 1,
                        first: w.first.min(modified),
                        last: w.last.max(modified),
                    },
                });
            }
        }
    }
    Ok(found)
}

/// Wait until `dir` holds `count` files, failing early if `host` exits.
pub fn wait_written(
    dir: &Path,
    count: usize,
    timeout: Duration,
    mut host: Option<&mut Host>,
) -> anyhow::Result<Written> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(w) = written(dir)?
            && w.count >= count
        {
            return Ok(w);
        }
        if let Some(host) = host.as_deref_mut() {
            host.check_running()?;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} does not hold {count} files within {timeout:?}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `later - earlier` in seconds (negative if `later` is earlier).
pub fn seconds(earlier: SystemTime, later: SystemTime) -> f64 {
    match later.duration_since(earlier) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// CPU time so far of the living threads of process `pid` ("self" for this
/// one), in seconds, from the kernel's per-thread scheduler statistics (in
/// nanoseconds, unlike the clock ticks of `/proc/<pid>/stat`).
pub fn cpu_seconds(pid: &str) -> anyhow::Result<f64> {
    let tasks = Path::new("/proc").join(pid).join("task");
    let mut nanos = 0u64;
    for task in
        std::fs::read_dir(&tasks).with_context(|| format!("cannot list {}", tasks.display()))?
    {
        // A thread may end between the listing and the read.
        let Ok(stat) = std::fs::read_to_string(task?.path().join("schedstat")) else {
            continue;
        };
        nanos += stat
            .split_whitespace()
            .next()
            .and_then(|run| run.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(nanos as f64 / 1e9)
}

/// Microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// The real Fermi GBM sub-threshold notice of `tests/data/samples`.
pub fn gbm_sample() -> anyhow::Result<String> {
    let path = root().join("tests/data/samples/voevent/fermi_gbm_subthresh_546126856.xml");
    std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
}

/// The sample with its `Reliability` param set to `reliability` and its
/// transient number (and so its ivorn) made unique by `serial`.
pub fn gbm_notice(sample: &str, reliability: u32, serial: u64) -> Vec<u8> {
    const RELIABILITY: &str = r#"<Param name="Reliability"    value="2" unit="dn" />"#;
    const TRANS_NUM: &str = "546126856";
    debug_assert!(sample.contains(RELIABILITY) && sample.contains(TRANS_NUM));
    sample
        .replace(
            RELIABILITY,
            &format!(r#"<Param name="Reliability"    value="{reliability}" unit="dn" />"#),
        )
        .replace(TRANS_NUM, &(546_126_856 + serial).to_string())
        .into_bytes()
}

/// The value at quantile `q` (0..=1) of sorted `values`.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index]
}

/// The median of `values`.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    quantile(&sorted, 0.5)
}

/// Print `rows` under `header`, the first column left-aligned, the others
/// right-aligned, as a Markdown table (so it pastes into the README).
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::from("|");
        for (index, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if index == 0 {
                let _ = write!(out, " {cell:<width$} |");
            } else {
                let _ = write!(out, " {cell:>width$} |");
            }
        }
        println!("{out}");
    };
    line(header.iter().map(|h| (*h).to_owned()).collect());
    line(
        widths
            .iter()
            .enumerate()
            .map(|(index, width)| {
                if index == 0 {
                    "-".repeat(*width)
                } else {
                    format!("{}:", "-".repeat(width - 1))
                }
            })
            .collect(),
    );
    for row in rows {
        line(row.clone());
    }
}
