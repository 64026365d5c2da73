//! `gust config list`.

use std::process::ExitCode;

use crate::cli::ConfigCommand;
use crate::config::{self, Config};

/// Runs a `gust config` command.
pub fn run(command: ConfigCommand) -> anyhow::Result<ExitCode> {
    match command {
        ConfigCommand::List => {
            let home = config::home()?;
            let mut config = Config::load(&home)?;
            // The database password, the keys and the SMTP password are secrets: never printed.
            config.database.url = gust_store::redact(&config.database.url);
            for key in [
                &mut config.core.fernet_key,
                &mut config.api.secret_key,
                &mut config.smtp.smtp_password,
            ] {
                if key.is_some() {
                    *key = Some("***".to_owned());
                }
            }
            println!("# GUST_HOME = {}", home.display());
            print!("{}", toml::to_string(&config)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
