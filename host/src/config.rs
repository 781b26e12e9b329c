//! `alerthost.toml`: serde structs that mirror the file (every field
//! documented, unknown keys refused), then [`Config::load`] validates them
//! into the [`Plan`] the pipeline runs on. Errors name the file and the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::Deserialize;

use crate::runtime::Limits;
use crate::state::StateConfig;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where messages come from.
    pub source: SourceConfig,
    /// Named destinations for saves, forwards and dead letters.
    #[serde(default)]
    pub sinks: BTreeMap<String, SinkConfig>,
    /// The handlers, each with its topics.
    #[serde(default, rename = "handler")]
    pub handlers: Vec<HandlerConfig>,
    /// Host-wide runtime settings.
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// The Prometheus metrics and health listener (off unless `listen` is set).
    #[serde(default)]
    pub metrics: MetricsConfig,
}

/// `[source]`: GCN (`domain` + credentials) or any Kafka (`bootstrap_servers`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Kafka bootstrap servers, `host:port[,host:port]`. Give this or `domain`.
    pub bootstrap_servers: Option<String>,
    /// A GCN domain, e.g. `gcn.nasa.gov`: connects to `kafka.{domain}` with
    /// SASL_SSL + OAUTHBEARER, OIDC client credentials against
    /// `https://auth.{domain}/oauth2/token` (NASA's `gcn-kafka` recipe).
    pub domain: Option<String>,
    /// GCN client id (or the environment variable `GCN_CLIENT_ID`).
    pub client_id: Option<String>,
    /// GCN client secret. Prefer the environment variable `GCN_CLIENT_SECRET`,
    /// which wins over this key; keep secrets out of files.
    pub client_secret: Option<String>,
    /// Topic names and `^regex` patterns to consume.
    pub topics: Vec<String>,
    /// Consumer group. With it, progress is committed and a restart resumes
    /// at the first unhandled message; without it nothing is ever committed.
    pub group_id: Option<String>,
    /// Where to begin when the group has no committed offset (or there is no
    /// group): `earliest` (default) or `latest`.
    #[serde(default)]
    pub start: StartAt,
    /// How often handled offsets are committed, in milliseconds (default 1000).
    /// Offsets are also committed on partition revoke and on shutdown.
    #[serde(default = "default_commit_interval_ms")]
    pub commit_interval_ms: u64,
    /// Raw librdkafka properties, passed through as given (after the GCN
    /// recipe, before `KAFKA_*` environment overrides).
    #[serde(default)]
    pub librdkafka: BTreeMap<String, String>,
    /// Static group membership (`group.instance.id`), so a restarted host
    /// gets its partitions back at once instead of after
    /// `session.timeout.ms`. Default, with a `group_id`:
    /// `alerthost-<host name>-<hash of the config file's path and the group>`.
    /// Give one per host when the host name is not stable (containers); `""`
    /// turns static membership off.
    pub instance_id: Option<String>,
}

fn default_commit_interval_ms() -> u64 {
    1000
}

/// Where to begin reading a partition with no committed offset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// The oldest message the broker still holds.
    #[default]
    Earliest,
    /// Only messages produced from now on.
    Latest,
}

impl StartAt {
    /// The `auto.offset.reset` value.
    pub fn as_str(self) -> &'static str {
        match self {
            StartAt::Earliest => "earliest",
            StartAt::Latest => "latest",
        }
    }
}

/// `[sinks.NAME]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SinkConfig {
    /// Files in a directory, written atomically.
    File {
        /// The directory (created if missing); relative to the config file.
        dir: PathBuf,
    },
    /// A Kafka topic, produced with acks=all and idempotence.
    Kafka {
        /// The topic.
        topic: String,
        /// Another cluster's bootstrap servers; default: the source's cluster
        /// and connection settings.
        bootstrap_servers: Option<String>,
        /// Raw librdkafka producer properties.
        #[serde(default)]
        librdkafka: BTreeMap<String, String>,
    },
    /// JSON lines on standard output.
    Stdout,
}

/// What happens to a message a handler fails on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    /// Write the raw message with the error to the handler's dead-letter sink,
    /// then go on.
    #[default]
    DeadLetter,
    /// Log it, count it, go on.
    Skip,
    /// Try again (up to `retries` times, with backoff), then dead-letter.
    Retry,
    /// Halt the host; nothing is committed past the message.
    Stop,
}

