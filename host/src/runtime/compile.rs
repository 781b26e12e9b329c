//! Bounded compilation: a component is compiled to native code in a child
//! process, the `alerthost` binary run again with a hidden command, so that
//! what compiling costs is bounded without trusting the component.
//!
//! The child limits itself before it reads a byte of the component: its
//! address space (`RLIMIT_AS`, `limits.max_compile_mib`) and its CPU time
//! (`RLIMIT_CPU`, a backstop should the host die), it runs at a lower
//! priority than the host ([`COMPILE_NICE`]), so a hot swap's compilation
//! takes only the CPU the workers leave, and it dies with the host
//! (`PR_SET_PDEATHSIG`). The host kills it at `limits.max_compile_ms` of wall
//! time and reads its output with a bound. So a component that is costly to
//! compile (thousands of large functions, deep nesting) exhausts the child,
//! never the host: the host's memory holds only the component and the
//! artifact, both bounded, and its workers keep running.
//!
//! The child builds its engine from the same [`engine_config`] as the host's,
//! so the artifact it writes is one the host's engine accepts.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use wasmtime::{Config, Engine};

use super::cache::MAX_ARTIFACT_BYTES;
use super::limits::Limits;
use crate::cli::CompileArgs;

/// The hidden command of the `alerthost` binary that compiles a component.
pub const COMPILE_COMMAND: &str = "compile-component";

/// How much nicer than the host the compiling child runs.
pub const COMPILE_NICE: i32 = 10;

/// Exit status of the child when the component is not valid WebAssembly
/// (its error is on stderr), as opposed to a crash or a limit.
const EXIT_INVALID: u8 = 3;

/// Bytes of the child's stderr read (the rest is drained).
const MAX_STDERR_BYTES: u64 = 16 << 10;

/// Characters of the compiler's reason kept in the error message.
const MAX_REASON_CHARS: usize = 1000;

/// How often the host looks whether the child has finished.
const POLL: Duration = Duration::from_millis(5);

/// Where components are compiled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Compiler {
    /// In a child process: this `alerthost` executable, run with the hidden
    /// compile command, within the handler's `max_compile_ms` and
    /// `max_compile_mib`. The commands of the `alerthost` binary use
    /// [`Compiler::this_executable`].
    Process(PathBuf),
    /// In this process, with no bound on time or memory: for components
    /// the caller trusts, and for programs other than `alerthost` that
    /// embed the runtime without an `alerthost` executable to run.
    #[default]
    InProcess,
}

impl Compiler {
    /// A child process of the running executable, which must be the
    /// `alerthost` binary. On Linux this is `/proc/self/exe`: the very file
    /// that is running even if it was replaced on disk since (an upgrade
    /// under a running host), so the child's engine is always this build's.
    pub fn this_executable() -> anyhow::Result<Self> {
        let exe = if cfg!(target_os = "linux") {
            PathBuf::from("/proc/self/exe")
        } else {
            std::env::current_exe().context("cannot find the alerthost executable")?
        };
        Ok(Compiler::Process(exe))
    }
}

/// The engine settings that decide what compiled code looks like, shared by
/// the host's engine and the compiling child so they cannot drift apart.
/// (The instance allocator, which the host may add, does not change compiled
/// code.)
pub(crate) fn engine_config(fuel: bool) -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .consume_fuel(fuel);
    config
}

