//! Hot swap: handler components and the config file are watched (and SIGHUP
//! or `alerthost reload` ask for the same). A changed handler is read,
//! compiled off the hot path, checked against the world, instantiated and
//! initialised with its parameters; only if all of that succeeds does it
//! replace the running version, atomically, between two messages. A bad file
//! changes nothing but a log line.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use notify::{RecursiveMode, Watcher as _};

use crate::config::{Config, Plan};
use crate::runtime::{LiveHandler, Runtime};
use crate::telemetry::{Metrics, SwapOutcome};
use crate::worker::{Deployed, HandlerSpec};

/// Quiet time after the last change of a file before it is read: an editor
/// or `cp` writing in several steps has finished by then.
const DEBOUNCE: Duration = Duration::from_millis(300);

/// What to reload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// One handler's component file changed.
    Component(usize),
    /// The config file changed, or a reload was asked for (SIGHUP).
    Config,
}

/// Applies reloads to the running handlers.
#[derive(Debug)]
pub struct Reloader {
    runtime: Arc<Runtime>,
    handlers: Arc<Vec<HandlerSpec>>,
    plan: Mutex<Plan>,
    metrics: Metrics,
}

impl Reloader {
    /// A reloader for `handlers`, which were started from `plan`.
    pub fn new(runtime: Arc<Runtime>, handlers: Arc<Vec<HandlerSpec>>, plan: Plan) -> Self {
        Reloader {
            runtime,
            handlers,
            plan: Mutex::new(plan),
            metrics: Metrics::new(),
        }
    }

    /// Count swaps (done and refused) and the running versions in `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    fn plan(&self) -> std::sync::MutexGuard<'_, Plan> {
        self.plan.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Load, check and initialise handler `index` from its component file
    /// with `params`; swap it in if all succeeds and it differs from the
    /// running version. Returns the new version, or `None` if unchanged.
    pub fn reload_handler(
        &self,
        index: usize,
        params: Option<Vec<(String, String)>>,
        limits: Option<crate::runtime::Limits>,
    ) -> anyhow::Result<Option<String>> {
        let name = &self.handlers[index].name;
        let swapped = self.try_swap(index, params, limits);
        match &swapped {
            Ok(Some(version)) => {
                self.metrics.swap(name, SwapOutcome::Done);
                self.metrics.running_version(name, version);
            }
            Ok(None) => {}
            Err(_) => self.metrics.swap(name, SwapOutcome::Refused),
        }
        swapped
    }

    fn try_swap(
        &self,
        index: usize,
        params: Option<Vec<(String, String)>>,
        limits: Option<crate::runtime::Limits>,
    ) -> anyhow::Result<Option<String>> {
        let spec = &self.handlers[index];
        let (component, config_limits) = {
            let plan = self.plan();
            let config = &plan.handlers[index].config;
            (config.component.clone(), config.limits.clone())
        };
        let limits = limits.unwrap_or(config_limits);
        let running = spec.current.load_full();
        let params = params.unwrap_or_else(|| running.params.clone());
        let code = self
            .runtime
            .load_file(&component, &limits)
            .with_context(|| format!("new version of handler `{}` rejected", spec.name))?;
        if code.info().version == running.code.info().version
            && params == running.params
            && limits == *running.code.limits()
        {
            return Ok(None);
        }
        if code.uses_state() && spec.state.is_none() {
            anyhow::bail!(
                "new version {} of handler `{}` rejected: it imports `state`, and the running \
                 version did not, so this host has no state for the handler: restart the host \
                 to give it state",
                code.version(),
                spec.name
            );
        }
        let code = Arc::new(code);
        // A trial instance: `init` must accept the parameters before any
        // message reaches the new version.
        LiveHandler::new(code.clone(), params.clone(), spec.state.clone()).map_err(|failure| {
            anyhow::anyhow!(
                "new version {} of handler `{}` rejected: {failure}",
                code.version(),
                spec.name
            )
        })?;
        let version = code.version().to_owned();
        spec.current.store(Arc::new(Deployed { code, params }));
        tracing::info!(handler = %spec.name, from = %running.code.version(), to = %version, "handler swapped");
        Ok(Some(version))
    }

    /// Re-read the config file: component, parameter and limit changes are
    /// applied as swaps; anything else needs a restart and is reported.
    pub fn reload_config(&self) -> anyhow::Result<()> {
        let path = self.plan().path.clone();
        let new = Config::load(&path)?;
        let restart = restart_needed(&self.plan(), &new);
        if !restart.is_empty() {
            anyhow::bail!(
                "{}: restart needed to apply {}; nothing was applied",
                path.display(),
                restart.join("; ")
            );
        }
        let old_handlers = self.plan().handlers.clone();
        *self.plan() = new.clone();
        for (index, (old, new)) in old_handlers.iter().zip(&new.handlers).enumerate() {
            let params: Vec<(String, String)> = new.config.params.clone().into_iter().collect();
            if let Err(error) =
                self.reload_handler(index, Some(params), Some(new.config.limits.clone()))
            {
                tracing::error!("{error:#}; keeping the running version");
                // Keep the plan in step with what runs.
                self.plan().handlers[index] = old.clone();
            }
        }
        Ok(())
    }

    /// Apply one trigger, logging the outcome.
    pub fn apply(&self, trigger: &Trigger) {
        let result = match trigger {
            Trigger::Component(index) => self.reload_handler(*index, None, None).map(|_| ()),
            Trigger::Config => self.reload_config(),
        };
        if let Err(error) = result {
            tracing::error!("{error:#}; the running version keeps running");
        }
    }