/// `[[handler]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandlerConfig {
    /// A name for logs, metrics and records.
    pub name: String,
    /// The component file; relative to the config file.
    pub component: PathBuf,
    /// Topic names and `^regex` patterns this handler receives; every
    /// message matching one is passed to it.
    pub topics: Vec<String>,
    /// The file sink `save` actions write to.
    pub save_to: Option<String>,
    /// The sinks `forward` actions may name.
    #[serde(default)]
    pub forward_to: Vec<String>,
    /// Parameters passed to the handler's `init`.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Error policy: `dead-letter` (default), `skip`, `retry`, `stop`.
    #[serde(default)]
    pub on_error: OnError,
    /// The sink dead letters go to (a file or kafka sink). Default: a file
    /// sink in `dead-letter/<handler name>` next to the config file.
    pub dead_letter: Option<String>,
    /// Attempts after the first, under `on_error = "retry"` (default 3).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Sandbox limits; every field optional.
    #[serde(default)]
    pub limits: Limits,
    /// State limits and changelog (`[handler.state]`); every field
    /// optional. Used only when the component imports `state`.
    #[serde(default)]
    pub state: StateConfig,
}

fn default_retries() -> u32 {
    3
}

/// `[runtime]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Worker threads running handlers (default: the number of CPUs). A
    /// partition is handled by one worker at a time, so its order is kept.
    pub workers: Option<usize>,
    /// Directory of the compiled-component cache (default as for `--cache-dir`).
    pub cache_dir: Option<PathBuf>,
    /// Directory of the handler state store (default: `state` next to the
    /// config file). Opened only when a handler imports `state`.
    pub state_dir: Option<PathBuf>,
    /// Most MiB of messages in flight (read and not yet durable) before the
    /// workers wait (default 64). Each Kafka sink's producer queue is bounded
    /// to the same size.
    pub max_inflight_mib: Option<u64>,
}

/// `[metrics]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address for `/metrics`, `/healthz` and `/readyz`, e.g.
    /// `"127.0.0.1:9464"` (default: no listener; `--metrics-listen` wins).
    pub listen: Option<String>,
}

/// A topic selector: a name, or a `^regex`.
#[derive(Debug, Clone)]
pub enum TopicSelector {
    /// One topic.
    Name(String),
    /// Every topic whose name matches.
    Pattern(regex_lite::Regex),
}

impl TopicSelector {
    /// A name, or a pattern when `raw` starts with `^`; errors say why `raw`
    /// is neither.
    pub fn parse(raw: &str) -> anyhow::Result<Self> {
        if raw.starts_with('^') {
            let regex = regex_lite::Regex::new(raw)
                .map_err(|e| anyhow::anyhow!("topic pattern `{raw}` is not a valid regex: {e}"))?;
            Ok(TopicSelector::Pattern(regex))
        } else {
            if raw.is_empty()
                || !raw
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            {
                bail!(
                    "topic `{raw}` is not a valid Kafka topic name (letters, digits, `.`, `_`, `-`; start with `^` for a pattern)"
                );
            }
            Ok(TopicSelector::Name(raw.to_owned()))
        }
    }

    /// Whether `topic` is selected.
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            TopicSelector::Name(name) => name == topic,
            TopicSelector::Pattern(regex) => regex.is_match(topic),
        }
    }

    /// As librdkafka takes it in `subscribe`.
    pub fn as_subscription(&self) -> &str {
        match self {
            TopicSelector::Name(name) => name,
            TopicSelector::Pattern(regex) => regex.as_str(),
        }
    }
}

/// The validated configuration the pipeline runs on.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The file it came from.
    pub path: PathBuf,
    /// librdkafka properties of the source consumer (secrets included).
    pub kafka: BTreeMap<String, String>,
    /// The group, if progress is committed.
    pub group_id: Option<String>,
    /// Where to begin without a committed offset.
    pub start: StartAt,
    /// What to subscribe to.
    pub topics: Vec<TopicSelector>,
    /// Commit period.
    pub commit_interval: std::time::Duration,
    /// Sinks by name, paths resolved.
    pub sinks: BTreeMap<String, SinkConfig>,
    /// Handlers, paths resolved, selectors parsed.
    pub handlers: Vec<HandlerPlan>,
    /// Worker threads.
    pub workers: usize,
    /// Compiled-component cache.
    pub cache_dir: Option<PathBuf>,
    /// Handler state store directory.
    pub state_dir: PathBuf,
    /// Most bytes of messages in flight.
    pub max_inflight_bytes: u64,
    /// Where to serve metrics and health, if anywhere.
    pub metrics_listen: Option<String>,
    /// The static member id (`group.instance.id`), if the group uses one.
    pub instance_id: Option<String>,
}