/// Compile `bytes` in a child process of `exe` within `limits`; the
/// serialized artifact it wrote. Every error says which limit was hit and
/// which key raises it.
pub(crate) fn compile_in_child(
    exe: &Path,
    bytes: &[u8],
    fuel: bool,
    limits: &Limits,
) -> anyhow::Result<Vec<u8>> {
    let time_limit = limits.max_compile_time();
    // The CPU limit is a backstop for a child whose host has gone (the host
    // kills it at the wall-time limit): every core may compile at once.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let max_cpu_ms = limits
        .max_compile_ms
        .saturating_mul(cores)
        .saturating_add(1000);
    let mut command = Command::new(exe);
    command
        .args(["--log", "off", COMPILE_COMMAND, "--max-mib"])
        .arg(limits.max_compile_mib.to_string())
        .arg("--max-cpu-ms")
        .arg(max_cpu_ms.to_string())
        // The compiler needs nothing of the host's environment, which may
        // hold its Kafka secrets.
        .env_clear()
        // Without this, glibc reserves 64 MiB of address space per thread
        // arena, which would count against the limit without being used.
        .env("MALLOC_ARENA_MAX", "2")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if fuel {
        command.arg("--fuel");
    }
    let started = Instant::now();
    let mut child = command.spawn().with_context(|| {
        format!(
            "cannot start the compiler process ({} {COMPILE_COMMAND})",
            exe.display()
        )
    })?;
    let (stdin, stdout, stderr) = (
        child.stdin.take().expect("piped stdin"),
        child.stdout.take().expect("piped stdout"),
        child.stderr.take().expect("piped stderr"),
    );
    // The artifact cannot be larger than the child's address space, and is
    // never larger than the cache would read back.
    let max_artifact = limits.max_compile_bytes().min(MAX_ARTIFACT_BYTES);
    let (status, artifact, errors) = std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut stdin = stdin;
            // A child that exits early closes the pipe; its status says why.
            let _ = stdin.write_all(bytes);
        });
        let artifact = scope.spawn(move || read_bounded(stdout, max_artifact));
        let errors = scope.spawn(move || read_bounded(stderr, MAX_STDERR_BYTES));
        let status = wait_until(&mut child, started + time_limit);
        (
            status,
            artifact.join().expect("the artifact reader does not panic"),
            errors.join().expect("the stderr reader does not panic"),
        )
    });
    let status = status.context("cannot wait for the compiler process")?;
    let errors = errors.map_or_else(|_| String::new(), |e| lossy_trimmed(&e));
    let over_time = || {
        anyhow::anyhow!(
            "compiling it took longer than the {} ms allowed (limits.max_compile_ms): \
             the compiler was stopped and nothing was cached; if the component is \
             trusted and this is expected, raise `max_compile_ms` in [handler.limits]",
            limits.max_compile_ms
        )
    };
    let over_memory = || {
        anyhow::anyhow!(
            "compiling it needed more than the {} MiB allowed (limits.max_compile_mib): \
             the compiler ran out of memory and nothing was cached; if the component is \
             trusted and this is expected, raise `max_compile_mib` in [handler.limits]",
            limits.max_compile_mib
        )
    };
    let Some(status) = status else {
        return Err(over_time());
    };
    if status.success() {
        let artifact = artifact.context("cannot read the compiled component")?;
        if artifact.len() as u64 > max_artifact {
            anyhow::bail!(
                "its compiled code is larger than the {max_artifact} bytes the host accepts; \
                 nothing was cached"
            );
        }
        return Ok(artifact);
    }
    if out_of_memory(&errors) {
        return Err(over_memory());
    }
    // What the compiler said, in one line of bounded length: a crash may
    // print a backtrace after it.
    let said = errors.lines().next().unwrap_or_default();
    let said = match said.char_indices().nth(MAX_REASON_CHARS) {
        Some((cut, _)) => format!("{}…", &said[..cut]),
        None => said.to_owned(),
    };
    if status.code() == Some(i32::from(EXIT_INVALID)) {
        anyhow::bail!("it is truncated or not a valid component: {said}");
    }
    if killed_for_cpu(&status) {
        return Err(over_time());
    }
    anyhow::bail!(
        "the compiler process failed ({status}){}{said}; nothing was cached. If the component \
         is large, raise `max_compile_mib` (now {} MiB) or `max_compile_ms` (now {} ms) in \
         [handler.limits]",
        if said.is_empty() { "" } else { ": " },
        limits.max_compile_mib,
        limits.max_compile_ms,
    )
}

/// Wait for `child` until `deadline`; past it, kill it and return `None`.
fn wait_until(
    child: &mut std::process::Child,
    deadline: Instant,
) -> std::io::Result<Option<ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            // It may have exited just now; either way it is gone after wait.
            let _ = child.kill();
            child.wait()?;
            return Ok(None);
        }
        std::thread::sleep(POLL);
    }
}

