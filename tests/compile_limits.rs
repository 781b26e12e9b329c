//! Compilation is bounded: a component that is costly to compile is refused
//! at the handler's `max_compile_ms` or `max_compile_mib`, with an error
//! naming the file, the limit and the key that raises it; nothing is cached
//! for it; the host's own memory stays bounded while it tries; and under
//! `run`, a hot swap to it is refused while every handler keeps running
//! (against a real broker: start one with `scripts/kafka.sh start` and export
//! `ALERTHOST_KAFKA_BOOTSTRAP`; without it that test is skipped, and under
//! `CI` it fails).
//!
//! The costly component is made here: a valid handler-world component whose
//! core module also holds thousands of large functions that are never
//! called, each keeping many values alive at once, which the compiler must
//! still translate and allocate registers for.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alerthost::bindings::Message;
use alerthost::runtime::{Limits, LiveHandler, Runtime, RuntimeOptions};
use alerthost_tests::{
    Host, Outgoing, example, files_under, handler_world_component, handler_world_types,
    proc_status_bytes, random_group, random_topic, require_kafka, runtime_options, start_host,
    toml_str, write_config,
};
use wasm_encoder::{
    CodeSection, ConstExpr, ExportKind, ExportSection, Function, FunctionSection, GlobalSection,
    GlobalType, Instruction, MemorySection, MemoryType, Module, ValType,
};

/// A working handler-world component that drops every message (`init` and
/// `handle` return a pointer to zeroed memory: `ok`, and `ok` with no
/// actions; `cabi_realloc` bumps a pointer), plus `extra` functions of type
/// `(i64) -> i64` that are never called.
fn handler_component(extra: &[Function]) -> Vec<u8> {
    use ValType::{I32, I64};
    let mut types = handler_world_types();
    // the costly ones: (i64) -> i64
    types.ty().function([I64], [I64]);

    let mut function_section = FunctionSection::new();
    for ty in 0..3 {
        function_section.function(ty);
    }
    for _ in extra {
        function_section.function(3);
    }
    let mut memories = MemorySection::new();
    memories.memory(MemoryType {
        minimum: 4,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    let mut exports = ExportSection::new();
    exports.export("memory", ExportKind::Memory, 0);
    exports.export("init", ExportKind::Func, 0);
    exports.export("handle", ExportKind::Func, 1);
    exports.export("cabi_realloc", ExportKind::Func, 2);

    // The bump pointer of `cabi_realloc`, above the zeroed results.
    let mut globals = GlobalSection::new();
    globals.global(
        GlobalType {
            val_type: I32,
            mutable: true,
            shared: false,
        },
        &ConstExpr::i32_const(1024),
    );

    let mut code = CodeSection::new();
    for result in [16, 32] {
        let mut zeroed = Function::new([]);
        zeroed.instruction(&Instruction::I32Const(result));
        zeroed.instruction(&Instruction::End);
        code.function(&zeroed);
    }
    let mut realloc = Function::new([]);
    for instruction in [
        Instruction::GlobalGet(0),
        Instruction::GlobalGet(0),
        Instruction::LocalGet(3),
        Instruction::I32Add,
        Instruction::I32Const(7),
        Instruction::I32Add,
        Instruction::I32Const(-8),
        Instruction::I32And,
        Instruction::GlobalSet(0),
        Instruction::End,
    ] {
        realloc.instruction(&instruction);
    }
    code.function(&realloc);
    for body in extra {
        code.function(body);
    }

    let mut module = Module::new();
    module
        .section(&types)
        .section(&function_section)
        .section(&memories)
        .section(&globals)
        .section(&exports)
        .section(&code);
    handler_world_component(module.finish(), false)
}

/// `functions` functions of `steps` multiply steps over `locals` locals,
/// each keeping all its locals alive to the end.
fn multiply_functions(functions: u32, locals: u32, steps: u32) -> Vec<Function> {
    use ValType::I64;
    (0..functions)
        .map(|f| {
            let mut body = Function::new([(locals, I64)]);
            // Every local starts from the parameter, so none is constant.
            for local in 1..=locals {
                body.instruction(&Instruction::LocalGet(0));
                body.instruction(&Instruction::I64Const(i64::from(local + f)));
                body.instruction(&Instruction::I64Add);
                body.instruction(&Instruction::LocalSet(local));
            }
            for step in 0..steps {
                let a = 1 + (step * 7 + f) % locals;
                let b = 1 + (step * 13 + 5) % locals;
                let c = 1 + (step * 29 + 3) % locals;
                body.instruction(&Instruction::LocalGet(a));
                body.instruction(&Instruction::LocalGet(b));
                body.instruction(&Instruction::I64Mul);
                body.instruction(&Instruction::LocalSet(c));
            }
            // Use every local, so none of the work is dead.
            body.instruction(&Instruction::LocalGet(1));
            for local in 2..=locals {
                body.instruction(&Instruction::LocalGet(local));
                body.instruction(&Instruction::I64Xor);
            }
            body.instruction(&Instruction::End);
            body
        })
        .collect()
}

/// A working handler component with `functions` multiply functions.
fn component_with_functions(functions: u32, locals: u32, steps: u32) -> Vec<u8> {
    handler_component(&multiply_functions(functions, locals, steps))
}

/// A component of 2 MB that takes the compiler about 400 MiB and 8 s of CPU
/// (release build) to compile: one function of 300 000 multiply steps over
/// 64 live locals. The examples compile in under 100 MiB and 0.3 s.
fn costly_component() -> Vec<u8> {
    component_with_functions(1, 64, 300_000)
}

/// A runtime that compiles in a child process of the `alerthost` binary,
/// as the host does (see [`runtime_options`]), with a cache in `cache`.
fn bounded_runtime(cache: &Path) -> Runtime {
    Runtime::new(&RuntimeOptions {
        cache_dir: Some(cache.to_owned()),
        ..runtime_options()
    })
    .unwrap()
}

/// The compiled artifacts in a cache directory.
fn artifacts(cache: &Path) -> Vec<PathBuf> {
    files_under(cache)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect()
}

/// This process's resident set now, in bytes.
fn rss() -> u64 {
    proc_status_bytes("VmRSS")
}

/// Run `f`, sampling this process's resident set every 5 ms; its result
/// and the largest growth of the resident set seen while it ran.
fn rss_growth_during<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let before = rss();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut peak = before;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss());
                std::thread::sleep(Duration::from_millis(5));
            }
            peak.max(rss())
        });
        let result = f();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let peak = sampler.join().unwrap();
        (result, peak.saturating_sub(before))
    })
}

