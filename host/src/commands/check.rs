//! `alerthost check`: is this component a handler this host can run?

use std::process::ExitCode;

use crate::cli::{CheckArgs, EXIT_OK};
use crate::runtime::{Compiler, Limits, Runtime, RuntimeOptions};

pub fn run(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let runtime = Runtime::new(&RuntimeOptions {
        cache_dir: args.cache.dir(),
        compiler: Compiler::this_executable()?,
        ..RuntimeOptions::default()
    })?;
    let code = runtime.load_file(&args.handler, &Limits::default())?;
    let info = code.info();
    if args.json {
        println!("{}", serde_json::to_string(info)?);
    } else {
        println!("component:  {}", args.handler.display());
        println!(
            "interface:  {}@{}",
            crate::bindings::WIT_PACKAGE,
            info.interface_version
        );
        println!("version:    {} (sha256 {})", code.version(), info.version);
        println!("size:       {} bytes", info.size);
        println!(
            "{}: {:.1} ms",
            if info.from_cache {
                "cache load"
            } else {
                "compile   "
            },
            info.load_time.as_secs_f64() * 1e3
        );
        println!("exports:    {}", info.exports.join(", "));
        println!("imports:");
        for import in &info.imports {
            println!("  {import}");
        }
    }
    Ok(ExitCode::from(EXIT_OK))
}
