//! Hostile guests are contained: each breaks one rule, gets a specific error,
//! and the next message is handled normally. Containment tests run on an
//! engine without fuel metering (as production runs unless a handler sets a
//! fuel budget) and on one with it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use alerthost::bindings::Message;
use alerthost::runtime::{
    FailureKind, INIT_TIMEOUT, Limits, LiveHandler, MAX_FAILURE_TEXT_BYTES, Runtime, RuntimeOptions,
};

fn guest(name: &str) -> PathBuf {
    Path::new(env!("ALERTHOST_TEST_GUESTS")).join(format!("{name}.wasm"))
}

/// An engine that meters fuel.
fn runtime() -> Runtime {
    Runtime::new(&RuntimeOptions {
        fuel: true,
        ..RuntimeOptions::default()
    })
    .unwrap()
}

/// Both engines a host may build: without fuel (the usual production one)
/// and with it.
fn engines() -> [Runtime; 2] {
    [Runtime::new(&RuntimeOptions::default()).unwrap(), runtime()]
}

fn start(runtime: &Runtime, name: &str, limits: &Limits) -> LiveHandler {
    let code = runtime.load_file(&guest(name), limits).unwrap();
    LiveHandler::new(Arc::new(code), Vec::new(), None)
        .unwrap()
        .0
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
    for runtime in engines() {
        let limits = Limits::default();
        let mut handler = start(&runtime, "spin", &limits);
        let (kind, text, elapsed) = failure_of(&mut handler, b"loop");
        assert_eq!(kind, FailureKind::Timeout, "{text}");
        assert!(elapsed >= limits.timeout(), "stopped early: {elapsed:?}");
        assert!(elapsed < 2 * limits.timeout(), "stopped late: {elapsed:?}");
        assert_handles_normally(&mut handler);
    }
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
    for runtime in engines() {
        let mut handler = start(&runtime, "hog", &Limits::default());
        let (kind, text, _) = failure_of(&mut handler, b"alloc");
        assert_eq!(kind, FailureKind::Memory, "{text}");
        assert!(text.contains("limit of 64 MiB"), "{text}");
        assert_handles_normally(&mut handler);
    }
}

#[test]
fn panic_is_a_trap_with_its_message_and_the_instance_is_replaced() {
    for runtime in engines() {
        let mut handler = start(&runtime, "panic", &Limits::default());
        let (kind, text, _) = failure_of(&mut handler, b"panic");
        assert_eq!(kind, FailureKind::Trap, "{text}");
        assert!(text.contains("panicked at"), "{text}");
        assert_handles_normally(&mut handler);
    }
}

#[test]
fn guest_cannot_open_files_list_dirs_write_tmp_or_read_env() {
    let planted = Path::new("/tmp/alerthost-peek");
    let _ = std::fs::remove_file(planted);
    for runtime in engines() {
        let mut handler = start(&runtime, "peek", &Limits::default());
        let (kind, text, _) = failure_of(&mut handler, b"open");
        assert_eq!(kind, FailureKind::BadRecord, "{text}");
        assert!(
            text.contains("open /etc/passwd: error"),
            "reading /etc/passwd must fail: {text}"
        );
        assert!(text.contains("read_dir /: error"), "{text}");
        assert!(
            text.contains("write /tmp/alerthost-peek: error"),
            "writing /tmp must fail: {text}"
        );
        assert!(!planted.exists(), "the guest wrote {}", planted.display());
        assert!(text.contains("env vars: 0"), "{text}");
        assert_handles_normally(&mut handler);
    }
}

#[test]
fn ten_thousand_actions_are_rejected() {
    for runtime in engines() {
        let mut handler = start(&runtime, "flood", &Limits::default());
        let (kind, text, _) = failure_of(&mut handler, b"many");
        assert_eq!(kind, FailureKind::Limit, "{text}");
        assert!(text.contains("10000 actions"), "{text}");
        assert_handles_normally(&mut handler);
    }
}

