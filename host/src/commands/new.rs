//! `alerthost new`: scaffold a handler project in Rust, Python or JavaScript.
//!
//! The project is self-contained: this binary carries the SDK of each
//! language and the WIT it was built with, and writes them into the project,
//! so a project builds in any directory of any machine with only the host
//! installed (and the language's own tools, which its build script installs
//! from their registries, pinned). Every project builds with `./build.sh`
//! into `dist/NAME.wasm` and tests natively with its language's plain test
//! command.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};

use crate::cli::EXIT_OK;

/// The componentize-py version Python projects are built with.
const COMPONENTIZE_PY_VERSION: &str = "0.25.1";
/// The componentize-js version JavaScript projects are built with (the rest
/// of the toolchain is pinned by the SDK's package-lock.json).
const COMPONENTIZE_JS_VERSION: &str = "0.23.0";

/// The WIT contract, vendored into every project.
const WIT: &str = include_str!("../../../wit/handler.wit");
/// The version of the WIT package, for the projects' READMEs.
const WIT_VERSION: &str = "0.2.0";
/// The sample message every project tests with: a Swift BAT position VOEvent.
const SAMPLE: &[u8] =
    include_bytes!("../../../tests/data/samples/voevent/swift_bat_grb_pos_1118357.xml");

/// The Rust SDK's manifest and the workspace manifest its `workspace = true`
/// entries refer to: the vendored crate gets the resolved values.
const RUST_SDK_MANIFEST: &str = include_str!("../../../guest-sdk/Cargo.toml");
const WORKSPACE_MANIFEST: &str = include_str!("../../../Cargo.toml");
/// The workspace's lock file: a new Rust project starts from the versions the
/// SDK was tested with (cargo drops the entries the project does not use).
const WORKSPACE_LOCK: &str = include_str!("../../../Cargo.lock");

/// (path in the project, contents) of the Rust SDK, less its manifest.
const RUST_SDK: &[(&str, &str)] = &[
    (
        "alerthost-guest/README.md",
        include_str!("../../../guest-sdk/README.md"),
    ),
    (
        "alerthost-guest/src/lib.rs",
        include_str!("../../../guest-sdk/src/lib.rs"),
    ),
    (
        "alerthost-guest/src/glue.rs",
        include_str!("../../../guest-sdk/src/glue.rs"),
    ),
    (
        "alerthost-guest/src/log.rs",
        include_str!("../../../guest-sdk/src/log.rs"),
    ),
    (
        "alerthost-guest/src/types.rs",
        include_str!("../../../guest-sdk/src/types.rs"),
    ),
    (
        "alerthost-guest/src/payload.rs",
        include_str!("../../../guest-sdk/src/payload.rs"),
    ),
    (
        "alerthost-guest/src/payload/classic.rs",
        include_str!("../../../guest-sdk/src/payload/classic.rs"),
    ),
    (
        "alerthost-guest/src/payload/json.rs",
        include_str!("../../../guest-sdk/src/payload/json.rs"),
    ),
    (
        "alerthost-guest/src/payload/voevent.rs",
        include_str!("../../../guest-sdk/src/payload/voevent.rs"),
    ),
    (
        "alerthost-guest/src/state.rs",
        include_str!("../../../guest-sdk/src/state.rs"),
    ),
    (
        "alerthost-guest/src/testing.rs",
        include_str!("../../../guest-sdk/src/testing.rs"),
    ),
];

/// (path in the project, contents) of the Python SDK.
const PYTHON_SDK: &[(&str, &str)] = &[
    (
        "alerthost/README.md",
        include_str!("../../../guest-sdk/python/README.md"),
    ),
    (
        "alerthost/__init__.py",
        include_str!("../../../guest-sdk/python/alerthost/__init__.py"),
    ),
    (
        "alerthost/payload.py",
        include_str!("../../../guest-sdk/python/alerthost/payload.py"),
    ),
    (
        "alerthost/_component.py",
        include_str!("../../../guest-sdk/python/alerthost/_component.py"),
    ),
    (
        "alerthost/state.py",
        include_str!("../../../guest-sdk/python/alerthost/state.py"),
    ),
    (
        "alerthost/testing.py",
        include_str!("../../../guest-sdk/python/alerthost/testing.py"),
    ),
    (
        "alerthost/build.sh",
        include_str!("../../../guest-sdk/python/build.sh"),
    ),
];

