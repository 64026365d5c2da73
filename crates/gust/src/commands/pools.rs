//! `gust pools set | list`.

use std::process::ExitCode;

use gust_store::{Pool, Store};

use crate::cli::PoolsCommand;
use crate::config::{self, Config};

/// Runs a `gust pools` command.
pub fn run(command: PoolsCommand) -> anyhow::Result<ExitCode> {
    let config = Config::load(&config::home()?)?;
    super::runtime()?.block_on(async {
        let store = Store::connect(&config.database.url).await?;
        store.check().await?;
        match command {
            PoolsCommand::Set {
                name,
                slots,
                description,
            } => {
                let slots = i32::try_from(slots)
                    .map_err(|_| anyhow::anyhow!("{slots} slots is too many"))?;
                store
                    .set_pool(&Pool {
                        name,
                        slots,
                        description,
                    })
                    .await?;
            }
            PoolsCommand::List => {
                for pool in store.pools().await? {
                    println!(
                        "{}\t{}\t{}",
                        pool.name,
                        pool.slots,
                        pool.description.unwrap_or_default()
                    );
                }
            }
        }
        store.close().await;
        Ok(ExitCode::SUCCESS)
    })
}
