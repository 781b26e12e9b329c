//! One sandboxed instance of a handler version, and a handler that replaces
//! its instance after a trap.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::guest_log::{GuestLog, LogLine, LogSource};
use super::limits::Limiter;
use super::{EPOCH_TICK, HandlerCode};
use crate::bindings::{self, Action, HandlerError, Level, Message};

/// Time `init` may take: runtimes such as CPython or a JS engine start up in
/// `init`, which takes far longer than a message.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The store data of one instance: WASI with nothing granted, the limiter,
/// and what the guest logged.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    log: GuestLog,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::HandlerImports for HostState {
    fn log(&mut self, level: Level, text: String) {
        self.log.push(level, LogSource::Log, &text);
    }
}

impl bindings::alerthost::handler::types::Host for HostState {}

/// What kind of failure, for error policies, metrics and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// The handler said the message is malformed.
    BadRecord,
    /// The handler reported a passing failure.
    Transient,
    /// The handler reported it cannot go on.
    Fatal,
    /// The call ran over its wall-time limit.
    Timeout,
    /// The handler asked for more memory than its limit.
    Memory,
    /// The call used up its fuel.
    Fuel,
    /// The handler trapped (a panic, `unreachable`, a bad memory access).
    Trap,
    /// The handler returned more than its limits allow.
    Limit,
    /// A new instance could not be made or its `init` failed.
    Init,
    /// The handler named a sink it may not use.
    Sink,
}

impl FailureKind {
    /// The kebab-case name used in reports and records.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::BadRecord => "bad-record",
            FailureKind::Transient => "transient",
            FailureKind::Fatal => "fatal",
            FailureKind::Timeout => "timeout",
            FailureKind::Memory => "memory",
            FailureKind::Fuel => "fuel",
            FailureKind::Trap => "trap",
            FailureKind::Limit => "limit",
            FailureKind::Init => "init",
            FailureKind::Sink => "sink",
        }
    }
}

/// Why a handler gave no decision on a message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind}: {text}", kind = kind.as_str())]
pub struct HandlerFailure {
    /// What kind of failure.
    pub kind: FailureKind,
    /// What happened, for people.
    pub text: String,
}

impl HandlerFailure {
    fn new(kind: FailureKind, text: impl Into<String>) -> Self {
        HandlerFailure {
            kind,
            text: text.into(),
        }
    }

    /// Whether the instance that failed must be thrown away.
    fn poisons_instance(&self) -> bool {
        matches!(
            self.kind,
            FailureKind::Timeout | FailureKind::Memory | FailureKind::Fuel | FailureKind::Trap
        )
    }
}

/// The result of one `handle` call, with what the guest logged on the way.
#[derive(Debug)]
pub struct CallReport {
    /// The actions, or why there are none.
    pub outcome: Result<Vec<Action>, HandlerFailure>,
    /// Lines the guest logged (capped).
    pub logs: Vec<LogLine>,
    /// Lines dropped over the cap.
    pub logs_dropped: u32,
    /// Wall time of the call.
    pub elapsed: Duration,
    /// Fuel used, when fuel is metered for this handler.
    pub fuel_used: Option<u64>,
}

/// One live instance in its own store.
pub struct HandlerInstance {
    store: Store<HostState>,
    handler: bindings::Handler,
    code: Arc<HandlerCode>,
}

impl std::fmt::Debug for HandlerInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerInstance")
            .field("version", &self.code.version())
            .finish_non_exhaustive()
    }
}

