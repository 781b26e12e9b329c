//! `alerthost run`: the long-running host.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;

use arc_swap::ArcSwap;

use crate::cli::{EXIT_OK, RunArgs};
use crate::config::{Config, Plan};
use crate::pipeline::{Deployed, HandlerSpec, Pipeline};
use crate::reload::{Reloader, Trigger};
use crate::runtime::{Runtime, RuntimeOptions};
use crate::shutdown::Shutdown;
use crate::source::{Bounds, SourceOptions};
use crate::state::StateStore;
use crate::state::changelog::Changelog;
use crate::stats::Stats;
use crate::telemetry::{Metrics, MetricsServer};

pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let mut plan = Config::load(&args.config)?;
    if let Some(listen) = &args.metrics_listen {
        crate::config::check_listen(listen).context("--metrics-listen")?;
        plan.metrics_listen = Some(listen.clone());
    }
    let bounds = Bounds {
        since: args
            .since
            .as_deref()
            .map(parse_time)
            .transpose()
            .context("--since")?,
        until: args
            .until
            .as_deref()
            .map(parse_time)
            .transpose()
            .context("--until")?,
        until_now: false,
    };
    if let (Some(since), Some(until)) = (bounds.since, bounds.until) {
        anyhow::ensure!(since < until, "--since must be before --until");
    }
    // Signals first: a SIGHUP or SIGTERM during start-up (handlers load,
    // the broker is reached) must not kill the process.
    let signals = watch_signals();
    if let Some(pid_file) = &args.pid_file {
        std::fs::write(pid_file, format!("{}\n", std::process::id()))
            .with_context(|| format!("cannot write the pid file {}", pid_file.display()))?;
    }
    run_plan(plan, bounds, args.reset, args.dry_run, true, signals)
}

/// Start everything `plan` describes and run until stopped or done.
pub fn run_plan(
    plan: Plan,
    bounds: Bounds,
    reset: Option<crate::config::StartAt>,
    dry_run: bool,
    progress: bool,
    signals: Signals,
) -> anyhow::Result<ExitCode> {
    let shutdown = signals.shutdown.clone();
    let metrics = Metrics::new();
    // Up before the handlers load, so /healthz answers and /readyz says
    // why the host is not ready yet.
    let _server = match (&plan.metrics_listen, dry_run) {
        (Some(listen), false) => Some(
            MetricsServer::start(listen, metrics.clone())
                .context("[metrics] listen (or --metrics-listen)")?,
        ),
        _ => None,
    };
    let stats = Arc::new(Stats {
        metrics: metrics.clone(),
        ..Stats::default()
    });
    let runtime = Arc::new(Runtime::new(&RuntimeOptions {
        fuel: plan.handlers.iter().any(|h| h.config.limits.fuel.is_some()),
        pooling: false,
        cache_dir: plan.cache_dir.clone(),
    })?);
    let mut loaded = Vec::new();
    for handler in &plan.handlers {
        let config = &handler.config;
        let code = runtime
            .load_file(&config.component, &config.limits)
            .with_context(|| format!("handler `{}`", config.name))?;
        loaded.push(code);
    }
    // The store is opened only when some handler keeps state.
    let store = if loaded.iter().any(|code| code.uses_state()) {
        let store = StateStore::open(&plan.state_dir)
            .with_context(|| format!("[runtime] state_dir in {}", plan.path.display()))?;
        tracing::info!(path = %store.path().display(), "handler state store open");
        Some(Arc::new(store))
    } else {
        None
    };
    // A changelog holds one handler's keys: two handlers sharing one would
    // restore each other's state.
    let mut changelogs: BTreeMap<&str, &str> = BTreeMap::new();
    for handler in &plan.handlers {
        if let Some(topic) = &handler.config.state.changelog
            && let Some(other) = changelogs.insert(topic, &handler.config.name)
        {
            anyhow::bail!(
                "handlers `{other}` and `{}` both name `{topic}` as [handler.state] changelog in {}; \
                 give each handler a topic of its own",
                handler.config.name,
                plan.path.display()
            );
        }
    }
    let mut handlers = Vec::new();
    for (handler, code) in plan.handlers.iter().zip(loaded) {
        let config = &handler.config;
        let state = match &store {
            Some(store) if code.uses_state() => Some(
                store
                    .handler(&config.name, config.state.limits())
                    .with_context(|| format!("handler `{}`: state", config.name))?,
            ),
            _ => None,
        };
        match (&config.state.changelog, &state) {
            // A dry run changes nothing, not even a topic.
            (Some(topic), Some(state)) if !dry_run => {
                let changelog = Changelog::open(&plan.kafka, topic, &config.name)?;
                state
                    .follow(changelog)
                    .with_context(|| format!("handler `{}`: restore its state", config.name))?;
            }
            (Some(topic), None) => tracing::warn!(
                handler = %config.name,
                changelog = %topic,
                "the handler's component keeps no state (it does not import `state`); its changelog is not used"
            ),
            _ => {}
        }
        tracing::info!(
            handler = %config.name,
            version = code.version(),
            component = %config.component.display(),
            cached = code.info().from_cache,
            load_ms = format!("{:.1}", code.info().load_time.as_secs_f64() * 1e3),
            "handler loaded"
        );
        metrics.running_version(&config.name, code.version());
        handlers.push(HandlerSpec {
            name: config.name.clone(),
            current: ArcSwap::from_pointee(Deployed {
                code: Arc::new(code),
                params: config.params.clone().into_iter().collect(),
            }),
            topics: handler.topics.clone(),
            save_to: config.save_to.clone(),
            forward_to: config.forward_to.clone(),
            on_error: config.on_error,
            retries: config.retries,
            dead_letter: handler.dead_letter.clone(),
            state,
        });
    }
    let handlers = Arc::new(handlers);
    let pipeline = Pipeline::build(&plan, handlers.clone(), shutdown, stats)?;
    // Every worker has run every handler's init.
    metrics.readiness().handlers_loaded();
    if dry_run {
        let sinks = pipeline.sink_count();
        pipeline.close();
        println!(
            "config {} is valid: {} handler(s), {} sink(s); nothing was consumed",
            plan.path.display(),
            handlers.len(),
            sinks
        );
        return Ok(ExitCode::from(EXIT_OK));
    }

    // Runs with an end (and the demo) end by themselves; only a
    // long-running host follows file changes.
    let reload = if bounds.ends() {
        None
    } else {
        Some(
            Arc::new(
                Reloader::new(runtime.clone(), handlers.clone(), plan.clone())
                    .with_metrics(metrics.clone()),
            )
            .watch()?,
        )
    };
    let mut kafka = plan.kafka.clone();
    if plan.metrics_listen.is_some() {
        // Broker round trips and librdkafka's own lag, for the metrics.
        kafka
            .entry("statistics.interval.ms".to_owned())
            .or_insert_with(|| "10000".to_owned());
    }
    let options = SourceOptions {
        kafka,
        group_id: plan.group_id.clone(),
        start: plan.start,
        reset,
        topics: plan.topics.clone(),
        commit_interval: plan.commit_interval,
        bounds,
        progress,
        durability: store.map(|store| store as Arc<dyn crate::commit::Durability>),
    };
    pipeline.run(options, || {
        if let Some(reload) = reload {
            *signals
                .reload
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(reload);
        }
    })?;
    Ok(ExitCode::from(EXIT_OK))
}

