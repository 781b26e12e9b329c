//! The handler runtime: loads components, checks them against the
//! `alerthost:handler` world, and runs them in sandboxed stores with limits.
//!
//! One [`Runtime`] owns the wasmtime `Engine`, the `Linker` (the handler world's
//! `log` import plus WASI with no files, network or environment), an epoch
//! ticker thread for wall-time limits and the compiled-artifact cache.
//!
//! What bounds a hostile handler, and where:
//! - time: an epoch deadline per call stops guest code; the guest's clock
//!   ([`clock`]) ends every wait in a host call at the same deadline, in
//!   `init` (10 s) as in `handle` (`limits.timeout_ms`);
//! - memory: one limit for all memories and tables of an instance, and caps
//!   on how many memories, tables and core instances it may have
//!   ([`limits`]); multi-memory is on (the component model's adapters use
//!   it), so the caps count every memory;
//! - data handed to the host: wasmtime's hostcall fuel bounds what one call
//!   may lift out of the guest, before the host allocates it; actions are
//!   then checked against their own caps, and failure texts are cut to
//!   [`MAX_FAILURE_TEXT_BYTES`] with control characters escaped;
//! - state: each `state` call is checked against `[handler.state]` and
//!   buffered per call ([`crate::state`]); a call over a limit stops the
//!   guest;
//! - loading: the file is read with a bound (only regular files), imports
//!   are checked before anything is compiled, compilation runs in a child
//!   process within `limits.max_compile_ms` and `limits.max_compile_mib`
//!   ([`compile`]), and cached native code is used only from a private
//!   directory and after its MAC verifies ([`cache`]).

mod cache;
mod clock;
mod compile;
mod guest_log;
mod instance;
mod limits;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker, types::ComponentItem};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use cache::ArtifactCache;
pub use compile::{COMPILE_COMMAND, COMPILE_NICE, Compiler, compile_child};
pub use guest_log::{LogLine, LogSource, level_str};
pub use instance::{
    CallReport, FailureKind, HandlerFailure, HandlerInstance, INIT_TIMEOUT, LiveHandler,
    MAX_FAILURE_TEXT_BYTES, MAX_FORWARD_HEADERS, action_bytes,
};
pub use limits::{Limits, MAX_CORE_INSTANCES, MAX_MEMORIES, MAX_TABLES};

use crate::bindings::{self, OLDER_WIT_VERSIONS, WIT_PACKAGE, WIT_VERSION};
use instance::HostState;

/// Interval of the epoch ticker: a call over its time limit is stopped within
/// one tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// How the engine is built. One engine serves every handler of a host.
#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    /// Meter fuel, so handlers may set a per-message fuel budget. Costs a
    /// little speed for every handler, so it is off unless a handler asks.
    pub fuel: bool,
    /// Use wasmtime's pooling instance allocator: faster fresh instances,
    /// fixed up-front reservations.
    pub pooling: bool,
    /// Where compiled components are cached; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// Where components are compiled: in a bounded child process of the
    /// `alerthost` executable, or (the default, for embedders without one)
    /// in this process with no bound.
    pub compiler: Compiler,
}

/// The engine, the linker and the cache shared by all handlers.
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<HostState>>,
    cache: Option<ArtifactCache>,
    fuel: bool,
    compiler: Compiler,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("cache", &self.cache)
            .field("fuel", &self.fuel)
            .field("compiler", &self.compiler)
            .finish_non_exhaustive()
    }
}

/// What a component is, as found when it was loaded.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ComponentInfo {
    /// Where it was read from.
    pub path: Option<PathBuf>,
    /// Size of the component file in bytes.
    pub size: u64,
    /// SHA-256 of the file: the handler version named in logs and records.
    pub version: String,
    /// The `alerthost:handler` version it was built against.
    pub interface_version: String,
    /// Whether it imports the `state` interface (and so gets state).
    pub uses_state: bool,
    /// Every import, by name.
    pub imports: Vec<String>,
    /// Every export, by name.
    pub exports: Vec<String>,
    /// Time to compile, or to load from the cache.
    #[serde(serialize_with = "micros")]
    pub load_time: Duration,
    /// Whether the compiled code came from the artifact cache.
    pub from_cache: bool,
}

fn micros<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u128(d.as_micros())
}

/// A loaded, checked and linked handler version, ready to instantiate.
pub struct HandlerCode {
    pre: bindings::HandlerPre<HostState>,
    info: ComponentInfo,
    limits: Limits,
    fuel: bool,
}

