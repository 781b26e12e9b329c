//! The commands behind the CLI.

mod check;
mod demo;
pub mod new;
mod run;
mod test;
pub mod topics;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// Run the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Test(args) => test::run(&args),
        Command::Check(args) => check::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Reload(args) => reload(&args),
        Command::New(args) => new::run(&args),
        Command::Topics(args) => topics::run(&args),
        Command::CompileComponent(args) => crate::runtime::compile_child(&args),
    }
}

/// Send SIGHUP to a running host.
fn reload(args: &crate::cli::ReloadArgs) -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    let pid = match (&args.pid_file, args.pid) {
        (_, Some(pid)) => pid,
        (Some(file), None) => std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the pid file {}", file.display()))?
            .trim()
            .parse()
            .with_context(|| format!("{} does not hold a process id", file.display()))?,
        (None, None) => unreachable!("clap requires one of --pid-file and --pid"),
    };
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .context("cannot run `kill`")?;
    anyhow::ensure!(status.success(), "no alerthost process {pid} to reload");
    println!("asked alerthost (pid {pid}) to reload");
    Ok(ExitCode::from(crate::cli::EXIT_OK))
}