#[test]
fn costly_component_is_refused_at_the_compile_memory_limit_and_host_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let runtime = bounded_runtime(&cache);
    let path = dir.path().join("costly.wasm");
    std::fs::write(&path, costly_component()).unwrap();
    // Enough for every example, far from what the costly one needs.
    let limits = Limits {
        max_compile_mib: 256,
        ..Limits::default()
    };

    let (result, growth) = rss_growth_during(|| runtime.load_file(&path, &limits));
    let text = format!("{:#}", result.unwrap_err());
    assert!(text.contains("costly.wasm"), "{text}");
    assert!(text.contains("256 MiB"), "{text}");
    assert!(text.contains("max_compile_mib"), "{text}");
    assert!(artifacts(&cache).is_empty(), "{:?}", artifacts(&cache));
    // Compiling it in the host's own process takes about 400 MiB.
    assert!(
        growth < 64 << 20,
        "the host's resident set grew by {} MiB while the component was compiled",
        growth >> 20
    );

    // The same limit lets an ordinary handler compile, and it is cached.
    let code = runtime.load_file(&example("sky_region"), &limits).unwrap();
    assert!(!code.info().from_cache);
    assert_eq!(artifacts(&cache).len(), 1);
}

#[test]
fn the_costly_shape_is_a_working_handler() {
    // The same shape, small enough to compile quickly: what is refused
    // above is refused for what compiling it costs, nothing else.
    let dir = tempfile::tempdir().unwrap();
    let runtime = bounded_runtime(&dir.path().join("cache"));
    let code = runtime
        .load_bytes(&component_with_functions(1, 64, 1000), &Limits::default())
        .unwrap();
    let params = vec![("sink".to_owned(), "out".to_owned())];
    let (mut handler, _) = LiveHandler::new(Arc::new(code), params, None).unwrap();
    let report = handler.handle(&Message {
        topic: "t".into(),
        partition: 0,
        offset: 0,
        timestamp: None,
        key: None,
        value: b"an alert".to_vec(),
        headers: Vec::new(),
    });
    assert_eq!(report.outcome.unwrap().len(), 0, "it drops the message");
}

#[test]
fn component_the_compiler_finds_invalid_is_refused_with_its_reason() {
    // A function of type (i64) -> i64 that returns nothing: the component
    // parses, and only validation while compiling finds the fault.
    let mut returns_nothing = Function::new([]);
    returns_nothing.instruction(&Instruction::End);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let runtime = bounded_runtime(&cache);
    let error = runtime
        .load_bytes(&handler_component(&[returns_nothing]), &Limits::default())
        .unwrap_err();
    let text = format!("{error:#}");
    assert!(text.contains("not a valid component"), "{text}");
    assert!(text.contains("type mismatch"), "{text}");
    assert!(!text.contains("max_compile"), "not a limit: {text}");
    assert!(artifacts(&cache).is_empty(), "{:?}", artifacts(&cache));
}

