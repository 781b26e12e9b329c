//! Builds the hostile test guests in `tests/guests` (their own workspace) for
//! `wasm32-wasip2` with a nested cargo, and tells the tests where they are:
//! `env!("ALERTHOST_TEST_GUESTS")` is a directory holding `<crate>.wasm` for
//! each guest crate (`spin.wasm`, `init-fails.wasm`, `no-handle.wasm`, ...).

use std::env;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

/// The first bytes of every WebAssembly component: magic, then the component
/// layer's version.
const COMPONENT_PREAMBLE: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

/// Variables cargo (or the caller) set for this host build that a nested cargo
/// building for wasm must not inherit: host compiler flags, a host target or
/// target directory, and compiler wrappers such as `clippy-driver`.
/// `CARGO_MAKEFLAGS` stays, so the nested build takes its jobs from the outer
/// build's jobserver instead of starting as many again.
const HOST_ONLY_ENV: &[&str] = &[
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_TARGET_DIR",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
    "CLIPPY_ARGS",
];

fn main() {
    if let Err(error) = build_guests() {
        for line in error.lines() {
            println!("cargo::error={line}");
        }
    }
}

fn build_guests() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env_var("OUT_DIR")?);
    let guests_dir = manifest_dir.join("guests");
    let repo = manifest_dir
        .parent()
        .ok_or("the tests crate has no parent directory")?;

    let guests = guest_crates(&guests_dir)?;
    watch(&guests_dir, repo, &guests);
    check_target_installed()?;

    let target_dir = nested_target_dir(&out_dir);
    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&guests_dir)
        .args(["build", "--release", "--target", TARGET]);
    for var in HOST_ONLY_ENV {
        cmd.env_remove(var);
    }
    cmd.env("CARGO_TARGET_DIR", &target_dir);
    let status = cmd
        .status()
        .map_err(|e| format!("could not run {cargo:?} to build the test guests: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building the test guests in {} failed ({status}); \
             the nested cargo's output is above",
            guests_dir.display()
        ));
    }

    let built = target_dir.join(TARGET).join("release");
    let dest = out_dir.join("guests");
    fs::create_dir_all(&dest).map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
    for name in &guests {
        let wasm = built.join(format!("{}.wasm", name.replace('-', "_")));
        let bytes = fs::read(&wasm).map_err(|e| {
            format!(
                "guest `{name}`: cannot read {} ({e}); is its package named after its folder?",
                wasm.display()
            )
        })?;
        if !bytes.starts_with(&COMPONENT_PREAMBLE) {
            return Err(format!(
                "guest `{name}`: {} is not a WebAssembly component",
                wasm.display()
            ));
        }
        let copy = dest.join(format!("{name}.wasm"));
        fs::write(&copy, &bytes).map_err(|e| format!("cannot write {}: {e}", copy.display()))?;
    }
    println!("cargo::rustc-env=ALERTHOST_TEST_GUESTS={}", dest.display());
    Ok(())
}

fn env_var(name: &str) -> Result<OsString, String> {
    env::var_os(name).ok_or_else(|| format!("cargo did not set {name}"))
}

/// The guest crates: every folder of `tests/guests` with a `Cargo.toml`.
fn guest_crates(guests_dir: &Path) -> Result<Vec<String>, String> {
    let entries = fs::read_dir(guests_dir)
        .map_err(|e| format!("cannot list {}: {e}", guests_dir.display()))?;
    let mut names = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| format!("cannot list {}: {e}", guests_dir.display()))?
            .path();
        if path.join("Cargo.toml").is_file()
            && let Some(name) = path.file_name().and_then(|n| n.to_str())
        {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Rebuild when a guest, the SDK or the WIT changes. Only sources are named,
/// never `tests/guests/target`, which a hand-run cargo may fill.
fn watch(guests_dir: &Path, repo: &Path, guests: &[String]) {
    let mut paths = vec![
        guests_dir.join("Cargo.toml"),
        guests_dir.join("Cargo.lock"),
        guests_dir.join(".cargo"),
        repo.join("guest-sdk/Cargo.toml"),
        repo.join("guest-sdk/src"),
        repo.join("wit"),
    ];
    for name in guests {
        paths.push(guests_dir.join(name).join("Cargo.toml"));
        paths.push(guests_dir.join(name).join("src"));
    }
    for path in paths {
        println!("cargo::rerun-if-changed={}", path.display());
    }
}

/// Fail early, with the fix, when the wasm target's standard library is
/// missing; the nested build's own error would only say `can't find crate`.
fn check_target_installed() -> Result<(), String> {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc"));
    let output = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .map_err(|e| format!("could not run {rustc:?}: {e}"))?;
    let libdir = String::from_utf8_lossy(&output.stdout);
    let libdir = Path::new(libdir.trim());
    let installed = output.status.success()
        && fs::read_dir(libdir).is_ok_and(|mut entries| entries.next().is_some());
    if installed {
        Ok(())
    } else {
        Err(format!(
            "the {TARGET} target is not installed, so the test guests cannot be built\n\
             run: rustup target add {TARGET}"
        ))
    }
}

/// A target directory for the nested build that outlives this build script's
/// hashed `OUT_DIR` and is shared by debug and release test builds: next to
/// the profile directories of the outer target directory. When `OUT_DIR` is
/// not laid out as `<target>/<profile>/build/<pkg>/out`, inside `OUT_DIR`.
fn nested_target_dir(out_dir: &Path) -> PathBuf {
    let build = out_dir.ancestors().nth(2);
    match build.and_then(|b| Some((b.file_name()?, b.parent()?.parent()?))) {
        Some((name, target)) if name == "build" => target.join("alerthost-test-guests"),
        _ => out_dir.join("guests-target"),
    }
}
