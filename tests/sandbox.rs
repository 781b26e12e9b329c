//! Hostile guests are contained: each breaks one rule, gets a specific error,
//! and the next message is handled normally.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use alerthost::bindings::Message;
use alerthost::runtime::{FailureKind, Limits, LiveHandler, Runtime, RuntimeOptions};

fn guest(name: &str) -> PathBuf {
    Path::new(env!("ALERTHOST_TEST_GUESTS")).join(format!("{name}.wasm"))
}

fn runtime() -> Runtime {
    Runtime::new(&RuntimeOptions {
        fuel: true,
        ..RuntimeOptions::default()
    })
    .unwrap()
}

fn start(runtime: &Runtime, name: &str, limits: &Limits) -> LiveHandler {
    let code = runtime.load_file(&guest(name), limits).unwrap();
    LiveHandler::new(Arc::new(code), Vec::new()).unwrap().0
}

fn message(value: &[u8]) -> Message {
    Message {
        topic: "t".into(),
        partition: 0,
        offset: 0,
        timestamp: None,
        key: None,
        value: value.to_vec(),
        headers: Vec::new(),
    }
}

/// The guest's normal behaviour: one save of the message.
fn assert_handles_normally(handler: &mut LiveHandler) {
    let report = handler.handle(&message(b"ordinary"));
    let actions = report
        .outcome
        .expect("the next message is handled normally");
    assert_eq!(actions.len(), 1);
}

fn failure_of(handler: &mut LiveHandler, value: &[u8]) -> (FailureKind, String, Duration) {
    let report = handler.handle(&message(value));
    let failure = report.outcome.expect_err("the hostile message fails");
    (failure.kind, failure.text, report.elapsed)
}

#[test]
fn infinite_loop_times_out_within_twice_the_limit() {
    let runtime = runtime();
    let limits = Limits::default();
    let mut handler = start(&runtime, "spin", &limits);
    let (kind, text, elapsed) = failure_of(&mut handler, b"loop");
    assert_eq!(kind, FailureKind::Timeout, "{text}");
    assert!(elapsed >= limits.timeout(), "stopped early: {elapsed:?}");
    assert!(elapsed < 2 * limits.timeout(), "stopped late: {elapsed:?}");
    assert_handles_normally(&mut handler);
}

#[test]
fn fuel_budget_stops_a_busy_guest() {
    let runtime = runtime();
    let limits = Limits {
        fuel: Some(5_000_000),
        timeout_ms: 10_000,
        ..Limits::default()
    };
    let mut handler = start(&runtime, "spin", &limits);
    let (kind, text, _) = failure_of(&mut handler, b"loop");
    assert_eq!(kind, FailureKind::Fuel, "{text}");
    let report = handler.handle(&message(b"ordinary"));
    assert!(report.outcome.is_ok());
    assert!(report.fuel_used.is_some_and(|f| f > 0 && f < 5_000_000));
}

#[test]
fn allocating_1_gib_is_a_memory_error() {
    let runtime = runtime();
    let mut handler = start(&runtime, "hog", &Limits::default());
    let (kind, text, _) = failure_of(&mut handler, b"alloc");
    assert_eq!(kind, FailureKind::Memory, "{text}");
    assert!(text.contains("limit of 64 MiB"), "{text}");
    assert_handles_normally(&mut handler);
}

#[test]
fn panic_is_a_trap_with_its_message_and_the_instance_is_replaced() {
    let runtime = runtime();
    let mut handler = start(&runtime, "panic", &Limits::default());
    let (kind, text, _) = failure_of(&mut handler, b"panic");
    assert_eq!(kind, FailureKind::Trap, "{text}");
    assert!(text.contains("panicked at"), "{text}");
    assert_handles_normally(&mut handler);
}

#[test]
fn guest_cannot_open_files_list_dirs_or_read_env() {
    let runtime = runtime();
    let mut handler = start(&runtime, "peek", &Limits::default());
    let (kind, text, _) = failure_of(&mut handler, b"open");
    assert_eq!(kind, FailureKind::BadRecord, "{text}");
    assert!(
        text.contains("open /etc/passwd: error"),
        "reading /etc/passwd must fail: {text}"
    );
    assert!(text.contains("read_dir /: error"), "{text}");
    assert!(text.contains("env vars: 0"), "{text}");
    assert_handles_normally(&mut handler);
}