#[test]
fn costly_component_is_stopped_at_the_compile_time_limit_and_not_cached() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let runtime = bounded_runtime(&cache);
    let path = dir.path().join("costly.wasm");
    std::fs::write(&path, costly_component()).unwrap();
    let limits = Limits {
        max_compile_ms: 1000,
        ..Limits::default()
    };

    let started = Instant::now();
    let error = runtime.load_file(&path, &limits).unwrap_err();
    let took = started.elapsed();
    let text = format!("{error:#}");
    assert!(text.contains("costly.wasm"), "{text}");
    assert!(text.contains("1000 ms"), "{text}");
    assert!(text.contains("max_compile_ms"), "{text}");
    // Compiling it to the end takes ten times the limit or more.
    assert!(
        took < Duration::from_secs(5),
        "the load returned after {took:?}, not at the 1 s limit"
    );
    assert!(artifacts(&cache).is_empty(), "{:?}", artifacts(&cache));
}

#[test]
fn examples_compile_in_the_bounded_process_under_default_limits() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = bounded_runtime(&dir.path().join("cache"));
    let alert = Message {
        topic: "gcn.classic.voevent.FERMI_GBM_ALERT".into(),
        partition: 0,
        offset: 0,
        timestamp: None,
        key: None,
        value: std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("data/samples/voevent/fermi_gbm_alert_792135758.xml"),
        )
        .unwrap(),
        headers: Vec::new(),
    };
    for (name, params) in [
        ("save_all", vec![]),
        ("gbm_subthreshold", vec![]),
        (
            "sky_region",
            vec![
                ("ra".to_owned(), "225".to_owned()),
                ("dec".to_owned(), "-69.5".to_owned()),
                ("radius".to_owned(), "1".to_owned()),
            ],
        ),
    ] {
        let code = runtime
            .load_file(&example(name), &Limits::default())
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert!(!code.info().from_cache, "{name}");
        let (mut handler, _) = LiveHandler::new(Arc::new(code), params, None)
            .unwrap_or_else(|f| panic!("{name}: {f}"));
        let report = handler.handle(&alert);
        assert!(report.outcome.is_ok(), "{name}: {:?}", report.outcome.err());
    }
}

/// The values each handler forwarded to the `stdout` sink so far, with the
/// version that forwarded them: (handler, version, value).
fn forwarded(host: &Host) -> Vec<(String, String, String)> {
    let out = host.stdout();
    // The last line may still be being written.
    let complete = &out[..out.rfind('\n').map_or(0, |i| i + 1)];
    complete
        .lines()
        .map(|line| {
            let json: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
            let text = |key: &str| json[key].as_str().unwrap_or_default().to_owned();
            (text("handler"), text("version"), text("value"))
        })
        .collect()
}

