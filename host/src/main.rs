//! The `alerthost` command: parse arguments, run the command, print the whole
//! error chain on failure and map it to an exit code.

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = alerthost::cli::Cli::parse();
    alerthost::cli::init_logging(&cli.global);
    match alerthost::commands::run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            // A halt while running (a handler under `stop`, a sink that
            // cannot write) is not a usage error.
            if alerthost::pipeline::fatal_of(&error).is_some() {
                ExitCode::from(alerthost::cli::EXIT_HANDLER_FAILED)
            } else {
                ExitCode::from(alerthost::cli::EXIT_USAGE)
            }
        }
    }
}