#[test]
fn chatty_guest_is_capped_per_message() {
    for runtime in engines() {
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
    let failure =
        LiveHandler::new(Arc::new(code), vec![("a".into(), "1".into())], None).unwrap_err();
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
fn guest_cannot_connect_to_a_listening_port() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    for runtime in engines() {
        let mut handler = start(&runtime, "net", &Limits::default());
        let (kind, text, _) = failure_of(&mut handler, format!("connect {port}").as_bytes());
        assert_eq!(kind, FailureKind::BadRecord, "{text}");
        assert!(
            text.contains(&format!(
                "connect 127.0.0.1:{port}: error (PermissionDenied)"
            )),
            "the connection must be denied, not refused by the port: {text}"
        );
        assert_handles_normally(&mut handler);
    }
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the listener must not have accepted anything: {other:?}"),
    }
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
    let mut handler = LiveHandler::new(Arc::new(code), Vec::new(), None)
        .unwrap()
        .0;
    assert_handles_normally(&mut handler);
}

/// Run `f` on a thread and wait at most `limit` for its result, so a test
/// of a hang fails instead of hanging.
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("still blocked after {limit:?}"))
}

#[test]
fn sleeping_in_handle_times_out_within_twice_the_limit() {
    for runtime in engines() {
        let limits = Limits::default();
        let code = Arc::new(runtime.load_file(&guest("sleepy"), &limits).unwrap());
        within(10 * limits.timeout(), move || {
            let mut handler = LiveHandler::new(code, Vec::new(), None).unwrap().0;
            for trigger in [&b"sleep"[..], b"nap-loop"] {
                let started = Instant::now();
                let (kind, text, _) = failure_of(&mut handler, trigger);
                let elapsed = started.elapsed();
                assert_eq!(kind, FailureKind::Timeout, "{text}");
                assert!(elapsed < 2 * limits.timeout(), "stopped late: {elapsed:?}");
                assert_handles_normally(&mut handler);
            }
        });
    }
}

#[test]
fn sleeping_in_init_is_stopped_at_the_init_timeout() {
    let runtime = Runtime::new(&RuntimeOptions::default()).unwrap();
    let code = Arc::new(
        runtime
            .load_file(&guest("sleepy"), &Limits::default())
            .unwrap(),
    );
    let started = Instant::now();
    let failure = within(2 * INIT_TIMEOUT, move || {
        LiveHandler::new(code, vec![("sleep".into(), "init".into())], None).unwrap_err()
    });
    assert_eq!(failure.kind, FailureKind::Init, "{}", failure.text);
    assert!(failure.text.contains("time limit"), "{}", failure.text);
    assert!(started.elapsed() < INIT_TIMEOUT + Duration::from_secs(2));
}

#[test]
fn slow_init_after_a_trap_does_not_stretch_the_next_message() {
    let runtime = Runtime::new(&RuntimeOptions::default()).unwrap();
    let limits = Limits::default();
    let code = runtime.load_file(&guest("slow-init"), &limits).unwrap();
    let spin = Duration::from_secs(3);
    let params = vec![("spin_ms".into(), spin.as_millis().to_string())];
    let (mut handler, init_logs) = LiveHandler::new(Arc::new(code), params, None).unwrap();
    assert!(init_logs.iter().any(|l| l.text == "init done"));

    let (kind, text, _) = failure_of(&mut handler, b"panic");
    assert_eq!(kind, FailureKind::Trap, "{text}");
    // The replacement spins in init for seconds; this message may wait for
    // it only within its own time limit.
    let started = Instant::now();
    let report = handler.handle(&message(b"ordinary"));
    let elapsed = started.elapsed();
    assert!(
        elapsed < 2 * limits.timeout(),
        "a message took {elapsed:?} waiting for init"
    );
    let failure = report.outcome.expect_err("no instance is ready yet");
    assert_eq!(failure.kind, FailureKind::Init, "{}", failure.text);

    // Once the replacement is ready, its init logs come with the next report.
    std::thread::sleep(spin + Duration::from_secs(1));
    let report = handler.handle(&message(b"ordinary"));
    assert!(report.outcome.is_ok(), "{:?}", report.outcome);
    let texts: Vec<&str> = report.logs.iter().map(|l| l.text.as_str()).collect();
    assert!(
        texts.contains(&"init done"),
        "init logs were lost: {texts:?}"
    );
}