/// (path in the project, contents) of the JavaScript SDK, with the manifest
/// and lock file its toolchain is installed from.
const JS_SDK: &[(&str, &str)] = &[
    (
        "alerthost/README.md",
        include_str!("../../../guest-sdk/js/README.md"),
    ),
    (
        "alerthost/index.js",
        include_str!("../../../guest-sdk/js/src/index.js"),
    ),
    (
        "alerthost/payload.js",
        include_str!("../../../guest-sdk/js/src/payload.js"),
    ),
    (
        "alerthost/xml.js",
        include_str!("../../../guest-sdk/js/src/xml.js"),
    ),
    (
        "alerthost/component.js",
        include_str!("../../../guest-sdk/js/src/component.js"),
    ),
    (
        "alerthost/state.js",
        include_str!("../../../guest-sdk/js/src/state.js"),
    ),
    (
        "alerthost/testing.js",
        include_str!("../../../guest-sdk/js/src/testing.js"),
    ),
    (
        "alerthost/state-host.js",
        include_str!("../../../guest-sdk/js/src/state-host.js"),
    ),
    (
        "alerthost/build.mjs",
        include_str!("../../../guest-sdk/js/build.mjs"),
    ),
    (
        "alerthost/toolchain/package.json",
        include_str!("../../../guest-sdk/js/package.json"),
    ),
    (
        "alerthost/toolchain/package-lock.json",
        include_str!("../../../guest-sdk/js/package-lock.json"),
    ),
];

/// The language of a new handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust, with the alerthost-guest crate (cargo, wasm32-wasip2).
    Rust,
    /// Python, with componentize-py.
    Python,
    /// JavaScript, with componentize-js.
    Js,
}

/// `alerthost new`.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// Name of the handler: a letter, then letters, digits, `-` or `_`.
    pub name: String,
    /// Language of the handler.
    #[arg(long, value_enum)]
    pub lang: Lang,
    /// Directory to create (it must not exist, or be empty); default ./NAME.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Write the project and say how to build and test it.
pub fn run(args: &NewArgs) -> anyhow::Result<ExitCode> {
    check_name(&args.name)?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!("{} already exists and is not empty", dir.display());
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))?;

    let files = match args.lang {
        Lang::Rust => rust_files(&args.name)?,
        Lang::Python => python_files(&args.name),
        Lang::Js => js_files(&args.name),
    };
    for file in &files {
        let path = dir.join(file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, &file.contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
        if file.executable {
            make_executable(&path)?;
        }
    }

    let test = match args.lang {
        Lang::Rust => "cargo test",
        Lang::Python => "python3 -m unittest",
        Lang::Js => "node --test",
    };
    let component = format!("dist/{}.wasm", args.name);
    println!("created {}", dir.display());
    println!("  build:  ./build.sh  (writes {component})");
    println!("  test:   {test}");
    println!("  try:    alerthost test {component} samples/");
    println!("  docs:   README.md");
    Ok(ExitCode::from(EXIT_OK))
}

/// One file of a new project.
struct File {
    path: &'static str,
    contents: Vec<u8>,
    executable: bool,
}

impl File {
    fn text(path: &'static str, contents: String) -> Self {
        File {
            path,
            contents: contents.into_bytes(),
            executable: false,
        }
    }

    fn script(path: &'static str, contents: String) -> Self {
        File {
            path,
            contents: contents.into_bytes(),
            executable: true,
        }
    }
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        bail!(
            "`{name}` is not a handler name: use a letter, then letters, digits, `-` or `_` \
             (it names the crate, package and component)"
        );
    }
    Ok(())
}

/// Replace every `{{key}}` of `template`.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    values
        .iter()
        .fold(template.to_owned(), |text, (key, value)| {
            text.replace(&format!("{{{{{key}}}}}"), value)
        })
}

