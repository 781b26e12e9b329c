//! The one place the host is wired: sinks and the router are built from
//! the validated config, workers start with an instance of every handler,
//! and the source hands each assigned partition to a worker. Data flows one
//! way (source → router → worker → sinks); completion flows back only
//! through the ack tokens to the commit tracks the source commits from.
//!
//! Stopping: a signal, the end of a time range or a fatal error stops the
//! workers after the message each is on; in-flight actions get until the
//! shutdown deadline to complete; what is done is committed and what is not
//! is named in the log and handled again after a restart.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::commit::InflightBudget;
use crate::config::{Plan, SinkConfig};
use crate::router::Router;
use crate::shutdown::{Fatal, Shutdown};
use crate::sink::kafka::connection_properties;
use crate::sink::{FileSink, KafkaSink, Sink, StdoutSink};
use crate::source::{LaneTaker, Source, SourceOptions};
use crate::stats::Stats;
use crate::worker::{WorkerContext, Workers};

pub use crate::worker::{Deployed, HandlerSet, HandlerSpec};

/// A pipeline built and ready to consume: sinks open, workers started.
pub struct Pipeline {
    sinks: Arc<BTreeMap<String, Sink>>,
    workers: Workers,
    taker: LaneTaker,
    shutdown: Arc<Shutdown>,
    stats: Arc<Stats>,
    budget: Arc<InflightBudget>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("sinks", &self.sinks)
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// Open the sinks of `plan`, build the router and start the workers
    /// (each runs every handler's `init` now).
    pub fn build(
        plan: &Plan,
        handlers: Arc<Vec<HandlerSpec>>,
        shutdown: Arc<Shutdown>,
        stats: Arc<Stats>,
    ) -> anyhow::Result<Self> {
        let budget = Arc::new(InflightBudget::new(plan.max_inflight_bytes));
        stats.metrics.watch_in_flight(Arc::clone(&budget));
        let sinks = Arc::new(build_sinks(plan, &shutdown, &stats)?);
        let router = Arc::new(Router::new(
            handlers.iter().map(|h| h.topics.clone()).collect(),
        ));
        let (workers, taker) = Workers::start(
            plan.workers,
            &WorkerContext {
                handlers,
                sinks: Arc::clone(&sinks),
                router,
                shutdown: Arc::clone(&shutdown),
                stats: Arc::clone(&stats),
                budget: Arc::clone(&budget),
            },
        )?;
        Ok(Pipeline {
            sinks,
            workers,
            taker,
            shutdown,
            stats,
            budget,
        })
    }

    /// How many sinks are open.
    pub fn sink_count(&self) -> usize {
        self.sinks.len()
    }

    /// Stop without consuming anything (a dry run).
    pub fn close(self) {
        self.workers.finish();
    }

    /// Connect the source, then consume until a stop, the end of the range
    /// or a fatal error; `connected` runs once the source is up. Returns the
    /// fatal error, if the host halted on one.
    pub fn run(self, options: SourceOptions, connected: impl FnOnce()) -> anyhow::Result<()> {
        let Pipeline {
            sinks,
            workers,
            taker,
            shutdown,
            stats,
            budget,
        } = self;
        let mut source = match Source::connect(
            options,
            Arc::clone(&shutdown),
            Arc::clone(&stats),
            budget,
            taker,
        ) {
            Ok(source) => source,
            Err(error) => {
                shutdown.request_stop();
                workers.finish();
                return Err(error);
            }
        };
        connected();
        source.run();
        if !shutdown.stopping() {
            // The range is read completely.
            shutdown.request_stop();
        }
        stats.metrics.readiness().stopping();
        tracing::info!("stopping: finishing messages in flight");
        workers.finish();
        source.finish();
        let deadline = shutdown
            .deadline()
            .unwrap_or_else(|| Instant::now() + crate::shutdown::SHUTDOWN_BUDGET);
        for sink in sinks.values() {
            if let Sink::Kafka(sink) = sink {
                let left = deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_secs(1));
                if let Err(error) = sink.flush(left) {
                    tracing::warn!("{error:#}");
                }
            }
        }
        drop(sinks);
        tracing::info!("{}", stats.summary());
        match shutdown.fatal() {
            Some(fatal) => Err(anyhow::Error::new(fatal.clone())),
            None => Ok(()),
        }
    }
}

/// Open every sink of `plan`.
fn build_sinks(
    plan: &Plan,
    shutdown: &Arc<Shutdown>,
    stats: &Arc<Stats>,
) -> anyhow::Result<BTreeMap<String, Sink>> {
    let mut sinks = BTreeMap::new();
    for (name, config) in &plan.sinks {
        let sink = match config {
            SinkConfig::File { dir } => Sink::File(
                FileSink::start(name, dir, Arc::clone(stats))
                    .with_context(|| format!("sink `{name}`"))?,
            ),
            SinkConfig::Kafka {
                topic,
                bootstrap_servers,
                librdkafka,
            } => {
                let mut properties = match bootstrap_servers {
                    Some(servers) => {
                        BTreeMap::from([("bootstrap.servers".to_owned(), servers.clone())])
                    }
                    None => connection_properties(&plan.kafka),
                };
                properties.extend(librdkafka.clone());
                Sink::Kafka(KafkaSink::new(
                    name,
                    topic,
                    &properties,
                    plan.max_inflight_bytes / 1024,
                    Arc::clone(shutdown),
                    stats.metrics.clone(),
                )?)
            }
            SinkConfig::Stdout => Sink::Stdout(StdoutSink::new(name)),
        };
        sinks.insert(name.clone(), sink);
    }
    Ok(sinks)
}

/// The fatal error behind `error`, if it is one.
pub fn fatal_of(error: &anyhow::Error) -> Option<&Fatal> {
    error.downcast_ref::<Fatal>()
}