/// One validated handler.
#[derive(Debug, Clone)]
pub struct HandlerPlan {
    /// The handler's settings, paths resolved.
    pub config: HandlerConfig,
    /// Its topics, parsed.
    pub topics: Vec<TopicSelector>,
    /// Its dead-letter sink's name.
    pub dead_letter: String,
}

impl Config {
    /// Read, parse and validate `path`, with the process environment for
    /// secrets and `KAFKA_*` overrides.
    pub fn load(path: &Path) -> anyhow::Result<Plan> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let config: Config = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
        let env: Vec<(String, String)> = std::env::vars().collect();
        config
            .validate(path, &env)
            .with_context(|| format!("invalid config {}", path.display()))
    }

    /// Check every cross-reference and build the [`Plan`]. `env` supplies
    /// secrets and `KAFKA_*` overrides.
    pub fn validate(self, path: &Path, env: &[(String, String)]) -> anyhow::Result<Plan> {
        let base = path.parent().unwrap_or(Path::new("."));
        let getenv = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        let source = &self.source;

        let mut kafka = BTreeMap::new();
        match (&source.bootstrap_servers, &source.domain) {
            (Some(_), Some(_)) => bail!("[source]: give `bootstrap_servers` or `domain`, not both"),
            (None, None) => {
                bail!("[source]: give `domain` (GCN, e.g. \"gcn.nasa.gov\") or `bootstrap_servers`")
            }
            (Some(servers), None) => {
                kafka.insert("bootstrap.servers".to_owned(), servers.clone());
            }
            (None, Some(domain)) => {
                let client_id = getenv("GCN_CLIENT_ID").or_else(|| source.client_id.clone());
                let client_secret =
                    getenv("GCN_CLIENT_SECRET").or_else(|| source.client_secret.clone());
                let (Some(client_id), Some(client_secret)) = (client_id, client_secret) else {
                    bail!(
                        "[source]: `domain` needs client credentials: set `client_id` and the \
                         environment variable GCN_CLIENT_SECRET (or GCN_CLIENT_ID too); get them \
                         at https://{domain}/quickstart"
                    );
                };
                kafka.extend(gcn_recipe(&client_id, &client_secret, domain));
            }
        }
        if source.domain.is_none() && (source.client_id.is_some() || source.client_secret.is_some())
        {
            bail!(
                "[source]: `client_id`/`client_secret` go with `domain`, not `bootstrap_servers`"
            );
        }
        for (key, value) in &source.librdkafka {
            kafka.insert(key.clone(), value.clone());
        }
        kafka.extend(kafka_env_overrides(env));
        // Commits are the host's job: only after every action is durable.
        for owned in ["enable.auto.commit", "group.id", "enable.auto.offset.store"] {
            if source.librdkafka.contains_key(owned) {
                bail!(
                    "[source.librdkafka]: `{owned}` is managed by alerthost (use `group_id`; commits happen after handling)"
                );
            }
        }
        if source.librdkafka.contains_key("group.instance.id") {
            bail!("[source.librdkafka]: set `group.instance.id` with [source] `instance_id`");
        }
        let instance_id = instance_id(source, path)?;
        // `KAFKA_GROUP_INSTANCE_ID` in the environment wins, as every
        // `KAFKA_*` override does.
        if !kafka.contains_key("group.instance.id")
            && let Some(id) = &instance_id
        {
            kafka.insert("group.instance.id".to_owned(), id.clone());
        }
        let instance_id = kafka.get("group.instance.id").cloned();

        if source.topics.is_empty() {
            bail!("[source]: `topics` is empty: name at least one topic or `^pattern`");
        }
        let topics = source
            .topics
            .iter()
            .map(|t| TopicSelector::parse(t).context("[source] topics"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if source.commit_interval_ms == 0 {
            bail!("[source]: `commit_interval_ms` must be greater than 0");
        }

        let mut sinks = BTreeMap::new();
        for (name, sink) in self.sinks {
            let sink = match sink {
                SinkConfig::File { dir } => SinkConfig::File {
                    dir: base.join(dir),
                },
                SinkConfig::Kafka {
                    topic,
                    bootstrap_servers,
                    librdkafka,
                } => {
                    TopicSelector::parse(&topic)
                        .ok()
                        .filter(|t| matches!(t, TopicSelector::Name(_)))
                        .with_context(|| {
                            format!("[sinks.{name}]: `{topic}` is not a topic name")
                        })?;
                    SinkConfig::Kafka {
                        topic,
                        bootstrap_servers,
                        librdkafka,
                    }
                }
                SinkConfig::Stdout => SinkConfig::Stdout,
            };
            sinks.insert(name, sink);
        }

        if self.handlers.is_empty() {
            bail!("no [[handler]]: add at least one handler with `name`, `component` and `topics`");
        }
        let mut handlers = Vec::new();
        for (index, mut handler) in self.handlers.into_iter().enumerate() {
            let at = format!("[[handler]] #{} `{}`", index + 1, handler.name);
            if handler.name.trim().is_empty() {
                bail!("[[handler]] #{}: `name` is empty", index + 1);
            }
            if handlers
                .iter()
                .any(|h: &HandlerPlan| h.config.name == handler.name)
            {
                bail!("{at}: another handler has the same name");
            }
            handler.component = base.join(&handler.component);
            if !handler.component.is_file() {
                bail!(
                    "{at}: component {} does not exist (build it first, or fix `component`)",
                    handler.component.display()
                );
            }
            if handler.topics.is_empty() {
                bail!("{at}: `topics` is empty");
            }
            let selectors = handler
                .topics
                .iter()
                .map(|t| TopicSelector::parse(t).with_context(|| format!("{at}: topics")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            handler
                .limits
                .validate()
                .with_context(|| format!("{at}: limits"))?;
            handler
                .state
                .validate()
                .with_context(|| format!("{at}: [handler.state]"))?;
            // A changelog holds one handler's keys: two handlers sharing one
            // would restore each other's state.
            if let Some(topic) = &handler.state.changelog
                && let Some(other) = handlers
                    .iter()
                    .find(|h: &&HandlerPlan| h.config.state.changelog.as_ref() == Some(topic))
            {
                bail!(
                    "{at}: [handler.state] changelog = \"{topic}\" is the changelog of handler `{}` \
                     already: give each handler a topic of its own",
                    other.config.name
                );
            }
            if let Some(save_to) = &handler.save_to {
                match sinks.get(save_to) {
                    Some(SinkConfig::File { .. }) => {}
                    Some(_) => bail!("{at}: `save_to` = \"{save_to}\" is not a file sink"),
                    None => bail!(
                        "{at}: `save_to` names sink \"{save_to}\", which is not declared in [sinks]"
                    ),
                }
            }
            for sink in &handler.forward_to {
                match sinks.get(sink) {
                    Some(SinkConfig::File { .. }) => bail!(
                        "{at}: `forward_to` lists \"{sink}\", a file sink: forwards go to kafka or stdout sinks (use `save_to` for files)"
                    ),
                    Some(_) => {}
                    None => bail!(
                        "{at}: `forward_to` names sink \"{sink}\", which is not declared in [sinks]"
                    ),
                }
            }
            let dead_letter = match &handler.dead_letter {
                Some(name) => {
                    if !sinks.contains_key(name) {
                        bail!(
                            "{at}: `dead_letter` names sink \"{name}\", which is not declared in [sinks]"
                        );
                    }
                    name.clone()
                }
                None => {
                    let name = format!("dead-letter.{}", handler.name);
                    sinks.entry(name.clone()).or_insert(SinkConfig::File {
                        dir: base.join("dead-letter").join(&handler.name),
                    });
                    name
                }
            };
            handlers.push(HandlerPlan {
                config: handler,
                topics: selectors,
                dead_letter,
            });
        }
        for (selector, raw) in topics.iter().zip(&source.topics) {
            let TopicSelector::Name(topic) = selector else {
                continue;
            };
            if !handlers
                .iter()
                .any(|h| h.topics.iter().any(|s| s.matches(topic)))
            {
                tracing::warn!(topic = %raw, "no handler takes this topic: its messages are committed as dropped");
            }
        }

        if let Some(listen) = &self.metrics.listen {
            check_listen(listen).context("[metrics] listen")?;
        }

        let workers = match self.runtime.workers {
            Some(0) => bail!("[runtime]: `workers` must be at least 1"),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(2, usize::from),
        };
        let max_inflight_mib = match self.runtime.max_inflight_mib {
            Some(0) => bail!("[runtime]: `max_inflight_mib` must be at least 1"),
            Some(n) if n > 1 << 20 => {
                bail!("[runtime]: `max_inflight_mib` is at most 1048576 (1 TiB)")
            }
            Some(n) => n,
            None => 64,
        };
        Ok(Plan {
            path: path.to_owned(),
            max_inflight_bytes: max_inflight_mib << 20,
            kafka,
            group_id: source.group_id.clone(),
            start: source.start,
            topics,
            commit_interval: std::time::Duration::from_millis(source.commit_interval_ms),
            sinks,
            handlers,
            workers,
            cache_dir: self
                .runtime
                .cache_dir
                .map(|d| base.join(d))
                .or_else(crate::runtime::ArtifactCache::default_dir),
            state_dir: base.join(
                self.runtime
                    .state_dir
                    .as_deref()
                    .unwrap_or(Path::new("state")),
            ),
            metrics_listen: self.metrics.listen,
            instance_id,
        })
    }
}

/// `host:port`, with a port number: caught here rather than when the
/// listener starts.
pub fn check_listen(listen: &str) -> anyhow::Result<()> {
    let port = listen
        .rsplit_once(':')
        .map(|(host, port)| (host.trim(), port));
    match port {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => bail!(
            "`{listen}` is not an address to listen on: write host:port, e.g. \"127.0.0.1:9464\" \
             (or \"0.0.0.0:9464\" for every interface)"
        ),
    }
}

/// The static member id for a source with a group: the configured one
/// (checked), or one derived from the host name and the config, so the same
/// host with the same config rejoins as the same member after a restart.
/// `None` without a group, or when `instance_id = ""` turns it off.
fn instance_id(source: &SourceConfig, path: &Path) -> anyhow::Result<Option<String>> {
    let Some(group) = &source.group_id else {
        if source
            .instance_id
            .as_deref()
            .is_some_and(|id| !id.is_empty())
        {
            bail!(
                "[source]: `instance_id` needs a `group_id` (static membership is membership of a group)"
            );
        }
        return Ok(None);
    };
    match source.instance_id.as_deref() {
        Some("") => Ok(None),
        Some(id) => {
            if id.len() > 249
                || id == "."
                || id == ".."
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            {
                bail!(
                    "[source]: `instance_id` = \"{id}\" is not a valid group.instance.id (letters, digits, `.`, `_`, `-`, at most 249)"
                );
            }
            Ok(Some(id.to_owned()))
        }
        None => Ok(Some(derived_instance_id(&host_name(), path, group))),
    }
}

/// The machine's host name, as `uname -n` prints it (empty if unknown).
pub fn host_name() -> String {
    // /proc/sys is hidden in some sandboxes (systemd's ProcSubset=pid);
    // /etc/hostname then holds the same name.
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .map(|name| name.trim().to_owned())
        .unwrap_or_default()
}

/// `alerthost-<host>-<first 8 hex digits of SHA-256 of the config file's
/// absolute path and the group>`. The hash tells apart several hosts on one
/// machine that read different configs or groups.
pub fn derived_instance_id(host: &str, config: &Path, group: &str) -> String {
    use sha2::Digest as _;
    let config = std::path::absolute(config).unwrap_or_else(|_| config.to_owned());
    let mut hash = sha2::Sha256::new();
    hash.update(config.as_os_str().as_encoded_bytes());
    hash.update([0]);
    hash.update(group.as_bytes());
    let hash = hex::encode(&hash.finalize()[..4]);
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(200)
        .collect();
    let host = if host.is_empty() { "unknown" } else { &host };
    format!("alerthost-{host}-{hash}")
}

/// NASA's GCN connection recipe, as the `gcn-kafka` crate sets it.
fn gcn_recipe(client_id: &str, client_secret: &str, domain: &str) -> BTreeMap<String, String> {
    use gcn_kafka::GcnClientConfig as _;
    let mut config = rdkafka::ClientConfig::new();
    // A placeholder so the recipe does not invent a random group; alerthost
    // sets the real one.
    config.set("group.id", "alerthost");
    config.set_gcn(client_id, client_secret, Some(domain));
    // `config_map` masks secrets, so values are read back one by one.
    config
        .config_map()
        .keys()
        .filter(|key| **key != "group.id")
        .filter_map(|key| Some((key.to_string(), config.get(key)?.to_owned())))
        .collect()
}

/// `KAFKA_*` environment variables as librdkafka properties, the way
/// `gcn_kafka.config_from_env` maps them: drop the prefix, lowercase, `___`
/// becomes `_`, `__` becomes `-`, `_` becomes `.`
/// (`KAFKA_BOOTSTRAP_SERVERS` → `bootstrap.servers`).
pub fn kafka_env_overrides(env: &[(String, String)]) -> Vec<(String, String)> {
    env.iter()
        .filter_map(|(key, value)| {
            let rest = key.strip_prefix("KAFKA_")?;
            if rest.is_empty() {
                return None;
            }
            let key = rest
                .to_lowercase()
                .replace("___", "\0")
                .replace("__", "-")
                .replace('_', ".")
                .replace('\0', "_");
            Some((key, value.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests;