/// `my-handler` → `MyHandler`.
fn type_name(name: &str) -> String {
    name.split(['-', '_'])
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

fn rust_files(name: &str) -> anyhow::Result<Vec<File>> {
    let crate_name = name.replace('-', "_");
    let type_name = type_name(name);
    let values = [
        ("name", name),
        ("crate_name", crate_name.as_str()),
        ("type_name", type_name.as_str()),
        ("wit_version", WIT_VERSION),
        ("host_version", env!("CARGO_PKG_VERSION")),
    ];
    let mut files = vec![
        File::text(
            "Cargo.toml",
            fill(include_str!("../../templates/rust/Cargo.toml"), &values),
        ),
        File::text("Cargo.lock", WORKSPACE_LOCK.to_owned()),
        File::text(
            "src/lib.rs",
            fill(include_str!("../../templates/rust/lib.rs"), &values),
        ),
        File::script(
            "build.sh",
            fill(include_str!("../../templates/rust/build.sh"), &values),
        ),
        File::text(
            "README.md",
            fill(include_str!("../../templates/rust/README.md"), &values),
        ),
        File::text(
            ".gitignore",
            include_str!("../../templates/rust/gitignore").to_owned(),
        ),
        File::text("alerthost-guest/Cargo.toml", vendored_sdk_manifest()?),
        File::text("wit/handler.wit", WIT.to_owned()),
        sample(),
    ];
    files.extend(vendored(RUST_SDK));
    Ok(files)
}

/// The Rust SDK's manifest with every `workspace = true` entry replaced by
/// the workspace's value (dependencies keep their `=` pins), so the vendored
/// crate stands alone.
fn vendored_sdk_manifest() -> anyhow::Result<String> {
    use toml::{Table, Value};
    let mut manifest: Table = RUST_SDK_MANIFEST.parse().context("guest-sdk/Cargo.toml")?;
    let workspace: Table = WORKSPACE_MANIFEST.parse().context("Cargo.toml")?;
    let inherited = |section: &str| -> Table {
        workspace
            .get("workspace")
            .and_then(|w| w.get(section))
            .and_then(Value::as_table)
            .cloned()
            .unwrap_or_default()
    };
    let (package, dependencies) = (inherited("package"), inherited("dependencies"));
    let from_workspace =
        |value: &Value| value.get("workspace").and_then(Value::as_bool) == Some(true);
    manifest.remove("lints");
    // Only `src/` is vendored, so the SDK's own tests and what they need
    // stay behind.
    manifest.remove("dev-dependencies");
    for (section, source) in [("package", &package), ("dependencies", &dependencies)] {
        let Some(Value::Table(entries)) = manifest.get_mut(section) else {
            continue;
        };
        for (key, value) in entries.iter_mut() {
            if !from_workspace(value) {
                continue;
            }
            let shared = source
                .get(key)
                .with_context(|| format!("`{section}.{key}` is not in [workspace.{section}]"))?;
            let mut resolved = match (shared, section) {
                (Value::String(version), "dependencies") => {
                    let mut table = Table::new();
                    table.insert("version".into(), Value::String(version.clone()));
                    Value::Table(table)
                }
                (shared, _) => shared.clone(),
            };
            // Keys next to `workspace = true` add to the shared entry
            // (`features` extend the workspace's list).
            if let (Value::Table(own), Value::Table(resolved)) = (&*value, &mut resolved) {
                for (own_key, own_value) in own.iter().filter(|(k, _)| *k != "workspace") {
                    match (resolved.get_mut(own_key), own_value) {
                        (Some(Value::Array(shared)), Value::Array(more)) => {
                            shared.extend(more.iter().cloned());
                        }
                        _ => {
                            resolved.insert(own_key.clone(), own_value.clone());
                        }
                    }
                }
            }
            *value = resolved;
        }
    }
    // [package] first, as people write it (a Table serializes in key order).
    let mut text = format!(
        "# The alerthost-guest SDK for alerthost:handler@{WIT_VERSION}, vendored by \
         `alerthost new` {}.\n\n",
        env!("CARGO_PKG_VERSION")
    );
    for section in ["package", "dependencies"] {
        if let Some(table) = manifest.remove(section) {
            text.push_str(&toml::to_string(&Table::from_iter([(
                section.to_owned(),
                table,
            )]))?);
            text.push('\n');
        }
    }
    text.push_str(&toml::to_string(&manifest)?);
    Ok(text)
}

fn python_files(name: &str) -> Vec<File> {
    let values = [
        ("name", name),
        ("componentize_py_version", COMPONENTIZE_PY_VERSION),
        ("wit_version", WIT_VERSION),
    ];
    let mut files = vec![
        File::text(
            "handler.py",
            fill(include_str!("../../templates/python/handler.py"), &values),
        ),
        File::text(
            "test_handler.py",
            include_str!("../../templates/python/test_handler.py").to_owned(),
        ),
        File::script(
            "build.sh",
            fill(include_str!("../../templates/python/build.sh"), &values),
        ),
        File::text(
            "README.md",
            fill(include_str!("../../templates/python/README.md"), &values),
        ),
        File::text(
            ".gitignore",
            include_str!("../../templates/python/gitignore").to_owned(),
        ),
        File::text("wit/handler.wit", WIT.to_owned()),
        sample(),
    ];
    files.extend(vendored(PYTHON_SDK));
    files
}

fn js_files(name: &str) -> Vec<File> {
    let values = [
        ("name", name),
        ("componentize_js_version", COMPONENTIZE_JS_VERSION),
        ("wit_version", WIT_VERSION),
    ];
    let mut files = vec![
        File::text(
            "handler.js",
            fill(include_str!("../../templates/js/handler.js"), &values),
        ),
        File::text(
            "handler.test.js",
            include_str!("../../templates/js/handler.test.js").to_owned(),
        ),
        File::text(
            "package.json",
            fill(include_str!("../../templates/js/package.json"), &values),
        ),
        File::script(
            "build.sh",
            fill(include_str!("../../templates/js/build.sh"), &values),
        ),
        File::text(
            "README.md",
            fill(include_str!("../../templates/js/README.md"), &values),
        ),
        File::text(
            ".gitignore",
            include_str!("../../templates/js/gitignore").to_owned(),
        ),
        File::text("wit/handler.wit", WIT.to_owned()),
        sample(),
    ];
    files.extend(vendored(JS_SDK));
    files
}

fn sample() -> File {
    File {
        path: "samples/example.xml",
        contents: SAMPLE.to_vec(),
        executable: false,
    }
}

fn vendored(sdk: &'static [(&'static str, &'static str)]) -> impl Iterator<Item = File> {
    sdk.iter().map(|(path, contents)| File {
        path,
        contents: contents.as_bytes().to_vec(),
        executable: path.ends_with(".sh"),
    })
}

#[cfg(unix)]
fn make_executable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot make {} executable", path.display()))
}

