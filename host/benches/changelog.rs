//! The cost of a handler's state changelog, against the real broker.
//! Prints a table, asserts nothing.
//!
//! ```sh
//! export ALERTHOST_KAFKA_BOOTSTRAP=$(scripts/kafka.sh start)
//! cargo bench -p alerthost --bench changelog
//! ```
//!
//! What is timed, through the library (no host process):
//! - one `append` (a Kafka transaction, waited for) of 1, 100 and 1000
//!   changes of 64-byte values plus one watermark: what each persist with
//!   changes adds before the commit; median of `ALERTHOST_BENCH_APPENDS`
//!   (default 30) appends each;
//! - a `restore` from the beginning of everything those appends wrote
//!   (records per second), and a `restore` from the position it returned,
//!   with nothing new: what a host pays at each assignment when no other
//!   host wrote (median of 10).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use alerthost::state::Change;
use alerthost::state::changelog::Changelog;

mod support;

fn millis(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let Some(bootstrap) = support::bootstrap() else {
        return Ok(());
    };
    support::print_header("changelog", &bootstrap);
    let appends = support::env_count("ALERTHOST_BENCH_APPENDS", 30)?;
    let kafka = BTreeMap::from([("bootstrap.servers".to_owned(), bootstrap.clone())]);
    let topic = support::unique("changelog");
    let changelog = Changelog::open(&kafka, &topic, "bench")?;

    let mut rows = Vec::new();
    let mut seq = 0;
    let mut records = 0;
    for size in [1usize, 100, 1000] {
        let mut times = Vec::with_capacity(appends);
        for round in 0..appends {
            let changes: Vec<Change> = (0..size)
                .map(|i| {
                    seq += 1;
                    Change::Put {
                        key: format!("event/{i}"),
                        value: vec![b'x'; 64],
                        expires_ms: None,
                        seq,
                    }
                })
                .collect();
            let started = Instant::now();
            changelog.append(&changes, &[("gcn.bench".to_owned(), 0, round as i64)])?;
            times.push(started.elapsed());
            records += size + 1;
        }
        rows.push(vec![
            format!("append of {size} changes + 1 watermark"),
            millis(median(times)),
            String::new(),
        ]);
    }

    let started = Instant::now();
    let mut read = 0usize;
    let position = changelog.restore(None, |_| read += 1)?;
    let took = started.elapsed();
    rows.push(vec![
        format!("restore of {read} records from the beginning"),
        millis(took),
        format!("{:.0}", read as f64 / took.as_secs_f64()),
    ]);
    let mut idle = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        changelog.restore(Some(&position), |_| {})?;
        idle.push(started.elapsed());
    }
    rows.push(vec![
        "restore with nothing new".to_owned(),
        millis(median(idle)),
        String::new(),
    ]);
    assert_eq!(read, records, "every record written is restored");
    support::print_table(&["operation", "ms (median)", "records/s"], &rows);
    Ok(())
}