#[test]
fn ten_thousand_actions_are_rejected() {
    let runtime = runtime();
    let mut handler = start(&runtime, "flood", &Limits::default());
    let (kind, text, _) = failure_of(&mut handler, b"many");
    assert_eq!(kind, FailureKind::Limit, "{text}");
    assert!(text.contains("10000 actions"), "{text}");
    assert_handles_normally(&mut handler);
}

#[test]
fn chatty_guest_is_capped_per_message() {
    let runtime = runtime();
    let limits = Limits::default();
    let mut handler = start(&runtime, "chatty", &limits);
    let report = handler.handle(&message(b"x"));
    assert!(report.outcome.is_ok());
    assert_eq!(report.logs.len(), limits.max_log_lines as usize);
    assert!(report.logs_dropped > 0);
    for line in &report.logs {
        assert!(line.text.len() <= limits.max_log_line_bytes + '…'.len_utf8());
    }
}

#[test]
fn save_names_from_the_guest_stay_inside_the_directory() {
    let runtime = runtime();
    let mut handler = start(&runtime, "names", &Limits::default());
    let dir = tempfile::tempdir().unwrap();
    let sink = alerthost::sink::FileSink::new(dir.path()).unwrap();
    let long = "n".repeat(10_000);
    for hint in ["../../x", "/etc/x", "a\0b", long.as_str()] {
        let actions = handler.handle(&message(hint.as_bytes())).outcome.unwrap();
        let alerthost::bindings::Action::Save(save) = &actions[0] else {
            panic!("expected a save")
        };
        assert_eq!(
            save.name.as_deref(),
            Some(hint),
            "the guest sends the hint as is"
        );
        let path = sink.path_for(save.name.as_deref(), "t", 0, 0);
        sink.write(&path, b"data").unwrap();
        let real = path.canonicalize().unwrap();
        assert!(
            real.starts_with(dir.path().canonicalize().unwrap()),
            "{hint:?} -> {}",
            real.display()
        );
        assert!(real.file_name().unwrap().len() <= 100);
    }
}

#[test]
fn init_error_refuses_the_handler_with_its_reason() {
    let runtime = runtime();
    let code = runtime
        .load_file(&guest("init-fails"), &Limits::default())
        .unwrap();
    let failure = LiveHandler::new(Arc::new(code), vec![("a".into(), "1".into())]).unwrap_err();
    assert_eq!(failure.kind, FailureKind::Init);
    assert!(failure.text.contains("init refused"), "{}", failure.text);
}

#[test]
fn component_without_handle_is_refused_naming_it() {
    let error = runtime()
        .load_file(&guest("no-handle"), &Limits::default())
        .unwrap_err();
    let text = format!("{error:#}");
    assert!(text.contains("does not export `handle`"), "{text}");
    assert!(text.contains("no-handle.wasm"), "{text}");
}

#[test]
fn guest_importing_sockets_cannot_connect() {
    let runtime = runtime();
    let mut handler = start(&runtime, "net", &Limits::default());
    let (kind, text, _) = failure_of(&mut handler, b"connect");
    assert_eq!(kind, FailureKind::BadRecord, "{text}");
    assert!(
        text.contains("connect 127.0.0.1:1: error"),
        "the connection must be refused: {text}"
    );
    assert_handles_normally(&mut handler);
}

#[test]
fn component_importing_outside_access_is_refused_at_load() {
    let error = runtime()
        .load_file(&guest("outside"), &Limits::default())
        .unwrap_err();
    let text = format!("{error:#}");
    assert!(text.contains("`acme:outside/fetch@1.0.0`"), "{text}");
    assert!(text.contains("alerthost does not provide"), "{text}");
    assert!(text.contains("outside.wasm"), "{text}");
}

#[test]
fn compiled_component_is_cached_for_the_next_start() {
    let cache = tempfile::tempdir().unwrap();
    let options = RuntimeOptions {
        cache_dir: Some(cache.path().to_owned()),
        ..RuntimeOptions::default()
    };
    let first = Runtime::new(&options).unwrap();
    let code = first
        .load_file(&guest("panic"), &Limits::default())
        .unwrap();
    assert!(!code.info().from_cache);
    let second = Runtime::new(&options).unwrap();
    let code = second
        .load_file(&guest("panic"), &Limits::default())
        .unwrap();
    assert!(code.info().from_cache);
    let mut handler = LiveHandler::new(Arc::new(code), Vec::new()).unwrap().0;
    assert_handles_normally(&mut handler);
}