#[cfg(not(unix))]
fn make_executable(_path: &Path) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_suit_every_language() {
        for good in ["grb-watch", "a", "x_1"] {
            check_name(good).unwrap();
        }
        for bad in ["", "1x", "-x", "a b", "a/b", "../x", "é"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_vendored_rust_sdk_stands_alone_with_pinned_dependencies() {
        let manifest: toml::Table = vendored_sdk_manifest().unwrap().parse().unwrap();
        assert_eq!(
            manifest["package"]["name"].as_str(),
            Some("alerthost-guest")
        );
        assert_eq!(manifest["package"]["edition"].as_str(), Some("2024"));
        assert!(!manifest.contains_key("lints"));
        assert!(!manifest.contains_key("dev-dependencies"));
        let deps = manifest["dependencies"].as_table().unwrap();
        assert!(!deps.is_empty());
        for (name, dep) in deps {
            let version = dep["version"].as_str().unwrap_or_default();
            assert!(version.starts_with('='), "{name} is not pinned: {dep}");
            assert!(dep.get("workspace").is_none(), "{name}: {dep}");
        }
        assert_eq!(
            deps["wit-bindgen"]["default-features"].as_bool(),
            Some(false)
        );
        let features = deps["serde_json"]["features"].as_array().unwrap();
        assert!(
            features
                .iter()
                .any(|f| f.as_str() == Some("float_roundtrip"))
        );
    }

    #[test]
    fn every_rust_sdk_source_is_vendored() {
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk");
        let mut stack = vec![sdk.join("src")];
        let mut sources = Vec::new();
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let relative = path.strip_prefix(&sdk).unwrap();
                    sources.push(format!("alerthost-guest/{}", relative.display()));
                }
            }
        }
        for source in sources {
            assert!(
                RUST_SDK.iter().any(|(path, _)| *path == source),
                "{source} is missing from RUST_SDK"
            );
        }
    }

    #[test]
    fn templates_are_filled() {
        assert_eq!(type_name("grb-watch_now"), "GrbWatchNow");
        assert_eq!(
            fill("{{a}}-{{b}}-{{a}}", &[("a", "1"), ("b", "2")]),
            "1-2-1"
        );
        for file in rust_files("grb-watch")
            .unwrap()
            .iter()
            .chain(&python_files("grb-watch"))
            .chain(&js_files("grb-watch"))
        {
            let vendored = ["alerthost-guest/", "alerthost/", "wit/", "Cargo.lock"];
            if vendored.iter().any(|prefix| file.path.starts_with(prefix)) {
                continue;
            }
            let text = String::from_utf8_lossy(&file.contents);
            assert!(
                !text.contains("{{"),
                "{} has an unfilled placeholder",
                file.path
            );
        }
    }
}