    /// Watch the component files and the config file; apply changes on a
    /// thread of its own. Returns a sender for manual triggers (SIGHUP).
    pub fn watch(self: Arc<Self>) -> anyhow::Result<Sender<Trigger>> {
        let (tx, rx) = channel::<Trigger>();
        // Several handlers may share one component file.
        let mut paths: HashMap<PathBuf, Vec<Trigger>> = HashMap::new();
        {
            let plan = self.plan();
            paths
                .entry(canonical(&plan.path))
                .or_default()
                .push(Trigger::Config);
            for (index, handler) in plan.handlers.iter().enumerate() {
                paths
                    .entry(canonical(&handler.config.component))
                    .or_default()
                    .push(Trigger::Component(index));
            }
        }
        let events = tx.clone();
        let watched = paths.clone();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                if event.kind.is_access() {
                    return;
                }
                for path in &event.paths {
                    for trigger in watched.get(&canonical(path)).into_iter().flatten() {
                        let _ = events.send(trigger.clone());
                    }
                }
            })
            .context("cannot watch handler files")?;
        // Directories, not files: editors and `cp` replace files by rename.
        let mut dirs: Vec<PathBuf> = paths
            .keys()
            .filter_map(|p| p.parent().map(Path::to_owned))
            .collect();
        dirs.sort();
        dirs.dedup();
        for dir in &dirs {
            watcher
                .watch(dir, RecursiveMode::NonRecursive)
                .with_context(|| format!("cannot watch {}", dir.display()))?;
        }
        std::thread::Builder::new()
            .name("alerthost-reload".into())
            .spawn(move || {
                let _watcher = watcher;
                debounce(&rx, |trigger| self.apply(&trigger));
            })
            .context("cannot start the reload thread")?;
        Ok(tx)
    }
}

fn canonical(path: &Path) -> PathBuf {
    // The file may be missing mid-replace; its directory is not.
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => dir
            .canonicalize()
            .map(|d| d.join(name))
            .unwrap_or_else(|_| path.to_owned()),
        _ => path.to_owned(),
    }
}

/// Gather triggers until none has come for [`DEBOUNCE`], then apply each
/// once.
fn debounce(rx: &Receiver<Trigger>, mut apply: impl FnMut(Trigger)) {
    let mut pending: HashMap<Trigger, Instant> = HashMap::new();
    loop {
        let wait = pending
            .values()
            .map(|at| (*at + DEBOUNCE).saturating_duration_since(Instant::now()))
            .min()
            .unwrap_or(Duration::from_secs(3600));
        match rx.recv_timeout(wait) {
            Ok(trigger) => {
                pending.insert(trigger, Instant::now());
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        // Checked after every event too, so a file that keeps changing
        // does not hold back another file's reload.
        let due: Vec<Trigger> = pending
            .iter()
            .filter(|(_, at)| at.elapsed() >= DEBOUNCE)
            .map(|(t, _)| t.clone())
            .collect();
        for trigger in due {
            pending.remove(&trigger);
            apply(trigger);
        }
    }
}

/// What differs between two plans beyond what a swap can apply.
fn restart_needed(old: &Plan, new: &Plan) -> Vec<String> {
    let mut out = Vec::new();
    if old.kafka != new.kafka || old.group_id != new.group_id || old.start != new.start {
        out.push("[source] connection or group".into());
    }
    if old.commit_interval != new.commit_interval {
        out.push("[source] commit_interval_ms".into());
    }
    if old.workers != new.workers
        || old.cache_dir != new.cache_dir
        || old.state_dir != new.state_dir
    {
        out.push("[runtime]".into());
    }
    if old.metrics_listen != new.metrics_listen {
        out.push("[metrics] listen".into());
    }
    let topics = |p: &Plan| {
        p.topics
            .iter()
            .map(|t| t.as_subscription().to_owned())
            .collect::<Vec<_>>()
    };
    if topics(old) != topics(new) {
        out.push("[source] topics".into());
    }
    if format!("{:?}", old.sinks) != format!("{:?}", new.sinks) {
        out.push("[sinks]".into());
    }
    let names = |p: &Plan| {
        p.handlers
            .iter()
            .map(|h| h.config.name.clone())
            .collect::<Vec<_>>()
    };
    if names(old) != names(new) {
        out.push("handlers added, removed or renamed".into());
        return out;
    }
    for (a, b) in old.handlers.iter().zip(&new.handlers) {
        let (a, b) = (&a.config, &b.config);
        if a.component != b.component
            || a.topics != b.topics
            || a.save_to != b.save_to
            || a.forward_to != b.forward_to
            || a.on_error != b.on_error
            || a.dead_letter != b.dead_letter
            || a.retries != b.retries
            || a.state != b.state
        {
            out.push(format!(
                "handler `{}`: component path, topics, sinks, error policy or [handler.state]",
                a.name
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debounce_applies_a_burst_once() {
        let (tx, rx) = channel();
        for _ in 0..10 {
            tx.send(Trigger::Component(0)).unwrap();
        }
        tx.send(Trigger::Config).unwrap();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(DEBOUNCE * 3);
            drop(tx);
        });
        let mut applied = Vec::new();
        debounce(&rx, |t| applied.push(t));
        sender.join().unwrap();
        applied.sort_by_key(|t| format!("{t:?}"));
        assert_eq!(applied, [Trigger::Component(0), Trigger::Config]);
    }
}
