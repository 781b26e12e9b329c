//! One sandboxed instance of a handler version, and a handler that replaces
//! its instance after a trap.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::clock::{CallClock, ClockView};
use super::guest_log::{GuestLog, LogLine, LogSource, clean};
use super::limits::Limiter;
use super::{EPOCH_TICK, HandlerCode};
use crate::bindings::{self, Action, HandlerError, Level, Message, MessageView};
use crate::state::{CallState, HandlerState, StateFailure, Writes};

/// Time `init` may take: runtimes such as CPython or a JS engine start up in
/// `init`, which takes far longer than a message. Waits in host calls
/// (`sleep`, `poll`) count against it like guest code.
pub const INIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest failure text (handler error, init error, trap) the runtime hands
/// on, in bytes: every consumer (log lines, dead-letter records and headers,
/// reports) gets at most this much, with control characters escaped.
pub const MAX_FAILURE_TEXT_BYTES: usize = 2048;

/// Headers one forward may carry; each also counts against
/// `limits.max_action_kib` with its name and value.
pub const MAX_FORWARD_HEADERS: usize = 256;

/// The store data of one instance: WASI with nothing granted, the limiter,
/// the deadline of the running call, what the guest logged, and the
/// handler's state with the running call's writes.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    clock: CallClock,
    log: GuestLog,
    state: Option<CallState>,
    /// What a state call stopped the guest for, taken when the call ends.
    state_failure: Option<StateFailure>,
}

impl HostState {
    /// The clock interface's view of the store.
    pub(crate) fn clock(&mut self) -> ClockView<'_> {
        ClockView {
            clock: &mut self.clock,
            table: &mut self.table,
        }
    }
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

impl HostState {
    /// The state of the handler, or the error that stops a guest importing
    /// `state` that was started without it.
    fn call_state(&mut self) -> wasmtime::Result<&mut CallState> {
        self.state.as_mut().ok_or_else(|| {
            wasmtime::Error::msg("this handler was started without state (the host gives state only to handlers whose component imports it)")
        })
    }

    fn state_result<T>(&mut self, result: Result<T, StateFailure>) -> wasmtime::Result<T> {
        result.map_err(|failure| {
            let error = wasmtime::Error::msg(failure.to_string());
            self.state_failure = Some(failure);
            error
        })
    }
}

impl bindings::alerthost::handler::state::Host for HostState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        let result = self.call_state()?.get(&key);
        self.state_result(result)
    }

    fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: Option<u64>) -> wasmtime::Result<()> {
        let result = self.call_state()?.set(key, value, ttl_ms);
        self.state_result(result)
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        let result = self.call_state()?.delete(key);
        self.state_result(result)
    }
}

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
    /// A failure whose text is cut to [`MAX_FAILURE_TEXT_BYTES`] with its
    /// control characters escaped: the text may come from the guest.
    fn new(kind: FailureKind, text: impl AsRef<str>) -> Self {
        HandlerFailure {
            kind,
            text: clean(text.as_ref(), MAX_FAILURE_TEXT_BYTES),
        }
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
    /// The state writes of a successful call, to apply when its actions
    /// are accepted; empty after a failure (they are dropped).
    pub writes: Writes,
}

