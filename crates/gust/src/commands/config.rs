//! `gust config list`.

use std::process::ExitCode;

use crate::cli::ConfigCommand;
use crate::config::{self, Config};

/// Runs a `gust config` command.
pub fn run(command: ConfigCommand) -> anyhow::Result<ExitCode> {
    match command {
        ConfigCommand::List => {
            let home = config::home()?;
            let config = Config::load(&home)?;
            println!("# GUST_HOME = {}", home.display());
            print!("{}", toml::to_string(&config)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
