//! `gust`: the command line. Parses arguments, loads configuration, runs one command, and reports
//! any error once, on one line, with a meaningful exit code.

mod cli;
mod commands;
mod config;
mod render;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