/// One live instance in its own store.
pub struct HandlerInstance {
    store: Store<HostState>,
    handler: bindings::Handler,
    code: Arc<HandlerCode>,
    /// A call failed inside wasmtime (a trap, the time or memory limit, or
    /// too much data to lift): the instance may be mid-call and is not used
    /// again.
    poisoned: bool,
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
        state: Option<&Arc<HandlerState>>,
    ) -> Result<(Self, Vec<LogLine>), HandlerFailure> {
        match Self::prepare(code, params, state.cloned()) {
            (Ok(instance), logs) => Ok((instance, logs)),
            (Err(failure), _) => Err(failure),
        }
    }

    /// A fresh instance with `init` run, and the lines `init` logged whether
    /// it succeeded or not.
    fn prepare(
        code: &Arc<HandlerCode>,
        params: &[(String, String)],
        state: Option<Arc<HandlerState>>,
    ) -> (Result<Self, HandlerFailure>, Vec<LogLine>) {
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
            clock: CallClock::new(),
            log,
            state: state.map(CallState::new),
            state_failure: None,
        };
        let mut store = Store::new(code.pre.engine(), state);
        store.limiter(|state| &mut state.limiter);
        store.set_hostcall_fuel(limits.hostcall_bytes());
        store.set_epoch_deadline(ticks(INIT_TIMEOUT));
        store
            .data_mut()
            .clock
            .start_call(Instant::now() + INIT_TIMEOUT);
        if code.fuel
            && let Err(e) = store.set_fuel(u64::MAX)
        {
            return (
                Err(HandlerFailure::new(FailureKind::Init, format!("{e}"))),
                Vec::new(),
            );
        }
        let handler = match code.pre.instantiate(&mut store) {
            Ok(handler) => handler,
            Err(e) => {
                let failure = classify(&e, store.data(), INIT_TIMEOUT, None, None);
                let (logs, _) = store.data_mut().log.take();
                return (
                    Err(HandlerFailure::new(
                        FailureKind::Init,
                        format!("cannot instantiate: {}", failure.text),
                    )),
                    logs,
                );
            }
        };
        let params: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let result = handler.call_init(&mut store, &params);
        let (logs, _) = store.data_mut().log.take();
        let outcome = match result {
            Ok(Ok(())) if store.data().clock.was_cut_short() => Err(HandlerFailure::new(
                FailureKind::Init,
                format!("init failed: {}", timeout_failure(INIT_TIMEOUT)),
            )),
            Ok(Ok(())) => Ok(HandlerInstance {
                store,
                handler,
                code: code.clone(),
                poisoned: false,
            }),
            Ok(Err(text)) => Err(HandlerFailure::new(
                FailureKind::Init,
                format!("init refused the parameters: {text}"),
            )),
            Err(e) => {
                let failure = classify(&e, store.data(), INIT_TIMEOUT, None, None);
                Err(HandlerFailure::new(
                    FailureKind::Init,
                    format!("init failed: {failure}"),
                ))
            }
        };
        (outcome, logs)
    }

    /// Run `handle` on one message under the version's limits.
    pub fn handle(&mut self, msg: &Message) -> CallReport {
        msg.with_view(|view| self.handle_view(view))
    }

    /// [`handle`](Self::handle) on a borrowed message.
    pub fn handle_view(&mut self, msg: &MessageView<'_>) -> CallReport {
        let timeout = self.code.limits().timeout();
        self.handle_within(msg, Instant::now(), timeout)
    }

    /// Run `handle` with `budget` of the message's time limit left as of
    /// `started` (read by the caller, so the clock is read twice per call:
    /// here at the end, and there). The report's `elapsed` counts from
    /// `started`.
    fn handle_within(
        &mut self,
        msg: &MessageView<'_>,
        started: Instant,
        budget: Duration,
    ) -> CallReport {
        let code = Arc::clone(&self.code);
        let limits = code.limits();
        self.store.set_epoch_deadline(ticks(budget));
        if let Some(fuel) = limits.fuel
            && let Err(e) = self.store.set_fuel(fuel)
        {
            return CallReport::failed(HandlerFailure::new(FailureKind::Trap, format!("{e}")));
        }
        let state = self.store.data_mut();
        state.limiter.memory_refused = None;
        state.state_failure = None;
        if let Some(call) = &mut state.state {
            call.begin(message_time(msg));
        }
        // A wait in a host call ends one tick after the epoch deadline, so
        // guest code running on after it is stopped by the epoch too.
        state.clock.start_call(started + budget + EPOCH_TICK);

        let result = self.handler.call_handle(&mut self.store, msg.clone());
        let elapsed = started.elapsed();

        let fuel_used = limits
            .fuel
            .map(|fuel| fuel.saturating_sub(self.store.get_fuel().unwrap_or(0)));
        let (logs, logs_dropped) = self.store.data_mut().log.take();
        let writes = match &mut self.store.data_mut().state {
            Some(call) => call.finish(),
            None => Writes::default(),
        };
        let outcome = match result {
            Err(e) => {
                self.poisoned = true;
                let mut failure = classify(
                    &e,
                    self.store.data(),
                    limits.timeout(),
                    limits.fuel,
                    Some(limits),
                );
                if let Some(panic) = panic_message(&logs) {
                    failure =
                        HandlerFailure::new(failure.kind, format!("{} ({panic})", failure.text));
                }
                Err(failure)
            }
            Ok(_) if self.store.data().clock.was_cut_short() => {
                Err(timeout_failure(limits.timeout()))
            }
            Ok(Err(error)) => Err(from_handler_error(error)),
            Ok(Ok(actions)) => check_actions(actions, limits),
        };
        let writes = if outcome.is_ok() {
            writes
        } else {
            Writes::default()
        };
        CallReport {
            outcome,
            logs,
            logs_dropped,
            elapsed,
            fuel_used,
            writes,
        }
    }
}