impl HandlerInstance {
    /// A fresh instance of `code`, with `init` run on `params`. The logs of
    /// `init` are returned with it.
    pub fn new(
        code: &Arc<HandlerCode>,
        params: &[(String, String)],
    ) -> Result<(Self, Vec<LogLine>), HandlerFailure> {
        let limits = code.limits();
        let log = GuestLog::new(limits.max_log_lines, limits.max_log_line_bytes);
        // Deny by default: no preopened directory, no environment, no
        // arguments, no network; stdio goes to the capped log.
        let wasi = WasiCtx::builder()
            .stdout(log.stdout())
            .stderr(log.stderr())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .build();
        let state = HostState {
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter::new(limits.memory_bytes()),
            log,
        };
        let mut store = Store::new(code.pre.engine(), state);
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(ticks(INIT_TIMEOUT));
        if code.fuel {
            store
                .set_fuel(u64::MAX)
                .map_err(|e| HandlerFailure::new(FailureKind::Init, format!("{e}")))?;
        }
        let handler = code.pre.instantiate(&mut store).map_err(|e| {
            let failure = classify_trap(&e, &store.data().limiter, INIT_TIMEOUT, None);
            HandlerFailure::new(
                FailureKind::Init,
                format!("cannot instantiate: {}", failure.text),
            )
        })?;
        let result = handler.call_init(&mut store, params);
        let (logs, _) = store.data_mut().log.take();
        match result {
            Ok(Ok(())) => Ok((
                HandlerInstance {
                    store,
                    handler,
                    code: code.clone(),
                },
                logs,
            )),
            Ok(Err(text)) => Err(HandlerFailure::new(
                FailureKind::Init,
                format!("init refused the parameters: {text}"),
            )),
            Err(e) => {
                let failure = classify_trap(&e, &store.data().limiter, INIT_TIMEOUT, None);
                Err(HandlerFailure::new(
                    FailureKind::Init,
                    format!("init failed: {failure}"),
                ))
            }
        }
    }

    /// Run `handle` on one message under the version's limits.
    pub fn handle(&mut self, msg: &Message) -> CallReport {
        let code = Arc::clone(&self.code);
        let limits = code.limits();
        self.store.set_epoch_deadline(ticks(limits.timeout()));
        if let Some(fuel) = limits.fuel
            && let Err(e) = self.store.set_fuel(fuel)
        {
            return CallReport {
                outcome: Err(HandlerFailure::new(FailureKind::Trap, format!("{e}"))),
                logs: Vec::new(),
                logs_dropped: 0,
                elapsed: Duration::ZERO,
                fuel_used: None,
            };
        }
        self.store.data_mut().limiter.memory_refused = None;

        let started = Instant::now();
        let result = self.handler.call_handle(&mut self.store, msg);
        let elapsed = started.elapsed();

        let fuel_used = limits
            .fuel
            .map(|fuel| fuel.saturating_sub(self.store.get_fuel().unwrap_or(0)));
        let (logs, logs_dropped) = self.store.data_mut().log.take();
        let outcome = match result {
            Err(e) => {
                let mut failure = classify_trap(
                    &e,
                    &self.store.data().limiter,
                    limits.timeout(),
                    limits.fuel,
                );
                if let Some(panic) = panic_message(&logs) {
                    failure.text = format!("{} ({panic})", failure.text);
                }
                Err(failure)
            }
            Ok(Err(error)) => Err(from_handler_error(error)),
            Ok(Ok(actions)) => check_actions(actions, limits),
        };
        CallReport {
            outcome,
            logs,
            logs_dropped,
            elapsed,
            fuel_used,
        }
    }
}

/// A handler version with parameters and its current instance. A trap,
/// timeout or limit breach throws the instance away; the next message gets
/// a fresh one.
#[derive(Debug)]
pub struct LiveHandler {
    code: Arc<HandlerCode>,
    params: Vec<(String, String)>,
    instance: Option<HandlerInstance>,
}

impl LiveHandler {
    /// Instantiate `code` and run `init` now, so a bad version or bad
    /// parameters are refused before any message.
    pub fn new(
        code: Arc<HandlerCode>,
        params: Vec<(String, String)>,
    ) -> Result<(Self, Vec<LogLine>), HandlerFailure> {
        let (instance, logs) = HandlerInstance::new(&code, &params)?;
        Ok((
            LiveHandler {
                code,
                params,
                instance: Some(instance),
            },
            logs,
        ))
    }

    /// The version this handler runs.
    pub fn code(&self) -> &Arc<HandlerCode> {
        &self.code
    }