/// Wait until both handlers have forwarded `value`; the versions that did.
fn wait_forwarded_by_both(host: &mut Host, value: &str) -> Vec<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut by: Vec<(String, String)> = forwarded(host)
            .into_iter()
            .filter(|(_, _, v)| v == value)
            .map(|(handler, version, _)| (handler, version))
            .collect();
        by.sort();
        if by.len() >= 2 {
            return by;
        }
        host.assert_running();
        assert!(
            Instant::now() < deadline,
            "`{value}` was not forwarded by both handlers: {by:?}\n{}",
            host.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn hot_swap_to_a_costly_component_is_refused_and_every_handler_keeps_running() {
    let kafka = require_kafka!();
    let topic = random_topic();
    kafka.create_topic(&topic, 1);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    // Two handlers running the `poison` guest, which forwards every message
    // to the `stdout` sink; `swapped` has a compile memory limit the guest
    // fits in and the costly component does not.
    let guest =
        std::fs::read(Path::new(env!("ALERTHOST_TEST_GUESTS")).join("poison.wasm")).unwrap();
    let steady = dir.path().join("steady.wasm");
    let swapped = dir.path().join("swapped.wasm");
    std::fs::write(&steady, &guest).unwrap();
    std::fs::write(&swapped, &guest).unwrap();
    let handler = |name: &str, component: &Path, limits: &str| {
        format!(
            r#"
[[handler]]
name = {name}
component = {component}
topics = [{topic}]
forward_to = ["out"]
params = {{ sink = "out" }}
{limits}
"#,
            name = toml_str(name),
            component = toml_str(component.to_str().unwrap()),
            topic = toml_str(&topic),
        )
    };
    let config = write_config(
        dir.path(),
        &format!(
            r#"[source]
bootstrap_servers = {servers}
topics = [{topic}]
group_id = {group}

[sinks.out]
type = "stdout"

[runtime]
cache_dir = {cache}
{steady}{swapped}"#,
            servers = toml_str(kafka.servers()),
            topic = toml_str(&topic),
            group = toml_str(random_group()),
            cache = toml_str(cache.to_str().unwrap()),
            steady = handler("steady", &steady, ""),
            swapped = handler(
                "swapped",
                &swapped,
                "[handler.limits]\nmax_compile_mib = 256"
            ),
        ),
    );
    let mut host = start_host(&config, &[]);
    host.wait_for_stderr("partitions assigned", Duration::from_secs(60));
    kafka.produce(&topic, &[Outgoing::new(0, "before")]);
    let before = wait_forwarded_by_both(&mut host, "before");
    let version = before[0].1.clone();
    assert_eq!(
        before,
        [
            ("steady".into(), version.clone()),
            ("swapped".into(), version.clone())
        ]
    );
    assert_eq!(artifacts(&cache).len(), 1, "{:?}", artifacts(&cache));

    // Deployed the way a deploy does it: beside, then renamed over.
    let tmp = dir.path().join("swapped.wasm.new");
    std::fs::write(&tmp, costly_component()).unwrap();
    std::fs::rename(&tmp, &swapped).unwrap();
    host.wait_for_stderr("rejected", Duration::from_secs(60));
    let stderr = host.stderr();
    let rejected = stderr.lines().find(|l| l.contains("rejected")).unwrap();
    for needle in ["`swapped`", "swapped.wasm", "256 MiB", "max_compile_mib"] {
        assert!(rejected.contains(needle), "no {needle:?} in: {rejected}");
    }

    kafka.produce(&topic, &[Outgoing::new(0, "after")]);
    let after = wait_forwarded_by_both(&mut host, "after");
    assert_eq!(
        after, before,
        "both handlers run the version they ran before"
    );
    assert!(!stderr.contains("handler swapped"), "{stderr}");
    assert_eq!(artifacts(&cache).len(), 1, "{:?}", artifacts(&cache));
    host.stop_cleanly();
}

/// The `nice` value of a process or thread, from `/proc/<path>/stat`.
fn nice_of(stat: &Path) -> Option<i64> {
    let text = std::fs::read_to_string(stat).ok()?;
    // `pid (comm) state ppid ...`: `comm` may hold spaces, so count the
    // fields after its closing parenthesis; nice is field 19 of the line.
    let after = &text[text.rfind(')')? + 2..];
    after.split_whitespace().nth(16)?.parse().ok()
}

/// The compiling children of this process, by their command line.
fn compiler_children() -> Vec<PathBuf> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| {
            let dir = entry.ok()?.path();
            let status = std::fs::read_to_string(dir.join("status")).ok()?;
            let ppid = status.lines().find_map(|l| l.strip_prefix("PPid:"))?.trim();
            let cmdline = std::fs::read(dir.join("cmdline")).ok()?;
            let compiles = cmdline
                .split(|b| *b == 0)
                .any(|arg| arg == alerthost::runtime::COMPILE_COMMAND.as_bytes());
            (ppid == me && compiles).then_some(dir)
        })
        .collect()
}

/// Compiling competes with the workers only for the CPU they leave: the
/// compiler process and every one of its threads run `COMPILE_NICE` nicer
/// than the host.
#[test]
fn the_compiler_process_runs_at_a_lower_priority_than_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = bounded_runtime(&dir.path().join("cache"));
    let host_nice = nice_of(Path::new("/proc/thread-self/stat")).unwrap();
    let seen = std::thread::scope(|scope| {
        let compiling = scope.spawn(|| {
            runtime
                .load_bytes(
                    &component_with_functions(1, 64, 100_000),
                    &Limits::default(),
                )
                .map(|_| ())
        });
        let mut seen = Vec::new();
        while !compiling.is_finished() && seen.is_empty() {
            for child in compiler_children() {
                // Its compiler threads start after it lowers its priority:
                // wait for them, then read every thread's.
                std::thread::sleep(Duration::from_millis(300));
                let threads: Vec<i64> = std::fs::read_dir(child.join("task"))
                    .into_iter()
                    .flatten()
                    .filter_map(|t| nice_of(&t.ok()?.path().join("stat")))
                    .collect();
                seen.extend(threads);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        compiling.join().unwrap().unwrap();
        seen
    });
    assert!(!seen.is_empty(), "no compiler process was seen");
    let want = (host_nice + i64::from(alerthost::runtime::COMPILE_NICE)).min(19);
    assert!(
        seen.iter().all(|nice| *nice == want),
        "compiler threads' nice values {seen:?}, want {want}"
    );
}