/// The time a message's state writes expire from: its timestamp, or the
/// host's clock for a message without one.
fn message_time(msg: &MessageView<'_>) -> i64 {
    msg.timestamp.as_ref().map_or_else(
        || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        },
        |t| t.millis,
    )
}

impl CallReport {
    fn failed(failure: HandlerFailure) -> Self {
        CallReport {
            outcome: Err(failure),
            logs: Vec::new(),
            logs_dropped: 0,
            elapsed: Duration::ZERO,
            fuel_used: None,
            writes: Writes::default(),
        }
    }
}

/// A handler version with parameters and its current instance. A trap,
/// timeout or limit breach throws the instance away and a replacement is
/// prepared at once on a thread of its own, off the message path: the next
/// message waits for it at most its own time limit, so a slow `init` cannot
/// stretch a message's time.
#[derive(Debug)]
pub struct LiveHandler {
    code: Arc<HandlerCode>,
    params: Vec<(String, String)>,
    state: Option<Arc<HandlerState>>,
    instance: Option<HandlerInstance>,
    replacement: Option<Receiver<Prepared>>,
}

/// A replacement instance, or why there is none, with the logs of its `init`.
type Prepared = (Result<HandlerInstance, HandlerFailure>, Vec<LogLine>);

impl LiveHandler {
    /// Instantiate `code` and run `init` now, so a bad version or bad
    /// parameters are refused before any message. `state` is the handler's
    /// state, for a component that imports it.
    pub fn new(
        code: Arc<HandlerCode>,
        params: Vec<(String, String)>,
        state: Option<Arc<HandlerState>>,
    ) -> Result<(Self, Vec<LogLine>), HandlerFailure> {
        let (instance, logs) = HandlerInstance::new(&code, &params, state.as_ref())?;
        Ok((
            LiveHandler {
                code,
                params,
                state,
                instance: Some(instance),
                replacement: None,
            },
            logs,
        ))
    }

    /// The version this handler runs.
    pub fn code(&self) -> &Arc<HandlerCode> {
        &self.code
    }

    /// Handle one message, replacing the instance first if the last call
    /// poisoned it. The logs of a replacement's `init` come first in the
    /// report. The whole call, waiting for a replacement included, stays
    /// within the message's time limit.
    pub fn handle(&mut self, msg: &Message) -> CallReport {
        msg.with_view(|view| self.handle_view(view))
    }