#[test]
fn huge_error_texts_are_cut_for_every_consumer() {
    let runtime = Runtime::new(&RuntimeOptions::default()).unwrap();
    // Time enough to build tens of MiB of text: sizes are tested here.
    let limits = Limits {
        memory_mib: 512,
        timeout_ms: 20_000,
        ..Limits::default()
    };
    let mut handler = start(&runtime, "bloat", &limits);
    let (kind, text, _) = failure_of(&mut handler, b"error 48");
    assert_eq!(kind, FailureKind::BadRecord);
    assert!(text.starts_with("bad xxx"), "{}", &text[..20]);
    assert!(
        text.len() <= MAX_FAILURE_TEXT_BYTES + '…'.len_utf8(),
        "{} bytes",
        text.len()
    );
    assert_handles_normally(&mut handler);

    let code = runtime.load_file(&guest("bloat"), &limits).unwrap();
    let failure = LiveHandler::new(
        Arc::new(code),
        vec![("init_error_mib".into(), "40".into())],
        None,
    )
    .unwrap_err();
    assert_eq!(failure.kind, FailureKind::Init);
    assert!(
        failure.text.contains("init says no"),
        "{}",
        &failure.text[..60]
    );
    assert!(failure.text.len() <= MAX_FAILURE_TEXT_BYTES + '…'.len_utf8());
}

#[test]
fn oversized_values_are_refused_while_lifted() {
    let runtime = Runtime::new(&RuntimeOptions::default()).unwrap();
    let limits = Limits {
        memory_mib: 1024,
        timeout_ms: 20_000,
        ..Limits::default()
    };
    let mut handler = start(&runtime, "bloat", &limits);
    // A save-name hint counts against the bytes of its action.
    let (kind, text, _) = failure_of(&mut handler, b"name 30");
    assert_eq!(kind, FailureKind::Limit, "{text}");
    assert!(text.contains("limits.max_action_kib"), "{text}");
    assert_handles_normally(&mut handler);
    // Empty headers cost nothing in bytes but have a cap of their own.
    let (kind, text, _) = failure_of(&mut handler, b"headers 100000");
    assert_eq!(kind, FailureKind::Limit, "{text}");
    assert!(text.contains("100000 headers"), "{text}");
    assert_handles_normally(&mut handler);
    // More than the host accepts in one call is stopped before it is copied.
    let (kind, text, _) = failure_of(&mut handler, b"error 200");
    assert_eq!(kind, FailureKind::Limit, "{text}");
    assert!(text.contains("more data in one call"), "{text}");
    assert_handles_normally(&mut handler);
}

#[test]
fn guest_text_cannot_forge_host_log_lines() {
    let runtime = Runtime::new(&RuntimeOptions::default()).unwrap();
    let mut handler = start(&runtime, "bloat", &Limits::default());
    let report = handler.handle(&message(b"forge"));
    let failure = report.outcome.expect_err("forge fails with a bad record");
    let mut texts = vec![failure.text];
    texts.extend(report.logs.into_iter().map(|l| l.text));
    // The failure, the `log` line, and stdout (split into lines by the host).
    assert!(texts.len() >= 3, "{texts:?}");
    for text in &texts {
        assert!(
            !text.chars().any(char::is_control),
            "control characters reach the host log: {text:?}"
        );
    }
    for text in &texts[..2] {
        assert!(
            text.starts_with("fine\\n2026-12-04") && text.contains("\\r\\u{1b}[2K"),
            "the forged line stays inside the guest's own line, escaped: {text:?}"
        );
    }
}

#[test]
fn component_files_are_read_with_a_bound() {
    let dir = tempfile::tempdir().unwrap();
    let zero = dir.path().join("zero.wasm");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let fifo = dir.path().join("fifo.wasm");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    for path in [zero, fifo] {
        let path2 = path.clone();
        let runtime_error = within(Duration::from_secs(10), move || {
            let runtime = Runtime::new(&RuntimeOptions::default()).unwrap();
            format!(
                "{:#}",
                runtime.load_file(&path2, &Limits::default()).unwrap_err()
            )
        });
        assert!(
            runtime_error.contains("not a regular file"),
            "{}: {runtime_error}",
            path.display()
        );
    }
}

/// The `.cwasm` files in a cache directory.
fn cached_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect()
}

