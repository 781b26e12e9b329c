//! Property tests of the host's parsers of untrusted or hand-written input:
//! the save-name sanitiser (names come from guests) and the config loader
//! (arbitrary bytes, and a valid config with lines dropped, duplicated or
//! damaged). No panic, and inputs are bounded so each case returns at once.
//! Case counts are fixed so CI time stays flat; set `PROPTEST_CASES` to run
//! more.

use std::path::{Component, Path};
use std::sync::OnceLock;

use alerthost::config::Config;
use alerthost::sink::sanitize_name;
use proptest::prelude::*;

/// A config that validates, as in the README.
const VALID: &str = r#"
[source]
bootstrap_servers = "127.0.0.1:9092"
topics = ["gcn.classic.voevent.FERMI_GBM_SUBTHRESH", "^gcn\\.notices\\..*"]
group_id = "my-archive"
start = "earliest"

[source.librdkafka]
"fetch.wait.max.ms" = "100"

[sinks.archive]
type = "file"
dir = "alerts"

[sinks.summaries]
type = "kafka"
topic = "my.filtered.alerts"

[[handler]]
name = "gbm-subthreshold"
component = "handler.wasm"
topics = ["gcn.classic.voevent.FERMI_GBM_SUBTHRESH"]
save_to = "archive"
forward_to = ["summaries"]
params = { min_reliability = "5" }
on_error = "dead-letter"

[handler.limits]
memory_mib = 64
timeout_ms = 250
"#;

/// Where the configs live: a directory holding the `handler.wasm` that
/// [`VALID`] names, so validation goes past the component check.
fn config_path() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(dir.path().join("handler.wasm"), b"\0asm").expect("write handler.wasm");
        dir
    });
    static PATH: OnceLock<std::path::PathBuf> = OnceLock::new();
    PATH.get_or_init(|| dir.path().join("alerthost.toml"))
}

fn load(text: &str) {
    let env = [("GCN_CLIENT_SECRET".to_owned(), "s".to_owned())];
    if let Ok(config) = toml::from_str::<Config>(text) {
        let _ = config.validate(config_path(), &env);
    }
}

/// A name a guest might send: path-like pieces, dots, separators, controls,
/// non-ASCII, very long runs.
fn hostile_name() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("..".to_owned()),
        Just(".".to_owned()),
        Just("/".to_owned()),
        Just("\\".to_owned()),
        Just("\0".to_owned()),
        Just(".alerthost-".to_owned()),
        Just("C:".to_owned()),
        "[a-z0-9._-]{0,20}",
        "\\PC{0,8}",
        "[\\x00-\\x1f\\x7f]{1,3}",
        "n{90,120}",
    ];
    prop::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn sanitized_names_stay_inside_the_sink(hint in hostile_name()) {
        if let Some(name) = sanitize_name(&hint) {
            let components: Vec<Component<'_>> = name.components().collect();
            prop_assert!(!components.is_empty(), "{hint:?} -> empty");
            prop_assert!(components.len() <= 4, "{hint:?} -> {name:?}");
            for component in components {
                let Component::Normal(part) = component else {
                    panic!("{hint:?} -> {name:?} has {component:?}");
                };
                let part = part.to_str().expect("ASCII names");
                prop_assert!(part.len() <= 100, "{hint:?} -> {part:?}");
                prop_assert!(!part.starts_with('.'), "{hint:?} -> {part:?}");
                prop_assert!(
                    part.bytes().all(|b| b.is_ascii_graphic() || b == b' '),
                    "{hint:?} -> {part:?}"
                );
            }
            let dir = Path::new("/sink");
            prop_assert!(dir.join(&name).starts_with(dir));
        }
    }

    #[test]
    fn sanitizer_never_panics_on_any_string(hint in "\\PC{0,300}") {
        let _ = sanitize_name(&hint);
    }

    #[test]
    fn config_loader_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        load(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn config_loader_never_panics_on_a_damaged_config(
        edits in prop::collection::vec((any::<usize>(), 0u8..4, "\\PC{0,24}"), 1..8),
    ) {
        let mut lines: Vec<String> = VALID.lines().map(str::to_owned).collect();
        for (at, op, text) in edits {
            let at = at % lines.len();
            match op {
                0 => {
                    lines.remove(at);
                    if lines.is_empty() {
                        lines.push(String::new());
                    }
                }
                1 => lines.insert(at, lines[at].clone()),
                2 => lines[at] = text,
                _ => {
                    let cut = lines[at].len() / 2;
                    let line = &mut lines[at];
                    while !line.is_char_boundary(cut.min(line.len())) {
                        line.pop();
                    }
                    line.truncate(cut.min(line.len()));
                    line.push_str(&text);
                }
            }
        }
        load(&lines.join("\n"));
    }
}

#[test]
fn the_valid_config_of_these_properties_validates() {
    let config: Config = toml::from_str(VALID).unwrap();
    let env = [("GCN_CLIENT_SECRET".to_owned(), "s".to_owned())];
    config.validate(config_path(), &env).unwrap();
}