    /// Handle one message, replacing the instance first if the last call
    /// poisoned it.
    pub fn handle(&mut self, msg: &Message) -> CallReport {
        let instance = match &mut self.instance {
            Some(instance) => instance,
            slot @ None => match HandlerInstance::new(&self.code, &self.params) {
                Ok((instance, _)) => slot.insert(instance),
                Err(failure) => {
                    return CallReport {
                        outcome: Err(failure),
                        logs: Vec::new(),
                        logs_dropped: 0,
                        elapsed: Duration::ZERO,
                        fuel_used: None,
                    };
                }
            },
        };
        let report = instance.handle(msg);
        if let Err(failure) = &report.outcome
            && failure.poisons_instance()
        {
            self.instance = None;
        }
        report
    }
}

fn ticks(limit: Duration) -> u64 {
    // One extra tick: the deadline counts ticks from an arbitrary point
    // within the current one.
    limit.as_millis().div_ceil(EPOCH_TICK.as_millis()) as u64 + 1
}

fn classify_trap(
    error: &wasmtime::Error,
    limiter: &Limiter,
    timeout: Duration,
    fuel: Option<u64>,
) -> HandlerFailure {
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => {
            return HandlerFailure::new(
                FailureKind::Timeout,
                format!("ran over its time limit of {} ms", timeout.as_millis()),
            );
        }
        Some(Trap::OutOfFuel) => {
            return HandlerFailure::new(
                FailureKind::Fuel,
                format!("used up its fuel of {}", fuel.unwrap_or(0)),
            );
        }
        _ => {}
    }
    if let Some(requested) = limiter.memory_refused {
        return HandlerFailure::new(
            FailureKind::Memory,
            format!(
                "asked for {} MiB of memory, over its limit of {} MiB",
                requested.div_ceil(1 << 20),
                limiter.memory_bytes.div_ceil(1 << 20)
            ),
        );
    }
    let text = match error.downcast_ref::<Trap>() {
        Some(trap) => format!("trapped: {trap}"),
        None => format!("failed: {error}"),
    };
    HandlerFailure::new(FailureKind::Trap, text)
}

/// A Rust guest's panic message from its stderr: the `panicked at` line and
/// the message after it.
fn panic_message(logs: &[LogLine]) -> Option<String> {
    let at = logs
        .iter()
        .position(|l| l.source == LogSource::Stderr && l.text.contains("panicked at"))?;
    let mut text = logs[at].text.trim_end_matches(':').to_owned();
    if let Some(next) = logs.get(at + 1).filter(|l| l.source == LogSource::Stderr) {
        text = format!("{text}: {}", next.text);
    }
    Some(text)
}

fn from_handler_error(error: HandlerError) -> HandlerFailure {
    match error {
        HandlerError::BadRecord(text) => HandlerFailure::new(FailureKind::BadRecord, text),
        HandlerError::Transient(text) => HandlerFailure::new(FailureKind::Transient, text),
        HandlerError::Fatal(text) => HandlerFailure::new(FailureKind::Fatal, text),
    }
}

/// Bytes an action carries: what the host will write or send for it.
pub fn action_bytes(action: &Action) -> usize {
    match action {
        Action::Save(save) => save.value.as_ref().map_or(0, Vec::len),
        Action::Forward(fwd) => {
            fwd.key.as_ref().map_or(0, Vec::len)
                + fwd.value.as_ref().map_or(0, Vec::len)
                + fwd.headers.as_ref().map_or(0, |headers| {
                    headers
                        .iter()
                        .map(|h| h.name.len() + h.value.as_ref().map_or(0, Vec::len))
                        .sum()
                })
        }
    }
}

fn check_actions(
    actions: Vec<Action>,
    limits: &super::Limits,
) -> Result<Vec<Action>, HandlerFailure> {
    if actions.len() > limits.max_actions {
        return Err(HandlerFailure::new(
            FailureKind::Limit,
            format!(
                "returned {} actions, over its limit of {} (limits.max_actions)",
                actions.len(),
                limits.max_actions
            ),
        ));
    }
    for (index, action) in actions.iter().enumerate() {
        let bytes = action_bytes(action);
        if bytes > limits.max_action_bytes() {
            return Err(HandlerFailure::new(
                FailureKind::Limit,
                format!(
                    "action {index} carries {bytes} bytes, over its limit of {} KiB (limits.max_action_kib)",
                    limits.max_action_kib
                ),
            ));
        }
    }
    Ok(actions)
}
