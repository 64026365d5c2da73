//! `gust db migrate | check`.

use std::process::ExitCode;

use anyhow::Context;
use gust_store::Store;

use crate::cli::DbCommand;
use crate::config::{self, Config};

/// Runs a `gust db` command.
pub fn run(command: DbCommand) -> anyhow::Result<ExitCode> {
    let config = Config::load(&config::home()?)?;
    let url = config.database.url.clone();
    if let Some(path) = url.strip_prefix("sqlite://").map(std::path::Path::new)
        && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
    {
        super::connections::create_private_dir(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let runtime = super::runtime()?;
    runtime.block_on(async {
        let store = Store::connect(&url).await?;
        let shown = gust_store::redact(&url);
        match command {
            DbCommand::Migrate => {
                store.migrate().await?;
                let version = store.check().await?;
                println!("{shown}: schema at version {version}");
            }
            DbCommand::Check => {
                let version = store.check().await?;
                println!("{shown}: reachable, schema at version {version} (current)");
            }
        }
        store.close().await;
        Ok(ExitCode::SUCCESS)
    })
}