/// What the signal thread acts on: the shutdown to ask for, and (once the
/// host runs) where to send reloads.
#[derive(Debug, Clone)]
pub struct Signals {
    shutdown: Arc<Shutdown>,
    reload: Arc<std::sync::Mutex<Option<std::sync::mpsc::Sender<Trigger>>>>,
}

/// SIGINT or SIGTERM: stop fetching, finish what is in flight, commit, exit
/// 0. A second signal exits at once (the group resumes from the last commit).
/// SIGHUP: reload the config and every handler.
pub fn watch_signals() -> Signals {
    let signals = Signals {
        shutdown: Arc::new(Shutdown::default()),
        reload: Arc::default(),
    };
    let Signals { shutdown, reload } = signals.clone();
    std::thread::Builder::new()
        .name("alerthost-signals".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(error) => {
                    tracing::warn!(%error, "cannot watch signals");
                    return;
                }
            };
            runtime.block_on(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
                    signal(SignalKind::terminate()),
                    signal(SignalKind::interrupt()),
                    signal(SignalKind::hangup()),
                ) else {
                    tracing::warn!("cannot install signal handlers");
                    return;
                };
                let mut count = 0;
                loop {
                    tokio::select! {
                        _ = term.recv() => {},
                        _ = int.recv() => {},
                        _ = hup.recv() => {
                            match &*reload.lock().unwrap_or_else(std::sync::PoisonError::into_inner) {
                                Some(reload) => {
                                    tracing::info!("SIGHUP: reloading the config and handlers");
                                    let _ = reload.send(Trigger::Config);
                                }
                                None => tracing::info!("SIGHUP ignored: the host is starting, or this run does not reload"),
                            }
                            continue;
                        },
                    }
                    count += 1;
                    if count == 1 {
                        tracing::info!("signal received: finishing messages in flight, then committing (again to exit at once)");
                        shutdown.request_stop();
                    } else {
                        tracing::warn!("second signal: exiting now; the group resumes from its last commit");
                        std::process::exit(130);
                    }
                }
            });
        })
        .expect("spawn the signal thread");
    signals
}

/// RFC 3339 (`2026-11-01T00:00:00Z`, or a date `2026-11-01`), or a time
/// before now (`3d`, `90m`, `1h 30m`), as milliseconds since the epoch.
pub fn parse_time(raw: &str) -> anyhow::Result<i64> {
    let now = std::time::SystemTime::now();
    let when = if let Ok(ago) = humantime::parse_duration(raw) {
        now.checked_sub(ago)
            .with_context(|| format!("`{raw}` reaches before 1970"))?
    } else if let Ok(at) = humantime::parse_rfc3339_weak(raw) {
        at
    } else if let Ok(at) = humantime::parse_rfc3339_weak(&format!("{raw} 00:00:00")) {
        at
    } else {
        anyhow::bail!(
            "`{raw}` is not a time: use RFC 3339 (2026-11-01T12:00:00Z), a date (2026-11-01), or a time ago (3d, 90m)"
        );
    };
    let millis = when
        .duration_since(std::time::UNIX_EPOCH)
        .context("time before 1970")?
        .as_millis();
    Ok(i64::try_from(millis)?)
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn times_parse_as_rfc3339_dates_and_ago() {
        assert_eq!(
            parse_time("2026-11-01T00:00:00Z").unwrap(),
            1_793_491_200_000
        );
        assert_eq!(parse_time("2026-11-01").unwrap(), 1_793_491_200_000);
        let ago = parse_time("90m").unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert!((now - ago - 90 * 60_000).abs() < 5_000);
        let err = parse_time("yesterday").unwrap_err().to_string();
        assert!(err.contains("`yesterday`"), "{err}");
    }
}