    /// [`handle`](Self::handle) on a borrowed message.
    pub fn handle_view(&mut self, msg: &MessageView<'_>) -> CallReport {
        let timeout = self.code.limits().timeout();
        let started = Instant::now();
        let mut init_logs = Vec::new();
        // Whether time went by waiting for a replacement instance.
        let waited = self.instance.is_none();
        if waited {
            let replacement = self.replacement.get_or_insert_with(|| {
                prepare_in_background(self.code.clone(), self.params.clone(), self.state.clone())
            });
            match replacement.recv_timeout(timeout) {
                Ok((prepared, logs)) => {
                    self.replacement = None;
                    init_logs = logs;
                    match prepared {
                        Ok(instance) => self.instance = Some(instance),
                        Err(failure) => {
                            let mut report = CallReport::failed(failure);
                            report.logs = init_logs;
                            report.elapsed = started.elapsed();
                            return report;
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let mut report = CallReport::failed(HandlerFailure::new(
                        FailureKind::Init,
                        format!(
                            "no instance ready within the time limit of {} ms: a fresh one is \
                             still running init after the last failure",
                            timeout.as_millis()
                        ),
                    ));
                    report.elapsed = started.elapsed();
                    return report;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.replacement = None;
                    return CallReport::failed(HandlerFailure::new(
                        FailureKind::Init,
                        "preparing a fresh instance failed unexpectedly",
                    ));
                }
            }
        }
        let Some(instance) = &mut self.instance else {
            unreachable!("an instance was installed above");
        };
        let mut report = if waited {
            let budget = timeout.saturating_sub(started.elapsed());
            let mut report = instance.handle_within(msg, Instant::now(), budget);
            report.elapsed = started.elapsed();
            report
        } else {
            instance.handle_within(msg, started, timeout)
        };
        if !init_logs.is_empty() {
            init_logs.append(&mut report.logs);
            report.logs = init_logs;
        }
        if instance.poisoned {
            self.instance = None;
            self.replacement = Some(prepare_in_background(
                self.code.clone(),
                self.params.clone(),
                self.state.clone(),
            ));
        }
        report
    }
}

/// Start preparing a fresh instance on a thread of its own; its `init` is
/// bounded by [`INIT_TIMEOUT`].
fn prepare_in_background(
    code: Arc<HandlerCode>,
    params: Vec<(String, String)>,
    state: Option<Arc<HandlerState>>,
) -> Receiver<Prepared> {
    let (tx, rx) = sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name("alerthost-init".into())
        .spawn(move || {
            let _ = tx.send(HandlerInstance::prepare(&code, &params, state));
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot start a thread to prepare a fresh handler instance");
    }
    rx
}

fn ticks(limit: Duration) -> u64 {
    // One extra tick: the deadline counts ticks from an arbitrary point
    // within the current one.
    limit.as_millis().div_ceil(EPOCH_TICK.as_millis()) as u64 + 1
}

fn timeout_failure(timeout: Duration) -> HandlerFailure {
    HandlerFailure::new(
        FailureKind::Timeout,
        format!("ran over its time limit of {} ms", timeout.as_millis()),
    )
}

fn classify(
    error: &wasmtime::Error,
    state: &HostState,
    timeout: Duration,
    fuel: Option<u64>,
    limits: Option<&super::Limits>,
) -> HandlerFailure {
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => return timeout_failure(timeout),
        Some(Trap::OutOfFuel) => {
            return HandlerFailure::new(
                FailureKind::Fuel,
                format!("used up its fuel of {}", fuel.unwrap_or(0)),
            );
        }
        _ => {}
    }
    if state.clock.was_cut_short() {
        return timeout_failure(timeout);
    }
    if let Some(failure) = &state.state_failure {
        let kind = match failure {
            StateFailure::Limit(_) => FailureKind::Limit,
            StateFailure::Init(_) => FailureKind::Init,
            StateFailure::Store(_) => FailureKind::Trap,
        };
        return HandlerFailure::new(kind, failure.to_string());
    }
    let limiter = &state.limiter;
    if let Some(requested) = limiter.memory_refused {
        return HandlerFailure::new(
            FailureKind::Memory,
            format!(
                "asked for {} MiB of memory and tables in all, over its limit of {} MiB",
                requested.div_ceil(1 << 20),
                limiter.memory_bytes.div_ceil(1 << 20)
            ),
        );
    }
    // wasmtime's error type for this is private; its text is stable.
    if format!("{error:#}").contains("fuel allocated for hostcalls has been exhausted") {
        let limit = limits.map_or_else(String::new, |limits| {
            format!(
                " (limits.max_actions × limits.max_action_kib: {} MiB)",
                limits.hostcall_bytes() >> 20
            )
        });
        return HandlerFailure::new(
            FailureKind::Limit,
            format!("handed the host more data in one call than it accepts{limit}"),
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

/// Bytes an action carries: what the host will write or send for it, names
/// included (save-name hint, sink name, header names).
pub fn action_bytes(action: &Action) -> usize {
    match action {
        Action::Save(save) => {
            save.name.as_ref().map_or(0, String::len) + save.value.as_ref().map_or(0, Vec::len)
        }
        Action::Forward(fwd) => {
            fwd.sink.len()
                + fwd.key.as_ref().map_or(0, Vec::len)
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
        if let Action::Forward(fwd) = action
            && let Some(headers) = &fwd.headers
            && headers.len() > MAX_FORWARD_HEADERS
        {
            return Err(HandlerFailure::new(
                FailureKind::Limit,
                format!(
                    "action {index} forwards {} headers, over the {MAX_FORWARD_HEADERS} a forward may carry",
                    headers.len()
                ),
            ));
        }
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