impl std::fmt::Debug for HandlerCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerCode")
            .field("info", &self.info)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl HandlerCode {
    /// What was found when loading.
    pub fn info(&self) -> &ComponentInfo {
        &self.info
    }

    /// The version: the first 12 hex digits of the file's SHA-256.
    pub fn version(&self) -> &str {
        &self.info.version[..12]
    }

    /// The limits instances of this version run under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether it imports the `state` interface.
    pub fn uses_state(&self) -> bool {
        self.info.uses_state
    }
}

/// Interfaces a handler may import besides the world's own. Filesystem is
/// linked with no preopened directory, so a guest sees an empty filesystem.
/// Sockets are linked because language runtimes (CPython built by
/// componentize-py) import them whether or not a handler uses them; every
/// socket operation is denied (no TCP, no UDP, no name lookup, no address
/// passes the check). Anything else (`wasi:http`, ...) makes the component
/// refused at load.
const ALLOWED_WASI: &[&str] = &[
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
    "wasi:sockets/",
];

impl Runtime {
    /// Build the engine, the linker and the epoch ticker.
    pub fn new(options: &RuntimeOptions) -> anyhow::Result<Self> {
        let mut config = compile::engine_config(options.fuel);
        if options.pooling {
            // Per-component caps as in the store limiter, so one component
            // cannot take the engine-wide pool from the others.
            let mut pool = PoolingAllocationConfig::default();
            pool.total_component_instances(256)
                .total_core_instances(1024)
                .total_memories(512)
                .total_tables(1024)
                .max_core_instances_per_component(MAX_CORE_INSTANCES as u32)
                .max_memories_per_component(MAX_MEMORIES as u32)
                .max_tables_per_component(MAX_TABLES as u32)
                .max_memory_size(4 << 30);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&config).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        start_epoch_ticker(&engine);

        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| anyhow::anyhow!("cannot link WASI: {e:?}"))?;
        // The guest's monotonic clock is ours: no wait outlasts the call.
        linker.allow_shadowing(true);
        wasmtime_wasi::p2::bindings::clocks::monotonic_clock::add_to_linker::<_, clock::HasClock>(
            &mut linker,
            HostState::clock,
        )
        .map_err(|e| anyhow::anyhow!("cannot link the guest clock: {e:?}"))?;
        linker.allow_shadowing(false);
        bindings::Handler::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(|e| anyhow::anyhow!("cannot link the handler world: {e:?}"))?;

        // Without a usable cache every start compiles: slower, never fatal.
        let cache =
            options
                .cache_dir
                .as_ref()
                .and_then(|dir| match ArtifactCache::open(dir, &engine) {
                    Ok(cache) => Some(cache),
                    Err(error) => {
                        tracing::warn!(
                            "{error:#}; compiling handlers without the cache (slower starts)"
                        );
                        None
                    }
                });
        Ok(Runtime {
            engine,
            linker: Arc::new(linker),
            cache,
            fuel: options.fuel,
            compiler: options.compiler.clone(),
        })
    }

    /// Whether this engine meters fuel.
    pub fn fuel(&self) -> bool {
        self.fuel
    }

    /// Read, check, compile (or load from the cache) and link the component
    /// at `path`. Every error names the file and what is wrong with it.
    pub fn load_file(&self, path: &Path, limits: &Limits) -> anyhow::Result<HandlerCode> {
        let bytes = read_component(path, limits.max_component_bytes(), limits.max_component_mib)?;
        let mut code = self
            .load_bytes(&bytes, limits)
            .with_context(|| format!("{} is not a usable handler", path.display()))?;
        code.info.path = Some(path.to_owned());
        Ok(code)
    }

    /// Check, compile and link a component from its bytes.
    pub fn load_bytes(&self, bytes: &[u8], limits: &Limits) -> anyhow::Result<HandlerCode> {
        limits.validate()?;
        if limits.fuel.is_some() && !self.fuel {
            bail!("a fuel limit is set but this runtime was built without fuel metering");
        }
        if bytes.len() as u64 > limits.max_component_bytes() {
            bail!(
                "the component is {} bytes, over the {} MiB accepted (limits.max_component_mib)",
                bytes.len(),
                limits.max_component_mib
            );
        }
        check_header(bytes)?;
        // Refuse what the host will not link before spending time (and
        // cache space) on compiling it.
        check_imports(&component_imports(bytes)?)?;
        let version = hex::encode(Sha256::digest(bytes));

        let started = Instant::now();
        let cached = self
            .cache
            .as_ref()
            .and_then(|cache| cache.get(&self.engine, &version));
        let from_cache = cached.is_some();
        let (component, artifact) = match cached {
            Some(component) => (component, None),
            None => self.compile(bytes, limits)?,
        };
        let load_time = started.elapsed();

        let world = check_world(&self.engine, &component)?;
        let instance_pre = self.linker.instantiate_pre(&component).map_err(|e| {
            anyhow::anyhow!("its imports do not match what alerthost provides: {e:#}")
        })?;
        let pre = bindings::HandlerPre::new(instance_pre).map_err(|e| {
            anyhow::anyhow!("its exports do not match the alerthost:handler world: {e:#}")
        })?;
        // Only a component the host accepts is kept.
        if !from_cache && let Some(cache) = &self.cache {
            match artifact.map_or_else(|| component.serialize(), Ok) {
                Ok(artifact) => cache.put(&version, &artifact),
                Err(error) => {
                    tracing::warn!(%error, "cannot serialize a compiled component for the cache");
                }
            }
        }
        Ok(HandlerCode {
            pre,
            info: ComponentInfo {
                path: None,
                size: bytes.len() as u64,
                version,
                interface_version: world.interface_version,
                uses_state: world.uses_state,
                imports: world.imports,
                exports: world.exports,
                load_time,
                from_cache,
            },
            limits: limits.clone(),
            fuel: self.fuel,
        })
    }
}

