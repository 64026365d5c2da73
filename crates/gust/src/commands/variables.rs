//! `gust variables get | set | list | delete`.

use std::process::ExitCode;

use gust_store::Store;

use crate::cli::VariablesCommand;
use crate::config::{self, Config};

/// Runs a `gust variables` command. Values are encrypted with the Fernet key connections use
/// (`[core] fernet_key`, else `$GUST_HOME/fernet.key`).
pub fn run(command: VariablesCommand) -> anyhow::Result<ExitCode> {
    let home = config::home()?;
    let config = Config::load(&home)?;
    let runtime = super::runtime()?;
    runtime.block_on(async {
        let store = Store::connect(&config.database.url).await?;
        store.check().await?;
        let code = match command {
            VariablesCommand::Get { key } => match store
                .variable(&key, &super::secret_key(&config, &home)?)
                .await?
            {
                Some(value) => {
                    println!("{value}");
                    ExitCode::SUCCESS
                }
                None => anyhow::bail!("no variable \"{key}\"; `gust variables list` shows them"),
            },
            VariablesCommand::Set {
                key,
                value,
                description,
            } => {
                let fernet = super::secret_key(&config, &home)?;
                store
                    .set_variable(&key, &value, description.as_deref(), &fernet)
                    .await?;
                ExitCode::SUCCESS
            }
            VariablesCommand::List => {
                for key in store.variable_keys().await? {
                    println!("{key}");
                }
                ExitCode::SUCCESS
            }
            VariablesCommand::Delete { key } => {
                if !store.delete_variable(&key).await? {
                    anyhow::bail!("no variable \"{key}\"");
                }
                ExitCode::SUCCESS
            }
        };
        store.close().await;
        Ok(code)
    })
}
