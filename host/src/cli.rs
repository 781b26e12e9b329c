//! Command-line arguments. Every limit's default is printed by `--help`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::runtime::Limits;

/// Exit code when every message was handled.
pub const EXIT_OK: u8 = 0;
/// Exit code when a handler failed on some message.
pub const EXIT_HANDLER_FAILED: u8 = 1;
/// Exit code for usage, configuration and load errors.
pub const EXIT_USAGE: u8 = 2;

/// Consume alerts from Kafka and run sandboxed WebAssembly handlers on every message.
#[derive(Debug, Parser)]
#[command(name = "alerthost", version, propagate_version = true)]
pub struct Cli {
    /// Options for every command.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options for every command.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Log line format on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info` or `alerthost=debug` (the ALERTHOST_LOG
    /// environment variable is used when this is not given).
    #[arg(long, global = true, env = "ALERTHOST_LOG", default_value = "info")]
    pub log: String,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a handler over message files, with no Kafka: one JSON line per file
    /// on stdout. Exit 0 when every message was handled, 1 when a handler
    /// failed on any, 2 for usage or load errors.
    Test(TestArgs),
    /// Check that a component is a handler this host can run, and describe it.
    Check(CheckArgs),
    /// Consume from Kafka and run the configured handlers on every message.
    /// SIGINT/SIGTERM finish the messages in flight, commit, and exit 0.
    Run(RunArgs),
    /// Run the example handlers on the sample GCN alerts through the whole
    /// pipeline, on an in-process Kafka: no broker, no credentials.
    Demo(DemoArgs),
    /// Ask a running host to reload its config and handlers (SIGHUP). The
    /// host also reloads by itself when a watched file changes.
    Reload(ReloadArgs),
    /// Create a handler project in Rust, Python or JavaScript that builds
    /// with one command and passes its own test.
    New(crate::commands::new::NewArgs),
    /// List what the configured credentials can read: topics, partitions,
    /// earliest and latest offsets, the group's committed offsets and lag,
    /// and which handlers take each topic. A table on a terminal, JSON
    /// otherwise.
    Topics(TopicsArgs),
}

/// `alerthost topics`.
#[derive(Debug, Args)]
pub struct TopicsArgs {
    /// The configuration file (its `[source]` says where and how to connect).
    #[arg(long, short = 'c', default_value = "alerthost.toml")]
    pub config: PathBuf,
    /// Only topics with this name, or matching this `^regex`.
    pub pattern: Option<String>,
    /// Output format (default: text on a terminal, json otherwise).
    #[arg(long, value_enum)]
    pub format: Option<OutputFormat>,
}

/// How a listing is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// An aligned table.
    Text,
    /// One JSON document.
    Json,
}

/// `alerthost demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory holding save_all.wasm, gbm_subthreshold.wasm and sky_region.wasm.
    #[arg(long, default_value = "examples/target/wasm32-wasip2/release")]
    pub handlers: PathBuf,
    /// Where saved alerts and the demo's config go.
    #[arg(long, default_value = "alerthost-demo")]
    pub out: PathBuf,
}

/// `alerthost run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The configuration file.
    #[arg(long, short = 'c', default_value = "alerthost.toml")]
    pub config: PathBuf,
    /// Read from the first message at or after this time, on every partition:
    /// RFC 3339 (2026-11-01T12:00:00Z), a date (2026-11-01) or a time ago (3d,
    /// 90m). Nothing is committed in a time-range run.
    #[arg(long)]
    pub since: Option<String>,
    /// Stop each partition at its first message at or after this time (same
    /// forms as --since); the run exits 0 with a summary when all are done.
    #[arg(long)]
    pub until: Option<String>,
    /// For this run, start every partition at its earliest or latest offset
    /// instead of the group's committed offset.
    #[arg(long, value_enum)]
    pub reset: Option<crate::config::StartAt>,
    /// Validate the config, load every handler and run its init, then exit
    /// without consuming.
    #[arg(long)]
    pub dry_run: bool,
    /// Write the process id here (for `alerthost reload --pid-file`).
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Serve /metrics, /healthz and /readyz on this address (host:port),
    /// instead of the config's `[metrics] listen`. Off unless one is given.
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_listen: Option<String>,
}

/// `alerthost reload`.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ReloadArgs {
    /// The pid file a running host wrote (`alerthost run --pid-file`).
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// The process id of a running host.
    #[arg(long)]
    pub pid: Option<u32>,
}