impl Runtime {
    /// Compile `bytes` with this runtime's compiler: the component, and its
    /// serialized artifact when the compiler produced one (for the cache).
    fn compile(
        &self,
        bytes: &[u8],
        limits: &Limits,
    ) -> anyhow::Result<(Component, Option<Vec<u8>>)> {
        match &self.compiler {
            Compiler::InProcess => {
                let component = Component::new(&self.engine, bytes).map_err(|e| {
                    anyhow::anyhow!("it is truncated or not a valid component: {e:#}")
                })?;
                Ok((component, None))
            }
            Compiler::Process(exe) => {
                let artifact = compile::compile_in_child(exe, bytes, self.fuel, limits)?;
                // SAFETY: `deserialize` maps native code without checking
                // it, so its input must come from a wasmtime compiler we
                // trust. These bytes do: the child is this same alerthost
                // build (by default `/proc/self/exe`), started by this
                // process, and its stdout is a pipe only the two of them
                // hold; it ran wasmtime's own compiler on the component, as
                // this process would have. The component can shape the
                // artifact only through that compiler, which is the same
                // trust as compiling in-process, with the cost bounded.
                // wasmtime still checks the header and that the artifact was
                // built for this engine's settings ([`compile::engine_config`]).
                #[allow(unsafe_code)]
                let component = unsafe { Component::deserialize(&self.engine, &artifact) }
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "the compiler process ({}) gave an artifact this engine cannot load \
                             (is it the same alerthost build?): {e:#}",
                            exe.display()
                        )
                    })?;
                Ok((component, Some(artifact)))
            }
        }
    }
}

/// Read a component file with a bound: only a regular file (a FIFO, a
/// device such as `/dev/zero`, or a symlink to one is refused without
/// reading it), and never more than `max` bytes.
fn read_component(path: &Path, max: u64, max_mib: u64) -> anyhow::Result<Vec<u8>> {
    let cannot_read = || format!("cannot read handler component {}", path.display());
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        // Opening a FIFO for reading would wait for a writer.
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).with_context(cannot_read)?;
    let meta = file.metadata().with_context(cannot_read)?;
    if meta.is_dir() {
        bail!(
            "{} is a directory, not a handler component (.wasm file)",
            path.display()
        );
    }
    if !meta.is_file() {
        bail!(
            "{} is not a regular file (a pipe, socket or device), so it is not read as a handler component",
            path.display()
        );
    }
    let too_big = |size: u64| {
        anyhow::anyhow!(
            "{} is {size} bytes, over the {max_mib} MiB accepted for a component (limits.max_component_mib)",
            path.display(),
        )
    };
    if meta.len() > max {
        return Err(too_big(meta.len()));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .with_context(cannot_read)?;
    if bytes.len() as u64 > max {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

/// The names a component imports at its top level, read with wasmparser
/// without compiling anything.
fn component_imports(bytes: &[u8]) -> anyhow::Result<Vec<String>> {
    use wasmparser::{Parser, Payload};
    let mut depth = 0usize;
    let mut names = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload
            .map_err(|e| anyhow::anyhow!("it is truncated or not a valid component: {e}"))?;
        match payload {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    let import = import.map_err(|e| {
                        anyhow::anyhow!("it is truncated or not a valid component: {e}")
                    })?;
                    // Type imports (a world's `use`) give the guest nothing.
                    if !matches!(import.ty, wasmparser::ComponentTypeRef::Type(_)) {
                        names.push(import.name.name.to_owned());
                    }
                }
            }
            _ => {}
        }
    }
    Ok(names)
}

