//! Handlers in Python and JavaScript behave like handlers in Rust:
//!
//! - the Python and JavaScript versions of the examples make the same
//!   decisions as the Rust ones on every sample alert, with the same actions;
//! - Python and JavaScript guests are sandboxed like Rust ones (time and
//!   memory limits, no files, no network);
//! - `alerthost new` scaffolds a project in each language that passes its own
//!   native test, builds with one command, and runs;
//! - the SDKs' and the examples' own native tests pass (`python3 -m unittest`,
//!   `node --test`).
//!
//! Everything goes through the `alerthost` binary (`alerthost test`,
//! `alerthost new`), as a handler author would use it.
//!
//! The guest toolchains come from `scripts/guest-toolchains.sh`; the Python
//! and JavaScript components from `examples/{python,js}/build.sh` and
//! `tests/guests-{py,js}/build.sh` (into their `dist/`). Run locally, this
//! test installs and builds whatever is missing or older than its sources;
//! under `CI` it fails instead, naming the commands to run first.
//!
//! Python and JavaScript components are 12 to 19 MB: the first run of each
//! compiles it (seconds in a release build of the host, minutes in a debug
//! one); the compiled code is cached in `<target>/alerthost-test-component-cache`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::SystemTime;

use alerthost_tests::alerthost_bin;
use serde_json::Value;

/// Relative tolerance for numbers in forwarded JSON: the languages print
/// floats their own way, and may compute the last bit differently.
const FLOAT_TOLERANCE: f64 = 1e-9;

/// Handler parameters, as `alerthost test --param KEY=VALUE` takes them.
type Params<'a> = &'a [(&'a str, &'a str)];

/// The folders of `tests/data/samples` that hold alerts.
const SAMPLE_DIRS: [&str; 3] = ["voevent", "json", "binary"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is inside the repository")
        .to_owned()
}

fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// `<target>/<profile>/deps/<test>` → `<target>`.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    exe.ancestors()
        .nth(3)
        .expect("the test executable lives in <target>/<profile>/deps")
        .to_owned()
}

/// A cache for compiled components shared by the tests' host processes, so
/// each large component is compiled once, and the user's cache is left alone.
fn component_cache() -> PathBuf {
    target_dir().join("alerthost-test-component-cache")
}

fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    assert!(
        output.status.success(),
        "{shown} failed ({})\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

// ---------------------------------------------------------------------------
// Toolchains and components

/// The languages a handler is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lang {
    Rust,
    Python,
    Js,
}

/// `componentize-py` as scripts/guest-toolchains.sh installs it.
fn componentize_py() -> PathBuf {
    repo().join("guest-sdk/python/.venv/bin/componentize-py")
}

/// The node_modules holding componentize-js, as scripts/guest-toolchains.sh
/// installs it.
fn js_node_modules() -> PathBuf {
    repo().join("guest-sdk/js/node_modules")
}

/// Install the Python and JavaScript toolchains once (locally), or check that
/// they are there (CI).
fn toolchains() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let present = componentize_py().is_file()
            && js_node_modules()
                .join("@bytecodealliance/componentize-js")
                .is_dir();
        if present {
            return;
        }
        assert!(
            !in_ci(),
            "the Python and JavaScript guest toolchains are not installed: run \
             scripts/guest-toolchains.sh before the tests"
        );
        run(&mut Command::new(
            repo().join("scripts/guest-toolchains.sh"),
        ));
    });
}

/// Newest modification time of the files under `paths` (recursively),
/// skipping build output and caches.
fn newest(paths: &[PathBuf]) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    let mut stack: Vec<PathBuf> = paths.to_vec();
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            let skip = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                matches!(n, "dist" | "node_modules" | "__pycache__" | ".venv")
                    || n.starts_with(".alerthost-build")
            });
            if !skip {
                stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            }
        } else if let Ok(modified) = meta.modified() {
            newest = newest.max(modified);
        }
    }
    newest
}

/// The components a build script writes, built (once per test process) when
/// missing or older than their sources; under CI, missing ones fail.
fn built(script: &str, outputs: &[PathBuf], sources: &[PathBuf]) {
    let stale = outputs.iter().any(|out| {
        std::fs::metadata(out)
            .and_then(|m| m.modified())
            .map_or(true, |built| built < newest(sources))
    });
    if !stale {
        return;
    }
    let missing: Vec<_> = outputs.iter().filter(|out| !out.is_file()).collect();
    if in_ci() {
        assert!(
            missing.is_empty(),
            "{missing:?} not built: run {script} before the tests"
        );
        return;
    }
    toolchains();
    run(Command::new(repo().join(script)).env("COMPONENTIZE_PY", componentize_py()));
}

