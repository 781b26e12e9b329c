//! `alerthost new`: scaffold a handler project in Rust, Python or JavaScript.
//!
//! The project builds its component with one command and passes its own
//! native test as generated. A Rust project depends on the `alerthost-guest`
//! crate by path; Python and JavaScript projects carry a copy of their SDK
//! (embedded in this binary) and of the WIT, so they are self-contained.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};

use crate::cli::EXIT_OK;

/// The componentize-py version Python projects are built with.
const COMPONENTIZE_PY_VERSION: &str = "0.25.1";
/// The componentize-js and jco versions JavaScript projects are built with.
const COMPONENTIZE_JS_VERSION: &str = "0.23.0";
const JCO_VERSION: &str = "1.35.0";

/// The WIT contract, vendored into Python and JavaScript projects.
const WIT: &str = include_str!("../../../wit/handler.wit");
/// The sample message every project tests with: a Swift BAT position VOEvent.
const SAMPLE: &[u8] =
    include_bytes!("../../../tests/data/samples/voevent/swift_bat_grb_pos_1118357.xml");

/// (path in the project, contents) of the Python SDK.
const PYTHON_SDK: &[(&str, &str)] = &[
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
        "alerthost/build.sh",
        include_str!("../../../guest-sdk/python/build.sh"),
    ),
];

/// (path in the project, contents) of the JavaScript SDK.
const JS_SDK: &[(&str, &str)] = &[
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
        "alerthost/build.mjs",
        include_str!("../../../guest-sdk/js/build.mjs"),
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
    /// Rust only: the alerthost-guest crate (the guest-sdk directory of an
    /// alerthost checkout). Default: the checkout the new project is inside,
    /// else the one this binary was built from, when it still exists.
    #[arg(long)]
    pub sdk: Option<PathBuf>,
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
        Lang::Rust => rust_files(&args.name, &rust_sdk(args.sdk.as_deref(), &dir)?),
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

    let (build, test, component) = match args.lang {
        Lang::Rust => (
            "cargo build --release".to_owned(),
            format!("cargo test --target {}", native_target()),
            format!(
                "target/wasm32-wasip2/release/{}.wasm",
                args.name.replace('-', "_")
            ),
        ),
        Lang::Python => (
            "./build.sh".to_owned(),
            "python3 -m unittest".to_owned(),
            format!("dist/{}.wasm", args.name),
        ),
        Lang::Js => (
            "./build.sh".to_owned(),
            "node --test".to_owned(),
            format!("dist/{}.wasm", args.name),
        ),
    };
    println!("created {}", dir.display());
    println!("  build:  {build}  (writes {component})");
    println!("  test:   {test}");
    println!("  try:    alerthost test {component} samples/");
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

/// The target triple native tests run on, for the commands written into a
/// Rust project (its default target is wasm32-wasip2).
fn native_target() -> String {
    let arch = std::env::consts::ARCH;
    match std::env::consts::OS {
        "macos" => format!("{arch}-apple-darwin"),
        "windows" => format!("{arch}-pc-windows-msvc"),
        _ => format!("{arch}-unknown-linux-gnu"),
    }
}

/// Whether `dir` is the alerthost-guest crate.
fn is_guest_sdk(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("Cargo.toml"))
        .is_ok_and(|manifest| manifest.contains("name = \"alerthost-guest\""))
}

/// The alerthost-guest crate a Rust project depends on, as written into its
/// Cargo.toml: `--sdk`, else the checkout `project` is inside (as a relative
/// path, so the checkout can move), else the checkout this binary was built
/// from.
fn rust_sdk(given: Option<&Path>, project: &Path) -> anyhow::Result<PathBuf> {
    if let Some(sdk) = given {
        let sdk = sdk
            .canonicalize()
            .with_context(|| format!("--sdk {}: no such directory", sdk.display()))?;
        if !is_guest_sdk(&sdk) {
            bail!(
                "--sdk {}: not the alerthost-guest crate (the guest-sdk directory of an alerthost checkout)",
                sdk.display()
            );
        }
        return Ok(sdk);
    }
    let enclosing = project
        .ancestors()
        .enumerate()
        .skip(1)
        .find_map(|(depth, dir)| {
            is_guest_sdk(&dir.join("guest-sdk"))
                .then(|| PathBuf::from("../".repeat(depth)).join("guest-sdk"))
        });
    if let Some(relative) = enclosing {
        return Ok(relative);
    }
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk");
    if is_guest_sdk(&built_from) {
        return Ok(built_from.canonicalize().unwrap_or(built_from));
    }
    bail!(
        "cannot find the alerthost-guest crate for a Rust handler: pass --sdk with the \
         guest-sdk directory of an alerthost checkout"
    )
}

fn rust_files(name: &str, sdk: &Path) -> Vec<File> {
    let crate_name = name.replace('-', "_");
    let type_name = type_name(name);
    let sdk = sdk.display().to_string();
    let native = native_target();
    let values = [
        ("name", name),
        ("crate_name", crate_name.as_str()),
        ("type_name", type_name.as_str()),
        ("sdk_path", sdk.as_str()),
        ("native_target", native.as_str()),
    ];
    vec![
        File::text(
            "Cargo.toml",
            fill(include_str!("../../templates/rust/Cargo.toml"), &values),
        ),
        File::text(
            ".cargo/config.toml",
            fill(include_str!("../../templates/rust/config.toml"), &values),
        ),
        File::text(
            "src/lib.rs",
            fill(include_str!("../../templates/rust/lib.rs"), &values),
        ),
        File::text(
            "README.md",
            fill(include_str!("../../templates/rust/README.md"), &values),
        ),
        File::text(
            ".gitignore",
            include_str!("../../templates/rust/gitignore").to_owned(),
        ),
        sample(),
    ]
}

fn python_files(name: &str) -> Vec<File> {
    let values = [
        ("name", name),
        ("componentize_py_version", COMPONENTIZE_PY_VERSION),
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
        ("jco_version", JCO_VERSION),
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
    fn rust_projects_inside_a_checkout_use_its_sdk_by_relative_path() {
        let checkout = tempfile::tempdir().unwrap();
        let sdk = checkout.path().join("guest-sdk");
        std::fs::create_dir(&sdk).unwrap();
        std::fs::write(
            sdk.join("Cargo.toml"),
            "[package]\nname = \"alerthost-guest\"\n",
        )
        .unwrap();
        let project = checkout.path().join("handlers/watch");
        assert_eq!(
            rust_sdk(None, &project).unwrap(),
            Path::new("../../guest-sdk")
        );
        assert_eq!(
            rust_sdk(Some(&sdk), &project).unwrap(),
            sdk.canonicalize().unwrap()
        );
        let err = rust_sdk(Some(checkout.path()), &project).unwrap_err();
        assert!(
            err.to_string().contains("not the alerthost-guest crate"),
            "{err}"
        );
    }

    #[test]
    fn templates_are_filled() {
        assert_eq!(type_name("grb-watch_now"), "GrbWatchNow");
        assert_eq!(
            fill("{{a}}-{{b}}-{{a}}", &[("a", "1"), ("b", "2")]),
            "1-2-1"
        );
        for file in rust_files("grb-watch", Path::new("/sdk"))
            .iter()
            .chain(&python_files("grb-watch"))
            .chain(&js_files("grb-watch"))
        {
            let text = String::from_utf8_lossy(&file.contents);
            assert!(
                !text.contains("{{"),
                "{} has an unfilled placeholder",
                file.path
            );
        }
    }
}