#[test]
fn refused_component_is_never_compiled_or_cached() {
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().join("components");
    let runtime = Runtime::new(&RuntimeOptions {
        cache_dir: Some(dir.clone()),
        ..RuntimeOptions::default()
    })
    .unwrap();
    for name in ["outside", "no-handle"] {
        let error = runtime
            .load_file(&guest(name), &Limits::default())
            .unwrap_err();
        let text = format!("{error:#}");
        assert!(text.contains(&format!("{name}.wasm")), "{text}");
    }
    assert_eq!(cached_files(&dir), Vec::<PathBuf>::new());
}

#[test]
fn cache_directory_is_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().join("components");
    let runtime = Runtime::new(&RuntimeOptions {
        cache_dir: Some(dir.clone()),
        ..RuntimeOptions::default()
    })
    .unwrap();
    runtime
        .load_file(&guest("panic"), &Limits::default())
        .unwrap();
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    for file in cached_files(&dir) {
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}", file.display());
    }
}

#[test]
fn substituted_cache_artifact_is_refused() {
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().join("components");
    let options = RuntimeOptions {
        cache_dir: Some(dir.clone()),
        ..RuntimeOptions::default()
    };
    let limits = Limits::default();
    let first = Runtime::new(&options).unwrap();
    first.load_file(&guest("panic"), &limits).unwrap();
    let panic_file = cached_files(&dir).pop().unwrap();
    first.load_file(&guest("names"), &limits).unwrap();
    let names_file = cached_files(&dir)
        .into_iter()
        .find(|f| *f != panic_file)
        .unwrap();
    // A valid artifact of another component under this one's name.
    std::fs::copy(&names_file, &panic_file).unwrap();

    let second = Runtime::new(&options).unwrap();
    let code = second.load_file(&guest("panic"), &limits).unwrap();
    assert!(!code.info().from_cache, "the substituted artifact was used");
    let mut handler = LiveHandler::new(Arc::new(code), Vec::new(), None)
        .unwrap()
        .0;
    let (kind, text, _) = failure_of(&mut handler, b"panic");
    assert_eq!(kind, FailureKind::Trap, "it runs as `panic`: {text}");
    // Recompiled and cached again, it verifies.
    let third = Runtime::new(&options).unwrap();
    assert!(
        third
            .load_file(&guest("panic"), &limits)
            .unwrap()
            .info()
            .from_cache
    );
}

#[test]
fn cache_directory_others_can_write_is_not_used() {
    use std::os::unix::fs::PermissionsExt as _;
    let good = tempfile::tempdir().unwrap();
    let good_dir = good.path().join("components");
    let limits = Limits::default();
    Runtime::new(&RuntimeOptions {
        cache_dir: Some(good_dir.clone()),
        ..RuntimeOptions::default()
    })
    .unwrap()
    .load_file(&guest("panic"), &limits)
    .unwrap();

    // A shared directory that already holds an artifact under the right name.
    let shared = tempfile::tempdir().unwrap();
    let shared_dir = shared.path().join("components");
    std::fs::create_dir(&shared_dir).unwrap();
    std::fs::set_permissions(&shared_dir, std::fs::Permissions::from_mode(0o775)).unwrap();
    for file in cached_files(&good_dir) {
        std::fs::copy(&file, shared_dir.join(file.file_name().unwrap())).unwrap();
    }
    // With the key too, so only the directory's mode can refuse it.
    let _ = std::fs::copy(
        good.path().join("components.key"),
        shared.path().join("components.key"),
    );
    let runtime = Runtime::new(&RuntimeOptions {
        cache_dir: Some(shared_dir.clone()),
        ..RuntimeOptions::default()
    })
    .expect("a cache that cannot be used costs time, never the start");
    let code = runtime.load_file(&guest("panic"), &limits).unwrap();
    assert!(
        !code.info().from_cache,
        "an artifact from a directory others can write was used"
    );
}

#[test]
fn cache_that_cannot_be_created_costs_time_not_the_start() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let runtime = Runtime::new(&RuntimeOptions {
        cache_dir: Some(file.path().join("components")),
        ..RuntimeOptions::default()
    })
    .expect("the host starts without a cache");
    let code = runtime
        .load_file(&guest("panic"), &Limits::default())
        .unwrap();
    assert!(!code.info().from_cache);
}
