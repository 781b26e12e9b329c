//! `alerthost test`: run a handler over message files, with no Kafka. The
//! handler author's harness: one JSON line per file, saves through the real
//! file sink, an optional summary table.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use serde_json::json;

use crate::bindings::{Action, Message, Timestamp, TimestampKind};
use crate::cli::{EXIT_HANDLER_FAILED, EXIT_OK, TestArgs};
use crate::runtime::{LiveHandler, Runtime, RuntimeOptions, action_bytes};
use crate::sink::FileSink;
use crate::state::{StateLimits, StateStore};

pub fn run(args: &TestArgs) -> anyhow::Result<ExitCode> {
    let files = collect_files(&args.files)?;
    let limits = args.limits.limits();
    let runtime = Runtime::new(&RuntimeOptions {
        fuel: limits.fuel.is_some(),
        cache_dir: args.cache.dir(),
        ..RuntimeOptions::default()
    })?;
    let code = Arc::new(runtime.load_file(&args.handler, &limits)?);
    // Without --state-dir the state lives in a directory removed at exit.
    let mut scratch = None;
    let state = if code.uses_state() {
        let dir = match &args.state_dir {
            Some(dir) => dir.clone(),
            None => scratch
                .insert(tempfile::tempdir().context("cannot create a temporary state directory")?)
                .path()
                .to_owned(),
        };
        let store = StateStore::open(&dir).context("--state-dir")?;
        let name = args.handler.file_stem().map_or_else(
            || "handler".to_owned(),
            |s| s.to_string_lossy().into_owned(),
        );
        let state = store.handler(&name, StateLimits::default())?;
        Some((store, state))
    } else {
        None
    };
    let (mut handler, init_logs) = LiveHandler::new(
        code.clone(),
        args.params.clone(),
        state.as_ref().map(|(_, state)| Arc::clone(state)),
    )
    .map_err(|failure| anyhow::anyhow!("{}: {failure}", args.handler.display()))?;
    for line in init_logs {
        eprintln!(
            "init [{}] {}",
            crate::runtime::level_str(line.level),
            line.text
        );
    }
    let sink = args.save_dir.as_deref().map(FileSink::new).transpose()?;
    // Names are shown relative to a sink even when nothing is written.
    let naming = match &sink {
        Some(sink) => sink.clone(),
        None => FileSink::unwritten(Path::new("")),
    };

    let mut decisions: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut times = Vec::with_capacity(files.len());
    let mut failed = false;
    for (offset, file) in files.iter().enumerate() {
        let value = std::fs::read(file)
            .with_context(|| format!("cannot read message file {}", file.display()))?;
        let msg = Message {
            topic: args.topic.clone(),
            partition: 0,
            offset: offset as i64,
            timestamp: modified_millis(file).map(|millis| Timestamp {
                millis,
                kind: TimestampKind::CreateTime,
            }),
            key: None,
            value,
            headers: Vec::new(),
        };
        let mut report = handler.handle(&msg);
        times.push(report.elapsed);
        if let Some((store, state)) = &state
            && report.outcome.is_ok()
        {
            let writes = std::mem::take(&mut report.writes);
            state.apply(&msg.topic, msg.partition, msg.offset, writes);
            store
                .persist_all()
                .with_context(|| format!("after {}", file.display()))?;
        }
        let mut line = json!({
            "file": file,
            "version": code.version(),
            "elapsed_us": report.elapsed.as_micros() as u64,
        });
        match &report.outcome {
            Ok(actions) => {
                let mut described = Vec::with_capacity(actions.len());
                for action in actions {
                    described.push(describe(action, &msg, &naming, sink.as_ref())?);
                }
                let decision = decision(actions);
                *decisions.entry(decision).or_default() += 1;
                line["decision"] = json!(decision);
                line["actions"] = json!(described);
            }
            Err(failure) => {
                failed = true;
                *decisions.entry("error").or_default() += 1;
                line["decision"] = json!("error");
                line["error"] = json!({ "kind": failure.kind, "text": failure.text });
            }
        }
        if let Some(fuel) = report.fuel_used {
            line["fuel"] = json!(fuel);
        }
        if !report.logs.is_empty() {
            line["logs"] = json!(report.logs);
        }
        if report.logs_dropped > 0 {
            line["logs_dropped"] = json!(report.logs_dropped);
        }
        println!("{line}");
    }
    if args.summary {
        print_summary(&decisions, &mut times);
    }
    Ok(ExitCode::from(if failed {
        EXIT_HANDLER_FAILED
    } else {
        EXIT_OK
    }))
}

