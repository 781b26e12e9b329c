//! Throughput of `alerthost run` with the `save-all` example and every
//! delivery guarantee kept: a consumer group, each message saved to its own
//! file (fsync'd, renamed into place, directory fsync'd) before its offset is
//! committed. Prints a table, asserts nothing.
//!
//! ```sh
//! export ALERTHOST_KAFKA_BOOTSTRAP=$(scripts/kafka.sh start)
//! cargo build --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml
//! cargo bench -p alerthost --bench save
//! ```
//!
//! 30 000 messages of 1 KiB on a 3-partition topic (`ALERTHOST_BENCH_MESSAGES`),
//! saved under a temporary directory (on the disk of `TMPDIR`), default
//! `commit_interval_ms` (1 s).
//!
//! What is timed: from the first file written (its modification time) to
//! - the last file written ("saved"), and
//! - the moment the broker holds the group's commits at the end of every
//!   partition ("committed"; asked every 10 ms), which is when a user can
//!   rely on every message being on disk. Messages/s is counted on this one.
//!
//! fsyncs per message: from the engine's own exit summary when it prints one
//! (`N files saved with M fsyncs`), and, when `strace` is installed, counted
//! by `strace -f -c -e trace=fsync,fdatasync,syncfs` over a second, untimed
//! run of 3 000 messages (`ALERTHOST_BENCH_STRACE_MESSAGES`, 0 to skip).

mod support;

use std::path::Path;
use std::time::Duration;

use support::{Host, Kafka};

const PARTITIONS: i32 = 3;
const SIZE: usize = 1024;

fn main() -> anyhow::Result<()> {
    let Some(bootstrap) = support::bootstrap() else {
        return Ok(());
    };
    let kafka = Kafka { bootstrap };
    let count = support::env_count("ALERTHOST_BENCH_MESSAGES", 30_000)?;
    let traced = support::env_count("ALERTHOST_BENCH_STRACE_MESSAGES", 3_000)?;
    let component = support::example("save_all")?;
    support::print_header("save", &kafka.bootstrap);
    let dir = tempfile::tempdir()?;

    let run = save_all(&kafka, &component, dir.path(), count, &[])?;
    let mut rows = vec![vec![
        "save-all, 1 KiB, group, commits".to_owned(),
        run.messages.to_string(),
        format!("{:.2}", run.saved),
        format!("{:.2}", run.committed),
        format!("{:.0}", run.messages as f64 / run.committed),
        run.fsyncs.map_or_else(
            || "not printed".to_owned(),
            |fsyncs| format!("{:.3}", fsyncs as f64 / run.messages as f64),
        ),
    ]];

    if traced > 0 && which("strace") {
        let trace = dir.path().join("strace.txt");
        let trace_arg = trace.to_string_lossy().into_owned();
        let wrapper = [
            "strace",
            "-f",
            "-c",
            "--seccomp-bpf",
            "-e",
            "trace=fsync,fdatasync,syncfs",
            "-o",
            &trace_arg,
        ];
        let run = save_all(&kafka, &component, dir.path(), traced, &wrapper)?;
        let calls = strace_calls(&std::fs::read_to_string(&trace)?);
        rows.push(vec![
            format!("same under strace (untimed): {calls} sync calls"),
            run.messages.to_string(),
            String::new(),
            String::new(),
            String::new(),
            format!("{:.3}", calls as f64 / run.messages as f64),
        ]);
    }
    support::print_table(
        &[
            "run",
            "messages",
            "saved s",
            "committed s",
            "msg/s (committed)",
            "fsyncs/msg",
        ],
        &rows,
    );
    Ok(())
}

/// One timed run.
struct Run {
    messages: usize,
    /// Seconds from the first file written to the last.
    saved: f64,
    /// Seconds from the first file written to the broker holding the commits.
    committed: f64,
    /// fsyncs, from the engine's exit summary.
    fsyncs: Option<u64>,
}

/// Fill a new topic with `count` messages and run `save-all` over it in a
/// new group, optionally under `wrapper`.
fn save_all(
    kafka: &Kafka,
    component: &Path,
    dir: &Path,
    count: usize,
    wrapper: &[&str],
) -> anyhow::Result<Run> {
    let per_partition = (count / PARTITIONS as usize).max(1);
    let messages = per_partition * PARTITIONS as usize;
    let topic = support::unique("save");
    kafka.create_topic(&topic, PARTITIONS)?;
    let value = vec![b'x'; SIZE];
    kafka.fill(
        &topic,
        (0..messages).map(|index| (index as i32 % PARTITIONS, value.clone())),
    )?;
    let ends = kafka.end_offsets(&topic, PARTITIONS)?;
    let group = support::unique("save");
    let out = dir.join(&topic);
    let config = dir.join(format!("{topic}.toml"));
    std::fs::write(
        &config,
        support::save_config(
            &kafka.bootstrap,
            &[&topic],
            &group,
            &out,
            "save-all",
            component,
            "",
        ),
    )?;
    // Generous for an engine that saves a few hundred messages a second.
    let timeout = Duration::from_secs(120 + messages as u64 / 100);
    let mut host = Host::start(&config, wrapper)?;
    let written = support::wait_written(&out, messages, timeout, Some(&mut host))?;
    let committed =
        kafka.wait_committed(&group, &topic, &ends, Duration::from_secs(120), || {
            host.check_running()
        })?;
    let log = host.stop()?;
    kafka.delete_topics(&[&topic])?;
    anyhow::ensure!(
        written.count == messages,
        "{} files saved for {messages} messages",
        written.count
    );
    Ok(Run {
        messages,
        saved: support::seconds(written.first, written.last),
        committed: support::seconds(written.first, committed),
        fsyncs: engine_fsyncs(&log),
    })
}

/// `M` from the engine's exit summary `N files saved with M fsyncs`.
fn engine_fsyncs(log: &str) -> Option<u64> {
    let pattern = regex_lite::Regex::new(r"(\d+) files saved with (\d+) fsyncs").ok()?;
    let captures = pattern.captures_iter(log).last()?;
    captures[2].parse().ok()
}

/// The total of the `calls` column of `strace -c` output.
fn strace_calls(summary: &str) -> u64 {
    // Columns: % time, seconds, usecs/call, calls, [errors,] syscall.
    summary
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let name = fields.last()?;
            if !["fsync", "fdatasync", "syncfs"].contains(name) {
                return None;
            }
            fields.get(3)?.parse::<u64>().ok()
        })
        .sum()
}

/// Whether `program` is on the `PATH`.
fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}