/// Options that shape the sandbox of a handler.
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Linear memory per instance, in MiB.
    #[arg(long, default_value_t = Limits::default().memory_mib)]
    pub memory_mib: u64,
    /// Wall time per message, in milliseconds.
    #[arg(long, default_value_t = Limits::default().timeout_ms)]
    pub timeout_ms: u64,
    /// Fuel per message (a deterministic CPU budget); off unless given.
    #[arg(long)]
    pub fuel: Option<u64>,
    /// Actions one message may produce.
    #[arg(long, default_value_t = Limits::default().max_actions)]
    pub max_actions: usize,
    /// Bytes per action (value, key and headers), in KiB.
    #[arg(long, default_value_t = Limits::default().max_action_kib)]
    pub max_action_kib: usize,
    /// Log lines per message (log import and stdout/stderr together).
    #[arg(long, default_value_t = Limits::default().max_log_lines)]
    pub max_log_lines: u32,
    /// Bytes per log line.
    #[arg(long, default_value_t = Limits::default().max_log_line_bytes)]
    pub max_log_line_bytes: usize,
    /// Largest component accepted, in MiB.
    #[arg(long, default_value_t = Limits::default().max_component_mib)]
    pub max_component_mib: u64,
}

impl LimitArgs {
    /// The limits these options describe.
    pub fn limits(&self) -> Limits {
        Limits {
            memory_mib: self.memory_mib,
            timeout_ms: self.timeout_ms,
            fuel: self.fuel,
            max_actions: self.max_actions,
            max_action_kib: self.max_action_kib,
            max_log_lines: self.max_log_lines,
            max_log_line_bytes: self.max_log_line_bytes,
            max_component_mib: self.max_component_mib,
        }
    }
}

/// Where compiled components are cached.
#[derive(Debug, Clone, Args)]
pub struct CacheArgs {
    /// Directory of the compiled-component cache (default:
    /// $ALERTHOST_CACHE_DIR, else $XDG_CACHE_HOME/alerthost/components, else
    /// ~/.cache/alerthost/components).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Compile every time; do not read or write the cache.
    #[arg(long, conflicts_with = "cache_dir")]
    pub no_cache: bool,
}

impl CacheArgs {
    /// The cache directory to use, if any.
    pub fn dir(&self) -> Option<PathBuf> {
        if self.no_cache {
            return None;
        }
        self.cache_dir
            .clone()
            .or_else(crate::runtime::ArtifactCache::default_dir)
    }
}

/// `alerthost test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// The handler component (.wasm).
    pub handler: PathBuf,
    /// Message files, or directories of them (read recursively, in name
    /// order; hidden entries, named with a leading `.`, are skipped).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// A parameter for the handler's init, as KEY=VALUE (repeatable).
    #[arg(long = "param", short = 'p', value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Topic the messages appear to come from.
    #[arg(long, default_value = "alerthost.test")]
    pub topic: String,
    /// Write saves into this directory through the real file sink. Without it,
    /// saves are reported with the name they would get but not written.
    #[arg(long)]
    pub save_dir: Option<PathBuf>,
    /// After the JSON lines, print a table on stderr: messages per decision
    /// and time per message (p50, p99, max).
    #[arg(long)]
    pub summary: bool,
    /// Keep the handler's state in this directory: it is persisted after
    /// each file, so it carries across the files of a run and across runs
    /// with the same directory. Without it, a fresh state is shared by the
    /// files of this run only. The state belongs to the handler's name: the
    /// component file's name without `.wasm`.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Sandbox limits.
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Compiled-component cache.
    #[command(flatten)]
    pub cache: CacheArgs,
}

/// `alerthost check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The handler component (.wasm).
    pub handler: PathBuf,
    /// Print the description as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Compiled-component cache.
    #[command(flatten)]
    pub cache: CacheArgs,
}

fn parse_param(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("`{raw}` is not KEY=VALUE")),
    }
}

/// Send logs to standard error in the chosen format.
pub fn init_logging(args: &GlobalArgs) {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log).unwrap_or_else(|error| {
        eprintln!(
            "warning: log filter `{}` is not valid ({error}); using `info`",
            args.log
        );
        tracing_subscriber::EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }

    #[test]
    fn params_need_a_key_and_keep_equals_in_values() {
        assert_eq!(parse_param("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_param("novalue").is_err());
        assert!(parse_param("=x").is_err());
    }
}