fn decision(actions: &[Action]) -> &'static str {
    let saves = actions.iter().any(|a| matches!(a, Action::Save(_)));
    let forwards = actions.iter().any(|a| matches!(a, Action::Forward(_)));
    match (saves, forwards) {
        (false, false) => "drop",
        (true, false) => "save",
        (false, true) => "forward",
        (true, true) => "save+forward",
    }
}

fn describe(
    action: &Action,
    msg: &Message,
    naming: &FileSink,
    sink: Option<&FileSink>,
) -> anyhow::Result<serde_json::Value> {
    Ok(match action {
        Action::Save(save) => {
            let path = naming.path_for(save.name.as_deref(), &msg.topic, msg.partition, msg.offset);
            let bytes = save.value.as_deref().unwrap_or(&msg.value);
            let mut out = json!({
                "kind": "save",
                "name": path.strip_prefix(naming.dir()).unwrap_or(&path),
                "size": bytes.len(),
            });
            if let Some(sink) = sink {
                sink.write(&path, bytes)?;
                out["path"] = json!(path);
            }
            out
        }
        Action::Forward(forward) => json!({
            "kind": "forward",
            "sink": forward.sink,
            "size": forward.value.as_ref().map_or(msg.value.len(), Vec::len),
            "bytes": action_bytes(action),
            "value": forward.value.as_deref().map(String::from_utf8_lossy),
        }),
    })
}

fn print_summary(decisions: &BTreeMap<&'static str, usize>, times: &mut [Duration]) {
    let total: usize = decisions.values().sum();
    eprintln!();
    eprintln!("{:<14} {:>8}", "decision", "messages");
    for (decision, count) in decisions {
        eprintln!("{decision:<14} {count:>8}");
    }
    eprintln!("{:<14} {total:>8}", "total");
    times.sort_unstable();
    if let Some(max) = times.last() {
        let pick = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
        eprintln!(
            "time per message: p50 {}  p99 {}  max {}",
            human(pick(0.50)),
            human(pick(0.99)),
            human(*max)
        );
    }
}

fn human(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.1} µs")
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}

fn modified_millis(file: &Path) -> Option<i64> {
    let modified = std::fs::metadata(file).ok()?.modified().ok()?;
    i64::try_from(modified.duration_since(UNIX_EPOCH).ok()?.as_millis()).ok()
}

/// Every file named, with directories expanded recursively in name order.
/// Hidden entries (a name starting with `.`, such as a `.done` marker or an
/// editor's swap file) inside a directory are skipped and listed on stderr;
/// a hidden file named on the command line is read.
fn collect_files(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut hidden = Vec::new();
    expand(inputs, &mut files, &mut hidden)?;
    if !hidden.is_empty() {
        eprintln!(
            "skipped {} hidden {}: {}",
            hidden.len(),
            if hidden.len() == 1 {
                "entry"
            } else {
                "entries"
            },
            display_list(&hidden)
        );
    }
    if files.is_empty() {
        bail!("no message files found in {}", display_list(inputs));
    }
    Ok(files)
}

fn expand(
    inputs: &[PathBuf],
    files: &mut Vec<PathBuf>,
    hidden: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    for input in inputs {
        let meta = std::fs::metadata(input)
            .with_context(|| format!("cannot read message file {}", input.display()))?;
        if meta.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(input)
                .with_context(|| format!("cannot list directory {}", input.display()))?
                .map(|entry| entry.map(|e| e.path()))
                .collect::<Result<_, _>>()
                .with_context(|| format!("cannot list directory {}", input.display()))?;
            entries.sort();
            let (dotted, visible): (Vec<_>, Vec<_>) =
                entries.into_iter().partition(|path| is_hidden(path));
            hidden.extend(dotted);
            expand(&visible, files, hidden)?;
        } else {
            files.push(input.clone());
        }
    }
    Ok(())
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|name| name.as_encoded_bytes().starts_with(b"."))
}

fn display_list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_skip_hidden_entries_but_named_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for name in [
            "b.xml",
            "a.json",
            ".done",
            ".swp/x.xml",
            "sub/c.txt",
            "sub/.part",
        ] {
            let path = root.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, "x").unwrap();
        }
        let found = collect_files(&[root.to_owned()]).unwrap();
        let names: Vec<_> = found
            .iter()
            .map(|p| p.strip_prefix(root).unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["a.json", "b.xml", "sub/c.txt"]);
        let named = collect_files(&[root.join(".done")]).unwrap();
        assert_eq!(named, [root.join(".done")]);
    }

    #[test]
    fn a_directory_of_only_hidden_files_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".done"), "").unwrap();
        let err = collect_files(&[dir.path().to_owned()]).unwrap_err();
        assert!(err.to_string().contains("no message files found"), "{err}");
    }
}