/// The engine's epoch advances every [`EPOCH_TICK`] on a thread of its own,
/// which ends once the engine is dropped.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("alerthost-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawn the epoch ticker thread");
}

/// Tell apart "not wasm", "a core module" and "a component" from the header,
/// so the error says what to do.
fn check_header(bytes: &[u8]) -> anyhow::Result<()> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 || !bytes.starts_with(MAGIC) {
        if bytes.starts_with(MAGIC) {
            bail!(
                "it is truncated: {} bytes, not even a WebAssembly header",
                bytes.len()
            );
        }
        bail!("it is not a WebAssembly file (it does not start with \\0asm)");
    }
    match bytes[4..8] {
        [0x0d, 0x00, 0x01, 0x00] => Ok(()),
        [0x01, 0x00, 0x00, 0x00] => bail!(
            "it is a core WebAssembly module, not a component: build it for the \
             wasm32-wasip2 target (or wrap it with `wasm-tools component new`)"
        ),
        _ => bail!(
            "it has an unknown WebAssembly version {:02x?}",
            &bytes[4..8]
        ),
    }
}

struct World {
    interface_version: String,
    uses_state: bool,
    imports: Vec<String>,
    exports: Vec<String>,
}

/// Compare a component's imports and exports with the handler world; the
/// error names what is missing or extra.
fn check_world(engine: &Engine, component: &Component) -> anyhow::Result<World> {
    let ty = component.component_type();
    let imports: Vec<String> = ty
        .imports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    let exports: Vec<(String, bool)> = ty
        .exports(engine)
        .map(|(name, item)| {
            (
                name.to_owned(),
                matches!(item.ty, ComponentItem::ComponentFunc(_)),
            )
        })
        .collect();

    let world = format!("{WIT_PACKAGE}/handler@{WIT_VERSION}");
    let interface_version = check_imports(&imports)?;
    let state_import = format!("{WIT_PACKAGE}/state@{WIT_VERSION}");
    let uses_state = imports.contains(&state_import);

    let missing: Vec<&str> = ["init", "handle"]
        .into_iter()
        .filter(|want| !exports.iter().any(|(name, func)| name == want && *func))
        .collect();
    if !missing.is_empty() {
        bail!(
            "it is not a component of the {world} world: it does not export {} (the world exports `init` and `handle`)",
            quoted(&missing)
        );
    }
    // Extra exports give the guest nothing (the host never calls them);
    // some toolchains add their own. `alerthost check` lists them.
    Ok(World {
        interface_version: interface_version.unwrap_or_else(|| WIT_VERSION.to_owned()),
        uses_state,
        imports,
        exports: exports.into_iter().map(|(name, _)| name).collect(),
    })
}

/// Refuse imports the host does not provide; the interface version the
/// component was built against, if it names one.
fn check_imports(imports: &[String]) -> anyhow::Result<Option<String>> {
    let world = format!("{WIT_PACKAGE}/handler@{WIT_VERSION}");
    let mut interface_version = None;
    let mut refused = Vec::new();
    for name in imports {
        if name == "log" || *name == format!("{WIT_PACKAGE}/state@{WIT_VERSION}") {
            continue;
        }
        if let Some(version) = name
            .strip_prefix(WIT_PACKAGE)
            .and_then(|rest| rest.strip_prefix("/types@"))
        {
            interface_version = Some(version.to_owned());
            continue;
        }
        if ALLOWED_WASI.iter().any(|prefix| name.starts_with(prefix)) {
            continue;
        }
        refused.push(name.as_str());
    }
    if let Some(version) = &interface_version
        && version != WIT_VERSION
        && !OLDER_WIT_VERSIONS.contains(&version.as_str())
    {
        bail!(
            "it was built against {WIT_PACKAGE}@{version}; this host runs \
             {WIT_PACKAGE}@{WIT_VERSION} (and {}): rebuild it with a matching SDK",
            OLDER_WIT_VERSIONS.join(", ")
        );
    }
    if !refused.is_empty() {
        bail!(
            "it imports {}, which alerthost does not provide: handlers get no outside access; the {world} world imports only `log` and `state` (and WASI \
             cli, io, clocks, random, an empty filesystem and sockets that refuse every use)",
            quoted(&refused)
        );
    }
    Ok(interface_version)
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_check_says_what_the_file_is() {
        let err = |b: &[u8]| check_header(b).unwrap_err().to_string();
        assert!(err(b"<?xml version").contains("not a WebAssembly file"));
        assert!(err(b"\0asm\x01\0\0\0").contains("core WebAssembly module"));
        assert!(err(b"\0asm\x0d").contains("truncated"));
        check_header(b"\0asm\x0d\0\x01\0rest").unwrap();
    }
}