/// The Python and JavaScript SDK sources and the WIT: a change to any makes
/// every Python or JavaScript component stale.
fn sdk_sources(lang: Lang) -> Vec<PathBuf> {
    let sdk = match lang {
        Lang::Python => vec![
            repo().join("guest-sdk/python/alerthost"),
            repo().join("guest-sdk/python/build.sh"),
        ],
        Lang::Js => vec![
            repo().join("guest-sdk/js/src"),
            repo().join("guest-sdk/js/build.mjs"),
        ],
        Lang::Rust => unreachable!("Rust components are built by cargo"),
    };
    sdk.into_iter().chain([repo().join("wit")]).collect()
}

/// The component of an example (`gbm_subthreshold`, `sky_region`) in a
/// language.
fn example(lang: Lang, name: &str) -> PathBuf {
    static PYTHON: OnceLock<()> = OnceLock::new();
    static JS: OnceLock<()> = OnceLock::new();
    let examples = repo().join("examples");
    match lang {
        Lang::Rust => alerthost_tests::example(name),
        Lang::Python | Lang::Js => {
            let (folder, once) = if lang == Lang::Python {
                ("python", &PYTHON)
            } else {
                ("js", &JS)
            };
            let dir = examples.join(folder);
            let outputs =
                ["gbm_subthreshold", "sky_region"].map(|n| dir.join(format!("dist/{n}.wasm")));
            once.get_or_init(|| {
                let mut sources = sdk_sources(lang);
                sources.extend([dir.join("gbm-subthreshold"), dir.join("sky-region")]);
                built(&format!("examples/{folder}/build.sh"), &outputs, &sources);
            });
            dir.join(format!("dist/{name}.wasm"))
        }
    }
}

/// The hostile test guest of a language.
fn hostile(lang: Lang) -> PathBuf {
    static PYTHON: OnceLock<()> = OnceLock::new();
    static JS: OnceLock<()> = OnceLock::new();
    let (folder, once) = match lang {
        Lang::Python => ("guests-py", &PYTHON),
        Lang::Js => ("guests-js", &JS),
        Lang::Rust => unreachable!("the Rust hostile guests are in tests/guests"),
    };
    let dir = repo().join("tests").join(folder);
    let out = dir.join("dist/hostile.wasm");
    once.get_or_init(|| {
        let mut sources = sdk_sources(lang);
        sources.push(dir.join("hostile"));
        built(
            &format!("tests/{folder}/build.sh"),
            std::slice::from_ref(&out),
            &sources,
        );
    });
    out
}

// ---------------------------------------------------------------------------
// Running `alerthost test`

/// What `alerthost test` printed and how it exited.
struct TestRun {
    /// One JSON object per message file, keyed by file name.
    lines: BTreeMap<String, Value>,
    code: Option<i32>,
    stderr: String,
}

