//! `gust`: the command line. Parses arguments, loads configuration, runs one command, and reports
//! any error once, on one line, with a meaningful exit code.

mod cli;
mod commands;
mod config;
mod connections_watch;
mod notifications;
mod python_dags;
mod python_tasks;
mod remote_logs;
mod render;
mod runtimes;
mod scheduler_lock;
mod secrets;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            // An error may quote a value (a rendered argument, a conf): secrets never show.
            eprintln!("error: {}", gust_secrets::mask(&one_line(&err)));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause once: libraries often repeat their cause's
/// text in their own message.
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
