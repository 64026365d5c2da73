//! One module per command group; each turns parsed arguments into output and an exit code.

mod config;
mod dags;
mod db;
mod test_run;
mod variables;

pub use dags::relative;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Dags(command) => dags::run(command),
        Command::Config(command) => config::run(command),
        Command::Db(command) => db::run(command),
        Command::Variables(command) => variables::run(command),
        Command::Version => {
            println!("gust {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
    }
}