/// Read `reader` to its end, keeping at most `max + 1` bytes (one more than
/// allowed, so the caller sees that it was over); the rest is drained so
/// the writer never blocks on a full pipe.
fn read_bounded(reader: impl std::io::Read, max: u64) -> std::io::Result<Vec<u8>> {
    let mut reader = reader;
    let mut bytes = Vec::new();
    (&mut reader).take(max + 1).read_to_end(&mut bytes)?;
    std::io::copy(&mut reader, &mut std::io::sink())?;
    Ok(bytes)
}

fn lossy_trimmed(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_owned()
}

/// Whether the child's error output says an allocation failed: Rust's
/// "memory allocation of N bytes failed" abort, or an `mmap` refused with
/// ENOMEM in the compiler or when a compiler thread was started.
fn out_of_memory(errors: &str) -> bool {
    [
        "memory allocation of",
        "out of memory",
        "Cannot allocate memory",
        "os error 12",
    ]
    .iter()
    .any(|needle| errors.contains(needle))
}

#[cfg(unix)]
fn killed_for_cpu(status: &ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt as _;
    status.signal() == Some(libc::SIGXCPU)
}

#[cfg(not(unix))]
fn killed_for_cpu(_status: &ExitStatus) -> bool {
    false
}

/// The hidden compile command: limit this process, read a component from
/// stdin, write its compiled artifact to stdout. Exit 0 when compiled,
/// [`EXIT_INVALID`] with the reason on stderr when the component is not
/// valid; anything else is a crash or a limit.
pub fn compile_child(args: &CompileArgs) -> anyhow::Result<ExitCode> {
    limit_this_process(args)?;
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut bytes)
        .context("cannot read the component from standard input")?;
    let engine = Engine::new(&engine_config(args.fuel))
        .map_err(|e| anyhow::anyhow!("cannot build the compiling engine: {e:?}"))?;
    match engine.precompile_component(&bytes) {
        Ok(artifact) => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&artifact)
                .and_then(|()| stdout.flush())
                .context("cannot write the compiled component")?;
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("{error:#}");
            Ok(ExitCode::from(EXIT_INVALID))
        }
    }
}

#[cfg(target_os = "linux")]
fn limit_this_process(args: &CompileArgs) -> anyhow::Result<()> {
    use rustix::process::{
        Resource, Rlimit, Signal, getpriority_process, set_parent_process_death_signal,
        setpriority_process, setrlimit,
    };
    // Compiling for a hot swap competes with the workers handling messages:
    // the compiler yields the CPU to them (its threads, started later,
    // inherit the lower priority).
    let nice = getpriority_process(None).context("cannot read the compiler's priority")?;
    setpriority_process(None, nice.saturating_add(COMPILE_NICE).min(19))
        .context("cannot lower the compiler's priority")?;
    // Orphaned, it would compile for nobody.
    set_parent_process_death_signal(Some(Signal::KILL))
        .context("cannot tie the compiler process to its host")?;
    let bytes = args.max_mib.saturating_mul(1 << 20);
    setrlimit(
        Resource::As,
        Rlimit {
            current: Some(bytes),
            maximum: Some(bytes),
        },
    )
    .context("cannot limit the compiler's memory")?;
    // SIGXCPU at the soft limit, SIGKILL a second later.
    let secs = args.max_cpu_ms.div_ceil(1000);
    setrlimit(
        Resource::Cpu,
        Rlimit {
            current: Some(secs),
            maximum: Some(secs + 1),
        },
    )
    .context("cannot limit the compiler's CPU time")?;
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn limit_this_process(_args: &CompileArgs) -> anyhow::Result<()> {
    // Only the host's wall-time limit applies here.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_memory_is_told_from_other_failures() {
        assert!(out_of_memory("memory allocation of 4096 bytes failed"));
        assert!(out_of_memory(
            "failed to mmap: Cannot allocate memory (os error 12)"
        ));
        assert!(!out_of_memory("invalid leading byte in type definition"));
    }

    #[test]
    fn reading_past_the_bound_keeps_one_byte_more_and_drains_the_rest() {
        let data = vec![7u8; 10_000];
        let kept = read_bounded(&data[..], 100).unwrap();
        assert_eq!(kept.len(), 101);
        assert_eq!(read_bounded(&data[..], 20_000).unwrap().len(), 10_000);
    }
}