fn alerthost_test(component: &Path, params: &[(&str, &str)], files: &[PathBuf]) -> TestRun {
    let mut cmd = Command::new(alerthost_bin());
    cmd.arg("test")
        .arg(component)
        .arg("--cache-dir")
        .arg(component_cache())
        .args(files)
        .env("ALERTHOST_LOG", "warn");
    for (key, value) in params {
        cmd.arg("--param").arg(format!("{key}={value}"));
    }
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", alerthost_bin().display()));
    let stdout = String::from_utf8(output.stdout).expect("alerthost test prints UTF-8");
    let lines = stdout
        .lines()
        .map(|line| {
            let value: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            let file = Path::new(value["file"].as_str().expect("every line names its file"));
            (
                file.file_name().unwrap().to_string_lossy().into_owned(),
                value,
            )
        })
        .collect();
    TestRun {
        lines,
        code: output.status.code(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Every sample alert, in name order.
fn samples() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in SAMPLE_DIRS {
        let dir = repo().join("tests/data/samples").join(dir);
        files.extend(std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()));
    }
    files.sort();
    assert_eq!(files.len(), 52, "the sample corpus changed");
    files
}

/// What a handler did with one message, without what legitimately differs
/// between languages (timing, version, logs, the forwarded bytes' exact
/// spelling): decision, error kind, and per action its kind, save name and
/// size, or forward sink and value (parsed when it is JSON).
fn outcome(line: &Value) -> Value {
    let actions: Vec<Value> = line["actions"]
        .as_array()
        .map(|actions| {
            actions
                .iter()
                .map(|a| match a["kind"].as_str() {
                    Some("save") => {
                        serde_json::json!({"kind": "save", "name": a["name"], "size": a["size"]})
                    }
                    _ => {
                        let value = match a["value"].as_str() {
                            Some(text) => {
                                serde_json::from_str(text).unwrap_or_else(|_| Value::from(text))
                            }
                            None => serde_json::json!({"unchanged, size": a["size"]}),
                        };
                        serde_json::json!({"kind": a["kind"], "sink": a["sink"], "value": value})
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    serde_json::json!({
        "decision": line["decision"],
        "error": line["error"]["kind"],
        "actions": actions,
    })
}

/// Whether two outcomes agree, numbers within [`FLOAT_TOLERANCE`].
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || (x - y).abs() <= FLOAT_TOLERANCE * x.abs().max(y.abs())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

// ---------------------------------------------------------------------------
// The tests

#[test]
fn python_and_javascript_sdks_and_examples_pass_their_native_tests() {
    let python = |dir: &str, args: &[&str]| {
        run(Command::new("python3")
            .args(["-m", "unittest"])
            .args(args)
            .arg("-q")
            .current_dir(repo().join(dir)));
    };
    python("guest-sdk/python", &["discover", "-s", "tests"]);
    python("examples/python/gbm-subthreshold", &[]);
    python("examples/python/sky-region", &[]);
    run(Command::new("node")
        .args(["--test", "test/"])
        .current_dir(repo().join("guest-sdk/js")));
    run(Command::new("node")
        .arg("--test")
        .current_dir(repo().join("examples/js")));
}

#[test]
fn python_and_javascript_examples_decide_like_rust_on_every_sample() {
    let files = samples();
    let cases: [(&str, Params); 5] = [
        ("gbm_subthreshold", &[("min_reliability", "2")]),
        ("gbm_subthreshold", &[]),
        (
            "sky_region",
            &[("ra", "0"), ("dec", "0"), ("radius", "180")],
        ),
        (
            "sky_region",
            &[("ra", "225"), ("dec", "-69.5"), ("radius", "0.1")],
        ),
        (
            "sky_region",
            &[
                ("ra", "184"),
                ("dec", "-6"),
                ("radius", "40"),
                ("sink", "near"),
            ],
        ),
    ];
    let mut kept = 0;
    for (name, params) in cases {
        let rust = alerthost_test(&example(Lang::Rust, name), params, &files);
        assert_eq!(
            rust.code,
            Some(0),
            "rust {name} {params:?}: {}",
            rust.stderr
        );
        assert_eq!(rust.lines.len(), files.len(), "rust {name}");
        kept += rust
            .lines
            .values()
            .filter(|l| l["decision"] != "drop")
            .count();
        for lang in [Lang::Python, Lang::Js] {
            let other = alerthost_test(&example(lang, name), params, &files);
            assert_eq!(
                other.code, rust.code,
                "{lang:?} {name} {params:?}: {}",
                other.stderr
            );
            assert_eq!(
                other.lines.len(),
                files.len(),
                "{lang:?} {name} {params:?}: {}",
                other.stderr
            );
            for (file, line) in &rust.lines {
                let (want, got) = (outcome(line), outcome(&other.lines[file]));
                assert!(
                    same(&want, &got),
                    "{lang:?} {name} {params:?} on {file}:\n  rust: {want}\n  {lang:?}: {got}"
                );
            }
        }
    }
    // Saves and forwards were compared, not only drops.
    assert!(kept >= 30, "only {kept} messages kept over all cases");
}

#[test]
fn python_and_javascript_examples_refuse_bad_parameters_like_rust() {
    let file = [repo().join("tests/data/samples/voevent/swift_bat_grb_pos_1118357.xml")];
    let cases: [(&str, Params, &str); 3] = [
        (
            "gbm_subthreshold",
            &[("min_reliability", "11")],
            "parameter `min_reliability` = 11 is out of range",
        ),
        (
            "sky_region",
            &[("dec", "0"), ("radius", "1")],
            "missing parameter `ra`",
        ),
        (
            "sky_region",
            &[
                ("ra", "1"),
                ("dec", "0"),
                ("radius", "1"),
                ("radius_deg", "1"),
            ],
            "unknown parameter `radius_deg`",
        ),
    ];
    for (name, params, expected) in cases {
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            let report = alerthost_test(&example(lang, name), params, &file);
            assert_eq!(
                report.code,
                Some(2),
                "{lang:?} {name} {params:?} was not refused: {}",
                report.stderr
            );
            assert!(
                report.stderr.contains(expected),
                "{lang:?} {name} {params:?}: {}",
                report.stderr
            );
        }
    }
}

#[test]
fn python_and_javascript_guests_are_sandboxed() {
    let dir = tempfile::tempdir().unwrap();
    // The probes that must be refused, then the limits, each followed by a
    // plain message the handler must still save (on a fresh instance after
    // a trap). Python and JavaScript run with the host's default limits.
    // JavaScript has no blocking sleep to try; Python's `time.sleep` waits
    // in a host call.
    for (lang, probes) in [
        (Lang::Python, &["passwd", "socket", "env", "sleep"][..]),
        (Lang::Js, &["passwd", "fetch"][..]),
    ] {
        let guest = hostile(lang);
        let files: Vec<PathBuf> = probes
            .iter()
            .chain(&["alloc", "hello", "loop", "hello"])
            .enumerate()
            .map(|(i, probe)| {
                let path = dir.path().join(format!("{lang:?}-{i:02}-{probe}.txt"));
                std::fs::write(&path, probe).unwrap();
                path
            })
            .collect();
        let report = alerthost_test(&guest, &[], &files);
        assert_eq!(
            report.code,
            Some(1),
            "{lang:?}: the loop and the allocation fail: {}",
            report.stderr
        );
        for file in &files {
            let line = &report.lines[&file.file_name().unwrap().to_string_lossy().into_owned()];
            let probe = std::fs::read_to_string(file).unwrap();
            match probe.as_str() {
                "loop" | "sleep" => {
                    assert_eq!(line["error"]["kind"], "timeout", "{lang:?} {probe}: {line}")
                }
                "alloc" => assert_eq!(line["error"]["kind"], "memory", "{lang:?} alloc: {line}"),
                "hello" => assert_eq!(line["decision"], "save", "{lang:?} recovers: {line}"),
                _ => {
                    // Refused with an error inside the guest, or stopped by a trap.
                    let found = line["actions"][0]["value"].as_str().unwrap_or_default();
                    let denied = found.starts_with("denied:") || line["error"]["kind"] == "trap";
                    assert!(denied, "{lang:?} {probe} was allowed: {line}");
                    assert!(
                        !found.contains("root:"),
                        "{lang:?} read /etc/passwd: {line}"
                    );
                }
            }
        }
    }
}

#[test]
fn new_projects_pass_their_tests_build_and_run_in_every_language() {
    toolchains();
    let dir = tempfile::tempdir().unwrap();
    let sample = repo().join("tests/data/samples/voevent/swift_bat_grb_pos_1118357.xml");
    for (lang, flag) in [
        (Lang::Rust, "rust"),
        (Lang::Python, "python"),
        (Lang::Js, "js"),
    ] {
        let name = format!("watch-{flag}");
        let project = dir.path().join(&name);
        let out = run(Command::new(alerthost_bin())
            .args(["new", "--lang", flag, &name, "--dir"])
            .arg(&project));
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains("build:") && said.contains("test:"), "{said}");
        assert!(
            std::fs::read_to_string(project.join("README.md"))
                .unwrap()
                .contains(&name)
        );
        let component = match lang {
            Lang::Rust => {
                // Native tests and the component share one target directory
                // across runs, so only the first run compiles the SDK.
                let target = target_dir().join("alerthost-test-new-rust");
                let cargo = |args: &[&str]| {
                    let mut cmd = Command::new(env!("CARGO"));
                    cmd.args(args)
                        .current_dir(&project)
                        .env("CARGO_TARGET_DIR", &target)
                        .env_remove("RUSTFLAGS")
                        .env_remove("CARGO_ENCODED_RUSTFLAGS")
                        .env_remove("CARGO_BUILD_TARGET");
                    cmd
                };
                let host = String::from_utf8(run(Command::new("rustc").arg("-vV")).stdout).unwrap();
                let host = host
                    .lines()
                    .find_map(|l| l.strip_prefix("host: "))
                    .unwrap()
                    .to_owned();
                run(&mut cargo(&["test", "--quiet", "--target", &host]));
                run(&mut cargo(&["build", "--quiet", "--release"]));
                target.join("wasm32-wasip2/release/watch_rust.wasm")
            }
            Lang::Python => {
                run(Command::new("python3")
                    .args(["-m", "unittest", "-q"])
                    .current_dir(&project));
                run(Command::new(project.join("build.sh"))
                    .env("COMPONENTIZE_PY", componentize_py()));
                project.join(format!("dist/{name}.wasm"))
            }
            Lang::Js => {
                run(Command::new("node").arg("--test").current_dir(&project));
                run(Command::new(project.join("build.sh"))
                    .env("ALERTHOST_JS_NODE_MODULES", js_node_modules()));
                project.join(format!("dist/{name}.wasm"))
            }
        };
        let result = alerthost_test(&component, &[], std::slice::from_ref(&sample));
        assert_eq!(result.code, Some(0), "{lang:?}: {}", result.stderr);
        let line = &result.lines["swift_bat_grb_pos_1118357.xml"];
        assert_eq!(line["decision"], "save", "{lang:?}: {line}");
    }
}
